"""Photos in shards: decoded once with the training path's decode, shrunk to the training side,
packed per listing into one bytes value.

A photo decoded fully whose shorter side is already at most the training side keeps its pixels
exactly (a JPEG its original bytes, any other format a lossless PNG), so it gives the same
tensors as the JSONL path. A larger one, or a JPEG decoded at a DCT scale, is resized as the
eval transform resizes it (shorter side to the training side, antialiased) and re-encoded once
as JPEG: the only difference from the JSONL path is that re-encoding (q95 4:4:4 on data_samples
at 64 px: 0.9 levels of 255 mean absolute difference per photo, 1.6 at most;
tests/unit/test_shard.py).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from mmdetect.data.images import FORMATS, ImageProblem, load_image_full, to_rgb
from mmdetect.data.photos import draft_side, interpolation_mode

MAGIC = b"MMP1"
MAX_BLOB_PHOTOS = 255


def shrink(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Shorter side to `size` with the eval transform's resize (uint8, antialiased)."""
    hwc = torch.from_numpy(np.array(img))
    chw = F.resize(hwc.permute(2, 0, 1), [size], interpolation_mode(interpolation), antialias=True)
    return Image.fromarray(chw.permute(1, 2, 0).contiguous().numpy())


def encode_photo(path: Path, size: int, quality: int, interpolation: str = "bilinear") -> bytes:
    """One checked photo as stored bytes (see the module docstring); ImageProblem on failure."""
    img, raw = load_image_full(path, draft_side(size))  # exactly ListingDataset's decode
    buf = io.BytesIO()
    if min(img.size) <= size and raw is not None:  # decoded fully: these bytes give its pixels
        if raw[:3] == b"\xff\xd8\xff":  # a JPEG: its own bytes decode to the same pixels
            return raw
        img.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()
    # 4:4:4: PIL's default 4:2:0 halves the colour resolution, the largest part of the error
    shrink(img, size, interpolation).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def pack(blobs: list[bytes]) -> bytes:
    """MAGIC, a count byte, the lengths (uint32 LE), then the photos."""
    if len(blobs) > MAX_BLOB_PHOTOS:
        raise ValueError(f"at most {MAX_BLOB_PHOTOS} photos per listing, got {len(blobs)}")
    head = MAGIC + struct.pack(f"<B{len(blobs)}I", len(blobs), *map(len, blobs))
    return head + b"".join(blobs)


def unpack(blob: bytes) -> list[bytes]:
    """The photos `pack` stored; ValueError for a blob it did not write."""
    if blob[:4] != MAGIC or len(blob) < 5:
        raise ValueError("not a packed photo blob")
    n = blob[4]
    lengths = struct.unpack_from(f"<{n}I", blob, 5)
    pos, out = 5 + 4 * n, []
    for length in lengths:
        out.append(blob[pos : pos + length])
        pos += length
    if pos != len(blob):
        raise ValueError(f"packed photo blob: {len(blob)} bytes, lengths say {pos}")
    return out


def decode_photo(data: bytes) -> Image.Image:
    """Stored bytes to RGB with the allowed decoders; ImageProblem(image_corrupt) on failure."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            img.load()
            return to_rgb(img)
    except Exception as exc:  # noqa: BLE001 (shard bytes are read like any hostile file)
        raise ImageProblem("image_corrupt", f"stored photo: cannot decode: {exc}") from exc
