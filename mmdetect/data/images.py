"""Photo paths and decoding: any allowed image file to 8-bit RGB, with clear reasons on failure.

Every failure, whatever the path or the bytes, is an ImageProblem with a counted reason: one bad
photo costs that photo, never the listing or the run.
"""

from __future__ import annotations

import contextlib
import io
import math
import mmap
import os
import stat
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PIL import Image, ImageFile

# 40 Mpx: far above any marketplace photo (uploads are resized to a few Mpx), far below what
# exhausts a worker's memory; PIL's own bomb limit (89 Mpx) is checked only after opening.
MAX_PIXELS = 40_000_000
# Resize to the model's side scales the long side by the aspect ratio: 1 x 40M px would become
# 64 x 2.6G px. A ratio of 50 keeps that under 64 x 3200 and admits any real panorama.
MAX_ASPECT = 50
# At most this many photos of a listing are checked and kept (marketplaces allow about 10-20;
# the model uses fewer, `max_photos`); the rest are dropped and counted, so one listing with a
# thousand paths costs what ten cost.
MAX_PHOTOS = 10
# Validation decodes photos up to this size fully; larger ones get a cheaper whole-file check
# (JPEG: scaled 1/8 decode; PNG: chunk CRCs; others: header only), see check_image.
FULL_CHECK_PIXELS = 4_000_000
# A decoded photo larger than this is shrunk by an integer box filter (JPEG: scaled decoding) to
# at most this size before the transforms see it: the model resizes to a few hundred pixels
# anyway, and resizing 40 Mpx costs 0.45 s and 400 MB per photo, 10 Mpx a quarter of that.
DECODE_MAX_PIXELS = 16_000_000
# A photo file up to this size is read into memory at its one open: the decoder parses the bytes
# (no system call per marker) and the structure check scans them (no second open, no mmap).
# Larger files (far above any marketplace photo) stay on disk and are mapped, as before.
READ_WHOLE_BYTES = 16 << 20
# Decoders that are built into Pillow and read untrusted files without external programs (EPS
# would run Ghostscript). The JPEG decoder also opens MPO, as many phones save their JPEGs.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
NAME_MAX = 255  # bytes per path component on Linux/macOS file systems
# Every reason an ImageProblem can carry, in a fixed order (the data loader counts by index).
PHOTO_REASONS = ("image_bad_path", "image_path_escapes", "image_missing", "image_corrupt",
                 "image_too_large", "image_bad_shape")  # fmt: skip
T = TypeVar("T")


class ImageProblem(Exception):
    """A photo that cannot be used; `reason` is one of the snapshot problem reasons."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.header_passed = False  # set by load_checked: the header was fine, the body not


def resolve_image_path(root: Path, rel: str, resolved_root: Path | None = None) -> Path:
    """Resolve `rel` inside the snapshot `root`; reject absolute paths, `..` and outside symlinks,
    NUL bytes, over-long names, symlink loops and anything that is not a regular file.
    `resolved_root`: root.resolve(), when the caller resolves many paths under one root."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise ImageProblem("image_bad_path", f"not a usable path: {rel!r}")
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")):
        raise ImageProblem("image_path_escapes", f"image path must be relative: {rel!r}")
    if any(len(os.fsencode(part)) > NAME_MAX for part in Path(rel).parts):
        raise ImageProblem("image_bad_path", f"a path component is over {NAME_MAX} bytes: {rel!r}")
    try:
        root_resolved = resolved_root or root.resolve()
        plain = _plain_file(root_resolved, rel)
        if plain is not None:
            return plain
        resolved = (root_resolved / rel).resolve()
        if not resolved.is_relative_to(root_resolved):
            raise ImageProblem("image_path_escapes", f"image path leaves the snapshot: {rel!r}")
        is_file = resolved.is_file()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: symlink loop (3.11)
        raise ImageProblem("image_bad_path", f"cannot resolve {rel!r}: {exc}") from None
    if not is_file:
        raise ImageProblem("image_missing", f"image file not found (or not a file): {rel!r}")
    return resolved


