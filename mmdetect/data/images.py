"""Photo decoding: any PIL-readable file to 8-bit RGB, with clear reasons on failure."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, ImageFile

# 40 Mpx: far above any marketplace photo, far below what exhausts a worker's memory.
MAX_PIXELS = 40_000_000


class ImageProblem(Exception):
    """A photo that cannot be used; `reason` is one of the snapshot problem reasons."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def resolve_image_path(root: Path, rel: str) -> Path:
    """Resolve `rel` inside the snapshot `root`; reject absolute paths, `..` and outside symlinks."""
    if not rel or Path(rel).is_absolute() or rel.startswith(("/", "\\")):
        raise ImageProblem("image_path_escapes", f"image path must be relative: {rel!r}")
    root_resolved = root.resolve()
    resolved = (root / rel).resolve()
    if not resolved.is_relative_to(root_resolved):
        raise ImageProblem("image_path_escapes", f"image path leaves the snapshot: {rel!r}")
    if not resolved.is_file():
        raise ImageProblem("image_missing", f"image file not found: {rel!r}")
    return resolved


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


def load_image(path: Path) -> Image.Image:
    """Decode a photo fully into RGB. Raises ImageProblem with a reason on any failure."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageProblem(
                        "image_too_large",
                        f"{path.name}: {w}x{h} = {w * h} px exceeds the {MAX_PIXELS} px limit",
                    )
                img.load()
                return to_rgb(img)
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem("image_too_large", f"{path.name}: {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageProblem("image_missing", f"image file not found: {path}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem("image_corrupt", f"{path.name}: cannot decode: {exc}") from exc
