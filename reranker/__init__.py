"""LLM relevance judging for e-commerce search: the reranker service and its relevance core."""

__version__ = "0.1.0"
