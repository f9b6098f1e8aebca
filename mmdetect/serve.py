"""Serving an exported bundle: `Predictor` and `mmdetect predict --bundle`.

Preprocessing is the training preprocessing, reused, not re-implemented: encode_batch for the
text, the eval photo ops of build_transforms as uint8 (data/photos.py) with one normalisation per
batch, ListingDataset + collate_listings for the batch. The data path: photos are checked from
their headers in the main process (check_header: no pixel decoded there) and resolved once; the
DataLoader workers decode each photo once and count a photo that fails then. Only torch,
transformers (the tokenizer) and torchvision (the transforms) are imported: never Lightning,
mmdetect.lit, mmdetect.training or mmdetect.datamodule (checked in tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmdetect.bundle import BundleError, LoadedBundle, load_bundle
from mmdetect.cliutil import non_negative_int, positive_int
from mmdetect.data.dataset import Item, ListingDataset
from mmdetect.data.images import check_header
from mmdetect.data.jsonl import decode_line
from mmdetect.data.photos import interpolation_mode, normalize_photos
from mmdetect.data.pipeline import (  # build_dataset, build_loader: also imported from here
    build_dataset,
    build_items_dataset,
    build_loader,
    count_photo_problems,
    photo_settings,
)
from mmdetect.data.reader import RowProblem, checked_photos, parse_row
from mmdetect.data.records import Listing, Problems
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.outputs import (
    OutputError,
    atomic_outputs,
    check_output,
    partial_path,
    resume_jsonl,
    stale_partials,
)
from mmdetect.policy import TIERS, Decisions, decide
from mmdetect.review_queue import queue_path, write_review_queue

log = logging.getLogger(__name__)

# Review metadata that scoring never reads; dropped so a bad label cannot cost a listing its score.
REVIEW_FIELDS = ("labels", "label_source", "reviewed_at")


@dataclass(frozen=True)
class Decision:
    """One scored listing: calibrated probabilities, review priority, tier per class, overall tier.

    `model_scores` are the model's raw probabilities (what calibration was fitted on)."""

    id: str
    scores: dict[str, float]
    decisions: dict[str, str]
    decision: str
    priority: float = 0.0
    model_scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "decision": self.decision,
            "priority": self.priority,
            "decisions": self.decisions,
            "scores": self.scores,
            "model_scores": self.model_scores,
        }


