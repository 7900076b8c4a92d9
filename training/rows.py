"""Training rows built from the relevance core, so training and serving see identical prompt tokens."""

from __future__ import annotations

from reranker.core import Level, PromptFormat
from reranker.backends.base import Product


def sft_row(prompt: PromptFormat, query: str, product: Product, label: Level | str | int, reasoning: str | None = None) -> dict:
    """A pre-tokenized, answer-first SFT row: loss only on the completion (label token, reasoning, end of turn)."""
    prompt_ids = prompt.encode(query, product).prompt_ids
    completion_ids = prompt.target_ids(label, reasoning)
    return {
        "input_ids": prompt_ids + completion_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
        "prompt_len": len(prompt_ids),
    }
