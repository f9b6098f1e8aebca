"""Listings to model batches for a bundle's preprocess.json (Predictor, export's parity check).

The serving data path: text tokenized once up front; photos (resolved by predict_cli.read_items,
or resolved here from the listing) opened once in the DataLoader workers, header-checked there
when read_items did not (OpenOnceDataset), decoded to uint8 with the eval ops of build_transforms;
one normalisation per batch with the bundle's mean and std (data/photos.py); photos that fail in
a worker counted by reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmdetect.common.normalization import IMAGENET_MEAN, IMAGENET_STD
from mmdetect.data.dataset import Item, ListingDataset, collate_listings
from mmdetect.data.images import PHOTO_REASONS, ImageProblem, load_checked
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


def build_items_dataset(
    items: Sequence[Item], tokenizer, pre: dict, checked: bool = True
) -> ListingDataset:
    """build_dataset over Items, whose photos may come already resolved (read_items).
    checked False: their photos were resolved but not opened yet (OpenOnceDataset)."""
    listings = [it.listing for it in items]
    pairs = [(x.title, x.description) for x in listings]
    ids = encode_batch(tokenizer, pairs, pre["max_length"], pre.get("normalize"))
    size = pre["image_size"]
    transform = eval_photo(size, photo_settings(pre)[2])
    args = (pre["taxonomy"], pre["categories"], transform, pre["max_photos"])
    cls = ListingDataset if checked else OpenOnceDataset
    return cls(items, ids, *args, pre["price_mean"], pre["price_std"], draft_side(size))


class OpenOnceDataset(ListingDataset):
    """ListingDataset over Items whose photos are resolved (`paths`) but not yet checked: each is
    opened once, here (in the worker), checked from its header as check_header does, and decoded
    from that same open if it is among the first `max_photos` that pass; the others are checked
    only, as read_items would have. Each sample says what failed (`photo_notes`: reason and
    message), including the note that a listing's photos all failed."""

    def photos(self, item: Item) -> tuple[list[torch.Tensor], torch.Tensor]:
        out, failed, notes, passed = [], torch.zeros(len(PHOTO_REASONS), dtype=torch.long), [], 0
        for path in item.paths or ():
            try:
                img = load_checked(path, self.draft_side, decode=passed < self.max_photos)
                if img is not None:
                    out.append(self.transform(img))
                passed += 1
            except ImageProblem as exc:
                passed += exc.header_passed  # a body that fails to decode still took its slot
                failed[PHOTO_REASONS.index(exc.reason)] += 1
                notes.append((exc.reason, f"{item.listing.id}: images: {exc}"))
        if item.paths and not passed:
            notes.append(("all_photos_failed", f"{item.listing.id}: kept as a no-photo listing"))
        self.notes = notes  # read by __getitem__ right after this call, in the same thread
        return out, failed

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        return {**sample, "photo_notes": self.notes}


def collate_noted(samples: list[dict], pad_id: int = 0, image_size: int = 64) -> dict:
    """collate_listings, keeping each sample's `photo_notes` (OpenOnceDataset) as a list."""
    batch = collate_listings(samples, pad_id, image_size)
    if "photo_notes" in samples[0]:
        batch["photo_notes"] = [s["photo_notes"] for s in samples]
    return batch


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
    collate = partial(collate_noted, pad_id=pre["pad_id"], image_size=pre["image_size"])
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
    if "photo_notes" in batch:  # OpenOnceDataset: what each photo's one open found
        for notes in batch["photo_notes"]:
            for reason, message in notes:
                problems.add(reason, message)
        return
    failed = batch["photo_problems"]
    for row, col in failed.nonzero().tolist():
        where = f"{ids[int(batch['index'][row])]}: a photo failed in the data loader"
        problems.add(PHOTO_REASONS[col], where, int(failed[row, col]))
