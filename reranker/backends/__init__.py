"""Judge backends behind one interface (see base.JudgeBackend)."""

from __future__ import annotations

from ..core import PromptFormat, load_scheme
from ..models.loading import ModelLoadError, load_model
from .base import JudgeBackend, Product, ScoreJob

BACKENDS = ("transformers", "vllm")


def build_backend(config) -> JudgeBackend:
    """Load the configured model and wrap it in the configured backend (a ServiceConfig or alike)."""
    scheme = load_scheme(config.scheme)
    config.policy.validate(scheme)
    if config.backend == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend.from_config(config, scheme)
    if config.backend != "transformers":
        raise ModelLoadError(f"unknown backend {config.backend!r}: use one of {BACKENDS}")
    from .transformers_backend import TransformersBackend

    model, tokenizer, device = load_model(config.model_spec)
    prompt = PromptFormat(
        tokenizer,
        scheme,
        product_fields=config.product_fields,
        max_query_tokens=config.max_query_tokens,
        max_doc_tokens=config.max_doc_tokens,
    )
    return TransformersBackend(
        model,
        prompt,
        device=device,
        max_batch_tokens=config.max_batch_tokens,
        prefix_reuse=config.prefix_reuse,
    )


__all__ = ["BACKENDS", "JudgeBackend", "Product", "ScoreJob", "build_backend"]
