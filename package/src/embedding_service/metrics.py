"""Prometheus metrics for the FastAPI target (GET /metrics).

A private registry, so importing the module twice in tests never double-registers and
only the service's own series are exported.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedding_requests", "HTTP requests by operation and status",
            ["operation", "status"], registry=self.registry,
        )
        self.errors = Counter(
            "embedding_errors", "Error responses by operation and error code",
            ["operation", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "embedding_request_duration_seconds", "Request latency by operation",
            ["operation"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "embedding_model_batch_size", "Texts per model call (after dynamic batching)",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.tokens = Counter(
            "embedding_tokens", "Tokens embedded (after truncation)", registry=self.registry
        )
        self.texts = Counter("embedding_texts", "Texts embedded", registry=self.registry)
        self.queue_items = Gauge(
            "embedding_queue_items", "Texts waiting for the model", registry=self.registry
        )

    def observe(self, operation: str, status: int, seconds: float, code: str | None, items: int, tokens: int) -> None:
        self.requests.labels(operation, str(status)).inc()
        self.latency.labels(operation).observe(seconds)
        if status >= 400:
            self.errors.labels(operation, code or "unknown").inc()
        if items:
            self.texts.inc(items)
            self.tokens.inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
