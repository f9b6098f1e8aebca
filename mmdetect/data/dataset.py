"""Torch dataset over validated listings: photos decoded in DataLoader workers, text pre-tokenized.

Photos are decoded once, in the worker, and leave it as the transform made them (uint8 from the
photos.py transforms; normalised once per batch by photos.PhotoLoader). A photo that fails there
(changed on disk, or a body corrupt behind a valid header) is masked and counted by reason in
the batch's `photo_problems` [B, len(PHOTO_REASONS)].

The tokenizer is not used here: MeCab's Tagger cannot be pickled into workers, so the caller
tokenizes each snapshot once up front and passes the ids in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mmdetect.data.images import PHOTO_REASONS, ImageProblem, load_image, resolve_image_path
from mmdetect.data.records import Listing

log = logging.getLogger(__name__)

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "fashion",
    "sneakers",
    "bags",
    "electronics",
    "games",
    "books",
    "cosmetics",
    "tickets",
    "toys",
    "handmade",
)


@dataclass(frozen=True)
class PriceStats:
    """Mean and standard deviation of log1p(yen) over the training split's priced listings."""

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"price statistics need a finite mean and std > 0, got {self}")


# Only for a model that has no fitted statistics (checkpoints from before they were fitted):
# the constants every model used then, log1p of about 3,000 yen give or take a factor e**2.
LEGACY_PRICE_STATS = PriceStats(8.0, 2.0)


def fit_price_stats(prices: Iterable[int | None]) -> PriceStats:
    """PriceStats of log1p(price) over the listings that have a price (numpy: population std).

    No priced listing, or a single distinct price, leaves nothing to scale: std 1 then, so the
    feature is simply centred.
    """
    values = np.array([math.log1p(p) for p in prices if p is not None], dtype=np.float64)
    if values.size == 0:
        log.warning("no training listing has a price: price statistics (0, 1)")
        return PriceStats(0.0, 1.0)
    std = float(values.std())
    return PriceStats(float(values.mean()), std if std > 1e-6 else 1.0)


def price_features(price: int | None, mean: float, std: float) -> tuple[float, bool]:
    """log1p yen standardised by the training statistics, and a presence flag; (0, False) for a
    missing price."""
    if price is None:
        return 0.0, False
    if price < 0:
        raise ValueError(f"price must be >= 0 yen, got {price}")
    return (math.log1p(price) - mean) / std, True


def category_index(categories: Sequence[str]) -> dict[str, int]:
    """Known categories map to 0..n-1; anything else (None, unseen) to the bucket n."""
    return {name: i for i, name in enumerate(categories)}


def label_vector(labels: Sequence[str] | None, taxonomy: Sequence[str]) -> torch.Tensor:
    """Multi-hot float vector; an unlabeled listing gets NaN so it can never pass as clean."""
    if labels is None:
        return torch.full((len(taxonomy),), float("nan"))
    index = {name: i for i, name in enumerate(taxonomy)}
    vec = torch.zeros(len(taxonomy))
    for name in labels:
        vec[index[name]] = 1.0
    return vec


@dataclass(frozen=True)
class Item:
    """A listing and the snapshot directory its photo paths are relative to. `paths`, when given,
    are its photos already resolved and checked inside that directory (serve.read_items), so a
    worker opens them without resolving each path again."""

    listing: Listing
    root: Path
    paths: tuple[Path, ...] | None = None


class ListingDataset(Dataset):
    """Items to tensors: token ids, up to `max_photos` transformed photos, price, category, labels."""

    def __init__(
        self,
        items: Sequence[Item],
        token_ids: Sequence[Sequence[int]],
        taxonomy: Sequence[str],
        categories: Sequence[str],
        image_transform: Callable,
        max_photos: int,
        price_mean: float,
        price_std: float,
        draft_side: int | None = None,
    ):
        if len(items) != len(token_ids):
            raise ValueError(f"{len(items)} items but {len(token_ids)} token sequences")
        self.items, self.token_ids = list(items), list(token_ids)
        self.taxonomy, self.categories = tuple(taxonomy), category_index(categories)
        self.transform, self.max_photos = image_transform, max_photos
        # the training split's statistics (DetectorDataModule.loader sets them once known)
        self.price_mean, self.price_std = price_mean, price_std
        self.draft_side = draft_side  # load_image(min_side=...): JPEGs decoded at a DCT scale

    def __len__(self) -> int:
        return len(self.items)

    def photos(self, item: Item) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Up to max_photos transformed photos, and the count of failed ones per reason."""
        out, failed = [], torch.zeros(len(PHOTO_REASONS), dtype=torch.long)
        # dict.fromkeys: a listing read with check_images=False may repeat a path; decode it once
        refs = item.paths if item.paths is not None else dict.fromkeys(item.listing.images)
        for ref in list(refs)[: self.max_photos]:
            try:
                path = ref if item.paths is not None else resolve_image_path(item.root, ref)
                out.append(self.transform(load_image(path, self.draft_side)))
            except ImageProblem as exc:  # changed on disk, or a corrupt body: mask it, count it
                failed[PHOTO_REASONS.index(exc.reason)] += 1
                log.warning("%s: photo %s skipped: %s", item.listing.id, ref, exc)
        return out, failed

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        x = item.listing
        price, has_price = price_features(x.price, self.price_mean, self.price_std)
        photos, failed = self.photos(item)
        return {
            "index": i,
            "input_ids": torch.tensor(self.token_ids[i], dtype=torch.long),
            "photos": photos,
            "photo_problems": failed,
            "price": price,
            "price_mask": has_price,
            "category_id": self.categories.get(x.category or "", len(self.categories)),
            "labels": label_vector(x.labels, self.taxonomy),
        }


def collate_listings(samples: list[dict], pad_id: int = 0, image_size: int = 64) -> dict:
    """Pad text to the longest sequence and photos to the most photos (at least one slot).

    Photos keep their dtype (uint8 from the photos.py transforms, float32 from a transform that
    normalises); a batch without any photo gets float32 zeros."""
    b = len(samples)
    length = max(len(s["input_ids"]) for s in samples)
    k = max(1, max(len(s["photos"]) for s in samples))
    dtype = next((s["photos"][0].dtype for s in samples if s["photos"]), torch.float32)
    input_ids = torch.full((b, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    images = torch.zeros((b, k, 3, image_size, image_size), dtype=dtype)
    image_mask = torch.zeros((b, k), dtype=torch.bool)
    for row, s in enumerate(samples):
        n = len(s["input_ids"])
        input_ids[row, :n] = s["input_ids"]
        attention_mask[row, :n] = 1
        for j, photo in enumerate(s["photos"]):
            images[row, j] = photo
            image_mask[row, j] = True
    none = torch.zeros(len(PHOTO_REASONS), dtype=torch.long)
    return {
        "index": torch.tensor([s["index"] for s in samples]),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "images": images,
        "image_mask": image_mask,
        "price": torch.tensor([s["price"] for s in samples], dtype=torch.float32),
        "price_mask": torch.tensor([s["price_mask"] for s in samples], dtype=torch.bool),
        "category_id": torch.tensor([s["category_id"] for s in samples], dtype=torch.long),
        "labels": torch.stack([s["labels"] for s in samples]),
        "photo_problems": torch.stack([s.get("photo_problems", none) for s in samples]),
    }
