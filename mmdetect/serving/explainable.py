"""Loading a model to explain from a path: a checkpoint (eager, IG) or a bundle (occlusion).

Kept apart from model.py: a checkpoint is rebuilt through mmdetect.ops.export / mmdetect.training.checkpoint,
which reach Lightning; the HTTP service never imports this module.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmdetect.explain.model import Explainable, ExplainError, from_predictor
from mmdetect.policy import unfitted_operating_point


def load_explainable(path: str | Path, thresholds: str | Path | None = None) -> Explainable:
    """A checkpoint (.ckpt, read with weights_only=True) or a bundle directory (verified), on
    CPU. `thresholds`: the operating point to apply (a bundle serves its own by default; a
    checkpoint without one gets the unfitted point: identity calibration, no hide)."""
    from mmdetect.serving.scoring import is_bundle

    path = Path(path)
    if is_bundle(path):
        from mmdetect.artifacts.bundle_format import BundleError
        from mmdetect.serving.predictor import Predictor

        try:
            model = from_predictor(Predictor.from_bundle(path, "cpu", batch_size=32))
        except BundleError as exc:
            raise ExplainError(str(exc)) from None
    else:
        model = _from_checkpoint(path)
    if thresholds is not None:
        from mmdetect.policy import PolicyError
        from mmdetect.policy.io import read_operating_point

        try:
            model.operating_point = read_operating_point(thresholds, model.taxonomy)
        except (PolicyError, OSError) as exc:
            raise ExplainError(f"--thresholds {thresholds}: {exc}") from None
    return model


def _from_checkpoint(path: Path) -> Explainable:
    from mmdetect.artifacts.tracing import preprocess_doc
    from mmdetect.data.tokenize import load_tokenizer
    from mmdetect.training.checkpoint import CheckpointError
    from mmdetect.training.loading import load_checkpoint

    try:
        module, data = load_checkpoint(path)
        tokenizer = load_tokenizer(data["tokenizer"])
    except (CheckpointError, OSError) as exc:
        raise ExplainError(str(exc)) from None
    pre = preprocess_doc(module, data, tokenizer.pad_token_id or 0)
    net = module.net.eval()

    def probabilities(*inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(*inputs))

    taxonomy = tuple(module.taxonomy)
    op = unfitted_operating_point(taxonomy)
    return Explainable(str(path), "checkpoint", taxonomy, tokenizer, pre, op, probabilities, net)
