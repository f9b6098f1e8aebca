"""`mmdetect predict --bundle`: score a listings JSONL into decisions and a review queue.

The input is read and checked row by row (bad rows are counted skips), in chunks that
`Predictor.stream` scores (the first chunk one batch, so the model starts early; the model file
loads while reading starts); decisions are written in input order, flushed per chunk (a kill
loses at most the chunk being scored), and the outputs appear only when the run finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mmdetect.artifacts.bundle_format import BundleError
from mmdetect.common.cliargs import non_negative_int, positive_int
from mmdetect.common.outputs import (
    OutputError,
    atomic_outputs,
    check_output,
    partial_path,
    resume_jsonl,
    stale_partials,
)
from mmdetect.data.dataset import Item
from mmdetect.policy.rules import load_rules
from mmdetect.policy.rules_yaml import RulesError
from mmdetect.serving.decision import Decision
from mmdetect.serving.predictor import Predictor
from mmdetect.serving.review_queue import queue_path, write_review_queue
from mmdetect.serving.stream import RunSummary, chunked, read_items, score_stream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Output:
    """A JSONL file predict writes: `row(decision)` per scored listing (None: no row)."""

    path: Path
    row: Callable[[Decision], dict | None]


def predict_outputs(args: argparse.Namespace) -> list[Output]:
    """The files one run writes, committed together when it finishes. The decisions file comes
    first: a resume takes the ids done from it. (The review queue is written afterwards, from
    the finished decisions file, since it is ordered by priority across the whole run.)"""
    return [Output(args.out, Decision.to_json)]


def prepare_outputs(outputs: list[Output], resume: bool, summary: RunSummary) -> set[str]:
    """With resume: restore each output's partial file; the ids the decisions file holds.
    Without: say that partial files of an interrupted run are ignored (removed on success)."""
    first, done = outputs[0].path, set()
    if not resume:
        for p in stale_partials(first):
            print(f"note: {p} is left by an interrupted run; starting over "
                  "(--resume continues from it instead)", file=sys.stderr)  # fmt: skip
        return done
    done, src = resume_jsonl(first, on_row=lambda r: summary.decisions.update([r.get("decision")]))
    for out in outputs[1:]:  # rows of a listing whose decision was not written are redone
        resume_jsonl(out.path, keep_ids=done)
    print(f"resuming from {src}: {len(done)} listings already written" if src
          else f"nothing to resume for {first}: starting from the first row", file=sys.stderr)  # fmt: skip
    return done


def predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect predict",
        description=(
            "Score a listings JSONL with an exported bundle; bad rows are skipped and counted. "
            "The output appears only when the run finishes (written to .NAME.partial-PID first)."
        ),
    )
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory (mmdetect export)")
    p.add_argument("--input", type=Path, required=True, help="listings.jsonl (labels optional)")
    p.add_argument(
        "--images-root",
        type=Path,
        help="photo paths are relative to this (default: the input's directory)",
    )
    p.add_argument("--out", type=Path, required=True, help="decisions.jsonl to write")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the partial output of an interrupted run, skipping the ids it holds",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--num-workers", type=non_negative_int, default=0,
                   help="DataLoader workers decoding photos")  # fmt: skip
    p.add_argument(
        "--device", default=None, help="cpu or cuda (default: the export device if present)"
    )
    p.add_argument("--chunk-size", type=positive_int, default=512, help="listings read per step")
    p.add_argument("--rules", type=Path, help="rules file combined with the model (docs/rules.md)")
    p.add_argument("--bucket", action="store_true",
                   help="batch listings with equal photo counts together (less padding; "
                        "docs/BENCHMARKS.md, Scoring pipeline)")  # fmt: skip
    return p


def predict_main(argv: Sequence[str] | None = None) -> int:
    args = predict_parser().parse_args(argv)
    if not args.input.is_file():
        why = "not a regular file" if args.input.exists() else "no such file"
        print(f"error: {args.input}: {why}", file=sys.stderr)
        return 1
    outputs = predict_outputs(args)
    inputs = [args.input, args.bundle, *([args.rules] if args.rules else [])]
    try:  # before anything is opened: an output may never be an input or inside a bundle
        for out in outputs:
            check_output(out.path, inputs)
            out.path.parent.mkdir(parents=True, exist_ok=True)
        check_output(queue_path(args.out), inputs)
        predictor = Predictor.from_bundle(  # verified now; the model loads as reading starts
            args.bundle, args.device, args.batch_size, args.num_workers, model=False
        )
        predictor.bucket = args.bucket
        if args.rules is not None:
            predictor.rules = load_rules(args.rules, predictor.taxonomy)
    except (OutputError, BundleError, RulesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot create the output directory: {exc}", file=sys.stderr)
        return 1
    root = args.images_root or args.input.parent
    summary = RunSummary()
    done = prepare_outputs(outputs, args.resume, summary)
    stale = [p for out in outputs for p in stale_partials(out.path)]
    try:
        with (
            args.input.open("rb") as fin,
            atomic_outputs(
                [o.path for o in outputs], keep_partial=True, append=args.resume
            ) as handles,
            tqdm(total=args.input.stat().st_size, unit="B", unit_scale=True, desc="predict") as bar,
        ):
            # photos resolved here, opened once (header check and decode) by the loader
            items = read_items(fin, args.input, root, predictor.taxonomy, summary, done, None)
            ends: deque[int] = deque()  # input offset after each chunk, for the progress bar

            def chunks() -> Iterator[list[Item]]:  # runs on Predictor.stream's thread
                # a first chunk of one batch: the model starts once a batch is read, not a chunk
                # (with workers, each chunk starts a loader: no extra one for a short chunk)
                first = None if args.num_workers else min(args.batch_size, args.chunk_size)
                for chunk in chunked(items, args.chunk_size, first):
                    ends.append(fin.tell())
                    yield chunk

            # closed before the input is: the reading thread stops first, also on Ctrl-C
            scored = score_stream(predictor, chunks(), summary, checked=False)
            with contextlib.closing(scored):
                predictor.load_model()  # while the reading thread prepares the first batches
                for decisions in scored:
                    for decision in decisions:
                        # the decisions row last: a resume redoes a listing whose row is missing
                        for out, fh in reversed(list(zip(outputs, handles, strict=True))):
                            row = out.row(decision)
                            if row is not None:
                                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                        summary.scored += 1
                        summary.decisions[decision.decision] += 1
                    for fh in handles:
                        fh.flush()  # a kill loses at most the chunk being scored
                    bar.update(ends.popleft() - bar.n)  # bytes behind the scored rows
            bar.update(fin.tell() - bar.n)
    except OSError as exc:  # the output (disk full, unwritable directory) or the input itself
        print(f"error: {exc}; {args.out} was not written", file=sys.stderr)
        return 1
    except BundleError as exc:  # the model file, loaded once reading had started
        print(f"error: {exc}", file=sys.stderr)
        if not args.resume:  # nothing was scored: no partial output to resume from
            for out in outputs:
                partial_path(out.path).unlink(missing_ok=True)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted: {summary.scored} listings kept in {partial_path(args.out)}; "
              f"{args.out} was not written (rerun with --resume to continue)", file=sys.stderr)  # fmt: skip
        return 130
    for p in stale:
        p.unlink(missing_ok=True)  # superseded by the finished output
    if len(done) > summary.resumed:  # kept rows whose listing is no longer in the input
        print(f"warning: {len(done) - summary.resumed} rows resumed from the partial file are "
              f"not in {args.input} (was the input changed?)", file=sys.stderr)  # fmt: skip
    queue, queued = write_review_queue(
        args.out, predictor.thresholds["severity"]
    )  # from the finished file: complete, ordered
    print(summary.format())
    print(f"decisions written to {args.out}; review queue ({queued}, by priority): {queue}")
    return 1 if summary.rows and not (summary.scored + summary.resumed) else 0
