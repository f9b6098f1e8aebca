"""The module a bundle holds: ProbabilityModel (logits -> probabilities in the bundle's dtype),
TorchScript tracing, dynamic int8 quantisation, the preprocess.json document.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmdetect.artifacts import bundle_format
from mmdetect.artifacts.export_config import ExportConfig, ExportError


class ProbabilityModel(nn.Module):
    """The pure MultimodalClassifier returning probabilities in float32, whatever its dtype."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net, self.dtype = net, dtype

    def forward(
        self, input_ids, attention_mask, images, image_mask, price, price_mask, category_id
    ):
        logits = self.net(
            input_ids,
            attention_mask,
            images.to(self.dtype),
            image_mask,
            price.to(self.dtype),
            price_mask,
            category_id,
        )
        return torch.sigmoid(logits.float())


def quantize_linear(module: nn.Module, inplace: bool = False) -> nn.Module:
    """`quantize: dynamic_int8`: every nn.Linear with int8 weights, activations quantized per
    call (torch.ao dynamic quantization, CPU kernels only)."""
    quantize = torch.ao.quantization.quantize_dynamic
    return quantize(module, {nn.Linear}, dtype=torch.qint8, inplace=inplace)


def trace_model(
    net: nn.Module, example: tuple, dtype: str, cfg: ExportConfig
) -> torch.jit.ScriptModule:
    """torch.jit.trace of ProbabilityModel on a copy of `net` cast to `dtype` (eval mode),
    its Linear layers quantized first when cfg.quantize asks for it."""
    wrapper = ProbabilityModel(
        copy.deepcopy(net).to(bundle_format.DTYPES[dtype]), bundle_format.DTYPES[dtype]
    ).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings, and trace itself is deprecated in 2.14
        if cfg.quantize == "dynamic_int8":
            wrapper = quantize_linear(wrapper, inplace=True)
        try:
            traced = torch.jit.trace(wrapper, example, check_trace=False)
        except Exception as exc:  # an architecture torch.jit.trace cannot follow
            raise ExportError(
                f"torch.jit.trace cannot trace this model ({text_encoder_name(net)}): {exc}"
            ) from exc
        return torch.jit.freeze(traced) if cfg.freeze else traced


def text_encoder_name(net: nn.Module) -> str:
    """The text encoder as an export error names it, e.g. text encoder bert (BertModel)."""
    text = getattr(net, "text", None)
    if text is None:
        return "no text tower"
    return f"text encoder {text.encoder.config.model_type} ({type(text.encoder).__name__})"


def preprocess_doc(module, data: Mapping[str, Any], pad_id: int) -> dict[str, Any]:
    """preprocess.json: what the datamodule did to a listing, from the checkpoint's hparams;
    the photo part (image_size, mean, std, interpolation) is the model's own ImagePreprocess."""
    cfg = module.net.cfg
    photos = module.net.preprocess.to_doc()
    return {
        "format_version": bundle_format.FORMAT_VERSION,
        "inputs": list(bundle_format.INPUT_NAMES),
        "output": "probabilities [B, C] float32 (sigmoid of the logits), columns in taxonomy order",
        "max_length": int(data.get("max_length", cfg.text.max_length)),
        "max_photos": int(data.get("max_photos", cfg.image.max_photos)),
        **photos,
        "taxonomy": list(module.taxonomy),
        "categories": list(module.hparams.categories),
        "price_mean": float(data["price_mean"]),  # the training split's (load_checkpoint)
        "price_std": float(data["price_std"]),
        "pad_id": pad_id,
        # the evasion normalisation the model was trained with; absent = NFKC only, as before
        **({"normalize": dict(data["normalize"])} if data.get("normalize") else {}),
    }
