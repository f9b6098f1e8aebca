"""One scoring interface over a Lightning checkpoint or an exported bundle.

`mmdetect evaluate --model X` accepts either, so the artifact that will be served is the one
evaluated. Checkpoints are scored with the training preprocessing (the checkpoint's own data
settings); bundles through `serve.Predictor`, which reuses that same preprocessing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mmdetect.data.reader import read_snapshot
from mmdetect.data.records import Snapshot, in_period
from mmdetect.evaluate.predictions import PredictionRecord, prediction_from_listing


def is_bundle(path: str | Path) -> bool:
    """A directory holding a model.ts or a model.onnx (either format; load_bundle verifies it)."""
    return Path(path).is_dir() and any(
        (Path(path) / f).is_file() for f in ("model.ts", "model.onnx")
    )


def checkpoint_proba(
    ckpt: str | Path, snapshot: Snapshot, batch_size: int = 64, num_workers: int = 0
) -> tuple[np.ndarray, tuple[str, ...], None]:
    """Probabilities [N, C] for the snapshot's listings, in order, from a checkpoint (which
    serves no operating point: the third value is None)."""
    from mmdetect.data.dataset import Item
    from mmdetect.evaluate.config import EvaluationError
    from mmdetect.training.checkpoint import CheckpointError
    from mmdetect.training.datamodule import DetectorDataModule
    from mmdetect.training.loading import load_checkpoint

    try:
        module, data_hp = load_checkpoint(Path(ckpt))
    except CheckpointError as exc:  # one line naming the file, not a traceback
        raise EvaluationError(str(exc)) from None
    # LightningCLI adds private bookkeeping keys (e.g. `_instantiator`) to saved hparams.
    data_hp = {k: v for k, v in data_hp.items() if not k.startswith("_")}
    data_hp.update(batch_size=batch_size, num_workers=num_workers)
    dm = DetectorDataModule(**data_hp)
    # Scoring needs no labels, and they may name classes the model lacks (evaluate reports that).
    items = [Item(replace(x, labels=None), snapshot.root) for x in snapshot.listings]
    dm.datasets["score"] = dm.build_dataset(items, train=False)
    out = []
    with torch.inference_mode():
        for batch in tqdm(dm.loader("score", shuffle=False), desc="scoring", unit="batch"):
            out.append(torch.sigmoid(module(batch)).float())
    probs = torch.cat(out).numpy() if out else np.zeros((0, len(module.taxonomy)))
    return probs, module.taxonomy, None


def bundle_proba(
    bundle: str | Path, snapshot: Snapshot, batch_size: int = 64, num_workers: int = 0
) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """Raw probabilities from a verified bundle, and the operating point it serves."""
    from mmdetect.artifacts.bundle_format import BundleError
    from mmdetect.evaluate.config import EvaluationError
    from mmdetect.serving.predictor import Predictor

    try:
        predictor = Predictor.from_bundle(bundle, batch_size=batch_size, num_workers=num_workers)
    except BundleError as exc:
        raise EvaluationError(str(exc)) from None
    probs = predictor.predict_proba(snapshot.listings, snapshot.root)
    return probs, tuple(predictor.taxonomy), predictor.thresholds


def score_snapshot(
    model: str | Path,
    snapshot_dir: str | Path,
    batch_size: int = 64,
    num_workers: int = 0,
    created_from: str | None = None,
    created_to: str | None = None,
) -> tuple[list[PredictionRecord], tuple[str, ...], Snapshot, dict | None]:
    """Score the listings of a snapshot (optionally one period of it) with a checkpoint or bundle.

    Records carry the model's raw probabilities; the fourth value is the operating point the
    model serves (a bundle's thresholds.json, already checked) or None for a checkpoint."""
    snapshot = read_snapshot(snapshot_dir)
    snapshot.listings = [
        x for x in snapshot.listings if in_period(x.created_at, created_from, created_to)
    ]
    score = bundle_proba if is_bundle(model) else checkpoint_proba
    probs, taxonomy, served = score(model, snapshot, batch_size, num_workers)
    records = [
        prediction_from_listing(x, dict(zip(taxonomy, row.tolist(), strict=True)))
        for x, row in zip(snapshot.listings, probs, strict=True)
    ]
    return records, taxonomy, snapshot, served
