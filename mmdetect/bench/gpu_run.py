"""`mmdetect.bench.gpu run`: training and inference listings/s per set of speed levers.

Each variant (a `Levers`) builds a fresh seeded BERT-base + ResNet-50 and measures, in order:
  train       Lightning fit from the JPEGs (DataLoader workers decode and augment): listings/s
              end to end after warm-up steps, and the share of step time spent waiting for data;
  train_model the same optimizer step over batches already on the device, no DataLoader: the
              compute ceiling, which tells a data-bound run from a compute-bound one;
  inference   eval from the JPEGs end to end (timed passes after a warm one, persistent
              workers as a serving process keeps them), model only (pre-collated batches on
              the device) and the DataLoader alone.
Variants run in the order given, each after the previous one's memory is freed; one that would
start after `budget_s` is skipped and said so, so the whole run stays within the device budget.
"""

from __future__ import annotations

import gc
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from itertools import islice

import torch

from mmdetect.bench.gpu_profile import train_step


@dataclass(frozen=True)
class Levers:
    """One benchmark variant; `off` is the run measured before the levers existed."""

    batch_size: int = 32
    infer_batch_size: int = 128
    workers: int = 8
    prefetch_factor: int = 2
    photo_bucket: int = 0  # DetectorModule(photo_bucket=...): CNN batch to a multiple of this
    channels_last: bool = False
    compile: str | None = None  # torch.compile mode of the text tower and fusion
    fused_adamw: bool = False
    cudnn_benchmark: bool = False  # cuDNN autotuning (training and inference)


_ON = Levers(batch_size=128, infer_batch_size=256, workers=16, prefetch_factor=4,
             photo_bucket=32, channels_last=True, fused_adamw=True, cudnn_benchmark=True)  # fmt: skip
VARIANTS: dict[str, Levers] = {
    "off": Levers(),
    "on": _ON,  # configs/train/gpu_fast.yaml without compile
    "on_b32": replace(_ON, batch_size=32, infer_batch_size=128),  # the levers without the batch
    "on_compile": replace(_ON, compile="default"),  # = configs/train/gpu_fast.yaml
}


def _timed(sync: Callable[[], None], fn: Callable[[], int]) -> tuple[int, float]:
    """(items fn returned, wall seconds), synchronised on both sides."""
    sync()
    start = time.perf_counter()
    n = fn()
    sync()
    return n, time.perf_counter() - start


def _on(batch: dict, device: torch.device) -> dict:
    return {n: v.to(device, non_blocking=True) for n, v in batch.items()}


