"""The demo store: one page and a JSON endpoint that runs the same query twice against OpenSearch,
once as plain BM25 and once through the `lref-rerank` search pipeline, and times both.

Dropped hits come from the response's `ext.lref.dropped` (id, score, tier, level, label, written by
our tier filter in the engine). Their label probabilities are not in that report, so the store asks
the reranker's `/v1/classify` for them: the same titles the pipeline sent, so the same judgments."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from reranker.service.errors import install_error_handlers  # fastapi only: no torch

from engine.access import NO_ACCESS, Access

PIPELINE = "lref-rerank"
SOURCE_FIELDS = ["title", "brand", "category", "price", "color", "size"]
MATCH_FIELDS = ["title^3", "brand", "category"]
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (default, zero-shot)"


def model_name(model: str | None) -> str | None:
    """The judge as shown to people ("default" is reranker.models.loading.DEFAULT_MODEL, not imported: it pulls in torch)."""
    return DEFAULT_MODEL_NAME if model == "default" else model
STATIC = {"store.css": "text/css", "store.js": "text/javascript"}


@dataclass
class StoreConfig:
    opensearch_url: str
    reranker_url: str
    index: str
    catalog_name: str = ""
    api_key: str | None = None  # the reranker's, for /v1/classify
    default_size: int = 20
    timeout_s: float = 120.0
    opensearch_access: Access = NO_ACCESS  # a secured cluster's user and CA (never sent to the reranker)


class UpstreamError(RuntimeError):
    pass


def search_body(query: str, size: int, rerank: bool) -> dict:
    body: dict[str, Any] = {
        "query": {"multi_match": {"query": query, "fields": MATCH_FIELDS}},
        "size": size,
        "_source": SOURCE_FIELDS,
    }
    if rerank:
        body["ext"] = {"rerank": {"query_context": {"query_text": query}}}
    return body


def _product(hit: dict) -> dict:
    source = hit.get("_source", {})
    return {"id": hit["_id"], **{k: source[k] for k in SOURCE_FIELDS if k in source}}


class Store:
    def __init__(self, config: StoreConfig, reranker: httpx.AsyncClient, opensearch: httpx.AsyncClient) -> None:
        self.config, self.reranker, self.opensearch = config, reranker, opensearch

    async def _post(self, url: str, body: dict, what: str, headers: dict | None = None) -> tuple[dict, float]:
        client = self.opensearch if url.startswith(self.config.opensearch_url) else self.reranker
        started = time.perf_counter()
        try:
            response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{what}: {type(exc).__name__}: {exc}") from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise UpstreamError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json(), elapsed_ms

    async def _search(self, query: str, size: int, rerank: bool) -> tuple[dict, float]:
        url = f"{self.config.opensearch_url}/{self.config.index}/_search"
        if rerank:
            url += f"?search_pipeline={PIPELINE}"
        return await self._post(url, search_body(query, size, rerank), "OpenSearch" + (f" ({PIPELINE})" if rerank else ""))

    async def _probabilities(self, query: str, titles: list[str]) -> tuple[list[dict] | None, float, str | None]:
        if not titles:
            return [], 0.0, None
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        try:
            judged, ms = await self._post(f"{self.config.reranker_url}/v1/classify",
                                          {"query": query, "documents": titles}, "reranker /v1/classify", headers)
        except UpstreamError as exc:
            return None, 0.0, str(exc)
        return [r["probabilities"] for r in judged["results"]], ms, None

    async def search(self, query: str, size: int) -> dict:
        plain, plain_ms = await self._search(query, size, rerank=False)
        tiered, tiered_ms = await self._search(query, size, rerank=True)
        bm25 = [dict(_product(h), rank=i, score=h["_score"]) for i, h in enumerate(plain["hits"]["hits"], 1)]
        by_id = {p["id"]: p for p in bm25}
        report = tiered.get("ext", {}).get("lref", {})
        kept = []
        for i, hit in enumerate(tiered["hits"]["hits"], 1):
            fields = hit.get("fields", {})
            kept.append(dict(
                _product(hit), rank=i, score=hit["_score"], bm25_rank=by_id.get(hit["_id"], {}).get("rank"),
                tier=(fields.get("lref_tier") or [None])[0], level=(fields.get("lref_level") or [None])[0],
                label=(fields.get("lref_label") or [None])[0],
            ))
        report_dropped = report.get("dropped", [])
        # Same query, same size: the pipeline's hits are BM25's. Fetch any that are not (the index changed between).
        missing = [d["_id"] for d in report_dropped if d["_id"] not in by_id]
        if missing:
            found, _ = await self._post(f"{self.config.opensearch_url}/{self.config.index}/_mget",
                                        {"ids": missing}, "OpenSearch _mget")
            by_id.update({doc["_id"]: _product(doc) for doc in found["docs"] if doc.get("found")})
        dropped = []
        for d in report_dropped:
            product = by_id.get(d["_id"], {"id": d["_id"], "title": ""})
            dropped.append(dict(
                {k: v for k, v in product.items() if k not in ("rank", "score")}, bm25_rank=product.get("rank"),
                score=d.get("_score"), tier=d.get("tier"), level=d.get("level"), label=d.get("label"),
            ))
        probabilities, probabilities_ms, probabilities_error = await self._probabilities(
            query, [d["title"] for d in dropped])
        for item, probs in zip(dropped, probabilities or []):
            item["probabilities"] = probs
        return {
            "query": query,
            "size": size,
            "bm25": {"latency_ms": round(plain_ms, 1), "took_ms": plain.get("took"),
                     "total": plain["hits"]["total"]["value"], "hits": bm25},
            "llm": {
                "latency_ms": round(tiered_ms, 1), "took_ms": tiered.get("took"),
                "reranked": bool(report.get("reranked")), "reason": report.get("reason"),
                "min_tier": report.get("min_tier"), "tiers": report.get("tiers", {}), "hits": kept, "dropped": dropped,
                "probabilities_ms": round(probabilities_ms, 1), "probabilities_error": probabilities_error,
            },
        }

    async def info(self) -> dict:
        out: dict[str, Any] = {"index": self.config.index, "catalog": self.config.catalog_name,
                               "default_size": self.config.default_size, "pipeline": PIPELINE}
        try:
            count = await self.opensearch.get(f"{self.config.opensearch_url}/{self.config.index}/_count")
            out["products"] = count.json().get("count") if count.status_code == 200 else None
            root = await self.opensearch.get(self.config.opensearch_url)
            out["opensearch"] = root.json().get("version", {}).get("number") if root.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            out["products"] = out["opensearch"] = None
        try:
            health = (await self.reranker.get(f"{self.config.reranker_url}/health")).json()
            out["model"] = model_name(health.get("judge") or health.get("model"))  # a trained judge names its dir
        except (httpx.HTTPError, ValueError):
            out["model"] = None
        return out


def _static(name: str) -> str:
    return resources.files("apps.store").joinpath("static", name).read_text(encoding="utf-8")


def create_store_app(config: StoreConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with (httpx.AsyncClient(timeout=config.timeout_s) as reranker,
                    httpx.AsyncClient(timeout=config.timeout_s, **config.opensearch_access.httpx_kwargs()) as opensearch):
            app.state.store = Store(config, reranker, opensearch)
            yield

    app = FastAPI(title="lref demo store", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)  # the reranker's error shape, {"error": ...}, for the store's own errors too

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(_static(name), media_type=STATIC[name])

    @app.get("/api/info")
    async def info() -> dict:
        return await app.state.store.info()

    @app.get("/api/search")
    async def search(q: str = Query("", max_length=500), size: int = Query(0, ge=0, le=100)):
        if not q.strip():
            return JSONResponse({"error": "empty query"}, status_code=400)
        try:
            return await app.state.store.search(q.strip(), size or config.default_size)
        except UpstreamError as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ready"}

    return app
