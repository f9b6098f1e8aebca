"""Training from shards (`data.shards: DIR` in a train config, configs/train/tiny_shards.yaml).

LitData's StreamingDataset reads the chunks of `mmdetect shard`; each DDP rank (and each loader
worker) gets different chunks, the order is reshuffled every epoch, and nothing is held in
memory per listing. Tokenization and photo decoding run in the loader workers; a sample leaves
as the same dict ListingDataset gives (uint8 photos from the same transforms), and ShardLoader
normalises each batch as PhotoLoader does, so the model sees the inputs of the JSONL path.

Resume: the training loader's state (LitData's StreamingDataLoader.state_dict) is stored with
the datamodule's state in every checkpoint and applied to the new loader on `--ckpt_path last`,
mid-epoch: the resumed run sees each remaining listing exactly once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mmdetect.common.extras import require
from mmdetect.data.augment import augment_pairs
from mmdetect.data.dataset import PriceStats, category_index, collate_listings, label_vector
from mmdetect.data.dataset import price_features as price_feature
from mmdetect.data.images import PHOTO_REASONS, ImageProblem
from mmdetect.data.photos import normalize_batch
from mmdetect.data.shard_format import FORMAT, MANIFEST
from mmdetect.data.shard_photos import decode_photo, unpack
from mmdetect.data.tokenize import encode_batch, load_tokenizer

log = logging.getLogger(__name__)
litdata = require("litdata", "training from shards (data.shards)")


class ShardError(ValueError):
    """Shards that cannot feed this model (missing manifest, other taxonomy, smaller photos)."""


def read_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: not a shard manifest ({exc}); run `mmdetect shard`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: format is not {FORMAT}")
    return manifest


def check_fit(manifest: dict, root: str, taxonomy: Sequence[str], image_size: int,
              max_photos: int) -> None:  # fmt: skip
    """ShardError when the shards cannot give this model what the JSONL path would."""
    photos = manifest["photos"]
    if list(manifest["taxonomy"]) != list(taxonomy):
        raise ShardError(
            f"{root}: taxonomy {manifest['taxonomy']} != data.taxonomy {list(taxonomy)}"
        )
    if photos["image_size"] < image_size:
        raise ShardError(f"{root}: photos stored at {photos['image_size']} px, the model takes "
                         f"{image_size} px: shard again with --image-size {image_size}")  # fmt: skip
    if photos["max_photos"] < max_photos:
        raise ShardError(f"{root}: {photos['max_photos']} photos stored per listing, the model "
                         f"takes {max_photos}: shard again with --max-photos {max_photos}")  # fmt: skip
    for name in ("train", "val"):
        if name not in manifest["subsets"]:
            raise ShardError(f"{root}: no {name} subset: shard with --split time|hash")


def price_stats(manifest: dict) -> PriceStats:
    """fit_price_stats' answer for the training subset, from the moments the manifest holds."""
    m = manifest.get("price_log1p")
    if not m:
        return PriceStats(0.0, 1.0)
    return PriceStats(m["mean"], m["std"] if m["std"] > 1e-6 else 1.0)


def pos_weight(manifest: dict, taxonomy: Sequence[str], max_weight: float) -> torch.Tensor:
    """DetectorDataModule.pos_weight from the training subset's counts."""
    train = manifest["subsets"]["train"]
    pos = torch.tensor([float(train["labels"][name]) for name in taxonomy])
    neg = train["labeled"] - pos
    return (neg / pos.clamp(min=1)).clamp(1.0, max_weight)


