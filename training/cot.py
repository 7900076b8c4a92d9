"""Stage `cot` (LREF Multi-CoT, TaoSR1 CoT): rationales in three styles, targets answer-first.

EE  expert explanation of the given label;
RA  rule adherence: walk the rules file (type/function, brand, model, attributes) to the label;
DR  decision reflection: why a wrong (typically over-graded) decision is wrong.
The rule-based generator needs no teacher; the teacher generator asks any OpenAI-compatible chat
endpoint. Either way the SFT target is the label token first, then the rationale.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from reranker.core import LabelScheme, Level, product_text
from reranker.errors import LrefError

from .config import CotConfig, TeacherConfig

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9./-]*")
WORD_PAIR = re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])")  # splits Drill/Driver, keeps 1/2
MODEL = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9-]{4,}$")
ATTRIBUTE = re.compile(r"^\d+(\.\d+)?(/\d+)?(v|ft|in|gal|lb|oz|mm|cm|w|amp|pc|piece|volt|inch)?$")
DEFAULT_RULES = Path(__file__).with_name("rules.md")
# Words that make a product something used with the searched item rather than the item itself
# (raters' guideline: tools, accessories, extra parts, covers and cases are Irrelevant).
ACCESSORY = {"accessory", "accessories", "adapter", "attachment", "bag", "blade", "bracket", "cap", "case", "charger",
             "cover", "filter", "holder", "holster", "hose", "knob", "mount", "part", "parts", "refill",
             "replacement", "sleeve", "stand", "strap", "trim"}
KIT = {"kit", "combo", "set", "system", "bundle"}


class CotError(LrefError, RuntimeError):
    pass


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


@dataclass
class PairFacts:
    """What a rule-based judge can read off a query/title pair."""

    query_type: str
    type_match: bool
    brand: str | None
    brand_in_query: bool
    models: list[str]
    models_missing: list[str]
    attributes: list[str]
    attributes_missing: list[str]
    accessory: str | None = None  # the title's accessory word when the product is for, not of, the type
    kit: bool = False  # a kit or set whose title names the searched type: it contains the item

    @classmethod
    def of(cls, query: str, product) -> "PairFacts":
        title = product_text(product).removeprefix("Title: ")
        q = [w.lower() for w in WORD.findall(query)]
        t_words = [part for w in WORD.findall(title) for part in WORD_PAIR.split(w)]  # "Drill/Driver": two words
        t = {_stem(w.lower()) for w in t_words}
        models = [w for w in q if MODEL.match(w)]
        attributes = [w for w in q if ATTRIBUTE.match(w) and w not in models]
        nouns = [w for w in q if w not in models and w not in attributes]
        query_type = nouns[-1] if nouns else (q[-1] if q else "")
        brand = t_words[0] if t_words and t_words[0][:1].isupper() else None
        type_match = _stem(query_type) in t
        lowered = [w.lower() for w in t_words]
        accessory = None  # an accessory word the query did not ask for, or "... for <type>": used with the item
        if type_match:
            asked = {_stem(w) for w in q}
            accessory = next((w for w in lowered if w in ACCESSORY and _stem(w) not in asked), None)
            after_for = lowered[lowered.index("for") + 1:] if "for" in lowered else []
            if not accessory and _stem(query_type) in {_stem(w) for w in after_for}:
                accessory = "part"
        kit = type_match and not accessory and bool(KIT & set(lowered))
        return cls(
            query_type=query_type, type_match=type_match,
            brand=brand, brand_in_query=bool(brand and brand.lower() in q),
            models=models, models_missing=[m for m in models if _stem(m) not in t],
            attributes=attributes, attributes_missing=[a for a in attributes if _stem(a) not in t],
            accessory=accessory, kit=kit,
        )


def rule_steps(f: PairFacts) -> list[str]:
    steps = [f"Type: the query asks for '{f.query_type}'; the product "
             + ("is of that type." if f.type_match else "does not show that type.")]
    if f.accessory:
        steps.append(f"Item or accessory: the title names a {f.accessory} used with a {f.query_type}, not the {f.query_type} itself.")
    elif f.kit:
        steps.append(f"Kit: the product is a kit or set that includes the {f.query_type}.")
    if f.brand:
        steps.append(f"Brand: the product is {f.brand}" + ("; the query names it." if f.brand_in_query else "; the query names no brand of its own." ))
    if f.models:
        steps.append("Model: " + ("the model matches." if not f.models_missing else f"model {', '.join(f.models_missing)} is not this product."))
    if f.attributes:
        steps.append("Attributes: " + ("all asked attributes are present." if not f.attributes_missing
                                      else f"{', '.join(f.attributes_missing)} not found in the title."))
    return steps


def rule_rationale(style: str, query: str, product, level: Level, scheme: LabelScheme, wrong: Level | None) -> str:
    facts = PairFacts.of(query, product)
    definition = scheme.definitions.get(level.name, "")
    if style == "EE":
        return f"{level.name}: {definition}. " + " ".join(rule_steps(facts)[:2])
    if style == "RA":
        return " ".join(f"Rule {i}. {s}" for i, s in enumerate(rule_steps(facts), 1)) + f" So: {level.name}."
    wrong = wrong or level
    return (f"Answering {wrong.name} would be wrong: {wrong.name} means {scheme.definitions.get(wrong.name, '')}. "
            + " ".join(rule_steps(facts)) + f" So the grade is {level.name}.")


def wrong_decision(scheme: LabelScheme, level: Level, predicted: str | None) -> Level:
    """The wrong decision DR reflects on: a helper's wrong prediction, else the over-grade next
    to the true level (the optimistic bias LREF targets), else the grade below."""
    if predicted and predicted != level.name:
        return scheme.level(predicted)
    index = scheme.levels.index(level)
    return scheme.levels[index - 1] if index > 0 else scheme.levels[index + 1]


class Teacher:
    """Any OpenAI-compatible chat-completions endpoint."""

    PROMPTS = {
        "EE": "As an e-commerce relevance expert, explain in two sentences why the grade is {label}.",
        "RA": "Apply these rules in order and show each step briefly, ending with the grade {label}:\n{rules}",
        "DR": "A judge answered {wrong}. In two sentences explain why that is wrong and the grade is {label}.",
    }

    def __init__(self, cfg: TeacherConfig, rules: str) -> None:
        self.cfg, self.rules = cfg, rules
        key = os.environ.get(cfg.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=cfg.base_url.rstrip("/"), headers=headers, timeout=cfg.timeout_s)

    def rationale(self, style: str, query: str, product, level: Level, wrong: Level) -> str:
        ask = self.PROMPTS[style].format(label=level.name, wrong=wrong.name, rules=self.rules)
        body = {"model": self.cfg.model, "max_tokens": self.cfg.max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": f"Query: {query}\n{product_text(product)}\n\n{ask}"}]}
        try:
            response = self.client.post("/chat/completions", json=body)
            response.raise_for_status()
            text = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise CotError(f"teacher at {self.cfg.base_url} failed: {exc}") from exc
        return " ".join(str(text).split())


def generate(rows: list[dict], cfg: CotConfig, scheme: LabelScheme, rules_path: Path | None,
             predictions: dict | None = None) -> tuple[list[dict], dict]:
    """One row per (sample, style): {..., style, reasoning}."""
    rules = (rules_path or DEFAULT_RULES).read_text()
    teacher = Teacher(cfg.teacher, rules) if cfg.generator == "teacher" else None
    out = []
    for row in tqdm(rows, desc=f"rationales ({cfg.generator})", unit="row"):
        level = scheme.level(row["label"])
        wrong = wrong_decision(scheme, level, (predictions or {}).get((row["query"], row["product_id"])))
        for style in cfg.styles:
            text = (teacher.rationale(style, row["query"], row["product"], level, wrong) if teacher
                    else rule_rationale(style, row["query"], row["product"], level, scheme, wrong))
            out.append({**row, "style": style, "reasoning": text})
    return out, {"rows": len(out), "generator": cfg.generator, "styles": list(cfg.styles)}
