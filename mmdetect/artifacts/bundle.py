"""Bundle I/O shared by export and serving: file names, checksums, thresholds, model loading
(TorchScript here, ONNX through mmdetect.artifacts.onnx_runtime).

A bundle is a directory (docs/bundle-format.md) that runs with torch, the JSON files and the
tokenizer directory alone. Nothing here imports Lightning or the training code.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdetect.artifacts.bundle_format import (
    FORMAT_VERSION,
    META_FILE,
    MODEL_FILE,
    MODEL_FILES,
    PREPROCESS_FILE,
    THRESHOLDS_FILE,
    TOKENIZER_DIR,
    BundleError,
    read_json,
    verify_checksums,
)
from mmdetect.policy import PolicyError, check_operating_point, decide


def write_json(path: Path, doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def check_thresholds(doc: Any, taxonomy: Sequence[str], where: str = THRESHOLDS_FILE) -> None:
    """Raise BundleError unless doc is an operating point that may be served for `taxonomy`
    (policy.check_operating_point: format, taxonomy and order, review threshold, certified hides)."""
    try:
        check_operating_point(doc, taxonomy, where)
    except PolicyError as exc:
        raise BundleError(str(exc)) from None


def tiers(probs: np.ndarray, taxonomy: Sequence[str], thresholds: Mapping[str, Any]) -> np.ndarray:
    """Tier codes [N, C] int8 (0 pass, 1 review, 2 hide) under the operating point."""
    return decide(thresholds, probs, taxonomy).codes


def parity_figures(ref: np.ndarray, test: np.ndarray, taxonomy: Sequence[str], thresholds) -> dict:
    """max / mean |dp| and how often the hide/review/pass tiers (after calibration, under the
    bundle's operating point) agree, per class and overall."""
    t_ref, t_test = tiers(ref, taxonomy, thresholds), tiers(test, taxonomy, thresholds)
    dp = np.abs(ref.astype(np.float64) - test.astype(np.float64))
    return {
        "listings": int(ref.shape[0]),
        "max_abs_diff": float(dp.max()),
        "mean_abs_diff": float(dp.mean()),
        "class_agreement": float((t_ref == t_test).mean()),
        "class_disagreements": int((t_ref != t_test).sum()),
        "overall_agreement": float((t_ref.max(1) == t_test.max(1)).mean()),
    }


def resolve_device(requested: str | torch.device | None, meta: Mapping[str, Any]) -> torch.device:
    """The device to run on: the requested one, else the export device if present, else CPU.

    Refuses what cannot run: CUDA without a GPU, fp16 on CPU.
    """
    if requested is None:
        exported = _device(meta.get("device", "cpu"), META_FILE)
        usable = exported.type != "cuda" or torch.cuda.is_available()
        device = exported if usable else torch.device("cpu")
    else:
        device = _device(requested, "requested")
    if device.type not in ("cpu", "cuda"):
        raise BundleError(f"device {device}: bundles run on cpu or cuda only")
    if device.type == "cuda" and meta.get("quantize", "none") != "none":
        raise BundleError(f"this bundle is {meta['quantize']}, which runs on CPU only")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BundleError(f"device {device} requested but no CUDA device is visible")
    if device.type == "cpu" and meta.get("dtype") == "fp16":
        raise BundleError("this bundle is fp16, which runs on CUDA only; export bf16 for CPU")
    return device


def _device(value: Any, where: str) -> torch.device:
    try:
        return torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise BundleError(
            f"{where}: device {value!r} is not a torch device (cpu, cuda:N)"
        ) from None


def retarget_devices(module: torch.jit.ScriptModule, device: torch.device) -> int:
    """Point the device constants that tracing baked into the graphs at `device`; returns count.

    torch.jit.trace records `torch.zeros(..., device=x.device)` and the like with the tracing
    device as a constant; map_location moves tensors but not those. Every device in our graphs
    comes from an input, so all of them follow the inputs (the OpenAI CLIP loader does the same).
    Call it before the module's first call: the executor keeps the plan it built then.
    """
    target = str(device)
    patched = 0
    for sub in module.modules():
        try:
            graph = sub.graph
        except RuntimeError:  # a submodule without forward
            continue
        for node in graph.findAllNodes("prim::Constant"):
            if node.output().type().kind() == "DeviceObjType" and node.s("value") != target:
                node.s_("value", target)
                patched += 1
    return patched


def load_torchscript(
    path: Path, device: torch.device, meta: Mapping[str, Any], optimize: bool | None = None
) -> torch.jit.ScriptModule:
    """torch.jit.load on `device`, retargeted if it differs from the export device.

    optimize (None: as meta.json says, on the export device type only, where export checked
    it): torch.jit.optimize_for_inference, a device-specific pass applied here because torch
    2.14 cannot reload a graph it has optimized.
    """
    exported_on = str(meta.get("device", "cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in 2.14
        try:
            module = torch.jit.load(str(path), map_location=device)
        # torch reports a damaged archive as RuntimeError, ValueError or worse; all mean this.
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BundleError(
                f"{path}: cannot load TorchScript (truncated or corrupt?): {first}"
            ) from None
    if str(device) != exported_on:
        retarget_devices(module, device)
    if optimize is None:
        same_type = device.type == torch.device(exported_on).type
        optimize = bool(meta.get("optimize_for_inference")) and same_type
    if optimize:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.optimize_for_inference(module)
    return module.eval()


def bundle_format(meta: Mapping[str, Any], where: Path) -> str:
    """meta.json's "format" ("torchscript" when absent: bundles from before ONNX)."""
    fmt = meta.get("format", "torchscript")
    if fmt not in MODEL_FILES:
        raise BundleError(f"{where}: format must be one of {list(MODEL_FILES)}, got {fmt!r}")
    return fmt


def load_onnx_model(path: Path, device: torch.device, sums: Mapping[str, str]):
    """model.onnx as an OnnxModule (called like the TorchScript module); BundleError if refused."""
    from mmdetect.artifacts.onnx_runtime import OnnxModelError, load_onnx

    try:
        return load_onnx(path, device, sums)
    except OnnxModelError as exc:
        raise BundleError(str(exc)) from None


@dataclass
class LoadedBundle:
    """A verified bundle: its model on its device and the JSON documents. `module` is a
    TorchScript module or an OnnxModule; both take MODEL_INPUTS tensors and return float32
    probabilities."""

    root: Path
    module: Any
    device: torch.device
    preprocess: dict[str, Any]
    thresholds: dict[str, Any]
    meta: dict[str, Any]

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / TOKENIZER_DIR


def load_bundle(
    root: str | Path,
    device: str | torch.device | None = None,
    optimize: bool | None = None,
    model: bool = True,
) -> LoadedBundle:
    """Verify SHA256SUMS, read the JSON files, load model.ts or model.onnx on the resolved
    device (an ONNX bundle on CUDA without ORT's CUDA provider runs on CPU: see .device).
    model False: a TorchScript model is left to load_model (module None until then), so that
    the caller can start reading meanwhile; everything is verified here all the same."""
    from mmdetect.artifacts import bundle_check as C  # it imports this module's names

    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory")
    sums = verify_checksums(root)
    meta = read_json(root / META_FILE)
    C.check_meta(meta, root / META_FILE)
    fmt = bundle_format(meta, root / META_FILE)
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{root}: bundle format {meta.get('format_version')!r}, this mmdetect reads {FORMAT_VERSION}"
        )
    preprocess = read_json(root / PREPROCESS_FILE)
    C.check_preprocess(preprocess, root / PREPROCESS_FILE)
    thresholds = read_json(root / THRESHOLDS_FILE)
    C.check_taxonomy_order(root, meta, preprocess, thresholds)
    check_thresholds(thresholds, preprocess["taxonomy"], str(root / THRESHOLDS_FILE))
    C.check_tokenizer(root)
    target = resolve_device(device, meta)
    if fmt == "onnx":
        module = load_onnx_model(root / MODEL_FILES[fmt], target, sums)
        target = module.device
    elif not model:
        module = None
    else:
        module = load_torchscript(root / MODEL_FILE, target, meta, optimize)
    return LoadedBundle(root, module, target, preprocess, thresholds, meta)


def load_model(bundle: LoadedBundle, optimize: bool | None = None) -> LoadedBundle:
    """The bundle with its model loaded (load_bundle(model=False) left it out); as it is if
    loaded. The files were verified by load_bundle."""
    if bundle.module is not None:
        return bundle
    module = load_torchscript(bundle.root / MODEL_FILE, bundle.device, bundle.meta, optimize)
    return dataclasses.replace(bundle, module=module)


def jsonable(obj: Any) -> Any:
    """Hyperparameters to JSON: dataclasses and mappings recursed, anything else repr'd."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj) if isinstance(obj, Path) else repr(obj)
