"""Run every query against the real index: once without a pipeline (the baseline) and once through
each named search pipeline, keeping what the lref tier filter reports (tiers, levels, dropped hits)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionTimeout, TransportError
from tqdm import tqdm

from engine.client import reason
from reranker.core import json_value

from . import AuditError

BASELINE = "baseline"
PLACEHOLDER = "{{query}}"


@dataclass
class Hit:
    id: str
    tier: str | None = None  # what the pipeline's judge said, when the lref tier filter ran
    level: int | None = None
    label: str | None = None


@dataclass
class Result:
    hits: list[Hit]  # returned, in order
    dropped: list[Hit] = field(default_factory=list)  # ext.lref.dropped
    lref: dict | None = None  # ext.lref without `dropped`; None when the pipeline has no lref_tier

    @property
    def reranked(self) -> bool:
        return bool(self.lref and self.lref.get("reranked"))


Run = dict[str, Result]  # query id -> result


def load_template(path: Path | None, field_name: str) -> dict:
    """The search body; every string "{{query}}" in it becomes the query text."""
    if path is None:
        return {"query": {"match": {field_name: PLACEHOLDER}}}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the search template {path}: {exc}") from exc
    template = json_value(text, f"the search template {path}", AuditError)
    if not isinstance(template, dict) or PLACEHOLDER not in json.dumps(template):
        raise AuditError(f"the search template {path} must be a JSON object with a \"{PLACEHOLDER}\" string")
    return template


def _fill(node, text: str):
    if isinstance(node, dict):
        return {k: _fill(v, text) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, text) for v in node]
    return node.replace(PLACEHOLDER, text) if isinstance(node, str) else node


def check_target(client: OpenSearch, index: str, pipelines: list[str]) -> None:
    try:
        if not client.indices.exists(index=index):
            raise AuditError(f"index {index!r} does not exist (load it with `lref opensearch load`)")
        for name in pipelines:
            try:
                client.transport.perform_request("GET", f"/_search/pipeline/{name}")
            except TransportError as exc:
                if exc.status_code == 404:
                    raise AuditError(f"search pipeline {name!r} does not exist (`lref opensearch install` makes lref-rerank)") from exc
                raise
    except TransportError as exc:
        raise AuditError(f"checking index and pipelines: {reason(exc)}") from exc


def _hit(raw: dict) -> Hit:
    fields = raw.get("fields") or {}
    first = lambda name: (fields.get(name) or [None])[0]  # noqa: E731
    return Hit(str(raw["_id"]), first("lref_tier"), first("lref_level"), first("lref_label"))


def search_one(client: OpenSearch, index: str, body: dict, pipeline: str | None,
               timeout: float) -> tuple[Result, dict[str, str]]:
    """One search; returns the result and the titles (first source field) of its hits."""
    # "_none" also switches off an index's default pipeline, so the baseline is plain retrieval.
    params = {"search_pipeline": pipeline or "_none", "request_timeout": timeout}
    try:
        response = client.transport.perform_request("POST", f"/{index}/_search", params=params, body=body)
    except ConnectionTimeout as exc:
        raise AuditError(f"search through {pipeline or 'no pipeline'} took over {timeout:g}s (raise --timeout above "
                         "the connector's read timeout)") from exc
    except TransportError as exc:
        raise AuditError(f"search through {pipeline or 'no pipeline'} failed: {reason(exc)}") from exc
    raws = response["hits"]["hits"]
    fields = body.get("_source") or []
    titles = {str(h["_id"]): str(h["_source"].get(fields[0], "")) for h in raws if fields and h.get("_source")}
    lref = (response.get("ext") or {}).get("lref")
    if lref is None:
        return Result([_hit(h) for h in raws]), titles
    dropped = [Hit(str(d["_id"]), d.get("tier"), d.get("level"), d.get("label")) for d in lref.get("dropped", [])]
    return Result([_hit(h) for h in raws], dropped, {k: v for k, v in lref.items() if k != "dropped"}), titles


def run_all(client: OpenSearch, index: str, queries: dict[str, str], pipelines: list[str], template: dict,
            size: int, source_field: str, timeout: float) -> tuple[dict[str, Run], dict[str, str]]:
    """{run name: {query id: Result}} for the baseline and each pipeline, and product titles."""
    runs: dict[str, Run] = {}
    titles: dict[str, str] = {}
    for name in [BASELINE, *pipelines]:
        run: Run = {}
        for qid, text in tqdm(queries.items(), desc=f"{name:>16}", unit="query"):
            body = dict(_fill(template, text), size=size, _source=[source_field],
                        ext={"rerank": {"query_context": {"query_text": text}}})
            run[qid], found = search_one(client, index, body, None if name == BASELINE else name, timeout)
            titles.update(found)
        runs[name] = run
    return runs, titles


def fetch_titles(client: OpenSearch, index: str, ids: list[str], source_field: str) -> dict[str, str]:
    """Titles of hits seen only as dropped (ext.lref lists ids, not sources)."""
    if not ids:
        return {}
    try:
        found = client.mget(index=index, body={"ids": ids}, _source_includes=[source_field])
    except TransportError as exc:
        raise AuditError(f"fetching product titles: {reason(exc)}") from exc
    return {d["_id"]: str(d["_source"].get(source_field, "")) for d in found["docs"] if d.get("found")}
