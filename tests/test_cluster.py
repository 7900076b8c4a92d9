"""A 3-node cluster on loopback (`lref opensearch up --nodes 3`): the catalog spread over three
primaries with a replica each, the pipeline answering on every member, and a data node killed
(SIGKILL) while searches run through the pipeline."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from conftest import listening_addresses
from stack import SearchLoad, ids, lref, ready_stack, search
from test_opensearch import CATALOG, INDEX, QUERY, engine_reranker  # noqa: F401 (a fixture, one for this module)


@pytest.fixture(scope="module")
def cluster(opensearch_cluster, engine_reranker, tmp_path_factory):
    return ready_stack(opensearch_cluster, engine_reranker.url, INDEX, CATALOG, tmp_path_factory.mktemp("catalog"))


def status(node) -> dict:
    done = lref("opensearch", "status", "--port", str(node.port), "--state", str(node.state))
    return json.loads(done.stdout)


def health(url: str) -> dict:
    return httpx.get(f"{url}/_cluster/health", timeout=10).json()


def test_three_members_form_one_cluster_on_loopback(cluster):
    report = status(cluster)
    assert report["running"] and report["number_of_nodes"] == 3 and report["version"] == cluster.version
    assert [n["url"] for n in report["nodes"]] == cluster.urls and all(n["pid"] for n in report["nodes"])
    assert report["cluster_manager"] in {n["name"] for n in report["nodes"]}
    assert "lref-tier-filter" in report["plugins"]
    for member in report["nodes"]:
        assert listening_addresses(member["pid"]) == {"127.0.0.1"}
    shards = httpx.get(f"{cluster.url}/_cat/shards/{INDEX}?format=json", timeout=10).json()
    primaries = {s["shard"] for s in shards if s["prirep"] == "p"}
    assert len(primaries) == 3 and len(shards) == 6 and {s["state"] for s in shards} == {"STARTED"}
    assert len({s["node"] for s in shards}) == 3  # spread over every member
    assert health(cluster.url)["status"] == "green"


def test_the_pipeline_answers_the_same_on_every_member(cluster):
    first = None
    for url in cluster.urls:
        response = search(cluster, INDEX, QUERY, "lref-rerank", url=url)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["ext"]["lref"]["reranked"] is True and result["_shards"]["failed"] == 0
        first = first or ids(result)
        assert ids(result) == first


@pytest.mark.parametrize("role", ["data node", "cluster manager"])
def test_a_node_killed_under_load_loses_no_hits(cluster, role):
    """Searches run through the pipeline on the two members that stay, while the third (a data
    node, or the elected cluster manager, which is a data node too) is SIGKILLed, and until the
    cluster is yellow again with its replicas promoted; then `up` starts the killed member again
    and the cluster returns to green. Counted per phase: errors, responses with failed shards,
    hits lost against the hits before the kill, searches not reranked."""
    report = status(cluster)
    manager = report["cluster_manager"]
    victim = next(n for n in report["nodes"] if (n["name"] == manager) == (role == "cluster manager"))
    survivors = [u for u in cluster.urls if u != victim["url"]]
    before_hits = set(ids(search(cluster, INDEX, QUERY, "lref-rerank").json()))
    with SearchLoad(cluster, INDEX, QUERY, "lref-rerank", workers=4, urls=survivors) as load:
        marks = {"before": time.monotonic()}
        load.wait_for(8, marks["before"])
        os.kill(victim["pid"], signal.SIGKILL)
        marks["killed"] = time.monotonic()
        deadline = time.monotonic() + 120
        while not (h := health(survivors[0]))["number_of_nodes"] == 2 or h["status"] == "red" \
                or h["initializing_shards"] or h["relocating_shards"]:
            assert time.monotonic() < deadline, f"not yellow on 2 nodes in 120 s: {h}"
            time.sleep(0.5)
        marks["recovered"] = time.monotonic()
        load.wait_for(8, marks["recovered"])
        marks["end"] = time.monotonic()
    recovered_as = h["status"]

    def phase(outcomes: list) -> dict:
        answered = [o for o in outcomes if o.status == 200]
        lost = sum(len(before_hits - set(ids(o.result)) - {d["_id"] for d in o.result["ext"]["lref"]["dropped"]})
                   for o in answered)
        return {"searches": len(outcomes), "errors": len(outcomes) - len(answered), "lost_hits": lost,
                "failed_shards": sum(1 for o in answered if o.result["_shards"]["failed"]),
                "not_reranked": sum(1 for o in answered if not o.result["ext"]["lref"]["reranked"])}

    figures = {"before": phase(load.since(marks["before"], marks["killed"])),
               "during": phase(load.overlapping(marks["killed"], marks["recovered"])),  # under way at the kill too
               "after": phase(load.since(marks["recovered"], marks["end"]))}
    print(f"{role} killed: {victim['name']}; recovered to {recovered_as} in "
          f"{marks['recovered'] - marks['killed']:.1f} s; {json.dumps(figures)}")
    assert figures["before"] == dict(figures["before"], errors=0, lost_hits=0, failed_shards=0, not_reranked=0)
    assert figures["after"] == dict(figures["after"], errors=0, lost_hits=0, failed_shards=0, not_reranked=0)
    assert recovered_as in ("yellow", "green")

    # The killed member rejoins: `up` with the same --nodes starts only what is not running.
    again = cluster.up_again()
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("starting OpenSearch") == 1, again.stdout
    deadline = time.monotonic() + 180
    while health(cluster.url)["status"] != "green":
        assert time.monotonic() < deadline, health(cluster.url)
        time.sleep(1)
    report = status(cluster)
    assert report["number_of_nodes"] == 3 and all(n["pid"] for n in report["nodes"])


@pytest.mark.parametrize("args, message", [
    (["--nodes", "3", "--port", "65534"], "--port 65534 with --nodes 3 runs past port 65535"),
    (["--nodes", "3", "--transport-port", "65535"], "--transport-port 65535 with --nodes 3 runs past"),
    (["--nodes", "3", "--secure"], "--secure with --nodes is not built yet"),
])
def test_bad_cluster_options_are_one_line_and_start_nothing(args, message, tmp_path):
    done = lref("opensearch", "up", "--state", str(tmp_path / "cluster"), *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "cluster").exists()
