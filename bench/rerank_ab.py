"""Interleaved A/B of CPU serving settings: token budget x shared-prefix attention kernel.

Each setting judges the same Home Depot query sets (50 products each, as bench/rerank_speed.py
draws them); the settings take turns for --rounds rounds and each request keeps its fastest
time, so a neighbour's load on a shared machine hits every setting alike. Prints ms per request,
useful GFLOP/s (the FLOP count of bench/rerank_speed.py) and the share of the matmul peak of the
model's dtype, measured after the rounds. Needs ../shared/data/homedepot.

Run: .venv/bin/python bench/rerank_ab.py fused:1024 matmuls:1024 matmuls:256 [--dtype auto] [--judge shipped]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.rerank_speed import cpu_line, load_judge, load_queries, matmul_peak, request_flops  # noqa: E402
from reranker.backends import ScoreJob, shared_prefix  # noqa: E402
from reranker.backends.transformers_backend import TransformersBackend  # noqa: E402

KERNELS = {"fused": (torch.float32, torch.bfloat16), "matmuls": ()}  # dtypes that take PyTorch's fused CPU kernel


def setting(text: str) -> tuple[str, int]:
    kernel, _, budget = text.partition(":")
    if kernel not in KERNELS or not budget.isdigit():
        raise SystemExit(f"setting {text!r}: write KERNEL:BUDGET with KERNEL one of {', '.join(KERNELS)}")
    return kernel, int(budget)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="+", help="KERNEL:BUDGET, e.g. fused:1024 matmuls:256")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--queries", type=int, default=6)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--judge", default="zero-shot", help="as bench/rerank_speed.py --judge")
    args = ap.parse_args()
    settings = [setting(s) for s in args.settings]
    model, prompt, device = load_judge(args.judge, "default", args.dtype, "cpu")
    runs = load_queries(args.queries)
    flops = sum(request_flops(model, prompt, q, t) for q, t in runs)
    backends = [TransformersBackend(model, prompt, device=device, max_batch_tokens=budget) for _, budget in settings]
    fastest = [[float("inf")] * len(runs) for _ in settings]
    with torch.inference_mode(), tqdm(total=args.rounds * len(settings) * len(runs), desc="requests") as bar:
        for _ in range(args.rounds):
            for i, ((kernel, _), backend) in enumerate(zip(settings, backends)):
                shared_prefix.FUSED_CPU_DTYPES = KERNELS[kernel]
                for j, (query, titles) in enumerate(runs):
                    start = time.perf_counter()
                    backend.label_probs([ScoreJob(query, titles)])
                    fastest[i][j] = min(fastest[i][j], time.perf_counter() - start)
                    bar.update()
    peak = matmul_peak(model.dtype)
    table = Table(title=f"{len(runs)} queries x 50 products, fastest of {args.rounds} interleaved rounds — "
                        f"{model.dtype}, judge {args.judge}, prefix of query 1: {len(prompt.query_ids(runs[0][0]))} tokens")
    for col in ("attention", "max_batch_tokens", "ms / request", "GFLOP/s", f"% of {model.dtype} matmul peak"):
        table.add_column(col, justify="left" if col == "attention" else "right")
    for (kernel, budget), times in zip(settings, fastest):
        rate = flops / sum(times)
        table.add_row(kernel, str(budget), f"{sum(times) / len(times) * 1e3:.0f}", f"{rate / 1e9:.0f}", f"{rate / peak:.1%}")
    console = Console(width=140)
    console.print(table)
    console.print(cpu_line(f"matmul peak {peak / 1e9:.0f} GFLOP/s ({model.dtype}, after the rounds); "))


if __name__ == "__main__":
    main()
