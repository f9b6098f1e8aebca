"""The worker loop: read a micro-batch, score it with the slot's bundle, commit outputs + acks.

Two threads: the fetcher reads up to `max_batch` messages (claiming first, every claim_every_s,
those a dead consumer left idle for claim_idle_ms), waiting at most `max_wait_ms` after the
first one, validates them and stages their photos; the scorer scores the batch with
reload.score_with (the HTTP service's: one bundle per batch, one by one if the batch fails) and
commits. At most one batch waits between them (queue of 1), so the worker holds at most two
batches: the backpressure is the read count, the rest stays in the broker.

Per message, exactly one of: decided (committed with its outputs), duplicate (its listing
version was committed before: acked, nothing written), dead (bad event, or delivered
max_deliveries times without a result: a dead letter, acked), retry (scoring failed: left
pending, claimed again after claim_idle_ms). A broker that is unreachable is retried with
backoff; a batch whose commit fails is kept and committed again (idempotent), never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmdetect.serving.inputs import Limits, remove_request_dir
from mmdetect.serving.reload import Slot, score_with
from mmdetect.serving.worker.actions import dead_commit, decision_commit
from mmdetect.serving.worker.broker import Broker, BrokerUnavailable, Commit, Message
from mmdetect.serving.worker.events import Event, EventProblem, parse_event
from mmdetect.serving.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    """The loop's knobs (flags of `mmdetect worker`)."""

    max_batch: int = 64
    max_wait_ms: float = 20.0
    claim_idle_ms: int = 30_000
    claim_every_s: float = 1.0
    max_deliveries: int = 5
    images_root: Path | None = None
    limits: Limits = field(default_factory=Limits)
    score_photo_problems: bool = False
    explain_reviews: bool = False
    backoff_max_s: float = 5.0
    drain_timeout_s: float = 30.0  # after a stop, how long a failing commit is retried


class Backoff:
    """Exponential waits with jitter, 0.1 s up to max_s; reset after a success."""

    def __init__(self, max_s: float):
        self.max_s, self.tries = max_s, 0

    def wait(self, stop: threading.Event) -> None:
        self.tries += 1
        delay = min(self.max_s, 0.1 * 2 ** (self.tries - 1))
        stop.wait(delay * random.uniform(0.5, 1.0))

    def reset(self) -> None:
        self.tries = 0


