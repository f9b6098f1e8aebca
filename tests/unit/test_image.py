"""Image tower, head removal, weights loading and transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from mmdetect.models.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageConfig,
    ImageTower,
    build_transforms,
    drop_classifier,
    masked_mean,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _tower(**kw) -> ImageTower:
    torch.manual_seed(0)
    return ImageTower(ImageConfig(image_size=32, **kw))


def _photos(seed: int = 0, b: int = 3, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[True, False, False], [True, True, True], [False, False, False]])
    return torch.randn(b, k, 3, 32, 32, generator=g), mask


def test_drop_classifier_keeps_features():
    resnet = torchvision.models.get_model("resnet18")
    assert drop_classifier(resnet) == (512, "fc")
    assert isinstance(resnet.fc, torch.nn.Identity)
    mobilenet = torchvision.models.get_model("mobilenet_v3_small")
    assert drop_classifier(mobilenet) == (1024, "classifier.3")
    assert mobilenet.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1024)  # Hardswish etc. kept


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("train", [False, True])
def test_masked_photos_change_nothing(pooling, train):
    tower = _tower(pooling=pooling).train(train)
    images, mask = _photos()
    other = torch.where(mask[..., None, None, None], images, torch.randn_like(images) * 50)
    out, per_photo, out_mask = tower(images, mask)
    assert out.shape == (3, tower.out_dim) == (3, 512)
    assert per_photo.shape == (3, 3, 512) and torch.equal(out_mask, mask)
    assert torch.equal(per_photo[~mask], torch.zeros_like(per_photo[~mask]))  # padding: zeros
    assert torch.equal(out, tower(other, mask)[0])
    assert torch.equal(out[2], tower.missing.detach())  # no valid photo -> learned embedding
    assert not torch.equal(out[1], tower(torch.randn_like(images), mask)[0][1])


def test_mean_pooling_values_in_eval():
    tower = _tower().eval()
    images, mask = _photos()
    with torch.no_grad():
        feats = tower.backbone(images.flatten(0, 1)).unflatten(0, (3, 3))
        out = tower(images, mask)[0]
    assert torch.allclose(out[0], feats[0, 0], atol=1e-6)
    assert torch.allclose(out[1], feats[1].mean(0), atol=1e-6)
    assert torch.allclose(masked_mean(feats, mask)[2], torch.zeros(512))


@pytest.mark.parametrize("train", [False, True])
def test_cnn_sees_only_the_valid_photos(train):
    """Padding slots never reach the backbone, in training (BatchNorm) nor in eval (cost)."""
    tower = _tower().train(train)
    seen: list[int] = []
    tower.backbone.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    images, mask = _photos()  # 4 valid photos in 9 slots
    tower(images, mask)
    tower(images, torch.zeros_like(mask))  # no valid photo in the batch at all
    assert seen == [4] if train else seen == [4, 0]  # training skips the empty call


def test_attention_pooling_values():
    tower = _tower(pooling="attention").eval()
    images, mask = _photos()
    with torch.no_grad():
        feats = tower.backbone(images.flatten(0, 1)).unflatten(0, (3, 3))
        weights = torch.softmax(tower.pool.score(feats[1]).squeeze(-1), dim=0)
        out = tower(images, mask)[0]
    assert torch.allclose(out[0], feats[0, 0], atol=1e-5)  # one valid photo gets weight 1
    assert torch.allclose(out[1], (weights[:, None] * feats[1]).sum(0), atol=1e-5)


def test_gradients_reach_missing_embedding_and_backbone():
    tower = _tower(pooling="attention").train()
    images, mask = _photos()
    tower(images, mask)[0].sum().backward()
    assert tower.missing.grad is not None and tower.missing.grad.abs().sum() > 0
    assert all(p.grad is not None for p in tower.parameters())


def test_zero_photos_and_bad_pooling():
    tower = _tower().eval()
    out = tower(torch.zeros(2, 0, 3, 32, 32), torch.zeros(2, 0, dtype=torch.bool))[0]
    assert torch.equal(out, tower.missing.detach().expand(2, -1))
    with pytest.raises(ValueError, match="pooling"):
        _tower(pooling="max")


def test_weights_file_loads_whatever_the_head(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=5)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    tower = ImageTower(ImageConfig(weights=str(path)))
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    loaded = tower.backbone.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_eval_transform_values_from_pil_and_tensor():
    cfg = ImageConfig(image_size=16)
    pil = Image.new("RGB", (40, 24), (255, 0, 128))
    out = build_transforms(cfg, train=False)(pil)
    expected = (torch.tensor([255, 0, 128]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out, expected[:, None, None].expand(3, 16, 16), atol=1e-4)
    as_tensor = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    assert torch.allclose(build_transforms(cfg, train=False)(as_tensor), out, atol=1e-6)


def test_train_transform_is_random_and_sized():
    torch.manual_seed(0)
    cfg = ImageConfig(image_size=16)
    img = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    a, b = build_transforms(cfg, train=True)(img), build_transforms(cfg, train=True)(img)
    assert a.shape == b.shape == (3, 16, 16) and a.dtype == torch.float32
    assert not torch.equal(a, b)


def test_weights_enum_name_goes_to_torchvision(monkeypatch):
    seen = {}

    def fake_get_model(name, **kwargs):
        seen.update(name=name, **kwargs)
        return torchvision.models.resnet18()

    monkeypatch.setattr(torchvision.models, "get_model", fake_get_model)
    ImageTower(ImageConfig(weights="IMAGENET1K_V1"))
    assert seen == {"name": "resnet18", "weights": "IMAGENET1K_V1"}
    assert torchvision.models.get_model_weights("resnet18").verify("IMAGENET1K_V1") is not None
