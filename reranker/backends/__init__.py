"""Judge backends behind one interface (see base.JudgeBackend)."""

from __future__ import annotations

from ..core import load_scheme
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

    if config.judge_dir:  # before the (slow) model load: a mismatch is refused at once
        from transformers import AutoTokenizer

        from ..models.judge import verify
        from ..models.loading import resolve_model_path

        base = resolve_model_path(config.model)
        verify(config.judge_dir, base, config.prompt_spec.build(AutoTokenizer.from_pretrained(base), scheme))
    model, tokenizer, device = load_model(config.model_spec)
    prompt = config.prompt_spec.build(tokenizer, scheme)
    return TransformersBackend(
        model,
        prompt,
        device=device,
        max_batch_tokens=config.max_batch_tokens,
        prefix_reuse=config.prefix_reuse,
    )


__all__ = ["BACKENDS", "JudgeBackend", "Product", "ScoreJob", "build_backend"]
