"""`lref audit` against a real OpenSearch node (the session's), its own index, the connector and
pipelines made by `lref opensearch install`, and a real `lref serve` with the tiny model. What the
audit reports is checked against what the engine and the reranker say when asked directly."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import Server, free_port
from stack import lref
from apps.audit import AuditError, metrics
from apps.audit.judgments import query_set, read_judgments, read_queries
from apps.audit.levels import FOUR_LEVEL, Levels
from lref.cli import app

INDEX = "audit-products"
CATALOG = {
    "d1": "cordless drill 18v with battery", "d2": "cordless drill and impact driver kit", "d3": "drill bit set 29 piece",
    "d4": "corded hammer drill 1/2 in", "d5": "cordless drill battery pack", "d6": "garden hose 50 ft",
    "d7": "kitchen faucet chrome", "d8": "cordless drill charger", "d9": "drill press stand",
    "d10": "cordless right angle drill", "d11": "white interior paint gallon", "d12": "cordless screwdriver",
    "d13": "drill driver bit holder", "d14": "compact cordless drill 12v", "d15": "drill chuck key",
    "d16": "cordless drill case", "d17": "brushless cordless drill", "d18": "garden hose nozzle",
    "d19": "expandable garden hose 100 ft", "d20": "spade drill bit",
}
# Every hit of "cordless drill" and "drill" is judged (so what the filter drops is judged); the other
# two queries are judged in part (so --judge has hits to label).
JUDGED = {
    "cordless drill": {"d1": 4, "d2": 3, "d3": 1, "d4": 2, "d5": 2, "d8": 2, "d10": 4, "d12": 2, "d14": 4, "d16": 1,
                       "d17": 4, "d6": 1, "d7": 1, "d9": 1, "d11": 1, "d13": 1, "d15": 1, "d18": 1, "d19": 1, "d20": 1},
    "drill": {"d1": 4, "d2": 3, "d3": 2, "d4": 4, "d5": 2, "d8": 1, "d9": 1, "d10": 4, "d13": 1, "d14": 4, "d15": 1,
              "d16": 1, "d17": 4, "d20": 2},
    "garden hose": {"d6": 4},
    "drill bit": {"d3": 4, "d20": 3, "d13": 2},
}
SIZE, K = 10, 5
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["audit", *args])


def write_jsonl(path: Path, judged: dict = JUDGED) -> Path:
    path.write_text("".join(json.dumps({"query": q, "product_id": d, "level": lv}) + "\n"
                            for q, docs in judged.items() for d, lv in docs.items()))
    return path


@pytest.fixture(scope="module")
def audit_reranker(tiny_model_dir):
    srv = Server(["--model", str(tiny_model_dir)])
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def audit_stack(opensearch_node, audit_reranker, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("audit-catalog") / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"product_id": i, "title": t}) + "\n" for i, t in CATALOG.items()))
    loaded = runner.invoke(app, ["opensearch", "load", str(catalog), "--opensearch", opensearch_node.url,
                                 "--index", INDEX, "--recreate"])
    assert loaded.exit_code == 0, loaded.output
    installed = runner.invoke(app, ["opensearch", "install", "--opensearch", opensearch_node.url,
                                    "--reranker-url", audit_reranker.url, "--read-timeout-s", "5"])
    assert installed.exit_code == 0, installed.output
    return opensearch_node


def bm25(node, query: str) -> list[dict]:
    body = {"query": {"match": {"title": query}}, "size": SIZE}
    return httpx.post(f"{node.url}/{INDEX}/_search", json=body, timeout=30).json()["hits"]["hits"]


# ---- judgment formats -----------------------------------------------------------------------

def test_every_format_reads_the_same_judgments(tmp_path):
    grades = FOUR_LEVEL.parse_grade_map(FOUR_LEVEL.default_grades)
    want = {"cordless drill": {"d1": 4, "d3": 1, "d4": 2}, "garden hose": {"d6": 3}}
    (tmp_path / "ours.jsonl").write_text(
        '{"query": "cordless drill", "product_id": "d1", "level": 4}\n'
        '{"query": "cordless drill", "product_id": "d3", "relevance": 1.33}\n'  # Home Depot mean rating
        '\n{"query": "cordless drill", "product_id": "d4", "label": "mismatch"}\n'
        '{"query": "garden hose", "product_id": "d6", "level": "Related"}\n')
    (tmp_path / "run.qrels").write_text("101 0 d1 3\n101 0 d3 0\n101 0 d4 1\n102 0 d6 2\n")
    (tmp_path / "topics.tsv").write_text("101\tcordless drill\n102\tgarden hose\n")
    (tmp_path / "srw.json").write_text(json.dumps({"name": "n", "type": "IMPORT_JUDGMENT", "judgmentRatings": [
        {"query": "cordless drill", "ratings": [{"docId": "d1", "rating": "3.000"}, {"docId": "d3", "rating": "0.000"},
                                                {"docId": "d4", "rating": 1}]},
        {"query": "garden hose", "ratings": [{"docId": "d6", "rating": "2.000"}]}]}))
    (tmp_path / "quepid.csv").write_text("query,docid,rating\ncordless drill,d1,3\ncordless drill,d3,0\n"
                                         "cordless drill,d4,1\ngarden hose,d6,2\ngarden hose,d7,\n")  # d7 unrated
    for name, fmt in [("ours.jsonl", "jsonl"), ("srw.json", "srw"), ("quepid.csv", "quepid")]:
        found = read_judgments(tmp_path / name, "auto", grades)
        assert found.format == fmt and found.qrels == want, name
        assert query_set(found, None, None) == {q: q for q in want}
    trec = read_judgments(tmp_path / "run.qrels", "auto", grades)
    assert trec.format == "trec" and trec.qrels == {"101": want["cordless drill"], "102": want["garden hose"]}
    assert query_set(trec, read_queries(tmp_path / "topics.tsv"), None) == {"101": "cordless drill", "102": "garden hose"}
    # Formats are also told by content, and --grades remaps numeric grades (here binary qrels).
    (tmp_path / "binary.txt").write_text("101 0 d1 1\n101 0 d3 0\n")
    binary = read_judgments(tmp_path / "binary.txt", "auto", FOUR_LEVEL.parse_grade_map("0=Irrelevant,1=Excellent"))
    assert binary.format == "trec" and binary.qrels == {"101": {"d1": 4, "d3": 1}}
    # A query file narrows the set; --limit keeps the first N.
    (tmp_path / "only.txt").write_text("garden hose\nnever judged\n")
    ours = read_judgments(tmp_path / "ours.jsonl", "auto", grades)
    assert query_set(ours, read_queries(tmp_path / "only.txt"), None) == {"garden hose": "garden hose",
                                                                          "never judged": "never judged"}
    assert list(query_set(ours, None, 1)) == ["cordless drill"]
    # Another scheme counts in its own names and grades; numeric ratings are 0, 1, ... worst first by default.
    esci = Levels.named("esci")
    assert (esci.default_grades, esci.irrelevant, esci.default_relevant) == (
        "0=Irrelevant,1=Complement,2=Substitute,3=Exact", 0, 3)
    (tmp_path / "esci.qrels").write_text("101 0 d1 3\n101 0 d3 0\n101 0 d4 Complement\n")
    found = read_judgments(tmp_path / "esci.qrels", "auto", esci.parse_grade_map(esci.default_grades), esci)
    assert found.qrels == {"101": {"d1": 3, "d3": 0, "d4": 1}}
    (tmp_path / "homedepot.jsonl").write_text('{"query": "cordless drill", "product_id": "d3", "relevance": 1.33}\n')
    with pytest.raises(AuditError, match="maps onto four_level levels, not esci's"):
        read_judgments(tmp_path / "homedepot.jsonl", "auto", grades, esci)  # Home Depot's mean ratings are four_level


# ---- metrics --------------------------------------------------------------------------------

def test_metrics_match_hand_computed_values():
    # q1 ranking a b c d: a Excellent(4), b Irrelevant(1), c unjudged, d Related(3); e Mismatch(2) and
    # f Excellent not retrieved. q2 returns nothing. Relevant = level >= 3: a, d, f for q1.
    qrels = {"q1": {"a": 4, "b": 1, "d": 3, "e": 2, "f": 4}, "q2": {"x": 4}}
    got = metrics.per_query({"q1": ["a", "b", "c", "d"], "q2": []}, qrels, ["q1", "q2"], 4, 3)
    dcg = 3 / math.log2(2) + 0 + 0 + 2 / math.log2(5)  # gains = level - 1
    idcg = 3 / math.log2(2) + 3 / math.log2(3) + 2 / math.log2(4) + 1 / math.log2(5)
    assert got["P@4"] == {"q1": pytest.approx(2 / 4), "q2": 0.0}
    assert got["R@4"]["q1"] == pytest.approx(2 / 3)
    assert got["nDCG@4"]["q1"] == pytest.approx(dcg / idcg)
    # judged only: c is dropped, so the condensed list a b d ranks d third
    assert got["nDCGj@4"]["q1"] == pytest.approx((3 + 0 + 2 / math.log2(4)) / idcg)
    assert got["MRR"]["q1"] == pytest.approx(1.0)
    assert got["Judged@4"]["q1"] == pytest.approx(3 / 4)
    assert got["IrrRate@4"]["q1"] == pytest.approx(1 / 4)
    assert metrics.means(got)["P@4"] == pytest.approx(0.25)  # a query with no hits counts as 0
    later = metrics.per_query({"q1": ["c", "b", "a"]}, qrels, ["q1"], 4, 3)
    assert later["MRR"]["q1"] == pytest.approx(1 / 3)

    same = metrics.paired_test({"a": 0.1, "b": 0.5}, {"a": 0.1, "b": 0.5})
    assert same == {"delta": 0.0, "p_value": 1.0, "queries": 2}
    shifted = metrics.paired_test({str(i): i / 10 for i in range(8)}, {str(i): i / 10 + 0.2 + (i % 2) / 100 for i in range(8)})
    assert shifted["delta"] == pytest.approx(0.205) and shifted["p_value"] < 1e-6
    noisy = metrics.paired_test({"a": 0.1, "b": 0.9, "c": 0.5}, {"a": 0.9, "b": 0.1, "c": 0.5})
    assert noisy["delta"] == pytest.approx(0.0) and noisy["p_value"] > 0.9


# ---- the real run ---------------------------------------------------------------------------

def expected_filter_audit(node, reranker) -> dict:
    """What the audit must find, from BM25 and the reranker's own /v1/classify, asked directly."""
    out = {"dropped": 0, "dropped_judged": 0, "irrelevant": 0, "below": 0, "relevant": 0, "relevant_dropped": 0,
           "irrelevant_retrieved": 0, "hits": 0, "tiers": {"Good": 0, "Mid": 0, "Bad": 0}, "llm": {}}
    for query, judged in JUDGED.items():
        hits = bm25(node, query)
        verdicts = httpx.post(f"{reranker.url}/v1/classify", timeout=60, json={
            "query": query, "documents": [h["_source"]["title"] for h in hits]}).json()["results"]
        for hit, verdict in zip(hits, verdicts):
            level = judged.get(hit["_id"])
            out["hits"] += 1
            out["tiers"][verdict["tier"]] += 1
            out["relevant"] += (level or 0) >= 3
            out["irrelevant_retrieved"] += level == 1
            if level is None:
                out["llm"][(query, hit["_id"])] = verdict["label"]
            if not verdict["keep"]:
                out["dropped"] += 1
                out["dropped_judged"] += level is not None
                out["irrelevant"] += level == 1
                out["below"] += level is not None and level < 3
                out["relevant_dropped"] += (level or 0) >= 3
    return out


