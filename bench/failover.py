"""Failover benchmark: searches through the lref pipeline while a reranker replica, then a data
node, is SIGKILLed. Loopback only; starts and stops everything it uses.

    .venv/bin/python bench/failover.py                     # default judge, Home Depot catalog
    .venv/bin/python bench/failover.py --model DIR --clients 3 --seconds 20

The stack: a 3-node OpenSearch cluster (`lref opensearch up --nodes 3`, 1 GiB heap each, the
catalog on 3 primaries with a replica each), two `lref serve` replicas behind `lref balance`
(HAProxy, /health checked every 500 ms), the connector pointing at the balancer. --clients threads
search (top-k BM25 of dev queries, through `lref-rerank`) on the two members that are not killed.

Each fault runs --seconds of searches: a third before the kill, the rest after it. Phases:
  before   searches that ended before the kill
  window   searches under way at some moment between the kill and recovery (replica: HAProxy's
           two missed checks plus a margin, 3 s; node: the cluster yellow or green again on two
           nodes, nothing initializing or relocating)
  after    searches that started after recovery
Per phase: searches, errors (no HTTP 200), answered in the original order (the rerank step did not
run), responses with failed shards, lost hits (of the top-k BM25 hits the search retrieved, those
neither returned nor reported dropped to the Bad tier), and latency percentiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from load import PIPELINE, ROOT, free_port, lref, search_body, stack_arguments  # bench/ is the script's own folder
from reranker.console import stop_process
from search_latency import queries_from

out = Console(width=160)  # the table unfolded, also in a log


@dataclass
class Search:
    started: float
    ended: float
    ok: bool
    reranked: bool = False
    failed_shards: bool = False
    lost: int = 0


def consecutive_free(count: int) -> int:
    from reranker.console import bind_problem

    while True:
        first = free_port()
        if first + count <= 65535 and all(bind_problem("127.0.0.1", first + i) is None for i in range(count)):
            return first


def wait_ok(url: str, proc: subprocess.Popen | None, what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready in {timeout:.0f} s")


class Stack:
    def __init__(self, model: str | None, logs: Path) -> None:
        from engine.node import NodeSettings

        self.port, self.tport = consecutive_free(3), consecutive_free(3)
        self.state = NodeSettings().base / "nodes" / f"bench-failover-{self.port}"
        self.urls = [f"http://127.0.0.1:{self.port + i}" for i in range(3)]
        self.model, self.logs = model, logs
        self.procs: list[subprocess.Popen] = []
        self.replicas: list[subprocess.Popen] = []
        self.dtypes: list[str] = []

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        with open(self.logs / log, "w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "lref", *args], stdout=sink,
                                    stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def start(self, catalog: Path, index: str) -> str:
        shutil.rmtree(self.state, ignore_errors=True)
        up = lref("opensearch", "up", "--nodes", "3", "--port", str(self.port), "--transport-port", str(self.tport),
                  "--heap", "1g", "--state", str(self.state))
        if up.returncode != 0:
            raise RuntimeError(f"lref opensearch up --nodes 3 failed: {up.stderr.strip()[-500:]}")
        model = ["--model", self.model] if self.model else []
        ports = [free_port(), free_port()]
        self.replicas = [self._spawn(["serve", "--port", str(p), *model], f"failover-replica-{i}.log")
                         for i, p in enumerate(ports)]
        balancer_port = free_port()
        balancer = self._spawn(["balance", "--port", str(balancer_port), "--check-interval-ms", "500",
                                *(a for p in ports for a in ("--replica", f"http://127.0.0.1:{p}"))], "failover-balancer.log")
        loaded = lref("opensearch", "load", str(catalog), "--opensearch", self.urls[0], "--index", index, "--recreate")
        if loaded.returncode != 0:
            raise RuntimeError(f"lref opensearch load failed: {loaded.stderr.strip()[-500:]}")
        balancer_url = f"http://127.0.0.1:{balancer_port}"
        installed = lref("opensearch", "install", "--opensearch", self.urls[0], "--reranker-url", balancer_url)
        if installed.returncode != 0:
            raise RuntimeError(f"lref opensearch install failed: {installed.stderr.strip()[-500:]}")
        for i, (proc, port) in enumerate(zip(self.replicas, ports)):
            wait_ok(f"http://127.0.0.1:{port}/health", proc, f"replica {i}")
        self.dtypes = [httpx.get(f"http://127.0.0.1:{p}/health", timeout=5).json()["dtype"] for p in ports]
        wait_ok(f"{balancer_url}/health", balancer, "the balancer")
        return balancer_url

    def status(self) -> dict:
        return json.loads(lref("opensearch", "status", "--port", str(self.port), "--state", str(self.state)).stdout)

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        lref("opensearch", "down", "--port", str(self.port), "--state", str(self.state), timeout=180)
        shutil.rmtree(self.state, ignore_errors=True)


def run_searches(urls: list[str], index: str, queries: list[str], k: int, clients: int,
                 stop: threading.Event) -> list[Search]:
    done: list[Search] = []

    def client_loop(number: int) -> None:
        url, i = urls[number % len(urls)], number
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                query = queries[i % len(queries)]
                i += clients
                started = time.monotonic()
                try:
                    response = client.post(f"{url}/{index}/_search", params={"search_pipeline": PIPELINE},
                                           json=search_body(query, k))
                    result = response.json() if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    result = None
                if result is None:
                    done.append(Search(started, time.monotonic(), ok=False))
                    continue
                report = result.get("ext", {}).get("lref", {})
                # Retrieved = the top k of all matches; each is returned or reported dropped. (Not
                # compared with one reference run: a replica copy may rank the k-th hit otherwise.)
                retrieved = min(k, result["hits"]["total"]["value"])
                kept = len(result["hits"]["hits"]) + len(report.get("dropped", []))
                done.append(Search(started, time.monotonic(), ok=True, reranked=bool(report.get("reranked")),
                                   failed_shards=result["_shards"]["failed"] > 0, lost=max(0, retrieved - kept)))

    threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(90)
    return done


def fault(what: str, kill, recovered, survivors: list[str], index: str, queries: list[str], args) -> list[list[str]]:
    """Searches on `survivors` for args.seconds; kill() a third of the way in; recovered() polled after it."""
    stop, found = threading.Event(), []
    runner = threading.Thread(target=lambda: found.extend(run_searches(survivors, index, queries, args.k,
                                                                       args.clients, stop)))
    started = time.monotonic()
    runner.start()
    time.sleep(args.seconds / 3)
    killed = time.monotonic()
    kill()
    while not recovered(killed):
        time.sleep(0.2)
    back = time.monotonic()
    time.sleep(max(0.0, started + args.seconds - time.monotonic()))
    stop.set()
    runner.join()
    phases = {"before": [s for s in found if s.ended < killed],
              "window": [s for s in found if s.ended >= killed and s.started < back],
              "after": [s for s in found if s.started >= back]}
    rows = []
    for name, searches in phases.items():
        answered = [s for s in searches if s.ok]
        latencies = sorted((s.ended - s.started) * 1000 for s in answered)
        q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
        rows.append([what, name, f"{back - killed:.1f}" if name == "window" else "", str(len(searches)),
                     str(len(searches) - len(answered)), str(sum(not s.reranked for s in answered)),
                     str(sum(s.failed_shards for s in answered)), str(sum(s.lost for s in answered)),
                     *(f"{q[p - 1]:.0f}" if q else "-" for p in (50, 95))])
    return rows


def main() -> int:
    parser = stack_arguments(__doc__.splitlines()[0], queries=100)
    parser.add_argument("--clients", type=int, default=3, help="concurrent search clients (1 to 16)")
    parser.add_argument("--seconds", type=float, default=30, help="length of each fault's run (10 to 600)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "failover.json")
    args = parser.parse_args()
    if not 1 <= args.clients <= 16 or not 10 <= args.seconds <= 600 or not 1 <= args.k <= 100:
        parser.error("--clients 1-16, --seconds 10-600, --k 1-100")
    for path in (args.catalog, args.dev):
        if not path.is_file():
            parser.error(f"{path} is missing")
    from reranker.models.loading import cpu_summary

    args.out.parent.mkdir(parents=True, exist_ok=True)
    queries = queries_from(args.dev, args.queries)
    stack = Stack(args.model, args.out.parent)
    try:
        out.print("starting 3 OpenSearch nodes, 2 reranker replicas and the balancer")
        stack.start(args.catalog, args.index)
        def kill_replica() -> None:
            stack.replicas[0].send_signal(signal.SIGKILL)

        rows = fault("replica SIGKILL", kill_replica, lambda killed: time.monotonic() > killed + 3,
                     stack.urls, args.index, queries, args)
        report = stack.status()
        victim = next(n for n in report["nodes"] if n["name"] != report["cluster_manager"] and n["url"] != stack.urls[0])

        def kill_node() -> None:
            os.kill(victim["pid"], signal.SIGKILL)

        def cluster_back(killed: float) -> bool:
            health = httpx.get(f"{stack.urls[0]}/_cluster/health", timeout=5).json()
            return (health["number_of_nodes"] == 2 and health["status"] != "red"
                    and not health["initializing_shards"] and not health["relocating_shards"])

        rows += fault("data node SIGKILL", kill_node, cluster_back, [u for u in stack.urls if u != victim["url"]],
                      args.index, queries, args)
    finally:
        stack.stop()
    table = Table(title=f"failover, {args.seconds:.0f} s per fault, {args.clients} clients, top-{args.k}, "
                        f"model {args.model or 'default judge'}")
    for column in ("fault", "phase", "window s", "searches", "errors", "original order", "failed shards",
                   "lost hits", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column in ("fault", "phase") else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print(f"CPU: {cpu_summary()}; the replicas' dtype (--dtype auto): {', '.join(stack.dtypes)}")
    out.print(f"command: {' '.join(sys.argv)}")
    args.out.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
                                    "cpu": cpu_summary(), "dtypes": stack.dtypes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
