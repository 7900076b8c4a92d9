"""Real engine parts for the integration tests: a node started through `lref opensearch up`, and a
TCP proxy that delays traffic to the real reranker (a reranker that is slow, not a fake one)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine import artifacts, security
from engine.node import NodeSettings


def lref(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True, timeout=timeout)


def install(node: "TestNode", reranker_url: str, *extra: str, read_timeout_s: float = 2) -> subprocess.CompletedProcess:
    """`lref opensearch install` with a short read timeout (2 s), so fallbacks are quick to provoke."""
    return lref("opensearch", "install", "--opensearch", node.url, "--reranker-url", reranker_url,
                "--read-timeout-s", str(read_timeout_s), *node.as_user(security.ADMIN_USER), *extra)


def load_titles(node: "TestNode", index: str, titles: list[str], folder: Path) -> None:
    """Index products p0, p1, ... with these titles through `lref opensearch load`."""
    catalog = folder / f"{index}.jsonl"
    catalog.write_text("".join(json.dumps({"product_id": f"p{i}", "title": t}) + "\n" for i, t in enumerate(titles)))
    loaded = lref("opensearch", "load", str(catalog), "--opensearch", node.url, "--index", index, "--recreate",
                  *node.as_user(security.ADMIN_USER))
    assert loaded.returncode == 0, loaded.stderr
    assert f"indexed {len(titles)} products" in loaded.stdout


def ready_stack(node: "TestNode", reranker_url: str, index: str, titles: list[str], folder: Path,
                read_timeout_s: float = 2) -> "TestNode":
    """The catalog loaded and the connector and pipelines installed, pointing at `reranker_url`."""
    load_titles(node, index, titles, folder)
    installed = install(node, reranker_url, read_timeout_s=read_timeout_s)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return node


def search_body(query: str, size: int = 50, ext: dict | None = None) -> dict:
    """Top-`size` BM25 on title, with the query text the rerank step sends to the reranker."""
    return {"query": {"match": {"title": query}}, "size": size,
            "ext": {"rerank": {"query_context": {"query_text": query}}, **(ext or {})}}


def search(node: "TestNode", index: str, query: str, pipeline: str | None = None, ext: dict | None = None,
           size: int = 50, timeout: float = 60, url: str | None = None) -> httpx.Response:
    """On a secured node, as its read-only user: what a search front end would be given. `url`:
    one member of a cluster (default: the first)."""
    params = {"search_pipeline": pipeline} if pipeline else {}
    return httpx.post(f"{url or node.url}/{index}/_search", params=params, json=search_body(query, size, ext),
                      timeout=timeout, **node.http(security.SEARCH_USER))


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]["hits"]]


class TestNode:
    """One OpenSearch node per test session, on free loopback ports, with its own state dir."""

    __test__ = False

    def __init__(self, http_port: int, transport_port: int, version: str = artifacts.DEFAULT_VERSION,
                 secure: bool = False, nodes: int = 1) -> None:
        self.port, self.transport_port, self.version, self.secure = http_port, transport_port, version, secure
        self.nodes = nodes
        # Under the lref base dir, not /tmp/pytest-of-*, which the service user cannot enter.
        self.state = NodeSettings().base / "nodes" / f"pytest-{http_port}"
        self.urls = [f"{'https' if secure else 'http'}://127.0.0.1:{http_port + i}" for i in range(nodes)]
        self.url = self.urls[0]

    @property
    def security_dir(self) -> Path:
        return self.state / "security"

    def as_user(self, user: str) -> list[str]:
        """The options our commands take to reach the node as `user` (none when it is not secured)."""
        if not self.secure:
            return []
        return ["--user", user, "--password-file", str(security.password_file(self.security_dir, user)),
                "--ca-cert", str(self.security_dir / "ca.pem")]

    def http(self, user: str = security.ADMIN_USER) -> dict:
        """httpx keyword arguments for requests as `user`, certificates checked."""
        return security.access(self.security_dir, user).httpx_kwargs() if self.secure else {}

    def up(self) -> subprocess.CompletedProcess:
        shutil.rmtree(self.state, ignore_errors=True)
        # A pid file left by a node that died (a dead pid): `up` must start a new node regardless.
        self.state.mkdir(parents=True)
        dead = subprocess.Popen(["true"])
        dead.wait()
        (self.state / "opensearch.pid").write_text(str(dead.pid))
        return self.up_again()

    def up_again(self) -> subprocess.CompletedProcess:
        """`lref opensearch up` on the state as it is (members that run are left alone)."""
        return lref("opensearch", "up", "--port", str(self.port), "--transport-port", str(self.transport_port),
                    "--heap", "1g", "--state", str(self.state), "--version", self.version, "--nodes", str(self.nodes),
                    *(["--secure"] if self.secure else []))

    def down(self) -> None:
        lref("opensearch", "down", "--port", str(self.port), "--state", str(self.state))
        shutil.rmtree(self.state, ignore_errors=True)


class DelayProxy:
    """Forwards loopback TCP to `target_port`, holding every chunk sent upstream for `delay`
    seconds: each request is late, on new and on kept-alive connections alike. `delay` may be
    changed while it runs (0: a plain pass-through)."""

    def __init__(self, target_port: int, listen_port: int, delay: float) -> None:
        self.target_port, self.port, self.delay = target_port, listen_port, delay
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, late: bool) -> None:
        try:
            while data := await reader.read(65536):
                if late and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the reranker is down: the client sees its connection closed
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, late=True), self._pipe(up_reader, writer, late=False))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self.loop)  # connections still open: closed here, not at exit
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    def __enter__(self) -> "DelayProxy":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Outcome:
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer at all
    result: dict | None = None
    error: str | None = None


class SearchLoad:
    """`workers` threads each searching through the pipeline, one search after another, until the
    block ends; every outcome is kept with its start and end time."""

    __test__ = False

    def __init__(self, node: "TestNode", index: str, query: str, pipeline: str, workers: int = 3,
                 urls: list[str] | None = None) -> None:
        """`urls`: the members the workers send to, worker i to urls[i % len(urls)] (default: the first)."""
        self.node, self.index, self.query, self.pipeline = node, index, query, pipeline
        self.urls = urls or [node.url]
        self.outcomes: list[Outcome] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._search, args=(self.urls[i % len(self.urls)],), daemon=True)
                        for i in range(workers)]

    def _search(self, url: str) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                response = search(self.node, self.index, self.query, self.pipeline, timeout=30, url=url)
                result = response.json() if response.status_code == 200 else None
                outcome = Outcome(started, time.monotonic(), response.status_code, result,
                                  None if result else response.text[:300])
            except (httpx.HTTPError, ValueError) as exc:
                outcome = Outcome(started, time.monotonic(), None, error=repr(exc))
            self.outcomes.append(outcome)

    def since(self, mark: float, until: float = float("inf")) -> list[Outcome]:
        """The searches that started after `mark` and ended before `until`."""
        return [o for o in list(self.outcomes) if o.started >= mark and o.ended <= until]

    def overlapping(self, start: float, end: float) -> list[Outcome]:
        """The searches that were under way at some moment of [start, end) (a fault's window)."""
        return [o for o in list(self.outcomes) if o.ended >= start and o.started < end]

    def wait_for(self, count: int, mark: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.since(mark)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.since(mark))} searches ended in {timeout} s")
            time.sleep(0.05)

    def __enter__(self) -> "SearchLoad":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)
