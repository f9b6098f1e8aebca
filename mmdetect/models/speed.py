"""Execution levers that leave the model's outputs unchanged: photo-count buckets for the CNN,
channels_last convolutions and torch.compile. Pure torch; DetectorModule switches them on.

Photo buckets: the image tower runs its CNN on the valid photos only, so the CNN's batch size
is the number of real photos in the batch, a new value almost every training step, and every
new convolution shape costs set-up on a GPU (cuDNN plans, allocator growth; ~650 ms against
~220 ms for a step whose shapes were seen, docs/BENCHMARKS.md). `bucketed_features` pads the
selection with zero rows up to the next multiple of `bucket`, so the CNN sees at most
ceil(B*K / bucket) + 1 batch sizes, and keeps the padding out of every BatchNorm's statistics:
the real photos' features, the gradients and the running statistics are those of the unpadded
run (tests/unit/test_speed.py). Skipped under tracing and export, whose graphs must keep the
photo count dynamic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def bucket_size(n: int, bucket: int, cap: int) -> int:
    """`n` rounded up to a multiple of `bucket`, but never above `cap` (nor below `n`)."""
    if bucket <= 0:
        return n
    return max(n, min(cap, -(-n // bucket) * bucket))


def _zero_rows(like: torch.Tensor, rows: int) -> torch.Tensor:
    """`rows` zero rows shaped like `like`'s rows, in its memory format (channels_last or not)."""
    zeros = like.new_zeros((rows, *like.shape[1:]))
    if like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        zeros = zeros.contiguous(memory_format=torch.channels_last)
    return zeros


@contextmanager
def batchnorm_on_first_rows(module: nn.Module, n: int, total: int) -> Iterator[None]:
    """Inside the block, every BatchNorm of `module` in training mode normalises (and updates its
    running statistics from) the first `n` of its `total` rows only; the other rows leave it as
    zeros. Convolutions, activations and pooling treat rows independently, so zero padding rows
    stay zero and never touch the first `n`. In eval mode BatchNorm uses its running statistics
    and rows are independent anyway: nothing is hooked."""
    handles = []
    if n < total:
        for m in module.modules():
            if isinstance(m, _BatchNorm) and m.training:
                handles.append(m.register_forward_pre_hook(lambda _m, args: (args[0][:n],)))
                handles.append(
                    m.register_forward_hook(
                        lambda _m, _a, out: torch.cat([out, _zero_rows(out, total - n)])
                    )
                )
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def bucketed_features(
    backbone: nn.Module, photos: torch.Tensor, bucket: int, cap: int | None = None
) -> torch.Tensor:
    """backbone(photos) [N, D], computed on a batch padded with zero rows to the next multiple
    of `bucket` (at most `cap` rows: the photo slots of the batch, B*K)."""
    if bucket <= 0 or torch.jit.is_tracing() or torch.compiler.is_exporting():
        return backbone(photos)  # traced/exported graphs keep the photo count dynamic
    n = photos.shape[0]
    if n == 0:
        return backbone(photos)
    total = bucket_size(n, bucket, cap=n + bucket if cap is None else cap)
    padded = torch.cat([photos, _zero_rows(photos, total - n)]) if total > n else photos
    with batchnorm_on_first_rows(backbone, n, total):
        return backbone(padded)[:n]


def apply_speedups(
    net: nn.Module, compile_mode: str | None = None, channels_last: bool = False
) -> list[str]:
    """channels_last weights for the CNN, torch.compile of the text tower and fusion, in place.

    The CNN is left eager: its BatchNorm hooks change with the photo count (a recompile per
    count under torch.compile) and cuDNN autotuning over the bucketed shapes serves it instead.
    `nn.Module.compile` keeps parameter names, so checkpoints are unchanged. Returns what was
    done, for the log.
    """
    done = []
    image = getattr(net, "image", None)
    if channels_last and image is not None:
        image.backbone.to(memory_format=torch.channels_last)
        done.append("channels_last CNN")
    if compile_mode:
        for name in ("text", "fusion"):
            module = getattr(net, name, None)
            if module is not None:
                module.compile(mode=None if compile_mode == "default" else compile_mode)
                done.append(f"torch.compile({name}, mode={compile_mode})")
    return done
