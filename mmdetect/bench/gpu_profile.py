"""Where a GPU training step goes: a plain torch loop (no Lightning) over pre-collated batches.

Times forward / backward / optimizer for steps whose input shapes are new and for steps whose
shapes were seen before (the CNN's batch is the number of valid photos, which changes from step
to step), then runs `torch.profiler` over two seen-shape steps: kernel launches per step and the
top ops. Needs only the tokens file of `mmdetect.bench.gpu prep`, like `run`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch

LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")


def _loss(module, batch: dict, amp: bool) -> torch.Tensor:
    """DetectorModule.training_step's own loss, under bf16 autocast when `amp`."""
    with (
        warnings.catch_warnings(),
        torch.autocast(batch["labels"].device.type, dtype=torch.bfloat16, enabled=amp),
    ):
        warnings.simplefilter("ignore")  # its self.log() calls, outside a Trainer, only warn
        return module.training_step(batch, 0)


def train_step(module, opt, batch: dict, amp: bool) -> int:
    """One optimizer step (no synchronisation); the number of listings it saw."""
    _loss(module, batch, amp).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return len(batch["labels"])


def _step(module, opt, batch: dict, amp: bool, sync: Callable[[], None]) -> tuple[float, ...]:
    """One optimizer step: forward, backward and optimizer seconds."""
    start = time.perf_counter()
    loss = _loss(module, batch, amp)
    sync()
    forward = time.perf_counter()
    loss.backward()
    sync()
    backward = time.perf_counter()
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync()
    return forward - start, backward - forward, time.perf_counter() - backward


def _mean_ms(parts: list[tuple[float, ...]]) -> dict[str, float]:
    names = ("forward_ms", "backward_ms", "optimizer_ms")
    out = {n: 1e3 * sum(p[i] for p in parts) / len(parts) for i, n in enumerate(names)}
    out["step_ms"] = sum(out.values())
    return out


def profile_steps(
    module, batches: list[dict], amp: bool, top: int = 10, fused: bool = False
) -> dict:
    """Phase times for new-shape and seen-shape steps; launches and top ops from the profiler."""
    device = batches[0]["labels"].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    module.train()
    fused_ok = True if fused and device.type == "cuda" else None
    opt = torch.optim.AdamW(module.net.parameters(), lr=1e-4, fused=fused_ok)
    new = [_step(module, opt, b, amp, sync) for b in batches]  # first sight of each shape
    seen = [_step(module, opt, b, amp, sync) for b in batches]  # the same shapes again
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for b in batches[:2]:
            _step(module, opt, b, amp, sync)
    events = prof.key_averages()
    n = min(2, len(batches))
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {
        "batches": len(batches),
        "new_shapes": _mean_ms(new),
        "seen_shapes": _mean_ms(seen),
        "kernel_launches_per_step": sum(e.count for e in events if e.key in LAUNCHES) / n,
        "cpu_ms_per_step": sum(e.self_cpu_time_total for e in events) / 1e3 / n,
        "device_ms_per_step": sum(getattr(e, "self_device_time_total", 0) for e in events)
        / 1e3
        / n,
        "top_ops": events.table(sort_by=sort, row_limit=top, max_name_column_width=40),
    }


def format_profile(r: dict) -> str:
    new, seen = r["new_shapes"], r["seen_shapes"]
    return (
        f"profile over {r['batches']} batches: new shapes {new['step_ms']:.0f} ms/step "
        f"(forward {new['forward_ms']:.0f}, backward {new['backward_ms']:.0f}, optimizer "
        f"{new['optimizer_ms']:.1f}); seen shapes {seen['step_ms']:.0f} ms/step; profiled: "
        f"{r['kernel_launches_per_step']:.0f} kernel launches, {r['cpu_ms_per_step']:.0f} ms CPU, "
        f"{r['device_ms_per_step']:.0f} ms GPU per step\n{r['top_ops']}"
    )
