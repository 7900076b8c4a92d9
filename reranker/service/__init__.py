"""The FastAPI reranker service."""
