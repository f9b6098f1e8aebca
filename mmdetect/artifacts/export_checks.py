"""What an export may be (configs/export/*.yaml, the device and dtype it targets) and whether
it passed: the parity figures against the tolerances, printed and gated.

Split from export.py, which does the work; this module decides only.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from mmdetect.artifacts import bundle_format
from mmdetect.artifacts import onnx_export as OX
from mmdetect.artifacts.export_config import ExportConfig, ExportError
from mmdetect.common.hardware import cpu_has_native_bf16


def check_target(cfg: ExportConfig) -> torch.device:
    """The export device, or a clear refusal for combinations that cannot work."""
    if cfg.dtype not in bundle_format.DTYPES:
        raise ExportError(f"dtype must be one of {list(bundle_format.DTYPES)}, got {cfg.dtype!r}")
    if why := OX.format_problem(cfg.format, cfg.quantize):
        raise ExportError(why)
    device = torch.device(cfg.device)
    if device.type not in ("cpu", "cuda"):
        raise ExportError(f"device must be cpu or cuda, got {cfg.device!r}")
    if cfg.quantize != "none" and (device.type != "cpu" or cfg.dtype != "fp32"):
        raise ExportError(
            f"quantize {cfg.quantize} needs --device cpu --dtype fp32 (the int8 kernels are "
            f"CPU-only), got {cfg.device} {cfg.dtype}"
        )
    if device.type == "cpu" and cfg.dtype == "bf16" and not cpu_has_native_bf16():
        print(
            "warning: this CPU has no AVX-512 BF16 or AMX: bf16 runs emulated, several times "
            "slower than fp32 (docs/BENCHMARKS.md); serve it only on CPUs that have them",
            file=sys.stderr,
        )
    if device.type == "cpu" and cfg.dtype == "fp16":
        raise ExportError(
            "fp16 on CPU is refused (slow, incomplete kernels): use bf16 or --device cuda"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ExportError("--device cuda, but no CUDA device is visible to torch")
        if cfg.dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise ExportError("this GPU does not support bf16: use fp16 or fp32")
        device = torch.device("cuda", device.index or 0)
    return device


def parity_failures(fig: dict, cfg: ExportConfig) -> list[str]:
    if cfg.dtype == "fp32" and cfg.quantize == "none":
        tol = cfg.fp32_tolerance
        return (
            [f"max |dp| {fig['max_abs_diff']:.3g} > {tol:g}"] if fig["max_abs_diff"] > tol else []
        )
    out = []
    if fig["max_abs_diff"] > cfg.low_precision_tolerance:
        out.append(f"max |dp| {fig['max_abs_diff']:.3g} > {cfg.low_precision_tolerance:g}")
    if fig["class_agreement"] < cfg.min_agreement:
        out.append(f"decision agreement {fig['class_agreement']:.2%} < {cfg.min_agreement:.2%}")
    return out


def format_parity(fig: dict, cfg: ExportConfig, stage: str = "traced") -> str:
    n, c = fig["listings"], fig["class_disagreements"]
    variant = cfg.dtype if cfg.quantize == "none" else f"{cfg.dtype} {cfg.quantize}"
    return (
        f"parity {variant} on {cfg.device}, eager fp32 vs {stage} {OX.DISPLAY[cfg.format]}, {n} listings: "
        f"max |dp| {fig['max_abs_diff']:.3g}, mean |dp| {fig['mean_abs_diff']:.3g}, "
        f"decisions agree {fig['class_agreement']:.2%} per class ({c} differ), "
        f"{fig['overall_agreement']:.2%} overall"
    )


@contextlib.contextmanager
def exact_cuda_math():
    """No TF32 while measuring parity: fp32 must mean fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def gate(fig: dict, cfg: ExportConfig, stage: str) -> dict:
    """Print the figures; raise ExportError (nothing written) when they miss the tolerances."""
    print(format_parity(fig, cfg, stage))
    failures = parity_failures(fig, cfg)
    if failures:
        raise ExportError(
            f"parity check failed ({'; '.join(failures)}); nothing written. "
            + format_parity(fig, cfg, stage)
        )
    return fig
