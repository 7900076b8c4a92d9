"""`--judge`: label the hits no human judged with the LLM, through a running reranker's
/v1/classify. These labels are kept apart from the human judgments and marked `source: llm`."""

from __future__ import annotations

import httpx
from tqdm import tqdm

from . import AuditError
from .levels import Levels
from .search import Run


def unjudged(runs: dict[str, Run], qrels: dict[str, dict[str, int]]) -> dict[str, list[str]]:
    """query id -> product ids some run returned or dropped that have no human judgment, in first-seen order."""
    out: dict[str, list[str]] = {}
    for run in runs.values():
        for qid, result in run.items():
            seen = out.setdefault(qid, [])
            for hit in [*result.hits, *result.dropped]:
                if hit.id not in qrels.get(qid, {}) and hit.id not in seen:
                    seen.append(hit.id)
    return {qid: ids for qid, ids in out.items() if ids}


def judge(url: str, queries: dict[str, str], todo: dict[str, list[str]], titles: dict[str, str], levels: Levels,
          api_key: str | None = None, timeout_s: float = 300) -> list[dict]:
    """[{query_id, query, product_id, title, level, label, source: "llm"}] from the reranker's judge."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    rows: list[dict] = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers) as client:
        try:
            client.get("/health").raise_for_status()
        except httpx.HTTPError as exc:
            raise AuditError(f"--judge: the reranker at {url} is not ready ({exc})") from exc
        for qid, ids in tqdm(todo.items(), desc="LLM judge (unjudged hits)", unit="query"):
            ids = [i for i in ids if titles.get(i)]
            if not ids:
                continue
            try:
                response = client.post("/v1/classify", json={"query": queries[qid], "documents": [titles[i] for i in ids]})
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise AuditError(f"--judge: /v1/classify failed for query {queries[qid]!r}: {exc}") from exc
            for pid, result in zip(ids, response.json()["results"]):
                level = levels.by_name(result["label"])
                if level is None:
                    raise AuditError(f"--judge: the reranker answers label {result['label']!r}, not a "
                                     f"{levels.scheme.name} label")
                rows.append({"query_id": qid, "query": queries[qid], "product_id": pid, "title": titles[pid],
                             "level": level, "label": result["label"], "source": "llm"})
    return rows


def as_qrels(rows: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(row["query_id"], {})[row["product_id"]] = row["level"]
    return out