def test_audit_end_to_end(audit_stack, audit_reranker, tmp_path):
    judgments = write_jsonl(tmp_path / "judgments.jsonl")
    report_dir = tmp_path / "report"
    done = lref("audit", str(judgments), "--opensearch", audit_stack.url, "--index", INDEX, "--size", str(SIZE),
                "--k", str(K), "--pipeline", "lref-rerank", "--pipeline", "lref-rerank-only", "--judge",
                "--reranker-url", audit_reranker.url, "--out", str(report_dir),
                "--fail-under", f"nDCG@{K}=0", "--fail-over", "baseline:IrrRate@5=1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "filter audit lref-rerank" in done.stdout
    report = json.loads((report_dir / "audit.json").read_text())
    assert list(report["runs"]) == ["baseline", "lref-rerank", "lref-rerank-only"]
    assert report["meta"]["queries_evaluated"] == 4
    assert report["meta"]["scheme"] == "four_level"  # the reranker's, read from its /health (--judge)
    assert report["meta"]["judgments_used"] == sum(map(len, JUDGED.values()))

    # The baseline is plain BM25: its P@5 is what the top 5 of a direct search give by hand.
    for query, judged in JUDGED.items():
        top = [h["_id"] for h in bm25(audit_stack, query)][:K]
        assert report["runs"]["baseline"]["per_query"][query][f"P@{K}"] == pytest.approx(
            sum(judged.get(d, 0) >= 3 for d in top) / K)
        assert report["runs"]["baseline"]["per_query"][query][f"Judged@{K}"] == pytest.approx(
            sum(d in judged for d in top) / len(top))  # ir-measures: share of the hits returned in the top k

    want = expected_filter_audit(audit_stack, audit_reranker)
    assert want["dropped_judged"] >= 3 and 0 < want["irrelevant"] < want["dropped_judged"], \
        "the tiny judge should drop judged hits of several labels"
    got = report["filter_audit"]["lref-rerank"]
    assert (got["hits"], got["dropped"], got["dropped_judged"]) == (want["hits"], want["dropped"], want["dropped_judged"])
    assert got["filter_precision"] == pytest.approx(want["irrelevant"] / want["dropped_judged"])
    assert got["filter_precision_nonrelevant"] == pytest.approx(want["below"] / want["dropped_judged"])
    assert got["relevant_retrieved"] == want["relevant"] and got["relevant_dropped"] == want["relevant_dropped"]
    assert got["relevant_loss"] == pytest.approx(want["relevant_dropped"] / want["relevant"])
    assert got["irrelevant_recall"] == pytest.approx(want["irrelevant"] / want["irrelevant_retrieved"])
    assert got["tiers"] == want["tiers"] and got["reranked_queries"] == 4
    assert sum(got["tier_by_label"]["Bad"].values()) == want["tiers"]["Bad"]
    everything = report["filter_audit"]["lref-rerank-only"]  # min tier Bad: reranks, drops nothing
    assert everything["dropped"] == 0 and everything["tiers"] == want["tiers"]
    assert report["comparisons"][0]["a"] == "baseline" and report["comparisons"][0]["b"] == "lref-rerank"
    assert set(report["worst_queries"]) == {"lref-rerank", "lref-rerank-only"}

    # --judge: exactly the unjudged hits, labelled as the reranker labels them, marked as LLM labels.
    llm = report["llm"]
    assert llm["source"] == "llm" and {r["source"] for r in llm["labels"]} == {"llm"}
    assert {(r["query"], r["product_id"]): r["label"] for r in llm["labels"]} == want["llm"]
    assert not any(r["product_id"] in JUDGED[r["query"]] for r in llm["labels"])
    assert report["runs"]["baseline"]["metrics"] != llm["metrics_human_plus_llm"]["baseline"]

    page = (report_dir / "audit.html").read_text()
    assert page.count("src='data:image/png;base64,") >= 4 and "http://" not in page.replace(audit_stack.url, "") \
        .replace(audit_reranker.url, "")  # self-contained: nothing fetched from elsewhere
    for text in ("Filter audit", "Worst queries", "filter precision", "paired t-test", "not human judgments",
                 "garden hose", "lref-rerank-only"):
        assert text in page, text
    assert {p.name for p in (report_dir / "plots").iterdir()} == {"metrics.png", "ndcg_deltas.png", "tiers.png",
                                                                  "tiers_llm.png"}


def test_judge_labels_must_be_in_the_audits_scheme(audit_reranker, tmp_path):
    """--judge fills the judgments' gaps with the reranker's labels, so its scheme is the audit's:
    a --scheme that disagrees is refused before any search."""
    judgments = write_jsonl(tmp_path / "judgments.jsonl")
    assert_refused(invoke(str(judgments), "--judge", "--reranker-url", audit_reranker.url, "--scheme", "binary",
                          "--opensearch", f"http://127.0.0.1:{free_port()}"),
                   f"--scheme binary disagrees with the reranker at {audit_reranker.url}, which judges in four_level")


def test_gates_exit_1_when_not_met(audit_stack, tmp_path):
    judgments = write_jsonl(tmp_path / "j.jsonl", {"garden hose": JUDGED["garden hose"]})
    common = ["--opensearch", audit_stack.url, "--index", INDEX, "--size", str(SIZE), "--k", str(K),
              "--out", str(tmp_path / "r")]
    under = invoke(str(judgments), *common, "--fail-under", f"nDCG@{K}=1.01")
    assert under.exit_code == 1 and f"lref-rerank:nDCG@{K} >= 1.01" in under.stderr
    over = invoke(str(judgments), *common, "--fail-over", "baseline:Judged@5=0.1", "--fail-under", "MRR=0")
    assert over.exit_code == 1 and "baseline:Judged@5 <= 0.1" in over.stderr and "MRR" not in over.stderr
    assert json.loads((tmp_path / "r" / "audit.json").read_text())["meta"]["queries_run"] == 1


def test_searches_not_reranked_are_reported(audit_stack, audit_reranker, tmp_path):
    # Connector pointed at a reranker that accepts and never answers: past the connector's 5 s read
    # timeout the pipeline passes BM25 order through (ignore_failure). The audit must say so, warn,
    # and score those searches as the user saw them; a --timeout below that wait is a one-line error.
    def install(url: str) -> None:
        done = runner.invoke(app, ["opensearch", "install", "--opensearch", audit_stack.url, "--reranker-url", url,
                                   "--read-timeout-s", "5"])
        assert done.exit_code == 0, done.output

    judgments = write_jsonl(tmp_path / "j.jsonl", {"drill": JUDGED["drill"]})
    common = [str(judgments), "--opensearch", audit_stack.url, "--index", INDEX, "--size", str(SIZE), "--k", str(K)]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        install(f"http://127.0.0.1:{silent.getsockname()[1]}")
        try:
            slow = invoke(*common, "--timeout", "2", "--out", str(tmp_path / "slow"))
            done = lref("audit", *common, "--out", str(tmp_path / "r"))
        finally:
            install(audit_reranker.url)
    # Mid-run, the progress bars are on stderr too: the error is its own last line, no traceback.
    assert slow.exit_code == 2 and "Traceback" not in slow.stderr, slow.stderr
    assert slow.stderr.strip().splitlines()[-1].startswith("error: search through lref-rerank took over 2s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lref-rerank: 1 of 1 searches were not reranked" in done.stderr
    report = json.loads((tmp_path / "r" / "audit.json").read_text())
    found = report["filter_audit"]["lref-rerank"]
    assert found["reranked_queries"] == 0 and found["dropped"] == 0 and found["not_reranked"][0]["query_id"] == "drill"
    assert report["runs"]["lref-rerank"]["per_query"] == report["runs"]["baseline"]["per_query"]


# ---- bad input ------------------------------------------------------------------------------

BAD_FILES = {
    "level7.jsonl": ('{"query": "q", "product_id": "1", "level": 7}\n', "unknown label 7"),
    "relevance.jsonl": ('{"query": "q", "product_id": "1", "relevance": 5}\n', "unknown label relevance=5"),
    "noid.jsonl": ('{"query": "q", "level": 4}\n', "noid.jsonl:1: product_id is missing"),
    "noquery.jsonl": ('{"product_id": "1", "level": 4}\n', "noquery.jsonl:1: query is missing"),
    "nolabel.jsonl": ('{"query": "q", "product_id": "1"}\n', "no level, relevance or label"),
    "conflict.jsonl": ('{"query": "q", "product_id": "1", "level": 4}\n{"query": "q", "product_id": "1", "level": 1}\n',
                       "conflicting judgments"),
    "short.qrels": ("101 0 d1\n", "needs 4 columns"),
    "great.csv": ("query,docid,rating\nq,d1,great\n", "unknown label 'great'"),
    "nodoc.csv": ("query,docid,rating\nq,,3\n", "nodoc.csv:2: docid is missing"),
    "header.csv": ("q,d1,3\n", "needs the header query,docid,rating"),
    "half.json": (json.dumps({"judgmentRatings": [{"query": "q", "ratings": [{"docId": "d", "rating": "0.5"}]}]}),
                  "unknown label 0.5"),
    "nodocid.json": (json.dumps({"judgmentRatings": [{"query": "q", "ratings": [{"rating": "1"}]}]}), "docId is missing"),
    "notsrw.json": ('{"name": "x"}', "no judgmentRatings"),
    "empty.jsonl": ("\n", "no judgments"),
    "what.txt": ("hello there\n", "cannot tell the judgment format"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_judgments_are_one_line_and_exit_2(tmp_path, name):
    text, message = BAD_FILES[name]
    (tmp_path / name).write_text(text)
    assert_refused(invoke(str(tmp_path / name), "--opensearch", f"http://127.0.0.1:{free_port()}"), message)


@pytest.mark.parametrize("args, message", [
    (["--format", "xml"], "unknown judgment format 'xml'"),
    (["--queries", "{tmp}/none.txt"], "empty set: none of the 1 queries"),
    (["--fail-under", "nDCG@10"], "must look like [RUN:]METRIC=VALUE"),
    (["--fail-under", "F1=0.5"], "unknown metric 'F1'"),
    (["--fail-over", "nope:MRR=0.5"], "unknown run 'nope'"),
    (["--k", "30"], "need 1 <= k <= size"),
    (["--rel-level", "1"], "--rel-level must be one of 2, 3, 4 (four_level), got 1"),
    (["--scheme", "binary", "--rel-level", "3"], "--rel-level must be one of 1 (binary), got 3"),
    (["--scheme", "no_such_scheme"], "--scheme: "),
    (["--scheme", "esci"], "j.jsonl:1: level: unknown label 4"),  # a four_level file read as esci: 4 is no esci grade
    (["--judge", "--reranker-url", "http://127.0.0.1:9"], "--judge: the reranker at http://127.0.0.1:9 is not ready"),
    (["--grades", "0=Bad"], "--grades item '0=Bad'"),
    (["--pipeline", "baseline"], "--pipeline names must be distinct"),
    (["--fail-under", "nDCG@3=nan"], "the threshold must be a finite number"),
    (["--fail-over", "IrrRate@10=inf"], "the threshold must be a finite number"),
    (["--timeout", "inf"], "--timeout must be a finite number"),
    (["--timeout", "0.5"], "--timeout must be a finite number of seconds >= 1"),
    (["--worst", "-1"], "--worst must be 0 or more"),
    (["--out", "{tmp}/none.txt"], "is a file, not a folder"),
    (["--api-key-file", "{tmp}/empty.key"], "holds no key"),
    ([], "cannot reach OpenSearch"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    judgments = write_jsonl(tmp_path / "j.jsonl", {"garden hose": {"d6": 4}})
    (tmp_path / "none.txt").write_text("never judged\n")
    (tmp_path / "empty.key").write_text("\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_refused(invoke(str(judgments), "--opensearch", f"http://127.0.0.1:{free_port()}", *args), message)


def test_a_trec_query_line_with_a_space_for_its_tab_is_named(tmp_path):
    (tmp_path / "run.qrels").write_text("101 0 d1 3\n")
    (tmp_path / "queries.txt").write_text("101 cordless drill\n")
    assert_refused(invoke(str(tmp_path / "run.qrels"), "--queries", str(tmp_path / "queries.txt"),
                          "--opensearch", f"http://127.0.0.1:{free_port()}"),
                   "'101 cordless drill' has a space where the TAB belongs")


def test_trec_needs_queries_and_engine_checks(tmp_path, audit_stack):
    (tmp_path / "run.qrels").write_text("101 0 d1 3\n")
    assert_refused(invoke(str(tmp_path / "run.qrels")), "TREC qrels carry query ids only")
    judgments = write_jsonl(tmp_path / "j.jsonl", {"garden hose": {"d6": 4}})
    assert_refused(invoke(str(judgments), "--opensearch", audit_stack.url, "--index", "no-such-index"),
                   "index 'no-such-index' does not exist")
    assert_refused(invoke(str(judgments), "--opensearch", audit_stack.url, "--index", INDEX, "--pipeline", "nope"),
                   "search pipeline 'nope' does not exist")
    # Through the real command line too: one line, exit 2, no traceback.
    done = lref("audit", str(tmp_path / "run.qrels"), "--format", "trec")
    assert done.returncode == 2 and "TREC qrels carry query ids only" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def assert_refused(result, message: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

