"""The worker's /metrics (Prometheus text, serving/metrics.py's Histogram) and /healthz.

A ThreadingHTTPServer on a daemon thread: the worker has no web framework to lean on and needs
two GET routes, so the standard library's server is enough (fastapi is the HTTP service's extra).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mmdetect.serving.metrics import (
    BATCH_BUCKETS,
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Histogram,
    family_lines,
)


class WorkerMetrics:
    """Counters, gauges and histograms of one worker, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[tuple, int] = defaultdict(int)  # (outcome,)
        self.decisions: dict[tuple, int] = defaultdict(int)  # (tier, bundle)
        self.dead: dict[tuple, int] = defaultdict(int)  # (reason,)
        self.latency = Histogram(LATENCY_BUCKETS)  # published -> committed
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.lag: dict[str, int | None] = {"lag": None, "pending": None}
        self.bundle: str | None = None
        self.switches = 0
        self.reconnects = 0
        self.heartbeat = time.monotonic()

    def count(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.events[(("outcome", outcome),)] += n

    def decided(self, tier: str, bundle: str, latency_s: float | None) -> None:
        with self.lock:
            self.decisions[(("tier", tier), ("bundle", bundle))] += 1
            if latency_s is not None:
                self.latency.observe(max(latency_s, 0.0))

    def dead_letter(self, reason: str) -> None:
        with self.lock:
            self.dead[(("reason", reason),)] += 1

    def beat(self, batch: int = 0) -> None:
        with self.lock:
            self.heartbeat = time.monotonic()
            if batch:
                self.batch_sizes.observe(batch)

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, series: dict[tuple, float]) -> None:
            out.extend(family_lines(name, kind, help_, series))

        with self.lock:
            family("mmdetect_worker_events_total", "counter",
                   "events by outcome (decided, duplicate, dead, retry)", self.events)  # fmt: skip
            family("mmdetect_worker_decisions_total", "counter", "decisions by tier and bundle",
                   self.decisions)  # fmt: skip
            family("mmdetect_worker_dead_letters_total", "counter", "dead letters by reason",
                   self.dead)  # fmt: skip
            out += ["# HELP mmdetect_worker_latency_seconds published to decision committed",
                    "# TYPE mmdetect_worker_latency_seconds histogram",
                    *self.latency.lines("mmdetect_worker_latency_seconds")]  # fmt: skip
            out += ["# HELP mmdetect_worker_batch_size events per micro-batch",
                    "# TYPE mmdetect_worker_batch_size histogram",
                    *self.batch_sizes.lines("mmdetect_worker_batch_size")]  # fmt: skip
            lag = {} if self.lag.get("lag") is None else {(): self.lag["lag"]}
            family("mmdetect_worker_consumer_lag", "gauge",
                   "messages in the stream not yet delivered to the group", lag)  # fmt: skip
            pending = {} if self.lag.get("pending") is None else {(): self.lag["pending"]}
            family("mmdetect_worker_pending", "gauge", "delivered to the group, not acked", pending)
            serving = {(("bundle", self.bundle),): 1} if self.bundle else {}
            family("mmdetect_bundle_serving", "gauge", "the bundle now scoring (value 1)", serving)
            family("mmdetect_bundle_switches_total", "counter", "blue-green switches done",
                   {(): self.switches})  # fmt: skip
            family("mmdetect_worker_broker_reconnects_total", "counter",
                   "broker calls retried after a connection problem", {(): self.reconnects})  # fmt: skip
        return "\n".join(out) + "\n"


def serve_metrics(metrics: WorkerMetrics, host: str, port: int,
                  healthy: Callable[[], tuple[bool, dict]]) -> ThreadingHTTPServer:  # fmt: skip
    """Start GET /metrics and /healthz on host:port (port 0: a free one; see server_address)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            if self.path == "/metrics":
                code, ctype, body = 200, CONTENT_TYPE, metrics.render().encode()
            elif self.path == "/healthz":
                ok, doc = healthy()
                code, ctype, body = (
                    (200 if ok else 503),
                    "application/json",
                    json.dumps(doc).encode(),
                )
            else:
                code, ctype, body = 404, "text/plain", b"not found\n"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # no access log on stderr
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="mmdetect-metrics", daemon=True).start()
    return server
