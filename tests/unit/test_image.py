"""Image tower (torchvision and timm), head removal, weights loading, preprocessing, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2

from mmdetect.models.image import (
    ImageConfig,
    ImagePreprocess,
    build_backbone,
    build_transforms,
    drop_classifier,
)
from mmdetect.models.image_tower import ImageTower, masked_mean

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


@pytest.mark.parametrize("mean, std", [(None, None), ((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))])
def test_eval_transform_values_from_pil_and_tensor(mean, std):
    cfg = ImagePreprocess(16) if mean is None else ImagePreprocess(16, mean, std)
    pil = Image.new("RGB", (40, 24), (255, 0, 128))
    out = build_transforms(cfg, train=False)(pil)
    mean = mean or (0.485, 0.456, 0.406)  # ImageNet: the from-scratch default
    std = std or (0.229, 0.224, 0.225)
    expected = (torch.tensor([255, 0, 128]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.allclose(out, expected[:, None, None].expand(3, 16, 16), atol=1e-4)
    as_tensor = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1)
    assert torch.allclose(build_transforms(cfg, train=False)(as_tensor), out, atol=1e-6)


def test_train_transform_is_random_and_sized():
    torch.manual_seed(0)
    cfg = ImagePreprocess(16)
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
    pre = ImageTower(ImageConfig(weights="IMAGENET1K_V1", image_size=None)).preprocess
    assert pre == ImagePreprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")


def test_interpolation_is_applied():
    img = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8)
    outs = {
        mode: build_transforms(ImagePreprocess(16, (0, 0, 0), (1, 1, 1), mode), train=False)(img)
        for mode in ("nearest", "bilinear", "bicubic")
    }
    ref = v2.functional.resize(img, 16, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    ref = v2.functional.center_crop(ref, [16, 16]).float() / 255
    assert torch.allclose(outs["bicubic"], ref, atol=1e-6)
    assert not torch.allclose(outs["bicubic"], outs["bilinear"], atol=1e-3)
    assert not torch.allclose(outs["nearest"], outs["bilinear"], atol=1e-3)


def test_preprocess_document_round_trip_and_refusals():
    pre = ImagePreprocess(48, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0), "bicubic")
    doc = pre.to_doc()
    assert doc == {"image_size": 48, "mean": [0.5] * 3, "std": [0.25, 0.5, 1.0],
                   "interpolation": "bicubic"}  # fmt: skip
    assert ImagePreprocess.from_doc(doc) == pre
    del doc["interpolation"]  # a bundle written before the key existed: bilinear, as then
    assert ImagePreprocess.from_doc(doc).interpolation == "bilinear"
    for bad, match in (
        (dict(interpolation="lanczos"), "interpolation"),
        (dict(std=(0.5, 0.0, 0.5)), "std"),
        (dict(mean=(0.5, 0.5)), "mean"),
        (dict(image_size=0), "image_size"),
    ):
        with pytest.raises(ValueError, match=match):
            ImagePreprocess(**{"image_size": 8, **bad})


def test_torchvision_from_scratch_is_imagenet_at_the_configured_size():
    _, _, pre = build_backbone(ImageConfig(name="mobilenet_v3_small", image_size=40))
    assert pre == ImagePreprocess(40)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.interpolation == "bilinear"


def test_unknown_source_and_weights_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="image source"):
        ImageTower(ImageConfig(source="hub"))
    with pytest.raises(ValueError, match="IMAGENET9K"):
        ImageTower(ImageConfig(weights="IMAGENET9K_V9"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable state dict"):
        ImageTower(ImageConfig(weights=str(bad)))
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), other)
    with pytest.raises(ValueError, match="do not fit the backbone"):
        ImageTower(ImageConfig(weights=str(other)))
