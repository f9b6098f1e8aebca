"""Cross-checks of a bundle's JSON documents before anything is loaded from them.

SHA256SUMS proves the files are the ones written at export, not that they agree with each other:
anyone who edits a bundle can re-write the sums. A reordered taxonomy in preprocess.json would
put every score under the wrong class without any error, so the order is checked against the
model's training taxonomy (meta.json) and thresholds.json, not just the set of names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mmdetect.artifacts.bundle_format import (
    DTYPES,
    INPUT_NAMES,
    META_FILE,
    PREPROCESS_FILE,
    QUANTIZE,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    BundleError,
)
from mmdetect.common.normalization import interpolation_mode
from mmdetect.common.safe_pretrained import UnsafePretrainedError, check_tokenizer_dir

# preprocess.json: key -> (accepted types, what it must be)
_INT = (int,)
_NUM = (int, float)
PREPROCESS_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "inputs": ((list,), "the model's input names"),
    "max_length": (_INT, "a positive integer"),
    "image_size": (_INT, "a positive integer"),
    "max_photos": (_INT, "a positive integer"),
    "mean": ((list,), "3 numbers"),
    "std": ((list,), "3 numbers"),
    "taxonomy": ((list,), "a non-empty list of distinct class names"),
    "categories": ((list,), "a list of category names"),
    "price_mean": (_NUM, "a finite number"),
    "price_std": (_NUM, "a positive number"),
    "pad_id": (_INT, "a non-negative integer"),
}


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x for x in value)


def check_preprocess(doc: Any, where: Path) -> None:
    """Every key Predictor reads, present with a usable value; BundleError names file and key."""
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    for key, (types, what) in PREPROCESS_KEYS.items():
        if key not in doc:
            raise BundleError(f"{where}: missing key {key!r} ({what})")
        value = doc[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise BundleError(f"{where}: {key} must be {what}, got {value!r}")
    if doc["inputs"] != list(INPUT_NAMES):
        raise BundleError(f"{where}: inputs {doc['inputs']} must be {list(INPUT_NAMES)} in order")
    for key in ("max_length", "image_size", "max_photos", "price_std"):
        if not doc[key] > 0:
            raise BundleError(f"{where}: {key} must be positive, got {doc[key]!r}")
    if doc["pad_id"] < 0:
        raise BundleError(f"{where}: pad_id must be >= 0, got {doc['pad_id']!r}")
    for key in ("mean", "std"):
        v = doc[key]
        ok = len(v) == 3 and all(isinstance(x, _NUM) and math.isfinite(x) for x in v)
        if not ok:
            raise BundleError(f"{where}: {key} must be 3 finite numbers, got {v!r}")
    if min(doc["std"]) <= 0:
        raise BundleError(f"{where}: std must be positive, got {doc['std']!r}")
    try:
        interpolation_mode(doc.get("interpolation", "bilinear"))
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    if "normalize" in doc:  # optional: bundles written before it normalise with NFKC only
        from mmdetect.data.textnorm import check_options

        try:
            check_options(doc["normalize"], "normalize")
        except ValueError as exc:
            raise BundleError(f"{where}: {exc}") from None
    if not math.isfinite(doc["price_mean"]) or not math.isfinite(doc["price_std"]):
        raise BundleError(f"{where}: price_mean and price_std must be finite")
    tax = doc["taxonomy"]
    if not tax or not _names(tax) or len(set(tax)) != len(tax):
        raise BundleError(f"{where}: taxonomy must be a non-empty list of distinct names")
    if not _names(doc["categories"]):
        raise BundleError(f"{where}: categories must be a list of names")


def check_meta(doc: Any, where: Path) -> None:
    """The meta.json fields that choose how the model is loaded."""
    if not isinstance(doc, dict):
        raise BundleError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    device = doc.get("device", "cpu")
    try:
        ok = isinstance(device, str) and torch.device(device).type in ("cpu", "cuda")
    except (RuntimeError, ValueError):
        ok = False
    if not ok:
        raise BundleError(f"{where}: device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if doc.get("dtype", "fp32") not in DTYPES:
        raise BundleError(f"{where}: dtype must be one of {list(DTYPES)}, got {doc['dtype']!r}")
    if doc.get("quantize", "none") not in QUANTIZE:
        raise BundleError(f"{where}: quantize must be one of {list(QUANTIZE)}")


def training_taxonomy(meta: Mapping[str, Any], where: Path) -> list[str]:
    """The class order the model was trained with (its output columns), from meta.json."""
    try:
        tax = meta["training_config"]["model"]["taxonomy"]
    except (KeyError, TypeError):
        raise BundleError(
            f"{where}: missing training_config.model.taxonomy (the model's class order)"
        ) from None
    if not _names(tax):
        raise BundleError(f"{where}: training_config.model.taxonomy must be a list of names")
    return tax


def check_taxonomy_order(root: Path, meta: Mapping, preprocess: Mapping, thresholds: Any) -> None:
    """preprocess.json's taxonomy must be the training one, in the same order (and
    thresholds.json's, when it lists one): a reordering silently mislabels every score."""
    trained = training_taxonomy(meta, root / META_FILE)
    _same_order(preprocess["taxonomy"], trained, root / PREPROCESS_FILE, "meta.json's training")
    listed = thresholds.get("taxonomy") if isinstance(thresholds, Mapping) else None
    if listed is not None:
        _same_order(listed, trained, root / THRESHOLDS_FILE, "meta.json's training")


def _same_order(got: Sequence[str], want: Sequence[str], where: Path, whose: str) -> None:
    if list(got) == list(want):
        return
    if isinstance(got, list) and sorted(map(str, got)) == sorted(want):
        raise BundleError(
            f"{where}: taxonomy {list(got)} is in a different order from {whose} taxonomy "
            f"{list(want)}: scores would be mislabeled"
        )
    raise BundleError(f"{where}: taxonomy {got!r} differs from {whose} taxonomy {list(want)}")


# A vocabulary file of any tokenizer that save_pretrained writes: WordPiece, fast, SentencePiece.
VOCAB_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "spm.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def check_tokenizer(root: Path) -> None:
    """A vocabulary file is there, and no setting that would run code or steer MeCab."""
    try:
        check_tokenizer_dir(root / TOKENIZER_DIR)
    except UnsafePretrainedError as exc:
        raise BundleError(str(exc)) from None
    if not any((root / TOKENIZER_DIR / name).is_file() for name in VOCAB_FILES):
        raise BundleError(
            f"{root}: {TOKENIZER_DIR}/vocab.txt is missing (and no other vocabulary file: "
            f"{', '.join(VOCAB_FILES[1:])})"
        )
