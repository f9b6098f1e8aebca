"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

prometheus_client is not a dependency of the project; the few series the service exports are
counters, gauges and histograms kept under one lock (updated from the event loop and from the
scoring threads), rendered on each GET /metrics.
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, esc, strict=True)) + "}"


def family_lines(name: str, kind: str, help_: str, series: dict[tuple, float]) -> list[str]:
    """One metric family in the text exposition format: HELP, TYPE, one line per label set."""
    return [f"# HELP {name} {help_}", f"# TYPE {name} {kind}",
            *(f"{name}{_labels(k)} {v}" for k, v in sorted(series.items()))]  # fmt: skip


class Histogram:
    """Cumulative buckets, sum and count of one series."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [
            f'{name}_bucket{{le="{b:g}"}} {c}'
            for b, c in zip(self.buckets, self.counts, strict=True)
        ]
        return [*out, f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                f"{name}_count {self.count}"]  # fmt: skip


class Metrics:
    """The service's series; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple, int] = defaultdict(int)  # (path, code) -> count
        self.listings: dict[tuple, int] = defaultdict(int)  # (outcome,) -> count
        self.decisions: dict[tuple, int] = defaultdict(int)  # (tier, bundle) -> count
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.queue_depth = 0
        self.bundle: str | None = None
        self.switches = 0
        self.refusals = 0

    def request(self, path: str, code: int, seconds: float | None) -> None:
        with self.lock:
            self.requests[(("path", path), ("code", str(code)))] += 1
            if seconds is not None:
                self.latency.observe(seconds)

    def listing(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            self.listings[(("outcome", outcome),)] += n

    def batch(self, size: int, bundle: str, tiers: list[str]) -> None:
        with self.lock:
            self.batch_sizes.observe(size)
            for tier in tiers:
                self.decisions[(("tier", tier), ("bundle", bundle))] += 1

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth  # a plain int store: atomic under the GIL

    def serving(self, bundle: str | None, switched: bool = False, refused: bool = False) -> None:
        with self.lock:
            self.bundle = bundle if bundle is not None else self.bundle
            self.switches += switched
            self.refusals += refused

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, series: dict[tuple, float]) -> None:
            out.extend(family_lines(name, kind, help_, series))

        with self.lock:
            family("mmdetect_http_requests_total", "counter", "HTTP requests by path and status",
                   self.requests)  # fmt: skip
            out += ["# HELP mmdetect_request_seconds POST /v1/score latency (received to answered)",
                    "# TYPE mmdetect_request_seconds histogram",
                    *self.latency.lines("mmdetect_request_seconds")]  # fmt: skip
            out += ["# HELP mmdetect_batch_size listings per model batch",
                    "# TYPE mmdetect_batch_size histogram",
                    *self.batch_sizes.lines("mmdetect_batch_size")]  # fmt: skip
            family("mmdetect_listings_total", "counter",
                   "listings by outcome (scored, invalid, error, timeout, rejected)", self.listings)  # fmt: skip
            family("mmdetect_decisions_total", "counter", "listing decisions by tier and bundle",
                   self.decisions)  # fmt: skip
            family("mmdetect_queue_depth", "gauge", "listings waiting for a batch",
                   {(): self.queue_depth})  # fmt: skip
            serving = {(("bundle", self.bundle),): 1} if self.bundle else {}
            family("mmdetect_bundle_serving", "gauge", "the bundle now serving (value 1)", serving)
            family("mmdetect_bundle_switches_total", "counter", "blue-green switches done",
                   {(): self.switches})  # fmt: skip
            family("mmdetect_bundle_refusals_total", "counter",
                   "bundles refused (failed verification or warm-up)", {(): self.refusals})  # fmt: skip
        return "\n".join(out) + "\n"
