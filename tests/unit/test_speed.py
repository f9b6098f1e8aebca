"""Speed levers (mmdetect/models/speed.py, DetectorModule options, configs/train/gpu_fast.yaml):
each must leave what the model computes unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from mmdetect.models.image import ImageConfig
from mmdetect.models.image_tower import ImageTower
from mmdetect.models.speed import apply_speedups, bucket_size, bucketed_features

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")


def test_bucket_size_rounds_up_within_the_cap() -> None:
    assert [bucket_size(n, 8, cap=20) for n in (0, 1, 8, 9, 17, 20)] == [0, 8, 8, 16, 20, 20]
    assert bucket_size(5, 0, cap=20) == 5  # off
    assert bucket_size(30, 8, cap=20) == 30  # never below n
    # a bounded set of CNN batch sizes: every count from 1 to B*K=32 lands in 4 sizes
    assert {bucket_size(n, 8, cap=32) for n in range(1, 33)} == {8, 16, 24, 32}


def _towers(bucket: int, seed: int = 0) -> tuple[ImageTower, ImageTower]:
    torch.manual_seed(seed)
    plain = ImageTower(ImageConfig(name="resnet18", image_size=32, max_photos=3))
    bucketed = copy.deepcopy(plain)
    bucketed.photo_bucket = bucket
    return plain, bucketed


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_photo_buckets_leave_outputs_grads_and_batchnorm_stats_unchanged(training: bool) -> None:
    plain, bucketed = _towers(bucket=4)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 3, 32, 32, generator=g)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, False, False]])
    for tower in (plain, bucketed):
        tower.train(training)
    (p_pool, p_feats, _), (b_pool, b_feats, _) = plain(images, mask), bucketed(images, mask)
    torch.testing.assert_close(b_pool, p_pool, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b_feats, p_feats, rtol=1e-5, atol=1e-6)
    assert p_feats[~mask].abs().max() == 0 and b_feats[~mask].abs().max() == 0
    weights = torch.randn_like(p_pool, generator=g)
    (p_pool * weights).sum().backward()
    (b_pool * weights).sum().backward()
    for (name, a), (_, b) in zip(
        plain.named_parameters(), bucketed.named_parameters(), strict=True
    ):
        if a.grad is None:
            assert b.grad is None, name
        else:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    for (name, a), (_, b) in zip(plain.named_buffers(), bucketed.named_buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    if training:  # the running statistics did move (from the 3 real photos only)
        assert not torch.equal(plain.backbone.bn1.running_mean, torch.zeros(64))


def test_bucketed_features_pads_the_cnn_batch_and_unhooks_batchnorm() -> None:
    _, tower = _towers(bucket=8)
    seen: list[int] = []
    tower.backbone.conv1.register_forward_pre_hook(lambda _m, args: seen.append(len(args[0])))
    tower.train()
    photos = torch.randn(5, 3, 32, 32)
    feats = bucketed_features(tower.backbone, photos, bucket=8, cap=12)
    assert feats.shape == (5, tower.out_dim) and seen == [8]
    bucketed_features(tower.backbone, photos[:3], bucket=0)  # off: the batch as it is
    assert seen == [8, 3]
    bns = [m for m in tower.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in bns)


def test_photo_buckets_are_skipped_under_tracing() -> None:
    """The exported graph must keep a dynamic photo count (export.py traces in eval mode)."""
    plain, bucketed = _towers(bucket=4)
    bucketed.eval()
    images, mask = torch.randn(2, 3, 3, 32, 32), torch.tensor([[1, 1, 0], [1, 0, 0]]).bool()

    class Pooled(torch.nn.Module):
        def __init__(self, tower: ImageTower):
            super().__init__()
            self.tower = tower

        def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return self.tower(x, m)[0]

    with torch.no_grad():
        traced = torch.jit.trace(Pooled(bucketed), (images, mask), check_trace=False)
    other = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()  # 5 photos: no bucket was baked in
    with torch.no_grad():
        torch.testing.assert_close(traced(images, other), plain.eval()(images, other)[0])


def test_apply_speedups_channels_last_and_compile_keep_names(tiny_config) -> None:
    from mmdetect.models.classifier import MultimodalClassifier

    net = MultimodalClassifier(tiny_config())
    names = list(net.state_dict())
    done = apply_speedups(net, compile_mode="default", channels_last=True)
    assert done == ["channels_last CNN", "torch.compile(text, mode=default)",
                    "torch.compile(fusion, mode=default)"]  # fmt: skip
    assert net.image.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(net.state_dict()) == names  # checkpoints unchanged
    assert apply_speedups(net) == []


def test_gpu_fast_overlay_switches_the_levers_on(monkeypatch) -> None:
    from mmdetect.training.run import check_config

    monkeypatch.chdir(REPO)
    base = ["--config", "configs/train/bert_base_resnet50.yaml"]
    plain = check_config(base)
    fast = check_config([*base, "--config", "configs/train/gpu_fast.yaml"])
    assert (plain.model.photo_bucket, plain.model.compile, plain.model.fused_adamw) == (
        0,
        None,
        False,
    )
    assert (plain.data.pin_memory, plain.model.channels_last) == (False, False)
    assert fast.model.photo_bucket == 32 and fast.model.compile == "default"
    assert fast.model.fused_adamw and fast.model.channels_last and fast.trainer.benchmark
    assert fast.trainer.precision == "bf16-mixed" and fast.data.pin_memory
    assert fast.data.batch_size == 128 and fast.data.prefetch_factor == 4
    assert fast.model.text.pretrained == plain.model.text.pretrained  # the model is unchanged


def test_tiny_fit_with_the_levers_on(tmp_path, monkeypatch) -> None:
    """Two optimizer steps through the real CLI with every lever but compile (CPU: minutes)."""
    from mmdetect.training.run import build_cli

    monkeypatch.chdir(REPO)
    cli = build_cli(
        ["fit", "--config", "configs/train/tiny.yaml", "--trainer.fast_dev_run=2",
         f"--trainer.default_root_dir={tmp_path}", "--data.num_workers=0",
         "--data.snapshots=[data_samples/drift]", "--data.split=hash",
         "--model.photo_bucket=16", "--model.channels_last=true", "--model.fused_adamw=true"]
    )  # fmt: skip
    assert cli.trainer.global_step == 2 and cli.model.net.image.photo_bucket == 16
    conv = cli.model.net.image.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert cli.trainer.optimizers[0].defaults["fused"] is None  # CUDA only
