"""The relevance core: label schemes as data, CumPT, tiers and the tier-encoded score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reranker.core import (
    TIERS,
    PromptFormat,
    SchemeError,
    TierPolicy,
    builtin_schemes,
    cumpt_index,
    judge,
    judge_all,
    load_scheme,
    reweight,
    tier_from_score,
    decode_score,
)


def test_builtin_schemes_are_data():
    schemes = builtin_schemes()
    assert set(schemes) == {"four_level", "binary", "esci"}
    four = schemes["four_level"]
    assert [lv.name for lv in four.levels] == ["Excellent", "Related", "Mismatch", "Irrelevant"]
    assert [lv.grade for lv in four.levels] == [4, 3, 2, 1]
    assert four.tier_map() == {"Excellent": "Good", "Related": "Good", "Mismatch": "Mid", "Irrelevant": "Bad"}
    assert schemes["esci"].level("S").name == "Substitute"
    assert four.level(3).name == "Related"
    with pytest.raises(SchemeError, match="not in scheme"):
        four.level("Perfect")


def test_scheme_from_file_and_bad_files(tmp_path):
    good = tmp_path / "grades.json"
    good.write_text(json.dumps({"levels": [
        {"name": "Yes", "token": "Y", "grade": 1, "tier": "Good"},
        {"name": "No", "token": "N", "grade": 0, "tier": "Bad"},
    ]}))
    assert load_scheme(str(good)).names == ["Yes", "No"]
    with pytest.raises(SchemeError, match="unknown label scheme"):
        load_scheme("nope")
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"levels": [
        {"name": "A", "token": "1", "grade": 1, "tier": "Good"},
        {"name": "B", "token": "1", "grade": 0, "tier": "Bad"},
    ]}))
    with pytest.raises(SchemeError, match="distinct"):
        load_scheme(str(clash))
    worse_first = tmp_path / "order.json"
    worse_first.write_text(json.dumps({"levels": [
        {"name": "A", "token": "a", "grade": 0, "tier": "Bad"},
        {"name": "B", "token": "b", "grade": 1, "tier": "Good"},
    ]}))
    with pytest.raises(SchemeError, match="best first"):
        load_scheme(str(worse_first))


def test_multi_token_labels_fail_clearly_at_load(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = tmp_path / "words.json"
    words.write_text(json.dumps({"levels": [
        {"name": "Good match", "token": "Excellent match", "grade": 1, "tier": "Good"},
        {"name": "Bad match", "token": "Irrelevant", "grade": 0, "tier": "Bad"},
    ]}))
    with pytest.raises(SchemeError, match="exactly one token"):
        PromptFormat(tokenizer, load_scheme(str(words)))


def test_cumpt_follows_the_definition():
    # P(4)=0.3, P(3)=0.3, P(2)=0.2, P(1)=0.2 (best first)
    probs = [0.3, 0.3, 0.2, 0.2]
    assert cumpt_index(probs, 0.3) == 0  # P(>=4) = 0.3 reaches 0.3
    assert cumpt_index(probs, 0.5) == 1  # P(>=3) = 0.6
    assert cumpt_index(probs, 0.7) == 2  # P(>=2) = 0.8
    assert cumpt_index(probs, 0.9) == 3
    assert cumpt_index(probs, 1.0) == 3


def test_tiers_keep_and_score_order():
    scheme = load_scheme()
    policy = TierPolicy(beta=0.5, min_tier="Mid")
    good = judge(scheme, policy, [0.7, 0.2, 0.05, 0.05])
    mid = judge(scheme, policy, [0.1, 0.1, 0.7, 0.1])
    bad = judge(scheme, policy, [0.0, 0.05, 0.05, 0.9])
    assert (good.level.name, good.tier, good.keep) == ("Excellent", "Good", True)
    assert (mid.level.name, mid.tier, mid.keep) == ("Mismatch", "Mid", True)
    assert (bad.level.name, bad.tier, bad.keep) == ("Irrelevant", "Bad", False)
    assert good.score > mid.score > bad.score
    assert [tier_from_score(j.score) for j in (good, mid, bad)] == ["Good", "Mid", "Bad"]
    assert good.expected == pytest.approx(4 * 0.7 + 3 * 0.2 + 2 * 0.05 + 0.05)
    strict = TierPolicy(beta=0.5, min_tier="Good", tier_map={"Related": "Mid"})
    assert judge(scheme, strict, [0.1, 0.8, 0.05, 0.05]).tier == "Mid"
    assert not judge(scheme, strict, [0.1, 0.8, 0.05, 0.05]).keep


def test_retrieval_order_within_a_tier():
    scheme = load_scheme()
    policy = TierPolicy(order_within_tier="retrieval")
    rows = [[0.6, 0.3, 0.05, 0.05], [0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.1, 0.9], [0.5, 0.4, 0.05, 0.05]]
    judged = judge_all(scheme, policy, rows)
    order = sorted(range(4), key=lambda i: -judged[i].score)
    assert order == [0, 1, 3, 2]  # Good tier keeps retrieval order 0, 1, 3; the Bad one goes last
    by_expected = judge_all(scheme, TierPolicy(), rows)
    assert sorted(range(4), key=lambda i: -by_expected[i].score) == [1, 0, 3, 2]


def test_label_weights_move_the_probabilities_before_every_decision():
    scheme = load_scheme()
    probs = [0.2, 0.3, 0.2, 0.3]  # best first: Excellent, Related, Mismatch, Irrelevant
    assert reweight(probs, ()) == probs
    assert reweight(probs, (1.0, 2.0, 1.0, 0.5)) == pytest.approx([0.2 / 1.15, 0.6 / 1.15, 0.2 / 1.15, 0.15 / 1.15])
    plain = judge(scheme, TierPolicy(beta=0.65), probs)
    shifted = judge(scheme, TierPolicy(beta=0.65, label_weights=(1.0, 2.0, 1.0, 0.5)), probs)
    assert plain.level.name == "Mismatch" and shifted.level.name == "Related"  # CumPT sees the weighted mass
    assert list(shifted.probs.values()) == pytest.approx(reweight(probs, (1.0, 2.0, 1.0, 0.5)))
    assert shifted.expected == pytest.approx(sum(g * p for g, p in zip((4, 3, 2, 1), reweight(probs, (1.0, 2.0, 1.0, 0.5)))))


def test_policy_validation():
    scheme = load_scheme()
    for bad in (TierPolicy(beta=0.0), TierPolicy(beta=1.5), TierPolicy(min_tier="Great"),
                TierPolicy(tier_map={"Perfect": "Good"}), TierPolicy(tier_map={"Related": "Fine"}),
                TierPolicy(order_within_tier="random"), TierPolicy(label_weights=(1.0, 1.0)),
                TierPolicy(label_weights=(1.0, 0.0, 1.0, 1.0)), TierPolicy(label_weights=(1.0, float("nan"), 1.0, 1.0))):
        with pytest.raises(SchemeError):
            bad.validate(scheme)


distributions = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=4, max_size=4).filter(
    lambda xs: sum(xs) > 1e-6
).map(lambda xs: [x / sum(xs) for x in xs])
betas = st.floats(0.001, 1.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(distributions, betas, st.sampled_from(TIERS))
def test_any_distribution_gives_a_valid_tier(probs, beta, min_tier):
    scheme = load_scheme()
    j = judge(scheme, TierPolicy(beta=beta, min_tier=min_tier), probs)
    assert j.tier in TIERS
    assert tier_from_score(j.score) == j.tier
    assert 1.0 <= j.expected <= 4.0 + 1e-9
    # The engine reads tier and level back from the float32 _score that ML Commons sets.
    level_number = 4 - scheme.levels.index(j.level)
    assert decode_score(float(np.float32(j.score))) == (j.tier, level_number)


@pytest.mark.parametrize("foreign", [0.0, 1.0, 7.31, 2.5, 0.123456, -1.0, float("nan"), 3.2])
def test_scores_that_are_not_ours_do_not_decode(foreign):
    # BM25 scores left in place when the rerank step failed must not be read as tiers.
    assert decode_score(foreign) is None


@settings(max_examples=300, deadline=None)
@given(distributions, betas, betas)
def test_cumpt_is_monotone_in_beta(probs, b1, b2):
    lo, hi = sorted((b1, b2))
    # A higher threshold never yields a better level (index grows toward the worst level).
    assert cumpt_index(probs, hi) >= cumpt_index(probs, lo)
