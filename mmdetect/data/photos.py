"""Photos as uint8 until the batch: per-photo resize in the workers, one normalisation per batch.

A worker decodes each photo once (load_image), resizes and crops it as uint8 [3, S, S] (train
augmentations too: torchvision v2 works on uint8), and the batch crosses to the main process as
uint8 [B, K, 3, S, S], a quarter of the float bytes. `normalize_photos` then converts the whole
batch with the same torchvision ops, in the same order, that used to run per photo (ToDtype with
scale, then Normalize): the values are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms import v2

from mmdetect.common.normalization import IMAGENET_MEAN, IMAGENET_STD, interpolation_mode

# A JPEG is decoded at the smallest DCT scale (1/2 to 1/8) that keeps both sides at least this
# many times the model's side: a 4000 px photo for a 224 px model decodes at 500 px, a 128 px
# one for a 64 px model at 64 px (its resize then does nothing). libjpeg's scaled IDCT filters
# as it shrinks; the pixels differ a little from a full decode + antialiased resize (data_samples
# at 64 px: mean 2.8, max 98 levels of 255, docs/BENCHMARKS.md run G). Training (datamodule),
# serving (pipeline), shards and Ray all decode through draft_side: the same pixels everywhere.
DRAFT_FACTOR = 1


def draft_side(image_size: int) -> int:
    """The `min_side` every photo consumer passes to load_image for a model of this photo side."""
    return DRAFT_FACTOR * image_size


def eval_photo(size: int, interpolation: str = "bilinear") -> Callable[[Image.Image], torch.Tensor]:
    """RGB PIL image -> uint8 [3, size, size]: shorter side to `size` (antialiased), centre crop.

    The ops of build_transforms(train=False) before ToDtype, called directly (no v2 dispatch per
    step): the pixels go in as a channels-last view, the layout torch's uint8 resize kernel
    wants, instead of being repacked to CHW first."""
    mode = interpolation_mode(interpolation)

    def transform(img: Image.Image) -> torch.Tensor:
        hwc = torch.from_numpy(np.array(img))  # HWC: seen as CHW, it is channels-last
        chw = F.resize(hwc.permute(2, 0, 1), [size], mode, antialias=True)
        return F.center_crop(chw, [size, size])

    return transform


def uint8_steps(transform: v2.Compose) -> tuple[v2.Compose, tuple[float, ...], tuple[float, ...]]:
    """Split a build_transforms pipeline at ToDtype: (the uint8 steps, mean, std of Normalize).

    The training augmentations keep running per photo, on uint8; what the pipeline did after
    them runs once per batch in normalize_photos, with the mean and std it carried."""
    steps = list(transform.transforms)
    cut = next((i for i, t in enumerate(steps) if isinstance(t, v2.ToDtype)), len(steps))
    norm = [t for t in steps[cut:] if isinstance(t, v2.Normalize)]
    mean = tuple(norm[0].mean) if norm else IMAGENET_MEAN
    std = tuple(norm[0].std) if norm else IMAGENET_STD
    return v2.Compose(steps[:cut]), mean, std


def normalize_photos(
    images: torch.Tensor, mask: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 [B, K, 3, S, S] -> float32 `(x / 255 - mean) / std`, padded slots 0 as before.

    Only the valid photos are converted (batches are padded to their most photos). Float input
    (a transform that already normalised) is returned as it is."""
    if images.is_floating_point():
        return images
    out = torch.zeros(images.shape, dtype=torch.float32, device=images.device)
    valid = images[mask]  # [N, 3, S, S]
    if valid.numel():
        x = F.to_dtype(valid, torch.float32, scale=True)  # torchvision's own op: same bits
        out[mask] = F.normalize(x, list(mean), list(std), inplace=True)
    return out


def normalize_batch(batch: dict, mean: Sequence[float], std: Sequence[float]) -> dict:
    """The batch with its photos normalised (a new dict; the other tensors are shared)."""
    return {**batch, "images": normalize_photos(batch["images"], batch["image_mask"], mean, std)}


class PhotoLoader(DataLoader):
    """A DataLoader whose batches leave with float, normalised photos: workers and collate move
    uint8, the main process normalises once per batch. Every consumer of a loader (Lightning,
    export's parity check, tests) sees the batches it always saw."""

    def __init__(
        self,
        *args: Any,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.mean, self.std = tuple(mean), tuple(std)

    def __iter__(self) -> Iterator[dict]:
        for batch in super().__iter__():
            yield normalize_batch(batch, self.mean, self.std)


class PhotoCountBatches(Sampler[list[int]]):
    """Batches of listings with the same number of photos (up to `max_photos`), so no batch
    carries padded photo slots; within a count, listings keep their order. Batches come out
    ordered by their first listing; callers put rows back by the batch's `index`."""

    def __init__(self, counts: Sequence[int], batch_size: int, max_photos: int):
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(counts):
            groups.setdefault(min(n, max_photos), []).append(i)
        batches = [
            idx[i : i + batch_size]
            for idx in groups.values()
            for i in range(0, len(idx), batch_size)
        ]
        self.batches = sorted(batches, key=lambda b: b[0])

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)
