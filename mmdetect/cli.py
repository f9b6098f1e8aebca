"""`mmdetect <command>`: one small entry point; each command lives in its own stage module.

Every command has one meaning. `check` validates a snapshot, `predict` scores listings with an
exported bundle, `fit` trains, and Lightning's other stages run as `mmdetect lightning
validate|test|predict` (LightningCLI flags: `--config`, dotted overrides, `--ckpt_path`). The
old spellings `validate SNAPSHOT`, `validate|test|predict --config ...` still work in this
release, with a deprecation message on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mmdetect.cliutil import non_negative_int, positive_int, quiet_known_noise

LIGHTNING = ("fit", "validate", "test", "predict")
# Flags only a LightningCLI command line has: how an old `validate`/`predict` is told apart.
LIGHTNING_FLAGS = ("--config", "-c", "--ckpt_path", "--trainer", "--model", "--data",
                   "--seed_everything", "--print_config", "--checkpoint", "--last_checkpoint",
                   "--optimizer", "--lr_scheduler", "--run-dir", "--run_dir")  # fmt: skip


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
    from mmdetect.data.samples import generate_samples

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
        from mmdetect.samples.independent import generate_independent

        print(json.dumps(generate_independent(args.out, seed=args.seed), ensure_ascii=False))
        return 0
    counts = generate_samples(
        args.out, seed=args.seed, n_train=args.n_train, n_drift=args.n_drift,
        n_incoming=args.n_incoming, n_traffic=args.n_traffic,
        n_traffic_unlabeled=args.n_traffic_unlabeled,
    )  # fmt: skip
    print(json.dumps(counts, ensure_ascii=False, indent=2))
    return 0


def cmd_vocab(argv: Sequence[str]) -> int:
    from mmdetect.data.reader import read_snapshot
    from mmdetect.data.tokenize import build_vocab

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
    if args.lexicon_words:
        from mmdetect.data.tokenize import is_one_word
        from mmdetect.data.vectors import VectorsError, lexicon_words, load_vectors

        try:
            extra = lexicon_words(load_vectors(args.vectors), args.lexicon_words, is_one_word)
        except VectorsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    texts = [
        f"{x.title}\n{x.description}"
        for path in args.snapshots
        for x in read_snapshot(path, check_images=False).listings
    ]
    out = build_vocab(texts, args.size, args.out, extra)
    print(f"tokenizer written to {out} ({len(texts)} listings, {len(extra)} lexicon words)")
    return 0


def cmd_pretrain(argv: Sequence[str]) -> int:
    from mmdetect.pretrain.cli import pretrain_main

    return pretrain_main(argv)


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


def cmd_predict(argv: Sequence[str]) -> int:
    if not _has_flag(argv, ("--bundle",)) and _has_flag(argv, LIGHTNING_FLAGS):
        _deprecated("predict --config ...", "lightning predict --config ...")
        return cmd_lightning(["predict", *argv])
    from mmdetect.serve import predict_main

    return predict_main(argv)


def cmd_serve(argv: Sequence[str]) -> int:
    from mmdetect.serving.cli import serve_main

    return serve_main(argv)


def cmd_validate(argv: Sequence[str]) -> int:
    """Deprecated: `check SNAPSHOT`, or Lightning's validate stage when given its flags."""
    if _has_flag(argv, LIGHTNING_FLAGS):
        _deprecated("validate --config ...", "lightning validate --config ...")
        return cmd_lightning(["validate", *argv])
    _deprecated("validate SNAPSHOT", "check SNAPSHOT")
    return cmd_check(argv)


def cmd_test(argv: Sequence[str]) -> int:
    _deprecated("test", "lightning test")
    return cmd_lightning(["test", *argv])


def cmd_fit(argv: Sequence[str]) -> int:
    return cmd_lightning(["fit", *argv])


def cmd_lightning(argv: Sequence[str]) -> int:
    stages = "|".join(LIGHTNING)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: mmdetect lightning {{{stages}}} --config CONFIG.yaml [--ckpt_path CKPT] "
              "[--run-dir DIR] [overrides]\n(`mmdetect lightning STAGE --help` for the flags)")  # fmt: skip
        return 0 if argv else 2
    if argv[0] not in LIGHTNING:
        print(f"mmdetect lightning: unknown stage {argv[0]!r}; stages: {stages}", file=sys.stderr)
        return 2
    from mmdetect.training import run_lightning

    return run_lightning(argv)