def train_lightning(module, batches, lv: Levers, args, device: torch.device) -> dict:
    """Lightning fit for args.warmup_steps + args.steps steps; the StepTimer summary."""
    import lightning as L

    from mmdetect.bench.train import StepTimer, summarize

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timer = StepTimer(sync=sync, skip=args.warmup_steps)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision=args.precision, max_steps=args.steps + args.warmup_steps,
        benchmark=lv.cudnn_benchmark, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], default_root_dir=str(args.out.parent),
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    out = summarize(timer)
    out["first_steps_s"] = [
        round(w + c, 3) for w, c in zip(timer.wait, timer.compute, strict=False)
    ][:8]
    if device.type == "cuda":
        out["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def train_model_only(module, cached: list[dict], lv: Levers, amp: bool, sync) -> dict:
    """Optimizer steps over batches already on the device: one pass warm, one pass timed."""
    device = cached[0]["labels"].device
    fused = True if lv.fused_adamw and device.type == "cuda" else None
    opt = torch.optim.AdamW(module.net.parameters(), lr=1e-5, fused=fused)
    module.trainer = None  # detached from the fit: its self.log() calls only warn now
    module.train()
    for b in cached:
        train_step(module, opt, b, amp)
    n, seconds = _timed(sync, lambda: sum(train_step(module, opt, b, amp) for b in cached))
    return {
        "batches": len(cached),
        "listings_per_s": n / seconds,
        "step_ms": 1e3 * seconds / len(cached),
    }


def infer(net, loader, cached_from: Iterable[dict], args, amp: bool, sync) -> dict:
    """End to end (args.infer_passes timed passes after a warm one), model only, loader alone."""
    from mmdetect.training.module import model_inputs

    device = next(net.parameters()).device
    net.eval()
    # `loader` is iterated for every pass: its persistent workers stay up between passes

    def passes(k: int, model: bool) -> int:
        n = 0
        for _ in range(k):
            for batch in loader:
                if model:
                    net(*model_inputs(_on(batch, device)))
                n += len(batch["labels"])
        return n

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    with torch.no_grad(), autocast:
        passes(1, True)  # workers up, cuDNN autotuning and compilation done
        n, seconds = _timed(sync, lambda: passes(args.infer_passes, True))
        n_load, load_s = _timed(sync, lambda: passes(1, False))
        cached = [_on(b, device) for b in cached_from]
        for b in cached:
            net(*model_inputs(b))
        n_model, model_s = _timed(
            sync, lambda: sum(len(net(*model_inputs(b))) for b in cached for _ in range(2))
        )
    end_to_end, model_only = n / seconds, n_model / model_s
    return {
        "end_to_end_listings_per_s": end_to_end,
        "model_only_listings_per_s": model_only,
        "end_to_end_share_of_model_only": end_to_end / model_only,
        "loader_only_listings_per_s": n_load / load_s,
        "timed_passes": args.infer_passes,
    }


def measure(args, lv: Levers, module, loader, datasets, sync) -> dict:
    """train, train_model_only and inference figures of one variant (module docstring)."""
    device, amp = torch.device(args.device), args.precision != "32-true"
    train_ds, eval_ds = datasets
    # A few workers for the short-lived loaders that fill the device-side caches.
    few = replace(lv, workers=min(lv.workers, 4), prefetch_factor=2)
    fig = {"train": train_lightning(module, loader(train_ds, lv, True), lv, args, device)}
    cached = [_on(b, device) for b in islice(loader(train_ds, few, True), args.model_only_batches)]
    fig["train_model_only"] = train_model_only(module, cached, lv, amp, sync)
    del cached
    # Autotuning only where photo buckets make the CNN's shapes repeat: with the CNN batch
    # a new size every batch, cuDNN would re-benchmark at every batch (docs/BENCHMARKS.md).
    torch.backends.cudnn.benchmark = lv.cudnn_benchmark
    eval_cached = islice(loader(eval_ds, few, False), args.model_only_batches)
    fig["inference"] = infer(module.net, loader(eval_ds, lv, False), eval_cached, args, amp, sync)
    return fig


def run_variants(
    args, head: dict, levers: dict[str, Levers], build, loader, datasets, save
) -> dict:
    """Every variant of `levers` within `args.budget_s`; `save` after each (a partial result)."""
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {**head, "levers": {n: asdict(lv) for n, lv in levers.items()}, "variants": {}}
    start = time.perf_counter()
    for name, lv in levers.items():
        if time.perf_counter() - start > args.budget_s:
            out["variants"][name] = {"skipped": f"over the {args.budget_s:.0f} s budget"}
            save(out)
            continue
        t0 = time.perf_counter()
        try:
            out["variants"][name] = {**measure(args, lv, build(lv), loader, datasets, sync),
                                     "seconds": time.perf_counter() - t0}  # fmt: skip
        except Exception as exc:  # e.g. torch.compile failing there: the other variants stand
            out["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            traceback.print_exc()
        save(out)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    out["seconds"] = time.perf_counter() - start
    save(out)
    return out


def format_variants(r: dict) -> list[str]:
    lines = [f"{r['device']}: {r['model']} {r['precision']}, {r['listings']} listings"]
    for name, f in r["variants"].items():
        if "skipped" in f or "error" in f:
            lines.append(f"  {name}: {f.get('skipped') or f['error'].splitlines()[0]}")
            continue
        t, m, i, lv = f["train"], f["train_model_only"], f["inference"], r["levers"][name]
        lines.append(
            f"  {name} (batch {lv['batch_size']}/{lv['infer_batch_size']}, {lv['workers']} "
            f"workers): train {t['listings_per_s']:.0f} listings/s end to end (data wait "
            f"{t['data_wait_share']:.0%}), {m['listings_per_s']:.0f} model only; inference "
            f"{i['end_to_end_listings_per_s']:.0f} end to end, {i['model_only_listings_per_s']:.0f} "
            f"model only ({i['end_to_end_share_of_model_only']:.0%}), loader alone "
            f"{i['loader_only_listings_per_s']:.0f}; {f['seconds']:.0f} s"
        )
    return lines
