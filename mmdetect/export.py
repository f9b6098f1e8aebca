"""`mmdetect export`: a checkpoint to a parity-verified TorchScript or ONNX bundle (docs/bundle-format.md).

Steps: load the DetectorModule (fp32, eager); trace a probability wrapper at the export dtype on
a real batch of the parity snapshot; compare eager and traced on a few hundred listings; write
the bundle to a temporary directory beside the target; load it back through `Predictor` (as it
will be served) and compare again; only then rename it into place. Any failed check raises
ExportError with the measured figures, and the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import logging
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

import mmdetect
from mmdetect import artifact_dir as AD
from mmdetect import bundle as B
from mmdetect import export_onnx as OX
from mmdetect.checkpoint import CheckpointError, build_module, read_checkpoint
from mmdetect.data.reader import SnapshotError, read_snapshot
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.hardware import cpu_has_native_bf16
from mmdetect.policy.decide import UNFITTED, unfitted_operating_point
from mmdetect.serve import Predictor, build_dataset, build_loader

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """Export refused or failed; nothing was written."""


@dataclass
class ExportConfig:
    """configs/export/*.yaml; command-line flags override it."""

    format: str = "torchscript"  # | "onnx": ONNX Runtime (mmdetect/export_onnx.py)
    device: str = "cpu"  # "cpu" | "cuda": where tracing and the parity check run
    dtype: str = "fp32"  # "fp32" | "bf16" | "fp16" (fp16: CUDA only)
    freeze: bool = True  # torch.jit.freeze: weights become graph constants
    # torch.jit.optimize_for_inference, applied by Predictor at load time on the export device
    # type (torch 2.14 cannot reload an optimized graph); the served parity check covers it
    optimize_for_inference: bool = False
    # "dynamic_int8" (quantize_linear; CPU fp32 only): 1.65x eager fp32 at batch 32 for
    # BERT-base + ResNet-50 on our AVX2 CPUs, no better than fp32 for the tiny model, whose time
    # is in the convolutions (docs/BENCHMARKS.md). Parity-gated like bf16. ONNX: ORT's
    # dynamic_int8 (MatMul/Gemm) or static_int8 (QDQ, calibrated on the parity batches).
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


def check_target(cfg: ExportConfig) -> torch.device:
    """The export device, or a clear refusal for combinations that cannot work."""
    if cfg.dtype not in B.DTYPES:
        raise ExportError(f"dtype must be one of {list(B.DTYPES)}, got {cfg.dtype!r}")
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


def load_checkpoint(ckpt: Path, tokenizer: str | None = None):
    """(DetectorModule in eval mode on CPU, datamodule hparams dict or {}).

    Read with weights_only=True (mmdetect.checkpoint); raises CheckpointError naming the file.
    """
    raw = read_checkpoint(ckpt)
    data = dict(raw.get("datamodule_hyper_parameters") or {})
    hp = raw.get("hyper_parameters") or {}
    tok = tokenizer or data.get("tokenizer") or hp.get("tokenizer")
    if not isinstance(tok, str):
        raise CheckpointError(f"{ckpt}: no tokenizer recorded; pass --tokenizer DIR")
    module = build_module(raw, Path(ckpt), tokenizer)
    data["tokenizer"] = tok
    stats = checkpoint_price_stats(raw, data, Path(ckpt))
    data["price_mean"], data["price_std"] = stats.mean, stats.std
    return module, data


def checkpoint_price_stats(raw: Mapping[str, Any], data: Mapping[str, Any], ckpt: Path):
    """The price statistics fitted on the training split, as the checkpoint stores them
    (DetectorDataModule.state_dict); for an older checkpoint its datamodule settings, else the
    legacy constants, each with a warning. Bad values raise CheckpointError."""
    from mmdetect.data.dataset import LEGACY_PRICE_STATS, PriceStats
    from mmdetect.datamodule import DetectorDataModule

    state = raw.get(DetectorDataModule.__qualname__)
    where = f"{ckpt}: {DetectorDataModule.__qualname__}"
    if not (isinstance(state, Mapping) and "price_mean" in state):
        where = f"{ckpt}: datamodule_hyper_parameters"
        state = data if data.get("price_mean") is not None else None
        if state is None:
            log.warning("%s has no price statistics: legacy %s", ckpt, LEGACY_PRICE_STATS)
            return LEGACY_PRICE_STATS
        log.warning("%s has no fitted price statistics: using its settings", ckpt)
    try:
        return PriceStats(float(state["price_mean"]), float(state["price_std"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: bad price_mean/price_std: {exc}") from None


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
    }


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
