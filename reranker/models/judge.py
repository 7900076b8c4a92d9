"""A judge directory: trained weights plus the card (judge.json) that lets serving rebuild the
training prompt exactly.

    judge.json   base model and its content hash, label scheme, prompt settings (instruction text,
                 product fields, token limits), the tier policy chosen on eval, a prompt check
                 (token ids of a reference pair), training data, command and metrics
    adapter/     the LoRA adapter (PEFT), applied to the base at load; or
    model/       a full HF model dir (when the chain cannot be expressed as one adapter)
    README.md    the card for people

Serving refuses a base model whose weights hash differently, or a tokenizer that turns the
reference pair into other tokens: either would silently judge with another prompt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core import LabelScheme, PromptFormat, PromptSpec, builtin_schemes
from ..core.labels import scheme_from_dict
from .loading import ModelLoadError

CARD = "judge.json"
FORMAT = "lref-judge/1"
ZERO_SHOT = "zero-shot"  # --judge value for the bare base model
# The reference pair whose prompt tokens the card records and serving re-checks.
CHECK_QUERY, CHECK_PRODUCT = "cordless drill 20v", "DeWalt 20V MAX Cordless Drill/Driver Kit"


class JudgeError(ModelLoadError):
    """A judge dir that cannot be served as trained; the message says why."""


@dataclass
class JudgeCard:
    name: str
    base_model: str  # the model spec the weights apply to: 'default', a dir or a hub id
    base_sha256: str  # weights_sha256 of that base
    weights: str  # "adapter" | "model"
    scheme: dict  # {"name", "levels", "definitions"}
    prompt: dict  # PromptSpec fields, the instruction as its full text
    policy: dict  # {"beta", "tier_map", "min_tier"}
    prompt_check: dict  # {"query", "product", "ids", "label_ids"}
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    notes: str = ""
    format: str = FORMAT

    def scheme_obj(self) -> LabelScheme:
        return scheme_from_dict(self.scheme["name"], self.scheme)

    def prompt_spec(self) -> PromptSpec:
        p = self.prompt
        return PromptSpec(p["instruction"], tuple(p["product_fields"]), p["max_query_tokens"], p["max_doc_tokens"])


def weights_sha256(model_dir: str | Path) -> str:
    """A hash of a model's tensors (name, dtype, shape and bytes of each, in name order), not of its
    files: the same weights saved by another library version hash the same."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise JudgeError(f"{model_dir}: no .safetensors weights to check the judge's base against")
    entries = []
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                t = f.get_tensor(name).contiguous()
                h = hashlib.sha256(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
                entries.append(f"{name} {h.hexdigest()}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def prompt_check(prompt: PromptFormat) -> dict:
    return {"query": CHECK_QUERY, "product": CHECK_PRODUCT,
            "ids": prompt.encode(CHECK_QUERY, CHECK_PRODUCT).prompt_ids, "label_ids": list(prompt.label_token_ids)}


def card_for(name: str, base_model: str, base_dir: str | Path, weights: str, prompt: PromptFormat,
             spec: PromptSpec, policy: dict, **extra) -> JudgeCard:
    scheme = prompt.scheme
    return JudgeCard(
        name=name, base_model=base_model, base_sha256=weights_sha256(base_dir), weights=weights,
        scheme={"name": scheme.name, "levels": [asdict(lv) for lv in scheme.levels], "definitions": scheme.definitions},
        prompt={"instruction": prompt.instruction, "product_fields": list(spec.product_fields),
                "max_query_tokens": spec.max_query_tokens, "max_doc_tokens": spec.max_doc_tokens},
        policy=policy, prompt_check=prompt_check(prompt), **extra)


def write_card(judge_dir: Path, card: JudgeCard) -> Path:
    judge_dir.mkdir(parents=True, exist_ok=True)
    (judge_dir / CARD).write_text(json.dumps(asdict(card), indent=1, ensure_ascii=False) + "\n")
    return judge_dir / CARD


def read_card(judge_dir: str | Path) -> JudgeCard:
    path = Path(judge_dir) / CARD
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise JudgeError(f"{judge_dir} is not a judge dir: no {CARD} (make one with `lref train`, stage export)") from None
    except (OSError, ValueError) as exc:
        raise JudgeError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise JudgeError(f"{path}: not a {FORMAT} card")
    try:
        card = JudgeCard(**raw)
        card.scheme_obj(), card.prompt_spec()
    except (TypeError, KeyError, ValueError) as exc:
        raise JudgeError(f"{path}: malformed card ({exc})") from None
    if card.weights not in ("adapter", "model") or not (Path(judge_dir) / card.weights).is_dir():
        raise JudgeError(f"{path}: weights {card.weights!r} missing (expected the folder {card.weights}/ beside it)")
    return card


def scheme_arg(card: JudgeCard, judge_dir: Path) -> str:
    """What `--scheme` takes for the card's scheme: the built-in name when it is that scheme, else
    a scheme file written beside the card."""
    scheme = card.scheme_obj()
    if builtin_schemes().get(scheme.name) == scheme:
        return scheme.name
    path = Path(judge_dir) / "scheme.json"
    if not path.is_file():
        path.write_text(json.dumps({k: card.scheme[k] for k in ("levels", "definitions")}, indent=1))
    return str(path)


def verify(judge_dir: str | Path, base_dir: str | Path | None, prompt: PromptFormat) -> None:
    """The base (when the judge is an adapter) and tokenizer serving loaded are the ones the judge
    was trained on."""
    card = read_card(judge_dir)
    got = weights_sha256(base_dir) if card.weights == "adapter" else card.base_sha256
    if got != card.base_sha256:
        raise JudgeError(f"judge {judge_dir} was trained on a base model whose weights hash {card.base_sha256[:12]}…, "
                         f"but {card.base_model!r} ({base_dir}) hashes {got[:12]}…: pass --model with the right base")
    check = card.prompt_check
    if prompt.encode(check["query"], check["product"]).prompt_ids != check["ids"] \
            or list(prompt.label_token_ids) != check["label_ids"]:
        raise JudgeError(f"judge {judge_dir}: this tokenizer builds other prompt tokens than training did "
                         "(different tokenizer or chat template)")


def shipped_judge() -> Path | None:
    """The judge this project ships in models/ (installed as the package lref_models), if present."""
    try:
        from importlib import resources

        root = Path(str(resources.files("lref_models")))
    except (ImportError, TypeError):
        return None
    found = sorted(p.parent for p in root.glob(f"*/{CARD}"))
    return found[0] if found else None


def resolve_judge(value: str | None) -> Path | None:
    """--judge: None = the shipped judge (or none), 'zero-shot' = none, else a judge dir."""
    if value == ZERO_SHOT:
        return None
    if value is None:
        return shipped_judge()
    path = Path(value).expanduser()
    if not (path / CARD).is_file():
        raise JudgeError(f"--judge {value}: not a judge dir (no {CARD}); use a dir `lref train` exported, or {ZERO_SHOT}")
    return path


def judge_settings(judge_dir: Path, model: str | None) -> dict:
    """ServiceConfig fields a judge card sets: weights, scheme, prompt, tier policy."""
    card = read_card(judge_dir)
    spec = card.prompt_spec()
    if card.weights == "model":
        model, adapter = str(judge_dir / "model"), None
    else:
        model, adapter = model or card.base_model, str(judge_dir / "adapter")
    return {"model": model, "adapter": adapter, "judge_dir": str(judge_dir), "scheme": scheme_arg(card, judge_dir),
            "instruction": spec.instruction, "product_fields": spec.product_fields,
            "max_query_tokens": spec.max_query_tokens, "max_doc_tokens": spec.max_doc_tokens, "policy": card.policy}
