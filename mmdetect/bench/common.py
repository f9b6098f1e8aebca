"""Shared benchmark helpers: the machine header, alternating timers, medians and percentiles.

Contenders are always timed in the same loop, alternating their order on every repetition, so a
load spike from a neighbouring job hits both sides; ratios are medians of per-repetition ratios.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import torch

from mmdetect.common.hardware import cpu_info

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")


def machine() -> dict[str, Any]:
    """What the figures were measured on, including the load average at the start."""
    model, flags = cpu_info()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count() or 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "cpu_flags": {f: f in flags for f in FLAGS_OF_INTEREST},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in load],
    }


def format_machine(m: Mapping[str, Any]) -> str:
    flags = " ".join(f"{k}={'yes' if v else 'no'}" for k, v in m["cpu_flags"].items())
    return "\n".join(
        [
            f"# date (UTC): {m['date_utc']}",
            f"# cpu: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), "
            f"torch capability {m['torch_cpu_capability']}",
            f"# flags: {flags}",
            f"# torch {m['torch']}, {m['torch_threads']} intra-op threads, python {m['python']}",
            f"# load average at start (1/5/15 min): {' / '.join(map(str, m['loadavg']))}",
        ]
    )


def alternate(
    contenders: Mapping[str, Callable[[], Any]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall seconds of each contender, `reps` times, in alternating order (ABBA...)."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); with few samples p99 is the maximum."""
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def speedup(times: Mapping[str, Sequence[float]], fast: str, slow: str) -> float:
    """Median over repetitions of slow_time / fast_time (same work on both sides)."""
    pairs = zip(times[slow], times[fast], strict=True)
    return median([s / f for s, f in pairs])


def per_second(count: int, seconds: Sequence[float]) -> float:
    """Items per second at the median time."""
    return count / median(seconds)
