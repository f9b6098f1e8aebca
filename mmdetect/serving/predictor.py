"""Serving an exported bundle: `Predictor` (`mmdetect predict` itself is mmdetect/serving/predict.py).

Preprocessing is the training preprocessing, reused, not re-implemented: encode_batch for the
text, the eval photo ops of build_transforms as uint8 (data/photos.py) with one normalisation per
batch, ListingDataset + collate_listings for the batch. The data path: photos are checked from
their headers (check_header: no pixel decoded in the main process when the DataLoader has
workers) and resolved once; each photo is decoded once and a photo that fails then is counted.
`Predictor.stream` scores chunk after chunk; with PREFETCH_BATCHES it prepares them on a thread.
Only torch, transformers (the tokenizer) and torchvision (the transforms) are imported: never
Lightning, mmdetect.training.module, mmdetect.training.run or mmdetect.training.datamodule (checked in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from mmdetect.artifacts.bundle import LoadedBundle, load_bundle, load_model
from mmdetect.artifacts.bundle_format import BundleError
from mmdetect.common.normalization import interpolation_mode
from mmdetect.data.dataset import Item, ListingDataset
from mmdetect.data.photos import normalize_photos
from mmdetect.data.pipeline import (  # build_dataset, build_loader: also imported from here
    build_dataset,
    build_items_dataset,
    build_loader,
    count_photo_problems,
    photo_settings,
)
from mmdetect.data.records import Listing, Problems
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.data.vocab_fingerprint import VocabMismatchError, check_bundle_vocab
from mmdetect.policy import Decisions, decide
from mmdetect.policy.combine import apply_rules
from mmdetect.policy.rules import RuleSet
from mmdetect.serving.decision import Decision
from mmdetect.serving.prefetch import Prefetch, threaded

log = logging.getLogger(__name__)

# Batches prepared ahead by Predictor.stream on its thread (float batches of a big model, 64 x 4
# photos at 224 px, are 154 MB each). 0: no thread, each chunk prepared then scored: faster on
# the 2-core machine, where the thread only took cores from the model (docs/BENCHMARKS.md, F).
PREFETCH_BATCHES = 0
# Added to the prefetch thread's nice value (Linux: per thread), so that where the cores are
# short the model's threads run first and the thread fills the time they wait. 0: off.
PREFETCH_NICE = 0


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
        self.optimize: bool | None = None  # for load_model (from_bundle's)
        self.bucket = False  # group batches by photo count (see docs/BENCHMARKS.md)
        self.taxonomy: tuple[str, ...] = tuple(pre["taxonomy"])
        self.thresholds = bundle.thresholds
        self.rules: RuleSet | None = None  # combined with the model's tiers (policy/combine.py)
        try:
            self.tokenizer = load_tokenizer(str(bundle.tokenizer_dir))
        except (OSError, ValueError) as exc:  # re-checksummed after an edit: say so, no traceback
            raise BundleError(f"{bundle.tokenizer_dir}: cannot load the tokenizer: {exc}") from None
        try:  # the token -> id map the model was exported with (data/vocab_fingerprint.py)
            check_bundle_vocab(self.tokenizer, pre, str(bundle.root / "preprocess.json"),
                               str(bundle.tokenizer_dir))  # fmt: skip
        except VocabMismatchError as exc:
            raise BundleError(str(exc)) from None
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
        model: bool = True,
    ) -> Predictor:
        """Load and verify a bundle (BundleError names a tampered or missing file).

        device None: the export device if present, else CPU. optimize: see bundle.load_torchscript.
        model False: the TorchScript model is loaded by `load_model`, before the first batch.
        """
        predictor = cls(load_bundle(path, device, optimize, model), batch_size, num_workers)
        predictor.optimize = optimize
        return predictor

    def load_model(self) -> None:
        """Load the model if from_bundle(model=False) left it out (BundleError if it cannot)."""
        self.bundle = load_model(self.bundle, self.optimize)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def dataset(self, listings: Sequence[Listing], root: Path) -> ListingDataset:
        return build_dataset(listings, root, self.tokenizer, self.bundle.preprocess)

    def batches(self, items: Sequence[Item], checked: bool = True) -> Iterator[dict]:
        """Collated batches of Items (text tokenized here, photos decoded by the loader); on
        CPU with photos normalised, on CUDA still uint8 (normalised on the device). checked
        False: the photos were resolved but not opened (read_items(check=None)); the loader
        checks each at the one open that also decodes it (pipeline.OpenOnceDataset)."""
        pre, pin = self.bundle.preprocess, self.device.type == "cuda"
        # In order and without workers, each batch is tokenized just before its photos are
        # decoded: the first batch is ready after one batch's work, not the whole chunk's.
        step = self.batch_size if not (self.num_workers or self.bucket) else len(items)
        for start in range(0, len(items), max(step, 1)):
            part = items[start : start + step]
            dataset = build_items_dataset(part, self.tokenizer, pre, checked)
            loader = build_loader(dataset, pre, self.batch_size, self.num_workers, pin,
                                  normalize=not pin, bucket=self.bucket)  # fmt: skip
            for batch in loader:
                batch["index"] = batch["index"] + start  # rows of `items`
                yield batch

    def score_batch(self, batch: dict) -> np.ndarray:
        """The module's probabilities [B, C] float32 for one batch (rows as batch["index"])."""
        names = self.bundle.preprocess["inputs"]
        inputs = {name: batch[name].to(self.device, non_blocking=True) for name in names}
        # uint8 photos crossed to the device: normalised there, once per batch (float: as is)
        inputs["images"] = normalize_photos(
            inputs["images"], inputs["image_mask"], self.mean, self.std
        )
        with torch.no_grad():
            probs = self.bundle.module(*(inputs[name] for name in names))
        return probs.float().cpu().numpy()

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
        ids = [it.listing.id for it in items]
        for batch in self.batches(items):
            if problems is not None:
                count_photo_problems(batch, ids, problems)
            out[batch["index"].numpy()] = self.score_batch(batch)
        return out

    def stream(
        self,
        chunks: Iterable[Sequence[Item]],
        problems: Problems | None = None,
        checked: bool = True,
    ) -> Prefetch:
        """(chunk, probabilities [len(chunk), C]) for each chunk of Items, in order, or (chunk,
        the exception) where preparing or scoring it failed (retry it listing by listing).

        A background thread pulls the chunks (so reading and header checks run there too),
        tokenizes them and decodes their photos into batches, up to PREFETCH_BATCHES ahead,
        while this thread runs the model: TorchScript and ONNX Runtime release the GIL while
        they compute, so preparing batch i+1 overlaps scoring batch i. A chunk's photo problems
        are added to `problems` once the chunk is scored. An exception raised by the chunk
        iterator itself (reading the input) is raised here. checked: as in `batches`.
        The thread starts now, before the first item is asked for (the caller may load the
        model meanwhile, load_model); close() stops it."""
        if not PREFETCH_BATCHES:
            return Prefetch(self._serial(chunks, problems, checked), lambda: None)
        return threaded(self, chunks, problems, checked, PREFETCH_BATCHES, PREFETCH_NICE)

    def _serial(
        self, chunks: Iterable[Sequence[Item]], problems: Problems | None, checked: bool
    ) -> Iterator[tuple[Sequence[Item], np.ndarray | Exception]]:
        """stream without the thread: each chunk read, prepared and scored in turn."""
        for chunk in chunks:
            found = Problems()
            try:
                out = np.zeros((len(chunk), len(self.taxonomy)), dtype=np.float32)
                ids = [it.listing.id for it in chunk]
                for batch in self.batches(chunk, checked) if chunk else ():
                    count_photo_problems(batch, ids, found)
                    out[batch["index"].numpy()] = self.score_batch(batch)
            except Exception as exc:  # noqa: BLE001 (the caller retries the chunk)
                yield chunk, exc
                continue
            if problems is not None:
                problems.merge(found)
            yield chunk, out

    def decisions(self, probs: np.ndarray) -> Decisions:
        """Calibrated scores, priorities and tiers under the bundle's operating point."""
        return decide(self.thresholds, probs, self.taxonomy)

    def decide(
        self, ids: Sequence[str], probs: np.ndarray, listings: Sequence[Listing] | None = None,
        rules: RuleSet | None = None,
    ) -> list[Decision]:  # fmt: skip
        """Decisions under the operating point and, given the listings, `rules` (default
        self.rules) combined in: the one decision path (docs/rules.md)."""
        d, rules = self.decisions(probs), rules or self.rules
        fired: list[tuple[str, ...]] = [()] * len(ids)
        slow = fired
        if rules is not None and listings is not None:
            d, hits = apply_rules(d, rules, listings, self.taxonomy)
            fired, slow = hits.fired, hits.timed_out
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
                    rules=fired[i],
                    ruleset=None if rules is None else rules.name,
                    rules_timed_out=slow[i],
                )
            )
        return out

    def predict(
        self, listings: Sequence[Listing], root: Path, problems: Problems | None = None
    ) -> list[Decision]:
        return self.predict_batch([Item(x, Path(root)) for x in listings], problems)

    def predict_batch(
        self, items: Sequence[Item], problems: Problems | None = None, rules: RuleSet | None = None
    ):
        """Decisions for Items (predict_main's path: photos resolved and checked once)."""
        probs = self.predict_items(items, problems)
        listings = [it.listing for it in items]
        return self.decide([x.id for x in listings], probs, listings, rules)
