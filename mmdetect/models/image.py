"""Image side: a torchvision or timm backbone shared across a listing's photos, pooled to one vector.

The backbone comes with its own preprocessing (`ImagePreprocess`: mean, std, input size,
interpolation), read from the backbone: timm's pretrained_cfg, torchvision's weights meta;
ImageNet values for a from-scratch torchvision model. It travels into the bundle's
preprocess.json, so training, export and serving normalise photos the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.transforms import v2

from mmdetect.common.normalization import IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS

# The from-scratch default only: a backbone with weights or a timm config states its own.
IMAGENET_SIZE = 224
HEAD_NAMES = ("fc", "classifier", "heads", "head")
SOURCES = ("torchvision", "timm")
TIMM_HUB = "pretrained"  # ImageConfig.weights for timm: the hub cache (pretrained=True)


@dataclass
class ImageConfig:
    """Image tower settings.

    source "torchvision": `name` is a torchvision.models.get_model name; `weights` a weights
    enum name ("IMAGENET1K_V1", "DEFAULT") whose file is already in $TORCH_HOME/hub/checkpoints.
    source "timm": `name` is a timm model name (tag allowed: "resnet18.a1_in1k"); `weights`
    "pretrained" reads the Hugging Face hub cache (set HF_HUB_OFFLINE=1 to stay offline).
    Either source: `weights` may be a local state-dict file (.pt/.pth, torch.save'd, read with
    weights_only=True); classifier keys in it are ignored. None: random initialisation.
    """

    name: str = "resnet18"
    source: str = "torchvision"  # "torchvision" | "timm"
    weights: str | None = None
    # Photo side in pixels; overrides the backbone's own input size. None: the backbone's.
    image_size: int | None = 64
    max_photos: int = 4  # K: photos per listing the data pipeline keeps (and pads to)
    pooling: str = "mean"  # "mean" | "attention"
    enabled: bool = True


@dataclass(frozen=True)
class ImagePreprocess:
    """What a photo goes through before the backbone: resize to `image_size` (shorter side, then
    a centre crop; random resized crop in training) with `interpolation`, scale to [0, 1],
    normalise with `mean` / `std` (per RGB channel)."""

    image_size: int = IMAGENET_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # "nearest" | "bilinear" | "bicubic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        if not (isinstance(self.image_size, int) and self.image_size > 0):
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 numbers (std > 0), got {self.mean}/{self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}"
            )

    def to_doc(self) -> dict[str, Any]:
        """The preprocess.json keys (image_size, mean, std, interpolation)."""
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ImagePreprocess:
        """From preprocess.json; bundles written before `interpolation` existed used bilinear."""
        return cls(
            int(doc["image_size"]), tuple(doc["mean"]), tuple(doc["std"]),
            doc.get("interpolation", "bilinear"),
        )  # fmt: skip


def build_transforms(pre: ImagePreprocess, train: bool) -> v2.Compose:
    """PIL RGB image or uint8 [3, H, W] tensor -> normalised float [3, size, size]."""
    size, mode = pre.image_size, INTERPOLATIONS[pre.interpolation]
    if train:
        geometry = [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), interpolation=mode, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    else:
        geometry = [v2.Resize(size, interpolation=mode, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )


def _is_weights_file(weights: str) -> bool:
    return weights.endswith((".pt", ".pth")) or Path(weights).is_file()


def _load_state(path: str) -> dict[str, torch.Tensor]:
    """A torch.save'd state dict, read without running code from it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, truncated, or a pickle a weights-only load refuses
        raise ValueError(f"image weights {path}: not a readable state dict: {exc}") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"image weights {path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def _load_without_head(model: nn.Module, head: str, path: str) -> None:
    """Strict load of the state dict in `path` minus the classifier `head`'s keys (any number
    of classes). A model on the meta device (checkpoint.build_module's shape check) has no
    storage to load into: the file is not read."""
    if any(p.is_meta for p in model.parameters()):
        return
    state = {k: v for k, v in _load_state(path).items() if not k.startswith(head + ".")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ValueError(f"image weights {path} do not fit the backbone: {first[-1]}") from None


def drop_classifier(model: nn.Module) -> tuple[int, str]:
    """Replace the last Linear of the classifier head with Identity, in place.

    Returns (feature size, qualified name of the removed layer). Norm/flatten layers that sit
    before the last Linear (ConvNeXt, VGG, MobileNet) are kept.
    """
    for head_name in HEAD_NAMES:
        head = getattr(model, head_name, None)
        if isinstance(head, nn.Linear):
            setattr(model, head_name, nn.Identity())
            return head.in_features, head_name
        if isinstance(head, nn.Sequential):
            linears = [name for name, m in head.named_children() if isinstance(m, nn.Linear)]
            if linears:
                last = linears[-1]
                out_dim = getattr(head, last).in_features
                setattr(head, last, nn.Identity())
                return out_dim, f"{head_name}.{last}"
    raise ValueError(f"no classifier head found among {HEAD_NAMES} in {type(model).__name__}")


def torchvision_backbone(cfg: ImageConfig) -> tuple[nn.Module, int, ImagePreprocess]:
    """A torchvision classifier without its last Linear, its feature size, its preprocessing.

    A weights file is a state dict of the full torchvision model (torch.save(m.state_dict()));
    the classifier's keys are ignored, so a checkpoint with any number of classes loads.
    """
    local = cfg.weights is not None and _is_weights_file(cfg.weights)
    weights = None if local or cfg.weights is None else cfg.weights
    pre = ImagePreprocess()  # from scratch or a local file: no meta, ImageNet values
    if weights is not None:
        try:
            enum = torchvision.models.get_model_weights(cfg.name).verify(weights)
        except (ValueError, KeyError) as exc:
            raise ValueError(f"image weights {weights!r} for {cfg.name!r}: {exc}") from None
        t = enum.transforms()
        pre = ImagePreprocess(t.crop_size[0], t.mean, t.std, t.interpolation.value)
    try:
        model = torchvision.models.get_model(cfg.name, weights=weights)
    except (OSError, RuntimeError) as exc:  # offline and not in $TORCH_HOME
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ValueError(
            f"torchvision weights {weights!r} for {cfg.name!r} could not be loaded ({exc}); "
            f"prefetch the file into {cache} on a connected machine"
        ) from None
    out_dim, removed = drop_classifier(model)
    if local:
        _load_without_head(model, removed, cfg.weights)
    return model, out_dim, pre


def timm_backbone(cfg: ImageConfig) -> tuple[nn.Module, int, ImagePreprocess]:
    """A timm model built with num_classes=0 (pooled features), its width, its data config.

    timm is imported only here: a traced bundle holds plain aten ops and loads without it.
    """
    try:
        import timm
        from timm.data import resolve_model_data_config
    except ImportError:
        raise ValueError(
            "image source 'timm' needs the timm package (pip install mmdetect[towers])"
        ) from None
    local = cfg.weights is not None and _is_weights_file(cfg.weights)
    if cfg.weights not in (None, TIMM_HUB) and not local:
        raise ValueError(
            f"timm image weights must be None, {TIMM_HUB!r} (hub cache) or a .pt/.pth file, "
            f"got {cfg.weights!r}"
        )
    try:
        model = timm.create_model(cfg.name, pretrained=cfg.weights == TIMM_HUB, num_classes=0)
    except RuntimeError as exc:  # unknown model name
        raise ValueError(f"timm model {cfg.name!r}: {exc}") from None
    except OSError as exc:  # not in the hub cache while offline
        offline = os.environ.get("HF_HUB_OFFLINE", "0")
        raise ValueError(
            f"timm model {cfg.name!r}: pretrained weights not loadable (HF_HUB_OFFLINE={offline}): "
            f"{exc}; prefetch them with `huggingface-cli download timm/<name>`"
        ) from None
    if local:
        head = model.pretrained_cfg.get("classifier") or "fc"
        _load_without_head(model, head, cfg.weights)
    data = resolve_model_data_config(model)
    pre = ImagePreprocess(
        int(data["input_size"][-1]), data["mean"], data["std"], data["interpolation"]
    )
    return model, int(model.num_features), pre


def build_backbone(cfg: ImageConfig) -> tuple[nn.Module, int, ImagePreprocess]:
    """(backbone: photos [N, 3, H, W] -> [N, D], D, its preprocessing with cfg.image_size)."""
    if cfg.source not in SOURCES:
        raise ValueError(f"image source must be one of {SOURCES}, got {cfg.source!r}")
    build = timm_backbone if cfg.source == "timm" else torchvision_backbone
    model, out_dim, pre = build(cfg)
    if cfg.image_size is not None:
        pre = replace(pre, image_size=cfg.image_size)
    return model, out_dim, pre
