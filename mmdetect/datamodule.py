"""DetectorDataModule: snapshots → time or hash split → tokenized once → photo-decoding loaders."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import partial

import lightning as L
import torch
from torch.utils.data import DataLoader

from mmdetect.data.dataset import (
    DEFAULT_CATEGORIES,
    Item,
    ListingDataset,
    collate_listings,
    label_vector,
)
from mmdetect.data.photos import PhotoLoader, draft_side, uint8_steps
from mmdetect.data.reader import read_snapshot
from mmdetect.data.records import Problems, in_period
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.data.tokenize import encode_batch, load_tokenizer
from mmdetect.models.image import ImageConfig, build_transforms

log = logging.getLogger(__name__)


def hash_fraction(listing_id: str) -> float:
    """A stable number in [0, 1) per id: the same split on every machine and every run."""
    digest = hashlib.sha1(listing_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_validation(item: Item, split: str, val_from: str | None, val_fraction: float) -> bool:
    if split == "hash":
        return hash_fraction(item.listing.id) < val_fraction
    if val_from is None:
        raise ValueError("split='time' needs val_from (an ISO date)")
    return in_period(item.listing.created_at, val_from, None)


def read_items(
    paths: Sequence[str], taxonomy: Sequence[str], strict: bool
) -> tuple[list[Item], Problems]:
    """Read several snapshots; ids must be unique across them (first occurrence wins, counted)."""
    items, problems, seen = [], Problems(), set()
    for path in paths:
        snap = read_snapshot(path, strict=strict, taxonomy=taxonomy)
        problems.merge(snap.problems)
        for listing in snap.listings:
            if listing.id in seen:
                problems.add("duplicate_id_across_snapshots", f"{path}: {listing.id}")
                continue
            seen.add(listing.id)
            items.append(Item(listing, snap.root))
    return items, problems


class DetectorDataModule(L.LightningDataModule):
    """Reads labeled snapshots for fit/validate/test; unlabeled rows are counted and left out."""

    def __init__(
        self,
        snapshots: list[str] = ["data_samples/train"],  # noqa: B006 (jsonargparse reads defaults)
        tokenizer: str = "data_samples/tokenizer",
        taxonomy: list[str] = list(DEFAULT_TAXONOMY),  # noqa: B006, B008
        categories: list[str] = list(DEFAULT_CATEGORIES),  # noqa: B006, B008
        split: str = "time",
        val_from: str | None = "2026-09-01",
        val_fraction: float = 0.15,
        test_snapshots: list[str] | None = None,
        predict_snapshots: list[str] | None = None,
        max_length: int = 128,
        image_size: int = 64,
        max_photos: int = 4,
        batch_size: int = 32,
        num_workers: int = 2,
        price_mean: float = 8.0,
        price_std: float = 2.0,
        strict: bool = False,
    ):
        super().__init__()
        if split not in ("time", "hash"):
            raise ValueError(f"split must be 'time' or 'hash', got {split!r}")
        self.save_hyperparameters()
        self.datasets: dict[str, ListingDataset] = {}
        self.problems = Problems()
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    def photo_transform(self, train: bool):
        """(uint8 per-photo steps, mean, std): photos stay uint8 until the loader normalises each
        batch with that mean and std (data/photos.py)."""
        hp = self.hparams
        return uint8_steps(build_transforms(ImageConfig(image_size=hp.image_size), train=train))

    def build_dataset(self, items: Sequence[Item], train: bool) -> ListingDataset:
        hp = self.hparams
        pairs = [(it.listing.title, it.listing.description) for it in items]
        ids = encode_batch(self.tokenizer, pairs, hp.max_length)
        transform = self.photo_transform(train)[0]
        return ListingDataset(
            items, ids, hp.taxonomy, hp.categories, transform, hp.max_photos,
            hp.price_mean, hp.price_std, draft_side(hp.image_size),
        )  # fmt: skip

    def labeled(self, items: list[Item], where: str) -> list[Item]:
        kept = [it for it in items if it.listing.labels is not None]
        if len(kept) < len(items):
            self.problems.add(
                "unlabeled", f"{where}: {len(items) - len(kept)} rows", len(items) - len(kept)
            )
            log.info("%s: %d unlabeled rows left out", where, len(items) - len(kept))
        return kept

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage in ("fit", "validate") and "train" not in self.datasets:
            items, problems = read_items(hp.snapshots, hp.taxonomy, hp.strict)
            self.problems.merge(problems)
            items = self.labeled(items, "snapshots")
            val = [it for it in items if is_validation(it, hp.split, hp.val_from, hp.val_fraction)]
            train = [
                it for it in items if not is_validation(it, hp.split, hp.val_from, hp.val_fraction)
            ]
            if not train or not val:
                raise ValueError(
                    f"split {hp.split!r} left {len(train)} training and {len(val)} validation "
                    f"listings; check val_from={hp.val_from!r} / val_fraction={hp.val_fraction}"
                )
            log.info("split %s: %d train, %d validation", hp.split, len(train), len(val))
            self.datasets["train"] = self.build_dataset(train, train=True)
            self.datasets["val"] = self.build_dataset(val, train=False)
        for stage_name, key in (("test", "test_snapshots"), ("predict", "predict_snapshots")):
            if stage == stage_name and stage_name not in self.datasets:
                paths = hp[key]
                if not paths:
                    raise ValueError(f"stage {stage!r} needs data.{key}")
                items, problems = read_items(paths, hp.taxonomy, hp.strict)
                self.problems.merge(problems)
                if stage == "test":
                    items = self.labeled(items, key)
                self.datasets[stage_name] = self.build_dataset(items, train=False)

    def pos_weight(self, max_weight: float = 20.0) -> torch.Tensor:
        """negatives / positives per class on the training split, clipped to [1, max_weight]."""
        ds = self.datasets["train"]
        labels = torch.stack([label_vector(it.listing.labels, ds.taxonomy) for it in ds.items])
        pos = labels.sum(0)
        neg = labels.shape[0] - pos
        return (neg / pos.clamp(min=1)).clamp(1.0, max_weight)

    def loader(self, name: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        pad_id = self.tokenizer.pad_token_id or 0
        _, mean, std = self.photo_transform(train=False)
        return PhotoLoader(
            self.datasets[name],
            mean=mean,
            std=std,
            batch_size=hp.batch_size,
            shuffle=shuffle,
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            collate_fn=partial(collate_listings, pad_id=pad_id, image_size=hp.image_size),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict", shuffle=False)
