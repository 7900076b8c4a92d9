"""CumPT tiering (TaoSR1): label probabilities -> level -> tier -> keep/drop and an ordering score.

The ordering score is the one float that reaches the engine (ML Commons' rerank sets it as the
hit's float32 _score), so it carries everything the engine-side tier filter needs:

    score = tier_rank + (order_key * 10 + level_number) / 100000

tier_rank in the integer part (Bad=0, Mid=1, Good=2), then a 4-digit within-tier order key
(expected relevance or retrieval order), then one digit for the level (1 = worst level of the
scheme). Sorting by score gives tier order; decode_score() reads tier and level back, and the
Java processor in plugin/ mirrors it. 1e-5 steps survive float32 (ulp 2.4e-7 below 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

from .labels import TIERS, LabelScheme, Level, SchemeError

OrderWithinTier = Literal["expected", "retrieval"]
SCORE_SCALE = 100_000  # 1e-5 steps: order key (4 digits) then level number (1 digit)
_MAX_ORDER_KEY = 9_998  # keeps the fraction strictly below 1 after a float32 round trip

# The policy a judge without a card is served with; every other default (CLI, card, installer) reads these.
DEFAULT_BETA = 0.5
DEFAULT_MIN_TIER = "Mid"


@dataclass(frozen=True)
class TierPolicy:
    beta: float = DEFAULT_BETA
    tier_map: dict[str, str] = field(default_factory=dict)  # level name -> tier; empty = scheme default
    min_tier: str = DEFAULT_MIN_TIER
    order_within_tier: OrderWithinTier = "expected"
    # Per-level weights (best first) on the label probabilities before any decision; empty = none.
    # A judge trained on class-balanced rows leans toward the rare labels; eval chooses how far to
    # move it back toward its data's label prior (training/evaluate.py), as it chooses β.
    label_weights: tuple[float, ...] = ()

    def validate(self, scheme: LabelScheme) -> "TierPolicy":
        if not (0.0 < self.beta <= 1.0) or math.isnan(self.beta):
            raise SchemeError(f"beta must be in (0, 1], got {self.beta}")
        if self.min_tier not in TIERS:
            raise SchemeError(f"min_tier must be one of {TIERS}, got {self.min_tier!r}")
        if self.order_within_tier not in ("expected", "retrieval"):
            raise SchemeError(f"order_within_tier must be 'expected' or 'retrieval', got {self.order_within_tier!r}")
        if self.label_weights and (len(self.label_weights) != len(scheme.levels)
                                   or not all(0.0 < w < math.inf for w in self.label_weights)):
            raise SchemeError(f"label_weights must be {len(scheme.levels)} positive numbers (one per level, best first), "
                              f"got {list(self.label_weights)}")
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


def reweight(probs_best_first: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The label probabilities times per-level weights, renormalised (no weights: unchanged)."""
    if not weights:
        return [float(p) for p in probs_best_first]
    scaled = [float(p) * w for p, w in zip(probs_best_first, weights)]
    total = sum(scaled)
    return [s / total for s in scaled] if total > 0 else [float(p) for p in probs_best_first]


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


def encode_score(tier: str, fraction: float, level_number: int) -> float:
    if not 1 <= level_number <= 9:
        raise SchemeError(f"a scheme may have at most 9 levels (level number {level_number})")
    key = round(min(max(fraction, 0.0), 1.0) * _MAX_ORDER_KEY)
    return tier_rank(tier) + (key * 10 + level_number) / SCORE_SCALE


def decode_score(score: float) -> tuple[str, int] | None:
    """(tier, level number) from an encoded score; None when the score is not one of ours
    (e.g. a BM25 score left in place because the rerank step failed)."""
    if not (0.0 <= score < len(TIERS)) or math.isnan(score):
        return None
    scaled = (score - math.floor(score)) * SCORE_SCALE
    units = round(scaled)
    if abs(scaled - units) > 0.05 or units % 10 == 0:
        return None
    return tier_from_score(score), units % 10


def keeps(tier: str, min_tier: str) -> bool:
    return tier_rank(tier) >= tier_rank(min_tier)


def judge(
    scheme: LabelScheme, policy: TierPolicy, probs: Sequence[float], position: int = 0, count: int = 1
) -> Judgment:
    """Turn one document's label probabilities (scheme order, best first) into a Judgment.
    position/count are the document's place in the retrieved list, used for retrieval order."""
    probs = reweight(probs, policy.label_weights)
    level = scheme.levels[cumpt_index(probs, policy.beta)]
    tier = policy.tier_of(level)
    expected = sum(lv.grade * p for lv, p in zip(scheme.levels, probs))
    if policy.order_within_tier == "expected":
        lo, hi = scheme.levels[-1].grade, scheme.levels[0].grade
        fraction = (expected - lo) / (hi - lo)
    else:
        fraction = 1.0 - (position + 1) / (count + 1)
    level_number = len(scheme.levels) - scheme.levels.index(level)
    return Judgment(
        probs={lv.name: float(p) for lv, p in zip(scheme.levels, probs)},
        level=level,
        tier=tier,
        keep=keeps(tier, policy.min_tier),
        expected=float(expected),
        score=encode_score(tier, fraction, level_number),
    )


def judge_all(scheme: LabelScheme, policy: TierPolicy, prob_rows: Sequence[Sequence[float]]) -> list[Judgment]:
    n = len(prob_rows)
    return [judge(scheme, policy, row, i, n) for i, row in enumerate(prob_rows)]
