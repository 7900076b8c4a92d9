"""The audit's relevance levels: those of a label scheme (`--scheme`, four_level by default: 4
Excellent, 3 Related, 2 Mismatch, 1 Irrelevant; with `--judge`, the reranker's own, read from its
/health), and how raw grades of other tools map onto them. A level is the scheme's numeric grade."""

from __future__ import annotations

from reranker.core import LabelScheme, SchemeError, load_scheme

from . import AuditError

UNJUDGED = "unjudged"


class Levels:
    """One scheme's levels as the audit counts them: grade -> name, best first."""

    def __init__(self, scheme: LabelScheme):
        self.scheme = scheme
        self.names: dict[int, str] = {int(lv.grade): lv.name for lv in scheme.levels}  # 4: "Excellent", ...
        if len(self.names) != len(scheme.levels) or any(lv.grade != int(lv.grade) for lv in scheme.levels):
            raise AuditError(f"scheme {scheme.name}: the audit needs a distinct whole-number grade per level")
        self.irrelevant = min(self.names)
        # The lowest level of the Good tier: what counts as relevant unless --rel-level says otherwise.
        self.default_relevant = min((int(lv.grade) for lv in scheme.levels if lv.tier == "Good"), default=max(self.names))
        # Numeric grades of TREC qrels, SRW and Quepid (0, 1, ... worst first) unless --grades says otherwise.
        self.default_grades = ",".join(f"{i}={self.names[g]}" for i, g in enumerate(sorted(self.names)))

    @classmethod
    def named(cls, name: str) -> "Levels":
        try:
            return cls(load_scheme(name))
        except (SchemeError, OSError) as exc:
            raise AuditError(f"--scheme: {exc}") from exc

    def by_name(self, name: str) -> int | None:
        for number, level_name in self.names.items():
            if name.strip().lower() == level_name.lower():
                return number
        return None

    def parse_grade_map(self, spec: str) -> dict[float, int]:
        """'0=Irrelevant,1=Mismatch,...' (level names or the scheme's grades on the right) -> {grade: level}."""
        grades: dict[float, int] = {}
        for item in spec.split(","):
            grade, sep, target = (part.strip() for part in item.partition("="))
            level = self.by_name(target) if sep else None
            if level is None and target.isdigit() and int(target) in self.names:
                level = int(target)
            try:
                key = float(grade)
            except ValueError:
                key = None
            if not sep or level is None or key is None:
                raise AuditError(f"--grades item {item.strip()!r} must look like GRADE=LEVEL, LEVEL one of "
                                 f"{', '.join(self.names.values())} or {', '.join(map(str, sorted(self.names)))}")
            grades[key] = level
        return grades

    def to_level(self, raw: object, grades: dict[float, int], where: str) -> int:
        """A label name (any format) or a numeric grade looked up in `grades`."""
        if isinstance(raw, str):
            if (named := self.by_name(raw)) is not None:
                return named
            try:
                raw = float(raw)
            except ValueError:
                raw = raw.strip()
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and float(raw) in grades:
            return grades[float(raw)]
        known = ", ".join(f"{g:g}" for g in sorted(grades))
        raise AuditError(f"{where}: unknown label {raw!r} (known: {known} or {', '.join(self.names.values())}; "
                         "map other grades with --grades)")

    def from_relevance(self, relevance: object, where: str) -> int:
        """Home Depot's mean rating 1-3 -> a four_level level: 4 from 2.75, 3 from 2.25, 2 from 1.5, else 1."""
        if self.scheme.name != "four_level":
            raise AuditError(f"{where}: a Home Depot relevance maps onto four_level levels, not {self.scheme.name}'s")
        if isinstance(relevance, bool) or not isinstance(relevance, (int, float)) or not 1 <= relevance <= 3:
            raise AuditError(f"{where}: unknown label relevance={relevance!r} (expected a number from 1 to 3)")
        return 4 if relevance >= 2.75 else 3 if relevance >= 2.25 else 2 if relevance >= 1.5 else 1


FOUR_LEVEL = Levels(load_scheme("four_level"))
