"""The Java search response processor `lref_tier` (plugin/tier-filter, a Maven project): it tiers the
reranked hits inside OpenSearch and drops those below the min tier. This package only carries its
source as data; engine/build.py builds it and engine/node.py installs it into the node."""
