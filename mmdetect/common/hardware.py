"""What the CPU can do, read from /proc/cpuinfo (torch reports only its kernel tier)."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

# Native bf16 matrix units: without one of these, torch emulates bf16 on the CPU (7-20x slower
# than eager fp32 on our AVX2 machines, docs/BENCHMARKS.md).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; (platform.processor(), {}) where unreadable."""
    model, flags = platform.processor() or "unknown", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("unknown", "", platform.processor()):
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX-512 BF16 or AMX; also True where flags cannot be read."""
    flags = cpu_info()[1]
    return not flags or any(f in flags for f in BF16_FLAGS)
