"""`mmdetect export --format onnx`: the probability wrapper export.py traces, as an ONNX graph.

`torch.onnx.export(dynamo=True)` with dynamic batch, token length and photo count; the legacy
TorchScript-based exporter only if dynamo fails (meta.json records which, and why). Optional
ONNX Runtime int8: `dynamic_int8` (quantize_dynamic: int8 weights of every MatMul/Gemm,
activations quantized per call, as torch's dynamic quantization of nn.Linear), `static_int8`
(quantize_static, QDQ, activation ranges calibrated on the export's parity batches) or
`hybrid_int8` (the convolutions static as in static_int8, the MatMul/Gemm dynamic as in
dynamic_int8: fp32 convolutions were ~35 % of a dynamic_int8 BERT-base + ResNet-50 call,
docs/BENCHMARKS.md run G). export.py then gates the result exactly as it gates TorchScript.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmdetect.artifacts.onnx_runtime import (
    OUTPUT_NAME,
    OnnxModule,
    make_session,
    parse_model,
    providers_for,
)
from mmdetect.models.classifier import MODEL_INPUTS

FORMATS = ("torchscript", "onnx")
DISPLAY = {"torchscript": "TorchScript", "onnx": "ONNX"}
ONNX_QUANTIZE = ("none", "dynamic_int8", "static_int8", "hybrid_int8")


def format_problem(fmt: str, quantize_mode: str) -> str | None:
    """Why export cannot produce this format / quantization pair; None when it can."""
    if fmt not in FORMATS:
        return f"format must be one of {list(FORMATS)}, got {fmt!r}"
    known = ONNX_QUANTIZE if fmt == "onnx" else ("none", "dynamic_int8")
    if quantize_mode not in known:
        return f"{fmt} quantize must be one of {list(known)}, got {quantize_mode!r}"
    return None


class NonEmptyHint(nn.Module):
    """Wraps the image backbone for torch.export only: the CNN's batch is the number of valid
    photos (`nonzero`, a data-dependent size), and batch norm asks whether it is zero. The hint
    answers 'no' at export time; the ONNX graph keeps no assertion, and ONNX Runtime runs an
    empty batch (all photo masks False) correctly (tests/unit/test_onnx.py)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._check(x.shape[0] > 0)
        return self.backbone(x)


