"""One relevance core: a training row and a served request produce identical prompt tokens."""

from __future__ import annotations

import pytest
import torch

from reranker.backends import ScoreJob, build_backend
from reranker.core import label_probs_from_logits
from reranker.service.config import ServiceConfig
from training.rows import sft_row


# Exactness is asserted in fp32 whatever the CPU: `--dtype auto` picks bf16 on CPUs where it measures
# fast (AVX512-BF16/AMX), whose rounding no 1e-5 tolerance survives. The bf16 path is tested below.
@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return build_backend(ServiceConfig(model=str(tiny_model_dir), max_doc_tokens=40, dtype="float32"))


def full_forward_probs(backend, query, product) -> torch.Tensor:
    """Label probabilities from one plain forward of the training row's prompt: the reference."""
    row = sft_row(backend.prompt, query, product, "Irrelevant")
    ids = torch.tensor([row["input_ids"][: row["prompt_len"]]])
    with torch.no_grad():
        logits = backend.model(ids).logits[:, -1].float()
    return label_probs_from_logits(logits, backend.prompt.label_token_ids)[0]


PRODUCT = {"title": "DeWalt 20V cordless drill", "brand": "DeWalt", "category": "power tools"}


def test_training_row_and_served_request_have_identical_prompt_tokens(backend):
    prompt = backend.prompt
    row = sft_row(prompt, "cordless drill", PRODUCT, "Excellent", "it is a cordless drill")
    served = prompt.query_ids("cordless drill") + prompt.doc_ids(PRODUCT)  # the pieces the server feeds
    assert row["input_ids"][: row["prompt_len"]] == served
    # answer-first: the first completion token is the label token, and only the completion is trained on
    assert row["input_ids"][row["prompt_len"]] == prompt.label_token_ids[0]
    assert row["completion_mask"] == [0] * row["prompt_len"] + [1] * (len(row["input_ids"]) - row["prompt_len"])
    assert row["input_ids"][-1] == prompt.eos_token_id
    text = prompt.tokenizer.decode(served)
    assert "Query: cordless drill" in text and "Title: DeWalt 20V cordless drill" in text and "Brand: DeWalt" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_served_probabilities_equal_a_full_forward_on_the_training_prompt(backend):
    """Prefix reuse, length batching and padding must not change what the model sees."""
    jobs = [
        ScoreJob("cordless drill", [PRODUCT, "garden hose 50 ft", "white paint " * 30]),
        ScoreJob("white paint", ["one gallon white interior paint", PRODUCT]),
    ]
    served = backend.label_probs(jobs)
    for job, probs in zip(jobs, served):
        for product, got in zip(job.products, probs):
            torch.testing.assert_close(got, full_forward_probs(backend, job.query, product), atol=1e-5, rtol=1e-4)


def test_without_prefix_reuse_gives_the_same_probabilities(tiny_model_dir, backend):
    plain = build_backend(ServiceConfig(model=str(tiny_model_dir), max_doc_tokens=40, prefix_reuse=False, dtype="float32"))
    jobs = [ScoreJob("drill", ["drill battery", "hose", PRODUCT]), ScoreJob("paint", ["paint gallon"])]
    for a, b in zip(backend.label_probs(jobs), plain.label_probs(jobs)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert plain.tokens_processed > 0


def test_long_documents_lose_their_own_tokens_never_the_template(backend):
    prompt = backend.prompt
    short = prompt.doc_ids("drill")
    long = prompt.doc_ids("drill " * 500)
    tail = prompt.doc_ids("")[-3:]
    assert len(long) == prompt.max_doc_tokens + (len(short) - len(prompt._encode("Title: drill")))
    assert long[-3:] == tail == short[-3:]
    assert prompt.query_ids("q " * 500)[-len(prompt._mid):] == prompt._mid



# bf16 keeps ~3 significant digits, and the tiny random model amplifies rounding (its own bf16
# forward is ~0.1 from its fp32 one), so the bf16 path is held to its own full forward; a wrong
# prefix or mask moves probabilities far more than this (checked below).
BF16_ATOL = 0.05


def test_bf16_serving_path_matches_a_bf16_full_forward(tiny_model_dir):
    """What AMX / AVX512-BF16 CPUs and GPUs serve: shared-prefix scoring in bf16 equals, within
    bf16 rounding, one plain bf16 forward per pair, while another query's prefix does not."""
    bf16 = build_backend(ServiceConfig(model=str(tiny_model_dir), max_doc_tokens=40, dtype="bfloat16"))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    products = [PRODUCT, "garden hose 50 ft", "white paint " * 30, "drill battery"]
    jobs = [ScoreJob("cordless drill", products), ScoreJob("white paint", products[::-1])]
    wrong_prefix = 0.0
    for job, probs in zip(jobs, bf16.label_probs(jobs)):
        other = "white paint" if job.query == "cordless drill" else "cordless drill"
        for product, got in zip(job.products, probs):
            torch.testing.assert_close(got.float(), full_forward_probs(bf16, job.query, product), atol=BF16_ATOL, rtol=0)
            wrong_prefix = max(wrong_prefix, (got.float() - full_forward_probs(bf16, other, product)).abs().max().item())
    assert wrong_prefix > 3 * BF16_ATOL


def test_label_head_scores_in_fp32_whatever_the_model_dtype(tiny_model_dir):
    """bf16 logits are rounded to steps of 1/8 at |logit| 16-32; the label head keeps its rows and
    its matmul in fp32, so a bf16 model loses no precision after its last hidden state."""
    bf16 = build_backend(ServiceConfig(model=str(tiny_model_dir), dtype="bfloat16"))
    torch.manual_seed(0)
    hidden = (torch.randn(8, bf16.model.config.hidden_size) * 30).to(torch.bfloat16)
    rows = bf16.model.get_output_embeddings().weight[bf16.prompt.label_token_ids].float()
    got = bf16.head.logits(hidden)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, hidden.float() @ rows.T, atol=1e-4, rtol=1e-5)
