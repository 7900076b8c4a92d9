"""Judgments in four formats and the query set they are measured on.

- `jsonl`: ours, one object a line: `query`, `product_id` and `level` (1-4 or a level name), or
  `relevance` (Home Depot's mean rating 1-3), or `label` (a level name); `query_id` optional.
- `trec`: TREC qrels, `QID ITER DOCID GRADE` a line; query texts come from `--queries`.
- `srw`: OpenSearch Search Relevance Workbench `IMPORT_JUDGMENT` JSON,
  `{"judgmentRatings": [{"query": ..., "ratings": [{"docId": ..., "rating": "3.000"}]}]}`.
- `quepid`: Quepid's rating CSV with the header `query,docid,rating` (an empty rating = unrated).

Numeric grades of the last three map through `--grades` (default 0..3 -> Irrelevant..Excellent).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reranker.core import json_value, jsonl_objects

from . import AuditError
from .levels import FOUR_LEVEL, Levels

FORMATS = ("jsonl", "trec", "srw", "quepid")
SUFFIXES = {".jsonl": "jsonl", ".qrels": "trec", ".json": "srw", ".csv": "quepid"}


@dataclass
class Judgments:
    format: str
    levels: Levels = FOUR_LEVEL  # the scheme whose grades the levels below are
    queries: dict[str, str] = field(default_factory=dict)  # query id -> text ("" when the format has none)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # query id -> product id -> level (the scheme's grade)

    def add(self, qid: str, text: str, doc: str, level: int, where: str) -> None:
        self.queries.setdefault(qid, text)
        docs = self.qrels.setdefault(qid, {})
        if docs.get(doc, level) != level:
            raise AuditError(f"{where}: conflicting judgments for query {qid!r}, product {doc!r} "
                             f"({self.levels.names[docs[doc]]} and {self.levels.names[level]})")
        docs[doc] = level

    @property
    def count(self) -> int:
        return sum(len(docs) for docs in self.qrels.values())


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read {path}: {exc}") from exc


def _id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        return None
    return str(value).strip()


def _json_lines(path: Path) -> Iterator[tuple[str, dict]]:
    for number, row in jsonl_objects(path, AuditError):
        yield f"{path}:{number}", row


def detect_format(path: Path, text: str) -> str:
    if path.suffix.lower() in SUFFIXES:
        return SUFFIXES[path.suffix.lower()]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{") and '"judgmentRatings"' in text:
        return "srw"
    if first.startswith("{"):
        return "jsonl"
    if first.replace(" ", "").lower().startswith("query,"):
        return "quepid"
    if len(first.split()) == 4:
        return "trec"
    raise AuditError(f"cannot tell the judgment format of {path}; give --format {'|'.join(FORMATS)}")


def _jsonl(path: Path, text: str, grades: dict[float, int], levels: Levels) -> Judgments:
    out = Judgments("jsonl", levels)
    for where, row in _json_lines(path):
        query, doc = row.get("query"), _id(row.get("product_id"))
        if not isinstance(query, str) or not query.strip():
            raise AuditError(f"{where}: query is missing or empty")
        if doc is None:
            raise AuditError(f"{where}: product_id is missing or empty")
        if "level" in row:
            level = levels.to_level(row["level"], {float(n): n for n in levels.names}, f"{where}: level")
        elif "relevance" in row:
            level = levels.from_relevance(row["relevance"], where)
        elif "label" in row:
            level = levels.to_level(row["label"], {}, f"{where}: label")
        else:
            raise AuditError(f"{where}: no level, relevance or label")
        out.add(_id(row.get("query_id")) or query.strip(), query.strip(), doc, level, where)
    return out


def _trec(path: Path, text: str, grades: dict[float, int], levels: Levels) -> Judgments:
    out = Judgments("trec", levels)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 4:
            raise AuditError(f"{where}: a qrels line needs 4 columns (QID ITER DOCID GRADE), got {len(parts)}")
        qid, _, doc, grade = parts
        out.add(qid, "", doc, levels.to_level(grade, grades, where), where)
    return out


def _srw(path: Path, text: str, grades: dict[float, int], levels: Levels) -> Judgments:
    data = json_value(text, str(path), AuditError)
    entries = data.get("judgmentRatings") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise AuditError(f"{path}: not a Search Relevance Workbench judgment list (no judgmentRatings)")
    out = Judgments("srw", levels)
    for i, entry in enumerate(entries):
        where = f"{path}: judgmentRatings[{i}]"
        query = entry.get("query") if isinstance(entry, dict) else None
        if not isinstance(query, str) or not query.strip():
            raise AuditError(f"{where}: query is missing or empty")
        ratings = entry.get("ratings")
        if not isinstance(ratings, list):
            raise AuditError(f"{where}: ratings must be a list")
        for j, rating in enumerate(ratings):
            at = f"{where}.ratings[{j}]"
            doc = _id(rating.get("docId")) if isinstance(rating, dict) else None
            if doc is None:
                raise AuditError(f"{at}: docId is missing or empty")
            out.add(query.strip(), query.strip(), doc, levels.to_level(rating.get("rating"), grades, at), at)
    return out


def _quepid(path: Path, text: str, grades: dict[float, int], levels: Levels) -> Judgments:
    reader = csv.DictReader(io.StringIO(text))
    columns = {name.replace(" ", "").replace("_", "").lower(): name for name in reader.fieldnames or []}
    query_col, doc_col, rating_col = (columns.get(k) for k in ("query", "docid", "rating"))
    if not (query_col and doc_col and rating_col):
        raise AuditError(f"{path}: a Quepid CSV needs the header query,docid,rating")
    out = Judgments("quepid", levels)
    for number, row in enumerate(reader, 2):
        where = f"{path}:{number}"
        query, doc = (row.get(query_col) or "").strip(), _id(row.get(doc_col))
        rating = (row.get(rating_col) or "").strip()
        if not query:
            raise AuditError(f"{where}: query is missing or empty")
        if doc is None:
            raise AuditError(f"{where}: docid is missing or empty")
        if rating:  # Quepid exports unrated documents with an empty rating
            out.add(query, query, doc, levels.to_level(rating, grades, where), where)
    return out


READERS = {"jsonl": _jsonl, "trec": _trec, "srw": _srw, "quepid": _quepid}


def read_judgments(path: Path, fmt: str, grades: dict[float, int], levels: Levels = FOUR_LEVEL) -> Judgments:
    if fmt != "auto" and fmt not in FORMATS:
        raise AuditError(f"unknown judgment format {fmt!r} (use auto, {', '.join(FORMATS)})")
    text = _read_text(path)
    fmt = detect_format(path, text) if fmt == "auto" else fmt
    judgments = READERS[fmt](path, text, grades, levels)
    if not judgments.count:
        raise AuditError(f"{path}: no judgments")
    return judgments


def read_queries(path: Path) -> dict[str, str]:
    """A query set: JSONL with `query` (and optional `query_id`), or lines `QID<TAB>TEXT` or `TEXT`."""
    text = _read_text(path)
    queries: dict[str, str] = {}
    if path.suffix.lower() == ".jsonl" or text.lstrip().startswith("{"):
        for where, row in _json_lines(path):
            query = row.get("query")
            if not isinstance(query, str) or not query.strip():
                raise AuditError(f"{where}: query is missing or empty")
            queries.setdefault(_id(row.get("query_id")) or query.strip(), query.strip())
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            qid, tab, query = line.partition("\t")
            if tab and not (qid.strip() and query.strip()):
                raise AuditError(f"{path}:{number}: a QID<TAB>TEXT line needs both an id and a text")
            queries.setdefault(qid.strip(), query.strip() if tab else qid.strip())
    if not queries:
        raise AuditError(f"{path}: no queries")
    return queries


def query_set(judgments: Judgments, queries: dict[str, str] | None, limit: int | None) -> dict[str, str]:
    """The queries to run, id -> text: the query file's (when given) or the judged ones, in order.

    TREC qrels match the query file by id; the other formats key judgments by query text and match
    the file by text. Judged queries outside the set are left out; queries of the set with no
    judgment still run (they count for the tier distribution, not the metrics)."""
    if queries is None:
        if judgments.format == "trec":
            raise AuditError("TREC qrels carry query ids only: give the texts with --queries (QID<TAB>TEXT lines)")
        chosen = dict(judgments.queries)
    elif judgments.format == "trec":
        chosen = dict(queries)
    else:
        by_text = {text: qid for qid, text in judgments.queries.items()}
        chosen = {by_text.get(text, text): text for text in queries.values()}
    if limit:
        chosen = dict(list(chosen.items())[:limit])
    if not any(judgments.qrels.get(qid) for qid in chosen):
        spaced = next((qid for qid in chosen if " " in qid and qid.split(" ", 1)[0] in judgments.qrels), None)
        if judgments.format == "trec" and spaced:  # `101 cordless drill`: a space where the TAB belongs
            raise AuditError(f"none of the query ids matches the qrels: lines must be QID<TAB>TEXT, and "
                             f"{spaced!r} has a space where the TAB belongs")
        raise AuditError(f"empty set: none of the {len(chosen)} queries to run has a judgment")
    return chosen
