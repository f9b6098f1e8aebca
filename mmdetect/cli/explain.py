"""`mmdetect explain --model CKPT_OR_BUNDLE --input listings.jsonl --out DIR`.

Writes DIR/explanations.jsonl (one explanation per listing, docs/explain.md) and
DIR/explanations.html (one card per listing), both atomically. Bad rows are skipped and counted
by reason, as `predict` does; a listing whose explanation fails is counted, not fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from mmdetect.common.cliargs import positive_float, positive_int
from mmdetect.common.inputs_check import InputFileError, check_input_file, check_input_files
from mmdetect.common.outputs import OutputError, check_output
from mmdetect.data.dataset import Item
from mmdetect.explain.attribution import BASELINE_TOKENS, UNITS, Budget
from mmdetect.explain.core import METHODS, explain_listing
from mmdetect.explain.model import Explainable, ExplainError
from mmdetect.explain.output import HTML, JSONL, photo_thumbs, write_outputs
from mmdetect.serving.explainable import load_explainable

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmdetect explain",
        description="Why a listing got its score: word attributions on the original text "
        "(Integrated Gradients for a checkpoint, word occlusion for a bundle), per-photo and "
        "per-modality deltas. Writes explanations.jsonl and explanations.html into --out.",
    )
    p.add_argument("--model", required=True, help="a .ckpt file or an exported bundle directory")
    p.add_argument("--input", type=Path, required=True, help="listings.jsonl (labels optional)")
    p.add_argument("--images-root", type=Path, help="photo root (default: the input's directory)")
    p.add_argument("--ids", nargs="+", help="explain only these listing ids")
    p.add_argument("--class", dest="class_name", help="explain this class (default: the top one)")
    p.add_argument("--max-listings", type=positive_int, default=50,
                   help="explain at most this many listings (default 50)")  # fmt: skip
    p.add_argument("--thresholds", type=Path,
                   help="operating point for calibrated scores (default: a bundle's own)")  # fmt: skip
    p.add_argument("--method", choices=METHODS, help="default: IG for a checkpoint, else occlusion")
    p.add_argument("--ig-steps", type=positive_int, default=Budget.ig_steps,
                   help="IG steps to start with (doubled while the completeness gap is over "
                        "--ig-tolerance, up to --ig-max-steps)")  # fmt: skip
    p.add_argument("--ig-max-steps", type=positive_int, default=Budget.ig_max_steps)
    p.add_argument("--ig-tolerance", type=positive_float, default=Budget.ig_tolerance,
                   help="largest completeness gap accepted (default %(default)s)")  # fmt: skip
    p.add_argument("--max-words", type=positive_int, default=Budget.max_words,
                   help="occlusion: at most this many forward passes for the words")  # fmt: skip
    p.add_argument("--baseline", choices=BASELINE_TOKENS, default=Budget.baseline,
                   help="token that replaces words in the baseline and in occlusion")  # fmt: skip
    p.add_argument("--units", choices=UNITS, default=Budget.units,
                   help="word attributions as probability or logit differences (logit: "
                        "still informative when the score is saturated near 0 or 1)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=Budget.batch_size)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    return p


def select_items(
    model: Explainable, path: Path, root: Path, ids: Sequence[str] | None, limit: int,
    skipped: Counter,
) -> list[Item]:  # fmt: skip
    """The listings to explain, in file order: valid rows (bad ones counted by reason), only
    `ids` when given, at most `limit`."""
    from mmdetect.serving.stream import RunSummary, read_items

    summary = RunSummary()
    wanted = set(ids) if ids else None
    out: list[Item] = []
    with path.open("rb") as fh:
        for item in read_items(fh, path, root, model.taxonomy, summary):
            if wanted is None or item.listing.id in wanted:
                out.append(item)
                if len(out) == limit:
                    break
    skipped.update(summary.skipped)
    out = attach_labels(path, out, model.taxonomy)
    missing = (wanted or set()) - {it.listing.id for it in out}
    if missing and len(out) < limit:
        skipped["id_not_found"] += len(missing)
    return out


def attach_labels(path: Path, items: list[Item], taxonomy: Sequence[str]) -> list[Item]:
    """The chosen listings with the labels their rows carry (read_items drops review fields, as
    predict does; a card should show them). Labels that are not a list of known class names
    are left out, never fatal."""
    from dataclasses import replace

    from mmdetect.data.jsonl import RowProblem, decode_line, iter_file_lines

    wanted = {it.listing.id for it in items}
    labels: dict[str, tuple[str, ...]] = {}
    with path.open("rb") as fh:
        for _, raw in iter_file_lines(fh):  # the line limit of every JSONL reader
            if raw is None or b'"labels"' not in raw:
                continue
            try:
                row = decode_line(raw)
            except RowProblem:  # already counted by read_items
                continue
            if not isinstance(row, dict) or row.get("id") not in wanted:
                continue
            value = row.get("labels")
            if isinstance(value, list) and all(isinstance(x, str) and x in taxonomy for x in value):
                labels.setdefault(row["id"], tuple(value))
    return [replace(it, listing=replace(it.listing, labels=labels[it.listing.id]))
            if it.listing.id in labels else it for it in items]  # fmt: skip


def explain_items(
    model: Explainable, items: Iterable[Item], class_name: str | None, method: str | None,
    budget: Budget, skipped: Counter, progress: bool = True,
) -> tuple[list[dict], list[list[str | None]]]:  # fmt: skip
    """Explanations and thumbnails, one listing at a time under a progress bar."""
    items = list(items)
    explanations, thumbs = [], []
    for item in tqdm(items, desc="explain", unit="listing", disable=not progress):
        try:
            e = explain_listing(model, item, class_name, method, budget)
            json.dumps(e, allow_nan=False)  # a NaN score would fail the whole file later
        except ExplainError:
            raise
        except Exception as exc:  # noqa: BLE001 (one listing's failure costs that listing)
            skipped["explain_error"] += 1
            log.error("%s: explanation failed: %s", item.listing.id, exc)
            continue
        explanations.append(e)
        thumbs.append(photo_thumbs(item, e))
    return explanations, thumbs


def explain_main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:  # a FIFO or /dev/zero: "not a regular file", never opened
        check_input_file(args.input)
    except InputFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    budget = Budget(ig_steps=args.ig_steps, ig_max_steps=max(args.ig_max_steps, args.ig_steps),
                    ig_tolerance=args.ig_tolerance, max_words=args.max_words,
                    batch_size=args.batch_size, baseline=args.baseline,
                    units=args.units)  # fmt: skip
    skipped: Counter = Counter()
    try:
        given = [args.input, Path(args.model), args.thresholds, args.images_root]
        check_output(args.out, [p for p in given if p is not None], kind="dir")
        check_input_files(("--thresholds", args.thresholds), config=True)
        model = load_explainable(args.model, args.thresholds)
        if args.class_name is not None and args.class_name not in model.taxonomy:
            raise ExplainError(f"--class {args.class_name!r}: not in {list(model.taxonomy)}")
        if args.method == "integrated_gradients" and model.net is None:
            raise ExplainError(f"--method integrated_gradients: {args.model} is a bundle "
                               "(no gradients); use occlusion")  # fmt: skip
        root = args.images_root or args.input.parent
        items = select_items(model, args.input, root, args.ids, args.max_listings, skipped)
        explanations, thumbs = explain_items(
            model, items, args.class_name, args.method, budget, skipped
        )
        write_outputs(args.out, explanations, thumbs, f"mmdetect explain: {args.input.name}")
    except (ExplainError, OutputError, InputFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    methods = Counter(e["text"]["method"] for e in explanations)
    seconds = sum(e["cost"]["seconds"] for e in explanations)
    print(f"explained: {len(explanations)} ({dict(methods)}), "
          f"{seconds / max(len(explanations), 1):.2f} s per listing")  # fmt: skip
    print(f"skipped: {sum(skipped.values())} ({dict(skipped) or 'none'})")
    print(f"written: {args.out / JSONL}, {args.out / HTML}")
    return 0 if explanations or not items else 1
