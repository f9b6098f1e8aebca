"""`mmdetect review export|import|estimate|config`: the round trip with Label Studio."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decisions", type=Path, required=True, help="mmdetect predict's decisions.jsonl"
    )
    p.add_argument("--snapshot", type=Path, required=True, help="the snapshot the decisions scored")
    p.add_argument(
        "--out", type=Path, required=True, help="TASKS.json (Label Studio import format)"
    )
    p.add_argument("--model-version", default=None, help="default: the bundle's name and checksum")
    p.add_argument("--bundle", type=Path, default=None, help="the bundle that made the decisions")
    p.add_argument("--explanations", type=Path, default=None,
                   help="explanations.jsonl (mmdetect explain): evidence spans as pre-annotations")  # fmt: skip
    p.add_argument("--pass-rate", type=float, default=0.01, help="audit rate of the pass tier")
    p.add_argument("--hide-rate", type=float, default=0.1, help="audit rate of the hide tier")
    p.add_argument("--uncertainty", type=int, default=0,
                   help="extra pass-tier listings closest to review (not part of the audit)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audit-preannotate", action="store_true",
                   help="show the model's answer on audit tasks too (default: no, to avoid anchoring)")  # fmt: skip
    p.add_argument("--photo-url-prefix", default=None,
                   help="photos as PREFIX + snapshot-relative path instead of inline data URIs")  # fmt: skip
    p.add_argument(
        "--push", metavar="URL", default=None, help="also import the tasks into Label Studio"
    )
    p.add_argument("--project", type=int, default=None, help="the Label Studio project id (--push)")
    p.add_argument("--create-project", metavar="TITLE", default=None,
                   help="with --push: create the project from the generated labeling config")  # fmt: skip


def _parser_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("export", type=Path, nargs="?", help="Label Studio JSON export (or --pull)")
    p.add_argument("--tasks", type=Path, required=True, help="the TASKS.json review export wrote")
    p.add_argument("--out", type=Path, required=True, help="reviews.jsonl for feedback merge")
    p.add_argument("--pull", metavar="URL", default=None, help="fetch the export from Label Studio")
    p.add_argument("--project", type=int, default=None)


def _parser_estimate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reviews", type=Path, required=True, help="reviews.jsonl from review import")
    p.add_argument("--tasks", type=Path, required=True, help="the TASKS.json review export wrote")
    p.add_argument("--out", type=Path, default=None, help="write the estimate as JSON here too")


def _parser_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, default=None, help="take the taxonomy from this bundle")
    p.add_argument("--out", type=Path, default=None, help="write the XML here (default: stdout)")


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="mmdetect review", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    for name, build, help_ in (
        ("export", _parser_export, "Label Studio tasks: the review tier plus an audit sample"),
        ("import", _parser_import, "Label Studio's export back to reviews.jsonl"),
        ("estimate", _parser_estimate, "traffic precision and recall from the audit sample"),
        ("config", _parser_config, "the labeling config (XML) for a taxonomy"),
    ):
        build(sub.add_parser(name, help=help_))
    args = p.parse_args(argv)
    from mmdetect.common.outputs import OutputError
    from mmdetect.ops.review import commands
    from mmdetect.ops.review.client import LabelStudioError
    from mmdetect.ops.review.files import ReviewFileError
    from mmdetect.ops.review.importer import ImportProblem

    try:
        return {"export": commands.export, "import": commands.import_, "estimate": commands.estimate,
                "config": commands.config}[args.verb](args)  # fmt: skip
    except (ReviewFileError, ImportProblem, LabelStudioError, OutputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