class ShardDataset(litdata.StreamingDataset):
    """Shard samples to ListingDataset's dict, in the loader workers."""

    def __init__(
        self, input_dir: str, tokenizer: str, max_length: int, taxonomy: Sequence[str],
        categories: Sequence[str], transform: Callable, max_photos: int, shuffle: bool,
        seed: int = 0, **kwargs: Any,
    ):  # fmt: skip
        super().__init__(input_dir, shuffle=shuffle, seed=seed, **kwargs)
        self.tokenizer_path, self.max_length = tokenizer, max_length
        self.taxonomy, self.categories = tuple(taxonomy), category_index(categories)
        # not `transform`: StreamingDataset applies an attribute of that name to the raw sample
        self.photo_transform, self.max_photos = transform, max_photos
        self.price_mean, self.price_std = math.nan, math.nan  # set by the loader
        self._tokenizer = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tokenizer"] = None  # each worker loads its own
        return state

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path)
        return self._tokenizer

    def __getitem__(self, index: Any) -> dict:
        raw = super().__getitem__(index)
        return self.to_sample(raw, int(getattr(index, "index", index)))

    def to_sample(self, raw: dict, index: int) -> dict:
        x = json.loads(raw["listing"])
        pair, norm = [(x["title"], x["description"])], getattr(self, "normalize", None)
        augment = getattr(self, "augment", None)
        if augment:  # seeded by listing id: the evasion the in-memory path gives this listing
            pair = augment_pairs(pair, [x["id"]], augment)
        ids = encode_batch(self.tokenizer, pair, self.max_length, norm)[0]
        photos, failed = [], torch.zeros(len(PHOTO_REASONS), dtype=torch.long)
        for data in unpack(raw["photos"])[: self.max_photos]:
            try:
                photos.append(self.photo_transform(decode_photo(data)))
            except ImageProblem as exc:
                failed[PHOTO_REASONS.index(exc.reason)] += 1
        price, has_price = price_feature(x["price"], self.price_mean, self.price_std)
        return {
            "index": index,
            "id": x["id"],
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "photos": photos,
            "photo_problems": failed,
            "price": price,
            "price_mask": has_price,
            "category_id": self.categories.get(x["category"] or "", len(self.categories)),
            "labels": label_vector(x["labels"], self.taxonomy),
        }


def collate(samples: list[dict], pad_id: int, image_size: int) -> dict:
    """collate_listings, plus the listings' ids (what the resume test counts)."""
    return {**collate_listings(samples, pad_id, image_size), "ids": [s["id"] for s in samples]}


class ShardLoader(litdata.StreamingDataLoader):
    """StreamingDataLoader whose batches leave normalised, as PhotoLoader's.

    Its state_dict is LitData's: the samples yielded so far. Lightning's fit loop fetches a
    loader that has a length (this one) without prefetching, so at a checkpoint that is exactly
    the batches trained (tests/integration/test_scale.py counts them after a kill -9)."""

    def __init__(self, *args: Any, mean: Sequence[float], std: Sequence[float], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mean, self.std = tuple(mean), tuple(std)

    def __iter__(self) -> Iterator[dict]:
        for batch in super().__iter__():
            yield normalize_batch(batch, self.mean, self.std)


def setup_shards(dm: Any, stage: str) -> None:
    """DetectorDataModule.setup for `data.shards`: train/val ShardDatasets, price statistics
    from the manifest (unless pinned or restored), the manifest kept for pos_weight."""
    hp = dm.hparams
    if stage not in ("fit", "validate") or "train" in dm.datasets:
        return
    manifest = read_manifest(hp.shards)
    size = dm.image_preprocess().image_size
    check_fit(manifest, hp.shards, hp.taxonomy, size, hp.max_photos)
    dm.shard_manifest = manifest
    if dm.price_stats is None:
        dm.price_stats = price_stats(manifest)
    for name, train in (("train", True), ("val", False)):
        dm.datasets[name] = ShardDataset(
            str(Path(hp.shards) / name), dm.hparams.tokenizer, hp.max_length, hp.taxonomy,
            hp.categories, dm.photo_transform(train)[0], hp.max_photos, shuffle=train,
            seed=int(torch.initial_seed() % 2**31),
        )  # fmt: skip
        dm.datasets[name].normalize = hp.get("normalize")  # as DetectorDataModule.build_dataset
        dm.datasets[name].augment = hp.get("augment") if train else None  # training split only
    log.info("shards %s: %s", hp.shards, {k: v["listings"] for k, v in manifest["subsets"].items()})


def shard_loader(dm: Any, name: str, shuffle: bool) -> ShardLoader:
    """DetectorDataModule.loader for `data.shards` (`shuffle` is the dataset's own)."""
    hp = dm.hparams
    stats = dm.resolved_price_stats()
    ds = dm.datasets[name]
    ds.price_mean, ds.price_std = stats.mean, stats.std
    _, mean, std = dm.photo_transform(train=False)
    pad_id = dm.tokenizer.pad_token_id or 0
    loader = ShardLoader(
        ds, mean=mean, std=std, batch_size=hp.batch_size,
        num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0,
        collate_fn=partial(collate, pad_id=pad_id, image_size=dm.image_preprocess().image_size),
        pin_memory=hp.pin_memory, drop_last=False,
    )  # fmt: skip
    if name == "train":
        # Restored by DetectorDataModule.load_state_dict before this loader exists: Lightning's
        # own restore of loader states (fit_loop "combined_loader") comes after the loader was
        # built for estimated_stepping_batches (configure_optimizers), so it is never applied.
        state = getattr(dm, "shard_loader_state", None)
        if state:
            loader.load_state_dict(state)
            dm.shard_loader_state = None
        dm.shard_train_loader = loader
    return loader
