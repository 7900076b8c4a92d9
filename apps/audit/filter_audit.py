"""The filter audit: what the lref tier filter dropped, read from each response's `ext.lref`, held
against the judgments. Kept hits carry `fields.lref_tier`; dropped ones are listed with their tier.

- filter precision: of the dropped hits that are judged, the share judged Irrelevant (and, looser,
  judged below the relevant level);
- irrelevant recall: of the judged-Irrelevant hits retrieved, the share dropped;
- relevant loss: of the relevant hits retrieved (kept + dropped), the share dropped;
- tier distribution, and tier x judged label over every reranked hit.
"""

from __future__ import annotations

from collections import Counter

from reranker.core import TIERS

from .levels import FOUR_LEVEL, UNJUDGED, Levels
from .search import Run


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def labels_of(levels: Levels) -> list[str]:
    return [*levels.names.values(), UNJUDGED]  # best first, then unjudged


def audit(run: Run, labels: dict[str, dict[str, int]], rel_level: int, levels: Levels = FOUR_LEVEL) -> dict | None:
    """None when no response of the run carried ext.lref (not an lref pipeline)."""
    if all(result.lref is None for result in run.values()):
        return None
    retrieved, dropped, tiers = Counter(), Counter(), Counter()
    tier_by_label = {tier: Counter() for tier in TIERS}
    not_reranked = []
    for qid, result in run.items():
        if result.lref is None or not result.reranked:
            not_reranked.append({"query_id": qid, "reason": (result.lref or {}).get("reason", "no ext.lref")})
            continue
        judged = labels.get(qid, {})
        for hits, is_dropped in ((result.hits, False), (result.dropped, True)):
            for hit in hits:
                label = levels.names[judged[hit.id]] if hit.id in judged else UNJUDGED
                retrieved[label] += 1
                dropped[label] += is_dropped
                tier_by_label.setdefault(hit.tier or "unknown", Counter())[label] += 1
        tiers.update(result.lref.get("tiers") or {})
    relevant = [name for n, name in levels.names.items() if n >= rel_level]
    below = [name for n, name in levels.names.items() if n < rel_level]
    irrelevant = levels.names[levels.irrelevant]
    names = labels_of(levels)
    dropped_judged = sum(dropped.values()) - dropped[UNJUDGED]
    relevant_retrieved = sum(retrieved[label] for label in relevant)
    relevant_dropped = sum(dropped[label] for label in relevant)
    return {
        "queries": len(run),
        "reranked_queries": len(run) - len(not_reranked),
        "not_reranked": not_reranked,
        "hits": sum(retrieved.values()),
        "kept": sum(retrieved.values()) - sum(dropped.values()),
        "dropped": sum(dropped.values()),
        "dropped_by_label": {label: dropped[label] for label in names},
        "retrieved_by_label": {label: retrieved[label] for label in names},
        "dropped_judged": dropped_judged,
        "filter_precision": ratio(dropped[irrelevant], dropped_judged),
        "filter_precision_nonrelevant": ratio(sum(dropped[label] for label in below), dropped_judged),
        "irrelevant_recall": ratio(dropped[irrelevant], retrieved[irrelevant]),
        "relevant_retrieved": relevant_retrieved,
        "relevant_dropped": relevant_dropped,
        "relevant_loss": ratio(relevant_dropped, relevant_retrieved),
        "tiers": {tier: int(tiers.get(tier, 0)) for tier in TIERS},
        "tier_by_label": {tier: {label: counts[label] for label in names} for tier, counts in tier_by_label.items()},
    }


def dropped_per_query(run: Run, labels: dict[str, dict[str, int]], rel_level: int) -> dict[str, tuple[int, int]]:
    """query id -> (hits dropped, relevant hits dropped)."""
    return {qid: (len(r.dropped), sum(labels.get(qid, {}).get(h.id, 0) >= rel_level for h in r.dropped))
            for qid, r in run.items()}
