"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lref_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("lref_request_seconds", "Request latency", ["endpoint"], registry=r)
        self.documents = Counter("lref_documents_total", "Documents judged", registry=r)
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
