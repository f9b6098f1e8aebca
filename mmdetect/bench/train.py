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
from mmdetect.datamodule import DetectorDataModule
from mmdetect.lit import DetectorModule
from mmdetect.models.image import ImageConfig
from mmdetect.models.text import TextConfig


class StepTimer(Callback):
    """Per training step: data wait and compute seconds. `sync` (torch.cuda.synchronize on a
    GPU) runs at each batch end so compute is not hidden by asynchronous kernels; the first
    `skip` steps are warm-up, left out of the summary."""

    def __init__(self, sync: Callable[[], None] | None = None, skip: int = 1):
        self.sync, self.skip = sync, skip
        self.wait: list[float] = []
        self.compute: list[float] = []
        self.sizes: list[int] = []
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


def train_steps(steps: int, num_workers: int | None = None, **data_overrides) -> StepTimer:
    """`steps` optimizer steps of tiny.yaml (no validation, no checkpoints, no logger)."""
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
        tokenizer=data["tokenizer"],
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
    }


def bench_train(steps: int = 20, reps: int = 1, workers: tuple[int, ...] = (2, 0), **over) -> dict:
    """Alternated runs per worker count; the figures of the median-throughput run of each."""
    runs: dict[int, list[dict]] = {w: [] for w in workers}
    for rep in range(reps):
        for w in workers if rep % 2 == 0 else workers[::-1]:
            runs[w].append(summarize(train_steps(steps, num_workers=w, **over)))
    out = {}
    for w, figs in runs.items():
        figs = sorted(figs, key=lambda f: f["steps_per_s"])
        out[w] = {**figs[len(figs) // 2], "runs": len(figs)}
    return {"steps": steps, "torch_threads": torch.get_num_threads(), "by_workers": out}


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
    if len(by) >= 2:
        (wa, fa), (wb, fb) = list(by.items())[:2]
        lines.append(
            f"  ratio steps/s workers={wa} / workers={wb}: {fa['steps_per_s'] / fb['steps_per_s']:.2f}x"
        )
    return lines
