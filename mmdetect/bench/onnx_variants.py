"""Benchmark variants beyond TorchScript: ONNX Runtime (fp32, int8 dynamic, int8 static) built
exactly as `mmdetect export --format onnx` builds them, and torch.export + AOTInductor (.pt2).

  ort_fp32          export_onnx.to_onnx (dynamo, dynamic B/L/K) run by ONNX Runtime, CPU
  ort_int8_dynamic  + quantize_dynamic: int8 MatMul/Gemm weights (--quantize dynamic_int8)
  ort_int8_static   + quantize_static: QDQ Conv/MatMul/Gemm, calibrated on 2 random batches
  ort_int8_hybrid   static Conv (calibrated as static), dynamic MatMul/Gemm (hybrid_int8:
                    configs/export/onnx_int8.yaml)
  aoti              torch.export with the same dynamic shapes, AOTInductor-compiled (minutes)
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mmdetect.artifacts import onnx_export as OX
from mmdetect.artifacts.onnx_runtime import OnnxModule, make_session
from mmdetect.bench.assets import random_batch
from mmdetect.models.classifier import ModelConfig

ORT_VARIANTS = ("ort_fp32", "ort_int8_dynamic", "ort_int8_static", "ort_int8_hybrid")


def _pre(cfg: ModelConfig) -> dict:
    return {"max_length": cfg.text.max_length, "image_size": cfg.image.image_size, "pad_id": 0}


def ort_variants(
    net: nn.Module, cfg: ModelConfig, names: tuple[str, ...]
) -> tuple[dict[str, Callable], dict[str, float]]:
    """(the requested ORT variants, build seconds: the shared fp32 export plus quantization)."""
    wanted = [n for n in names if n in ORT_VARIANTS]
    out: dict[str, Callable] = {}
    seconds: dict[str, float] = {}
    if not wanted:
        return out, seconds
    pre = _pre(cfg)
    with tempfile.TemporaryDirectory(prefix="mmdetect-bench-onnx-") as tmp:
        start = time.perf_counter()
        fp32 = Path(tmp) / "fp32.onnx"
        wrapper = OX.exportable(net, torch.float32)
        OX.to_onnx(wrapper, OX.example_inputs(pre, torch.device("cpu")), pre["max_length"], fp32)
        export_s = time.perf_counter() - start
        photos = min(2, cfg.image.max_photos)
        for name in wanted:
            start, path = time.perf_counter(), fp32
            if name != "ort_fp32":
                mode = name.removeprefix("ort_int8_") + "_int8"
                path = Path(tmp) / f"{name}.onnx"
                calib = lambda: (random_batch(cfg, 8, photos, seed=100 + i) for i in range(2))  # noqa: E731
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    OX.quantize(fp32, path, mode, calib)
            session = make_session(path.read_bytes(), ["CPUExecutionProvider"])
            out[name] = OnnxModule(session, torch.device("cpu"))
            seconds[name] = export_s + time.perf_counter() - start
    return out, seconds


def aoti_variant(net: nn.Module, cfg: ModelConfig) -> Callable:
    """torch.export (dynamic B/L/K, as the ONNX export) compiled by AOTInductor into a .pt2
    package, loaded back; called with the model inputs, returns probabilities."""
    pre = _pre(cfg)
    wrapper = OX.exportable(net, torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(
            wrapper,
            OX.example_inputs(pre, torch.device("cpu")),
            dynamic_shapes=OX.dynamic_shapes(pre["max_length"]),
        )
        tmp = tempfile.mkdtemp(prefix="mmdetect-bench-aoti-")
        path = torch._inductor.aoti_compile_and_package(program, package_path=f"{tmp}/model.pt2")
        return torch._inductor.aoti_load_package(path)
