"""The reranker service: Cohere-compatible /v1/rerank, /v1/classify, /health, /metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..backends import JudgeBackend, Product, ScoreJob, build_backend
from ..core import TITLE_FIELDS, Judgment, blank, judge_all
from .batcher import ClientGone, MicroBatcher
from .config import ServiceConfig
from .errors import ApiError, BodyLimitMiddleware, install_error_handlers
from .metrics import Metrics, MetricsMiddleware
from .schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ClassifyResult,
    Document,
    ErrorResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
)

log = logging.getLogger("lref.service")
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 503)}


class _State:
    backend: JudgeBackend | None = None
    batcher: MicroBatcher | None = None
    load_error: str | None = None


def create_app(
    config: ServiceConfig,
    backend_factory: Callable[[ServiceConfig], JudgeBackend] = build_backend,
    on_load_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    metrics = Metrics()
    state = _State()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()

        async def load() -> None:
            try:
                backend = await loop.run_in_executor(None, backend_factory, config)
            except Exception as exc:  # reported by /health and by `lref serve`
                state.load_error = f"{type(exc).__name__}: {exc}"
                log.error("model failed to load: %s", state.load_error)
                if on_load_failure:
                    on_load_failure(state.load_error)
                return
            state.backend = backend
            state.batcher = MicroBatcher(backend, metrics, config.max_batch_pairs, config.max_wait_ms,
                                         config.company_wait_ms)
            state.batcher.start()
            metrics.model_ready.set(1)
            log.info("model ready: %s (%s backend, %s)", config.model, backend.name, backend.dtype)

        loader = loop.create_task(load())
        yield
        loader.cancel()
        if state.batcher:
            await state.batcher.stop()

    app = FastAPI(
        title="lref reranker",
        version=__version__,
        description="LLM relevance judge for e-commerce search: label-token scoring, CumPT tiers, Cohere-compatible rerank.",
        lifespan=lifespan,
    )
    app.state.lref = state
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)

    def require_key(request: Request) -> None:
        if not config.api_key:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send 'Authorization: Bearer <key>' or 'X-API-Key')")

    def ready_backend() -> tuple[JudgeBackend, MicroBatcher]:
        if state.backend is None or state.batcher is None:
            raise ApiError(503, state.load_error and f"model failed to load: {state.load_error}" or "model is loading")
        return state.backend, state.batcher

    def products(documents: list[Document], rank_fields: list[str] | None, backend: JudgeBackend) -> list[Product]:
        if not documents:
            raise ApiError(422, "documents must not be empty")
        if len(documents) > config.max_documents:
            raise ApiError(422, f"too many documents: {len(documents)} > {config.max_documents}")
        known = set(TITLE_FIELDS) | set(backend.prompt.product_fields)
        wanted = set(rank_fields) if rank_fields else known
        if rank_fields and not wanted <= known:
            raise ApiError(422, f"rank_fields {sorted(wanted - known)} are not product fields ({sorted(known)})")
        if rank_fields and not wanted & set(TITLE_FIELDS):  # else every document would fail "needs a title"
            raise ApiError(422, f"rank_fields must include {' or '.join(map(repr, TITLE_FIELDS))}: the judge reads a product's title")
        out: list[Product] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, str):
                out.append(doc[: config.max_doc_chars])
                continue
            unknown = set(doc) - known
            if unknown:
                raise ApiError(422, f"documents[{i}]: unknown fields {sorted(unknown)} (known: {sorted(known)})")
            kept = {k: v[: config.max_doc_chars] for k, v in doc.items() if k in wanted}
            if not any(k in kept for k in TITLE_FIELDS):
                raise ApiError(422, f"documents[{i}]: needs a 'title' or 'text' field")
            out.append(kept)
        return out

    def checked_query(query: str) -> str:
        if blank(query):
            raise ApiError(422, "query must not be empty (or only spaces and invisible characters)")
        return query[: config.max_query_chars]  # over-long text is cut, as documents are, never refused

    async def judged(query: str, docs: list[Product], batcher: MicroBatcher, backend: JudgeBackend, policy,
                     request: Request) -> list[Judgment]:
        try:
            probs = await batcher.submit(ScoreJob(query, docs), gone=request.is_disconnected)
        except ClientGone:
            raise ApiError(499, "client disconnected before its documents were scored") from None
        judgments = judge_all(backend.prompt.scheme, policy, probs.tolist())
        metrics.documents.inc(len(judgments))
        for j in judgments:
            metrics.tiers.labels(j.tier).inc()
        return judgments

    @app.post("/v1/rerank", response_model=RerankResponse, responses=_ERRORS, dependencies=[Depends(require_key)])
    async def rerank(req: RerankRequest, request: Request) -> RerankResponse:
        """Cohere-compatible rerank. Every document gets a score when top_n is absent or equals the
        document count; sorting by relevance_score gives tier order (Good > Mid > Bad)."""
        backend, batcher = ready_backend()
        query = checked_query(req.query)
        docs = products(req.documents, req.rank_fields, backend)
        judgments = await judged(query, docs, batcher, backend, config.policy, request)
        order = sorted(range(len(judgments)), key=lambda i: (-judgments[i].score, i))
        results = [
            RerankResult(
                index=i,
                relevance_score=judgments[i].score,
                tier=judgments[i].tier,
                level=judgments[i].level.grade,
                label=judgments[i].level.name,
                keep=judgments[i].keep,
                document=({"text": docs[i]} if isinstance(docs[i], str) else dict(docs[i])) if req.return_documents else None,
            )
            for i in order[: req.top_n or len(order)]
        ]
        return RerankResponse(
            id=str(uuid.uuid4()),
            results=results,
            meta={"api_version": {"version": "1"}, "billed_units": {"search_units": 1}},
        )

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=_ERRORS, dependencies=[Depends(require_key)])
    async def classify(req: ClassifyRequest, request: Request) -> ClassifyResponse:
        """Per document: label probabilities, CumPT level, tier, keep/drop, expected relevance,
        and (only when asked) a short reasoning generated after the label."""
        backend, batcher = ready_backend()
        query = checked_query(req.query)
        docs = products(req.documents, req.rank_fields, backend)
        policy = replace(
            config.policy,
            beta=req.beta if req.beta is not None else config.policy.beta,
            min_tier=req.min_tier or config.policy.min_tier,
        )
        if req.reasoning and len(docs) > config.max_reasoning_documents:
            raise ApiError(422, f"reasoning is generated for at most {config.max_reasoning_documents} documents per "
                                f"request, got {len(docs)}")
        judgments = await judged(query, docs, batcher, backend, policy, request)
        reasons: list[str | None] = [None] * len(docs)
        if req.reasoning:
            for i, (doc, j) in enumerate(zip(docs, judgments)):
                if await request.is_disconnected():
                    raise ApiError(499, "client disconnected before its reasoning was generated")
                reasons[i] = await batcher.run_in_model_thread(
                    backend.reasoning, query, doc, j.level, req.max_reasoning_tokens
                )
        return ClassifyResponse(
            scheme=backend.prompt.scheme.name,
            beta=policy.beta,
            min_tier=policy.min_tier,
            results=[
                ClassifyResult(
                    index=i,
                    probabilities=j.probs,
                    level=j.level.grade,
                    label=j.level.name,
                    tier=j.tier,
                    keep=j.keep,
                    expected_relevance=j.expected,
                    score=j.score,
                    reasoning=reasons[i],
                )
                for i, j in enumerate(judgments)
            ],
        )

    @app.get("/health", responses={503: {"description": "the model is loading or failed to load"}})
    async def health():
        """200 once the model is loaded; 503 while it loads or if loading failed. Ready, it also reports
        the tier policy it judges with, which `lref opensearch install` gives the engine's filter."""
        if state.backend is not None:
            scheme, policy = state.backend.prompt.scheme, config.policy
            return {"status": "ready", "model": config.model, "judge": config.judge_dir, "backend": state.backend.name,
                    "dtype": state.backend.dtype,
                    "policy": {"scheme": scheme.name, "levels": [lv.name for lv in scheme.levels], "beta": policy.beta,
                               "min_tier": policy.min_tier, "tiers": {lv.name: policy.tier_of(lv) for lv in scheme.levels},
                               "order_within_tier": policy.order_within_tier}}
        status = "failed" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}})
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