class Predictor:
    """Batched inference over a verified bundle. `predict_proba` is what evaluation calls."""

    def __init__(self, bundle: LoadedBundle, batch_size: int = 64, num_workers: int = 0):
        pre = bundle.preprocess
        self.mean, self.std, interpolation = photo_settings(pre)
        try:  # load_bundle checks these too; a LoadedBundle built by hand is checked here
            interpolation_mode(interpolation)
        except ValueError as exc:
            raise BundleError(f"{bundle.root / 'preprocess.json'}: {exc}") from None
        if not all(x > 0 for x in self.std):
            raise BundleError(f"{bundle.root / 'preprocess.json'}: std must be > 0: {self.std}")
        self.bundle, self.batch_size, self.num_workers = bundle, batch_size, num_workers
        self.bucket = False  # group batches by photo count (see docs/BENCHMARKS.md)
        self.taxonomy: tuple[str, ...] = tuple(pre["taxonomy"])
        self.thresholds = bundle.thresholds
        try:
            self.tokenizer = load_tokenizer(str(bundle.tokenizer_dir))
        except (OSError, ValueError) as exc:  # re-checksummed after an edit: say so, no traceback
            raise BundleError(f"{bundle.tokenizer_dir}: cannot load the tokenizer: {exc}") from None
        self.pad_id = self.tokenizer.pad_token_id or 0  # as DetectorDataModule.loader
        if self.pad_id != pre["pad_id"]:
            raise BundleError(f"{bundle.root}: tokenizer pad id {self.pad_id} != {pre['pad_id']}")

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        optimize: bool | None = None,
    ) -> Predictor:
        """Load and verify a bundle (BundleError names a tampered or missing file).

        device None: the export device if present, else CPU. optimize: see bundle.load_torchscript.
        """
        return cls(load_bundle(path, device, optimize), batch_size, num_workers)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def dataset(self, listings: Sequence[Listing], root: Path) -> ListingDataset:
        return build_dataset(listings, root, self.tokenizer, self.bundle.preprocess)

    def predict_proba(
        self, listings: Sequence[Listing], root: Path, problems: Problems | None = None
    ) -> np.ndarray:
        """Probabilities [N, C] float32, rows in input order, columns in `self.taxonomy` order.
        Photos that fail to decode are masked and, with `problems`, counted there."""
        return self.predict_items([Item(x, Path(root)) for x in listings], problems)

    def predict_items(self, items: Sequence[Item], problems: Problems | None = None) -> np.ndarray:
        """predict_proba over Items (photos possibly resolved and checked by read_items)."""
        out = np.zeros((len(items), len(self.taxonomy)), dtype=np.float32)
        if not items:
            return out
        pre, ids = self.bundle.preprocess, [it.listing.id for it in items]
        with torch.no_grad():
            dataset = build_items_dataset(items, self.tokenizer, pre)
            pin = self.device.type == "cuda"
            loader = build_loader(dataset, pre, self.batch_size, self.num_workers, pin,
                                  normalize=False, bucket=self.bucket)  # fmt: skip
            for batch in loader:
                if problems is not None:
                    count_photo_problems(batch, ids, problems)
                inputs = {name: batch[name].to(self.device, non_blocking=True)
                          for name in pre["inputs"]}  # fmt: skip
                # uint8 photos cross to the device; normalised there, once per batch
                inputs["images"] = normalize_photos(
                    inputs["images"], inputs["image_mask"], self.mean, self.std
                )
                probs = self.bundle.module(*(inputs[name] for name in pre["inputs"]))
                out[batch["index"].numpy()] = probs.float().cpu().numpy()
        return out

    def decisions(self, probs: np.ndarray) -> Decisions:
        """Calibrated scores, priorities and tiers under the bundle's operating point."""
        return decide(self.thresholds, probs, self.taxonomy)

    def decide(self, ids: Sequence[str], probs: np.ndarray) -> list[Decision]:
        d = self.decisions(probs)
        out = []
        for i, listing_id in enumerate(ids):
            per_class, overall = d.tier_names(i, self.taxonomy)
            out.append(
                Decision(
                    id=listing_id,
                    scores=dict(zip(self.taxonomy, d.calibrated[i].tolist(), strict=True)),
                    decisions=per_class,
                    decision=overall,
                    priority=float(d.priority[i]),
                    model_scores=dict(zip(self.taxonomy, map(float, probs[i]), strict=True)),
                )
            )
        return out

    def predict(
        self, listings: Sequence[Listing], root: Path, problems: Problems | None = None
    ) -> list[Decision]:
        return self.predict_batch([Item(x, Path(root)) for x in listings], problems)

    def predict_batch(self, items: Sequence[Item], problems: Problems | None = None):
        """Decisions for Items (predict_main's path: photos resolved and checked once)."""
        probs = self.predict_items(items, problems)
        return self.decide([it.listing.id for it in items], probs)


# ---- mmdetect predict --bundle ------------------------------------------------------------


@dataclass
class RunSummary:
    """What `mmdetect predict` did: rows read, scored, resumed, skipped (by reason), decisions."""

    rows: int = 0
    scored: int = 0
    resumed: int = 0  # already in the partial output a --resume continued from
    skipped: Counter = field(default_factory=Counter)
    photos: Problems = field(default_factory=Problems)
    decisions: Counter = field(default_factory=Counter)

    def format(self) -> str:
        def counts(c: Counter) -> str:
            return ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"

        overall = ", ".join(f"{t} {self.decisions[t]}" for t in reversed(TIERS))
        lines = [f"rows read: {self.rows}", f"scored: {self.scored}"]
        if self.resumed:
            lines.append(f"resumed (already written by the interrupted run): {self.resumed}")
        return "\n".join(
            [
                *lines,
                f"skipped: {sum(self.skipped.values())} ({counts(self.skipped)})",
                f"photo problems (listing still scored): {counts(self.photos.counts)}",
                f"decisions: {overall}",
            ]
        )


