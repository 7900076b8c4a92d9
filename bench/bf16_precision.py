"""How far bf16 serving is from fp32, and which part of that is avoidable: a table.

For Home Depot dev queries x 50 products (the sets bench/rerank_speed.py draws), the label
probabilities of the default model in fp32 (shared-prefix path; it equals a full prefill to ~5e-6)
are the reference. Against it, the bf16 model through
  (b) the shared-prefix path as served, (c) a full prefill of every pair (no prefix reuse), and
  (a) naive generate() per pair (full-vocabulary logits, which the model computes in bf16),
each with the label head as it is now (fp32 rows, fp32 matmul) and with its logits rounded to bf16,
as the head computed them before (a bf16 matmul). Needs ../shared/data/homedepot.
Run: .venv/bin/python bench/bf16_precision.py [--queries 4] [--naive-queries 1]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.rerank_speed import cpu_line, load_queries, naive_scores  # noqa: E402
from reranker.backends import ScoreJob  # noqa: E402
from reranker.backends.transformers_backend import TransformersBackend  # noqa: E402
from reranker.core import PromptFormat, load_scheme, scoring  # noqa: E402
from reranker.models.loading import ModelSpec, load_model  # noqa: E402


@contextlib.contextmanager
def bf16_rounded_head():
    """The label head's logits rounded to bf16, as its bf16 matmul returned them before."""
    exact = scoring.LabelHead.logits
    scoring.LabelHead.logits = lambda self, hidden: exact(self, hidden).bfloat16().float()
    try:
        yield
    finally:
        scoring.LabelHead.logits = exact


def gaps(reference: list[torch.Tensor], got: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(r - g).abs().flatten() for r, g in zip(reference, got)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--naive-queries", type=int, default=1)
    args = ap.parse_args()
    runs = load_queries(args.queries)
    fp32, tokenizer, _ = load_model(ModelSpec(model="default", dtype="float32", device="cpu"))
    prompt = PromptFormat(tokenizer, load_scheme())
    with torch.inference_mode():
        reference = [TransformersBackend(fp32, prompt).label_probs([ScoreJob(q, t)])[0] for q, t in runs]
    bf16, _, _ = load_model(ModelSpec(model="default", dtype="bfloat16", device="cpu"))
    paths = {
        "(b) shared prefix, as served": lambda q, t: TransformersBackend(bf16, prompt).label_probs([ScoreJob(q, t)])[0],
        "(c) full prefill per pair": lambda q, t: TransformersBackend(bf16, prompt, prefix_reuse=False).label_probs(
            [ScoreJob(q, t)])[0],
    }
    table = Table(title=f"|P(bf16) - P(fp32)| over {args.queries} queries x 50 Home Depot products, default model")
    for col in ("path", "label head", "pairs", "max", "p99", "mean"):
        table.add_column(col, justify="left" if col in ("path", "label head") else "right")
    with torch.inference_mode():
        for name, score in paths.items():
            for head, context in (("fp32 (now)", contextlib.nullcontext), ("logits rounded to bf16 (before)", bf16_rounded_head)):
                with context():
                    d = gaps(reference, [score(q, t) for q, t in runs])
                table.add_row(name, head, str(d.numel() // 4), f"{d.max():.4f}", f"{d.quantile(0.99):.4f}", f"{d.mean():.4f}")
        naive = runs[: args.naive_queries]
        d = gaps(reference[: len(naive)], [naive_scores(bf16, prompt, q, t) for q, t in naive])
        table.add_row("(a) naive generate per pair", "the model's bf16 LM head", str(d.numel() // 4), f"{d.max():.4f}",
                      f"{d.quantile(0.99):.4f}", f"{d.mean():.4f}")
    console = Console(width=140)
    console.print(table)
    console.print(cpu_line())


if __name__ == "__main__":
    main()
