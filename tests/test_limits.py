"""Limits: huge documents, thousands of documents, bytes and escapes that are not text, empty
fields. Every case is either served (truncated, bounded in memory) or refused with a clear JSON
4xx; on the command line, one line and exit code 2. Over real HTTP against `lref serve`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from conftest import assert_json_error, post
from stack import lref
from reranker.backends import ScoreJob, build_backend
from reranker.service.batcher import MicroBatcher
from reranker.service.config import ServiceConfig
from reranker.service.metrics import Metrics

JSON = {"content-type": "application/json"}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def test_broken_bodies_get_a_json_4xx(server):
    def raw(content: bytes) -> httpx.Response:
        return httpx.post(server.url + "/v1/rerank", content=content, headers=JSON, timeout=60)

    assert "JSON" in assert_json_error(raw(b'{"query": "drill", "documents": ['), 422)
    assert "parsing the body" in assert_json_error(raw(b'{"query": "\xff\xfe", "documents": ["a"]}'), 400)
    assert "exceeds" in assert_json_error(raw(b"{" + b" " * (17 * 1024 * 1024) + b"}"), 413)
    assert_json_error(httpx.get(server.url + "/v1/nowhere"), 404)
    assert_json_error(httpx.get(server.url + "/v1/rerank"), 405)


@pytest.mark.parametrize("body, where", [
    (rb'{"query": "dr\ud800ill", "documents": ["a"]}', "query"),
    (rb'{"query": "drill", "documents": ["ok", "\udfff"]}', "documents.1.string"),
    (rb'{"query": "drill", "documents": [{"title": "a\ud83d"}]}', "documents.0.object.title"),
    (rb'{"query": "drill", "documents": [{"\ud800": "a"}]}', "documents.0.object"),
    (rb'{"query": "drill", "documents": ["a"], "rank_fields": ["\ud800"]}', "rank_fields.0"),
])
def test_escapes_that_are_not_text_get_a_json_422(server, body, where):
    """Valid JSON, but a lone surrogate is no UTF-8 text: once a 500 from the tokenizer, and it
    failed every other request merged into the same batch."""
    error = assert_json_error(httpx.post(server.url + "/v1/rerank", content=body, headers=JSON), 422)
    assert where in error and "not valid UTF-8 text" in error
    assert post(server, "/v1/rerank", {"query": "drill", "documents": ["a"]}).status_code == 200


def test_huge_documents_are_truncated_in_bounded_memory(server):
    before = peak_rss_mb(server.proc.pid)
    five_mb = "cordless drill " * 350_000
    huge = post(server, "/v1/classify", {"query": "drill", "documents": [five_mb, {"title": five_mb, "brand": five_mb[:1000]}]})
    assert huge.status_code == 200, huge.text
    cut = post(server, "/v1/classify", {"query": "drill", "documents": [five_mb[:30_000]]}).json()["results"][0]
    # Cut to max_doc_chars, then to the model's max_doc_tokens: the same as any other long text.
    assert huge.json()["results"][0]["probabilities"] == pytest.approx(cut["probabilities"], abs=1e-5)
    assert peak_rss_mb(server.proc.pid) - before < 256  # MiB, for ~10 MB of request body


def test_a_long_query_is_cut_not_refused(server):
    """One rule for long text: queries, like documents, are cut (at 2,000 characters, then at the
    judge's query tokens), never refused."""
    long_query = "cordless drill " * 10_000
    judged = post(server, "/v1/classify", {"query": long_query, "documents": ["drill"]})
    assert judged.status_code == 200, judged.text
    cut = post(server, "/v1/classify", {"query": long_query[:2000], "documents": ["drill"]}).json()["results"][0]
    assert judged.json()["results"][0]["probabilities"] == pytest.approx(cut["probabilities"], abs=1e-5)


def test_thousands_of_documents_up_to_the_limit(server):
    docs = [f"cordless drill model {i}" for i in range(1000)]  # the default --max-documents
    full = post(server, "/v1/rerank", {"query": "cordless drill", "documents": docs})
    assert full.status_code == 200, full.text
    assert sorted(r["index"] for r in full.json()["results"]) == list(range(1000))
    over = post(server, "/v1/rerank", {"query": "cordless drill", "documents": docs + ["one more"]})
    assert "too many documents: 1001 > 1000" in assert_json_error(over, 422)


def test_empty_fields(server):
    assert "query must not be empty" in assert_json_error(post(server, "/v1/rerank", {"query": " ", "documents": ["a"]}), 422)
    assert "documents must not be empty" in assert_json_error(post(server, "/v1/rerank", {"query": "a", "documents": []}), 422)
    assert "needs a 'title'" in assert_json_error(post(server, "/v1/rerank", {"query": "a", "documents": [{"brand": "x"}]}), 422)
    # An empty title is judged like any other (one odd hit must not turn a whole search into a
    # fallback), and an empty optional field is left out of the prompt.
    docs = ["", {"title": ""}, {"title": "drill", "brand": ""}, {"title": "drill"}]
    results = post(server, "/v1/classify", {"query": "drill", "documents": docs}).json()["results"]
    assert len(results) == 4
    assert results[2]["probabilities"] == pytest.approx(results[3]["probabilities"], abs=1e-6)


def test_reasoning_is_bounded(server):
    asked = {"query": "drill", "documents": ["a"] * 21, "reasoning": True}
    assert "at most 20 documents" in assert_json_error(post(server, "/v1/classify", asked), 422)


def test_a_request_that_fails_in_the_model_fails_alone(tiny_model_dir):
    """Defence in depth behind the validation above: a job the model cannot take (here a lone
    surrogate, sent straight to the batcher) fails only its own request, not the batch it joined."""
    backend = build_backend(ServiceConfig(model=str(tiny_model_dir), device="cpu"))
    jobs = [ScoreJob("drill", ["cordless drill", "hose"]), ScoreJob("drill", ["\ud800"]), ScoreJob("hose", ["garden hose"])]

    async def together():
        batcher = MicroBatcher(backend, Metrics(), max_batch_pairs=256, max_wait_ms=50)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(job) for job in jobs), return_exceptions=True)
        finally:
            await batcher.stop()

    first, failed, last = asyncio.run(together())
    assert isinstance(failed, Exception)
    alone = backend.label_probs([jobs[0], jobs[2]])
    assert torch.allclose(first, alone[0], atol=1e-5) and torch.allclose(last, alone[1], atol=1e-5)


