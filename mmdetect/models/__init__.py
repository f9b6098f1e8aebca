"""The model, pure torch: towers (text, image), fusion, MultimodalClassifier, create_model();
no files, no Lightning, no mmdetect.data (import-linter). Imports common only.
"""

from mmdetect.models.classifier import MODEL_INPUTS, ModelConfig, MultimodalClassifier
from mmdetect.models.factory import create_model
from mmdetect.models.image import ImagePreprocess

__all__ = ["MODEL_INPUTS", "ImagePreprocess", "ModelConfig", "MultimodalClassifier", "create_model"]
