"""The interface every judge backend implements, so the service does not care which one runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import torch

from ..core import Level, PromptFormat

Product = str | Mapping[str, object]

# Padded tokens per forward pass when none is configured. On a CPU small passes keep the
# activations in cache: 1024 ran ~20% faster than 4096 (and 4096 faster than 8192) on the 2-core
# CPU; the GPU numbers were measured at 4096 (docs/benchmarks.md).
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 1024, "gpu": 4096}


def default_batch_tokens(device: str) -> int:
    return DEFAULT_MAX_BATCH_TOKENS["cpu" if str(device).startswith("cpu") else "gpu"]


@dataclass(frozen=True)
class ScoreJob:
    """One query and the products to judge for it."""

    query: str
    products: Sequence[Product]


class JudgeBackend(Protocol):
    prompt: PromptFormat
    name: str

    def label_probs(self, jobs: Sequence[ScoreJob]) -> list[torch.Tensor]:
        """Per job a float32 [len(products), n_labels] tensor of label probabilities (scheme order)."""
        ...

    def reasoning(self, query: str, product: Product, level: Level, max_new_tokens: int) -> str:
        """A short rationale generated after the given label token (answer-first)."""
        ...
