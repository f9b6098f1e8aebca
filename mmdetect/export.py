"""`mmdetect export`: a checkpoint to a parity-verified TorchScript or ONNX bundle (docs/bundle-format.md).

Steps: load the DetectorModule (fp32, eager); trace a probability wrapper at the export dtype on
a real batch of the parity snapshot; compare eager and traced on a few hundred listings; write
the bundle to a temporary directory beside the target; load it back through `Predictor` (as it
will be served) and compare again; only then rename it into place. Any failed check raises
ExportError with the measured figures, and the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import mmdetect
from mmdetect import artifact_dir as AD
from mmdetect import bundle as B
from mmdetect import export_onnx as OX
from mmdetect.checkpoint import CheckpointError, load_checkpoint
from mmdetect.data.reader import SnapshotError, read_snapshot
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.export_checks import (
    ExportConfig,
    ExportError,
    check_target,
    exact_cuda_math,
    gate,
    load_export_config,
)
from mmdetect.policy.decide import UNFITTED, unfitted_operating_point
from mmdetect.serve import Predictor, build_dataset, build_loader


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
    wrapper = ProbabilityModel(copy.deepcopy(net).to(B.DTYPES[dtype]), B.DTYPES[dtype]).eval()
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
        "format_version": B.FORMAT_VERSION,
        "inputs": list(B.INPUT_NAMES),
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


def trace_and_compare(
    module, listings, root: Path, tokenizer, pre: dict, cfg: ExportConfig, device
):
    """(traced module, eager probabilities, traced probabilities) over the parity listings."""
    dataset = build_dataset(listings, root, tokenizer, pre)
    module = module.to(device)
    traced, ref, test = None, [], []
    with exact_cuda_math(), torch.no_grad():
        for batch in build_loader(dataset, pre, cfg.batch_size):
            batch = {k: v.to(device) for k, v in batch.items()}
            inputs = tuple(batch[name] for name in B.INPUT_NAMES)
            if traced is None and cfg.format == "onnx":  # static_int8 calibrates on the batches
                batches = lambda: build_loader(dataset, pre, cfg.batch_size)  # noqa: E731
                traced = OX.build(module.net, device, cfg.dtype, cfg.quantize, pre, batches)
            if traced is None:  # a real batch: padding, a mix of photo counts
                traced = trace_model(module.net, inputs, cfg.dtype, cfg)
            ref.append(torch.sigmoid(module(batch)).float().cpu())
            test.append(traced(*inputs).float().cpu())
    return traced, torch.cat(ref).numpy(), torch.cat(test).numpy()


def export_bundle(
    ckpt: str | Path,
    out: str | Path,
    cfg: ExportConfig | None = None,
    thresholds: str | Path | None = None,
    parity_snapshot: str | Path = "data_samples/drift",
    force: bool = False,
    tokenizer: str | None = None,
) -> dict[str, Any]:
    """Write a verified bundle at `out`; returns the parity figures. Raises ExportError."""
    cfg, ckpt, out = cfg or ExportConfig(), Path(ckpt), Path(out)
    device = check_target(cfg)
    inputs = [ckpt.parent, Path(parity_snapshot), thresholds, tokenizer]
    try:
        AD.check_target(out, [p for p in inputs if p is not None], force)
    except AD.TargetError as exc:
        raise ExportError(str(exc)) from None
    for note in AD.clean_stale(out):
        print(note, file=sys.stderr)
    module, data = load_checkpoint(ckpt, tokenizer)
    taxonomy = list(module.taxonomy)
    if thresholds is None:
        th_doc = unfitted_operating_point(taxonomy)
        print(f"warning: no --thresholds: the bundle serves unfitted ones ({UNFITTED})",
              file=sys.stderr)  # fmt: skip
    else:
        try:
            th_doc = B.read_json(Path(thresholds))
            B.check_thresholds(th_doc, taxonomy, str(thresholds))
        except B.BundleError as exc:
            raise ExportError(str(exc)) from exc
    try:
        tok = load_tokenizer(data["tokenizer"])
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{ckpt}: tokenizer {data['tokenizer']!r}: {exc}; pass --tokenizer DIR if it has moved"
        ) from None
    try:
        pre = preprocess_doc(module, data, tok.pad_token_id or 0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{ckpt}: datamodule_hyper_parameters: {exc}") from None
    try:
        snap = read_snapshot(parity_snapshot, taxonomy=taxonomy)
    except SnapshotError as exc:
        raise ExportError(f"parity snapshot: {exc}") from exc
    listings = snap.listings[: cfg.parity_listings]
    if not listings:
        raise ExportError(f"{parity_snapshot}: no listings to check parity on")
    traced, ref, test = trace_and_compare(module, listings, snap.root, tok, pre, cfg, device)
    parity = {"traced": gate(B.parity_figures(ref, test, taxonomy, th_doc), cfg, "traced")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = AD.temp_dir(out)
    try:
        traced.save(str(tmp / B.MODEL_FILES[cfg.format]))
        tok.save_pretrained(str(tmp / B.TOKENIZER_DIR))
        B.write_json(tmp / B.PREPROCESS_FILE, pre)
        B.write_json(tmp / B.THRESHOLDS_FILE, th_doc)
        meta = meta_doc(module, data, ckpt, device, cfg, parity, parity_snapshot)
        meta.update(getattr(traced, "meta", {}))  # ONNX: the exporter used, and versions
        B.write_json(tmp / B.META_FILE, meta)
        B.write_checksums(tmp)
        served = served_probabilities(tmp, device, cfg, listings, snap.root)
        parity["served"] = gate(B.parity_figures(ref, served, taxonomy, th_doc), cfg, "served")
        parity["served"]["vs_traced_max_abs_diff"] = float(np.abs(served - test).max())
        B.write_json(tmp / B.META_FILE, meta)  # now with the served figures
        B.write_checksums(tmp)
        AD.install(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"bundle written to {out}")
    return parity


def served_probabilities(tmp: Path, device, cfg: ExportConfig, listings, root: Path) -> np.ndarray:
    """The written bundle as `Predictor` serves it (checksums, tokenizer, load-time passes)."""
    try:
        predictor = Predictor.from_bundle(tmp, device, batch_size=cfg.batch_size)
        with exact_cuda_math():
            return predictor.predict_proba(listings, root)
    except Exception as exc:
        raise ExportError(f"the written bundle does not load or run: {exc}") from exc


def meta_doc(module, data, ckpt: Path, device, cfg: ExportConfig, parity: dict, snapshot) -> dict:
    import torchvision
    import transformers

    return {
        "format_version": B.FORMAT_VERSION,
        "created_utc": datetime.now(timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        "format": cfg.format,
        "device": str(device),
        "dtype": cfg.dtype,
        "freeze": cfg.freeze,
        "optimize_for_inference": cfg.optimize_for_inference,
        "quantize": cfg.quantize,
        "versions": {
            "mmdetect": mmdetect.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "transformers": transformers.__version__,
        },
        "checkpoint": {"path": str(ckpt.resolve()), "sha256": B.sha256_file(ckpt)},
        "training_config": {"model": B.jsonable(dict(module.hparams)), "data": B.jsonable(data)},
        "parity": parity,  # filled in place: "traced", then "served"
        "parity_check": {"snapshot": str(snapshot), **dataclasses.asdict(cfg)},
    }


def export_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mmdetect export", description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", type=Path, required=True, help="Lightning checkpoint")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    p.add_argument("--config", type=Path, help="configs/export/*.yaml")
    p.add_argument("--format", choices=list(OX.FORMATS), help="overrides the config")
    p.add_argument("--device", choices=["cpu", "cuda"], help="overrides the config")
    p.add_argument("--dtype", choices=list(B.DTYPES), help="overrides the config")
    p.add_argument("--quantize", choices=list(B.QUANTIZE), help="overrides the config")
    p.add_argument("--thresholds", type=Path, help="thresholds.json from mmdetect thresholds fit")
    p.add_argument("--parity-snapshot", type=Path, default=Path("data_samples/drift"))
    p.add_argument("--parity-listings", type=int, help="overrides the config")
    p.add_argument("--tokenizer", help="tokenizer directory, if the recorded one moved")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    args = p.parse_args(argv)
    try:
        cfg = load_export_config(args.config)
        for key in ("format", "device", "dtype", "quantize", "parity_listings"):
            if getattr(args, key) is not None:
                setattr(cfg, key, getattr(args, key))
        export_bundle(
            args.ckpt,
            args.out,
            cfg,
            args.thresholds,
            args.parity_snapshot,
            args.force,
            args.tokenizer,
        )
    except (ExportError, CheckpointError, B.BundleError, AD.TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
