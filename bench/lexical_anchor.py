"""The cheap non-LLM anchor: gradient boosting on lexical features of (query, title), Home Depot.

Trained on all of train.jsonl, scored on dev.jsonl (no query on both sides), CPU only. The number
of boosting rounds is chosen on a held-out 15% of the *train queries* (then the model is refit on
all train rows with that number), so the dev numbers are not tuned on dev.

    .venv/bin/python bench/lexical_anchor.py --out bench/out/lexical_anchor.json

A later report can use the same pieces on its own rows:

    from training.lexical import build_stats, feature_matrix, fit, predict_proba
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the model lives in training/: SFT distils it (sft.teacher: lexical)
from training.data import write_jsonl  # noqa: E402
from training.lexical import (  # noqa: E402
    FEATURE_NAMES, LEVELS, NAMES, build_stats, expected_level, feature_matrix, fit, out_of_fold, predict_proba,
    teacher_records)

def scores(pred: np.ndarray, ranking: np.ndarray, levels: np.ndarray, relevance: np.ndarray) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    per = f1_score(levels, pred, labels=list(LEVELS), average=None, zero_division=0)
    rho = spearmanr(ranking, relevance).statistic
    return {"macro_f1": float(per.mean()), "accuracy": float(accuracy_score(levels, pred)),
            "spearman": float(0.0 if np.isnan(rho) else rho),
            "f1": {NAMES[lv]: float(f) for lv, f in zip(LEVELS, per)}}


def write_teacher(path: Path, rows: list[dict], X: np.ndarray, y: np.ndarray, groups: np.ndarray, max_iter: int,
                  seed: int) -> None:
    """The file the sft stage writes for `sft.teacher: lexical`, from the features computed here."""
    probs = out_of_fold(X, y, groups, max_iter, seed)[:, ::-1]  # levels 4..1: the scheme's order, best first
    write_jsonl(path, teacher_records(rows, probs))


def read_jsonl(path: Path) -> list[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def hardware() -> dict:
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "device": "CPU only"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/homedepot",
                    help="dir with train.jsonl, dev.jsonl, products.jsonl")
    ap.add_argument("--out", type=Path, help="write metrics and settings as JSON here")
    ap.add_argument("--max-train", type=int, help="subsample this many train rows (quick runs)")
    ap.add_argument("--max-iter", type=int, default=500, help="most boosting rounds (the best is picked)")
    # One OpenMP thread by default: on this project's shared 2-core machine two threads ran the fit
    # up to 6x slower than one whenever other jobs held the cores (barrier spinning).
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads for the fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-out", type=Path,
                    help="also write out-of-fold probabilities for every train row (5 folds by query) as JSONL "
                         "{query, product_id, probs} in the scheme's order, best first: sft.teacher reads it")
    args = ap.parse_args()
    started = time.perf_counter()
    console = Console(width=150)
    hw = hardware()
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    console.print(f"CPU: {hw['cpu']}, {hw['cores']} cores (CPU only)\ncommand: {command}")

    train, dev = read_jsonl(args.data / "train.jsonl"), read_jsonl(args.data / "dev.jsonl")
    if args.max_train and args.max_train < len(train):
        train = random.Random(args.seed).sample(train, args.max_train)
    stats = build_stats([p["title"] for p in read_jsonl(args.data / "products.jsonl")])
    X_train = feature_matrix([(r["query"], r["title"]) for r in train], stats, "train features")
    X_dev = feature_matrix([(r["query"], r["title"]) for r in dev], stats, "dev features")
    y = np.array([r["level"] for r in train])
    groups = np.array([r["query"] for r in train])
    levels = np.array([r["level"] for r in dev])
    relevance = np.array([r["relevance"] for r in dev])

    # The floor: labels drawn at random from the train prior (their Spearman is that of a random score).
    rng = np.random.default_rng(args.seed)
    prior = np.array([(y == lv).mean() for lv in LEVELS])
    drawn = rng.choice(LEVELS, size=len(dev), p=prior)
    results = {"label prior": {**scores(drawn, drawn, levels, relevance), "train_rows": len(train), "fit_s": 0.0}}

    t0 = time.perf_counter()
    with threadpool_limits(args.threads):
        model, info = fit(X_train, y, groups, max_iter=args.max_iter, seed=args.seed)
    fit_s = time.perf_counter() - t0
    probs = predict_proba(model, X_dev)
    pred = np.asarray(LEVELS)[probs.argmax(1)]
    results["lexical GBDT"] = {**scores(pred, expected_level(probs), levels, relevance),
                               "train_rows": len(train), "fit_s": round(fit_s, 1)}
    # The judge's eval rule, applied alike: the model was fit with balanced class weights, so its
    # probabilities get weights toward the train prior, the exponent chosen by macro-F1 on dev.
    from training.config import EvalConfig
    from training.evaluate import pick_prior, weighted

    label_weights, prior_sweep = pick_prior(probs, levels - 1, prior, EvalConfig().prior_exponents)
    shifted = weighted(probs, label_weights)
    results["lexical GBDT, label prior weights"] = {
        **scores(np.asarray(LEVELS)[shifted.argmax(1)], expected_level(shifted), levels, relevance),
        "train_rows": len(train), "fit_s": round(fit_s, 1), "label_weights": label_weights, "prior_sweep": prior_sweep}
    if args.teacher_out:
        with threadpool_limits(args.threads):
            write_teacher(args.teacher_out, train, X_train, y, groups, args.max_iter, args.seed)
    wall = time.perf_counter() - started

    table = Table(title=f"Home Depot dev ({len(dev)} rows), {len(FEATURE_NAMES)} lexical features, "
                        f"{info['n_iter']} rounds (picked on held-out train queries)")
    for col in ("row", "macro-F1", "accuracy", "Spearman", *(f"F1 {NAMES[lv]}" for lv in (4, 3, 2, 1)),
                "train rows", "fit s"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for name, r in results.items():
        table.add_row(name, f"{r['macro_f1']:.3f}", f"{r['accuracy']:.3f}", f"{r['spearman']:.3f}",
                      *(f"{r['f1'][NAMES[lv]]:.3f}" for lv in (4, 3, 2, 1)), f"{r['train_rows']:,}", f"{r['fit_s']:.1f}")
    console.print(table)
    console.print(f"wall time {wall:.1f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # the GBDT's dev probabilities (columns: levels 1..4, rows: dev.jsonl's order) for bench/ensemble_dev.py
        np.save(args.out.with_name(args.out.stem + "_dev_probs.npy"), probs)
        args.out.write_text(json.dumps({
            "results": results, "dev_rows": len(dev), "features": FEATURE_NAMES, "model": info,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "hardware": hw, "command": command, "wall_s": round(wall, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
