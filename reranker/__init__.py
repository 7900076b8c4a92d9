"""LLM relevance judging for e-commerce search: the reranker service and its relevance core."""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Judge":  # `from reranker import Judge`, without importing the service for `import reranker.core`
        from .api import Judge

        return Judge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
