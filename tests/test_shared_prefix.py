"""Shared-prefix attention: the fast path gives the probabilities of a full prefill, leaves the
model's own attention alone for everyone else, and steps aside for attention it cannot express."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from reranker.backends import ScoreJob, shared_prefix
from reranker.backends.transformers_backend import TransformersBackend
from reranker.core import PromptFormat, load_scheme
from reranker.models import loading
from reranker.models.loading import ModelSpec, load_model

PRODUCTS = ["cordless drill with battery", "garden hose 50 ft heavy duty", "white paint " * 12, "drill",
            {"title": "DeWalt 20V drill", "brand": "DeWalt", "category": "power tools"}, "hose"]
JOBS = [ScoreJob("cordless drill", PRODUCTS), ScoreJob("garden hose", PRODUCTS[::-1]),
        ScoreJob("cordless drill", PRODUCTS[:2]), ScoreJob("paint", PRODUCTS[2:4])]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, tokenizer, _ = load_model(ModelSpec(model=str(tiny_model_dir), dtype="float32", device="cpu"))
    return model, PromptFormat(tokenizer, load_scheme(), max_doc_tokens=40)


def shared_and_full(model, prompt, **kwargs):
    return TransformersBackend(model, prompt, **kwargs), TransformersBackend(model, prompt, prefix_reuse=False, **kwargs)


@pytest.mark.parametrize("kernel", ["fused CPU kernel", "explicit matmuls"])  # the second is what GPUs run
@pytest.mark.parametrize("budget", [64, 100_000])  # many small batches (queries split across them) / one batch
def test_shared_prefix_matches_a_full_prefill_of_every_pair(tiny, budget, kernel, monkeypatch):
    if kernel == "explicit matmuls":
        monkeypatch.setattr(shared_prefix, "_CPU_FLASH", None)
    model, prompt = tiny
    shared, full = shared_and_full(model, prompt, max_batch_tokens=budget)
    got = shared.label_probs(JOBS)
    assert shared.shared_attention is True
    for a, c in zip(got, full.label_probs(JOBS)):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-4)
    # the head is prefilled once per backend, so a second request only pays for its query and products
    before = shared.tokens_processed
    shared.label_probs(JOBS[:1])
    assert shared.tokens_processed - before == len(prompt.query_rest_ids("cordless drill")) + sum(
        len(prompt.doc_ids(p)) for p in PRODUCTS)


def test_the_model_keeps_its_own_attention_outside_scoring(tiny):
    model, prompt = tiny
    own = model.config._attn_implementation
    ids = torch.tensor([prompt.query_ids("drill") + prompt.doc_ids("drill battery")])
    before = model.generate(ids, max_new_tokens=4, do_sample=False)
    TransformersBackend(model, prompt).label_probs(JOBS)
    assert model.config._attn_implementation == own
    assert torch.equal(model.generate(ids, max_new_tokens=4, do_sample=False), before)


def test_sliding_window_attention_falls_back_to_full_prefill(tiny, caplog):
    llama, prompt = tiny
    config = MistralConfig(**{k: v for k, v in llama.config.to_dict().items() if k in MistralConfig().to_dict()})
    config.sliding_window = 16  # shorter than the prompts, so the window matters
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    shared, _ = shared_and_full(model, prompt)
    got = shared.label_probs(JOBS)
    assert shared.shared_attention is False and "shared-prefix attention off" in caplog.text
    for job, probs in zip(JOBS, got):  # against one plain forward per pair
        for product, row in zip(job.products, probs):
            ids = torch.tensor([prompt.query_ids(job.query) + prompt.doc_ids(product)])
            with torch.no_grad():
                want = torch.softmax(model(ids).logits[0, -1, prompt.label_token_ids], -1)
            torch.testing.assert_close(row, want, atol=1e-5, rtol=1e-4)


def test_bf16_on_a_cpu_takes_the_matmul_attention_and_the_bf16_budget(tiny_model_dir, monkeypatch):
    """The fused CPU kernel is used in fp32 only: in bf16 its per-block overhead made it the slower
    path on short product rows (docs/benchmarks.md); bf16 also gets its own (smaller) token budget."""
    calls = []
    fused = shared_prefix._CPU_FLASH
    monkeypatch.setattr(shared_prefix, "_CPU_FLASH", lambda *a, **k: calls.append(a[0].dtype) or fused(*a, **k))
    for dtype in ("bfloat16", "float32"):
        model, tokenizer, _ = load_model(ModelSpec(model=str(tiny_model_dir), dtype=dtype, device="cpu"))
        backend = TransformersBackend(model, PromptFormat(tokenizer, load_scheme(), max_doc_tokens=40))
        backend.label_probs(JOBS)
        assert backend.max_batch_tokens == (256 if dtype == "bfloat16" else 512)
    assert calls and set(calls) == {torch.float32}


def test_auto_dtype_on_a_cpu_follows_the_measured_bf16_speed():
    """A bf16 flag is not enough: `auto` takes bf16 on a CPU only where a bf16 matmul measured faster
    than fp32 by BF16_MIN_SPEEDUP (a Xeon listing avx512_bf16 ran it at about half fp32's speed)."""
    speedup = loading.cpu_bf16_speedup()
    has_flags = bool(loading._cpu_flags() & loading.BF16_FLAGS)
    assert (speedup is None) == (not has_flags)
    assert speedup is None or speedup > 0
    fast = speedup is not None and speedup >= loading.BF16_MIN_SPEEDUP
    assert loading.pick_dtype("auto", "cpu") == (torch.bfloat16 if fast else torch.float32)
    assert loading.cpu_facts()["bf16_speedup"] == (None if speedup is None else round(speedup, 2))
    assert loading.pick_dtype("bfloat16", "cpu") == torch.bfloat16  # an explicit dtype is never second-guessed


def test_the_bf16_probe_is_kept_per_machine_so_replicas_agree(tmp_path, monkeypatch):
    """Replicas started side by side would each time a matmul on the same busy cores and could
    choose different dtypes; the first measurement is kept in the cache and read by the rest."""
    monkeypatch.setenv("LREF_CACHE", str(tmp_path))
    loading.cpu_bf16_speedup.cache_clear()
    try:
        first = loading.cpu_bf16_speedup()
        kept = tmp_path / "cpu-bf16-speedup.json"
        if first is None:  # no bf16 flags: nothing to measure, nothing kept
            assert not kept.exists()
            return
        record = json.loads(kept.read_text())
        assert record["speedup"] == first and record["machine"]["torch"] == torch.__version__
        kept.write_text(json.dumps({**record, "speedup": 9.5}))  # as if another process had measured 9.5
        loading.cpu_bf16_speedup.cache_clear()
        assert loading.cpu_bf16_speedup() == 9.5 and loading.pick_dtype("auto", "cpu") == torch.bfloat16
        kept.write_text(json.dumps({**record, "machine": {**record["machine"], "cpu": "another CPU"}, "speedup": 9.5}))
        loading.cpu_bf16_speedup.cache_clear()
        assert loading.cpu_bf16_speedup() != 9.5  # measured again: the record was another machine's
        assert json.loads(kept.read_text())["machine"] == record["machine"]
    finally:
        loading.cpu_bf16_speedup.cache_clear()
