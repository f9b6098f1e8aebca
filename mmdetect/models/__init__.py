"""The model side, pure torch: towers (text, image), fusion, classifier.

Nothing here knows Lightning, tokenizers' files or snapshots; the Lightning shell
(mmdetect.lit), export and serving build on it.
"""

from mmdetect.models.classifier import MODEL_INPUTS, ModelConfig, MultimodalClassifier

__all__ = ["MODEL_INPUTS", "ModelConfig", "MultimodalClassifier"]
