"""mmdetect: multimodal detectors of prohibited marketplace listings.

The names a researcher imports, loaded on first use (torch and Lightning stay out of
`import mmdetect`); everything else lives in its stage package (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the stage module that defines it
_EXPORTS = {
    "Predictor": "mmdetect.serving.predictor",
    "DetectorModule": "mmdetect.training.module",
    "DetectorDataModule": "mmdetect.training.datamodule",
    "load_checkpoint": "mmdetect.training.loading",
    "load_bundle": "mmdetect.artifacts.bundle",
    "LoadedBundle": "mmdetect.artifacts.bundle",
    "run_evaluation": "mmdetect.evaluate",
    "evaluate_records": "mmdetect.evaluate",
    "load_eval_config": "mmdetect.evaluate",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmdetect' has no attribute {name!r}")
