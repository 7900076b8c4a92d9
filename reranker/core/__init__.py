"""The relevance core: labels, prompt, answer-first targets, label-token scoring and CumPT.

Training and serving both import from here, so a prompt means the same tokens everywhere.
Label-token scoring (`LabelHead`, `label_probs_from_logits`) needs torch, so it is imported on
first use: the installer, the catalog loader and the audit read tier names and schemes from here
without paying torch's seconds of import.
"""

from .labels import TIERS, LabelScheme, Level, SchemeError, builtin_schemes, load_scheme
from .prompt import (
    DEFAULT_MAX_DOC_TOKENS, DEFAULT_MAX_QUERY_TOKENS, DEFAULT_PRODUCT_FIELDS, TITLE_FIELDS, EncodedPair, PromptError,
    PromptFormat, PromptSpec, compact_instruction, default_instruction, product_text,
)
from .records import RecordError, blank, json_value, jsonl_objects, text_problem
from .tiering import (
    DEFAULT_BETA, DEFAULT_MIN_TIER, Judgment, TierPolicy, cumpt_index, decode_score, encode_score, judge, judge_all,
    keeps, reweight, tier_from_score, tier_rank,
)

__all__ = [
    "TIERS", "LabelScheme", "Level", "SchemeError", "builtin_schemes", "load_scheme",
    "DEFAULT_MAX_DOC_TOKENS", "DEFAULT_MAX_QUERY_TOKENS", "DEFAULT_PRODUCT_FIELDS", "TITLE_FIELDS", "EncodedPair",
    "PromptError", "PromptFormat", "PromptSpec", "compact_instruction", "default_instruction", "product_text",
    "RecordError", "blank", "json_value", "jsonl_objects", "text_problem",
    "LabelHead", "label_probs_from_logits",
    "DEFAULT_BETA", "DEFAULT_MIN_TIER", "Judgment", "TierPolicy", "cumpt_index", "decode_score", "encode_score", "judge",
    "judge_all", "keeps", "reweight", "tier_from_score", "tier_rank",
]

_LAZY = {"LabelHead", "label_probs_from_logits"}  # from .scoring, which imports torch


def __getattr__(name: str):
    if name in _LAZY:
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
