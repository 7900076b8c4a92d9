"""Rerank 50 real products for one query with the default judge, three ways, and print a table.

  (a) naive: transformers generate() per pair (one token, full vocabulary scores)
  (b) ours: label-token scoring, length batching, instruction+query prefix KV reused per query
  (c) ours without prefix reuse

Also measures fp32 and bf16 matmul peaks in the same run and reports (b)'s FLOP utilisation.
Run: .venv/bin/python bench/rerank_speed.py [--queries 8] [--naive-queries 2] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from reranker.backends import ScoreJob
from reranker.backends.transformers_backend import TransformersBackend
from reranker.core import PromptFormat, label_probs_from_logits, load_scheme
from reranker.models.loading import ModelSpec, load_model

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "homedepot"
N_PRODUCTS = 50


def load_queries(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Per query: its judged dev titles, topped up to 50 with catalog titles sharing a query word."""
    rng = random.Random(seed)
    if not (DATA / "dev.jsonl").is_file():
        raise SystemExit(f"no Home Depot data at {DATA}: this benchmark needs ../shared/data/homedepot")
    by_query: dict[str, list[str]] = {}
    for line in open(DATA / "dev.jsonl"):
        row = json.loads(line)
        by_query.setdefault(row["query"], []).append(row["title"])
    catalog = [json.loads(line)["title"] for line in open(DATA / "products.jsonl")]
    out = []
    for query in rng.sample(sorted(by_query), n):
        words = [w for w in query.lower().split() if len(w) > 2]
        pool = [t for t in catalog if any(w in t.lower() for w in words)] or catalog
        titles = list(dict.fromkeys(by_query[query]))
        titles += rng.sample(pool, min(len(pool), N_PRODUCTS * 2))
        titles = list(dict.fromkeys(titles))[:N_PRODUCTS]
        titles += rng.sample(catalog, N_PRODUCTS - len(titles))
        out.append((query, titles))
    return out


def matmul_peak(dtype: torch.dtype, n: int = 1536, reps: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def model_flops(model, sequences: list[tuple[int, int]]) -> float:
    """Useful FLOPs for (cached_prefix_len, new_tokens) sequences: 2*params per token for the
    linear layers plus attention over the visible context; the label head is negligible."""
    cfg = model.config
    linear = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "lm_head" not in n)
    attn_width = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    total = 0.0
    for past, new in sequences:
        context = sum(range(past + 1, past + new + 1))  # keys each new token attends to
        total += 2 * linear * new + 4 * cfg.num_hidden_layers * attn_width * context
    return total


def naive_scores(model, prompt: PromptFormat, query: str, titles: list[str]) -> torch.Tensor:
    rows = []
    for title in titles:
        ids = torch.tensor([prompt.encode(query, title).prompt_ids])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                             output_scores=True, return_dict_in_generate=True, pad_token_id=prompt.eos_token_id)
        rows.append(label_probs_from_logits(out.scores[0], prompt.label_token_ids)[0])
    return torch.stack(rows)


def timed(fn, runs: list[tuple[str, list[str]]], desc: str) -> tuple[list[float], list[torch.Tensor]]:
    latencies, outputs = [], []
    fn(*runs[0])  # warm-up
    for query, titles in tqdm(runs, desc=desc, leave=False):
        start = time.perf_counter()
        outputs.append(fn(query, titles))
        latencies.append(time.perf_counter() - start)
    return latencies, outputs


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--naive-queries", type=int, default=2)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer, device = load_model(ModelSpec(dtype=args.dtype))
    prompt = PromptFormat(tokenizer, load_scheme())
    ours = TransformersBackend(model, prompt, device=device)
    plain = TransformersBackend(model, prompt, device=device, prefix_reuse=False)
    runs = load_queries(args.queries)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}

    rows = []
    with torch.inference_mode():
        lat_a, out_a = timed(lambda q, t: naive_scores(model, prompt, q, t), runs[: args.naive_queries], "naive")
        rows.append(("(a) naive generate per pair", lat_a))
        before = ours.tokens_processed
        lat_b, out_b = timed(lambda q, t: ours.label_probs([ScoreJob(q, t)])[0], runs, "ours")
        rows.append(("(b) ours", lat_b))
        lat_c, out_c = timed(lambda q, t: plain.label_probs([ScoreJob(q, t)])[0], runs, "ours, no prefix reuse")
        rows.append(("(c) ours without prefix reuse", lat_c))

    # FLOP utilisation of (b), from the real token counts of one request (prefix once, products after it)
    query, titles = runs[0]
    q_len = len(prompt.query_ids(query))
    seqs = [(0, q_len)] + [(q_len, len(prompt.doc_ids(t))) for t in titles]
    flops_per_request = model_flops(model, seqs)
    achieved = flops_per_request / statistics.median(lat_b)

    drift = max((a - b).abs().max().item() for a, b in zip(out_a, out_b))
    drift_c = max((b - c).abs().max().item() for b, c in zip(out_b, out_c))

    table = Table(title=f"Rerank {N_PRODUCTS} Home Depot products for one query — {model.dtype}, {device}, "
                        f"{torch.get_num_threads()} threads")
    for col in ("method", "requests", "pairs/s", "p50 ms", "p95 ms", "speed-up vs (a)"):
        table.add_column(col, justify="right" if col != "method" else "left")
    base = N_PRODUCTS / statistics.mean(lat_a)
    for name, lat in rows:
        pps = N_PRODUCTS / statistics.mean(lat)
        table.add_row(name, str(len(lat)), f"{pps:.1f}", f"{pct(lat, 50) * 1e3:.0f}", f"{pct(lat, 95) * 1e3:.0f}",
                      f"{pps / base:.1f}x")
    console = Console(width=140)
    console.print(table)
    console.print(f"(b) useful FLOPs/request {flops_per_request / 1e9:.1f} GFLOP, achieved {achieved / 1e9:.1f} GFLOP/s")
    for name, peak in peaks.items():
        console.print(f"matmul peak {name}: {peak / 1e9:.1f} GFLOP/s -> (b) utilisation {achieved / peak:.0%} of {name} peak")
    console.print(f"max |P(a) - P(b)| = {drift:.2e}; max |P(b) - P(c)| = {drift_c:.2e}")


if __name__ == "__main__":
    main()
