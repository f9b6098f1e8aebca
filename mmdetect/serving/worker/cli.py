"""`mmdetect worker`: consume listing events from Redis Streams, score, act (docs/worker.md)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mmdetect.common.cliargs import non_negative_int, positive_float, positive_int

log = logging.getLogger("mmdetect.serving.worker")


def worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect worker",
        description="Score listing events of a Redis stream (consumer group, at-least-once, "
        "effectively once) and write decisions and actions to streams; see docs/worker.md.",
    )
    p.add_argument("--broker", required=True, help="redis://HOST:PORT/DB (rediss://, unix://)")
    p.add_argument("--stream", default="listings", help="the listing events stream")
    p.add_argument("--group", default="mmdetect", help="consumer group shared by the workers")
    p.add_argument("--consumer", default=None, help="this worker's name (default: HOST-PID)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--registry", type=Path, help="registry directory: score with `current`")
    src.add_argument("--bundle", type=Path, help="a fixed bundle directory")
    p.add_argument("--images-root", type=Path, help="photo paths in events are relative to this")
    p.add_argument("--decisions", default="decisions", help="stream of decision rows")
    p.add_argument("--actions", default="actions", help="stream of `hide` actions")
    p.add_argument("--reviews", default="review_queue", help="stream of `review` actions")
    p.add_argument("--dead-letters", default=None, help="dead-letter stream (default: STREAM.dead)")
    p.add_argument("--max-batch", type=positive_int, default=64,
                   help="events per micro-batch (64: predict's batch size)")  # fmt: skip
    p.add_argument("--max-wait-ms", type=positive_float, default=20.0,
                   help="after the first event, wait this long for a batch to fill")  # fmt: skip
    p.add_argument("--claim-idle-ms", type=positive_int, default=30_000,
                   help="claim events another consumer held this long without acking")  # fmt: skip
    p.add_argument("--claim-every-s", type=positive_float, default=1.0)
    p.add_argument("--max-deliveries", type=positive_int, default=5,
                   help="an event delivered this often without a result is dead-lettered")  # fmt: skip
    p.add_argument("--photo-problems", choices=("dead-letter", "score"), default="dead-letter",
                   help="an undecodable photo: dead-letter the event, or score without it")  # fmt: skip
    p.add_argument("--explain-reviews", action="store_true",
                   help="add the explanation summary to review actions (about 40 rows each)")  # fmt: skip
    p.add_argument("--dedup-ttl-s", type=positive_int, default=7 * 86400,
                   help="how long a listing version's idempotency key is kept")  # fmt: skip
    p.add_argument("--maxlen", type=non_negative_int, default=0,
                   help="trim output streams to about this many entries (0: never)")  # fmt: skip
    p.add_argument("--poll-s", type=positive_float, default=1.0, help="registry pointer poll")
    p.add_argument("--connect-timeout-s", type=positive_float, default=30.0,
                   help="give up if the broker cannot be reached at start for this long")  # fmt: skip
    p.add_argument("--metrics-port", type=non_negative_int, default=None,
                   help="serve /metrics and /healthz on this port (0: a free one)")  # fmt: skip
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the export device)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads (default: the usable cores)")  # fmt: skip
    return p


def wait_for_broker(broker, timeout_s: float, stop: threading.Event) -> None:
    """Ping until it answers (BrokerUnavailable after timeout_s; BrokerError at once)."""
    from mmdetect.serving.worker.broker import BrokerUnavailable
    from mmdetect.serving.worker.loop import Backoff

    deadline, backoff = time.monotonic() + timeout_s, Backoff(2.0)
    while True:
        try:
            return broker.ping()
        except BrokerUnavailable as exc:
            if time.monotonic() >= deadline or stop.is_set():
                raise BrokerUnavailable(
                    f"cannot reach the broker in {timeout_s:g} s: {exc}"
                ) from None
            log.warning("broker not reachable yet: retrying", extra={"error": str(exc)})
            backoff.wait(stop)


def _background(target, stop: threading.Event, every_s: float, name: str) -> None:
    def loop() -> None:
        while not stop.wait(every_s):
            try:
                target()
            except Exception as exc:  # noqa: BLE001 (a metrics or pointer poll never stops the worker)
                log.warning("%s failed", name, extra={"error": str(exc)[:300]})

    threading.Thread(target=loop, name=f"mmdetect-{name}", daemon=True).start()


def worker_main(argv: Sequence[str] | None = None) -> int:
    args = worker_parser().parse_args(argv)
    for flag, path in (("--registry", args.registry), ("--bundle", args.bundle),
                       ("--images-root", args.images_root)):  # fmt: skip
        if path is not None and not path.is_dir():
            print(f"error: {flag} {path}: not a directory", file=sys.stderr)
            return 1
    import torch

    from mmdetect.serving.cli import json_logging, usable_cores
    from mmdetect.serving.reload import Slot, Watcher, load_active
    from mmdetect.serving.worker.broker import BrokerError
    from mmdetect.serving.worker.loop import Worker, WorkerConfig
    from mmdetect.serving.worker.metrics import WorkerMetrics, serve_metrics
    from mmdetect.serving.worker.redis_streams import RedisStreams

    torch.set_num_threads(args.threads or usable_cores())
    json_logging()
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())  # finish the batch, commit, exit
                for sig in (signal.SIGTERM, signal.SIGINT)}  # fmt: skip
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    outputs = {"decisions": args.decisions, "actions": args.actions, "reviews": args.reviews,
               "dead": args.dead_letters or f"{args.stream}.dead"}  # fmt: skip
    staging = Path(tempfile.mkdtemp(prefix="mmdetect-worker-",
                                    dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))  # fmt: skip
    metrics, slot = WorkerMetrics(), Slot()
    try:
        broker = RedisStreams(args.broker, args.stream, args.group, consumer, outputs,
                              f"mmdetect:done:{args.decisions}:", args.dedup_ttl_s, args.maxlen)  # fmt: skip
        wait_for_broker(broker, args.connect_timeout_s, stop)

        def load(path: Path, name: str):
            return load_active(path, name, staging, args.device, args.max_batch)

        def changed(s: Slot, refused: bool) -> None:
            with metrics.lock:
                metrics.bundle = s.active.name if s.active else None
                metrics.switches += not refused

        if args.bundle is not None:
            slot.switch(load(args.bundle, args.bundle.resolve().name), time.time())
            changed(slot, True)
        else:
            watcher = Watcher(args.registry, slot, load, args.poll_s, changed)
            while slot.active is None and not stop.is_set():  # no event is read before a bundle
                if not watcher.check_once():
                    stop.wait(args.poll_s)
            _background(watcher.check_once, stop, args.poll_s, "registry-watch")

        def poll_lag() -> None:
            metrics.lag = broker.lag()

        _background(poll_lag, stop, 2.0, "lag")
        if args.metrics_port is not None:

            def healthy() -> tuple[bool, dict]:  # fmt: skip
                age = time.monotonic() - metrics.heartbeat
                ok = slot.active is not None and age < 30
                return ok, {"alive": ok, "bundle": metrics.bundle, "consumer": consumer,
                            "last_loop_s_ago": round(age, 3)}  # fmt: skip

            server = serve_metrics(metrics, args.metrics_host, args.metrics_port, healthy)
            log.info("metrics", extra={"port": server.server_address[1]})
        cfg = WorkerConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                           claim_idle_ms=args.claim_idle_ms, claim_every_s=args.claim_every_s,
                           max_deliveries=args.max_deliveries, images_root=args.images_root,
                           score_photo_problems=args.photo_problems == "score",
                           explain_reviews=args.explain_reviews)  # fmt: skip
        log.info("consuming", extra={"stream": args.stream, "group": args.group,
                                     "consumer": consumer, "bundle": metrics.bundle})  # fmt: skip
        if not stop.is_set():
            Worker(broker, slot, staging, cfg, metrics).run(stop)
        log.info("stopped", extra={"consumer": consumer, "events": dict(
            (k[0][1], v) for k, v in metrics.events.items())})  # fmt: skip
        return 0
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 (BundleError, OSError: one line, no traceback)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        shutil.rmtree(staging, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
