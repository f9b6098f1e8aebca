"""The data verbs with their own argument parsing: `mmdetect check` (validate a snapshot),
`mmdetect samples` (generate sample data), `mmdetect vocab` (build a tokenizer).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mmdetect.common.cliargs import non_negative_int, positive_int


def cmd_check(argv: Sequence[str]) -> int:
    from mmdetect.data.reader import SnapshotError, read_snapshot
    from mmdetect.data.summary import format_summary, summarize

    p = argparse.ArgumentParser(prog="mmdetect check", description="Validate a snapshot.")
    p.add_argument("snapshot", type=Path)
    p.add_argument("--strict", action="store_true", help="stop at the first problem, exit 1")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-images", action="store_true", help="skip decoding photos")
    args = p.parse_args(argv)
    try:
        snap = read_snapshot(args.snapshot, strict=args.strict, check_images=not args.no_images)
    except SnapshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = summarize(snap)
    print(
        json.dumps(summary, ensure_ascii=False, indent=2) if args.json else format_summary(summary)
    )
    return 0


def cmd_samples(argv: Sequence[str]) -> int:
    from mmdetect.common.outputs import OutputError
    from mmdetect.samples.generator import generate_samples
    from mmdetect.samples.target import check_samples_out

    p = argparse.ArgumentParser(prog="mmdetect samples", description="Write sample snapshots.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=positive_int, default=1800)
    p.add_argument("--n-drift", type=positive_int, default=500)
    p.add_argument("--n-incoming", type=positive_int, default=600)
    p.add_argument("--n-traffic", type=non_negative_int, default=2500,
                   help="traffic/ listings a month (0: none)")  # fmt: skip
    p.add_argument("--n-traffic-unlabeled", type=non_negative_int, default=2500,
                   help="traffic_unlabeled/ listings a month (0: none)")  # fmt: skip
    p.add_argument("--independent", action="store_true",
                   help="write the independent-phrasing evaluation set instead "
                        "(mmdetect/samples/independent.py; evaluation only)")  # fmt: skip
    args = p.parse_args(argv)
    if args.independent:
        from mmdetect.common.outputs import check_output
        from mmdetect.samples.independent import generate_independent

        try:  # never into a bundle or a registry
            check_output(args.out, [], kind="dir")
            print(json.dumps(generate_independent(args.out, seed=args.seed), ensure_ascii=False))
        except (OutputError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    try:  # never into a bundle, a registry or a snapshot; it replaces only its own splits
        check_samples_out(args.out)
        counts = generate_samples(
            args.out, seed=args.seed, n_train=args.n_train, n_drift=args.n_drift,
            n_incoming=args.n_incoming, n_traffic=args.n_traffic,
            n_traffic_unlabeled=args.n_traffic_unlabeled,
        )  # fmt: skip
    except (OutputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(counts, ensure_ascii=False, indent=2))
    return 0


def cmd_vocab(argv: Sequence[str]) -> int:
    from mmdetect.common.outputs import (
        OutputError,
        atomic_dir,
        check_generated_dir,
        replaceable_dir,
    )
    from mmdetect.data.reader import SnapshotError, read_snapshot
    from mmdetect.data.vocab import ASCII_KEPT, SPECIAL_TOKENS, build_vocab

    p = argparse.ArgumentParser(
        prog="mmdetect vocab", description="Build a WordPiece tokenizer directory from snapshots."
    )
    p.add_argument("snapshots", type=Path, nargs="+")
    p.add_argument("--size", type=positive_int, default=8000)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--vectors", default=None,
                   help="word vectors (ja_ginza or a .txt/.vec/.npz file) for --lexicon-words")  # fmt: skip
    p.add_argument("--lexicon-words", type=non_negative_int, default=0,
                   help="add the N most frequent vector words MeCab keeps whole as tokens")  # fmt: skip
    args = p.parse_args(argv)
    if args.lexicon_words and not args.vectors:
        p.error("--lexicon-words needs --vectors")
    extra: list[str] = []
    try:  # never into a bundle (BUNDLE/tokenizer), a registry or a snapshot
        check_generated_dir(args.out, args.snapshots)
        replaceable_dir(args.out, "vocab.txt")  # replaced whole: only an earlier tokenizer
        if args.size <= (n_fixed := len(SPECIAL_TOKENS) + 2 * len(ASCII_KEPT)):  # before reading
            raise ValueError(
                f"--size must be > {n_fixed} (special tokens + ASCII), got {args.size}"
            )
        if args.lexicon_words:  # a bad vectors file (VectorsError) fails before the training
            from mmdetect.data.tokenize import is_one_word
            from mmdetect.data.vectors import lexicon_words, load_vectors

            extra = lexicon_words(load_vectors(args.vectors), args.lexicon_words, is_one_word)
        texts = [
            f"{x.title}\n{x.description}"
            for path in args.snapshots
            for x in read_snapshot(path, check_images=False).listings
        ]
        with atomic_dir(args.out) as stage:
            build_vocab(texts, args.size, stage, extra)
    except (OutputError, SnapshotError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tokenizer written to {args.out} ({len(texts)} listings, {len(extra)} lexicon words)")
    return 0
