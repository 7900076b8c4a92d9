"""The product in its home: a real OpenSearch node, the real reranker process, the connector and
pipelines made by `lref opensearch install`, and our tier filter running inside the engine."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from conftest import Server, free_port, listening_addresses, metric
from stack import DelayProxy, SearchLoad, TestNode, ids, install, lref, ready_stack
from stack import search as engine_search
from engine.node import pids_naming

QUERY = "cordless drill"
INDEX = "products"
CATALOG = [
    "cordless drill 18v with battery", "cordless drill and impact driver kit", "drill bit set 29 piece",
    "corded hammer drill 1/2 in", "cordless drill battery pack", "garden hose 50 ft", "kitchen faucet chrome",
    "cordless drill charger", "drill press stand", "cordless right angle drill", "white interior paint gallon",
    "cordless screwdriver", "drill driver bit holder", "compact cordless drill 12v", "drill chuck key",
    "cordless drill case", "brushless cordless drill", "drill stop collar", "cordless drill holster", "spade drill bit",
]


def engine_args(tiny_model_dir) -> list[str]:
    return ["--model", str(tiny_model_dir), "--max-wait-ms", "5"]


@pytest.fixture(scope="module")
def engine_reranker(tiny_model_dir):
    srv = Server(engine_args(tiny_model_dir))
    srv.wait_ready()
    yield srv
    srv.stop()


ENGINES = {"3.6": "opensearch_node", "2.19": "opensearch_node_2x", "2.19-secure": "opensearch_node_secure"}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine_node(request):
    """Each engine line the product supports: 3.6.0 (the default), 2.19.1, and 2.19.1 secured (TLS,
    the installer as admin, every search as the read-only user). Every test through the pipeline
    runs on all three, from the same plugin sources and installer."""
    return request.getfixturevalue(ENGINES[request.param])


@pytest.fixture(scope="module")
def stack(engine_node, engine_reranker, tmp_path_factory):
    return ready_stack(engine_node, engine_reranker.url, INDEX, CATALOG, tmp_path_factory.mktemp("catalog"))


def search(node, pipeline: str | None, ext: dict | None = None) -> dict:
    response = engine_search(node, INDEX, QUERY, pipeline, ext)
    assert response.status_code == 200, response.text
    return response.json()


def test_node_is_real_and_on_loopback(engine_node):
    status = lref("opensearch", "status", "--port", str(engine_node.port), "--state", str(engine_node.state))
    report = json.loads(status.stdout)
    assert report["running"] and report["version"] == engine_node.version
    assert {"opensearch-ml", "opensearch-knn", "opensearch-neural-search", "opensearch-job-scheduler",
            "lref-tier-filter"} <= set(report["plugins"])
    assert ("opensearch-security" in report["plugins"]) == engine_node.secure
    http = httpx.get(f"{engine_node.url}/_nodes/http", **engine_node.http()).json()
    for node in http["nodes"].values():
        assert all(addr.startswith("127.0.0.1:") for addr in node["http"]["bound_address"])
    # What the process really listens on (HTTP and transport), as the kernel sees it.
    assert listening_addresses(report["pid"]) == {"127.0.0.1"}


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


def test_an_updated_connector_says_what_changed():
    from engine.install import InstallSpec, connector_body, connector_changes

    old = connector_body(InstallSpec(read_timeout_s=30))  # e.g. a demo's connector, before both defaulted to 10 s
    new = connector_body(InstallSpec(reranker_url="http://localhost:8000"))
    assert connector_changes(old, new) == "url http://127.0.0.1:8000/v1/rerank -> http://localhost:8000/v1/rerank, " \
                                          "read_timeout 30 -> 10 s"
    assert connector_changes(new, connector_body(InstallSpec(reranker_url="http://localhost:8000", api_key="k"))) \
        == "API key or other settings"


def test_install_is_idempotent_and_updates_in_place(stack, engine_reranker):
    again = install(stack, engine_reranker.url)
    assert again.returncode == 0, again.stderr
    rows = [line for line in again.stdout.splitlines() if "│" in line]
    assert rows and all("unchanged" in line for line in rows[1:]), again.stdout
    moved = install(stack, engine_reranker.url.replace("127.0.0.1", "localhost"))
    assert moved.returncode == 0, moved.stderr
    assert "updated" in moved.stdout
    connectors = httpx.post(f"{stack.url}/_plugins/_ml/connectors/_search",
                            json={"query": {"match_phrase": {"name": "lref-reranker"}}}, **stack.http()).json()
    assert connectors["hits"]["total"]["value"] == 1  # updated, not duplicated
    # Read by id (real time): a search may still see the copy from before the index's next refresh.
    connector = httpx.get(f"{stack.url}/_plugins/_ml/connectors/{connectors['hits']['hits'][0]['_id']}",
                          **stack.http()).json()
    assert "localhost" in json.dumps(connector["actions"])
    back = install(stack, engine_reranker.url)
    assert back.returncode == 0 and "updated" in back.stdout
    assert search(stack, "lref-rerank")["ext"]["lref"]["reranked"] is True


def restart_if_down(reranker: Server, tiny_model_dir) -> None:
    """Start the module's reranker again on its port (after it was killed)."""
    if reranker.proc.poll() is None:
        return
    restarted = Server(engine_args(tiny_model_dir), port=reranker.port)
    reranker.proc, reranker.log = restarted.proc, restarted.log
    restarted.wait_ready()


