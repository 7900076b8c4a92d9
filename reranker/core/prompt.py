"""The judge prompt and the answer-first target, tokenized in the same pieces for training and serving.

A prompt is the model's chat template rendered around one user message
("Query: ...\nProduct:\n..."), split into a per-query prefix and a per-product part so a server
can prefill the prefix once per query and reuse its KV cache. Training rows are built from the
very same pieces, so the token ids are identical by construction (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import LrefError
from .labels import LabelScheme, Level, SchemeError

# Fields a product may carry besides its title, in the order the prompt lists them.
DEFAULT_PRODUCT_FIELDS: tuple[str, ...] = ("brand", "category", "color", "size", "material", "attributes", "description")
TITLE_FIELDS: tuple[str, ...] = ("title", "text")
# Token limits of a prompt without a judge card (a card stores its training run's own).
DEFAULT_MAX_QUERY_TOKENS = 64
DEFAULT_MAX_DOC_TOKENS = 256

_QUERY_SLOT = "\u2063QUERY\u2063"
_PRODUCT_SLOT = "\u2063PRODUCT\u2063"


class PromptError(LrefError, ValueError):
    """The tokenizer or chat template cannot carry the prompt, or a product is malformed."""


def default_instruction(scheme: LabelScheme) -> str:
    grades = "\n".join(
        f"{lv.token} = {lv.name}: {scheme.definitions.get(lv.name, '')}".rstrip(": ") for lv in scheme.levels
    )
    return (
        "You are an e-commerce search relevance judge. Grade how well the product matches the shopper's query.\n"
        "Check the product type and function first, then brand, model and attributes.\n"
        f"Grades:\n{grades}\n"
        "Answer with the grade first, then optionally a short reason."
    )


def compact_instruction(scheme: LabelScheme) -> str:
    """A short instruction for a trained judge: the grades are learnt, not read, and every training
    row pays for each instruction token (the default one is ~5x a Home Depot title)."""
    grades = ", ".join(f"{lv.token} {lv.name}" for lv in scheme.levels)
    return f"Grade the product for the shopping query: {grades}."


INSTRUCTIONS = {"default": default_instruction, "compact": compact_instruction}


@dataclass(frozen=True)
class PromptSpec:
    """Everything besides the tokenizer and scheme that fixes a prompt's tokens: a training run and
    the server that serves its judge must agree on all of it (a judge card stores it)."""

    instruction: str = "default"  # 'default', 'compact', or the instruction's own text
    product_fields: tuple[str, ...] = DEFAULT_PRODUCT_FIELDS
    max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS
    max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS

    def instruction_text(self, scheme: LabelScheme) -> str:
        make = INSTRUCTIONS.get(self.instruction)
        return make(scheme) if make else self.instruction

    def build(self, tokenizer, scheme: LabelScheme) -> "PromptFormat":
        return PromptFormat(tokenizer, scheme, self.instruction_text(scheme), self.product_fields,
                            self.max_query_tokens, self.max_doc_tokens)


def product_text(product: str | Mapping[str, object], fields: Sequence[str] = DEFAULT_PRODUCT_FIELDS) -> str:
    """Render a product (a title string, or a dict with a title/text and optional fields)."""
    if isinstance(product, str):
        return f"Title: {product}"
    title = next((product[k] for k in TITLE_FIELDS if k in product), None)
    if not isinstance(title, str):
        raise PromptError("a product needs a string 'title' (or 'text')")
    lines = [f"Title: {title}"]
    for name in fields:
        value = product.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise PromptError(f"product field {name!r} must be a string")
        lines.append(f"{name.capitalize()}: {value}")
    return "\n".join(lines)


@dataclass(frozen=True)
class EncodedPair:
    query_ids: list[int]  # the shared prefix: template head, instruction, query
    doc_ids: list[int]  # the product and the template tail up to the first answer token

    @property
    def prompt_ids(self) -> list[int]:
        return self.query_ids + self.doc_ids


class PromptFormat:
    """Builds prompt token ids and answer-first targets for one tokenizer and label scheme."""

    def __init__(
        self,
        tokenizer,
        scheme: LabelScheme,
        instruction: str | None = None,
        product_fields: Sequence[str] = DEFAULT_PRODUCT_FIELDS,
        max_query_tokens: int = DEFAULT_MAX_QUERY_TOKENS,
        max_doc_tokens: int = DEFAULT_MAX_DOC_TOKENS,
    ) -> None:
        self.tokenizer = tokenizer
        self.scheme = scheme
        self.instruction = instruction or default_instruction(scheme)
        self.product_fields = tuple(product_fields)
        self.max_query_tokens = max_query_tokens
        self.max_doc_tokens = max_doc_tokens
        self.label_token_ids = self._label_token_ids()
        head, mid, tail = self._template_pieces()
        self._head, self._mid, self._tail = self._encode(head), self._encode(mid), self._encode(tail)
        self.eos_token_id = tokenizer.eos_token_id

    # -- set-up -------------------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False)) if text else []

    def _label_token_ids(self) -> list[int]:
        ids = []
        for lv in self.scheme.levels:
            piece = self._encode(lv.token)
            if len(piece) != 1:
                raise SchemeError(
                    f"label {lv.name!r} (token {lv.token!r}) is {len(piece)} tokens for this tokenizer; "
                    "every label must be exactly one token: choose other label tokens in the scheme"
                )
            ids.append(piece[0])
        if len(set(ids)) != len(ids):
            raise SchemeError(f"label tokens {self.scheme.tokens} do not map to distinct token ids ({ids})")
        return ids

    def _render(self, with_system: bool) -> str:
        user = f"Query: {_QUERY_SLOT}\nProduct:\n{_PRODUCT_SLOT}"
        if with_system:
            messages = [{"role": "system", "content": self.instruction}, {"role": "user", "content": user}]
        else:
            messages = [{"role": "user", "content": f"{self.instruction}\n\n{user}"}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _template_pieces(self) -> tuple[str, str, str]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise PromptError("the tokenizer has no chat template; load an instruct/chat model or set one")
        try:
            rendered = self._render(with_system=True)
        except Exception:  # templates that reject a system role raise from jinja
            rendered = self._render(with_system=False)
        if rendered.count(_QUERY_SLOT) != 1 or rendered.count(_PRODUCT_SLOT) != 1:
            raise PromptError("the chat template rewrites message text, so the prompt cannot be split per query")
        head, rest = rendered.split(_QUERY_SLOT)
        mid, tail = rest.split(_PRODUCT_SLOT)
        return head, mid, tail

    # -- prompts ------------------------------------------------------------------------------
    @property
    def head_ids(self) -> list[int]:
        """The constant start of every prompt (template head and instruction): a server may cache its KV."""
        return list(self._head)

    def query_rest_ids(self, query: str) -> list[int]:
        """What follows the head in the per-query prefix: the query's tokens and the text before the product."""
        return self._encode(query)[: self.max_query_tokens] + self._mid

    def query_ids(self, query: str) -> list[int]:
        return self._head + self.query_rest_ids(query)

    def doc_ids(self, product: str | Mapping[str, object]) -> list[int]:
        # Only the product's own tokens are cut; the template around it is never truncated.
        return self._encode(product_text(product, self.product_fields))[: self.max_doc_tokens] + self._tail

    def encode(self, query: str, product: str | Mapping[str, object]) -> EncodedPair:
        return EncodedPair(self.query_ids(query), self.doc_ids(product))

    # -- answer-first targets -----------------------------------------------------------------
    def target_ids(self, label: Level | str | int, reasoning: str | None = None) -> list[int]:
        """Label token first, then the optional reasoning, then end of turn."""
        level = label if isinstance(label, Level) else self.scheme.level(label)
        ids = [self.label_token_ids[self.scheme.levels.index(level)]]
        if reasoning:
            ids += self._encode("\n" + reasoning.strip())
        if self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def label_of_token(self, token_id: int) -> Level | None:
        if token_id in self.label_token_ids:
            return self.scheme.levels[self.label_token_ids.index(token_id)]
        return None
