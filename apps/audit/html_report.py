"""A self-contained HTML report: tables and the figures embedded as base64 PNG."""

from __future__ import annotations

import base64
from html import escape

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.4em}th,td{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.llm{border-left:6px solid #e08214;padding-left:1em;background:#fff8ef}.badge{background:#e08214;color:#fff;
padding:0 .4em;border-radius:3px;font-size:.8em}.better{color:#1a7f37}.worse{color:#c62828}img{max-width:100%}
"""
FILTER_ROWS = [
    ("reranked queries", "reranked_queries"), ("hits reranked", "hits"), ("kept", "kept"), ("dropped", "dropped"),
    ("dropped and judged", "dropped_judged"),
    ("filter precision (dropped judged Irrelevant / dropped judged)", "filter_precision"),
    ("filter precision, looser (dropped judged below relevant / dropped judged)", "filter_precision_nonrelevant"),
    ("irrelevant recall (Irrelevant dropped / Irrelevant retrieved)", "irrelevant_recall"),
    ("relevant retrieved", "relevant_retrieved"), ("relevant dropped", "relevant_dropped"),
    ("relevant loss (relevant dropped / relevant retrieved)", "relevant_loss"),
]


def fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='n'>{cell}</td>" if i >= numeric_from else f"<td>{cell}</td>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image(png: bytes, alt: str) -> str:
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def metrics_section(means: dict[str, dict], comparisons: list[dict], names: list[str], lower_better) -> str:
    out = table(["run", *names], [[escape(run), *(fmt(m[n]) for n in names)] for run, m in means.items()])
    for comp in comparisons:
        rows = []
        for name in names:
            c = comp["metrics"][name]
            good = (c["delta"] < 0) if lower_better(name) else (c["delta"] > 0)
            cls = "" if c["delta"] == 0 else ("better" if good else "worse")
            rows.append([name, fmt(means[comp["a"]][name]), fmt(means[comp["b"]][name]),
                         f"<span class='{cls}'>{c['delta']:+.4f}</span>", fmt(c["p_value"]), c["queries"]])
        out += (f"<p>{escape(comp['b'])} against {escape(comp['a'])} ({escape(comp['test'])}):</p>"
                + table(["metric", escape(comp["a"]), escape(comp["b"]), "delta", "p-value", "queries"], rows))
    return out


def filter_section(audits: dict[str, dict]) -> str:
    if not audits:
        return "<p>No run carried <code>ext.lref</code>: no lref tier filter to audit.</p>"
    runs = list(audits)
    out = table(["", *runs], [[escape(label), *(fmt(audits[r][key]) for r in runs)] for label, key in FILTER_ROWS])
    labels = list(next(iter(audits.values()))["dropped_by_label"])  # the scheme's levels, best first, then unjudged
    out += "<p>Dropped hits by judged label:</p>" + table(
        ["run", *labels], [[escape(r), *(audits[r]["dropped_by_label"][label] for label in labels)] for r in runs])
    out += "<p>Tier distribution (all reranked hits), and tier by judged label:</p>"
    for run, found in audits.items():
        out += table([f"{run}: tier", "hits", *labels],
                     [[escape(t), found["tiers"].get(t, 0), *(counts[label] for label in labels)]
                      for t, counts in found["tier_by_label"].items()])
        if found["not_reranked"]:
            out += (f"<p class='worse'>{len(found['not_reranked'])} queries were not reranked "
                    f"(first reason: {escape(str(found['not_reranked'][0]['reason']))}).</p>")
    return out


def worst_section(worst: dict[str, list[dict]], k: int) -> str:
    out = ""
    for run, rows in worst.items():
        out += f"<p>{escape(run)}: queries whose nDCG@{k} fell most against the baseline</p>" + table(
            ["query", "baseline", run, "delta", "dropped", "relevant dropped", "judged products"],
            [[escape(r["query"]), fmt(r["baseline"]), fmt(r["run"]), f"{r['delta']:+.4f}", r["dropped"],
              r["relevant_dropped"], r["judged"]] for r in rows])
    return out


def render(report: dict, figures: dict[str, bytes], lower_better) -> str:
    meta = report["meta"]
    names = meta["metrics"]
    facts = [
        ("index", f"{meta['index']} at {meta['opensearch']}"), ("judgments", f"{meta['judgments']} ({meta['format']})"),
        ("queries", f"{meta['queries_run']} run, {meta['queries_evaluated']} with judgments"),
        ("depth / cut-off", f"top {meta['size']} retrieved, metrics at k={meta['k']}"),
        ("relevant", f"level >= {meta['rel_level']}"), ("runs", ", ".join(report["runs"])),
        ("metrics", f"{meta['metric_library']}; {meta['test']}"), ("created", meta["created"]),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>lref audit</title><style>{STYLE}</style></head><body>",
        "<h1>lref audit</h1>", table(["", ""], [[escape(a), escape(b)] for a, b in facts], numeric_from=2),
        "<h2>Metrics (human judgments)</h2>", metrics_section(
            {r: d["metrics"] for r, d in report["runs"].items()}, report["comparisons"], names, lower_better),
        image(figures["metrics"], "metrics by run"),
    ]
    if "ndcg_deltas" in figures:
        parts.append(image(figures["ndcg_deltas"], "per-query nDCG change"))
    parts += ["<h2>Filter audit</h2>", filter_section(report["filter_audit"])]
    if "tiers" in figures:
        parts.append(image(figures["tiers"], "tier by human label"))
    parts += ["<h2>Worst queries</h2>", worst_section(report["worst_queries"], meta["k"])]
    if "llm" in report:
        llm = report["llm"]
        parts += [
            "<div class='llm'><h2><span class='badge'>LLM</span> With LLM labels for unjudged hits</h2>",
            f"<p>{llm['count']} labels from the judge at {escape(str(llm['judge_url']))}, for hits no human judged. "
            "They are <b>not human judgments</b>; the tables above use human judgments only.</p>",
            metrics_section(llm["metrics_human_plus_llm"], llm["comparisons_human_plus_llm"], names, lower_better),
            filter_section(llm["filter_audit_human_plus_llm"]),
        ]
        if "tiers_llm" in figures:
            parts.append(image(figures["tiers_llm"], "tier by label, human + LLM"))
        parts.append(table(["query", "product", "title", "LLM label"],
                           [[escape(r["query"]), escape(r["product_id"]), escape(r["title"]),
                             f"<span class='badge'>LLM</span> {escape(r['label'])}"] for r in llm["labels"][:500]],
                           numeric_from=9) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
