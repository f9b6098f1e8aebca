"""`mmdetect publish`: a listings JSONL to listing events on a stream, rate-limited, resumable.

Each line becomes one event {"event_id": "<file name>:<line>", "version": the row's `version`,
else `updated_at`, else `created_at` (a new listing's update time is its creation), "listing":
the row}, with `published_at`, and `source`/`line` fields. Resuming needs no state file: the
stream itself says which line of this file was published last (the newest entry whose `source`
is this file), and publishing continues after it. Lines that are not JSON objects are counted
skips (file:line and the reason on stderr); anything else is published for the worker to judge.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from mmdetect.common.cliargs import non_negative_int, positive_float, positive_int
from mmdetect.data.images import ImageProblem, resolve_image_path
from mmdetect.data.jsonl import RowProblem, decode_line, iter_lines


def publish_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdetect publish",
                                description="Publish a listings JSONL as listing events.")  # fmt: skip
    p.add_argument("file", type=Path, help="listings.jsonl (the snapshot's listing format)")
    p.add_argument("--broker", required=True, help="redis://HOST:PORT/DB")
    p.add_argument("--stream", default="listings")
    p.add_argument("--group", default="mmdetect",
                   help="consumer group created (from the stream's start) if missing")  # fmt: skip
    p.add_argument("--rate", type=positive_float, default=None, help="events per second at most")
    p.add_argument("--resume", action="store_true",
                   help="continue after the last line of FILE the stream holds")  # fmt: skip
    p.add_argument("--limit", type=non_negative_int, default=None, help="publish at most N events")
    p.add_argument("--inline-photos", action="store_true",
                   help="send photos as base64 (read under --images-root) instead of paths")  # fmt: skip
    p.add_argument("--images-root", type=Path, help="for --inline-photos (default: FILE's dir)")
    p.add_argument("--chunk", type=positive_int, default=100, help="events per round trip")
    return p


def source_of(path: Path) -> str:
    return str(path.resolve())


def last_published(broker, source: str, page: int = 1000) -> int:
    """The highest line of `source` the stream holds (0: none), scanning newest first."""
    cursor = "+"
    while True:
        got = broker._call(broker.client.xrevrange, broker.stream, max=cursor, count=page)
        for _mid, fields in got:
            if fields.get(b"source", b"").decode("utf-8", "replace") == source:
                return int(fields.get(b"line", b"0"))
        if len(got) < page:
            return 0
        last = got[-1][0].decode()
        ms, seq = (int(x) for x in last.split("-"))
        cursor = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"


def inline(row: dict, root: Path) -> dict:
    """The row with each photo path replaced by {"b64": ...} (an unreadable one left as is:
    the worker reports it)."""
    photos = row.get("images")
    if not isinstance(photos, list):
        return row
    out = []
    for rel in photos:
        try:
            out.append(
                {"b64": base64.b64encode(resolve_image_path(root, rel).read_bytes()).decode()}
            )
        except (ImageProblem, OSError):
            out.append(rel)
    return {**row, "images": out}


def events(path: Path, start_after: int, skipped: Counter, root: Path | None) -> Iterator[dict]:
    """The stream entries of the file's lines after `start_after`."""
    name, source = path.name, source_of(path)
    for lineno, raw in iter_lines(path):
        if lineno <= start_after:
            continue
        try:
            row = decode_line(raw)
        except RowProblem as exc:
            skipped[exc.reason] += 1
            print(f"{path}:{lineno}: skipped: {exc}", file=sys.stderr)
            continue
        if not isinstance(row, dict):
            skipped["not_an_object"] += 1
            print(f"{path}:{lineno}: skipped: not a JSON object", file=sys.stderr)
            continue
        version = row.get("version", row.get("updated_at", row.get("created_at")))
        listing = inline(row, root) if root is not None else row
        doc = {"event_id": f"{name}:{lineno}", "version": version, "listing": listing}
        yield {"event": json.dumps(doc, ensure_ascii=False), "source": source, "line": str(lineno)}


def publish_main(argv: Sequence[str] | None = None) -> int:
    args = publish_parser().parse_args(argv)
    if not args.file.is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 1
    from mmdetect.serving.worker.broker import BrokerError
    from mmdetect.serving.worker.redis_streams import RedisStreams

    skipped: Counter = Counter()
    sent, line = 0, 0
    try:
        broker = RedisStreams(args.broker, args.stream, args.group, "publisher", dict.fromkeys(
            ("decisions", "actions", "reviews", "dead"), "-"), "-")  # fmt: skip
        broker.ping()  # creates the group from the stream's start: no event is missed
        start = last_published(broker, source_of(args.file)) if args.resume else 0
        if args.resume:
            print(f"resuming {args.file} after line {start}", file=sys.stderr)
        root = (args.images_root or args.file.parent) if args.inline_photos else None
        chunk = max(1, min(args.chunk, int(args.rate / 20) or 1)) if args.rate else args.chunk
        t0, batch = time.monotonic(), []
        for entry in events(args.file, start, skipped, root):
            if args.limit is not None and sent + len(batch) >= args.limit:
                break
            batch.append(entry)
            if len(batch) >= chunk:
                sent, line = _send(broker, batch, sent, t0, args.rate), int(batch[-1]["line"])
                batch = []
        if batch:
            sent, line = _send(broker, batch, sent, t0, args.rate), int(batch[-1]["line"])
    except BrokerError as exc:
        print(f"error: {exc}; {sent} events published (rerun with --resume to continue)",
              file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: {sent} events published, up to line {line} "
              "(rerun with --resume to continue)", file=sys.stderr)  # fmt: skip
        return 130
    skips = ", ".join(f"{k} {n}" for k, n in sorted(skipped.items())) or "none"
    print(f"published {sent} events to {args.stream} (last line {line}); skipped: {skips}")
    return 0


def _send(broker, batch: list[dict], sent: int, t0: float, rate: float | None) -> int:
    """XADD a chunk once the rate allows it; the count sent after it."""
    if rate:
        time.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
    now = f"{time.time():.6f}"
    broker.publish([{**e, "published_at": now} for e in batch])
    return sent + len(batch)
