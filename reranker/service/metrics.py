"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lref_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("lref_request_seconds", "Request latency", ["endpoint"], registry=r)
        self.documents = Counter("lref_documents_total", "Documents judged", registry=r)
        self.abandoned = Counter("lref_abandoned_requests_total", "Requests dropped from the queue because the client hung up", registry=r)
        self.tiers = Counter("lref_tier_total", "Judged documents per tier", ["tier"], registry=r)
        self.batch_pairs = Histogram(
            "lref_batch_pairs", "Query-product pairs per scoring call", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )
        self.batch_requests = Histogram(
            "lref_batch_requests", "Requests merged into one scoring call", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.batch_seconds = Histogram("lref_batch_seconds", "Model time per scoring call", registry=r)
        self.model_ready = Gauge("lref_model_ready", "1 once the model is loaded", registry=r)


class MetricsMiddleware:
    """Request counts and latency per endpoint, as plain ASGI: Starlette's BaseHTTPMiddleware
    would hide the client's disconnect from the routes (and costs a little per request)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            endpoint = scope["path"] if scope["path"].startswith("/v1/") else "other"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
