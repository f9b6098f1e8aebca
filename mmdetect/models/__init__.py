"""The model side, pure torch: towers (text, image), fusion, classifier.

Nothing here knows Lightning, tokenizers' files or snapshots; the Lightning shell
(mmdetect.training.module), export and serving build on it. `create_model(cfg)` returns the classifier and
the photo preprocessing (ImagePreprocess) it expects.
"""

from mmdetect.models.classifier import MODEL_INPUTS, ModelConfig, MultimodalClassifier
from mmdetect.models.factory import create_model
from mmdetect.models.image import ImagePreprocess

__all__ = ["MODEL_INPUTS", "ImagePreprocess", "ModelConfig", "MultimodalClassifier", "create_model"]
