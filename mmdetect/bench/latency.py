"""Export variants on CPU: latency at batch 1 and throughput at batch 32, random weights.

Every variant wraps the same seeded MultimodalClassifier as export does (probabilities out):
  eager_fp32          the module itself
  ts_fp32             torch.jit.trace + freeze (export.trace_model, fp32)
  ts_fp32_ofi         ts_fp32 + torch.jit.optimize_for_inference (what cpu.yaml serves)
  ts_bf16             export.trace_model at bf16
  eager_channels_last the module with channels_last conv weights
  eager_int8_dynamic  export.quantize_linear: dynamic int8 quantization of every nn.Linear
  ts_int8_ofi         export.trace_model with quantize=dynamic_int8 + optimize_for_inference
                      (what configs/export/cpu_int8.yaml serves)
  compiled            torch.compile (inductor), optional: minutes of compilation here
  ort_fp32, ort_int8_dynamic, ort_int8_static, ort_int8_hybrid, aoti:
                      mmdetect/bench/onnx_variants.py
Variants are timed in alternating order within each repetition. Flips: decisions (p >= 0.5)
that differ from eager_fp32 on the same batch.

The default comparison (FORMATS) is what a user picks between at export: eager fp32, the two
TorchScript bundles (cpu.yaml, cpu_int8.yaml), ONNX Runtime fp32 / int8 dynamic / static / hybrid,
TorchScript bf16 only on CPUs with native bf16 (emulated it is 10-20x slower), AOTInductor
only when asked for (`--aoti`: minutes of C++ compilation per model on 2 cores).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from mmdetect.artifacts.tracing import ProbabilityModel, quantize_linear, trace_model
from mmdetect.bench.assets import big_config, build_net, random_batch, tiny_config
from mmdetect.bench.common import median, percentile
from mmdetect.bench.onnx_variants import ORT_VARIANTS, aoti_variant, ort_variants
from mmdetect.common.hardware import cpu_has_native_bf16
from mmdetect.models.classifier import ModelConfig
from mmdetect.ops.export import ExportConfig

VARIANTS = ("eager_fp32", "ts_fp32", "ts_fp32_ofi", "ts_bf16", "eager_channels_last",
            "eager_int8_dynamic", "ts_int8_ofi", "compiled", *ORT_VARIANTS)  # fmt: skip
# not in VARIANTS (test_bench runs those): minutes of C++ compilation even for the tiny model
AOTI = "aoti"


def format_variants(aoti: bool = False) -> tuple[str, ...]:
    """The side-by-side export formats; bf16 only where the CPU runs it natively."""
    bf16 = ("ts_bf16",) if cpu_has_native_bf16() else ()
    return ("eager_fp32", "ts_fp32_ofi", "ts_int8_ofi", *ORT_VARIANTS, *bf16,
            *((AOTI,) if aoti else ()))  # fmt: skip


def build_variants(
    net: nn.Module, example: tuple, names: tuple[str, ...], model: ModelConfig | None = None
) -> tuple[dict[str, Callable], dict[str, float]]:
    """(callables returning probabilities, build seconds) for the requested variants; the
    ONNX Runtime and AOTInductor ones need `model` (its sizes bound the dynamic shapes)."""
    cfg = ExportConfig(freeze=True)
    eager = ProbabilityModel(net, torch.float32).eval()
    if model is None and any(n in ORT_VARIANTS or n == AOTI for n in names):
        raise ValueError("the ONNX Runtime and AOTInductor variants need the model config")
    ort, build_s = ort_variants(net, model, names) if model is not None else ({}, {})
    out: dict[str, Callable] = dict(ort)  # one fp32 export shared, counted in each build time
    for name in names:
        start = time.perf_counter()
        if name in ort:
            continue
        if name == AOTI:
            out[name], build_s[name] = aoti_variant(net, model), time.perf_counter() - start
            continue
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if name == "eager_fp32":
                out[name] = eager
            elif name == "ts_fp32":
                out[name] = trace_model(net, example, "fp32", cfg)
            elif name == "ts_fp32_ofi":
                traced = trace_model(net, example, "fp32", cfg)
                out[name] = torch.jit.optimize_for_inference(traced)
            elif name == "ts_bf16":
                out[name] = trace_model(net, example, "bf16", cfg)
            elif name == "eager_channels_last":
                out[name] = copy.deepcopy(eager).to(memory_format=torch.channels_last)
            elif name == "eager_int8_dynamic":
                out[name] = quantize_linear(copy.deepcopy(eager))
            elif name == "ts_int8_ofi":
                int8 = ExportConfig(freeze=True, quantize="dynamic_int8")
                traced = trace_model(net, example, "fp32", int8)
                out[name] = torch.jit.optimize_for_inference(traced)
            elif name == "compiled":
                out[name] = torch.compile(copy.deepcopy(eager))
            else:
                raise ValueError(f"unknown variant {name!r}; known: {VARIANTS}")
        build_s[name] = time.perf_counter() - start
    return {n: out[n] for n in names}, build_s


def _timed(fn: Callable, inputs: tuple) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.no_grad():
        probs = fn(*inputs)
    return time.perf_counter() - start, probs


def bench_model(
    cfg: ModelConfig,
    names: tuple[str, ...] = VARIANTS,
    photos: int = 1,
    reps1: int = 30,
    reps32: int = 5,
    warmup: int = 2,
    big_batch: int = 32,
    max_call_s: float = 30.0,
) -> dict:
    """Per variant: p50/p99 ms at batch 1, listings/s at `big_batch`, flips vs eager fp32.

    A variant whose estimated `big_batch` call (32x its batch-1 latency) exceeds max_call_s is
    not run at that batch; its flips are then counted at batch 1.
    """
    net = build_net(cfg)
    b1 = random_batch(cfg, 1, photos, seed=1)
    bn = random_batch(cfg, big_batch, photos, seed=2)
    example = random_batch(cfg, 4, photos, seed=3)  # padding and a photo-less row, traced fast
    fns, build_s = build_variants(net, example, names, cfg)
    first_call: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name, fn in list(fns.items()):
        try:
            first_call[name] = _timed(fn, b1)[0]  # torch.compile compiles here
        except Exception as exc:  # noqa: BLE001 (a variant that does not run here is a finding)
            failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
            del fns[name]
            continue
        for _ in range(warmup - 1):
            _timed(fn, b1)
    lat: dict[str, list[float]] = {n: [] for n in fns}
    out1: dict[str, torch.Tensor] = {}
    order = list(fns)
    for rep in range(reps1):
        for name in order if rep % 2 == 0 else order[::-1]:
            lat[name].append(_timed(fns[name], b1)[0])
    big = [n for n in order if median(lat[n]) * big_batch <= max_call_s]
    for name in order:
        out1[name] = _timed(fns[name], b1)[1]
    batch_warmup: dict[str, float] = {}
    for name in big:  # torch.compile recompiles here for the new batch size
        batch_warmup[name] = sum(_timed(fns[name], bn)[0] for _ in range(max(1, warmup - 1)))
    thr: dict[str, list[float]] = {n: [] for n in big}
    outn: dict[str, torch.Tensor] = {}
    for rep in range(reps32):
        for name in big if rep % 2 == 0 else big[::-1]:
            seconds, outn[name] = _timed(fns[name], bn)
            thr[name].append(seconds)
    ref_n, ref_1 = outn.get("eager_fp32"), out1.get("eager_fp32")
    results = {}
    for name in order:
        p, ref = (outn.get(name), ref_n) if name in outn and ref_n is not None else (None, None)
        if p is None:
            p, ref = out1[name], ref_1
        res = {
            "build_s": build_s[name],
            "first_call_s": first_call[name],
            "batch_warmup_s": batch_warmup.get(name),
            "p50_ms": 1e3 * median(lat[name]),
            "p99_ms": 1e3 * percentile(lat[name], 99),
            "batch_listings_per_s": big_batch / median(thr[name]) if name in thr else None,
        }
        if ref is not None:
            res["flips"] = int(((p >= 0.5) != (ref >= 0.5)).sum())
            res["decisions"] = int(p.numel())
            res["max_abs_dp"] = float((p.float() - ref.float()).abs().max())
        results[name] = res
    base = results.get("eager_fp32", {})
    for res in results.values():
        res["p50_speedup"] = base.get("p50_ms", float("nan")) / res["p50_ms"]
        if res["batch_listings_per_s"] and base.get("batch_listings_per_s"):
            res["batch_speedup"] = res["batch_listings_per_s"] / base["batch_listings_per_s"]
    return {
        "photos": photos,
        "length": cfg.text.max_length,
        "image_size": cfg.image.image_size,
        "reps1": reps1,
        "reps_batch": reps32,
        "big_batch": big_batch,
        "variants": results,
        "failed": failed,
    }


def bench_export(
    quick: bool = False,
    tiny_reps: tuple[int, int] = (40, 8),
    big_reps: tuple[int, int] = (10, 3),
    with_compile: bool = False,
    big_batch: int = 32,
    big_max_call_s: float = 120.0,
    variants: tuple[str, ...] | None = None,
    aoti: bool = False,
    models: tuple[str, ...] = ("tiny", "big"),
) -> dict:
    """The tiny model (vocab of data_samples/tokenizer) and, unless quick, the big one
    (neither torch.compile nor AOTInductor: each takes minutes to build it on 2 cores).

        The big model runs batch 32 for every variant whose batch-1 latency is under
        big_max_call_s / 32 (about 3.7 s): all but emulated bf16 on AVX2 CPUs."""
    names = variants or format_variants(aoti)
    names += ("compiled",) if with_compile and not quick else ()
    out = {}
    if "tiny" in models:
        out["tiny"] = bench_model(tiny_config(1672), names, photos=2, reps1=tiny_reps[0],
                                  reps32=tiny_reps[1], big_batch=big_batch)  # fmt: skip
    if not quick and "big" in models:
        big_names = tuple(n for n in names if n not in ("compiled", "aoti"))  # minutes to build
        out["big"] = bench_model(big_config(), big_names, photos=1, reps1=big_reps[0],
                                 reps32=big_reps[1], big_batch=big_batch,
                                 max_call_s=big_max_call_s)  # fmt: skip
    return out


def format_export(r: dict) -> list[str]:
    lines = []
    for model, fig in r.items():
        lines.append(
            f"export/{model}: L={fig['length']} tokens, {fig['photos']} photo(s) of "
            f"{fig['image_size']} px; batch 1: {fig['reps1']} alternated reps, batch "
            f"{fig['big_batch']}: {fig['reps_batch']}"
        )
        lines.append(f"  {'variant':20s} {'p50 ms':>9s} {'p99 ms':>9s} {'x eager':>8s} "
                     f"{'b' + str(fig['big_batch']) + ' lst/s':>10s} {'x eager':>8s} {'flips':>7s} {'max|dp|':>8s} "
                     f"{'build s':>8s} {'1st s':>7s} {'b-warm s':>8s}")  # fmt: skip
        for name, v in fig["variants"].items():
            thr = v["batch_listings_per_s"]
            flips = f"{v['flips']}/{v['decisions']}" if "flips" in v else "-"
            lines.append(
                f"  {name:20s} {v['p50_ms']:9.2f} {v['p99_ms']:9.2f} {v['p50_speedup']:7.2f}x "
                + (f"{thr:10.1f} {v.get('batch_speedup', float('nan')):7.2f}x " if thr else
                   f"{'skipped':>10s} {'':8s} ")
                + f"{flips:>7s} {v.get('max_abs_dp', float('nan')):8.2g} "
                f"{v['build_s']:8.1f} {v['first_call_s']:7.2f} {v['batch_warmup_s'] or 0:8.2f}"
            )  # fmt: skip
        lines += [f"  {name:20s} FAILED: {why}" for name, why in fig.get("failed", {}).items()]
    return lines