@pytest.mark.parametrize("argv, fragment", [
    ([b"dr\xffill", b"a title"], "query: not valid UTF-8 text"),
    ([b"drill", b"ok", b"ti\xfetle"], "title 1: not valid UTF-8 text"),
])
def test_cli_refuses_bytes_that_are_not_text(tiny_model_dir, argv, fragment):
    cmd = [sys.executable.encode(), b"-m", b"lref", b"score", *argv, b"--model", str(tiny_model_dir).encode()]
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2 and fragment in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


JUDGMENT = b'{"query": "cordless drill", "product_id": "p1", "title": "cordless drill 18v", "level": 4}'


@pytest.mark.parametrize("line, fragment", [
    (JUDGMENT.replace(b"4}", b'"Great"}'), "row 2: grade 'Great': label 'Great' is not in scheme"),
    (JUDGMENT.replace(b"4}", b"[4]}"), "row 2: grade [4] is neither a label name nor a number"),
    (JUDGMENT.replace(b"4}", b"true}"), "row 2: grade True is neither a label name nor a number"),
    (JUDGMENT.replace(b"18v", b"18\xffv"), "judgments.jsonl:2: not UTF-8 (byte 0xff at byte 76)"),
    (JUDGMENT.replace(b"18v", rb"18\ud800v"), "judgments.jsonl:2: 'title': not valid UTF-8 text"),
    (b'["cordless drill", 4]', "judgments.jsonl:2: expected a JSON object"),
    (JUDGMENT.replace(b'"cordless drill 18v"', b'""'), "row 2: needs a non-empty query and title"),
    # past CPython's int digit limit and its recursion limit: ValueError / RecursionError inside json
    (JUDGMENT.replace(b'"p1"', b"9" * 5000), "judgments.jsonl:2: a number with too many digits"),
    (b'{"query": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "judgments.jsonl:2: JSON nested too deeply"),
])
def test_judgments_that_cannot_be_used_are_refused_by_line(tmp_path, line, fragment):
    from reranker.core import load_scheme
    from training.config import ConfigError, DataConfig
    from training.data import split

    (tmp_path / "judgments.jsonl").write_bytes(JUDGMENT + b"\n" + line + b"\n")
    with pytest.raises(ConfigError) as refused:
        split(DataConfig(train="judgments.jsonl"), load_scheme(), 0, lambda name: tmp_path / name)
    assert fragment in str(refused.value)  # the second line: the first is a good one


@pytest.mark.parametrize("name, data, fragment", [
    ("judgments.jsonl", b"\n\n", "holds no judgments"),
    ("judgments.parquet", bytes(range(256)) * 4, "not a readable parquet file"),
    ("judgments.csv", b"query,title,level\n" + b'"' + b"x" * 200_000 + b'",t,4\n', "not a readable CSV file"),
])
def test_judgment_files_that_are_empty_or_not_their_format_are_refused(tmp_path, name, data, fragment):
    from reranker.core import load_scheme
    from training.config import ConfigError, DataConfig
    from training.data import split

    (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError) as refused:
        split(DataConfig(train=name), load_scheme(), 0, lambda file: tmp_path / file)
    assert fragment in str(refused.value)


def test_train_refuses_a_bad_judgments_file_in_one_line(tiny_model_dir, tmp_path):
    (tmp_path / "judgments.jsonl").write_bytes(JUDGMENT.replace(b"18v", b"18\xffv") + b"\n")
    (tmp_path / "train.yaml").write_text(f"model: {tiny_model_dir}\ndevice: cpu\nrun_dir: {tmp_path / 'run'}\n"
                                         f"data: {{train: {tmp_path / 'judgments.jsonl'}}}\n")
    done = lref("train", "--config", str(tmp_path / "train.yaml"), "--stage", "data")
    assert done.returncode == 2 and "judgments.jsonl:1: not UTF-8 (byte 0xff at byte 76)" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
