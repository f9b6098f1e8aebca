"""create_model: the classifier together with the photo preprocessing it was built for.

In the spirit of open_clip's create_model_and_transforms: the pair comes from one call, so a
backbone and the mean / std / size / interpolation it expects cannot drift apart.
"""

from __future__ import annotations

from mmdetect.models.classifier import ModelConfig, MultimodalClassifier
from mmdetect.models.image import ImagePreprocess


def create_model(cfg: ModelConfig) -> tuple[MultimodalClassifier, ImagePreprocess]:
    """(MultimodalClassifier built from cfg, its ImagePreprocess for build_transforms)."""
    model = MultimodalClassifier(cfg)
    return model, model.preprocess
