"""The staged fine-tuning pipeline (LREF + TaoSR1). Every stage builds rows from reranker.core."""
