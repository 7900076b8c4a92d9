"""The judge from Python, the way sentence-transformers' CrossEncoder is used:

    from reranker import Judge
    judge = Judge.load()                      # the judge shipped in models/; or a judge dir, 'zero-shot', ...
    judge.judge("cordless drill", ["DEWALT 20V MAX cordless drill", "drill bit set"])  # -> [Judgment, ...]
    judge.rank("cordless drill", titles)      # kept documents, best first: [(index, Judgment), ...]

`build_config` is the one place options meet a judge card: `lref serve`, `lref score`, `lref demo`
and Judge.load all resolve their settings here (options left unset come from the card, else the
core's defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .core import (
    DEFAULT_BETA, DEFAULT_MIN_TIER, TIERS, Judgment, SchemeError, TierPolicy, blank, judge_all, load_scheme, text_problem,
)
from .errors import LrefError
from .service.config import ServiceConfig

if TYPE_CHECKING:
    from .backends import JudgeBackend
    from .backends.base import Product


class JudgeInputError(LrefError, ValueError):
    """A query or document the judge cannot read (empty, not text)."""


def parse_tier_map(spec: str | None, scheme_name: str) -> dict[str, str]:
    """'4=Good,3=Good,2=Mid,1=Bad' (level tokens or names) -> {level name: tier}."""
    if not spec:
        return {}
    scheme = load_scheme(scheme_name)
    out = {}
    for item in spec.split(","):
        key, sep, tier = item.partition("=")
        if not sep or tier.strip() not in TIERS:
            raise SchemeError(f"tier map item {item!r} must look like LEVEL=TIER with TIER in {TIERS}")
        out[scheme.level(key.strip()).name] = tier.strip()
    return out


def build_config(judge: Optional[str], model: Optional[str], adapter: Optional[str], dtype: str, device: str,
                 backend: str, scheme: Optional[str], beta: Optional[float], tier_map: Optional[str],
                 min_tier: Optional[str], order: str, **extra) -> ServiceConfig:
    """Options left unset (None) come from the judge's card, else from the embedded defaults."""
    from .models.judge import CARD, ZERO_SHOT, JudgeError, judge_settings, resolve_judge
    from .models.loading import check_model_spec, pick_device

    pick_device(device)  # an unknown device or a missing GPU is refused before any model is read

    if judge is None and adapter and (Path(adapter).parent / CARD).is_file():
        judge, adapter = str(Path(adapter).parent), None  # a judge's adapter means nothing without its card's prompt
    # Naming a model or adapter without a judge means that model as it is, not the shipped judge.
    card_dir = resolve_judge(ZERO_SHOT if judge is None and (model or adapter) else judge)
    settings = judge_settings(card_dir, model) if card_dir else {"model": model or "default"}
    if card_dir and adapter:
        raise JudgeError("--adapter and --judge both name trained weights: give one of them")
    scheme = scheme or settings.pop("scheme", "four_level")
    card_policy = settings.pop("policy", {})
    policy = TierPolicy(beta=card_policy.get("beta", DEFAULT_BETA) if beta is None else beta,
                        tier_map=parse_tier_map(tier_map, scheme) if tier_map else card_policy.get("tier_map", {}),
                        min_tier=min_tier or card_policy.get("min_tier", DEFAULT_MIN_TIER), order_within_tier=order,
                        label_weights=tuple(card_policy.get("label_weights", ())))
    policy.validate(load_scheme(scheme))
    settings.setdefault("adapter", adapter)
    check_model_spec(settings["model"])  # a missing model or a file that is no GGUF, before anything starts
    return ServiceConfig(dtype=dtype, device=device, backend=backend, scheme=scheme, policy=policy, **settings, **extra)


@dataclass
class Judge:
    """A loaded judge: its settings (model, prompt, tier policy) and the backend that scores."""

    config: ServiceConfig
    backend: "JudgeBackend"

    @classmethod
    def load(cls, judge: Optional[str] = None, *, model: Optional[str] = None, adapter: Optional[str] = None,
             dtype: str = "auto", device: str = "auto", backend: str = "transformers", scheme: Optional[str] = None,
             beta: Optional[float] = None, tier_map: Optional[str] = None, min_tier: Optional[str] = None,
             order: str = "expected", **settings: Any) -> "Judge":
        """The options of `lref serve` (see `lref serve --help`); `settings` are ServiceConfig fields."""
        from .backends import build_backend

        config = build_config(judge, model, adapter, dtype, device, backend, scheme, beta, tier_map, min_tier, order,
                              **settings)
        return cls(config, build_backend(config))

    def judge(self, query: str, documents: Sequence["Product"]) -> list[Judgment]:
        """One Judgment per document, in the given order. Documents are titles or dicts of product
        fields; over-long text is cut as the service cuts it."""
        from .backends import ScoreJob

        for what, text in [("query", query), *((f"document {i}", d) for i, d in enumerate(documents) if isinstance(d, str))]:
            if problem := text_problem(text):
                raise JudgeInputError(f"{what}: {problem}")
        if blank(query):
            raise JudgeInputError("query must not be empty (or only spaces and invisible characters)")
        if not documents:
            return []
        cut = [d[: self.config.max_doc_chars] if isinstance(d, str)
               else {k: str(v)[: self.config.max_doc_chars] for k, v in d.items()} for d in documents]
        probs = self.backend.label_probs([ScoreJob(query[: self.config.max_query_chars], cut)])[0]
        return judge_all(self.backend.prompt.scheme, self.config.policy, probs.tolist())

    def rank(self, query: str, documents: Sequence["Product"]) -> list[tuple[int, Judgment]]:
        """The documents the policy keeps, in the order the engine serves them (by score), as
        (index in `documents`, Judgment)."""
        judged = self.judge(query, documents)
        kept = [(i, j) for i, j in enumerate(judged) if j.keep]
        return sorted(kept, key=lambda pair: -pair[1].score)  # stable: ties keep the given order
