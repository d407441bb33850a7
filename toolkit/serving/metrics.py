"""Prometheus metrics of tk serve (prometheus-client): requests, errors, batch sizes, latency.

With --workers N each worker counts in files under PROMETHEUS_MULTIPROC_DIR (set by tk serve), and /metrics
adds up every worker's, whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
PATHS = {"/predict", "/health", "/ready", "/metadata", "/metrics", "/openapi.json"}  # others count as "other"


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tk_serve_requests", "HTTP requests answered, by path and status code",
                                ["path", "status"], registry=self.registry)
        self.errors = Counter("tk_serve_errors", "Requests refused or failed, by reason", ["reason"],
                              registry=self.registry)
        self.latency = Histogram("tk_serve_request_seconds", "Time from request to response, by path", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_texts = Histogram("tk_serve_batch_texts", "Texts per forward pass of the model",
                                     buckets=BATCH_BUCKETS, registry=self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        path = path if path in PATHS else "other"  # a scanner's random paths must not grow the series
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
