"""`mmdetect serve`: the HTTP service under uvicorn, JSON logs, graceful shutdown."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from mmdetect.common.cliargs import positive_float, positive_int

# Scoring workers by default, measured on a 2-core machine (docs/BENCHMARKS.md, HTTP service).
DEFAULT_WORKERS = 2

# LogRecord attributes that are not `extra` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, msg and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def json_logging(level: int = logging.INFO) -> None:
    """Our loggers and uvicorn's (errors, lifecycle; its access log is off) as JSON on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("mmdetect", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect serve",
        description="HTTP scoring service over a registry's current bundle (blue-green "
        "switching) or a fixed bundle; see docs/serving.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--registry", type=Path, help="registry directory: serve `current`, follow it")
    src.add_argument("--bundle", type=Path, help="a fixed bundle directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--images-root", type=Path,
                   help="photo paths in requests are relative to this (default: b64 photos only)")  # fmt: skip
    p.add_argument("--max-batch-size", type=positive_int, default=32, help="listings per batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="after the first listing, wait this long for a batch to fill")  # fmt: skip
    p.add_argument("--max-queue", type=positive_int, default=512,
                   help="listings waiting at most; beyond: 429 with Retry-After")  # fmt: skip
    p.add_argument("--timeout-s", type=positive_float, default=10.0,
                   help="one deadline per request, from its headers: body not in by then: 408; "
                   "not parsed or scored: 504")  # fmt: skip
    p.add_argument("--header-timeout-s", type=positive_float, default=5.0,
                   help="a connection whose request headers are not in within this is closed "
                   "(also the keep-alive idle time)")  # fmt: skip
    p.add_argument("--max-connections", type=positive_int, default=1024,
                   help="open connections at most; one more is closed at once")  # fmt: skip
    p.add_argument("--poll-s", type=positive_float, default=1.0,
                   help="how often the registry's current pointer is read")  # fmt: skip
    p.add_argument("--max-body-mb", type=positive_float, default=32.0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: the export device)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help=f"scoring threads, batches scored at once (default: {DEFAULT_WORKERS} "
                   "on 2 usable cores or more, else 1)")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch intra-op threads per worker (default: usable cores split over "
                   "the workers; docs/serving.md, Deployment)")  # fmt: skip
    p.add_argument("--access-log", action="store_true",
                   help="log every POST /v1/score (5xx answers are logged anyway)")  # fmt: skip
    p.add_argument("--explain-concurrency", type=positive_int, default=1,
                   help="explain=true requests explained at once; more wait get 429 "
                   "(each costs about 40 bundle rows: docs/explain.md)")  # fmt: skip
    return p


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, as taskset or a container sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallelism(cores: int, workers: int | None, threads: int | None) -> tuple[int, int]:
    """(scoring workers, torch intra-op threads per worker), the defaults filled in:
    DEFAULT_WORKERS on 2 cores or more, each with an equal share of the cores (at least one)."""
    workers = workers or (min(DEFAULT_WORKERS, cores) if cores >= 2 else 1)
    return workers, threads or max(1, cores // workers)


def serve_main(argv: Sequence[str] | None = None) -> int:
    args = serve_parser().parse_args(argv)
    import torch
    import uvicorn

    from mmdetect.serving.app import ServeConfig, create_app
    from mmdetect.serving.guard import uvicorn_options
    from mmdetect.serving.inputs import Limits

    for flag, path in (("--registry", args.registry), ("--bundle", args.bundle),
                       ("--images-root", args.images_root)):  # fmt: skip
        if path is not None and not path.is_dir():
            print(f"error: {flag} {path}: not a directory", file=sys.stderr)
            return 1
    if args.max_queue < args.max_batch_size:
        print("error: --max-queue must be at least --max-batch-size", file=sys.stderr)
        return 1
    workers, threads = parallelism(usable_cores(), args.workers, args.threads)
    torch.set_num_threads(threads)
    json_logging()
    logging.getLogger("mmdetect.serving").info(
        "parallelism", extra={"workers": workers, "threads": threads, "cores": usable_cores()}
    )
    cfg = ServeConfig(
        registry=args.registry, bundle=args.bundle, images_root=args.images_root,
        max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue, timeout_s=args.timeout_s, poll_s=args.poll_s,
        device=args.device, workers=workers, access_log=args.access_log,
        explain_concurrency=args.explain_concurrency,
        limits=Limits(max_body_bytes=int(args.max_body_mb * (1 << 20))),
    )  # fmt: skip
    config = uvicorn.Config(
        create_app(cfg), host=args.host, port=args.port, access_log=False, log_config=None,
        timeout_graceful_shutdown=int(args.timeout_s) + 5, lifespan="on",
        **uvicorn_options(args.header_timeout_s, args.max_connections),
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.run()  # SIGINT/SIGTERM: stop accepting, drain in-flight requests, then stop
    return 0 if server.started else 1