def cmd_explain(argv: Sequence[str]) -> int:
    from mmdetect.explain.cli import explain_main

    return explain_main(argv)


def cmd_tune(argv: Sequence[str]) -> int:
    from mmdetect.tune.cli import tune_main

    return tune_main(argv)


def cmd_feedback(argv: Sequence[str]) -> int:
    from mmdetect.feedback import merge_main

    return merge_main(argv)


def cmd_promote(argv: Sequence[str]) -> int:
    from mmdetect.registry_cli import promote_main

    return promote_main(argv)


def cmd_rollback(argv: Sequence[str]) -> int:
    from mmdetect.registry_cli import rollback_main

    return rollback_main(argv)


def cmd_shard(argv: Sequence[str]) -> int:
    from mmdetect.scale.shard_cli import shard_main

    return shard_main(argv)


def cmd_score(argv: Sequence[str]) -> int:
    from mmdetect.scale.score_cli import score_main

    return score_main(argv)


def cmd_registry(argv: Sequence[str]) -> int:
    from mmdetect.registry_cli import registry_main

    return registry_main(argv)


def _has_flag(argv: Sequence[str], flags: Sequence[str]) -> bool:
    return any(a == f or a.startswith((f"{f}.", f"{f}=")) for a in argv for f in flags)


def _deprecated(old: str, new: str) -> None:
    print(f"deprecated: use `mmdetect {new}` (`mmdetect {old}` goes in the next release)",
          file=sys.stderr)  # fmt: skip


# name -> (function, one line of help); the order is the order of `mmdetect --help`.
COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "check": (cmd_check, "validate a snapshot: counts, problems by reason (--strict, --json)"),
    "samples": (cmd_samples, "write the synthetic sample snapshots"),
    "vocab": (cmd_vocab, "build a WordPiece tokenizer directory from snapshots"),
    "pretrain": (cmd_pretrain, "masked-LM pretraining of the text encoder on unlabeled listings"),
    "fit": (cmd_fit, "train (LightningCLI: --config, dotted overrides, --run-dir DIR)"),
    "tune": (cmd_tune, "tune fit settings with Optuna: resumable, shared study (docs/training.md)"),
    "lightning": (cmd_lightning, "Lightning's other stages: lightning validate|test|predict"),
    "thresholds": (cmd_thresholds, "thresholds fit: calibration, certified hide, review budget"),
    "evaluate": (cmd_evaluate, "judge the operating point a checkpoint or bundle serves"),
    "export": (cmd_export, "a parity-checked TorchScript or ONNX bundle from a checkpoint"),
    "predict": (cmd_predict, "score a listings JSONL with a bundle: hide/review/pass"),
    "serve": (cmd_serve, "HTTP scoring service over a registry's current bundle (docs/serving.md)"),
    "feedback": (cmd_feedback, "feedback merge: fold reviewers' decisions into a snapshot"),
    "promote": (cmd_promote, "promote a bundle in a registry if it is not worse"),
    "rollback": (cmd_rollback, "point a registry back at the previous bundle"),
    "registry": (cmd_registry, "show a registry's current bundle and history"),
    "explain": (
        cmd_explain,
        "why a listing got its score: word spans, photos, modalities (HTML cards)",
    ),
    "shard": (cmd_shard, "write LitData shards of snapshots to stream training (docs/scale.md)"),
    "score": (cmd_score, "score listings or shards with a bundle on Ray Data (--engine ray)"),
}
DEPRECATED: dict[str, Callable[[Sequence[str]], int]] = {
    "validate": cmd_validate,  # -> check, or lightning validate
    "test": cmd_test,  # -> lightning test
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items())
    return f"usage: mmdetect <command> [args]   (mmdetect <command> --help)\n\ncommands:\n{rows}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Our own logger only: Lightning already prints its messages through its own handler.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("mmdetect")
    if not logger.handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    quiet_known_noise()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in COMMANDS:
        return COMMANDS[command][0](rest)
    if command in DEPRECATED:
        return DEPRECATED[command](rest)
    print(f"mmdetect: unknown command {command!r}\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
