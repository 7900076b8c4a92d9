"""Search latency for top-k with and without the lref rerank pipeline, and the pipeline's overhead
beyond the reranker's own time.

Needs a running stack (see docs/opensearch.md):
    lref opensearch up && lref serve &            # node + reranker (default model)
    lref opensearch install && lref opensearch load ../shared/data/homedepot/products.jsonl
    python bench/search_latency.py

Per query it searches BM25 alone, then through the pipeline, and reads from the reranker's
/metrics what that search cost it: its request time (lref_request_seconds_sum for /v1/rerank)
and its model compute (lref_batch_seconds_sum). Then
    overhead beyond compute = pipeline latency - BM25 latency - model compute
      (the reranker's HTTP/JSON/tokenising, ML Commons, the connector, the search processors)
    overhead beyond the reranker = pipeline latency - BM25 latency - reranker request time
      (only what the engine side adds).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "homedepot"
REQUEST = re.compile(r'^lref_request_seconds_sum\{endpoint="/v1/rerank"\} (\S+)$', re.M)
COMPUTE = re.compile(r"^lref_batch_seconds_sum (\S+)$", re.M)


def reranker_seconds(reranker: str) -> tuple[float, float]:
    """(request seconds, model seconds) the reranker has spent so far."""
    text = httpx.get(f"{reranker}/metrics", timeout=10).text
    return tuple(float(m.group(1)) if (m := pattern.search(text)) else 0.0 for pattern in (REQUEST, COMPUTE))


def queries_from(dev: Path, count: int) -> list[str]:
    seen: list[str] = []
    for line in dev.read_text().splitlines():
        query = json.loads(line)["query"]
        if query not in seen:
            seen.append(query)
        if len(seen) == count:
            break
    return seen


def timed_search(client: httpx.Client, url: str, index: str, query: str, k: int, pipeline: str | None) -> tuple[float, dict]:
    body = {"query": {"match": {"title": query}}, "size": k, "_source": ["title"],
            "ext": {"rerank": {"query_context": {"query_text": query}}}}
    params = {"search_pipeline": pipeline} if pipeline else {}
    started = time.perf_counter()
    response = client.post(f"{url}/{index}/_search", params=params, json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000, response.json()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch", default="http://127.0.0.1:9200")
    parser.add_argument("--reranker", default="http://127.0.0.1:8000")
    parser.add_argument("--index", default="products")
    parser.add_argument("--pipeline", default="lref-rerank")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.jsonl")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/out/search_latency.json"))
    args = parser.parse_args()
    if not args.dev.exists():
        print(f"error: {args.dev} not found (Home Depot data lives in ../shared/data/homedepot)", file=sys.stderr)
        return 2
    client = httpx.Client(timeout=120)
    try:
        count = client.get(f"{args.opensearch}/{args.index}/_count").json()["count"]
        client.get(f"{args.reranker}/health").raise_for_status()
    except (httpx.HTTPError, KeyError) as exc:
        print(f"error: the stack is not ready ({exc}); see the docstring for the set-up", file=sys.stderr)
        return 2
    queries = queries_from(args.dev, args.queries + args.warmup)
    rows = []
    for i, query in enumerate(tqdm(queries, desc="queries")):
        bm25_ms, _ = timed_search(client, args.opensearch, args.index, query, args.k, None)
        before = reranker_seconds(args.reranker)
        piped_ms, result = timed_search(client, args.opensearch, args.index, query, args.k, args.pipeline)
        after = reranker_seconds(args.reranker)
        reranker_ms, compute_ms = ((a - b) * 1000 for a, b in zip(after, before))
        report = result.get("ext", {}).get("lref", {})
        if i < args.warmup:
            continue
        rows.append({"query": query, "bm25_ms": bm25_ms, "pipeline_ms": piped_ms, "reranker_ms": reranker_ms,
                     "compute_ms": compute_ms, "overhead_compute_ms": piped_ms - bm25_ms - compute_ms,
                     "overhead_ms": piped_ms - bm25_ms - reranker_ms, "reranked": report.get("reranked"),
                     "kept": report.get("kept"), "dropped": len(report.get("dropped", []))})
    if not all(r["reranked"] for r in rows):
        print("warning: some searches were not reranked (reranker timeout?)", file=sys.stderr)
    table = Table(title=f"top-{args.k} search latency, {len(rows)} queries, index of {count} products")
    for column in ("", "p50 ms", "p95 ms", "mean ms"):
        table.add_column(column, justify="right")
    for key, label in (("bm25_ms", "BM25 only"), ("pipeline_ms", "BM25 + lref-rerank pipeline"),
                       ("reranker_ms", "reranker request time"), ("compute_ms", "reranker model compute"),
                       ("overhead_compute_ms", "overhead beyond model compute"),
                       ("overhead_ms", "overhead beyond the reranker request")):
        values = [r[key] for r in rows]
        table.add_row(label, f"{pct(values, 50):.1f}", f"{pct(values, 95):.1f}", f"{statistics.mean(values):.1f}")
    Console().print(table)
    kept = sum(r["kept"] or 0 for r in rows)
    dropped = sum(r["dropped"] for r in rows)
    print(f"hits kept {kept}, dropped (Bad tier) {dropped}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"k": args.k, "index_size": count, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