def test_searches_under_load_survive_reranker_kill_restart_and_slowness(stack, engine_reranker, tiny_model_dir):
    """Three threads search through the pipeline without pause while the reranker is killed
    (SIGKILL), started again, and made slower than the connector's read timeout. Every search
    answers 200. Whenever the rerank step cannot run, the hits are the BM25 hits in BM25 order;
    whenever it can, the reranked ones. No hit is lost: each BM25 hit is returned or reported as
    dropped to the Bad tier."""
    bm25 = ids(search(stack, None))
    # A read timeout that a healthy reranker meets even on a busy 2-core machine, and a delay beyond it.
    timeout, delay = 6, 15.0
    with DelayProxy(engine_reranker.port, free_port(), delay=0) as proxy:
        assert install(stack, f"http://127.0.0.1:{proxy.port}", read_timeout_s=timeout).returncode == 0
        try:
            reranked = search(stack, "lref-rerank")
            assert reranked["ext"]["lref"]["reranked"] is True
            with SearchLoad(stack, INDEX, QUERY, "lref-rerank") as load:
                marks = {"up": time.monotonic()}
                load.wait_for(6, marks["up"])
                engine_reranker.proc.kill()
                engine_reranker.proc.wait()
                marks["down"] = time.monotonic()
                load.wait_for(6, marks["down"])
                marks["restarting"] = time.monotonic()  # loading its model: 503 until ready
                restart_if_down(engine_reranker, tiny_model_dir)
                marks["back"] = time.monotonic()
                load.wait_for(6, marks["back"])
                proxy.delay = delay
                marks["slow"] = time.monotonic()
                load.wait_for(3, marks["slow"])  # one per thread, each cut at the read timeout
                proxy.delay = 0
                marks["fast"] = time.monotonic()
                load.wait_for(6, marks["fast"])
                marks["end"] = time.monotonic()
        finally:
            restart_if_down(engine_reranker, tiny_model_dir)
            assert install(stack, engine_reranker.url).returncode == 0

    errors = [o for o in load.outcomes if o.status != 200]
    assert not errors, errors[:3]
    lost = 0
    for outcome in load.outcomes:
        hits, report = ids(outcome.result), outcome.result["ext"]["lref"]
        lost += len(set(bm25) - set(hits) - {d["_id"] for d in report.get("dropped", [])})
        if report["reranked"]:
            assert hits == ids(reranked)
        else:  # the original hits in the original order, untouched
            assert hits == bm25 and "lref_tier" not in outcome.result["hits"]["hits"][0].get("fields", {})
    print(f"{len(load.outcomes)} searches, {len(errors)} errors, {lost} lost hits")
    assert lost == 0

    def reranked_in(start: str, end: str) -> set[bool]:
        return {o.result["ext"]["lref"]["reranked"] for o in load.since(marks[start], marks[end])}

    assert reranked_in("up", "down") == {True}
    assert reranked_in("down", "restarting") == {False}  # killed
    assert reranked_in("back", "slow") == {True}  # restarted
    assert reranked_in("slow", "fast") == {False}  # slow
    assert reranked_in("fast", "end") == {True}  # fast again
    # Cut by the connector's timeout, not left waiting for the slow reranker.
    assert all(o.ended - o.started < delay for o in load.since(marks["slow"], marks["fast"]))


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
    for url in ("ftp://127.0.0.1:9200", "not a url", "http://127.0.0.1:99999"):
        for command in (["opensearch", "install"], ["opensearch", "load", "catalog.jsonl"]):
            done = lref(*command, "--opensearch", url)
            assert done.returncode == 2 and "OpenSearch URL must look like http(s)://host:port" in done.stderr, done.stderr


