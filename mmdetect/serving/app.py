"""The HTTP service: POST /v1/score, GET /healthz, /readyz, /metrics (docs/serving.md).

FastAPI + uvicorn in one process: request handlers validate and stage photos in a thread pool,
the Batcher groups listings of concurrent requests into model batches, the Watcher switches
bundles blue-green. Status codes of /v1/score:

- 200 every listing scored; 207 (batch form) some listings failed, each failed item carries
  its `error` {field, reason, message}; 422 every listing invalid (nothing was queued);
- 400 the body is not a JSON object / `listings` not a non-empty list; 408 the body did not
  arrive within --timeout-s (the connection is closed); 413 body over the limit or too many
  listings; 429 queue full (Retry-After); 503 no bundle loaded yet (Retry-After); 504 not
  parsed or answered within --timeout-s (Retry-After); 500 scoring failed (single form).

One deadline, --timeout-s from the moment the headers are in, covers reading the body, parsing
and staging photos, queueing and scoring. Slow headers and connection counts are the server
protocol's (mmdetect.serving.guard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mmdetect.explain.service import ExplainGate, ExplainRefused, wants_explanation
from mmdetect.serving.batcher import Batcher, QueueFull
from mmdetect.serving.http_body import Disconnected, _error, answer, read_body
from mmdetect.serving.inputs import BodyError, Limits, parse_request, remove_request_dir
from mmdetect.serving.metrics import CONTENT_TYPE, Metrics
from mmdetect.serving.reload import Active, Slot, Watcher, load_active, score_with
from mmdetect.serving.responses import SafeJSONResponse as JSONResponse
from mmdetect.serving.rules_reload import RulesWatcher

log = logging.getLogger(__name__)
SCORE_PATH = "/v1/score"
PARSE_THREADS = 8  # validation is GIL-bound; a few threads let photo reads from disk overlap


@dataclass
class ServeConfig:
    """Everything `mmdetect serve` takes; exactly one of registry / bundle."""

    registry: Path | None = None
    bundle: Path | None = None
    images_root: Path | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 512
    timeout_s: float = 10.0
    poll_s: float = 1.0
    device: str | None = None
    workers: int = 1  # scoring threads (batches scored at once)
    access_log: bool = False  # one log line per POST /v1/score (errors are logged anyway)
    limits: Limits = field(default_factory=Limits)
    explain_concurrency: int = 1  # explain=true requests running at once (ExplainGate)


def _staging_dir() -> Path:
    """A private directory for request photos: in memory (/dev/shm) where the system has it."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shm.stat().st_mode & 0o200 else None
    return Path(tempfile.mkdtemp(prefix="mmdetect-serve-", dir=base)).resolve()


class Service:
    """The state behind the routes; built by the app's lifespan."""

    def __init__(self, cfg: ServeConfig):
        if (cfg.registry is None) == (cfg.bundle is None):
            raise ValueError("give exactly one of registry and bundle")
        self.cfg, self.metrics, self.slot = cfg, Metrics(), Slot()
        self.staging = _staging_dir()
        score = score_with(self.slot, self.staging)

        def score_and_count(listings):
            results = score(listings)
            ok = [r for r in results if not isinstance(r, BaseException)]
            bundle = ok[0][0] if ok else "-"
            self.metrics.batch(len(listings), bundle, [d.decision for _, d in ok])
            return results

        self.batcher = Batcher(score_and_count, cfg.max_batch_size, cfg.max_wait_ms / 1000,
                               cfg.max_queue, self.metrics.set_queue_depth, cfg.workers)  # fmt: skip
        self.watcher = None
        if cfg.registry is not None:
            self.watcher = Watcher(cfg.registry, self.slot, self.load, cfg.poll_s, self.changed)
            self.watcher.also.append(RulesWatcher(cfg.registry, self.slot).check_once)
        self.tasks: list[asyncio.Task] = []
        self.explain_gate = ExplainGate(cfg.explain_concurrency)
        # request validation and photo staging: a small pool of its own (a hop costs a third of
        # starlette's run_in_threadpool, and fewer threads contend for the GIL)
        self.parsers = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="mmdetect-parse")

    def load(self, path: Path, name: str) -> Active:
        return load_active(path, name, self.staging, self.cfg.device, self.cfg.max_batch_size)

    def changed(self, slot: Slot, refused: bool) -> None:
        self.metrics.serving(slot.active.name if slot.active else None, not refused, refused)

    async def start(self) -> None:
        """Load the first bundle (a --bundle that fails raises; a registry keeps polling)."""
        if self.watcher is None:
            bundle = self.cfg.bundle
            active = await run_in_threadpool(self.load, bundle, bundle.resolve().name)
            self.slot.switch(active, active.since)
            self.changed(self.slot, False)
            log.info("serving", extra={"bundle": active.name, "path": str(bundle)})
        else:
            await run_in_threadpool(self.watcher.poll)
            self.tasks.append(asyncio.get_running_loop().create_task(self._watch()))
        self.batcher.start()

    async def _watch(self) -> None:
        await asyncio.sleep(self.cfg.poll_s)
        await self.watcher.run()

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.batcher.stop()
        self.parsers.shutdown(wait=True)
        shutil.rmtree(self.staging, ignore_errors=True)

    def ready(self) -> tuple[int, dict]:
        active = self.slot.active
        doc = {"ready": active is not None, "bundle": active.name if active else None,
               "serving_since_utc": self.slot.switches[-1]["serving_utc"] if active else None,
               "refused": self.slot.refused, "switches": self.slot.switches,
               "queue_depth": self.batcher.depth, "rules": getattr(self.slot.rules, "name", None),
               "rules_refused": self.slot.rules_refused,
               "registry": str(self.cfg.registry) if self.cfg.registry else None}  # fmt: skip
        return (200 if active else 503), doc


