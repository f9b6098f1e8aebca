"""The scoring data path as it was before data/photos.py, kept callable for the benchmark.

Photos were validated by a decode in the main process (check_image), resolved again in the
DataLoader worker, decoded again there, resized and normalised per photo as float32
(build_transforms(train=False)), and crossed to the main process as float. Same model, same
batches otherwise: the benchmark asserts both paths give the same probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from mmdetect.data.dataset import Item, ListingDataset
from mmdetect.data.images import check_image
from mmdetect.data.tokenize import encode_batch
from mmdetect.models.image import ImagePreprocess, build_transforms
from mmdetect.serving.predictor import Predictor, build_loader
from mmdetect.serving.stream import RunSummary, read_items


def read_legacy(fh, path: Path, root: Path, taxonomy: Sequence[str], summary: RunSummary
                ) -> Iterator[Item]:  # fmt: skip
    """serve.read_items with the full-decode photo check and no resolved paths."""
    for item in read_items(fh, path, root, taxonomy, summary, check=check_image):
        yield Item(item.listing, root)


class LegacyPredictor(Predictor):
    """Predictor with the float-per-photo dataset and no paths resolved ahead."""

    def predict_items(self, items: Sequence[Item], problems=None) -> np.ndarray:
        out = np.zeros((len(items), len(self.taxonomy)), dtype=np.float32)
        if not items:
            return out
        pre = self.bundle.preprocess
        items = [Item(it.listing, it.root) for it in items]  # resolved again in the worker
        pairs = [(it.listing.title, it.listing.description) for it in items]
        ids = encode_batch(self.tokenizer, pairs, pre["max_length"])
        transform = build_transforms(ImagePreprocess.from_doc(pre), train=False)
        args = (pre["taxonomy"], pre["categories"], transform, pre["max_photos"])
        dataset = ListingDataset(items, ids, *args, pre["price_mean"], pre["price_std"])
        with torch.no_grad():
            for batch in build_loader(dataset, pre, self.batch_size, self.num_workers):
                probs = self.bundle.module(*(batch[name] for name in pre["inputs"]))
                out[batch["index"].numpy()] = probs.float().cpu().numpy()
        return out
