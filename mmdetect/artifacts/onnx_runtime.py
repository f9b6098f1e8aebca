"""Serving an ONNX bundle: model.onnx checked, then run by ONNX Runtime behind the same call
as a TorchScript module (torch tensors in MODEL_INPUTS order -> float32 probabilities [B, C]).

A bundle is hostile input. The model bytes are read once, hashed against SHA256SUMS, parsed and
checked, and the session is built from those same bytes (no path: ORT has nowhere to resolve
external files from). Refused: tensors stored outside the file (external data, which ONNX
resolves as paths that may point anywhere), operators from custom domains (they would need a
library loaded from disk), inputs the model does not define.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdetect.models.classifier import MODEL_INPUTS

ONNX_FILE = "model.onnx"
OUTPUT_NAME = "probabilities"
# Standard ONNX, ONNX-ML and ORT's contrib ops (what its graph optimiser and quantiser emit).
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


class OnnxModelError(RuntimeError):
    """model.onnx is unreadable or unsafe; bundle.py turns it into a BundleError."""


def _graph_tensors(graph) -> Iterator[Any]:
    """Every TensorProto a graph holds: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
        for sparse in attr.sparse_tensors:
            yield from (sparse.values, sparse.indices)
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def _graph_domains(graph) -> Iterator[str]:
    for node in graph.node:
        yield node.domain
        for attr in node.attribute:
            subs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
            for sub in subs:
                yield from _graph_domains(sub)


def check_model(model, where: str) -> None:
    """Refuse external data and custom-domain operators anywhere in the model (functions too)."""
    import onnx

    tensors = list(_graph_tensors(model.graph))
    for fn in model.functions:
        tensors += [t for node in fn.node for t in _node_tensors(node)]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            raise OnnxModelError(
                f"{where}: tensor {tensor.name!r} refers to external data: refused (a bundle's "
                "model.onnx must hold all its weights; external paths could point anywhere)"
            )
    local = {fn.domain for fn in model.functions}
    domains = set(_graph_domains(model.graph))
    for fn in model.functions:
        domains |= {node.domain for node in fn.node}
    unknown = sorted(domains - STANDARD_DOMAINS - local)
    if unknown:
        raise OnnxModelError(f"{where}: operators from custom domain {unknown[0]!r}: refused")


def parse_model(data: bytes, where: str):
    """onnx.ModelProto from bytes, checked (check_model); OnnxModelError if not ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise OnnxModelError(f"{where}: not an ONNX model (truncated or corrupt?): {exc}") from None
    if not model.graph.node:
        raise OnnxModelError(f"{where}: not an ONNX model (no graph)")
    check_model(model, where)
    return model


def providers_for(device: torch.device) -> list[str]:
    """ORT execution providers for `device`: CUDA first when asked for and installed."""
    import onnxruntime as ort

    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(data: bytes, providers: Sequence[str], threads: int | None = None):
    """An InferenceSession over model bytes, all graph optimisations, torch's thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: ORT warns about every unused initializer
    return ort.InferenceSession(data, sess_options=opts, providers=list(providers))


class OnnxModule:
    """An ORT session called like the TorchScript module: `module(*tensors)` -> torch float32
    probabilities on `device`. Inputs the graph dropped (a disabled tower's) are not fed.

    The graph is exported for K >= 1 photo slots: lowered to ONNX, `any` over an empty photo
    axis is True (ReduceMax of nothing), so K = 0 is fed as one slot masked False, which the
    model ignores by construction (tests/unit/test_onnx.py compares it with eager)."""

    def __init__(self, session, device: torch.device, where: str = ONNX_FILE):
        self.session, self.device = session, device
        names = [i.name for i in session.get_inputs()]
        unknown = sorted(set(names) - set(MODEL_INPUTS))
        if unknown:
            raise OnnxModelError(f"{where}: unknown inputs {unknown}; expected {MODEL_INPUTS}")
        outputs = [o.name for o in session.get_outputs()]
        if outputs != [OUTPUT_NAME]:
            raise OnnxModelError(f"{where}: outputs {outputs}, expected [{OUTPUT_NAME!r}]")
        self.input_names = names
        self.providers = session.get_providers()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(MODEL_INPUTS, inputs, strict=True))
        if given["images"].shape[1] == 0:  # K = 0: one masked slot, which changes nothing
            given["images"] = given["images"].new_zeros(
                (*given["images"].shape[:1], 1, *given["images"].shape[2:])
            )
            given["image_mask"] = given["image_mask"].new_zeros(given["image_mask"].shape[0], 1)
        feeds = {n: np.ascontiguousarray(given[n].detach().cpu().numpy()) for n in self.input_names}
        (probs,) = self.session.run([OUTPUT_NAME], feeds)
        return torch.from_numpy(probs).to(self.device)

    def eval(self) -> OnnxModule:
        return self


def load_onnx(
    path: Path, device: torch.device, sums: Mapping[str, str] | None = None
) -> OnnxModule:
    """Read, hash (against `sums[name]` when given), check and open model.onnx on `device`
    (CUDA provider when present, else CPU: `module.device` says which)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise OnnxModelError(f"{path}: cannot read: {exc}") from None
    if sums is not None and hashlib.sha256(data).hexdigest() != sums.get(Path(path).name):
        raise OnnxModelError(f"{path}: does not match its SHA256 in SHA256SUMS (changed?)")
    parse_model(data, str(path))
    providers = providers_for(device)
    served_on = device if providers[0] == "CUDAExecutionProvider" else torch.device("cpu")
    try:
        session = make_session(data, providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OnnxModelError(f"{path}: ONNX Runtime cannot load it: {first}") from None
    return OnnxModule(session, served_on, str(path))
