"""The engine side of lref: a real single-node OpenSearch assembled from Maven Central (node, artifacts,
java, security, cluster), the one OpenSearch client (client), the JSON definitions we install
(the repo's opensearch/ folder, packaged as lref_opensearch), the catalog loader, and the installer
of the connector, model and search pipelines (install, policy, smoke). `lref opensearch ...` is
engine/cli.py."""

from importlib.util import find_spec
from pathlib import Path

# Index mapping, connector, pipelines and the artefact lock: opensearch/, which pyproject packages as
# lref_opensearch. It has no __init__.py (so it never shadows opensearch-protobufs' `opensearch`), and
# Python 3.11's importlib.resources cannot read such a package from an editable install, hence the spec
# (and the repo's folder when lref runs from a checkout that was never installed).
_spec = find_spec("lref_opensearch")
DEFINITIONS = next((Path(p) for p in (_spec.submodule_search_locations if _spec else []) if Path(p).is_dir()),
                   Path(__file__).resolve().parents[1] / "opensearch")
