"""The audit's real run: Home Depot dev queries on the 54,667-product index, BM25 against the
lref-rerank pipeline, through `lref audit`; the report's plots are copied to docs/results/.

Needs a running stack (see docs/audit.md):
    lref opensearch up --port 9250 --transport-port 9350 --heap 2g --state /var/lib/lref/opensearch/nodes/audit-bench
    lref serve --port 8050 &                      # or --adapter DIR for a trained judge
    lref opensearch install --opensearch http://127.0.0.1:9250 --reranker-url http://127.0.0.1:8050 --read-timeout-s 60
    lref opensearch load ../shared/data/homedepot/products.jsonl --opensearch http://127.0.0.1:9250 --recreate
    python bench/audit_homedepot.py --queries 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "homedepot"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opensearch", default="http://127.0.0.1:9250")
    parser.add_argument("--reranker", default="http://127.0.0.1:8050")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.jsonl")
    parser.add_argument("--queries", type=int, default=200, help="first N distinct dev queries")
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "audit_homedepot")
    parser.add_argument("--plots-to", type=Path, default=ROOT / "docs" / "results", help="where the PNGs are copied")
    args = parser.parse_args()
    if not args.dev.exists():
        print(f"error: {args.dev} not found (Home Depot data lives in ../shared/data/homedepot)", file=sys.stderr)
        return 2
    try:
        count = httpx.get(f"{args.opensearch}/products/_count", timeout=10).json()["count"]
        health = httpx.get(f"{args.reranker}/health", timeout=10).raise_for_status().json()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        print(f"error: the stack is not ready ({exc}); see the docstring for the set-up", file=sys.stderr)
        return 2
    # The audit report cannot see which model served the pipeline; keep it beside the report.
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stack.json").write_text(json.dumps({"products": count, "reranker": health}, indent=1))
    print(f"index: {count} products; reranker: {health}")
    # Two searches through the pipeline first: the model's first calls are slow and would time out.
    for query in ("warm up drill", "warm up paint"):
        httpx.post(f"{args.opensearch}/products/_search", params={"search_pipeline": "lref-rerank"}, timeout=180,
                   json={"query": {"match": {"title": query}}, "size": args.size,
                         "ext": {"rerank": {"query_context": {"query_text": query}}}})
    command = [sys.executable, "-m", "lref", "audit", str(args.dev), "--opensearch", args.opensearch,
               "--limit", str(args.queries), "--size", str(args.size), "--k", str(args.k), "--pipeline", "lref-rerank",
               "--out", str(args.out)]
    print("running:", " ".join(command[2:]))
    done = subprocess.run(command)
    if done.returncode != 0:
        return done.returncode
    args.plots_to.mkdir(parents=True, exist_ok=True)
    for png in sorted((args.out / "plots").glob("*.png")):
        shutil.copy(png, args.plots_to / f"audit-homedepot-{png.name}")
        print("plot:", args.plots_to / f"audit-homedepot-{png.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
