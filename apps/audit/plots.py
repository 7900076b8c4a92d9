"""The report's figures as PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io

from .search import BASELINE

UNJUDGED_COLOUR = "#bdbdbd"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metrics_by_run(report: dict) -> bytes:
    plt = _pyplot()
    names = report["meta"]["metrics"]
    runs = list(report["runs"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        values = [report["runs"][run]["metrics"][m] for m in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=run)
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(names))], names)
    ax.set_ylim(0, 1)
    ax.set_title(f"mean over {report['meta']['queries_evaluated']} judged queries")
    ax.legend(fontsize=8)
    return _png(fig)


def ndcg_deltas(report: dict) -> bytes:
    plt = _pyplot()
    key = f"nDCG@{report['meta']['k']}"
    fig, ax = plt.subplots(figsize=(8, 3.2))
    base = report["runs"][BASELINE]["per_query"]
    for run, data in report["runs"].items():
        if run == BASELINE:
            continue
        deltas = sorted(data["per_query"][q][key] - base[q][key] for q in data["per_query"])
        ax.plot(range(len(deltas)), deltas, marker=".", linestyle="-", label=run)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("queries, sorted by change")
    ax.set_ylabel(f"{key} - baseline")
    ax.set_title(f"per-query change in {key}")
    ax.legend(fontsize=8)
    return _png(fig)


def tiers_by_label(audits: dict[str, dict], title: str) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(audits), figsize=(4.2 * len(audits), 3.4), squeeze=False)
    for ax, (run, found) in zip(axes[0], audits.items()):
        tiers = list(found["tier_by_label"])
        bottom = [0] * len(tiers)
        labels = list(found["retrieved_by_label"])  # the scheme's levels, best first, then unjudged
        colours = plt.get_cmap("RdYlGn_r")  # best green ... worst red, whatever the scheme's size
        for i, label in enumerate(labels):
            counts = [found["tier_by_label"][t][label] for t in tiers]
            colour = UNJUDGED_COLOUR if i == len(labels) - 1 else colours(i / max(len(labels) - 2, 1))
            ax.bar(tiers, counts, bottom=bottom, label=label, color=colour)
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax.set_title(f"{run}: {title}", fontsize=9)
        ax.set_ylabel("hits")
    axes[0][-1].legend(fontsize=7)
    return _png(fig)


def figures(report: dict) -> dict[str, bytes]:
    out = {"metrics": metrics_by_run(report)}
    if len(report["runs"]) > 1:
        out["ndcg_deltas"] = ndcg_deltas(report)
    if report["filter_audit"]:
        out["tiers"] = tiers_by_label(report["filter_audit"], "tier x human label")
    if report.get("llm", {}).get("filter_audit_human_plus_llm"):
        out["tiers_llm"] = tiers_by_label(report["llm"]["filter_audit_human_plus_llm"], "tier x label (human + LLM)")
    return out
