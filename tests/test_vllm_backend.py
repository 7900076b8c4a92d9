"""The vLLM backend needs vllm and a GPU; the project's CPU machines have neither, so this skips there."""

from __future__ import annotations

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vllm is not installed (GPU-only optional extra)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a GPU")
def test_vllm_matches_transformers(tiny_model_dir):
    from reranker.backends import ScoreJob, build_backend
    from reranker.service.config import ServiceConfig

    jobs = [ScoreJob("cordless drill", ["DeWalt drill", "garden hose"])]
    hf = build_backend(ServiceConfig(model=str(tiny_model_dir), dtype="float32"))
    vl = build_backend(ServiceConfig(model=str(tiny_model_dir), dtype="float32", backend="vllm"))
    assert vl.prompt.encode("q", "p").prompt_ids == hf.prompt.encode("q", "p").prompt_ids
    torch.testing.assert_close(vl.label_probs(jobs)[0], hf.label_probs(jobs)[0], atol=2e-3, rtol=1e-2)
