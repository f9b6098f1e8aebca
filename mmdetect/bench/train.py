"""Training throughput of configs/train/tiny.yaml on CPU, and the time spent waiting for data.

A Lightning callback stamps each training batch: compute = batch start -> batch end (forward,
backward, optimizer step), data wait = previous batch end -> this batch start (the DataLoader
fetch plus a little Lightning bookkeeping). The first step (worker start-up, first fetch) is
reported apart. Runs with the config's DataLoader workers and with none are alternated.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from mmdetect.bench.assets import tiny_sections
from mmdetect.bench.common import median
from mmdetect.models.image import ImageConfig
from mmdetect.models.text import TextConfig
from mmdetect.training.datamodule import DetectorDataModule
from mmdetect.training.module import DetectorModule


class StepTimer(Callback):
    """Per training step: data wait and compute seconds. `sync` (torch.cuda.synchronize on a
    GPU) runs at each batch end so compute is not hidden by asynchronous kernels; the first
    `skip` steps are warm-up, left out of the summary."""

    def __init__(self, sync: Callable[[], None] | None = None, skip: int = 1):
        self.sync, self.skip = sync, skip
        self.wait: list[float] = []
        self.compute: list[float] = []
        self.sizes: list[int] = []
        self.losses: list[float] = []
        self._fit_start = self._last_end = self._start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self.wait.append(self._start - self._last_end)
        self.sizes.append(len(batch["labels"]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.sync is not None:
            self.sync()
        self._last_end = time.perf_counter()
        self.compute.append(self._last_end - self._start)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss))


def train_steps(
    steps: int, num_workers: int | None = None, photo_bucket: int = 0, **data_overrides
) -> StepTimer:
    """`steps` optimizer steps of tiny.yaml (no validation, no checkpoints, no logger); with
    `photo_bucket`, the CNN's photo batch padded to a multiple of it (models/speed.py)."""
    model, data = tiny_sections()
    text, image = TextConfig(**model["text"]), ImageConfig(**model["image"])
    data = {**data, **data_overrides}
    if num_workers is not None:
        data["num_workers"] = num_workers
    dm = DetectorDataModule(
        **data, max_length=text.max_length, image_size=image.image_size,
        max_photos=image.max_photos,
    )  # fmt: skip
    torch.manual_seed(0)
    module = DetectorModule(
        text=text, image=image, fusion=model.get("fusion", "concat"),
        modality_dropout=model.get("modality_dropout", 0.0), lr=model.get("lr", 1e-3),
        tokenizer=data["tokenizer"], photo_bucket=photo_bucket,
    )  # fmt: skip
    timer = StepTimer()
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-train-") as root,
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            trainer = L.Trainer(
                accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0,
                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=root, callbacks=[timer],
                num_sanity_val_steps=0,
            )  # fmt: skip
            trainer.fit(module, datamodule=dm)
    finally:
        quiet.setLevel(level)
    return timer


def summarize(timer: StepTimer) -> dict:
    k = timer.skip
    wait, compute, sizes = timer.wait[k:], timer.compute[k:], timer.sizes[k:]
    total = sum(wait) + sum(compute)
    return {
        "steps_timed": len(compute),
        "first_step_s": timer.wait[0] + timer.compute[0] if timer.compute else float("nan"),
        "warmup_steps_s": sum(timer.wait[:k]) + sum(timer.compute[:k]),
        "steps_per_s": len(compute) / total if total else float("nan"),
        "listings_per_s": sum(sizes) / total if total else float("nan"),
        "data_wait_share": sum(wait) / total if total else float("nan"),
        "median_wait_ms": 1e3 * median(wait),
        "median_compute_ms": 1e3 * median(compute),
        "last_loss": timer.losses[-1] if timer.losses else float("nan"),
        "losses": timer.losses,
    }


def bench_train(
    steps: int = 20,
    reps: int = 1,
    workers: tuple[int, ...] = (2, 0),
    buckets: tuple[int, ...] = (0, 32),
    **over,
) -> dict:
    """Alternated runs per worker count, then per photo bucket (0 = off) without workers, so
    that both sides see the same batches (same seed, data loaded inline); the figures of the
    median-throughput run of each, and how far the bucketed runs' losses are from the plain."""
    runs: dict[tuple[str, int], list[dict]] = {}
    contenders = [("workers", w) for w in workers] + [("bucket", b) for b in buckets]
    for rep in range(reps):
        for kind, v in contenders if rep % 2 == 0 else contenders[::-1]:
            kw = {"num_workers": v} if kind == "workers" else {"num_workers": 0, "photo_bucket": v}
            runs.setdefault((kind, v), []).append(summarize(train_steps(steps, **kw, **over)))
    out: dict = {"steps": steps, "torch_threads": torch.get_num_threads()}
    for kind in ("workers", "bucket"):
        by = {}
        for (k, v), figs in runs.items():
            if k == kind:
                figs = sorted(figs, key=lambda f: f["steps_per_s"])
                by[v] = {**figs[len(figs) // 2], "runs": len(figs)}
        out[f"by_{kind}"] = by
    plain = [f["losses"] for f in runs.get(("bucket", 0), [])]
    deltas = [
        max(abs(a - b) for a, b in zip(p, f["losses"], strict=True))
        for (k, v), figs in runs.items()
        if k == "bucket" and v > 0
        for p, f in zip(plain, figs, strict=False)
    ]
    out["bucket_max_abs_loss_delta"] = max(deltas) if deltas else None
    return out


def format_train(r: dict) -> list[str]:
    lines = [
        f"train: configs/train/tiny.yaml, {r['steps']} steps (first step excluded), no "
        f"validation, {r['torch_threads']} torch threads"
    ]
    for w, f in r["by_workers"].items():
        lines.append(
            f"  num_workers={w}: {f['steps_per_s']:.2f} steps/s, {f['listings_per_s']:.0f} "
            f"listings/s, data wait {f['data_wait_share']:.0%} of step time (median wait "
            f"{f['median_wait_ms']:.0f} ms, compute {f['median_compute_ms']:.0f} ms), first "
            f"step {f['first_step_s']:.2f} s; median of {f['runs']} run(s)"
        )
    by = r["by_workers"]
    lines += _ratio(by, "workers")
    for b, f in r.get("by_bucket", {}).items():
        lines.append(
            f"  photo_bucket={b} (no workers): {f['steps_per_s']:.2f} steps/s, "
            f"{f['listings_per_s']:.0f} listings/s (median compute {f['median_compute_ms']:.0f} "
            f"ms), loss after {f['steps_timed'] + 1} steps {f['last_loss']:.6f}; median of "
            f"{f['runs']} run(s)"
        )
    lines += _ratio(r.get("by_bucket", {}), "photo_bucket", invert=True)
    if r.get("bucket_max_abs_loss_delta") is not None:
        lines.append(
            "  max |loss difference| per step, bucketed vs plain runs (same batches): "
            f"{r['bucket_max_abs_loss_delta']:.2e}"
        )
    return lines


def _ratio(by: dict, name: str, invert: bool = False) -> list[str]:
    """The first two contenders' steps/s ratio (first / second, or second / first)."""
    if len(by) < 2:
        return []
    (a, fa), (b, fb) = list(by.items())[:2][:: -1 if invert else 1]
    return [
        f"  ratio steps/s {name}={a} / {name}={b}: {fa['steps_per_s'] / fb['steps_per_s']:.2f}x"
    ]
