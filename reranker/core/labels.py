"""Label schemes: the grades a judge can give, loaded from data (schemes.json or a user file)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import LrefError
from .records import json_value

# Tiers, best first. Every scheme maps its levels onto these.
TIERS: tuple[str, ...] = ("Good", "Mid", "Bad")


class SchemeError(LrefError, ValueError):
    """A label scheme that cannot be used (bad file, unknown name, label tokens that clash)."""


@dataclass(frozen=True)
class Level:
    name: str
    token: str
    grade: float
    tier: str


@dataclass(frozen=True)
class LabelScheme:
    name: str
    levels: tuple[Level, ...]  # best first
    definitions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 2 <= len(self.levels) <= 9:  # the engine-side score encoding has one digit per level
            raise SchemeError(f"scheme {self.name!r}: needs between 2 and 9 levels")
        for attr in ("name", "token"):
            values = [getattr(lv, attr) for lv in self.levels]
            if len(set(values)) != len(values):
                raise SchemeError(f"scheme {self.name!r}: level {attr}s must be distinct, got {values}")
        grades = [lv.grade for lv in self.levels]
        if grades != sorted(grades, reverse=True) or len(set(grades)) != len(grades):
            raise SchemeError(f"scheme {self.name!r}: levels must be listed best first with strictly falling grades")
        for lv in self.levels:
            if lv.tier not in TIERS:
                raise SchemeError(f"scheme {self.name!r}: level {lv.name!r} has tier {lv.tier!r}, not one of {TIERS}")

    @property
    def tokens(self) -> list[str]:
        return [lv.token for lv in self.levels]

    @property
    def names(self) -> list[str]:
        return [lv.name for lv in self.levels]

    def level(self, key: str | int | float) -> Level:
        """Find a level by name, token or grade (case-insensitive for names)."""
        for lv in self.levels:
            if isinstance(key, str):
                if key == lv.token or key.lower() == lv.name.lower():
                    return lv
            elif float(key) == lv.grade:
                return lv
        raise SchemeError(f"label {key!r} is not in scheme {self.name!r} (levels: {', '.join(self.names)})")

    def tier_map(self) -> dict[str, str]:
        return {lv.name: lv.tier for lv in self.levels}


def scheme_from_dict(name: str, data: dict) -> LabelScheme:
    try:
        levels = tuple(
            Level(name=str(x["name"]), token=str(x["token"]), grade=float(x["grade"]), tier=str(x["tier"]))
            for x in data["levels"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemeError(f"scheme {name!r}: each level needs name, token, grade and tier ({exc})") from None
    return LabelScheme(name=name, levels=levels, definitions=dict(data.get("definitions", {})))


def builtin_schemes() -> dict[str, LabelScheme]:
    raw = json.loads(resources.files("reranker.core").joinpath("schemes.json").read_text())
    return {k: scheme_from_dict(k, v) for k, v in raw.items() if not k.startswith("_")}


def load_scheme(name_or_path: str = "four_level") -> LabelScheme:
    """A built-in scheme by name, or a JSON file holding one scheme ({"levels": [...]})."""
    schemes = builtin_schemes()
    if name_or_path in schemes:
        return schemes[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise SchemeError(f"unknown label scheme {name_or_path!r}: use one of {sorted(schemes)} or a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemeError(f"label scheme file {path}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None
    return scheme_from_dict(path.stem, json_value(text, f"label scheme file {path}", SchemeError))
