"""Load benchmark: bounded concurrent searches through the lref pipeline, on loopback only.

    .venv/bin/python bench/load.py                       # default judge (SmolLM2-135M-Instruct)
    .venv/bin/python bench/load.py --model DIR --seconds 20 --clients 4 --k 20

It starts a stack of its own on free 127.0.0.1 ports (an OpenSearch node through `lref opensearch
up`, the reranker through `lref serve`, the Home Depot catalog loaded, the pipeline installed),
runs each phase for a fixed period, stops everything it started and prints the tables. Every phase
ends by itself: at --seconds or --max-requests, whichever comes first; every request has a timeout.

Phases (each with --clients threads sending one request after another):
  BM25 alone                 top-k searches, no pipeline (also the reference hits per query)
  BM25 + lref-rerank         the same searches through the pipeline: errors, fallbacks, lost hits
  reranker, one client       /v1/rerank with the k BM25 titles of each query, one request at a time
  reranker, concurrent       the same requests from --clients threads: the micro-batcher merges them
  ... one batch split        a large batch (below) cut into --clients requests sent at once
  reranker, one large batch  one request carrying clients x k documents (the titles of --clients
                             queries under one query), one at a time
The four reranker phases take turns (--rounds) so that other load on the machine hits them alike.
The micro-batcher's goal: the split batch is judged at least as fast as the same batch sent whole.
Then the limits: 1000 documents (the default maximum), 3 documents of 5 MB (a 15 MB body),
1001 documents and a 17 MB body (both refused), with the reranker's peak RSS after each.

A lost hit is a BM25 hit that a pipeline search neither returned nor reported as dropped (Bad tier).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table

from reranker.console import stop_process
from search_latency import queries_from  # bench/ is the script's own folder

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "homedepot"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PIPELINE = "lref-rerank"


def lref(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lref", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback(url: str) -> str:
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"error: {url} is not on loopback; this benchmark only talks to 127.0.0.1")
    return url


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Phase:
    name: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    fell_back: int = 0
    lost_hits: int = 0
    documents: int = 0  # judged by the reranker (reranker phases) or returned (search phases)
    wall_s: float = 0.0

    def row(self) -> list[str]:
        done = len(self.latencies_ms)
        q = statistics.quantiles(self.latencies_ms, n=100, method="inclusive") if done > 1 else self.latencies_ms * 99
        return [self.name, str(self.clients), str(done), str(self.errors), str(self.fell_back), str(self.lost_hits),
                f"{done / self.wall_s:.2f}", f"{self.documents / self.wall_s:.1f}",
                *(f"{q[p - 1]:.0f}" if q else "-" for p in (50, 95, 99))]


def run_phase(phase: Phase, send, work: list, seconds: float, max_requests: int) -> Phase:
    """`phase.clients` threads call send(client, item) over `work` round-robin until the period or
    the request budget is spent. send returns (documents, fell_back, lost_hits) or raises."""
    deadline = time.monotonic() + seconds
    budget = iter(range(max_requests))
    lock = threading.Lock()

    def client_loop(number: int) -> None:
        with httpx.Client(timeout=120) as client:
            i = number
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                started = time.perf_counter()
                try:
                    documents, fell_back, lost = send(client, work[i % len(work)])
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    with lock:
                        phase.errors += 1
                    print(f"  {phase.name}: {exc!r}"[:300], file=sys.stderr)
                else:
                    with lock:
                        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
                        phase.documents += documents
                        phase.fell_back += fell_back
                        phase.lost_hits += lost
                i += phase.clients

    threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(phase.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.wall_s += time.monotonic() - started  # a phase run in several turns adds them up
    return phase


class Stack:
    """A node and a reranker of our own on free loopback ports; stop() ends both."""

    def __init__(self, model: str | None, out: Path) -> None:
        from engine.node import NodeSettings

        self.node_port, self.transport_port, self.reranker_port = free_port(), free_port(), free_port()
        self.state = NodeSettings().base / "nodes" / f"bench-{self.node_port}"
        self.opensearch = f"http://127.0.0.1:{self.node_port}"
        self.reranker = f"http://127.0.0.1:{self.reranker_port}"
        self.model = model
        self.log_path = out / "load-reranker.log"
        self.reranker_proc: subprocess.Popen | None = None
        self.node_pid: int | None = None

    def start(self, catalog: Path, index: str) -> None:
        shutil.rmtree(self.state, ignore_errors=True)
        up = lref("opensearch", "up", "--port", str(self.node_port), "--transport-port", str(self.transport_port),
                  "--heap", "1g", "--state", str(self.state))
        if up.returncode != 0:
            raise RuntimeError(f"lref opensearch up failed: {up.stderr.strip()[-500:]}")
        status = lref("opensearch", "status", "--port", str(self.node_port), "--state", str(self.state))
        self.node_pid = json.loads(status.stdout)["pid"]
        model = ["--model", self.model] if self.model else []
        with open(self.log_path, "w") as log:  # the child keeps its own copy of the descriptor
            self.reranker_proc = subprocess.Popen(
                [sys.executable, "-m", "lref", "serve", "--port", str(self.reranker_port), *model],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        loaded = lref("opensearch", "load", str(catalog), "--opensearch", self.opensearch, "--index", index, "--recreate")
        if loaded.returncode != 0:
            raise RuntimeError(f"lref opensearch load failed: {loaded.stderr.strip()[-500:]}")
        installed = lref("opensearch", "install", "--opensearch", self.opensearch, "--reranker-url", self.reranker)
        if installed.returncode != 0:
            raise RuntimeError(f"lref opensearch install failed: {installed.stderr.strip()[-500:]}")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.reranker_proc.poll() is not None:
                raise RuntimeError(f"lref serve exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.reranker}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the reranker did not become ready; see {self.log_path}")

    def stop(self) -> None:
        if self.reranker_proc:
            stop_process(self.reranker_proc)
        lref("opensearch", "down", "--port", str(self.node_port), "--state", str(self.state), timeout=120)
        shutil.rmtree(self.state, ignore_errors=True)


def search_body(query: str, k: int) -> dict:
    return {"query": {"match": {"title": query}}, "size": k, "_source": ["title"],
            "ext": {"rerank": {"query_context": {"query_text": query}}}}


def stack_arguments(description: str, queries: int) -> argparse.ArgumentParser:
    """The options every stack benchmark shares: the judge, the catalog, the queries, top-k."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", help="judge model for `lref serve` (default: its default, SmolLM2-135M-Instruct)")
    parser.add_argument("--catalog", type=Path, default=DATA / "products.jsonl")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.jsonl", help="where the queries come from")
    parser.add_argument("--index", default="products")
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--k", type=int, default=20, help="hits per search, documents per rerank request")
    return parser