async def score_request(svc: Service, request: Request) -> JSONResponse:
    cfg, start, loop = svc.cfg, time.monotonic(), asyncio.get_running_loop()
    active = svc.slot.active
    if active is None:
        return _error(503, "no verified bundle loaded yet", 1)
    try:
        raw = await read_body(request, cfg.limits.max_body_bytes, cfg.timeout_s)
        parse = loop.run_in_executor(
            svc.parsers, parse_request, raw, active.predictor.taxonomy, cfg.images_root,
            svc.staging, cfg.limits, start + cfg.timeout_s)  # fmt: skip
        try:  # the parser also stops itself at the deadline (and removes what it staged)
            parsed, batch_form, rdir = await asyncio.wait_for(
                asyncio.shield(parse), max(start + cfg.timeout_s - time.monotonic(), 0.001)
            )
        except asyncio.TimeoutError:
            parse.add_done_callback(_cleanup_late(svc))
            svc.metrics.listing("timeout", 1)
            return _error(504, f"not parsed within {cfg.timeout_s} s", svc.batcher.retry_after_s())
    except Disconnected:
        log.info("client disconnected mid-body", extra={"path": SCORE_PATH})
        return _error(499, "client disconnected")
    except BodyError as exc:
        return _error(
            exc.status, str(exc), svc.batcher.retry_after_s() if exc.status == 504 else None
        )
    explanation = None
    try:
        valid = [p for p in parsed if p.listing is not None]
        svc.metrics.listing("invalid", len(parsed) - len(valid))
        outcomes: dict[int, object] = {}
        if valid:
            try:
                futures = svc.batcher.submit([p.listing for p in valid])
            except QueueFull as exc:
                svc.metrics.listing("rejected", len(valid))
                return _error(429, str(exc), exc.retry_after_s)
            left = cfg.timeout_s - (time.monotonic() - start)
            try:
                results = await asyncio.wait_for(
                    asyncio.gather(*futures, return_exceptions=True), max(left, 0.001)
                )
            except asyncio.TimeoutError:
                for f in futures:
                    f.cancel()
                svc.metrics.listing("timeout", len(valid))
                return _error(
                    504, f"not scored within {cfg.timeout_s} s", svc.batcher.retry_after_s()
                )
            outcomes = {p.index: r for p, r in zip(valid, results, strict=True)}
            if not batch_form and wants_explanation(request.query_params, raw):  # mmdetect.explain
                left = cfg.timeout_s - (time.monotonic() - start)
                try:
                    explanation = await svc.explain_gate.run(
                        active.predictor, valid[0].listing, svc.staging, left)  # fmt: skip
                except ExplainRefused as exc:  # 429 (slots taken) or 504 (past the deadline)
                    return _error(exc.status, str(exc), exc.retry_after_s)
    finally:
        # off the event loop: a request of 256 listings may have staged a thousand photos
        await loop.run_in_executor(svc.parsers, remove_request_dir, svc.staging, rdir)
    items = [answer(p, outcomes.get(p.index)) for p in parsed]
    failed = sum("error" in x for x in items)
    svc.metrics.listing("scored", len(items) - failed)
    svc.metrics.listing("error", failed - (len(parsed) - len(valid)))
    if not batch_form:
        item = items[0] if explanation is None else {**items[0], "explanation": explanation}
        status = 200 if "error" not in item else 422 if parsed[0].error else 500
        return JSONResponse(item, status_code=status)
    status = 200 if not failed else 207 if failed < len(items) else 422
    return JSONResponse({"results": items}, status_code=status)


def _cleanup_late(svc: Service):
    """A done-callback for a parse the request stopped waiting for: remove what it staged."""

    def cleanup(future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None:
            svc.parsers.submit(remove_request_dir, svc.staging, future.result()[2])

    return cleanup


def create_app(cfg: ServeConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = Service(cfg)
        app.state.service = svc
        try:
            await svc.start()
            yield
        finally:  # uvicorn has drained in-flight requests (timeout_graceful_shutdown) by now
            await svc.stop()
            log.info("stopped")

    app = FastAPI(title="mmdetect", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post(SCORE_PATH)
    async def score(request: Request) -> Response:
        svc: Service = request.app.state.service
        start = time.monotonic()
        response = await score_request(svc, request)
        seconds = time.monotonic() - start
        svc.metrics.request(SCORE_PATH, response.status_code, seconds)
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        if level > logging.INFO or svc.cfg.access_log:
            log.log(level, "request", extra={"path": SCORE_PATH, "status": response.status_code,
                                             "ms": round(seconds * 1000, 2)})  # fmt: skip
        return response

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        request.app.state.service.metrics.request("/healthz", 200, None)
        return JSONResponse({"alive": True})

    @app.get("/readyz")
    async def readyz(request: Request) -> Response:
        svc: Service = request.app.state.service
        status, doc = svc.ready()
        svc.metrics.request("/readyz", status, None)
        return JSONResponse(doc, status_code=status)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        svc: Service = request.app.state.service
        svc.metrics.request("/metrics", 200, None)
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    return app
