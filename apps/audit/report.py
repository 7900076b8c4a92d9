"""Everything the audit found, as one JSON-ready dict: metrics per run, paired tests between runs,
the filter audit, the worst queries, and the LLM's labels (kept apart, marked `source: llm`)."""

from __future__ import annotations

from itertools import combinations

from . import metrics
from .filter_audit import audit, dropped_per_query
from .judgments import Judgments
from .levels import Levels
from .search import BASELINE, Run

Qrels = dict[str, dict[str, int]]


def merged(human: Qrels, llm: Qrels) -> Qrels:
    """Human labels win; LLM labels fill only what no human judged."""
    out = {q: dict(docs) for q, docs in llm.items()}
    for q, docs in human.items():
        out.setdefault(q, {}).update(docs)
    return out


def score_runs(runs: dict[str, Run], qrels: Qrels, queries: dict[str, str], k: int, rel_level: int,
               levels: Levels) -> dict:
    """Per-run means and per-query values, and a paired test for every pair of runs."""
    evaluated = [q for q in queries if qrels.get(q)]
    per = {name: metrics.per_query({q: [h.id for h in r.hits] for q, r in run.items()}, qrels, evaluated, k, rel_level,
                                   levels) for name, run in runs.items()}
    comparisons = [
        {"a": a, "b": b, "test": metrics.TEST_NAME,
         "metrics": {m: metrics.paired_test(per[a][m], per[b][m]) for m in metrics.metric_names(k)}}
        for a, b in combinations(runs, 2)
    ]
    return {"evaluated_queries": len(evaluated), "per_query": per,
            "means": {name: metrics.means(values) for name, values in per.items()}, "comparisons": comparisons}


def worst_queries(runs: dict[str, Run], per: dict, queries: dict[str, str], qrels: Qrels, k: int, rel_level: int,
                  count: int) -> dict[str, list[dict]]:
    """For each pipeline run: the queries whose nDCG@k fell most against the baseline."""
    key = f"nDCG@{k}"
    out = {}
    for name, run in runs.items():
        if name == BASELINE:
            continue
        drops = dropped_per_query(run, qrels, rel_level)
        rows = [{"query_id": q, "query": queries[q], "baseline": per[BASELINE][key][q], "run": per[name][key][q],
                 "delta": per[name][key][q] - per[BASELINE][key][q], "dropped": drops[q][0],
                 "relevant_dropped": drops[q][1], "judged": len(qrels.get(q, {}))}
                for q in per[name][key]]
        out[name] = sorted(rows, key=lambda r: (r["delta"], -r["relevant_dropped"]))[:count]
    return out


def build(meta: dict, judgments: Judgments, queries: dict[str, str], runs: dict[str, Run], k: int, rel_level: int,
          worst: int, llm_rows: list[dict] | None, llm_qrels: Qrels | None) -> dict:
    human = {q: judgments.qrels[q] for q in queries if judgments.qrels.get(q)}
    levels = judgments.levels
    scored = score_runs(runs, human, queries, k, rel_level, levels)
    report = {
        "meta": dict(meta, queries_run=len(queries), queries_evaluated=scored["evaluated_queries"],
                     queries_without_judgments=len(queries) - scored["evaluated_queries"],
                     judgments_used=sum(len(d) for d in human.values()), metrics=metrics.metric_names(k),
                     test=metrics.TEST_NAME, scheme=levels.scheme.name, levels=levels.names),
        "runs": {name: {"metrics": scored["means"][name],
                        "per_query": {q: {m: v[q] for m, v in scored["per_query"][name].items()}
                                      for q in scored["per_query"][name][f"nDCG@{k}"]}}
                 for name in runs},
        "comparisons": scored["comparisons"],
        "filter_audit": {name: found for name, run in runs.items() if (found := audit(run, human, rel_level, levels))},
        "worst_queries": worst_queries(runs, scored["per_query"], queries, human, k, rel_level, worst),
        "queries": queries,
    }
    if llm_rows is not None:
        both = merged(human, llm_qrels or {})
        with_llm = score_runs(runs, both, queries, k, rel_level, levels)
        report["llm"] = {
            "source": "llm", "note": "labels from the LLM judge for hits no human judged; not human judgments",
            "judge_url": meta.get("judge_url"), "count": len(llm_rows), "labels": llm_rows,
            "evaluated_queries": with_llm["evaluated_queries"],
            "metrics_human_plus_llm": with_llm["means"], "comparisons_human_plus_llm": with_llm["comparisons"],
            "filter_audit_human_plus_llm": {name: found for name, run in runs.items()
                                            if (found := audit(run, both, rel_level, levels))},
        }
    return report
