"""`mmdetect <subcommand>`: one small entry point; each subcommand lives in its own stage module.

Lightning's own subcommands (fit, validate, test, predict) go to LightningCLI. `validate` with a
snapshot directory validates the snapshot instead, and `predict` with `--bundle` runs an exported
bundle: the first positional argument or flag decides, so both keep their natural names.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

LIGHTNING = ("fit", "validate", "test", "predict")


def cmd_validate(argv: Sequence[str]) -> int:
    from mmdetect.data.reader import SnapshotError, read_snapshot
    from mmdetect.data.summary import format_summary, summarize

    p = argparse.ArgumentParser(prog="mmdetect validate", description="Validate a snapshot.")
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
    from mmdetect.data.samples import generate_samples

    p = argparse.ArgumentParser(prog="mmdetect samples", description="Write sample snapshots.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=1800)
    p.add_argument("--n-drift", type=int, default=500)
    p.add_argument("--n-incoming", type=int, default=600)
    p.add_argument("--n-traffic", type=int, default=2500, help="traffic/ listings a month")
    p.add_argument("--n-traffic-unlabeled", type=int, default=2500, help="traffic_unlabeled/")
    args = p.parse_args(argv)
    counts = generate_samples(
        args.out, seed=args.seed, n_train=args.n_train, n_drift=args.n_drift,
        n_incoming=args.n_incoming, n_traffic=args.n_traffic,
        n_traffic_unlabeled=args.n_traffic_unlabeled,
    )  # fmt: skip
    print(json.dumps(counts, ensure_ascii=False, indent=2))
    return 0


def cmd_vocab(argv: Sequence[str]) -> int:
    from mmdetect.data.reader import read_snapshot
    from mmdetect.text import build_vocab

    p = argparse.ArgumentParser(
        prog="mmdetect vocab", description="Build a WordPiece tokenizer directory from snapshots."
    )
    p.add_argument("snapshots", type=Path, nargs="+")
    p.add_argument("--size", type=int, default=8000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    texts = [
        f"{x.title}\n{x.description}"
        for path in args.snapshots
        for x in read_snapshot(path, check_images=False).listings
    ]
    out = build_vocab(texts, args.size, args.out)
    print(f"tokenizer written to {out} ({len(texts)} listings)")
    return 0


def cmd_evaluate(argv: Sequence[str]) -> int:
    if "--predictions" in argv:
        from mmdetect.evaluate.run import evaluate_predictions_main

        return evaluate_predictions_main(argv)
    from mmdetect.operating_cli import evaluate_main

    return evaluate_main(argv)


def cmd_thresholds(argv: Sequence[str]) -> int:
    from mmdetect.operating_cli import thresholds_main

    return thresholds_main(argv)


def cmd_export(argv: Sequence[str]) -> int:
    from mmdetect.export import export_main

    return export_main(argv)


def cmd_predict_bundle(argv: Sequence[str]) -> int:
    from mmdetect.serve import predict_main

    return predict_main(argv)


def cmd_feedback(argv: Sequence[str]) -> int:
    from mmdetect.feedback import merge_main

    return merge_main(argv)


def cmd_promote(argv: Sequence[str]) -> int:
    from mmdetect.registry import promote_main

    return promote_main(argv)


def cmd_rollback(argv: Sequence[str]) -> int:
    from mmdetect.registry import rollback_main

    return rollback_main(argv)


def cmd_registry(argv: Sequence[str]) -> int:
    from mmdetect.registry import registry_main

    return registry_main(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "samples": cmd_samples,
    "vocab": cmd_vocab,
    "evaluate": cmd_evaluate,
    "thresholds": cmd_thresholds,
    "export": cmd_export,
    "feedback": cmd_feedback,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "registry": cmd_registry,
}


def _is_snapshot_validation(argv: Sequence[str]) -> bool:
    return bool(argv) and not argv[0].startswith("-") and Path(argv[0]).is_dir()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Our own logger only: Lightning already prints its messages through its own handler.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("mmdetect").addHandler(handler)
    logging.getLogger("mmdetect").setLevel(logging.INFO)
    names = ", ".join([*COMMANDS, *LIGHTNING])
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: mmdetect <command> [args]\ncommands: {names}\n{__doc__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "validate" and _is_snapshot_validation(rest):
        return cmd_validate(rest)
    if command == "predict" and any(a == "--bundle" or a.startswith("--bundle=") for a in rest):
        return cmd_predict_bundle(rest)
    if command in COMMANDS:
        return COMMANDS[command](rest)
    if command in LIGHTNING:
        from mmdetect.training import run_lightning

        return run_lightning([command, *rest])
    print(f"mmdetect: unknown command {command!r}; commands: {names}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