def test_load_rejects_bad_catalog_before_indexing(opensearch_node, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"product_id": "a1", "title": "ok"}\n{"product_id": "a2"}\n')
    done = lref("opensearch", "load", str(bad), "--opensearch", opensearch_node.url, "--index", "never-made")
    assert done.returncode == 2 and "bad.jsonl:2: title is missing" in done.stderr
    assert httpx.head(f"{opensearch_node.url}/never-made").status_code == 404  # nothing half-loaded
    good = tmp_path / "good.jsonl"
    good.write_text('{"product_id": "a1", "title": "ok"}\n')
    for index, message in ((".plugins-ml-config", "system or hidden"), ("", "must not be empty"),
                           ("_bad", "not a valid OpenSearch index name"), ("Upper", "not a valid")):
        done = lref("opensearch", "load", str(good), "--opensearch", opensearch_node.url, "--index", index)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert httpx.get(f"{opensearch_node.url}/.plugins-ml-config/_doc/a1").status_code == 404
    long_id = tmp_path / "long.jsonl"
    long_id.write_text(json.dumps({"product_id": "x" * 1000, "title": "ok"}) + "\n")
    done = lref("opensearch", "load", str(long_id), "--opensearch", opensearch_node.url, "--index", "never-made")
    assert done.returncode == 2 and "longer than 512 bytes" in done.stderr
    # a value of the wrong type for the mapping is found by the reader, before any product goes in
    typed = tmp_path / "typed.jsonl"
    typed.write_text('{"product_id": "a1", "title": "ok"}\n{"product_id": "a2", "title": "ok"}\n'
                     '{"product_id": "a3", "title": "ok", "price": "cheap"}\n')
    done = lref("opensearch", "load", str(typed), "--opensearch", opensearch_node.url, "--index", "never-made")
    assert done.returncode == 2 and "typed.jsonl:3: price is not a number (float field): \"cheap\"" in done.stderr
    # one OpenSearch itself refuses (a keyword term past Lucene's 32,766 bytes): the index this load
    # created is removed again, not left holding the products before it
    immense = tmp_path / "immense.jsonl"
    immense.write_text('{"product_id": "a1", "title": "ok"}\n{"product_id": "a2", "title": "ok"}\n'
                       + json.dumps({"product_id": "a3", "title": "ok", "color": "x" * 40_000}) + "\n")
    done = lref("opensearch", "load", str(immense), "--opensearch", opensearch_node.url, "--index", "never-made")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]  # the rest: the progress bar
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(
        "error: 1 product(s) were refused by OpenSearch (index never-made removed again, nothing loaded); "
        "first: product_id a3: Document contains at least one immense term"), done.stderr
    assert httpx.head(f"{opensearch_node.url}/never-made").status_code == 404


def test_a_failed_up_leaves_no_jvm_and_a_busy_port_starts_nothing(opensearch_node):
    """`up` that cannot get healthy in time stops the JVM it started; a port in use is refused
    before anything is assembled or started."""
    node = TestNode(free_port(), free_port())
    try:
        node.state.mkdir(parents=True, exist_ok=True)
        late = lref("opensearch", "up", "--port", str(node.port), "--transport-port", str(node.transport_port),
                    "--heap", "1g", "--state", str(node.state), "--timeout", "1")
        assert late.returncode == 2 and "not healthy after 1s" in late.stderr, late.stderr
        assert not (node.state / "opensearch.pid").exists() and pids_naming(node.state) == []
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            refused = lref("opensearch", "up", "--port", str(node.port), "--transport-port", str(taken),
                           "--state", str(node.state))
        assert refused.returncode == 2 and f"port {taken} on 127.0.0.1 is in use" in refused.stderr
        assert "starting OpenSearch" not in refused.stdout and pids_naming(node.state) == []
        for bad, message in ((["--timeout", "nan"], "--timeout must be a positive"), (["--port", "99999"], "TCP port")):
            wrong = lref("opensearch", "up", "--state", str(node.state), *bad)
            assert wrong.returncode == 2 and message in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        node.down()


