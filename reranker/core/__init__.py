"""The relevance core: labels, prompt, answer-first targets, label-token scoring and CumPT.

Training and serving both import from here, so a prompt means the same tokens everywhere.
"""

from .labels import TIERS, LabelScheme, Level, SchemeError, builtin_schemes, load_scheme
from .prompt import (
    DEFAULT_PRODUCT_FIELDS, TITLE_FIELDS, EncodedPair, PromptError, PromptFormat, PromptSpec, compact_instruction,
    default_instruction, product_text,
)
from .records import RecordError, blank, json_value, jsonl_objects, text_problem
from .scoring import LabelHead, label_probs_from_logits
from .tiering import (
    Judgment, TierPolicy, cumpt_index, decode_score, encode_score, judge, judge_all, keeps, reweight,
    tier_from_score, tier_rank,
)

__all__ = [
    "TIERS", "LabelScheme", "Level", "SchemeError", "builtin_schemes", "load_scheme",
    "DEFAULT_PRODUCT_FIELDS", "TITLE_FIELDS", "EncodedPair", "PromptError", "PromptFormat", "PromptSpec", "compact_instruction",
    "default_instruction", "product_text",
    "RecordError", "blank", "json_value", "jsonl_objects", "text_problem",
    "LabelHead", "label_probs_from_logits",
    "Judgment", "TierPolicy", "cumpt_index", "decode_score", "encode_score", "judge", "judge_all", "keeps", "reweight",
    "tier_from_score", "tier_rank",
]
