"""What the tier policy would do on the engine, for many β and orders from one scoring pass: BM25's
top N for each dev query from the real index, every hit judged once in-process by the judge `lref
serve` loads, then each policy applied offline exactly as the service and the Java filter apply it
(reranker.core.judge_all: label weights, CumPT, tiers, the tier-encoded score; hits below min_tier
dropped; kept hits sorted by score) and scored with the audit's own metrics (ir-measures). One
`bench/audit_homedepot.py` run measures one policy in 17 min; this measures a grid.

Needs the index loaded (`lref opensearch load ...`, see bench/audit_homedepot.py); no reranker or
pipeline. Judging is cached in OUT/judged_hits.json, so a second run only re-scores the policies:
    python bench/engine_sweep.py --queries 1143 --out bench/out/engine_sweep
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from apps.audit import metrics, search  # noqa: E402
from apps.audit.judgments import query_set, read_judgments  # noqa: E402
from apps.audit.levels import FOUR_LEVEL  # noqa: E402
from reranker.core import TierPolicy, judge_all  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "homedepot"
# (name, order within tier, tier-major): the service's two orders, and expected relevance alone
# with the filter kept (not something the service offers: how much the tier-major order costs)
ORDERS = [("expected", "expected", True), ("retrieval", "retrieval", True), ("expected, no tier order", "expected", False)]


def judged_hits(args, chosen: dict[str, str]) -> dict[str, dict]:
    """{query id: {"ids": [...], "probs": [[...], ...]}}: BM25's top hits and the judge's raw label probabilities."""
    if args.probs.exists():
        return json.loads(args.probs.read_text())
    from engine.client import connect
    from reranker.backends import ScoreJob, build_backend
    from reranker.api import build_config

    client = connect(args.opensearch)
    runs, titles = search.run_all(client, args.index, chosen, [], search.load_template(None, "title"), args.size,
                                  "title", 120)
    config = build_config(judge=args.judge, model=None, adapter=None, dtype="auto", device="auto", backend="transformers",
                          scheme=None, beta=None, tier_map=None, min_tier=None, order="expected")
    backend = build_backend(config)
    from reranker.models.loading import cpu_summary

    model = getattr(backend, "model", None)
    machine = f"CPU: {cpu_summary()}; judged on {getattr(model, 'device', config.device)}, dtype {getattr(model, 'dtype', config.dtype)}"
    print(machine)
    hits = {q: [h.id for h in r.hits] for q, r in runs[search.BASELINE].items() if r.hits}
    out, todo = {}, list(hits)
    for start in tqdm(range(0, len(todo), 8), desc="judging", unit="8 queries"):
        batch = todo[start:start + 8]
        probs = backend.label_probs([ScoreJob(chosen[q], [titles.get(i, "") for i in hits[q]]) for q in batch])
        out.update({q: {"ids": hits[q], "probs": p.double().tolist()} for q, p in zip(batch, probs)})
    args.probs.parent.mkdir(parents=True, exist_ok=True)
    args.probs.write_text(json.dumps({"judge": str(config.judge_dir), "machine": machine, "hits": out}))
    return json.loads(args.probs.read_text())


def ranking(scheme, policy: TierPolicy, ids: list[str], probs: list[list[float]], tier_major: bool) -> tuple[list[str], list[str]]:
    """(kept ids in served order, dropped ids) under one policy."""
    judged = judge_all(scheme, policy, probs)
    order = sorted(range(len(ids)), key=lambda i: -(judged[i].score if tier_major else judged[i].expected))  # stable: ties keep BM25's order
    return [ids[i] for i in order if judged[i].keep], [ids[i] for i in order if not judged[i].keep]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opensearch", default="http://127.0.0.1:9250")
    ap.add_argument("--index", default="products")
    ap.add_argument("--dev", type=Path, default=DATA / "dev.jsonl")
    ap.add_argument("--queries", type=int, default=200, help="first N distinct dev queries")
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--judge", default=None, help="a judge dir (default: the shipped one)")
    ap.add_argument("--betas", default="0.45,0.5,0.55,0.6,0.65,0.7,0.75,0.8")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "engine_sweep")
    args = ap.parse_args()
    args.probs = args.out / "judged_hits.json"
    from reranker.models.judge import read_card, shipped_judge

    found = read_judgments(args.dev, "jsonl", FOUR_LEVEL.parse_grade_map(FOUR_LEVEL.default_grades))  # as `lref audit` reads them
    chosen = query_set(found, None, args.queries)
    cached = judged_hits(args, chosen)
    card = read_card(args.judge or shipped_judge())
    scheme = card.scheme_obj()
    base = TierPolicy(beta=card.policy["beta"], tier_map=card.policy.get("tier_map", {}), min_tier=card.policy.get("min_tier", "Mid"),
                      label_weights=tuple(card.policy.get("label_weights", ())))
    hits, qrels = cached["hits"], found.qrels
    evaluated = [q for q in chosen if qrels.get(q)]
    rel = lambda q, d: qrels[q].get(d, 0) >= 3  # noqa: E731
    irr = lambda q, d: qrels[q].get(d, 0) == FOUR_LEVEL.irrelevant  # noqa: E731
    baseline = metrics.means(metrics.per_query({q: h["ids"] for q, h in hits.items()}, qrels, evaluated, args.k, 3))
    relevant = sum(rel(q, d) for q, h in hits.items() if q in qrels for d in h["ids"])
    irrelevant = sum(irr(q, d) for q, h in hits.items() if q in qrels for d in h["ids"])
    rows = []
    for name, order, tier_major in ORDERS:
        for beta in map(float, args.betas.split(",")):
            policy = replace(base, beta=beta, order_within_tier=order)
            served = {q: ranking(scheme, policy, h["ids"], h["probs"], tier_major) for q, h in hits.items()}
            means = metrics.means(metrics.per_query({q: kept for q, (kept, _) in served.items()}, qrels, evaluated, args.k, 3))
            dropped = [(q, d) for q, (_, gone) in served.items() if q in qrels for d in gone]
            rows.append({"order": name, "beta": beta, **means,
                         "dropped": len(dropped), "relevant_loss": sum(rel(q, d) for q, d in dropped) / max(relevant, 1),
                         "irrelevant_caught": sum(irr(q, d) for q, d in dropped) / max(irrelevant, 1)})
    k = args.k
    table = Table(title=f"{len(hits)} queries, BM25 top {args.size}, judge {card.name} (card β {base.beta}); Δ against BM25")
    for col in ("order", "β", f"nDCGj@{k} Δ", f"nDCG@{k} Δ", f"P@{k} Δ", "MRR Δ", f"IrrRate@{k} Δ%", "dropped", "relevant loss", "Irr. caught"):
        table.add_column(col, justify="left" if col == "order" else "right")
    for r in rows:
        table.add_row(r["order"], f"{r['beta']:.2f}", *(f"{r[m] - baseline[m]:+.4f}" for m in (f"nDCGj@{k}", f"nDCG@{k}", f"P@{k}", "MRR")),
                      f"{(r[f'IrrRate@{k}'] / baseline[f'IrrRate@{k}'] - 1) * 100:+.0f}%", str(r["dropped"]),
                      f"{r['relevant_loss']:.2%}", f"{r['irrelevant_caught']:.1%}")
    console = Console(width=180)
    console.print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}\njudging: {cached.get('machine', 'not recorded')}")
    console.print(table)
    pairs = within_query(hits, qrels, scheme, evaluated, k, baseline[f"nDCGj@{k}"])
    console.print(f"within a query, of {pairs['pairs']} pairs of retrieved judged hits with different grades, the judge's "
                  f"expected relevance (raw probabilities) orders {pairs['judge']:.1%} right, BM25's order {pairs['bm25']:.1%}")
    console.print("what an order needs (grades + noise; no drops): " + ", ".join(
        f"{c['pair_accuracy']:.1%} right → nDCGj@{k} {c[f'nDCGj@{k} delta']:+.4f}" for c in pairs["noisy_oracle"]))
    (args.out / "sweep.json").write_text(json.dumps({"baseline": baseline, "relevant_retrieved": relevant, "within_query_pairs": pairs,
                                                     "irrelevant_retrieved": irrelevant, "rows": rows}, indent=1))
    plot(rows, baseline, pairs, k, args.out / "sweep.png")
    return 0


def pair_accuracy(hits: dict, qrels: dict, score) -> tuple[float, int]:
    """(share right, pairs): of the pairs of one query's retrieved judged hits with different grades, how
    often score(query, position, id) orders them as their grades do. Judged-only nDCG@k moves only
    through these pairs and the drops."""
    right = pairs = 0
    for q, h in hits.items():
        docs = [(qrels[q][d], score(q, i, d)) for i, d in enumerate(h["ids"]) if d in qrels.get(q, {})]
        for a, (grade_a, score_a) in enumerate(docs):
            for grade_b, score_b in docs[a + 1:]:
                if grade_a != grade_b:
                    pairs += 1
                    right += (score_a > score_b) == (grade_a > grade_b)
    return right / max(pairs, 1), pairs


def within_query(hits: dict, qrels: dict, scheme, evaluated: list[str], k: int, baseline: float, seed: int = 0) -> dict:
    """The judge's and BM25's pair accuracy, and what accuracy judged-only nDCG@k needs: the grades
    themselves plus Gaussian noise of falling size, each order's pair accuracy beside its nDCGj@k − BM25's
    (no drops; the noise-free row is the oracle reorder of these hits)."""
    import random

    grades = [lv.grade for lv in scheme.levels]
    expected = {q: [sum(g * p for g, p in zip(grades, row)) for row in h["probs"]] for q, h in hits.items()}
    judge, pairs = pair_accuracy(hits, qrels, lambda q, i, d: expected[q][i])
    bm25, _ = pair_accuracy(hits, qrels, lambda q, i, d: -i)
    rng = random.Random(seed)
    curve = []
    for sigma in (0.0, 1.0, 1.75, 2.5, 5.0):
        noisy = {q: {d: qrels[q].get(d, 0) + rng.gauss(0, sigma) for d in h["ids"]} for q, h in hits.items() if q in qrels}
        accuracy, _ = pair_accuracy(hits, qrels, lambda q, i, d: noisy[q][d])
        order = {q: sorted(scores, key=lambda d: -scores[d]) for q, scores in noisy.items()}
        ndcgj = metrics.means(metrics.per_query(order, qrels, evaluated, k, 3))[f"nDCGj@{k}"]
        curve.append({"sigma": sigma, "pair_accuracy": accuracy, f"nDCGj@{k} delta": ndcgj - baseline})
    return {"pairs": pairs, "judge": judge, "bm25": bm25, "noisy_oracle": curve}


def plot(rows: list[dict], baseline: dict, pairs: dict, k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    for name, *_ in ORDERS:
        mine = [r for r in rows if r["order"] == name]
        betas = [r["beta"] for r in mine]
        axes[0].plot(betas, [r[f"nDCGj@{k}"] - baseline[f"nDCGj@{k}"] for r in mine], marker="o", label=name)
        axes[1].plot(betas, [(r[f"IrrRate@{k}"] / baseline[f"IrrRate@{k}"] - 1) * 100 for r in mine], marker="o", label=name)
        axes[2].plot(betas, [r["relevant_loss"] * 100 for r in mine], marker="o", label=name)
    for ax, title in zip(axes, (f"judged-only nDCG@{k} − BM25", f"IrrRate@{k} change vs BM25 (%)", "relevant hits dropped (%)")):
        ax.set(title=title, xlabel="CumPT β")
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend()
    curve = pairs["noisy_oracle"]
    axes[3].plot([c["pair_accuracy"] * 100 for c in curve], [c[f"nDCGj@{k} delta"] for c in curve], marker="o", color="grey",
                 label="grades + noise (no drops)")
    for name, accuracy in (("judge", pairs["judge"]), ("BM25", pairs["bm25"])):
        axes[3].axvline(accuracy * 100, ls="--", color="C0" if name == "judge" else "C1", label=f"{name}: {accuracy:.1%}")
    axes[3].axhline(0.01, color="red", lw=0.7, label="goal +0.01")
    axes[3].set(title=f"judged-only nDCG@{k} − BM25 by pair accuracy", xlabel="pairs within a query ordered right (%)")
    axes[3].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