UNAUTHORIZED = 'lref_requests_total{endpoint="/v1/rerank",status="401"}'


def test_api_key_travels_as_the_connector_credential(stack, keyed_server, tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    bm25 = ids(search(stack, None))
    installs = [install(stack, keyed_server.url, "--api-key-file", str(key))]
    assert installs[-1].returncode == 0
    try:
        assert search(stack, "lref-rerank")["ext"]["lref"]["reranked"] is True
        key.write_text("wrong-key\n")
        refusals = metric(keyed_server.url, UNAUTHORIZED)
        installs.append(install(stack, keyed_server.url, "--api-key-file", str(key)))
        # The connector is updated with the new key, and the install's last step, one predict through
        # it, is refused by the reranker (401): install says so in one line instead of succeeding.
        assert installs[-1].returncode == 2 and "predict through the connector" in installs[-1].stderr, installs[-1].stderr
        assert len(installs[-1].stderr.strip().splitlines()) == 1
        refused = search(stack, "lref-rerank")  # the reranker answers 401: search falls back, not fails
        assert refused["ext"]["lref"]["reranked"] is False and ids(refused) == bm25
        installs.append(install(stack, keyed_server.url))  # no key at all: 401 as well, same fallback
        assert installs[-1].returncode == 2 and "predict through the connector" in installs[-1].stderr
        missing = search(stack, "lref-rerank")
        assert missing["ext"]["lref"]["reranked"] is False and ids(missing) == bm25
        assert metric(keyed_server.url, UNAUTHORIZED) == refusals + 4  # two install checks, two searches
        # The key is in none of: the install output, the reranker's log, the node's logs.
        logs = [i.stdout + i.stderr for i in installs] + [keyed_server.output()]
        logs += [f.read_text(errors="replace") for f in (stack.state / "logs").rglob("*") if f.is_file()]
        assert not [text for text in logs if "s3cret-key" in text or "wrong-key" in text]
    finally:
        key.unlink()


def test_install_takes_the_tier_policy_of_the_running_reranker(opensearch_node, engine_reranker, tiny_model_dir):
    """The pipeline's filter keeps what the reranker keeps: the installer reads the min tier and level
    names from the reranker's /health, and refuses a --min-tier that disagrees with it."""
    strict = Server([*engine_args(tiny_model_dir), "--min-tier", "Good"])
    try:
        strict.wait_ready()
        policy = httpx.get(strict.url + "/health").json()["policy"]
        assert policy["min_tier"] == "Good" and policy["levels"] == ["Excellent", "Related", "Mismatch", "Irrelevant"]
        done = install(opensearch_node, strict.url)
        assert done.returncode == 0, done.stderr
        assert "min tier Good" in done.stdout and "read from its /health" in done.stdout
        assert "one document judged through the engine: tier" in done.stdout  # the install's predict check
        pipeline = httpx.get(f"{opensearch_node.url}/_search/pipeline/lref-rerank").json()["lref-rerank"]
        tier_filter = next(p["lref_tier"] for p in pipeline["response_processors"] if "lref_tier" in p)
        assert tier_filter["min_tier"] == "Good"
        assert tier_filter["level_names"] == ["Irrelevant", "Mismatch", "Related", "Excellent"]
        refused = install(opensearch_node, strict.url, "--min-tier", "Mid")
        assert refused.returncode == 2 and "disagrees with the reranker" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        strict.stop()
    # Not up: the given option or the default, said so; then back to the module's reranker for later tests.
    gone = install(opensearch_node, strict.url, "--min-tier", "Bad")
    assert gone.returncode == 0 and "not reachable" in gone.stdout, gone.stdout + gone.stderr
    assert "predict check skipped" in gone.stdout
    pipeline = httpx.get(f"{opensearch_node.url}/_search/pipeline/lref-rerank").json()["lref-rerank"]
    assert next(p["lref_tier"] for p in pipeline["response_processors"] if "lref_tier" in p)["min_tier"] == "Bad"
    back = install(opensearch_node, engine_reranker.url)
    assert back.returncode == 0 and "min tier Mid" in back.stdout, back.stdout + back.stderr
