"""`mmdetect feedback`: arguments, the merge (mmdetect.ops.feedback.merge_reviews) and its
printed summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from mmdetect.common.cliargs import non_negative_float
from mmdetect.data.reader import SnapshotError
from mmdetect.data.reviews import MAX_CLOCK_SKEW, FeedbackError
from mmdetect.ops.feedback import merge_reviews


def format_summary(result: dict[str, Any], out: Path) -> str:
    c, r, ex = result["counts"], result["counts"]["reviews"], result["examples"]
    labels = ", ".join(f"{k} {v}" for k, v in c["labels"].items())
    lines = [
        *ex.get("stale_temporaries", []),
        f"merged snapshot written to {out} ({result['name']})",
        f"listings {c['listings']}: labeled {c['labeled']} (clean {c['clean']}), "
        f"unlabeled {c['unlabeled']}",
        f"labels: {labels}",
        f"reviews: {r['rows']} rows, {r['valid']} valid on {r['ids']} ids; applied {r['applied']} "
        f"(newly labeled {r['newly_labeled']}, changed {r['changed']})",
        f"conflicts: {r['conflicts']} ids with disagreeing reviews (latest wins; "
        f"{r['ties']} tied in time, later line wins)",
        *(f"  {x}" for x in ex["conflicts"]),
        f"unknown ids: {r['unknown_ids']} reviews of ids not in the snapshot",
        *(f"  {x}" for x in ex["unknown_ids"]),
        f"skipped review rows: {r['skipped']} {r['skipped_by_reason'] or ''}".rstrip(),
        *(f"  {x}" for shown in ex["skipped"].values() for x in shown),
    ]
    if r["older_than_listing"]:
        lines.append(f"kept {r['older_than_listing']} listing labels decided after their review")
    if c.get("dropped_input_lines"):
        lines.append(f"left out {c['dropped_input_lines']} listing lines over the length limit")
    if c["skipped_rows"]:
        lines.append(f"input rows the reader skips (kept as they were): {c['skipped_rows']}")
    return "\n".join(lines)


def merge_main(argv: Sequence[str] | None = None) -> int:
    """`mmdetect feedback merge --snapshot DIR --reviews FILE --out DIR [--strict]`."""
    p = argparse.ArgumentParser(prog="mmdetect feedback", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True)
    m = sub.add_parser("merge", help="merge review labels into a new snapshot")
    m.add_argument("--snapshot", type=Path, required=True, help="input snapshot (left unchanged)")
    m.add_argument("--reviews", type=Path, required=True, help="reviews.jsonl")
    m.add_argument(
        "--out", type=Path, required=True, help="new snapshot directory (must not exist)"
    )
    m.add_argument("--name", help="name in the new snapshot.json (default: <input>+reviews)")
    m.add_argument("--strict", action="store_true", help="stop at the first bad review row")
    m.add_argument("--review-rate", type=float, help="inclusion rate of the reviewed listings")
    m.add_argument("--json", action="store_true", help="print the manifest as JSON")
    m.add_argument("--max-clock-skew-min", type=non_negative_float,
                   default=MAX_CLOCK_SKEW.total_seconds() / 60,
                   help="skip reviews dated more than this many minutes after now "
                        "(default %(default)s)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        result = merge_reviews(
            args.snapshot,
            args.reviews,
            args.out,
            args.strict,
            args.name,
            args.review_rate,
            timedelta(minutes=args.max_clock_skew_min),
        )
    except (FeedbackError, SnapshotError) as exc:  # SnapshotError: the input's own rows
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        print(format_summary(result, args.out))
    return 0
