"""Everything the reranker service can be told, with the embedded defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core import DEFAULT_MAX_DOC_TOKENS, DEFAULT_MAX_QUERY_TOKENS, DEFAULT_PRODUCT_FIELDS, PromptSpec, TierPolicy
from ..models.loading import DEFAULT_MODEL, ModelSpec


@dataclass
class ServiceConfig:
    # model
    model: str = DEFAULT_MODEL
    adapter: str | None = None
    judge_dir: str | None = None  # a judge card's dir: the base and tokenizer are checked against it at load
    dtype: str = "auto"
    device: str = "auto"
    backend: str = "transformers"  # transformers | vllm
    # labels, prompt, tiering
    scheme: str = "four_level"
    instruction: str = "default"  # 'default', 'compact' or the text; a judge card sets it
    product_fields: tuple[str, ...] = DEFAULT_PRODUCT_FIELDS
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS
    max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS
    policy: TierPolicy = field(default_factory=TierPolicy)
    # batching
    max_batch_pairs: int = 256  # pairs gathered from concurrent requests into one scoring call
    # Requests that arrive while the model is busy always join the next batch; an extra wait only
    # adds latency to a lone request, so none by default.
    max_wait_ms: float = 0.0
    # ... but while requests come concurrently, a batch waits this long for the others (see batcher.py)
    company_wait_ms: float = 10.0
    max_batch_tokens: int | None = None  # padded tokens per forward pass; None: the device's default
    prefix_reuse: bool = True
    # limits (bad input gets a 4xx, never a 500)
    max_documents: int = 1000
    # reasoning is generated one document after another on the model thread, which every search
    # shares: one request may ask it for only a few documents
    max_reasoning_documents: int = 20
    max_query_chars: int = 2000
    max_doc_chars: int = 20000  # longer text is cut before tokenizing; tokens are then cut to max_doc_tokens
    max_body_bytes: int = 16 * 1024 * 1024
    # security
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(self.instruction, tuple(self.product_fields), self.max_query_tokens, self.max_doc_tokens)

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec(model=self.model, adapter=self.adapter, dtype=self.dtype, device=self.device)
