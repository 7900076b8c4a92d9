"""Stage `data`: read judgments, map raw grades onto the label scheme, split by query."""

from __future__ import annotations

import csv
import hashlib
import math
import json
import numbers
import random
from collections import Counter
from pathlib import Path

from reranker.core import DEFAULT_PRODUCT_FIELDS, LabelScheme, SchemeError, jsonl_objects

from .config import ConfigError, DataConfig

# Amazon ESCI's parquet layout (shopping_queries_dataset_examples joined with _products).
ESCI_COLUMNS = {"query": "query", "product_id": "product_id", "title": "product_title", "brand": "product_brand",
                "color": "product_color", "description": "product_description"}


def _records(path: Path, fmt: str) -> list[dict]:
    fmt = fmt if fmt != "auto" else {".jsonl": "jsonl", ".csv": "csv", ".parquet": "esci"}.get(path.suffix, "")
    if fmt == "jsonl":
        return [record for _, record in jsonl_objects(path, ConfigError)]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            try:
                return list(csv.DictReader(handle))
            except csv.Error as exc:  # e.g. a field past the csv module's size limit
                raise ConfigError(f"{path}: not a readable CSV file ({exc})") from None
    if fmt == "esci":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict("records")
        except Exception as exc:  # pyarrow's errors for a file that is no parquet are many and not one type
            raise ConfigError(f"{path}: not a readable parquet file ({type(exc).__name__})") from None
    raise ConfigError(f"{path}: cannot tell the format from the suffix; set data.format to jsonl, csv or esci")


def _grade_key(raw) -> str | float:
    if isinstance(raw, str):
        raw = raw.strip()
        try:
            raw = float(raw)
        except ValueError:
            return raw
    return int(raw) if float(raw).is_integer() else float(raw)


def normalise(records: list[dict], cfg: DataConfig, scheme: LabelScheme, source: Path) -> list[dict]:
    """-> rows {query, product_id, product, label}; product is a title or a dict with extra fields."""
    columns = dict(ESCI_COLUMNS if cfg.format == "esci" else {}, **cfg.columns)
    grade_column = cfg.columns.get("grade", "esci_label" if cfg.format == "esci" else cfg.grade_field)
    get = lambda rec, name: rec.get(columns.get(name, name))  # noqa: E731
    rows = []
    for number, rec in enumerate(records, 1):
        query, title = get(rec, "query"), get(rec, "title")
        if not isinstance(query, str) or not query.strip() or not isinstance(title, str) or not title.strip():
            raise ConfigError(f"{source} row {number}: needs a non-empty query and title (see data.columns)")
        raw = rec.get(grade_column)
        if raw is None:
            raise ConfigError(f"{source} row {number}: no grade in column {grade_column!r}")
        if isinstance(raw, bool) or not isinstance(raw, (str, numbers.Real)):
            raise ConfigError(f"{source} row {number}: grade {raw!r} is neither a label name nor a number")
        key = _grade_key(cfg.grade_map.get(str(_grade_key(raw)), raw))  # numeric strings become grades
        try:
            level = scheme.level(key)
        except SchemeError as exc:
            raise ConfigError(f"{source} row {number}: grade {raw!r}: {exc}; map it with data.grade_map") from exc
        extra = {f: get(rec, f) for f in DEFAULT_PRODUCT_FIELDS if isinstance(get(rec, f), str) and get(rec, f)}
        product = {"title": title, **extra} if extra else title
        row = {"query": query.strip(), "product_id": str(get(rec, "product_id") or number), "product": product,
               "label": level.name}
        if cfg.rating_field:
            rating = rec.get(cfg.rating_field)
            if isinstance(rating, bool) or not isinstance(rating, numbers.Real) or not math.isfinite(rating):
                raise ConfigError(f"{source} row {number}: rating {rating!r} in column {cfg.rating_field!r} is not a number")
            row["rating"] = float(rating)
        rows.append(row)
    return rows


def _in_eval(query: str, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{query}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _cap_by_query(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    """Keep whole queries, in a seeded random order, until `limit` rows."""
    if not limit or len(rows) <= limit:
        return rows
    by_query: dict[str, list[dict]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    order = sorted(by_query)
    random.Random(seed).shuffle(order)
    kept: list[dict] = []
    for query in order:
        if len(kept) >= limit:
            break
        kept += by_query[query]
    return kept


def class_mix(rows: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["label"] for r in rows).items()))


def split(cfg: DataConfig, scheme: LabelScheme, seed: int, resolve) -> tuple[list[dict], list[dict], dict]:
    train_path = resolve(cfg.train)
    train = normalise(_records(train_path, cfg.format), cfg, scheme, train_path)
    if not train:
        raise ConfigError(f"data.train: {train_path} holds no judgments")
    if cfg.eval:
        eval_path = resolve(cfg.eval)
        evaluation = normalise(_records(eval_path, cfg.format), cfg, scheme, eval_path)
        if not evaluation:
            raise ConfigError(f"data.eval: {eval_path} holds no judgments")
    else:
        evaluation = [r for r in train if _in_eval(r["query"], cfg.eval_fraction, seed)]
        train = [r for r in train if not _in_eval(r["query"], cfg.eval_fraction, seed)]
    eval_queries = {r["query"] for r in evaluation}
    overlap = {r["query"] for r in train} & eval_queries
    train = [r for r in train if r["query"] not in eval_queries]  # a query lives on one side only
    train, evaluation = _cap_by_query(train, cfg.max_train, seed), _cap_by_query(evaluation, cfg.max_eval, seed + 1)
    if not train or not evaluation:
        raise ConfigError("after splitting by query, train or eval is empty: add data or change eval_fraction")
    metrics = {
        "train_rows": len(train), "eval_rows": len(evaluation),
        "train_queries": len({r["query"] for r in train}), "eval_queries": len({r["query"] for r in evaluation}),
        "overlapping_queries_removed_from_train": len(overlap),
        "train_class_mix": class_mix(train), "eval_class_mix": class_mix(evaluation),
    }
    return train, evaluation, metrics


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
