"""lref: LLM relevance judging for e-commerce search on OpenSearch. This package only assembles the
command line (lref/cli.py); the rooms are reranker/, training/, engine/, plugin/ and apps/."""
