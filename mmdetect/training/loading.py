"""A DetectorModule (and its datamodule's price statistics) built from a checkpoint read by
mmdetect.training.checkpoint: the one place that imports both the reader and the module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmdetect.data.vocab_fingerprint import CHECKPOINT_KEY, VocabMismatchError, compare
from mmdetect.training.checkpoint import (
    PRIVATE_PREFIX,
    CheckpointError,
    _first_line,
    read_checkpoint,
    state_mismatch,
)

log = logging.getLogger(__name__)


def build_module(raw: Mapping[str, Any], path: Path, tokenizer: str | None = None):
    """DetectorModule (eval, CPU) from the checkpoint's hyper-parameters and weights.

    `init_from` is dropped: it only seeds a fresh training run, the checkpoint's own weights
    follow anyway, and a hostile checkpoint must not make us read a second file. Its
    `allow_modules` is dropped too: only the user's MMDETECT_ALLOW_MODULES may widen the
    class-path allow-list (safe_classpath). The recorded vocabulary fingerprint must match
    the tokenizer (a moved one given by `tokenizer` included).
    """
    from mmdetect.training.module import (
        DetectorModule,  # Lightning stays out of `import mmdetect.training.checkpoint`
    )

    hp = {k: v for k, v in (raw.get("hyper_parameters") or {}).items()}
    hp = {k: v for k, v in hp.items() if not str(k).startswith(PRIVATE_PREFIX)}
    hp["init_from"] = None
    hp.pop("allow_modules", None)
    if tokenizer:
        hp["tokenizer"] = tokenizer
    # First on the meta device: shapes without memory, so hyper-parameters that describe a
    # model far larger than the weights (hidden=10**6) are refused before anything is allocated.
    shape = _construct(DetectorModule, hp, path, torch.device("meta"))
    mismatch = state_mismatch(shape.state_dict(), raw["state_dict"])
    if mismatch:
        raise CheckpointError(
            f"{path}: weights do not fit its hyper-parameters (edited or mixed up?): {mismatch}"
        )
    module = _construct(DetectorModule, hp, path, torch.device("cpu"))
    if module.vocab is not None:
        try:
            compare(raw.get(CHECKPOINT_KEY), module.vocab, str(path), str(module.hparams.tokenizer))
        except VocabMismatchError as exc:
            raise CheckpointError(str(exc)) from None
    module.load_state_dict(raw["state_dict"], strict=True)
    return module.eval()


def _construct(cls, hp: Mapping[str, Any], path: Path, device: torch.device):
    try:
        with device:
            return cls(**hp)
    # Hostile hyper-parameters fail inside torch/transformers/torchvision constructors with
    # any exception type; each means the same thing to the user.
    except Exception as exc:
        tok = hp.get("tokenizer")
        hint = f" (tokenizer {tok!r}: pass --tokenizer DIR if it has moved)" if tok else ""
        raise CheckpointError(
            f"{path}: its hyper-parameters do not build a model: {_first_line(exc)}{hint}"
        ) from None


def load_checkpoint(ckpt: Path, tokenizer: str | None = None):
    """(DetectorModule in eval mode on CPU, datamodule hparams dict or {}).

    Read with weights_only=True (read_checkpoint); raises CheckpointError naming the file.
    """
    raw = read_checkpoint(ckpt)
    data = dict(raw.get("datamodule_hyper_parameters") or {})
    hp = raw.get("hyper_parameters") or {}
    tok = tokenizer or data.get("tokenizer") or hp.get("tokenizer")
    if not isinstance(tok, str):
        raise CheckpointError(f"{ckpt}: no tokenizer recorded; pass --tokenizer DIR")
    module = build_module(raw, Path(ckpt), tokenizer)
    data["tokenizer"] = tok
    stats = checkpoint_price_stats(raw, data, Path(ckpt))
    data["price_mean"], data["price_std"] = stats.mean, stats.std
    return module, data


def checkpoint_price_stats(raw: Mapping[str, Any], data: Mapping[str, Any], ckpt: Path):
    """The price statistics fitted on the training split, as the checkpoint stores them
    (DetectorDataModule.state_dict); for an older checkpoint its datamodule settings, else the
    legacy constants, each with a warning. Bad values raise CheckpointError."""
    from mmdetect.data.dataset import LEGACY_PRICE_STATS, PriceStats
    from mmdetect.training.datamodule import DetectorDataModule

    state = raw.get(DetectorDataModule.__qualname__)
    where = f"{ckpt}: {DetectorDataModule.__qualname__}"
    if not (isinstance(state, Mapping) and "price_mean" in state):
        where = f"{ckpt}: datamodule_hyper_parameters"
        state = data if data.get("price_mean") is not None else None
        if state is None:
            log.warning("%s has no price statistics: legacy %s", ckpt, LEGACY_PRICE_STATS)
            return LEGACY_PRICE_STATS
        log.warning("%s has no fitted price statistics: using its settings", ckpt)
    try:
        return PriceStats(float(state["price_mean"]), float(state["price_std"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad price_mean/price_std: {exc}") from None
