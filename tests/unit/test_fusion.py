"""CrossAttentionFusion: hand-computed values, masks, photo-less listings, build-time errors;
a fusion module outside the package, named by class path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmdetect.models.classifier import MultimodalClassifier
from mmdetect.models.fusion import (
    FUSIONS,
    CrossAttentionFusion,
    Encoded,
    FusionDims,
    build_fusion,
)
from tests.custom_fusion import TokenPhotoSumFusion

pytestmark = pytest.mark.usefixtures("single_thread")

DIMS = FusionDims(pooled=(5, 6, 4), text=5, photos=6)


def _encoded(seed: int = 0) -> Encoded:
    """2 listings, 3 tokens, 2 photo slots: listing 0 has token 2 and photo 1 masked out;
    listing 1 has no photo at all."""
    g = torch.Generator().manual_seed(seed)
    tokens, photos = torch.randn(2, 3, 5, generator=g), torch.randn(2, 2, 6, generator=g)
    token_mask = torch.tensor([[True, True, False], [True, True, True]])
    photo_mask = torch.tensor([[True, False], [False, False]])
    pooled = [torch.randn(2, d, generator=g) for d in DIMS.pooled]
    return Encoded(pooled, tokens, token_mask, photos, photo_mask)


def _fusion(**kw) -> CrossAttentionFusion:
    torch.manual_seed(0)
    return CrossAttentionFusion(DIMS, hidden=4, dropout=0.0, **{"num_heads": 2, **kw}).eval()


def by_hand(f: CrossAttentionFusion, enc: Encoded) -> torch.Tensor:
    """The documented computation written out: one layer, heads split by hand."""
    layer, heads = f.layers[0], 2
    x = f.query(enc.tokens)
    kv = torch.cat([f.no_photo.expand(2, 1, 4), f.key(enc.photos)], dim=1)
    valid = torch.cat([torch.ones(2, 1, dtype=torch.bool), enc.photo_mask], dim=1)
    wq, wk, wv = layer.attn.in_proj_weight.chunk(3)
    bq, bk, bv = layer.attn.in_proj_bias.chunk(3)
    q, k, v = x @ wq.T + bq, kv @ wk.T + bk, kv @ wv.T + bv
    d = 4 // heads
    outs = []
    for h in range(heads):
        part = slice(h * d, (h + 1) * d)
        scores = q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d)  # [B, L, 1 + K]
        scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        outs.append(torch.softmax(scores, dim=-1) @ v[..., part])
    attended = torch.cat(outs, -1) @ layer.attn.out_proj.weight.T + layer.attn.out_proj.bias
    x = layer.norm1(x + attended)
    x = layer.norm2(x + layer.ffn(x))
    w = enc.token_mask.float().unsqueeze(-1)
    text = (x * w).sum(1) / w.sum(1)
    pooled = [p(v) for p, v in zip(f.projections, enc.pooled, strict=True)]
    hidden = F.gelu(torch.cat([text, *pooled], -1))
    return F.gelu(f.mlp[1](hidden))


def test_values_match_a_hand_computation():
    f, enc = _fusion(), _encoded()
    with torch.no_grad():
        out = f(enc)
        assert out.shape == (2, 4) and torch.allclose(out, by_hand(f, enc), atol=1e-5)


def test_masked_photos_and_tokens_change_nothing():
    f, enc = _fusion(layers=2), _encoded()
    photos, tokens = enc.photos.clone(), enc.tokens.clone()
    photos[0, 1], photos[1] = 1e4, -7.0  # masked slot of listing 0; listing 1 has none
    tokens[0, 2] = 50.0  # padding token of listing 0
    with torch.no_grad():
        out = f(enc)
        assert torch.equal(out, f(enc._replace(photos=photos, tokens=tokens)))
        photos[0, 0] = 3.0  # the one valid photo does matter
        assert not torch.allclose(out[0], f(enc._replace(photos=photos))[0])


def test_listing_without_photos_attends_to_the_no_photo_token_only():
    f, enc = _fusion(), _encoded()
    with torch.no_grad():
        x = f.attend(enc)[1]  # listing 1: no photo
        layer = f.layers[0]
        v = F.linear(f.no_photo[0], *[t.chunk(3)[2] for t in (layer.attn.in_proj_weight,
                                                             layer.attn.in_proj_bias)])  # fmt: skip
        attended = layer.attn.out_proj(v).expand(3, 4)  # softmax over one key: weight 1
        q = f.query(enc.tokens[1])
        expected = layer.norm2(layer.norm1(q + attended) + layer.ffn(layer.norm1(q + attended)))
        assert torch.allclose(x, expected, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_no_photos_anywhere_and_dropped_text_stay_finite(train):
    f = _fusion().train(train)
    enc = _encoded()
    empty = enc._replace(
        photos=torch.zeros(2, 0, 6), photo_mask=torch.zeros(2, 0, dtype=torch.bool)
    )
    no_text = enc._replace(token_mask=torch.zeros(2, 3, dtype=torch.bool))
    for case in (empty, no_text, enc._replace(photo_mask=torch.zeros(2, 2, dtype=torch.bool))):
        out = f(case)
        assert torch.isfinite(out).all()
        out.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in f.parameters() if p.grad is not None)
    assert f.no_photo.grad.abs().sum() > 0


def test_build_time_errors(tiny_config):
    assert FUSIONS["cross_attention"] is CrossAttentionFusion
    for off in ({"image": {"enabled": False}}, {"text": {"enabled": False}}):
        with pytest.raises(ValueError, match="needs both the text and the image tower"):
            MultimodalClassifier(tiny_config(fusion="cross_attention", **off))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build_fusion({"class_path": "cross_attention", "init_args": {"num_heads": 3}}, DIMS, 4, 0)
    with pytest.raises(TypeError, match="heads"):  # a misspelt init_arg is not ignored
        build_fusion({"class_path": "cross_attention", "init_args": {"heads": 2}}, DIMS, 4, 0)


def test_a_fusion_outside_the_package_plugs_in_by_class_path(tiny_config, make_batch):
    spec = {"class_path": "tests.custom_fusion.TokenPhotoSumFusion", "init_args": {"scale": 0.5}}
    with pytest.raises(ValueError, match="'tests.custom_fusion' is not allowed"):
        MultimodalClassifier(tiny_config(fusion=spec))  # outside the allow-list until named
    torch.manual_seed(0)
    cfg = tiny_config(fusion=spec, allow_modules=("tests.custom_fusion",))
    model = MultimodalClassifier(cfg).eval()
    assert isinstance(model.fusion, TokenPhotoSumFusion) and model.fusion.scale == 0.5
    batch = make_batch()
    with torch.no_grad():
        enc, _ = model.encode(**batch)
        assert torch.equal(model(**batch), model.head(model.fusion(enc)))
        assert torch.isfinite(model(**batch)).all()


def test_cross_attention_passes_the_export_parity_gate(assets, tmp_path):
    """A cross-attention checkpoint (LightningCLI format) through `export_bundle`'s gate."""
    import json
    from dataclasses import asdict

    import lightning

    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig
    from mmdetect.ops.export import export_bundle
    from mmdetect.training.module import DetectorModule
    from tests.unit.test_export import small_config

    text = TextConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    image = ImageConfig(name="mobilenet_v3_small", image_size=32, max_photos=3)
    fusion = {"class_path": "cross_attention", "init_args": {"num_heads": 2, "layers": 2}}
    torch.manual_seed(0)
    module = DetectorModule(text=text, image=image, fusion=fusion, hidden=24, category_dim=4,
                            tokenizer=str(assets.tokenizer))  # fmt: skip
    hparams = {**dict(module.hparams), "text": asdict(text), "image": asdict(image)}
    data = {"tokenizer": str(assets.tokenizer), "max_length": 64, "image_size": 32,
            "max_photos": 3, "taxonomy": list(module.taxonomy),
            "categories": list(module.hparams.categories)}  # fmt: skip
    ckpt = tmp_path / "cross.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams,
                "datamodule_hyper_parameters": data,
                "pytorch-lightning_version": lightning.__version__}, ckpt)  # fmt: skip
    cfg = small_config()
    parity = export_bundle(ckpt, tmp_path / "bundle", cfg, parity_snapshot=assets.drift)
    for stage in ("traced", "served"):
        assert parity[stage]["listings"] == 30
        assert parity[stage]["max_abs_diff"] <= cfg.fp32_tolerance
    pre = json.loads((tmp_path / "bundle" / "preprocess.json").read_text())
    assert pre["interpolation"] == "bilinear" and pre["mean"] == [0.485, 0.456, 0.406]
