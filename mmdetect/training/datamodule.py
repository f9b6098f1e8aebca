"""DetectorDataModule: snapshots → time or hash split → tokenized once → photo-decoding loaders."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import AutoConfig

from mmdetect.common.safe_pretrained import check_model_dir
from mmdetect.data.augment import augment_pairs, check_augment
from mmdetect.data.dataset import (
    DEFAULT_CATEGORIES,
    LEGACY_PRICE_STATS,
    Item,
    ListingDataset,
    PriceStats,
    collate_listings,
    fit_price_stats,
    label_vector,
)
from mmdetect.data.photos import PhotoLoader, draft_side, uint8_steps
from mmdetect.data.reader import read_snapshot
from mmdetect.data.records import Problems, in_period
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.data.textnorm import check_options
from mmdetect.data.tokenize import encode_batch, load_tokenizer, resolve_tokenizer
from mmdetect.data.vocab import check_vocabulary
from mmdetect.models.image import ImagePreprocess, build_transforms

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
        tokenizer: str | None = None,  # None: model.text.pretrained's own, else the default
        taxonomy: list[str] = list(DEFAULT_TAXONOMY),  # noqa: B006, B008
        categories: list[str] = list(DEFAULT_CATEGORIES),  # noqa: B006, B008
        split: str = "time",
        val_from: str | None = "2026-09-01",
        val_fraction: float = 0.15,
        test_snapshots: list[str] | None = None,
        predict_snapshots: list[str] | None = None,
        max_length: int = 128,
        image_size: int | None = 64,  # linked from model.image.image_size
        max_photos: int = 4,
        batch_size: int = 32,
        num_workers: int = 2,
        # None: fitted on the training split in setup(). Set both to pin them instead (e.g. to keep a
        # warm-started model's normalisation, or for a checkpoint that stored them as settings).
        price_mean: float | None = None,
        price_std: float | None = None,
        strict: bool = False,
        text_pretrained: str | None = None,  # linked from model.text.pretrained by the CLI
        pin_memory: bool = False,  # page-locked batches: faster, asynchronous copies to a GPU
        prefetch_factor: int | None = None,  # batches queued per worker (torch's default: 2)
        shards: str | None = None,  # `mmdetect shard` output: stream fit/validate from it
        # evasion normalisation (data/textnorm.py), e.g. {invisible: true, separators: true};
        # stored in the checkpoint and the bundle's preprocess.json. None: NFKC only
        normalize: dict[str, bool] | None = None,
        # seeded evasion augmentation of the training split only (data/augment.py)
        augment: dict[str, Any] | None = None,
    ):
        super().__init__()
        if split not in ("time", "hash"):
            raise ValueError(f"split must be 'time' or 'hash', got {split!r}")
        if (price_mean is None) != (price_std is None):
            raise ValueError("set both price_mean and price_std, or neither (fitted on training)")
        check_options(normalize)  # a typo in a key fails here, naming it
        check_augment(augment)
        self.save_hyperparameters()
        # Recorded resolved, as the CLI links it into model.tokenizer (Lightning refuses to log
        # a key the two hold with different values).
        self.save_hyperparameters({"tokenizer": resolve_tokenizer(tokenizer, text_pretrained)})
        self.datasets: dict[str, ListingDataset] = {}
        self.problems = Problems()
        self._tokenizer = None
        if tokenizer and text_pretrained and tokenizer != text_pretrained:
            check_model_dir(text_pretrained)  # never its custom code (safe_pretrained)
            rows = AutoConfig.from_pretrained(text_pretrained, trust_remote_code=False).vocab_size
            check_vocabulary(self.tokenizer, tokenizer, rows, text_pretrained)
        # Fitted in setup(); the checkpoint stores them (state_dict) and a restore replaces them.
        self.price_stats: PriceStats | None = (
            None if price_mean is None else PriceStats(price_mean, price_std)
        )

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.hparams.tokenizer)
        return self._tokenizer

    def photo_transform(self, train: bool):
        """(uint8 per-photo steps, mean, std): photos stay uint8 until the loader normalises each
        batch with that mean and std (data/photos.py)."""
        return uint8_steps(build_transforms(self.image_preprocess(), train=train))

    def build_dataset(self, items: Sequence[Item], train: bool) -> ListingDataset:
        hp = self.hparams
        pairs = [(it.listing.title, it.listing.description) for it in items]
        if train and hp.get("augment"):
            pairs = augment_pairs(pairs, [it.listing.id for it in items], hp.augment)
        ids = encode_batch(self.tokenizer, pairs, hp.max_length, hp.get("normalize"))
        transform = self.photo_transform(train)[0]
        # price statistics are attached by loader(): Lightning restores a checkpoint's after setup()
        return ListingDataset(
            items, ids, hp.taxonomy, hp.categories, transform, hp.max_photos, math.nan, math.nan,
            draft_side(self.image_preprocess().image_size),
        )  # fmt: skip

    def image_preprocess(self) -> ImagePreprocess:
        """The attached model's photo preprocessing (its backbone's mean, std, interpolation);
        ImageNet values at image_size when no trainer has attached a model."""
        net = getattr(getattr(self.trainer, "lightning_module", None), "net", None)
        size = self.hparams.image_size
        return getattr(net, "preprocess", None) or (
            ImagePreprocess(size) if size else ImagePreprocess()
        )

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
        if hp.shards and stage in ("fit", "validate"):  # the scale extra (docs/scale.md)
            from mmdetect.data.streaming import setup_shards

            return setup_shards(self, stage)
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
            if self.price_stats is None:  # the training split only: never validation or test
                self.price_stats = fit_price_stats(it.listing.price for it in train)
                log.info("price statistics (training split): %s", self.price_stats)
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
        if self.hparams.shards:
            from mmdetect.data.streaming import pos_weight

            return pos_weight(self.shard_manifest, self.hparams.taxonomy, max_weight)
        ds = self.datasets["train"]
        labels = torch.stack([label_vector(it.listing.labels, ds.taxonomy) for it in ds.items])
        pos = labels.sum(0)
        neg = labels.shape[0] - pos
        return (neg / pos.clamp(min=1)).clamp(1.0, max_weight)

    def state_dict(self) -> dict[str, float]:
        """What a checkpoint stores of the datamodule: the fitted price statistics."""
        stats = self.price_stats
        state = {} if stats is None else {"price_mean": stats.mean, "price_std": stats.std}
        if getattr(self, "shard_train_loader", None) is not None:  # data.shards: resume mid-epoch
            state["train_loader"] = self.shard_train_loader.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint's statistics win over the ones setup() fitted (resume, test, predict)."""
        self.shard_loader_state = state.get("train_loader")  # applied by scale.shard_loader
        if "price_mean" in state:
            stats = PriceStats(float(state["price_mean"]), float(state["price_std"]))
            if self.price_stats is not None and stats != self.price_stats:
                log.warning("price statistics %s from the checkpoint replace %s", stats,
                            self.price_stats)  # fmt: skip
            self.price_stats = stats

    def resolved_price_stats(self) -> PriceStats:
        """The fitted statistics; the legacy constants (with a warning, and not stored as if
        fitted) when there are none: an old checkpoint, or no training split read."""
        if self.price_stats is not None:
            return self.price_stats
        log.warning(
            "no fitted price statistics (an old checkpoint, or no training split): using the "
            "legacy constants %s",
            LEGACY_PRICE_STATS,
        )
        return LEGACY_PRICE_STATS

    def loader(self, name: str, shuffle: bool) -> DataLoader:
        hp = self.hparams
        if hp.shards and name in ("train", "val"):
            from mmdetect.data.streaming import shard_loader

            return shard_loader(self, name, shuffle)
        stats = self.resolved_price_stats()
        self.datasets[name].price_mean, self.datasets[name].price_std = stats.mean, stats.std
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
            collate_fn=partial(
                collate_listings, pad_id=pad_id, image_size=self.image_preprocess().image_size
            ),
            pin_memory=hp.pin_memory,
            prefetch_factor=hp.prefetch_factor if hp.num_workers > 0 else None,
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
