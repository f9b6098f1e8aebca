"""Photo normalisation settings shared by the data side, the models and bundle checks.

ImageNet mean/std: the default of from-scratch backbones, and of bundles written before
preprocess.json carried a backbone's own values. INTERPOLATIONS: the one list of resize modes a
model may be trained, exported and served with (ImagePreprocess, bundle_check and the uint8
serving transform all read it). Here, on the data side, so that the photo pipeline (data/) and
the models (models/) both read it without data importing models.
"""

from __future__ import annotations

from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# preprocess.json "interpolation" -> torchvision mode. Every one runs on uint8 photos (train and
# eval transforms, data/photos.py); antialias applies to bilinear and bicubic, nearest has none.
INTERPOLATIONS: dict[str, InterpolationMode] = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def interpolation_mode(name: object) -> InterpolationMode:
    """A preprocess.json `interpolation` value to torchvision's enum; ValueError if unsupported."""
    mode = INTERPOLATIONS.get(name) if isinstance(name, str) else None
    if mode is None:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {name!r}")
    return mode
