"""What `mmdetect export` is asked for: ExportConfig (format, dtype, quantize, device, parity
tolerances), read from YAML by load_export_config, and ExportError.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml


class ExportError(RuntimeError):
    """Export refused or failed; nothing was written."""


@dataclass
class ExportConfig:
    """configs/export/*.yaml; command-line flags override it."""

    format: str = "torchscript"  # | "onnx": ONNX Runtime (mmdetect/artifacts/onnx_export.py)
    device: str = "cpu"  # "cpu" | "cuda": where tracing and the parity check run
    dtype: str = "fp32"  # "fp32" | "bf16" | "fp16" (fp16: CUDA only)
    freeze: bool = True  # torch.jit.freeze: weights become graph constants
    # torch.jit.optimize_for_inference, applied by Predictor at load time on the export device
    # type (torch 2.14 cannot reload an optimized graph); the served parity check covers it
    optimize_for_inference: bool = False
    # "dynamic_int8" (quantize_linear; CPU fp32 only): 1.65x eager fp32 at batch 32 for
    # BERT-base + ResNet-50 on our AVX2 CPUs, no better than fp32 for the tiny model, whose time
    # is in the convolutions (docs/BENCHMARKS.md). Parity-gated like bf16. ONNX: ORT's
    # dynamic_int8 (MatMul/Gemm), static_int8 (QDQ, calibrated on the parity batches) or
    # hybrid_int8 (Conv as static_int8, MatMul/Gemm as dynamic_int8).
    quantize: str = "none"
    parity_listings: int = 256  # first N listings of the parity snapshot
    batch_size: int = 32
    fp32_tolerance: float = 1e-5  # max |p_eager - p_traced| for fp32
    low_precision_tolerance: float = 0.02  # the same for bf16 / fp16
    min_agreement: float = 0.995  # bf16 / fp16: share of (listing, class) tiers that agree


def load_export_config(path: str | Path | None) -> ExportConfig:
    if path is None:
        return ExportConfig()
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    known = {f.name for f in dataclasses.fields(ExportConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ExportError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    return ExportConfig(**doc)
