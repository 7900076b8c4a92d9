"""Stage `eval`: judge the eval rows with the served code path and report what matters for search.

Accuracy, macro-F1, per-class P/R/F1, the confusion matrix, calibration (top-label ECE), the
share of errors that over-grade (the optimistic bias LREF's DPO removes), and for a sweep of
CumPT β the Bad tier's precision/recall (Bad = what the pipeline drops). The β with the best Bad
F1 (pick_beta_by: bad_f1), or the one that drops the most Bad rows while losing at most
max_relevant_loss of the Good-tier ones (pick_beta_by: relevant_loss), is the one to serve with.

Before all of that, a judge trained on class-balanced rows gets per-label weights toward its data's
label prior (EvalConfig.prior_exponents, chosen by macro-F1); every number here, β included, is of
the weighted probabilities that serving then uses (TierPolicy.label_weights)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from tqdm import tqdm

from reranker.backends import ScoreJob
from reranker.core import DEFAULT_BETA, LabelScheme, TierPolicy, cumpt_index, reweight

from .config import EvalConfig


def label_probs(backend, rows: list[dict], batch_queries: int = 16) -> np.ndarray:
    """Probabilities in scheme order for every row, scored per query like the service does."""
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_query[row["query"]].append(i)
    queries = list(by_query)
    out = np.zeros((len(rows), len(backend.prompt.scheme.levels)), dtype=np.float64)
    for start in tqdm(range(0, len(queries), batch_queries), desc="judging eval rows", unit="batch"):
        chunk = queries[start:start + batch_queries]
        jobs = [ScoreJob(q, [rows[i]["product"] for i in by_query[q]]) for q in chunk]
        for query, probs in zip(chunk, backend.label_probs(jobs)):
            out[by_query[query]] = probs.double().numpy()
    return out


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs((predicted[inside] == gold[inside]).mean() - confidence[inside].mean())
    return float(ece)


def pick_beta(sweep: list[dict], cfg: EvalConfig) -> dict:
    """The sweep row to serve with (see the module doc); ties go to the β nearest the default."""
    if cfg.pick_beta_by == "relevant_loss":
        allowed = [s for s in sweep if s["relevant_loss"] <= cfg.max_relevant_loss]
        if allowed:
            return max(allowed, key=lambda s: (s["bad_recall"], s["bad_precision"], -abs(s["beta"] - DEFAULT_BETA)))
        return min(sweep, key=lambda s: (s["relevant_loss"], -s["bad_recall"]))
    return max(sweep, key=lambda s: (s["bad_f1"], -abs(s["beta"] - DEFAULT_BETA)))


def prior_weights(prior: np.ndarray, exponent: float) -> list[float]:
    """(label prior / uniform) ** exponent per label, scheme order, rounded as the card keeps them."""
    # a label absent from the train rows keeps a small positive weight: serving refuses a zero one
    prior = np.clip(np.asarray(prior, dtype=np.float64), 1e-3, None)
    return [round(float(w), 6) for w in (prior * len(prior)) ** exponent]


def weighted(probs: np.ndarray, weights: list[float]) -> np.ndarray:
    """The probabilities serving decides on: the core's reweighting, row by row."""
    return np.array([reweight(row, weights) for row in probs], dtype=np.float64)


def pick_prior(probs: np.ndarray, gold: np.ndarray, prior: np.ndarray | None, exponents: list[float]) -> tuple[list[float], list[dict]]:
    """-> (label weights, sweep): the exponent with the best macro-F1 (ties: the smaller one)."""
    if prior is None:
        return [], []
    sweep = []
    for exponent in sorted(exponents):
        weights = prior_weights(prior, exponent)
        predicted = weighted(probs, weights).argmax(axis=1)
        sweep.append({"exponent": exponent, "weights": weights, "accuracy": round(float(accuracy_score(gold, predicted)), 4),
                      "macro_f1": round(float(f1_score(gold, predicted, labels=range(probs.shape[1]), average="macro",
                                                       zero_division=0)), 4)})
    best = max(sweep, key=lambda s: (s["macro_f1"], -s["exponent"]))
    return best["weights"], sweep


