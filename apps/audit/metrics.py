"""IR metrics through ir-measures (trec_eval underneath) and a paired test between runs.

Levels 1..4 become three qrels views of the same judgments:
- graded, gain = level - 1 (Irrelevant 0 .. Excellent 3): nDCG@k, Judged@k, and nDCGj@k, the
  nDCG of the condensed list (unjudged hits removed first: ir-measures' nDCG(judged_only=True)).
  Where few hits are judged, plain nDCG@k counts every unjudged hit as irrelevant and barely moves
  under any reordering; nDCGj@k compares how the judged hits were ordered;
- relevant, 1 when level >= the relevant level (default 3, Related): P@k, R@k, MRR;
- irrelevant, 1 when level is Irrelevant: its P@k is the irrelevant rate @k.
Judged@k is the share of the hits returned in the top k that are judged (ir-measures' definition:
over min(k, hits returned)). Every query of the evaluated set counts; one whose run returned nothing scores 0 (trec_eval -c).
"""

from __future__ import annotations

import math
import warnings
from statistics import fmean

import ir_measures
from ir_measures import RR, Judged, P, R, nDCG

from .levels import FOUR_LEVEL, Levels

TEST_NAME = "paired t-test (two-sided)"


def metric_names(k: int) -> list[str]:
    return [f"P@{k}", f"R@{k}", f"nDCG@{k}", f"nDCGj@{k}", "MRR", f"Judged@{k}", f"IrrRate@{k}"]


def lower_is_better(name: str) -> bool:
    return name.startswith("IrrRate@") or name in ("relevant_loss",)


def per_query(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]], evaluated: list[str], k: int,
              rel_level: int, levels: Levels = FOUR_LEVEL) -> dict[str, dict[str, float]]:
    """{metric name: {query id: value}} over `evaluated` (queries with judgments)."""
    # Rank-derived scores: trec_eval sorts by score and breaks ties by doc id, not by the engine's order.
    run = {q: {d: float(len(ids) - i) for i, d in enumerate(ids)} for q, ids in rankings.items() if ids and q in evaluated}
    judged = {q: qrels[q] for q in evaluated}
    views = [
        ({q: {d: lv - levels.irrelevant for d, lv in docs.items()} for q, docs in judged.items()},  # gain 0 at the bottom
         {nDCG @ k: f"nDCG@{k}", nDCG(judged_only=True) @ k: f"nDCGj@{k}", Judged @ k: f"Judged@{k}"}),
        ({q: {d: int(lv >= rel_level) for d, lv in docs.items()} for q, docs in judged.items()},
         {P @ k: f"P@{k}", R @ k: f"R@{k}", RR: "MRR"}),
        ({q: {d: int(lv == levels.irrelevant) for d, lv in docs.items()} for q, docs in judged.items()},
         {P @ k: f"IrrRate@{k}"}),
    ]
    values = {name: dict.fromkeys(evaluated, 0.0) for name in metric_names(k)}
    for view, names in views:
        by_str = {str(m): name for m, name in names.items()}
        for metric in ir_measures.iter_calc(list(names), view, run):
            values[by_str[str(metric.measure)]][metric.query_id] = float(metric.value)
    return values


def means(values: dict[str, dict[str, float]]) -> dict[str, float]:
    return {name: fmean(per_q.values()) if per_q else 0.0 for name, per_q in values.items()}


def paired_test(a: dict[str, float], b: dict[str, float]) -> dict:
    """b - a over the queries both have: mean delta and the paired t-test's p-value."""
    from scipy.stats import ttest_rel

    queries = sorted(set(a) & set(b))
    xs, ys = [a[q] for q in queries], [b[q] for q in queries]
    delta = fmean(y - x for x, y in zip(xs, ys)) if queries else 0.0
    if len(queries) < 2:
        p = None
    elif all(x == y for x, y in zip(xs, ys)):
        p = 1.0  # identical runs: no evidence of a difference (scipy would say nan)
    else:
        with warnings.catch_warnings():  # near-constant differences: scipy warns, the p-value still stands
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(ttest_rel(ys, xs).pvalue)
        p = None if math.isnan(p) else p
    return {"delta": delta, "p_value": p, "queries": len(queries)}