def main() -> int:
    parser = stack_arguments(__doc__.splitlines()[0], queries=200)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (1 to 32)")
    parser.add_argument("--seconds", type=float, default=30, help="length of each phase (at most 600)")
    parser.add_argument("--rounds", type=int, default=3, help="turns the reranker phases take, --seconds in all")
    parser.add_argument("--max-requests", type=int, default=2000, help="most requests per phase")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "load.json")
    args = parser.parse_args()
    if not 1 <= args.clients <= 32 or not 0 < args.seconds <= 600 or not 1 <= args.k <= 1000 or not 1 <= args.rounds <= 20:
        parser.error("--clients 1..32, --seconds up to 600, --k 1..1000, --rounds 1..20")
    for path in (args.catalog, args.dev):
        if not path.is_file():
            print(f"error: {path} not found (Home Depot data lives in ../shared/data/homedepot)", file=sys.stderr)
            return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stack = Stack(args.model, args.out.parent)
    try:
        print("starting the stack (node, reranker, catalog, pipeline) on loopback ...", file=sys.stderr)
        stack.start(args.catalog, args.index)
        return run(stack, args)
    finally:
        stack.stop()


def run(stack: Stack, args) -> int:
    opensearch, reranker = loopback(stack.opensearch), loopback(stack.reranker)
    queries = queries_from(args.dev, args.queries)
    with httpx.Client(timeout=120) as client:  # the reference: BM25 hits per query, and their titles
        reference = {}
        for query in queries:
            hits = client.post(f"{opensearch}/{args.index}/_search", json=search_body(query, args.k)).json()["hits"]["hits"]
            if hits:
                reference[query] = ([h["_id"] for h in hits], [h["_source"]["title"] for h in hits])
        queries = list(reference)
        client.post(f"{reranker}/v1/rerank", json={"query": queries[0], "documents": reference[queries[0]][1]})  # warm-up

    def search(pipeline: str | None):
        params = {"search_pipeline": pipeline} if pipeline else {}

        def send(client: httpx.Client, query: str) -> tuple[int, int, int]:
            response = client.post(f"{opensearch}/{args.index}/_search", params=params, json=search_body(query, args.k))
            response.raise_for_status()
            result = response.json()
            hits = [h["_id"] for h in result["hits"]["hits"]]
            if pipeline is None:
                return len(hits), 0, len(set(reference[query][0]) - set(hits))
            report = result["ext"]["lref"]
            dropped = {d["_id"] for d in report.get("dropped", [])}
            if not report["reranked"] and hits != reference[query][0]:
                raise ValueError(f"{query!r}: a fallback that is not the BM25 order")
            return len(hits) + len(dropped), int(not report["reranked"]), len(set(reference[query][0]) - set(hits) - dropped)

        return send

    def rerank(client: httpx.Client, item: tuple[str, list[str]]) -> tuple[int, int, int]:
        query, documents = item
        response = client.post(f"{reranker}/v1/rerank", json={"query": query, "documents": documents})
        response.raise_for_status()
        results = response.json()["results"]
        if sorted(r["index"] for r in results) != list(range(len(documents))):
            raise ValueError(f"{query!r}: not every document came back")
        return len(documents), 0, 0

    single = [(q, reference[q][1]) for q in queries]
    # One large batch: the titles of `clients` queries under the first one's query. Split into
    # `clients` slices (item j*clients + n is slice n of batch j), the concurrent clients send the
    # same pairs as separate requests, in step: the work of one large batch, through the batcher.
    large = [(queries[i], [t for q in queries[i:i + args.clients] for t in reference[q][1]])
             for i in range(0, len(queries) - args.clients + 1, args.clients)]
    sliced = [(query, docs[n::args.clients]) for query, docs in large for n in range(args.clients)]
    bounded = dict(seconds=args.seconds, max_requests=args.max_requests)
    phases = []
    for phase, send, work in [
        (Phase("BM25 alone", args.clients), search(None), queries),
        (Phase("BM25 + lref-rerank", args.clients), search(PIPELINE), queries),
    ]:
        print(f"phase: {phase.name} ...", file=sys.stderr)
        phases.append(run_phase(phase, send, work, **bounded))
    # The reranker phases take turns in short rounds, so a neighbour's load on the machine falls
    # on each of them alike.
    turns = [
        (Phase("reranker, one client", 1), single),
        (Phase("reranker, concurrent", args.clients), single),
        (Phase(f"reranker, concurrent, one batch split {args.clients} ways", args.clients), sliced),
        (Phase(f"reranker, one large batch ({args.clients}x{args.k} docs)", 1), large),
    ]
    for round_ in range(args.rounds):
        for phase, work in turns:
            print(f"phase: {phase.name} (round {round_ + 1}/{args.rounds}) ...", file=sys.stderr)
            run_phase(phase, rerank, work, seconds=args.seconds / args.rounds, max_requests=args.max_requests)
    phases += [phase for phase, _ in turns]
    load_rss = peak_rss_mib(stack.reranker_proc.pid)

    model = args.model or "SmolLM2-135M-Instruct (default, zero-shot)"
    console = Console(width=160)
    table = Table(title=f"{args.seconds:.0f} s per phase, top-{args.k}, {len(queries)} queries, model {model}, "
                        f"{os.cpu_count()} CPU cores")
    for column in ("phase", "clients", "requests", "errors", "fell back", "lost hits", "req/s", "docs/s",
                   "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in phases:
        table.add_row(*phase.row())
    console.print(table)
    split, batch = phases[4], phases[5]
    ratio = (split.documents / split.wall_s) / (batch.documents / batch.wall_s)
    print(f"micro-batcher: one batch split over {args.clients} concurrent clients {split.documents / split.wall_s:.1f} "
          f"docs/s vs the same batch as one request {batch.documents / batch.wall_s:.1f} docs/s = {ratio:.2f}x "
          f"({'meets' if ratio >= 1 else 'BELOW'} the >= 1x goal)")

    limits = Table(title="limits (one request each)")
    for column in ("request", "status", "ms", "reranker peak RSS MiB"):
        limits.add_column(column, justify="left" if column == "request" else "right")
    titles = [t for _, ts in single for t in ts]
    five_mb = "cordless drill " * 350_000
    with httpx.Client(timeout=900) as client:
        for label, content in [
            ("1000 documents (the default maximum)", {"query": queries[0], "documents": (titles * 1000)[:1000]}),
            ("3 documents of 5 MB (15 MB body)", {"query": queries[0], "documents": [five_mb] * 3}),
            ("1001 documents (refused)", {"query": queries[0], "documents": (titles * 1001)[:1001]}),
            ("17 MB body (refused)", {"query": queries[0], "documents": [five_mb[:1_000_000]] * 17}),
        ]:
            started = time.perf_counter()
            response = client.post(f"{reranker}/v1/rerank", json=content)
            limits.add_row(label, str(response.status_code), f"{(time.perf_counter() - started) * 1000:.0f}",
                           f"{peak_rss_mib(stack.reranker_proc.pid):.0f}")
    console.print(limits)
    print(f"peak RSS: reranker {load_rss:.0f} MiB after the load phases, {peak_rss_mib(stack.reranker_proc.pid):.0f} MiB "
          f"after the limits; OpenSearch node {peak_rss_mib(stack.node_pid):.0f} MiB (1 GiB heap)")
    args.out.write_text(json.dumps({
        "model": model, "k": args.k, "clients": args.clients, "seconds": args.seconds, "queries": len(queries),
        "phases": [{**phase.__dict__, "latencies_ms": sorted(phase.latencies_ms)} for phase in phases],
        "microbatch_ratio": ratio, "reranker_peak_rss_mib": peak_rss_mib(stack.reranker_proc.pid),
        "node_peak_rss_mib": peak_rss_mib(stack.node_pid),
    }, indent=1))
    errors = sum(p.errors for p in phases) + sum(p.lost_hits for p in phases)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