def _plain_file(root_resolved: Path, rel: str) -> Path | None:
    """root_resolved / rel when that is a regular file reached without `..` or any symlink: then
    it is what Path.resolve returns, found at one lstat per component of `rel` instead of a walk
    from /. None for anything else (missing, a symlink, `..`): the caller resolves it in full,
    with its reasons."""
    parts = Path(rel).parts
    if not parts or ".." in parts:
        return None
    path = str(root_resolved)
    try:
        for part in parts:
            path = os.path.join(path, part)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                return None
    except (OSError, ValueError):
        return None
    return Path(path) if stat.S_ISREG(mode) else None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited on white (photos are shown on white)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16/32-bit greyscale: PIL's convert("L") clips instead of scaling, so scale by hand.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _check_size(img: Image.Image, path: Path) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageProblem(
            "image_too_large",
            f"{path.name}: {w}x{h} = {w * h} px exceeds the {MAX_PIXELS} px limit",
        )
    if w < 1 or h < 1 or max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageProblem("image_bad_shape", f"{path.name}: {w}x{h}: aspect over {MAX_ASPECT}:1")


def _open(path: Path, use: Callable[[Image.Image, bytes | None], T]) -> T:
    """Open with the allowed decoders, check the header's size, run `use(img, data)` (data: the
    file's bytes when it was read whole, READ_WHOLE_BYTES; else None); ImageProblem for anything
    that goes wrong (hostile bytes reach decoder code paths that raise odd types)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as fh:
                small = os.fstat(fh.fileno()).st_size <= READ_WHOLE_BYTES
                data = fh.read() if small else None
            with Image.open(io.BytesIO(data) if small else path, formats=FORMATS) as img:
                _check_size(img, path)
                return use(img, data)
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem("image_too_large", f"{path.name}: {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageProblem("image_missing", f"image file not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001 (OSError, SyntaxError, struct.error, MemoryError...)
        raise ImageProblem("image_corrupt", f"{path.name}: cannot decode: {exc}") from exc


def _shrink_factor(w: int, h: int) -> int:
    """The smallest integer factor that brings w x h to at most DECODE_MAX_PIXELS."""
    return math.ceil(math.sqrt(w * h / DECODE_MAX_PIXELS)) if w * h > DECODE_MAX_PIXELS else 1


def _decode(img: Image.Image, min_side: int | None) -> Image.Image:
    """An opened photo's pixels as RGB, at most DECODE_MAX_PIXELS (load_image's decode)."""
    factor = _shrink_factor(*img.size)
    if img.format in ("JPEG", "MPO"):
        if min_side:
            img.draft(img.mode, (min_side, min_side))
        elif factor > 1:
            img.draft(img.mode, (img.size[0] // factor, img.size[1] // factor))
    img.load()
    rgb = to_rgb(img)
    factor = _shrink_factor(*rgb.size)
    return rgb.reduce(factor) if factor > 1 else rgb


def load_image(path: Path, min_side: int | None = None) -> Image.Image:
    """Decode a photo into RGB, shrunk to at most DECODE_MAX_PIXELS. Raises ImageProblem with a
    reason on any failure. With `min_side`, a JPEG is decoded at the smallest DCT scale (1/2,
    1/4, 1/8) that keeps both sides at least `min_side` (PIL draft mode: less work, other pixels
    than a full decode, so every consumer of one model must pass the same value)."""
    return _open(path, lambda img, _: _decode(img, min_side))


def load_image_full(path: Path, min_side: int | None = None) -> tuple[Image.Image, bytes | None]:
    """load_image, and the file's bytes when those are all the pixels it declares (None when
    decoded at a DCT scale or shrunk to DECODE_MAX_PIXELS): the bytes of the same open, read
    again only for a file over READ_WHOLE_BYTES."""

    def use(img: Image.Image, data: bytes | None) -> tuple[Image.Image, bytes | None]:
        declared = img.size  # draft() changes img.size
        rgb = _decode(img, min_side)
        if rgb.size != declared:
            return rgb, None
        return rgb, data if data is not None else path.read_bytes()

    return _open(path, use)


def load_checked(
    path: Path, min_side: int | None = None, decode: bool = True
) -> Image.Image | None:
    """check_header, then (with `decode`) load_image's decode, on one open of the file: what a
    photo that was only resolved so far goes through. Raises ImageProblem like both; its
    `header_passed` says whether the failure came after the header check (in the decode)."""
    passed = []

    def use(img: Image.Image, data: bytes | None) -> Image.Image | None:
        _check_complete(img, path, data)
        passed.append(True)
        return _decode(img, min_side) if decode else None

    try:
        return _open(path, use)
    except ImageProblem as exc:
        exc.header_passed = bool(passed)
        raise


def check_image(path: Path) -> tuple[int, int]:
    """Validate a photo at bounded cost; returns its size. Raises ImageProblem like load_image.

    Up to FULL_CHECK_PIXELS the photo is decoded fully (catches every truncation). Above, JPEGs
    are decoded at 1/8 scale (the whole stream is still read), PNGs' chunk CRCs are verified
    without inflating, other formats are checked by header only.
    """

    def check(img: Image.Image, _: bytes | None) -> tuple[int, int]:
        w, h = img.size
        if w * h <= FULL_CHECK_PIXELS:
            img.load()
            to_rgb(img)
        elif img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
            img.load()
        else:
            img.verify()
        return w, h

    return _open(path, check)


def check_header(path: Path) -> tuple[int, int]:
    """Validate a photo without decoding any pixel; returns its size. Raises ImageProblem.

    The header gives format, size and pixel limits; a cheap look at the file's structure catches
    most truncations (JPEG: an end-of-image marker after the first scan; PNG: an IEND chunk;
    WebP: the RIFF length; BMP: the declared file size; TIFF: every strip or tile inside the
    file). A body that is corrupt anyway is found by the data loader, which drops that photo and
    counts it (ListingDataset)."""
    return _open(path, lambda img, data: _check_complete(img, path, data))


def _check_complete(img: Image.Image, path: Path, data: bytes | None = None) -> tuple[int, int]:
    """The structure look of check_header, on the file's bytes when `_open` read them whole."""
    size = len(data) if data is not None else os.path.getsize(path)
    fmt, ok = img.format, True
    if fmt in ("JPEG", "MPO", "PNG"):
        with contextlib.ExitStack() as stack:
            buf = data
            if buf is None:
                fh = stack.enter_context(open(path, "rb"))
                buf = stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            if fmt == "PNG":
                ok = buf.rfind(b"IEND") >= 0
            else:  # FF D9 cannot occur inside entropy-coded data (an FF byte there is FF 00)
                sos = buf.find(b"\xff\xda")
                ok = sos >= 0 and buf.find(b"\xff\xd9", sos) >= 0
    elif fmt in ("WEBP", "BMP"):
        if data is not None:
            head = data[:8]
        else:
            with open(path, "rb") as fh:
                head = fh.read(8)
        if fmt == "WEBP":
            ok = struct.unpack("<I", head[4:8])[0] + 8 <= size
        else:  # the declared file size; 0 when the writer left it unset
            ok = struct.unpack("<I", head[2:6])[0] <= size
    elif fmt == "TIFF":
        tags = getattr(img, "tag_v2", {})
        for offsets, counts in ((273, 279), (324, 325)):  # strips, tiles
            pairs = zip(_ints(tags.get(offsets)), _ints(tags.get(counts)), strict=False)
            ok = ok and all(o + n <= size for o, n in pairs)
    if not ok:
        raise ImageProblem("image_corrupt", f"{path.name}: truncated {fmt} file ({size} bytes)")
    return img.size


def _ints(value) -> tuple[int, ...]:
    """A TIFF tag's value as a tuple (one value may come back bare)."""
    return () if value is None else tuple(value) if isinstance(value, tuple | list) else (value,)
