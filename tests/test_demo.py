"""The demo store end to end: `lref demo` as a real subprocess that reuses the session's OpenSearch
node, starts a real reranker (the tiny judge), loads the sample catalog, installs the pipeline and
serves the store; headless Debian chromium drives the page. The last test stops the demo with
SIGINT: what it started goes, the node it reused stays."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import Server, free_port
from stack import lref

QUERY = "cordless drill"
INDEX = "lref-demo-test"


class Demo(Server):
    """`lref demo` as a process; Server's wait_ready (the store's /health) and output serve it too."""

    def __init__(self, node, model: Path, log_path: Path) -> None:
        self.port, self.reranker_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reranker_url = f"http://127.0.0.1:{self.reranker_port}"
        self.log = open(log_path, "w+")
        cmd = [sys.executable, "-m", "lref", "demo", "--port", str(self.port),
               "--opensearch-port", str(node.port), "--opensearch-state", str(node.state), "--reranker-port", str(self.reranker_port),
               "--model", str(model), "--catalog", "sample", "--index", INDEX, "--size", "20", "--read-timeout-s", "10"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def interrupt(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def demo(opensearch_node, tiny_model_dir, tmp_path_factory):
    running = Demo(opensearch_node, tiny_model_dir, tmp_path_factory.mktemp("demo") / "lref-demo.log")
    try:
        running.wait_ready(timeout=300)
        yield running
    finally:
        running.interrupt()
        running.log.close()


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


def test_page_shows_bm25_and_tiered_results_side_by_side(demo, tmp_path):
    from browser import By, WebDriverWait, chromium, expand_dropped, full_page_screenshot, search

    driver = chromium()
    try:
        search(driver, demo.url + "/", QUERY)
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
        bm25 = driver.find_elements(By.CSS_SELECTOR, "[data-testid=bm25] .results li")
        tiered = driver.find_elements(By.CSS_SELECTOR, "[data-testid=llm] .results li")
        assert len(bm25) >= 10 and tiered
        assert all("drill" in li.text.lower() or "cordless" in li.text.lower() for li in bm25[:5])
        badges = driver.find_elements(By.CSS_SELECTOR, "[data-testid=llm] .results [data-testid=tier-badge]")
        assert len(badges) == len(tiered)
        assert {b.get_attribute("data-tier") for b in badges} <= {"Good", "Mid"}
        for column in ("bm25", "llm"):
            shown = driver.find_element(By.CSS_SELECTOR, f"[data-testid={column}-latency]").text
            assert shown.split()[1] == "ms" and float(shown.split()[0]) > 0, shown

        dropped = driver.find_element(By.CSS_SELECTOR, "[data-testid=dropped]")
        assert dropped.is_displayed() and dropped.get_attribute("open") is None  # collapsed
        items = dropped.find_elements(By.CSS_SELECTOR, "[data-testid=dropped-item]")
        assert items and not items[0].is_displayed()
        assert len(bm25) == len(tiered) + len(items)  # each BM25 hit is kept or dropped
        expand_dropped(driver)
        assert items[0].is_displayed()
        for item in items:
            probs = item.find_elements(By.CSS_SELECTOR, "[data-testid=probabilities] .prob")
            assert [p.get_attribute("data-label") for p in probs] == ["Excellent", "Related", "Mismatch", "Irrelevant"]
            assert sum(float(p.get_attribute("data-p")) for p in probs) == pytest.approx(1.0, abs=1e-3)
            assert "%" in probs[0].text
        shot = tmp_path / "demo.png"  # kept with pytest's last three base temp dirs; `pytest -rP` shows where
        full_page_screenshot(driver, str(shot))
        print(f"screenshot of the demo store: {shot}")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # The URL the page writes after a search opens the same search.
        assert driver.current_url == f"{demo.url}/?q=cordless%20drill&size=20"
        driver.get(f"{demo.url}/?q=cordless%20drill&size=5")
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        assert len(driver.find_elements(By.CSS_SELECTOR, "[data-testid=bm25] .results li")) == 5
        assert driver.find_element(By.CSS_SELECTOR, "[data-testid=query]").get_attribute("value") == QUERY
    finally:
        driver.quit()


def test_search_api_reports_what_the_reranker_judged(demo):
    data = httpx.get(f"{demo.url}/api/search", params={"q": QUERY, "size": 20}, timeout=120).json()
    bm25 = [h["id"] for h in data["bm25"]["hits"]]
    llm = data["llm"]
    assert llm["reranked"] is True and llm["min_tier"] == "Mid"
    kept, dropped = [h["id"] for h in llm["hits"]], [d["id"] for d in llm["dropped"]]
    assert sorted(kept + dropped) == sorted(bm25) and kept and dropped
    assert [h["bm25_rank"] for h in llm["hits"]] == [bm25.index(i) + 1 for i in kept]
    assert all(d["tier"] == "Bad" for d in llm["dropped"])
    assert all(h["tier"] in ("Good", "Mid") and h["label"] for h in llm["hits"])
    assert data["bm25"]["latency_ms"] > 0 and llm["latency_ms"] > 0
    # The probabilities shown for dropped items are the reranker's own, for the titles the pipeline sent.
    titles = {h["id"]: h["title"] for h in data["bm25"]["hits"]}
    judged = httpx.post(f"{demo.reranker_url}/v1/classify",
                        json={"query": QUERY, "documents": [titles[i] for i in dropped]}, timeout=60).json()["results"]
    for item, j in zip(llm["dropped"], judged):
        assert item["label"] == j["label"] and not j["keep"]
        assert item["probabilities"] == pytest.approx(j["probabilities"], abs=1e-4)
    assert httpx.get(f"{demo.url}/api/search", params={"q": " "}).status_code == 400
    for bad in ({"q": "drill", "size": "lots"}, {"q": "x" * 501}):  # one error shape: {"error": ...}, input not echoed
        refused = httpx.get(f"{demo.url}/api/search", params=bad)
        assert refused.status_code == 422 and set(refused.json()) == {"error", "details"}, refused.text
        assert "x" * 100 not in refused.text
    info = httpx.get(f"{demo.url}/api/info").json()
    assert info["products"] == len(Path(_sample()).read_text().splitlines()) and info["index"] == INDEX


def _sample() -> str:
    from apps.store.demo import sample_catalog

    return str(sample_catalog())


def test_sample_catalog_is_valid_and_sized():
    from engine.catalog import read_catalog

    products = read_catalog(Path(_sample()))
    assert 150 <= len(products) <= 300
    assert len({p["title"] for p in products}) == len(products)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--catalog", "/no/such/catalog.jsonl"], "cannot read /no/such/catalog.jsonl"),
        (["--min-tier", "Great"], "min_tier must be one of"),
        (["--port", "70000"], "--port must be a port number"),
        (["--size", "0"], "--size must be between 1 and 100"),
        (["--reranker-url", "ftp://x"], "reranker URL must look like"),
        (["--model", "/no/such/model.gguf"], "GGUF file not found"),
        (["--port", "BUSY"], "Address already in use"),
    ],
)
def test_bad_demo_input_is_one_line_and_exit_2(args, message):
    from typer.testing import CliRunner

    from lref.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [str(busy.getsockname()[1]) if a == "BUSY" else a for a in args]
        # In process: every check runs before anything starts. The last --catalog given wins.
        done = CliRunner().invoke(app, ["demo", "--catalog", "sample", "--opensearch-port", str(free_port()), *args])
    assert done.exit_code == 2, done.output
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "starting" not in done.stdout  # nothing was started


def _one_line_exit_2(done, message: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_reranker_that_fails_to_load_is_one_line_and_stopped(tmp_path):
    # A GGUF header and nothing after it: the file passes the checks made before anything starts,
    # and only the reranker's loading finds it broken.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))
    reranker_port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "lref", "demo", "--catalog", "sample", "--model", str(broken),
         "--opensearch-url", f"http://127.0.0.1:{free_port()}", "--reranker-port", str(reranker_port),
         "--port", str(free_port())], capture_output=True, text=True, timeout=300)
    _one_line_exit_2(done, "the reranker exited with code 2: model failed to load")
    assert "broken.gguf" in done.stderr and "INFO" not in done.stderr  # its own error line, not uvicorn's
    assert not answers(f"http://127.0.0.1:{reranker_port}/health")


def test_an_opensearch_error_after_start_is_one_line(opensearch_node):
    # A reachable node and an index name it would refuse (names must be lowercase): refused in one
    # line before anything is written. It fails before the reranker is needed, so none is given.
    done = subprocess.run(
        [sys.executable, "-m", "lref", "demo", "--catalog", "sample", "--index", "Not-Lowercase",
         "--opensearch-url", opensearch_node.url, "--reranker-url", f"http://127.0.0.1:{free_port()}",
         "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    _one_line_exit_2(done, "index 'Not-Lowercase' is not a valid OpenSearch index name")


def test_down_refuses_a_node_a_running_demo_uses(demo, opensearch_node):
    refused = lref("opensearch", "down", "--port", str(opensearch_node.port), "--state", str(opensearch_node.state))
    _one_line_exit_2(refused, f"is in use by lref demo (pid {demo.proc.pid})")
    assert answers(demo.url + "/health") and answers(opensearch_node.url)


def test_ctrl_c_stops_what_it_started_and_leaves_the_reused_node(demo, opensearch_node):
    assert answers(demo.reranker_url + "/health") and answers(demo.url + "/health")
    assert demo.interrupt() == 0
    assert not list((opensearch_node.state / "users").glob("*"))  # its mark on the node went with it
    out = demo.output()
    assert "reusing OpenSearch" in out and "stopping the reranker" in out and "stopping OpenSearch" not in out
    assert not answers(demo.url + "/health")
    assert not answers(demo.reranker_url + "/health")
    health = httpx.get(f"{opensearch_node.url}/_cluster/health", timeout=10).json()
    assert health["status"] in ("green", "yellow")  # the reused node is still running
    assert json.loads(httpx.get(f"{opensearch_node.url}/{INDEX}/_count").text)["count"] > 0