def parse_line(raw: bytes, taxonomy: Sequence[str]) -> Listing:
    """One input line to a Listing; RowProblem (with a reason) for anything unusable."""
    row = decode_line(raw)  # RowProblem for bad UTF-8 or JSON; a BOM is dropped
    if isinstance(row, dict):
        row = {k: v for k, v in row.items() if k not in REVIEW_FIELDS}
    return parse_row(row, taxonomy)


def read_items(
    fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary,
    done: Set[str] = frozenset(), check: Callable[[Path], object] = check_header,
) -> Iterator[Item]:  # fmt: skip
    """Stream valid listings from a binary file, photos checked from their headers (no pixel is
    decoded here) and resolved once; count every skipped row and photo. Ids in `done` (written
    before a resume) are counted as resumed and not yielded. `check`: the photo check."""
    seen: set[str] = set()
    for lineno, raw in enumerate(fh, 1):
        if not raw.strip():
            continue
        summary.rows += 1
        where = f"{path}:{lineno}"
        try:
            listing = parse_line(raw, taxonomy)
        except RowProblem as exc:
            summary.skipped[exc.reason] += 1
            log.debug("%s: %s: %s", where, exc.field, exc)
            continue
        if listing.id in seen:
            summary.skipped["duplicate_id"] += 1
            continue
        seen.add(listing.id)
        if listing.id in done:
            summary.resumed += 1
            continue
        listing, paths = checked_photos(root, listing, where, summary.photos, check=check)
        yield Item(listing, root, paths)


def read_listings(
    fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary,
    done: Set[str] = frozenset(),
) -> Iterator[Listing]:  # fmt: skip
    """read_items' listings (photo paths as written in the file)."""
    return (item.listing for item in read_items(fh, path, root, taxonomy, summary, done))


def chunked(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_chunk(predictor: Predictor, chunk: list[Item], summary: RunSummary) -> list[Decision]:
    """Decisions for a chunk; if the batch fails, listing by listing so one bad row costs one."""
    try:
        return predictor.predict_batch(chunk, summary.photos)
    except Exception:  # noqa: BLE001 (isolate the culprit, keep the run going)
        log.exception("a chunk failed; scoring its %d listings one by one", len(chunk))
    out = []
    for item in chunk:
        try:
            out.extend(predictor.predict_batch([item], summary.photos))
        except Exception as exc:  # noqa: BLE001
            summary.skipped["scoring_error"] += 1
            log.error("%s: scoring failed: %s", item.listing.id, exc)
    return out


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
    try:  # before anything is opened: an output may never be an input or inside a bundle
        for out in outputs:
            check_output(out.path, [args.input, args.bundle])
            out.path.parent.mkdir(parents=True, exist_ok=True)
        check_output(queue_path(args.out), [args.input, args.bundle])
        predictor = Predictor.from_bundle(
            args.bundle, args.device, args.batch_size, args.num_workers
        )
        predictor.bucket = args.bucket
    except (OutputError, BundleError) as exc:
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
            items = read_items(fin, args.input, root, predictor.taxonomy, summary, done)
            for chunk in chunked(items, args.chunk_size):
                for decision in score_chunk(predictor, chunk, summary):
                    # the decisions row last: a resume redoes a listing whose row is missing
                    for out, fh in reversed(list(zip(outputs, handles, strict=True))):
                        row = out.row(decision)
                        if row is not None:
                            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    summary.scored += 1
                    summary.decisions[decision.decision] += 1
                for fh in handles:
                    fh.flush()  # a kill loses at most the chunk being scored
                bar.update(fin.tell() - bar.n)  # bytes behind the scored rows
            bar.update(fin.tell() - bar.n)
    except OSError as exc:  # the output (disk full, unwritable directory) or the input itself
        print(f"error: {exc}; {args.out} was not written", file=sys.stderr)
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
