"""The product in its home: a real OpenSearch node, the real reranker process, the connector and
pipelines made by `lref opensearch install`, and our tier filter running inside the engine."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import Server, free_port
from engine import DelayProxy, lref

QUERY = "cordless drill"
INDEX = "products"
CATALOG = [
    "cordless drill 18v with battery", "cordless drill and impact driver kit", "drill bit set 29 piece",
    "corded hammer drill 1/2 in", "cordless drill battery pack", "garden hose 50 ft", "kitchen faucet chrome",
    "cordless drill charger", "drill press stand", "cordless right angle drill", "white interior paint gallon",
    "cordless screwdriver", "drill driver bit holder", "compact cordless drill 12v", "drill chuck key",
    "cordless drill case", "brushless cordless drill", "drill stop collar", "cordless drill holster", "spade drill bit",
]


@pytest.fixture(scope="module")
def engine_reranker(tiny_model_dir):
    srv = Server(["--model", str(tiny_model_dir), "--max-wait-ms", "5"])
    srv.wait_ready()
    yield srv
    srv.stop()


def install(node, reranker_url: str, *extra: str):
    return lref("opensearch", "install", "--opensearch", node.url, "--reranker-url", reranker_url,
                "--read-timeout-s", "2", *extra)


@pytest.fixture(scope="module")
def stack(opensearch_node, engine_reranker, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"product_id": f"p{i}", "title": t}) + "\n" for i, t in enumerate(CATALOG)))
    loaded = lref("opensearch", "load", str(catalog), "--opensearch", opensearch_node.url, "--recreate")
    assert loaded.returncode == 0, loaded.stderr
    assert f"indexed {len(CATALOG)} products" in loaded.stdout
    installed = install(opensearch_node, engine_reranker.url)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return opensearch_node


def search(node, pipeline: str | None, ext: dict | None = None, size: int = 50) -> dict:
    body = {"query": {"match": {"title": QUERY}}, "size": size,
            "ext": {"rerank": {"query_context": {"query_text": QUERY}}, **(ext or {})}}
    params = {"search_pipeline": pipeline} if pipeline else {}
    response = httpx.post(f"{node.url}/{INDEX}/_search", params=params, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]["hits"]]


def test_node_is_real_and_on_loopback(opensearch_node):
    status = lref("opensearch", "status", "--port", str(opensearch_node.port), "--state", str(opensearch_node.state))
    report = json.loads(status.stdout)
    assert report["running"] and report["version"] == "3.6.0"
    assert {"opensearch-ml", "opensearch-knn", "opensearch-neural-search", "opensearch-job-scheduler",
            "lref-tier-filter"} <= set(report["plugins"])
    http = httpx.get(f"{opensearch_node.url}/_nodes/http").json()
    for node in http["nodes"].values():
        assert all(addr.startswith("127.0.0.1:") for addr in node["http"]["bound_address"])


def test_pipeline_reorders_tiers_and_drops_bad(stack, engine_reranker):
    plain = search(stack, None)
    bm25 = ids(plain)
    assert len(bm25) >= 10
    titles = {h["_id"]: h["_source"]["title"] for h in plain["hits"]["hits"]}
    # What the reranker itself says about these hits, asked directly.
    judged = httpx.post(f"{engine_reranker.url}/v1/classify",
                        json={"query": QUERY, "documents": [titles[i] for i in bm25]}, timeout=60).json()["results"]
    by_id = dict(zip(bm25, judged))
    kept = [i for i in bm25 if by_id[i]["keep"]]
    dropped = {i for i in bm25 if not by_id[i]["keep"]}
    assert kept and dropped, "the tiny judge should put some hits in the Bad tier and keep others"
    expected = sorted(kept, key=lambda i: -by_id[i]["score"])

    tiered = search(stack, "lref-rerank")
    assert ids(tiered) == expected  # reordered by tier/score, Bad tier removed
    for hit in tiered["hits"]["hits"]:
        j = by_id[hit["_id"]]
        assert hit["_score"] == pytest.approx(j["score"], abs=1e-6)
        assert hit["fields"]["lref_tier"] == [j["tier"]]
        assert hit["fields"]["lref_label"] == [j["label"]]
    report = tiered["ext"]["lref"]
    assert report["reranked"] is True and report["kept"] == len(kept)
    assert {d["_id"] for d in report["dropped"]} == dropped
    assert all(d["tier"] == "Bad" for d in report["dropped"])

    everything = search(stack, "lref-rerank", ext={"lref": {"min_tier": "Bad"}})  # per-request override
    assert sorted(ids(everything)) == sorted(bm25)
    assert ids(search(stack, None)) == bm25  # no pipeline: plain BM25, untouched


def test_install_is_idempotent_and_updates_in_place(stack, engine_reranker):
    again = install(stack, engine_reranker.url)
    assert again.returncode == 0, again.stderr
    rows = [line for line in again.stdout.splitlines() if "│" in line]
    assert rows and all("unchanged" in line for line in rows[1:]), again.stdout
    moved = install(stack, engine_reranker.url.replace("127.0.0.1", "localhost"))
    assert moved.returncode == 0, moved.stderr
    assert "updated" in moved.stdout
    connectors = httpx.post(f"{stack.url}/_plugins/_ml/connectors/_search",
                            json={"query": {"match_phrase": {"name": "lref-reranker"}}}).json()
    assert connectors["hits"]["total"]["value"] == 1  # updated, not duplicated
    assert "localhost" in json.dumps(connectors["hits"]["hits"][0]["_source"]["actions"])
    back = install(stack, engine_reranker.url)
    assert back.returncode == 0 and "updated" in back.stdout
    assert search(stack, "lref-rerank")["ext"]["lref"]["reranked"] is True


def test_reranker_down_keeps_original_hits_then_recovers(stack, engine_reranker, tiny_model_dir):
    bm25 = ids(search(stack, None))
    engine_reranker.stop()
    try:
        for _ in range(3):
            fallback = search(stack, "lref-rerank")
            assert ids(fallback) == bm25  # original hits, original order, nothing dropped
            assert fallback["ext"]["lref"]["reranked"] is False
            assert "lref_tier" not in fallback["hits"]["hits"][0].get("fields", {})
    finally:
        restarted = Server(["--model", str(tiny_model_dir)], port=engine_reranker.port)
        restarted.wait_ready()
        engine_reranker.proc, engine_reranker.log = restarted.proc, restarted.log
    assert search(stack, "lref-rerank")["ext"]["lref"]["reranked"] is True


def test_slow_reranker_falls_back_to_original_order(stack, engine_reranker):
    bm25 = ids(search(stack, None))
    with DelayProxy(engine_reranker.port, free_port(), delay=5.0) as proxy:
        assert install(stack, f"http://127.0.0.1:{proxy.port}").returncode == 0
        try:
            started = time.monotonic()
            slow = search(stack, "lref-rerank")
            assert ids(slow) == bm25 and slow["ext"]["lref"]["reranked"] is False
            assert time.monotonic() - started < 5.0  # the connector's 2 s read timeout, not the 5 s delay
        finally:
            assert install(stack, engine_reranker.url).returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reranker-url", "ftp://127.0.0.1:1"], "reranker URL must look like"),
        (["--min-tier", "Great"], "min tier must be one of"),
        (["--fields", "title;drop"], "document fields must be field names"),
        (["--read-timeout-s", "0"], "read_timeout_s must be between"),
        (["--scheme", "/no/such/scheme.json"], "scheme"),
    ],
)
def test_install_rejects_bad_configuration(opensearch_node, args, message):
    done = lref("opensearch", "install", "--opensearch", opensearch_node.url, *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_install_reports_an_unreachable_or_wrong_engine(engine_reranker):
    nothing = lref("opensearch", "install", "--opensearch", f"http://127.0.0.1:{free_port()}")
    assert nothing.returncode == 2 and "cannot reach OpenSearch" in nothing.stderr
    not_a_node = lref("opensearch", "install", "--opensearch", engine_reranker.url)
    assert not_a_node.returncode == 2 and "not an OpenSearch node" in not_a_node.stderr
    assert "Traceback" not in nothing.stderr + not_a_node.stderr


def test_load_rejects_bad_catalog_before_indexing(opensearch_node, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"product_id": "a1", "title": "ok"}\n{"product_id": "a2"}\n')
    done = lref("opensearch", "load", str(bad), "--opensearch", opensearch_node.url, "--index", "never-made")
    assert done.returncode == 2 and "bad.jsonl:2: title is missing" in done.stderr
    assert httpx.head(f"{opensearch_node.url}/never-made").status_code == 404  # nothing half-loaded


def test_api_key_travels_as_the_connector_credential(stack, keyed_server, tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    assert install(stack, keyed_server.url, "--api-key-file", str(key)).returncode == 0
    try:
        assert search(stack, "lref-rerank")["ext"]["lref"]["reranked"] is True
        key.write_text("wrong-key\n")
        changed = install(stack, keyed_server.url, "--api-key-file", str(key))
        assert changed.returncode == 0 and "updated" in changed.stdout  # a new key is a change
        refused = search(stack, "lref-rerank")  # the reranker answers 401: search falls back, not fails
        assert refused["ext"]["lref"]["reranked"] is False
        assert "s3cret-key" not in keyed_server.output() and "wrong-key" not in keyed_server.output()
    finally:
        key.unlink()
