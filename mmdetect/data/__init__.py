"""Snapshot format, reader and validation, tokenisation, photos, datasets, the shard reader:
files in, checked records and tensors out. Imports common only.
"""

from mmdetect.data.images import MAX_PIXELS, ImageProblem, load_image
from mmdetect.data.reader import SnapshotError, read_snapshot
from mmdetect.data.records import Listing, Problems, Snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

__all__ = [
    "DEFAULT_TAXONOMY",
    "MAX_PIXELS",
    "ImageProblem",
    "Listing",
    "Problems",
    "Snapshot",
    "SnapshotError",
    "load_image",
    "read_snapshot",
]
