"""The reranker service over real HTTP: a `lref serve` process with the tiny judge."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from conftest import Server, assert_json_error, listening_addresses, metric, post
from reranker.core import tier_from_score

DOCS = ["DeWalt cordless drill with battery", "garden hose 50 ft", "white interior paint", "drill bits set", "x"]


def test_health_metrics_and_openapi(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ready"
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/v1/rerank", "/v1/classify", "/health", "/metrics"} <= set(spec["paths"])
    post(server, "/v1/rerank", {"query": "drill", "documents": DOCS[:2]})
    metrics = httpx.get(server.url + "/metrics").text
    assert "lref_model_ready 1.0" in metrics
    assert 'lref_requests_total{endpoint="/v1/rerank",status="200"}' in metrics
    assert "lref_documents_total" in metrics and "lref_batch_pairs_bucket" in metrics


def test_rerank_scores_every_document_in_cohere_form(server):
    resp = post(server, "/v1/rerank", {"query": "cordless drill", "documents": DOCS, "model": "ignored"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    results = body["results"]
    # What ML Commons' connector.post_process.cohere.rerank reads: an int index and a float score per document.
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    assert all(isinstance(r["index"], int) and isinstance(r["relevance_score"], float) for r in results)
    assert '"relevance_score":' in resp.text and body["meta"]["api_version"]["version"] == "1"
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:  # the score encodes the tier, so sorting by it gives tier order
        assert tier_from_score(r["relevance_score"]) == r["tier"]
        assert r["keep"] == (r["tier"] != "Bad")
    assert len({r["relevance_score"] for r in results}) > 1


def test_rerank_top_n_and_return_documents(server):
    full = post(server, "/v1/rerank", {"query": "drill", "documents": DOCS}).json()["results"]
    top = post(server, "/v1/rerank", {"query": "drill", "documents": DOCS, "top_n": 2, "return_documents": True})
    results = top.json()["results"]
    assert [r["index"] for r in results] == [r["index"] for r in full[:2]]
    assert results[0]["document"] == {"text": DOCS[results[0]["index"]]}


def test_object_documents_use_their_fields(server):
    docs = [{"title": "cordless drill", "brand": "DeWalt"}, {"title": "cordless drill", "brand": "Ryobi"}]
    results = post(server, "/v1/classify", {"query": "dewalt drill", "documents": docs}).json()["results"]
    assert results[0]["probabilities"] != results[1]["probabilities"]
    only_title = post(server, "/v1/classify", {"query": "dewalt drill", "documents": docs, "rank_fields": ["title"]})
    a, b = only_title.json()["results"]
    assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6)


def test_classify_fields_and_reasoning_only_when_asked(server):
    body = post(server, "/v1/classify", {"query": "cordless drill", "documents": DOCS[:3]}).json()
    assert body["scheme"] == "four_level" and body["beta"] == 0.5 and body["min_tier"] == "Mid"
    for i, r in enumerate(body["results"]):
        assert r["index"] == i
        assert set(r["probabilities"]) == {"Excellent", "Related", "Mismatch", "Irrelevant"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] in r["probabilities"] and r["tier"] in ("Good", "Mid", "Bad")
        assert 1.0 <= r["expected_relevance"] <= 4.0
        assert r["reasoning"] is None
    asked = post(server, "/v1/classify", {"query": "drill", "documents": DOCS[:1], "reasoning": True,
                                          "max_reasoning_tokens": 5}).json()["results"][0]
    assert isinstance(asked["reasoning"], str)
    strict = post(server, "/v1/classify", {"query": "cordless drill", "documents": DOCS[:3], "beta": 1.0}).json()
    assert all(r["label"] == "Irrelevant" and not r["keep"] for r in strict["results"])  # beta=1 -> lowest level


def test_concurrent_requests_share_forward_passes_and_match_sequential(server):
    queries = [f"cordless drill {i}" for i in range(12)]
    sequential = [post(server, "/v1/classify", {"query": q, "documents": DOCS}).json() for q in queries]

    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(*[client.post("/v1/classify", json={"query": q, "documents": DOCS}) for q in queries])

    concurrent = [r.json() for r in asyncio.run(burst())]
    for a, b in zip(sequential, concurrent):
        for ra, rb in zip(a["results"], b["results"]):
            assert ra["probabilities"] == pytest.approx(rb["probabilities"], abs=1e-5)
    metrics = httpx.get(server.url + "/metrics").text
    merged = [line for line in metrics.splitlines() if line.startswith('lref_batch_requests_bucket{le="1.0"}')]
    count = [line for line in metrics.splitlines() if line.startswith("lref_batch_requests_count")]
    singles, batches = float(merged[0].split()[-1]), float(count[0].split()[-1])
    assert batches > singles, "no scoring call merged two requests"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"query": "", "documents": ["a"]}, 422, "query must not be empty"),
        ({"query": "   ", "documents": ["a"]}, 422, "query must not be empty"),
        ({"query": "drill", "documents": []}, 422, "documents must not be empty"),
        ({"query": "drill", "documents": ["a"] * 1001}, 422, "too many documents: 1001 > 1000"),
        ({"query": "drill", "documents": [5]}, 422, "documents"),
        ({"query": "drill", "documents": [{"title": 5}]}, 422, "documents"),
        ({"query": "drill", "documents": [{"title": "a", "price": "3"}]}, 422, "unknown fields ['price']"),
        ({"query": "drill", "documents": [{"brand": "a"}]}, 422, "needs a 'title'"),
        ({"query": "drill", "documents": ["a"], "colour": "x"}, 422, "colour"),
        ({"query": "drill", "documents": ["a"], "top_n": 0}, 422, "top_n"),
        ({"query": "drill", "documents": ["a"], "rank_fields": ["price"]}, 422, "rank_fields"),
        ({"query": "\u200b\u2060 \ufeff", "documents": ["a"]}, 422, "query must not be empty"),  # zero-width only
        ({"query": "drill", "documents": [{"title": "a", "brand": "b"}], "rank_fields": ["brand"]}, 422,
         "rank_fields must include 'title' or 'text'"),
        ({"documents": ["a"]}, 422, "query"),
        (["not", "an", "object"], 422, "invalid request"),
    ],
)
def test_bad_input_gets_a_json_4xx(server, body, status, fragment):
    assert fragment in assert_json_error(post(server, "/v1/rerank", body), status)


def test_serves_on_loopback_by_default(server):
    # The session server is started without --host: it listens on 127.0.0.1 and nowhere else.
    assert listening_addresses(server.proc.pid) == {"127.0.0.1"}


def test_api_key(keyed_server):
    body = {"query": "drill", "documents": ["a"]}
    assert "API key" in assert_json_error(post(keyed_server, "/v1/rerank", body), 401)
    wrong = post(keyed_server, "/v1/rerank", body, headers={"Authorization": "Bearer nope"})
    assert_json_error(wrong, 401)
    assert post(keyed_server, "/v1/rerank", body, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    assert post(keyed_server, "/v1/classify", body, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    assert httpx.get(keyed_server.url + "/health").status_code == 200
    assert "s3cret-key" not in keyed_server.output()


def test_requests_whose_client_hung_up_are_not_scored(tiny_model_dir):
    """A search engine that gave up (read timeout) must not leave work behind: queued jobs of
    disconnected clients are dropped, not computed for nobody."""
    server = Server(["--model", str(tiny_model_dir)])
    server.wait_ready()

    try:
        busy = threading.Thread(target=lambda: httpx.post(
            f"{server.url}/v1/rerank", timeout=600,  # never abandoned itself, however loaded the machine
            json={"query": "cordless drill", "documents": ["cordless drill kit " * 60] * 800}))
        busy.start()  # keeps the single model thread busy for a while
        time.sleep(0.3)
        for _ in range(3):
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{server.url}/v1/rerank", json={"query": "hose", "documents": ["garden hose"] * 7}, timeout=0.3)
        busy.join()
        deadline = time.time() + 10
        while metric(server.url, "lref_abandoned_requests_total") < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert metric(server.url, "lref_abandoned_requests_total") == 3
        assert metric(server.url, "lref_documents_total") == 800  # only the busy request was judged
    finally:
        server.stop()


def test_batches_wait_for_company_only_while_traffic_is_concurrent(tiny_model_dir):
    """Clients answered together come back a moment apart: while traffic is concurrent the next
    batch waits for them (one batch, not a lone one and then the rest); a lone request after a
    lone request starts at once."""
    from reranker.backends import ScoreJob, build_backend
    from reranker.service.batcher import MicroBatcher
    from reranker.service.config import ServiceConfig
    from reranker.service.metrics import Metrics

    backend = build_backend(ServiceConfig(model=str(tiny_model_dir), device="cpu"))
    sizes: list[int] = []

    class Recording:  # the real backend, with the size of each scoring call written down
        def __getattr__(self, name):
            return getattr(backend, name)

        def label_probs(self, jobs):
            sizes.append(len(jobs))
            return backend.label_probs(jobs)

    async def scenario(company_wait_ms: float) -> list[int]:
        sizes.clear()
        batcher = MicroBatcher(Recording(), Metrics(), max_batch_pairs=256, max_wait_ms=0, company_wait_ms=company_wait_ms)
        batcher.start()

        async def two_apart():  # the second arrives 50 ms after the first
            first = asyncio.ensure_future(batcher.submit(ScoreJob("drill", DOCS)))
            await asyncio.sleep(0.05)
            await asyncio.gather(first, batcher.submit(ScoreJob("hose", DOCS)))

        try:
            await asyncio.gather(*(batcher.submit(ScoreJob(q, DOCS)) for q in ("a", "b")))  # together: merged
            await two_apart()  # traffic was concurrent: waits for the second
            await batcher.submit(ScoreJob("lone", DOCS))
            await batcher.submit(ScoreJob("lone again", DOCS))  # after a lone batch: starts at once
            await two_apart()  # not concurrent any more: the first runs alone
        finally:
            await batcher.stop()
        return list(sizes)

    assert asyncio.run(scenario(company_wait_ms=2000)) == [2, 2, 1, 1, 1, 1]
    assert asyncio.run(scenario(company_wait_ms=0)) == [2, 1, 1, 1, 1, 1, 1]


def test_a_client_that_stalls_sending_its_request_is_cut_off(tiny_model_dir):
    """Idle after connecting, a request head dripped byte by byte, or a body stopped at 9 of 100
    bytes: the connection closes at --request-timeout-s; a slow model answer is not cut off."""
    import socket

    srv = Server(["--model", str(tiny_model_dir), "--request-timeout-s", "1.5"])
    try:
        srv.wait_ready()

        def closed_within(send, seconds: float) -> float:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=seconds + 5) as conn:
                started = time.monotonic()
                try:
                    send(conn)
                    while conn.recv(4096):  # read until the server closes
                        pass
                except (BrokenPipeError, ConnectionResetError):  # closed while we were still sending
                    pass
                return time.monotonic() - started

        assert closed_within(lambda c: None, 1.5) < 4

        def drip(conn):
            for byte in b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n":
                conn.send(bytes([byte]))
                time.sleep(0.1)  # past the deadline before the head is done

        assert closed_within(drip, 1.5) < 6
        head = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        assert closed_within(lambda c: c.send(head + b'{"query":'), 1.5) < 4
        # A whole request is answered, and the connection then serves the next one.
        with httpx.Client(base_url=srv.url) as client:
            for _ in range(2):
                got = client.post("/v1/rerank", json={"query": "drill", "documents": ["cordless drill"]})
                assert got.status_code == 200
                time.sleep(0.5)
    finally:
        srv.stop()
    bad = Server(["--model", str(tiny_model_dir), "--request-timeout-s", "nan"])
    assert bad.proc.wait(timeout=60) == 2 and "--request-timeout-s must be a positive" in bad.output()
    bad.stop()
