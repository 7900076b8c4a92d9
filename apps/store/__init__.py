"""The demo store (`lref demo`): BM25 and LLM-tiered results side by side, served on localhost."""
