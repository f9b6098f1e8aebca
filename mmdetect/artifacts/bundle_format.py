"""The bundle's file names, dtypes, checksums (SHA256SUMS) and JSON reading: the format both
bundle loading and bundle_check build on (docs/bundle-format.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from mmdetect.models.classifier import MODEL_INPUTS

FORMAT_VERSION = 1


MODEL_FILE = "model.ts"  # the TorchScript format's; MODEL_FILES for both


MODEL_FILES = {"torchscript": MODEL_FILE, "onnx": "model.onnx"}  # meta.json "format" -> file


TOKENIZER_DIR = "tokenizer"


PREPROCESS_FILE = "preprocess.json"


THRESHOLDS_FILE = "thresholds.json"


META_FILE = "meta.json"


SUMS_FILE = "SHA256SUMS"


# MultimodalClassifier.forward's argument order: one definition, in the model.
INPUT_NAMES = MODEL_INPUTS


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# export's `quantize`; int8 kernels are CPU-only. static_int8: ONNX only (ORT, calibrated)
QUANTIZE = ("none", "dynamic_int8", "static_int8", "hybrid_int8")  # hybrid: ONNX only, as static


class BundleError(RuntimeError):
    """A bundle that is missing, tampered with, or cannot run on the requested device."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(root: Path) -> list[str]:
    """Every regular file under root (POSIX relative paths, sorted), SHA256SUMS excepted."""
    files = (p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())
    return sorted(f for f in files if f != SUMS_FILE)


def write_checksums(root: Path) -> Path:
    """`sha256sum` format (`<hex>  <path>`), one line per file: `sha256sum -c SHA256SUMS` works."""
    root = Path(root)
    lines = [f"{sha256_file(root / rel)}  {rel}\n" for rel in bundle_files(root)]
    path = root / SUMS_FILE
    path.write_text("".join(lines), encoding="utf-8")
    return path


def verify_checksums(root: Path) -> dict[str, str]:
    """{relative path: sha256} as listed; BundleError naming the first file that is missing,
    changed or not listed."""
    root = Path(root)
    sums = root / SUMS_FILE
    if not sums.is_file():
        raise BundleError(f"{root}: {SUMS_FILE} is missing: not a bundle, or an incomplete one")
    listed: dict[str, str] = {}
    for lineno, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise BundleError(f"{sums}:{lineno}: malformed line {line!r}")
        listed[rel.lstrip("*")] = digest
    for rel, digest in listed.items():
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{root}: {rel} is missing (listed in {SUMS_FILE})")
        if sha256_file(path) != digest:
            raise BundleError(f"{root}: {rel} does not match its SHA256 in {SUMS_FILE} (tampered?)")
    extra = sorted(set(bundle_files(root)) - set(listed))
    if extra:
        raise BundleError(f"{root}: {extra[0]} is not listed in {SUMS_FILE} (added after export?)")
    return listed


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read JSON: {exc}") from exc