class Worker:
    """One consumer: `run(stop)` until stop is set, then finishes what it read and returns."""

    def __init__(self, broker: Broker, slot: Slot, staging: Path, cfg: WorkerConfig,
                 metrics: WorkerMetrics | None = None,
                 score: Callable[[Sequence], list] | None = None):  # fmt: skip
        self.broker, self.slot, self.staging, self.cfg = broker, slot, staging, cfg
        self.metrics = metrics or WorkerMetrics()
        self.score = score or score_with(slot, staging)
        self.fatal: BaseException | None = None
        self._batches: queue.Queue = queue.Queue(maxsize=1)
        self._next_claim = 0.0
        self._held: set[str] = set()  # ids read and not yet committed (or left for retry)
        self._held_lock = threading.Lock()

    # -- the fetcher thread --------------------------------------------------------------------

    def _read(self, stop: threading.Event) -> list[Message]:
        cfg, messages = self.cfg, []
        if time.monotonic() >= self._next_claim:
            claimed = self.broker.claim(cfg.claim_idle_ms, cfg.max_batch)
            with self._held_lock:  # our own, idle while they wait for the scorer: held already
                messages = [m for m in claimed if m.id not in self._held]
            # a full claim: there may be more of the dead consumer's; look again soon
            full = len(claimed) >= cfg.max_batch
            self._next_claim = time.monotonic() + (0 if full else cfg.claim_every_s)
        idle_ms = max(1, int(min(1.0, cfg.claim_every_s) * 1000))
        deadline = time.monotonic() + cfg.max_wait_ms / 1000 if messages else None
        while len(messages) < cfg.max_batch and not stop.is_set():
            left_ms = idle_ms if deadline is None else int((deadline - time.monotonic()) * 1000)
            if left_ms < 1:
                break
            got = self.broker.read(cfg.max_batch - len(messages), left_ms)
            if not got:
                break
            messages += got
            if deadline is None:
                deadline = time.monotonic() + cfg.max_wait_ms / 1000
        return messages

    def _parse(self, messages: list[Message]) -> tuple[list[Event], list[Commit]]:
        """Valid events, and the dead letters of the others (each bad message fails alone)."""
        active = self.slot.active
        taxonomy = active.predictor.taxonomy if active else ()
        events, dead = [], []
        for m in messages:
            if m.deliveries > self.cfg.max_deliveries:  # it killed or stalled its consumers
                dead.append(dead_commit(m, "too_many_deliveries", "-",
                                        f"delivered {m.deliveries} times without a result"))  # fmt: skip
                continue
            try:
                events.append(parse_event(m, taxonomy, self.cfg.images_root, self.staging,
                                          self.cfg.limits, self.cfg.score_photo_problems))  # fmt: skip
            except EventProblem as exc:
                dead.append(dead_commit(m, exc.reason, exc.field, str(exc)))
        return events, dead

    def _fetch(self, stop: threading.Event) -> None:
        backoff = Backoff(self.cfg.backoff_max_s)
        while not stop.is_set():
            try:
                messages = self._read(stop)
                backoff.reset()
            except BrokerUnavailable as exc:
                self._unavailable("read", exc, backoff, stop)
                continue
            except BaseException as exc:  # noqa: BLE001 (BrokerError: the scorer reports it)
                self.fatal = exc
                stop.set()
                break
            self.metrics.beat()
            if messages:
                with self._held_lock:
                    self._held.update(m.id for m in messages)
                self._batches.put(self._parse(messages))  # blocks while a batch waits
        self._batches.put(None)

    def _unavailable(self, what: str, exc: Exception, backoff: Backoff,
                     stop: threading.Event) -> None:  # fmt: skip
        with self.metrics.lock:
            self.metrics.reconnects += 1
        log.warning("broker unavailable: retrying", extra={"op": what, "error": str(exc),
                                                           "try": backoff.tries + 1})  # fmt: skip
        backoff.wait(stop)

    # -- the scorer (caller's thread) ----------------------------------------------------------

    def _decide(self, events: list[Event]) -> list[Commit]:
        commits: list[Commit] = []
        results = self.score([e.listing for e in events]) if events else []
        for event, result in zip(events, results, strict=True):
            m = event.message
            if isinstance(result, BaseException):
                if m.deliveries >= self.cfg.max_deliveries:
                    commits.append(dead_commit(m, "scoring_error", "-", str(result)))
                else:  # left pending: claimed again after claim_idle_ms
                    self.metrics.count("retry")
                    log.warning("scoring failed: left for redelivery",
                                extra={"message_id": m.id, "deliveries": m.deliveries,
                                       "error": str(result)[:300]})  # fmt: skip
                continue
            bundle, decision = result
            active = self.slot.active
            predictor = active.predictor if active and active.name == bundle else None
            severity = predictor.thresholds.get("severity") if predictor else None
            explanation = None
            if self.cfg.explain_reviews and decision.decision == "review" and predictor:
                explanation = self._explain(predictor, event)
            commits.append(decision_commit(event, bundle, decision, severity, explanation))
        return commits

    def _explain(self, predictor, event: Event) -> dict | None:
        from mmdetect.explain.service import explain_scored

        doc = explain_scored(predictor, event.listing, self.staging)
        return None if "error" in doc else doc  # the bundle cannot be explained: no summary

    def _commit(self, commits: list[Commit], stop: threading.Event) -> list[bool]:
        """Commit until it succeeds (idempotent: a retry after a lost reply writes nothing);
        after a stop, for drain_timeout_s at most (then the messages stay pending)."""
        backoff, stopped_at = Backoff(self.cfg.backoff_max_s), None
        while True:
            try:
                return self.broker.commit(commits)
            except BrokerUnavailable as exc:
                if stop.is_set():
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > self.cfg.drain_timeout_s:
                        raise
                self._unavailable("commit", exc, backoff, threading.Event())

    def _account(self, commits: list[Commit], fresh: list[bool]) -> None:
        now = time.time()
        for c, new in zip(commits, fresh, strict=True):
            kind, doc = c.outputs[0]
            if kind == "dead":
                self.metrics.count("dead")
                self.metrics.dead_letter(doc["reason"])
                log.warning("dead letter", extra={"message_id": c.message_id, "reason": doc["reason"],
                                                  "field": doc["field"]})  # fmt: skip
            elif not new:
                self.metrics.count("duplicate")
            else:
                self.metrics.count("decided")
                published = doc.get("published_at")
                tier = c.outputs[1][1]["action"] if len(c.outputs) > 1 else "pass"
                latency = now - float(published) if published else None
                self.metrics.decided(tier, doc["bundle"], latency)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batches already read are scored and committed."""
        fetcher = threading.Thread(target=self._fetch, args=(stop,), name="mmdetect-fetch",
                                   daemon=True)  # fmt: skip
        fetcher.start()
        try:
            while True:
                got = self._batches.get()
                if got is None:
                    break
                events, dead = got
                try:
                    commits = dead + self._decide(events)
                    if commits:
                        self._account(commits, self._commit(commits, stop))
                    self.metrics.beat(len(events) + len(dead))
                finally:
                    for e in events:
                        remove_request_dir(self.staging, e.request_dir)
                    with self._held_lock:
                        self._held.difference_update(e.message.id for e in events)
                        self._held.difference_update(c.message_id for c in dead)
        finally:
            stop.set()
            deadline = time.monotonic() + self.cfg.drain_timeout_s
            while fetcher.is_alive() and time.monotonic() < deadline:
                # after a failure here: unblock the fetcher; what it read stays pending
                with contextlib.suppress(queue.Empty):
                    self._batches.get(timeout=0.1)
        if self.fatal is not None:
            raise self.fatal
