"""Serving an exported bundle: `Predictor` and `mmdetect predict --bundle`.

Preprocessing is the training preprocessing, reused, not re-implemented: encode_batch for the
text, build_transforms(train=False) for the photos, ListingDataset + collate_listings for the
batch. Only torch, transformers (the tokenizer) and torchvision (the transforms) are imported:
never Lightning, mmdetect.lit, mmdetect.training or mmdetect.datamodule (checked in tests).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mmdetect.bundle import TIERS, BundleError, LoadedBundle, load_bundle, tiers
from mmdetect.data.dataset import Item, ListingDataset, collate_listings
from mmdetect.data.jsonl import decode_line
from mmdetect.data.reader import RowProblem, check_photos, parse_row
from mmdetect.data.records import Listing, Problems
from mmdetect.image import IMAGENET_MEAN, IMAGENET_STD, ImageConfig, build_transforms
from mmdetect.text import encode_batch, load_tokenizer

log = logging.getLogger(__name__)

# Review metadata that scoring never reads; dropped so a bad label cannot cost a listing its score.
REVIEW_FIELDS = ("labels", "label_source", "reviewed_at")


def build_dataset(listings: Sequence[Listing], root: Path, tokenizer, pre: dict) -> ListingDataset:
    """Listings to tensors exactly as DetectorDataModule.build_dataset(train=False) does."""
    ids = encode_batch(tokenizer, [(x.title, x.description) for x in listings], pre["max_length"])
    transform = build_transforms(ImageConfig(image_size=pre["image_size"]), train=False)
    items = [Item(x, Path(root)) for x in listings]
    args = (pre["taxonomy"], pre["categories"], transform, pre["max_photos"])
    return ListingDataset(items, ids, *args, pre["price_mean"], pre["price_std"])


def build_loader(
    dataset: ListingDataset, pre: dict, batch_size: int, num_workers: int = 0, pin: bool = False
) -> DataLoader:
    """In-order batches padded by collate_listings, as DetectorDataModule.loader does."""
    collate = partial(collate_listings, pad_id=pre["pad_id"], image_size=pre["image_size"])
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin)  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """One scored listing: probability, tier per class, and the overall tier."""

    id: str
    scores: dict[str, float]
    decisions: dict[str, str]
    decision: str

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "scores": self.scores,
            "decisions": self.decisions,
            "decision": self.decision,
        }


class Predictor:
    """Batched inference over a verified bundle. `predict_proba` is what evaluation calls."""

    def __init__(self, bundle: LoadedBundle, batch_size: int = 64, num_workers: int = 0):
        pre = bundle.preprocess
        if tuple(pre["mean"]) != IMAGENET_MEAN or tuple(pre["std"]) != IMAGENET_STD:
            raise BundleError(
                f"{bundle.root}: photo normalisation {pre['mean']}/{pre['std']} "
                "is not the ImageNet one that build_transforms applies"
            )
        self.bundle, self.batch_size, self.num_workers = bundle, batch_size, num_workers
        self.taxonomy: tuple[str, ...] = tuple(pre["taxonomy"])
        self.thresholds = bundle.thresholds
        self.tokenizer = load_tokenizer(str(bundle.tokenizer_dir))
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

    def predict_proba(self, listings: Sequence[Listing], root: Path) -> np.ndarray:
        """Probabilities [N, C] float32, rows in input order, columns in `self.taxonomy` order."""
        out = np.zeros((len(listings), len(self.taxonomy)), dtype=np.float32)
        if not listings:
            return out
        pre = self.bundle.preprocess
        with torch.no_grad():
            dataset = self.dataset(listings, root)
            pin = self.device.type == "cuda"
            for batch in build_loader(dataset, pre, self.batch_size, self.num_workers, pin):
                inputs = [batch[name].to(self.device, non_blocking=True) for name in pre["inputs"]]
                probs = self.bundle.module(*inputs)
                out[batch["index"].numpy()] = probs.float().cpu().numpy()
        return out

    def decide(self, ids: Sequence[str], probs: np.ndarray) -> list[Decision]:
        codes = tiers(probs, self.taxonomy, self.thresholds)
        return [
            Decision(
                id=listing_id,
                scores={c: float(p) for c, p in zip(self.taxonomy, row, strict=True)},
                decisions={c: TIERS[t] for c, t in zip(self.taxonomy, tier_row, strict=True)},
                decision=TIERS[int(tier_row.max(initial=0))],
            )
            for listing_id, row, tier_row in zip(ids, probs, codes, strict=True)
        ]

    def predict(self, listings: Sequence[Listing], root: Path) -> list[Decision]:
        return self.decide([x.id for x in listings], self.predict_proba(listings, root))


# ---- mmdetect predict --bundle ------------------------------------------------------------


@dataclass
class RunSummary:
    """What `mmdetect predict` did: rows read, scored, skipped (by reason), decisions."""

    rows: int = 0
    scored: int = 0
    skipped: Counter = field(default_factory=Counter)
    photos: Problems = field(default_factory=Problems)
    decisions: Counter = field(default_factory=Counter)

    def format(self) -> str:
        def counts(c: Counter) -> str:
            return ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "none"

        overall = ", ".join(f"{t} {self.decisions[t]}" for t in reversed(TIERS))
        return "\n".join(
            [
                f"rows read: {self.rows}",
                f"scored: {self.scored}",
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


def read_listings(
    fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary
) -> Iterator[Listing]:
    """Stream valid listings (photos checked) from a binary file; count every skipped row."""
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
        yield check_photos(root, listing, where, summary.photos)


def chunked(items: Iterator[Listing], size: int) -> Iterator[list[Listing]]:
    chunk: list[Listing] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_chunk(predictor: Predictor, chunk: list[Listing], root: Path, summary: RunSummary):
    """Decisions for a chunk; if the batch fails, listing by listing so one bad row costs one."""
    try:
        return predictor.predict(chunk, root)
    except Exception:  # noqa: BLE001 (isolate the culprit, keep the run going)
        log.exception("a chunk failed; scoring its %d listings one by one", len(chunk))
    out = []
    for listing in chunk:
        try:
            out.extend(predictor.predict([listing], root))
        except Exception as exc:  # noqa: BLE001
            summary.skipped["scoring_error"] += 1
            log.error("%s: scoring failed: %s", listing.id, exc)
    return out


def predict_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mmdetect predict",
        description=(
            "Score a listings JSONL with an exported bundle; bad rows are skipped and counted."
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
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding photos")
    p.add_argument(
        "--device", default=None, help="cpu or cuda (default: the export device if present)"
    )
    p.add_argument("--chunk-size", type=int, default=512, help="listings read per step")
    args = p.parse_args(argv)
    if not args.input.is_file():
        print(f"error: {args.input}: no such file", file=sys.stderr)
        return 1
    try:
        predictor = Predictor.from_bundle(
            args.bundle, args.device, args.batch_size, args.num_workers
        )
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    root = args.images_root or args.input.parent
    summary = RunSummary()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with (
        args.input.open("rb") as fin,
        args.out.open("w", encoding="utf-8") as fout,
        tqdm(total=args.input.stat().st_size, unit="B", unit_scale=True, desc="predict") as bar,
    ):
        listings = read_listings(fin, args.input, root, predictor.taxonomy, summary)
        for chunk in chunked(listings, args.chunk_size):
            for decision in score_chunk(predictor, chunk, root, summary):
                fout.write(json.dumps(decision.to_json(), ensure_ascii=False) + "\n")
                summary.scored += 1
                summary.decisions[decision.decision] += 1
            bar.update(fin.tell() - bar.n)  # bytes behind the scored rows
        bar.update(fin.tell() - bar.n)
    print(summary.format())
    print(f"decisions written to {args.out}")
    return 1 if summary.rows and not summary.scored else 0  # rows, yet none usable: say so
