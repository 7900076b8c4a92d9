"""The interface every judge backend implements, so the service does not care which one runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import torch

from ..core import Level, PromptFormat

Product = str | Mapping[str, object]

# Padded tokens per forward pass when none is configured. On a CPU small passes keep the
# activations in cache: in fp32 512 ran ~20% faster than 1024 on 2-core CPUs of both kinds we have
# (Xeon and EPYC; 256 was slower again, and 1024 beat 4096); in bf16 on a 2-core EPYC with
# AVX512-BF16, 256 ran ~20% faster than 1024 (the bf16 matmuls finish sooner, so the memory traffic
# of a bigger pass shows more). The GPU numbers were measured at 4096 (docs/benchmarks.md).
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 512, "cpu-bf16": 256, "gpu": 4096}


def default_batch_tokens(device: str, dtype: torch.dtype | None = None) -> int:
    if not str(device).startswith("cpu"):
        return DEFAULT_MAX_BATCH_TOKENS["gpu"]
    return DEFAULT_MAX_BATCH_TOKENS["cpu-bf16" if dtype == torch.bfloat16 else "cpu"]


@dataclass(frozen=True)
class ScoreJob:
    """One query and the products to judge for it."""

    query: str
    products: Sequence[Product]


class JudgeBackend(Protocol):
    prompt: PromptFormat
    name: str
    dtype: str  # the weights' dtype, e.g. float32 or bfloat16

    def label_probs(self, jobs: Sequence[ScoreJob]) -> list[torch.Tensor]:
        """Per job a float32 [len(products), n_labels] tensor of label probabilities (scheme order)."""
        ...

    def reasoning(self, query: str, product: Product, level: Level, max_new_tokens: int) -> str:
        """A short rationale generated after the given label token (answer-first)."""
        ...
