"""The audit's relevance levels: the four_level scheme (4 Excellent, 3 Related, 2 Mismatch,
1 Irrelevant), and how raw grades of other tools map onto them."""

from __future__ import annotations

from reranker.core import load_scheme

from . import AuditError

SCHEME = load_scheme("four_level")
LEVEL_NAMES: dict[int, str] = {int(lv.grade): lv.name for lv in SCHEME.levels}  # 4: "Excellent", ...
IRRELEVANT = min(LEVEL_NAMES)
UNJUDGED = "unjudged"

# Numeric grades of TREC qrels, SRW and Quepid (0..3, graded) unless --grades says otherwise.
DEFAULT_GRADES = "0=Irrelevant,1=Mismatch,2=Related,3=Excellent"


def level_by_name(name: str) -> int | None:
    for number, level_name in LEVEL_NAMES.items():
        if name.strip().lower() == level_name.lower():
            return number
    return None


def parse_grade_map(spec: str) -> dict[float, int]:
    """'0=Irrelevant,1=Mismatch,...' (level names or numbers 1-4 on the right) -> {grade: level}."""
    grades: dict[float, int] = {}
    for item in spec.split(","):
        grade, sep, target = (part.strip() for part in item.partition("="))
        level = level_by_name(target) if sep else None
        if level is None and target.isdigit() and int(target) in LEVEL_NAMES:
            level = int(target)
        try:
            key = float(grade)
        except ValueError:
            key = None
        if not sep or level is None or key is None:
            raise AuditError(f"--grades item {item.strip()!r} must look like GRADE=LEVEL, LEVEL one of "
                             f"{', '.join(LEVEL_NAMES.values())} or 1-4")
        grades[key] = level
    return grades


def to_level(raw: object, grades: dict[float, int], where: str) -> int:
    """A label name (any format) or a numeric grade looked up in `grades`."""
    if isinstance(raw, str):
        if (named := level_by_name(raw)) is not None:
            return named
        try:
            raw = float(raw)
        except ValueError:
            raw = raw.strip()
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and float(raw) in grades:
        return grades[float(raw)]
    known = ", ".join(f"{g:g}" for g in sorted(grades))
    raise AuditError(f"{where}: unknown label {raw!r} (known: {known} or {', '.join(LEVEL_NAMES.values())}; "
                     "map other grades with --grades)")


def level_from_relevance(relevance: object, where: str) -> int:
    """Home Depot's mean rating 1-3 -> level: 4 from 2.75, 3 from 2.25, 2 from 1.5, else 1."""
    if isinstance(relevance, bool) or not isinstance(relevance, (int, float)) or not 1 <= relevance <= 3:
        raise AuditError(f"{where}: unknown label relevance={relevance!r} (expected a number from 1 to 3)")
    return 4 if relevance >= 2.75 else 3 if relevance >= 2.25 else 2 if relevance >= 1.5 else 1
