"""timm backbones: built without weights, from a local state dict, or from the hub cache; their
own preprocessing (mean, std, size, interpolation) comes with them."""

from __future__ import annotations

import pytest
import timm
import torch

from mmdetect.models import ModelConfig, create_model
from mmdetect.models.image import ImageConfig, ImagePreprocess
from mmdetect.models.image_tower import ImageTower

pytestmark = pytest.mark.usefixtures("single_thread")

# test_convnext: 0.2 M parameters, LayerNorm only; its pretrained_cfg says mean = std = 0.5,
# bicubic, 160 px: none of it the ImageNet default, so the test sees where values come from.
NAME = "test_convnext"
OWN = ImagePreprocess(160, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def _tower(**kw) -> ImageTower:
    torch.manual_seed(0)
    return ImageTower(ImageConfig(**{"name": NAME, "source": "timm", "image_size": 32, **kw}))


def test_timm_tower_features_masks_and_preprocess():
    tower = _tower(image_size=None).eval()
    assert tower.preprocess == OWN and tower.out_dim == 64
    assert _tower().preprocess == ImagePreprocess(32, OWN.mean, OWN.std, "bicubic")
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 3, 32, 32, generator=g)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with torch.no_grad():
        pooled, photos, out_mask = tower(images, mask)
        direct = tower.backbone(images[0, :2])
    assert torch.allclose(photos[0, :2], direct, atol=1e-5)
    assert torch.allclose(pooled[0], direct.mean(0), atol=1e-5)
    assert torch.equal(photos[0, 2], torch.zeros(64)) and torch.equal(out_mask, mask)
    assert torch.equal(pooled[1], tower.missing.detach())


def test_timm_local_weights_file_loads_whatever_the_head(tmp_path):
    torch.manual_seed(3)
    source = timm.create_model(NAME, pretrained=False, num_classes=5)
    path = tmp_path / f"{NAME}.pth"
    torch.save(source.state_dict(), path)
    tower = _tower(weights=str(path))
    head = source.pretrained_cfg["classifier"] + "."
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith(head)}
    loaded = tower.backbone.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert tower.preprocess.mean == OWN.mean  # a weights file keeps the model's own config


def test_timm_hub_weights_go_through_pretrained_true(monkeypatch):
    seen = {}
    real = timm.create_model

    def fake(name, pretrained=False, **kw):
        seen.update(name=name, pretrained=pretrained, **kw)
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    _tower(weights="pretrained")
    assert seen == {"name": NAME, "pretrained": True, "num_classes": 0}


def test_timm_offline_cache_miss_and_bad_names_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))  # nothing cached here
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        _tower(name="resnet10t", weights="pretrained")
    with pytest.raises(ValueError, match="timm model 'no_such_net'"):
        _tower(name="no_such_net")
    with pytest.raises(ValueError, match="timm image weights"):
        _tower(weights="IMAGENET1K_V1")


def test_create_model_returns_the_backbone_preprocess(tiny_config):
    cfg = tiny_config(image={"name": NAME, "source": "timm", "image_size": 24})
    model, pre = create_model(cfg)
    assert pre is model.preprocess and pre == ImagePreprocess(24, OWN.mean, OWN.std, "bicubic")
    text_only, pre = create_model(tiny_config(image={"enabled": False}))
    assert text_only.image is None and pre == ImagePreprocess(32)  # unused; ImageNet at the size
    assert isinstance(cfg, ModelConfig)


CHILD = """
import sys
sys.modules["timm"] = None  # `import timm` raises from here on
import torch
model = torch.jit.load(sys.argv[1])
inputs = torch.load(sys.argv[2])
torch.save(model(*inputs), sys.argv[3])
"""


def test_traced_timm_model_loads_and_runs_without_timm(tiny_config, make_batch, tmp_path):
    import subprocess
    import sys
    import warnings

    torch.manual_seed(0)
    model, _ = create_model(tiny_config(image={"name": NAME, "source": "timm"}))
    inputs = tuple(make_batch().values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.freeze(torch.jit.trace(model.eval(), inputs, check_trace=False))
        expected = model(*inputs)
    traced.save(str(tmp_path / "model.ts"))
    torch.save(inputs, tmp_path / "inputs.pt")
    args = [str(tmp_path / n) for n in ("model.ts", "inputs.pt", "out.pt")]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.allclose(torch.load(tmp_path / "out.pt"), expected, atol=1e-5)
