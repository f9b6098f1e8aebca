"""mmdetect: multimodal detectors of prohibited marketplace listings."""

__version__ = "0.1.0"