def exportable(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """ProbabilityModel over a copy of `net` at `dtype`, eval mode, backbone hinted."""
    from mmdetect.artifacts.tracing import ProbabilityModel  # export imports this module

    net = copy.deepcopy(net).to(dtype).eval()
    image = getattr(net, "image", None)
    if image is not None and isinstance(getattr(image, "backbone", None), nn.Module):
        image.backbone = NonEmptyHint(image.backbone)
    return ProbabilityModel(net, dtype).eval()


def example_inputs(pre: Mapping[str, Any], device: torch.device) -> tuple[torch.Tensor, ...]:
    """3 listings, 16 tokens (one row padded), 2 photo slots (2, 1 and 0 valid photos): sizes
    above 1, so that torch.export keeps every dimension symbolic."""
    length, size = min(16, int(pre["max_length"])), int(pre["image_size"])
    attention = torch.ones(3, length, dtype=torch.long)
    attention[1, length // 2 :] = 0
    photo_mask = torch.tensor([[True, True], [True, False], [False, False]])
    g = torch.Generator().manual_seed(0)
    out = (
        torch.full((3, length), int(pre["pad_id"]), dtype=torch.long),
        attention,
        torch.randn(3, 2, 3, size, size, generator=g),
        photo_mask,
        torch.randn(3, generator=g),
        torch.tensor([True, True, False]),
        torch.tensor([0, 1, 10_000]),
    )
    return tuple(t.to(device) for t in out)


def dynamic_shapes(max_length: int) -> dict[str, dict[int, Any]]:
    """B, L (1..max_length: BERT's position table) and K (photos) dynamic on every input."""
    from torch.export import Dim

    b, k = Dim("batch", min=1), Dim("photos", min=1)
    length = Dim("length", min=1, max=max_length)
    per_row = {0: b}
    return {
        "input_ids": {0: b, 1: length},
        "attention_mask": {0: b, 1: length},
        "images": {0: b, 1: k},
        "image_mask": {0: b, 1: k},
        "price": per_row,
        "price_mask": per_row,
        "category_id": per_row,
    }


def to_onnx(wrapper: nn.Module, example: tuple, max_length: int, path: Path) -> dict[str, Any]:
    """Write `wrapper` to path as ONNX; returns how ({"exporter", "fallback_reason"?, "opset"})."""
    names, how = list(MODEL_INPUTS), {"exporter": "dynamo"}
    quiet = contextlib.redirect_stdout(io.StringIO())  # the exporter prints its progress
    with warnings.catch_warnings(), torch.no_grad(), quiet:
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(wrapper, example, str(path), input_names=names,
                              output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes(max_length),
                              dynamo=True, external_data=False)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 (any torch.export failure: try the legacy path)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            how = {"exporter": "legacy", "fallback_reason": f"dynamo: {first[:300]}"}
            axes = {n: {0: "batch"} for n in names}
            for n, dims in (("input_ids", 1), ("attention_mask", 1)):
                axes[n] = {0: "batch", dims: "length"}
            axes["images"] = axes["image_mask"] = {0: "batch", 1: "photos"}
            torch.onnx.export(wrapper, example, str(path), input_names=names,
                              output_names=[OUTPUT_NAME], dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
                              dynamo=False, opset_version=18)  # fmt: skip
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    how["opset"] = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return how


class _Batches:
    """onnxruntime.quantization.CalibrationDataReader over input tuples (duck-typed: the
    quantiser only calls get_next)."""

    def __init__(self, batches: Iterable[tuple[torch.Tensor, ...]], names: list[str]):
        self._it = iter(batches)
        self.names = names

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        given = dict(zip(MODEL_INPUTS, batch, strict=True))
        return {n: given[n].detach().cpu().numpy() for n in self.names}


def quantize(src: Path, dst: Path, mode: str, calibration: Callable[[], Iterable[tuple]]) -> None:
    """ORT int8 of src into dst: dynamic (MatMul/Gemm weights), static (QDQ, activation ranges
    from the input tuples `calibration()` yields) or hybrid (static Conv, then dynamic
    MatMul/Gemm)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if mode == "dynamic_int8":
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QInt8)  # fmt: skip
        return
    names = [i.name for i in make_session(src.read_bytes(), ["CPUExecutionProvider"]).get_inputs()]
    if mode == "hybrid_int8":
        # uint8 activations x int8 per-channel weights: the u8s8 kernels x86 CPUs run fastest
        conv = dst.with_name(f"{dst.stem}.conv.onnx")
        quantize_static(src, conv, _Batches(calibration(), names), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        quantize(conv, dst, "dynamic_int8", calibration)
        conv.unlink()
        return
    quantize_static(src, dst, _Batches(calibration(), names), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip


class OnnxArtifact:
    """What export_bundle needs from an exported model: call it, save it, describe it."""

    def __init__(self, data: bytes, module: OnnxModule, meta: dict[str, Any]):
        self.data, self.module, self.meta = data, module, meta

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(*inputs)

    def save(self, path: str) -> None:
        Path(path).write_bytes(self.data)


def build(
    net: nn.Module,
    device: torch.device,
    dtype: str,
    quantize_mode: str,
    pre: Mapping[str, Any],
    batches: Callable[[], Iterable[Mapping[str, torch.Tensor]]],
    calibration_batches: int = 4,
) -> OnnxArtifact:
    """Export `net` at `dtype` (and quantize it) to ONNX bytes; an ORT session over them on
    `device`. `batches()`: collated batches (dicts); static_int8 calibrates on the first few."""
    import onnx
    import onnxruntime

    from mmdetect.artifacts.bundle_format import DTYPES

    def calibration() -> Iterator[tuple[torch.Tensor, ...]]:
        for batch in itertools.islice(batches(), calibration_batches):
            yield tuple(batch[name] for name in MODEL_INPUTS)

    wrapper = exportable(net, DTYPES[dtype]).to(device)
    with tempfile.TemporaryDirectory(prefix="mmdetect-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        how = to_onnx(wrapper, example_inputs(pre, device), int(pre["max_length"]), path)
        if quantize_mode != "none":
            quantize(path, Path(tmp) / "int8.onnx", quantize_mode, calibration)
            path = Path(tmp) / "int8.onnx"
        data = path.read_bytes()
    parse_model(data, "exported model.onnx")  # what the loader will refuse, refused now
    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    meta = {"format": "onnx", "onnx": {**how, "versions": versions}}
    providers = providers_for(device)
    served_on = device if providers[0] == "CUDAExecutionProvider" else torch.device("cpu")
    return OnnxArtifact(data, OnnxModule(make_session(data, providers), served_on), meta)