def metrics(probs: np.ndarray, rows: list[dict], scheme: LabelScheme, cfg: EvalConfig,
            prior: np.ndarray | None = None) -> dict:
    """`prior`: the label prior (scheme order) of the data a class-balanced judge was trained on."""
    names = scheme.names
    gold = np.array([names.index(r["label"]) for r in rows])
    label_weights, prior_sweep = pick_prior(probs, gold, prior, cfg.prior_exponents)
    probs = weighted(probs, label_weights)
    predicted = probs.argmax(axis=1)
    p, r, f, support = precision_recall_fscore_support(gold, predicted, labels=range(len(names)), zero_division=0)
    errors = predicted != gold
    # Levels are listed best first, so a smaller index is a higher grade: over-grading.
    optimistic = int((errors & (predicted < gold)).sum())
    default_tier = TierPolicy()
    bad_gold = np.array([default_tier.tier_of(scheme.levels[g]) == "Bad" for g in gold])
    good_gold = np.array([default_tier.tier_of(scheme.levels[g]) == "Good" for g in gold])
    sweep = []
    for beta in cfg.betas:
        levels = [cumpt_index(row, beta) for row in probs]
        bad_pred = np.array([default_tier.tier_of(scheme.levels[i]) == "Bad" for i in levels])
        tp = int((bad_pred & bad_gold).sum())
        precision = tp / bad_pred.sum() if bad_pred.sum() else 0.0
        recall = tp / bad_gold.sum() if bad_gold.sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        sweep.append({"beta": beta, "bad_precision": round(precision, 4), "bad_recall": round(recall, 4),
                      "bad_f1": round(f1, 4), "dropped_share": round(float(bad_pred.mean()), 4),
                      "relevant_loss": round(float(bad_pred[good_gold].mean()), 4) if good_gold.any() else 0.0})
    best = pick_beta(sweep, cfg)
    grades = np.array([lv.grade for lv in scheme.levels])
    human = np.array([r.get("rating", scheme.levels[g].grade) for r, g in zip(rows, gold)])
    return {
        "rows": len(rows),
        # ranking quality: the expected grade against the human grade (the raters' mean where the data has it)
        "spearman": round(float(spearmanr(probs @ grades, human).statistic), 4),
        "spearman_against": "rating" if all("rating" in r for r in rows) else "level",
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, labels=range(len(names)), average="macro", zero_division=0)), 4),
        "per_class": {n: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4), "f1": round(float(f[i]), 4),
                          "support": int(support[i])} for i, n in enumerate(names)},
        "confusion": {"labels": names, "matrix": confusion_matrix(gold, predicted, labels=range(len(names))).tolist()},
        "ece": round(expected_calibration_error(probs, gold), 4),
        "errors": int(errors.sum()), "optimistic_errors": optimistic,
        "optimistic_share_of_errors": round(optimistic / errors.sum(), 4) if errors.sum() else 0.0,
        "beta_sweep": sweep, "chosen_beta": best["beta"], "bad_at_chosen_beta": best,
        "label_weights": label_weights, "prior_sweep": prior_sweep,
    }


def summary(report: dict) -> dict:
    """The ablation table's columns."""
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "spearman": report["spearman"],
            "f1": {name: c["f1"] for name, c in report["per_class"].items()}, "ece": report["ece"],
            "optimistic_share_of_errors": report["optimistic_share_of_errors"], "chosen_beta": report["chosen_beta"],
            "bad_precision": report["bad_at_chosen_beta"]["bad_precision"],
            "bad_recall": report["bad_at_chosen_beta"]["bad_recall"], "label_weights": report.get("label_weights", [])}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priors = report.get("prior_sweep") or []
    fig, axes = plt.subplots(1, 3 if priors else 2, figsize=(16 if priors else 11, 4.2))
    left, right = axes[0], axes[1]
    matrix = np.array(report["confusion"]["matrix"])
    left.imshow(matrix, cmap="Blues")
    labels = report["confusion"]["labels"]
    left.set_xticks(range(len(labels)), labels, rotation=30)
    left.set_yticks(range(len(labels)), labels)
    left.set_xlabel("predicted")
    left.set_ylabel("gold")
    for (i, j), value in np.ndenumerate(matrix):
        left.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    left.set_title(f"accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    betas = [s["beta"] for s in report["beta_sweep"]]
    for key in ("bad_precision", "bad_recall", "bad_f1"):
        right.plot(betas, [s[key] for s in report["beta_sweep"]], marker="o", label=key.replace("_", " "))
    right.axvline(report["chosen_beta"], color="grey", linestyle="--")
    right.set_xlabel("CumPT β")
    right.set_title("Bad tier (dropped) vs β")
    right.legend()
    if priors:
        exponents = [s["exponent"] for s in priors]
        for key in ("macro_f1", "accuracy"):
            axes[2].plot(exponents, [s[key] for s in priors], marker="o", label=key.replace("_", "-"))
        chosen = next(s["exponent"] for s in priors if s["weights"] == report["label_weights"])
        axes[2].axvline(chosen, color="grey", linestyle="--")
        axes[2].set_xlabel("e: label weights (train prior / uniform)^e")
        axes[2].set_title("label weights toward the train prior")
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
