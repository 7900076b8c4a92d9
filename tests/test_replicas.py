"""Two `lref serve` replicas behind HAProxy (`lref balance`), the connector pointing at the
balancer: one replica SIGKILLed while searches run through the pipeline on a real node."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import Server
from stack import SearchLoad, ids, lref, ready_stack, search
from reranker.balancer import Balancer, haproxy_config

from test_opensearch import CATALOG, QUERY, engine_args

INDEX = "replicas"


@pytest.fixture(scope="module")
def replicas(tiny_model_dir):
    servers = [Server(engine_args(tiny_model_dir)) for _ in range(2)]
    for server in servers:
        server.wait_ready()
    yield servers
    for server in servers:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def balanced(opensearch_node, replicas, tmp_path_factory):
    balancer = Server(["--check-interval-ms", "500", *(a for r in replicas for a in ("--replica", r.url))],
                      command="balance")
    balancer.wait_ready()
    yield ready_stack(opensearch_node, balancer.url, INDEX, CATALOG, tmp_path_factory.mktemp("catalog"),
                      read_timeout_s=6), balancer
    balancer.stop()


def served(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('lref_requests_total{endpoint="/v1/rerank",status="200"'))


def test_both_replicas_serve_through_the_balancer(balanced, replicas):
    node, _ = balanced
    # Started side by side, they measured the CPU once between them (`--dtype auto`): one dtype, one score.
    assert len({httpx.get(f"{r.url}/health", timeout=5).json()["dtype"] for r in replicas}) == 1
    before = [served(r) for r in replicas]
    results = [search(node, INDEX, QUERY, "lref-rerank").json() for _ in range(6)]
    assert all(r["ext"]["lref"]["reranked"] for r in results)
    assert len({tuple(ids(r)) for r in results}) == 1  # stateless replicas of one judge: one answer
    assert all(served(r) > b for r, b in zip(replicas, before))  # both took a share


def test_a_replica_killed_under_load_fails_no_search(balanced, replicas):
    """SIGKILL one replica while four threads search through the pipeline. Every search answers
    200; in the health-check window a search is either reranked by the survivor (HAProxy retried
    it) or answered in the original order (the connector gave up); after it, all are reranked."""
    node, balancer = balanced
    bm25 = ids(search(node, INDEX, QUERY, None).json())
    reranked = ids(search(node, INDEX, QUERY, "lref-rerank").json())
    with SearchLoad(node, INDEX, QUERY, "lref-rerank", workers=4) as load:
        marks = {"before": time.monotonic()}
        load.wait_for(8, marks["before"])
        replicas[0].proc.kill()
        replicas[0].proc.wait()
        marks["killed"] = time.monotonic()
        time.sleep(3)  # two missed checks at 500 ms, with room: HAProxy has marked it down
        marks["marked_down"] = time.monotonic()
        load.wait_for(8, marks["marked_down"])
        marks["end"] = time.monotonic()
    errors = [o for o in load.outcomes if o.status != 200]
    assert not errors, errors[:3]

    def count(start: str, end: str) -> dict:
        outcomes = load.since(marks[start], marks[end])
        kept = [o for o in outcomes if o.result["ext"]["lref"]["reranked"]]
        assert all(ids(o.result) == reranked for o in kept)
        original = [o for o in outcomes if not o.result["ext"]["lref"]["reranked"]]
        assert all(ids(o.result) == bm25 for o in original)
        return {"searches": len(outcomes), "reranked": len(kept), "original_order": len(original)}

    # Searches that straddle the kill are counted in the window too.
    window = load.overlapping(marks["killed"], marks["marked_down"])
    figures = {"before": count("before", "killed"),
               "window": {"searches": len(window),
                          "reranked": sum(o.result["ext"]["lref"]["reranked"] for o in window)},
               "after": count("marked_down", "end")}
    figures["window"]["original_order"] = figures["window"]["searches"] - figures["window"]["reranked"]
    print(f"replica killed: {figures}")
    assert figures["before"]["original_order"] == 0 and figures["after"]["original_order"] == 0
    assert figures["after"]["searches"] >= 8


def test_haproxy_accepts_the_config_for_names_that_do_not_resolve_yet(tmp_path):
    """The compose file's balancer names containers that may not exist yet when HAProxy starts."""
    written = lref("balance", "--replica", "http://reranker-1:8000", "--replica", "http://reranker-2:8000",
                   "--host", "0.0.0.0", "--write-config", str(tmp_path / "haproxy.cfg"))
    assert written.returncode == 0, written.stderr  # `haproxy -c` passed on it
    assert (tmp_path / "haproxy.cfg").read_text() == haproxy_config(
        Balancer(("reranker-1:8000", "reranker-2:8000"), host="0.0.0.0"))


@pytest.mark.parametrize("args, message", [
    (["--replica", "ftp://127.0.0.1:1"], "--replica must look like http://host:port"),
    (["--replica", "http://127.0.0.1"], "--replica must look like"),
    (["--replica", "http://127.0.0.1:8000/v1"], "--replica must look like"),
    (["--replica", "http://127.0.0.1:8000", "--check-interval-ms", "0"], "--check-interval-ms must be between"),
    (["--replica", "http://127.0.0.1:8000", "--port", "0"], "TCP port"),
])
def test_bad_balancer_options_are_one_line(args, message):
    done = lref("balance", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
