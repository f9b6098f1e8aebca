"""Listings to model batches for a bundle's preprocess.json (Predictor, export's parity check).

The serving data path: text tokenized once up front; photos (already header-checked and resolved
by serve.read_items, or resolved here from the listing) decoded once in DataLoader workers to
uint8 with the eval ops of build_transforms; one normalisation per batch with the bundle's mean
and std (data/photos.py); photos that fail in a worker counted by reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from torch.utils.data import DataLoader

from mmdetect.data.dataset import Item, ListingDataset, collate_listings
from mmdetect.data.images import PHOTO_REASONS
from mmdetect.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from mmdetect.data.photos import PhotoCountBatches, PhotoLoader, draft_side, eval_photo
from mmdetect.data.records import Listing, Problems
from mmdetect.data.tokenize import encode_batch


def photo_settings(pre: dict) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(mean, std, interpolation) of the bundle's photos; ImageNet bilinear where absent."""
    mean = tuple(pre.get("mean", IMAGENET_MEAN))
    std = tuple(pre.get("std", IMAGENET_STD))
    return mean, std, pre.get("interpolation", "bilinear")


def build_dataset(listings: Sequence[Listing], root: Path, tokenizer, pre: dict) -> ListingDataset:
    """Listings to tensors exactly as DetectorDataModule.build_dataset(train=False) does."""
    return build_items_dataset([Item(x, Path(root)) for x in listings], tokenizer, pre)


def build_items_dataset(items: Sequence[Item], tokenizer, pre: dict) -> ListingDataset:
    """build_dataset over Items, whose photos may come already resolved (read_items)."""
    listings = [it.listing for it in items]
    ids = encode_batch(tokenizer, [(x.title, x.description) for x in listings], pre["max_length"])
    size = pre["image_size"]
    transform = eval_photo(size, photo_settings(pre)[2])
    args = (pre["taxonomy"], pre["categories"], transform, pre["max_photos"])
    return ListingDataset(items, ids, *args, pre["price_mean"], pre["price_std"], draft_side(size))


def photo_counts(dataset: ListingDataset) -> list[int]:
    """Photos each listing will try to load (before a failure in the worker)."""
    return [
        len(it.paths if it.paths is not None else set(it.listing.images)) for it in dataset.items
    ]


def build_loader(
    dataset: ListingDataset,
    pre: dict,
    batch_size: int,
    num_workers: int = 0,
    pin: bool = False,
    normalize: bool = True,
    bucket: bool = False,
) -> DataLoader:
    """Batches padded by collate_listings, as DetectorDataModule.loader does: in order, or with
    `bucket` grouped by photo count (rows come back by each batch's `index`). `normalize`: float
    photos as the model takes them; False leaves them uint8 (normalise on the device)."""
    collate = partial(collate_listings, pad_id=pre["pad_id"], image_size=pre["image_size"])
    common = dict(num_workers=num_workers, collate_fn=collate, pin_memory=pin)
    if bucket:
        sampler = PhotoCountBatches(photo_counts(dataset), batch_size, pre["max_photos"])
        common["batch_sampler"] = sampler
    else:
        common.update(batch_size=batch_size, shuffle=False)
    if not normalize:
        return DataLoader(dataset, **common)
    mean, std, _ = photo_settings(pre)
    return PhotoLoader(dataset, mean=mean, std=std, **common)


def count_photo_problems(batch: dict, ids: Sequence[str], problems: Problems) -> None:
    """Add the photos that failed in the workers (per listing, by reason) to `problems`."""
    failed = batch["photo_problems"]
    for row, col in failed.nonzero().tolist():
        where = f"{ids[int(batch['index'][row])]}: a photo failed in the data loader"
        problems.add(PHOTO_REASONS[col], where, int(failed[row, col]))
