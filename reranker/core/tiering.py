"""CumPT tiering (TaoSR1): label probabilities -> level -> tier -> keep/drop and an ordering score.

The ordering score carries the tier in its integer part (Bad=0, Mid=1, Good=2) and the
within-tier order in its fraction, so anything that sorts by score (OpenSearch's rerank
processor included) gets tier order, and the engine-side filter can read the tier back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

from .labels import TIERS, LabelScheme, Level, SchemeError

OrderWithinTier = Literal["expected", "retrieval"]
# Keeps the fraction strictly below 1 even after a float32 round trip through ML Commons.
_MAX_FRACTION = 0.9999


@dataclass(frozen=True)
class TierPolicy:
    beta: float = 0.5
    tier_map: dict[str, str] = field(default_factory=dict)  # level name -> tier; empty = scheme default
    min_tier: str = "Mid"
    order_within_tier: OrderWithinTier = "expected"

    def validate(self, scheme: LabelScheme) -> "TierPolicy":
        if not (0.0 < self.beta <= 1.0) or math.isnan(self.beta):
            raise SchemeError(f"beta must be in (0, 1], got {self.beta}")
        if self.min_tier not in TIERS:
            raise SchemeError(f"min_tier must be one of {TIERS}, got {self.min_tier!r}")
        if self.order_within_tier not in ("expected", "retrieval"):
            raise SchemeError(f"order_within_tier must be 'expected' or 'retrieval', got {self.order_within_tier!r}")
        for name, tier in self.tier_map.items():
            scheme.level(name)
            if tier not in TIERS:
                raise SchemeError(f"tier_map: {name!r} -> {tier!r} is not one of {TIERS}")
        return self

    def tier_of(self, level: Level) -> str:
        return self.tier_map.get(level.name, level.tier)


@dataclass(frozen=True)
class Judgment:
    probs: dict[str, float]  # level name -> probability, best level first
    level: Level
    tier: str
    keep: bool
    expected: float  # sum of grade * probability
    score: float  # tier-encoded ordering score


def cumpt_index(probs_best_first: Sequence[float], beta: float) -> int:
    """Index (best first) of level max{c : sum_{j>=c} P_j >= beta}: the best level whose
    cumulative mass from the top reaches beta. The last level always qualifies."""
    total = 0.0
    for i, p in enumerate(probs_best_first):
        total += p
        if total >= beta:
            return i
    return len(probs_best_first) - 1


def tier_rank(tier: str) -> int:
    """Bad=0, Mid=1, Good=2: larger is better."""
    return len(TIERS) - 1 - TIERS.index(tier)


def tier_from_score(score: float) -> str:
    rank = min(max(int(math.floor(score)), 0), len(TIERS) - 1)
    return TIERS[len(TIERS) - 1 - rank]


def keeps(tier: str, min_tier: str) -> bool:
    return tier_rank(tier) >= tier_rank(min_tier)


def judge(
    scheme: LabelScheme, policy: TierPolicy, probs: Sequence[float], position: int = 0, count: int = 1
) -> Judgment:
    """Turn one document's label probabilities (scheme order, best first) into a Judgment.
    position/count are the document's place in the retrieved list, used for retrieval order."""
    level = scheme.levels[cumpt_index(probs, policy.beta)]
    tier = policy.tier_of(level)
    expected = sum(lv.grade * p for lv, p in zip(scheme.levels, probs))
    if policy.order_within_tier == "expected":
        lo, hi = scheme.levels[-1].grade, scheme.levels[0].grade
        fraction = (expected - lo) / (hi - lo)
    else:
        fraction = 1.0 - (position + 1) / (count + 1)
    fraction = min(max(fraction, 0.0), _MAX_FRACTION)
    return Judgment(
        probs={lv.name: float(p) for lv, p in zip(scheme.levels, probs)},
        level=level,
        tier=tier,
        keep=keeps(tier, policy.min_tier),
        expected=float(expected),
        score=float(tier_rank(tier) + fraction),
    )


def judge_all(scheme: LabelScheme, policy: TierPolicy, prob_rows: Sequence[Sequence[float]]) -> list[Judgment]:
    n = len(prob_rows)
    return [judge(scheme, policy, row, i, n) for i, row in enumerate(prob_rows)]
