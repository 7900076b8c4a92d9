"""How far apart the judge and the baselines' errors are: dev Spearman and macro-F1 of each model
alone and of the geometric mean of each pair's label probabilities (equal weights, no label weights).
Two columns split Spearman into its parts: the Spearman of each row's query mean of the model's
expected grade (what it knows about a query's products as a whole, which no reranker can use) and,
of the pairs of one query's rows with different ratings, the share the model orders right (all a
reranker of that query can use). An analysis for docs/RESULTS.md, not a served judge. A model
whose file is missing is left out.

    python bench/ensemble_dev.py    # after `lref train --stage eval`, bench/minilm_anchor.py and
                                    # bench/lexical_anchor.py --out bench/out/lexical_anchor.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parents[1]
GRADES = np.array([4, 3, 2, 1])  # scheme order, best first


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scores(probs: np.ndarray, gold: np.ndarray, rating: np.ndarray) -> tuple[float, float]:
    return (float(spearmanr(probs @ GRADES, rating).statistic),
            float(f1_score(gold, probs.argmax(1), labels=range(4), average="macro", zero_division=0)))


def split(expected: np.ndarray, rating: np.ndarray, queries: np.ndarray) -> tuple[str, str]:
    """(Spearman of the per-query mean of `expected`, share of a query's differently rated pairs ordered right)."""
    means = {q: expected[queries == q].mean() for q in np.unique(queries)}
    between = spearmanr([means[q] for q in queries], rating).statistic
    right = pairs = 0
    for q in means:
        e, r = expected[queries == q], rating[queries == q]
        differ = np.sign(r[:, None] - r[None, :])
        upper = np.triu(differ != 0, 1)
        pairs += upper.sum()
        right += (np.sign(e[:, None] - e[None, :]) == differ)[upper].sum()
    return f"{between:.4f}", f"{right / max(pairs, 1):.1%}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=Path, default=ROOT.parent / "shared/data/homedepot/dev.jsonl")
    ap.add_argument("--judge", type=Path, default=ROOT / "runs/homedepot-judge/eval/probs.jsonl",
                    help="the eval stage's raw probabilities (before label weights)")
    ap.add_argument("--minilm", type=Path, default=ROOT / "bench/out/minilm_anchor/eval_probs.npy")
    ap.add_argument("--lexical", type=Path, default=ROOT / "bench/out/lexical_anchor_dev_probs.npy")
    args = ap.parse_args()
    for path in (args.dev, args.judge):
        if not path.is_file():
            print(f"ensemble_dev: {path} not found (see the module doc for what makes it)", file=sys.stderr)
            return 2
    dev = rows(args.dev)
    gold = np.array([4 - r["level"] for r in dev])  # level 4 is index 0
    rating = np.array([r["relevance"] for r in dev], dtype=float)
    judged = {(r["query"], str(r["product_id"])): r["probs"] for r in rows(args.judge)}
    models = {"judge": np.array([judged[(r["query"], str(r["product_id"]))] for r in dev])}
    if args.minilm.is_file():  # dev order (minilm_anchor reads the run's eval.jsonl, dev.jsonl's order)
        models["MiniLM"] = np.load(args.minilm)
    if args.lexical.is_file():
        models["lexical"] = np.load(args.lexical)[:, ::-1]  # levels 1..4 -> best first
    left_out = [name for name, path in (("MiniLM", args.minilm), ("lexical", args.lexical)) if not path.is_file()]
    queries = np.array([r["query"] for r in dev])
    table = Table(title=f"Home Depot dev ({len(dev)} rows): models alone and geometric means of pairs")
    for col in ("models", "Spearman", "macro-F1", "Spearman, query means only", "pairs within a query right",
                "Spearman between the two"):
        table.add_column(col, justify="left" if col == "models" else "right")
    for name, probs in models.items():
        table.add_row(name, *(f"{v:.4f}" for v in scores(probs, gold, rating)), *split(probs @ GRADES, rating, queries), "")
    for (a, pa), (b, pb) in itertools.combinations(models.items(), 2):
        mean = np.exp(0.5 * np.log(np.clip(pa, 1e-12, None)) + 0.5 * np.log(np.clip(pb, 1e-12, None)))
        mean /= mean.sum(1, keepdims=True)
        between = spearmanr(pa @ GRADES, pb @ GRADES).statistic
        table.add_row(f"{a} + {b}", *(f"{v:.4f}" for v in scores(mean, gold, rating)), *split(mean @ GRADES, rating, queries),
                      f"{between:.2f}")
    table.add_row("the raters' own query means", "", "", f"{split(rating, rating, queries)[0]}", "", "")
    if left_out:
        table.caption = f"left out (file not found): {', '.join(left_out)}"
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
