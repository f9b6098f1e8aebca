"""MultimodalClassifier, fusion modules, tabular features and TorchScript tracing."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch

from mmdetect.data.dataset import price_features
from mmdetect.data.tokenize import encode_batch, load_tokenizer, pad_batch
from mmdetect.models.classifier import MultimodalClassifier
from mmdetect.models.fusion import ConcatFusion, Encoded, FusionDims, GatedFusion, build_fusion

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(cfg, train: bool = False) -> MultimodalClassifier:
    torch.manual_seed(0)
    return MultimodalClassifier(cfg).train(train)


def _run(model, batch, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)  # same dropout masks for two calls in train mode
    return model(**batch)


def test_price_features_values():
    assert price_features(None, 8.0, 2.0) == (0.0, False)
    assert price_features(0, 8.0, 2.0) == (-4.0, True)
    value, present = price_features(round(math.e**8 - 1), 8.0, 2.0)
    assert present and abs(value) < 1e-3
    assert price_features(999, mean=0.0, std=1.0) == (pytest.approx(math.log(1000)), True)
    with pytest.raises(ValueError):
        price_features(-1, 8.0, 2.0)


FORWARD_ARGS = list(inspect.signature(MultimodalClassifier.forward).parameters)[1:]


def test_aux_heads_do_not_change_the_fused_output(tiny_config, make_batch):
    model = _model(tiny_config(), train=False)
    batch = make_batch()
    logits, aux = model.forward_with_aux(*(batch[k] for k in FORWARD_ARGS))
    assert torch.equal(logits, model(**batch))
    no_aux = _model(tiny_config(aux_heads=False), train=False)
    assert (
        no_aux.aux is None and no_aux.forward_with_aux(*(batch[k] for k in FORWARD_ARGS))[1] == []
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"fusion": "gated", "image": {"pooling": "attention"}, "text": {"pooling": "mean"}},
        {"fusion": {"class_path": "cross_attention", "init_args": {"num_heads": 2, "layers": 2}}},
    ],
    ids=["concat", "gated", "cross_attention"],
)
def test_forward_backward_reaches_every_parameter(tiny_config, make_batch, options):
    model = _model(tiny_config(**options), train=True)
    batch = make_batch()
    logits, aux = model.forward_with_aux(*(batch[k] for k in FORWARD_ARGS))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert [a.shape for a in aux] == [(3, 7), (3, 7)]  # text and image heads
    loss = sum(
        torch.nn.functional.binary_cross_entropy_with_logits(x, torch.ones(3, 7))
        for x in (logits, *aux)
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []  # unused embeddings get zero grads, never None (DDP-friendly)
    assert model.image.missing.grad.abs().sum() > 0  # listing 2 has no photo
    assert model.missing_text.grad.abs().sum() == 0  # modality_dropout=0
    assert model.text.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
@pytest.mark.parametrize("train", [False, True])
def test_masked_and_missing_photos_change_no_output(tiny_config, make_batch, train, fusion):
    model = _model(tiny_config(fusion=fusion), train=train)
    batch = make_batch()
    other = dict(batch, images=batch["images"].clone())
    other["images"][0, 1:] = 7.0  # masked-out photos of listing 0
    other["images"][2] = -3.0  # listing 2 has no valid photo at all
    with torch.no_grad():
        assert torch.equal(_run(model, batch), _run(model, other))
        other["images"][1, 0] = 0.5  # a valid photo does matter
        assert not torch.equal(_run(model, batch)[1], _run(model, other)[1])


def test_eval_is_deterministic_and_price_mask_respected(tiny_config, make_batch):
    model = _model(tiny_config(modality_dropout=0.5))
    batch = make_batch()
    with torch.no_grad():
        logits = model(**batch)
        assert torch.equal(logits, model(**batch))
        price = batch["price"].clone()
        price[2] = 1e6  # listing 2 has no price: its value is ignored
        assert torch.equal(logits, model(**dict(batch, price=price)))


def test_unknown_categories_share_one_bucket(tiny_config, make_batch):
    model = _model(tiny_config(num_categories=10))
    batch = make_batch(b=4)
    batch = {k: v[:1].expand(4, *v.shape[1:]) for k, v in batch.items()}  # 4 copies of listing 0
    with torch.no_grad():
        logits = model(**dict(batch, category_id=torch.tensor([10, 57, -1, 3])))
        tab = model.tabular(batch["price"][:1], batch["price_mask"][:1], torch.tensor([99]))
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])
    assert not torch.equal(logits[0], logits[3])
    assert torch.equal(tab[0, 2:], model.tabular.category.weight[10].detach())


def test_text_only_and_image_only_ignore_the_other_inputs(tiny_config, make_batch):
    batch = make_batch()
    text_only = _model(tiny_config(image={"enabled": False}))
    image_only = _model(tiny_config(text={"enabled": False}))
    assert text_only.image is None and image_only.text is None
    with torch.no_grad():
        no_photos = dict(
            batch, images=torch.zeros(3, 1, 3, 8, 8), image_mask=torch.zeros(3, 1).bool()
        )
        assert torch.equal(text_only(**batch), text_only(**no_photos))
        other_ids = dict(batch, input_ids=torch.zeros_like(batch["input_ids"]))
        assert torch.equal(image_only(**batch), image_only(**other_ids))


def test_modality_dropout_never_drops_both(tiny_config):
    model = _model(tiny_config(modality_dropout=1.0), train=True)
    image_mask = torch.ones(1000, 2, dtype=torch.bool)
    image_mask[::4] = False  # every 4th listing has no photo
    drop_text, drop_photos = model._modality_drops(image_mask)
    has_photo = image_mask.any(1)
    assert not (drop_text & drop_photos).any()
    assert (drop_text ^ drop_photos)[has_photo].all()  # p=1: exactly one dropped
    assert not drop_text[~has_photo].any()  # never leave a listing with no content
    assert 0.4 < drop_text[has_photo].float().mean() < 0.6
    model.eval()
    assert not any(d.any() for d in model._modality_drops(image_mask))


def test_dropped_text_uses_missing_text_embedding(tiny_config, make_batch):
    model = _model(tiny_config(modality_dropout=1.0), train=True)
    model(**make_batch(b=8, k=1)).sum().backward()
    assert model.missing_text.grad.abs().sum() > 0


def test_fusion_values():
    torch.manual_seed(0)
    xs = [torch.randn(2, 3), torch.randn(2, 5)]
    dims = FusionDims(pooled=(3, 5))
    enc = Encoded(xs, None, None, None, None)
    concat = ConcatFusion(dims, hidden=4, dropout=0.0)
    normed = [torch.nn.functional.layer_norm(x, x.shape[-1:]) for x in xs]
    projected = [p[1](x) for p, x in zip(concat.projections, normed, strict=True)]
    gelu = torch.nn.functional.gelu
    expected = gelu(concat.mlp[1](gelu(torch.cat(projected, -1))))
    assert concat(enc).shape == (2, 4)
    assert torch.allclose(concat(enc), expected, atol=1e-6)

    gated = GatedFusion(dims, hidden=4, dropout=0.0)
    z = gated.gates(xs)
    assert z.shape == (2, 2, 4) and torch.allclose(z.sum(1), torch.ones(2, 4))
    h = [torch.tanh(p(x)) for p, x in zip(gated.projections, normed, strict=True)]
    assert torch.allclose(gated(enc), z[:, 0] * h[0] + z[:, 1] * h[1], atol=1e-6)
    assert isinstance(build_fusion("gated", dims, 4, 0.0), GatedFusion)
    path = {"class_path": "mmdetect.models.fusion.GatedFusion", "init_args": {}}
    assert isinstance(build_fusion(path, dims, 4, 0.0), GatedFusion)
    with pytest.raises(ValueError, match="expected one of"):
        build_fusion("sum", dims, 4, 0.0)
    with pytest.raises(ValueError, match="not an nn.Module subclass"):
        build_fusion("mmdetect.models.fusion.build_fusion", dims, 4, 0.0)
    with pytest.raises(ValueError, match="module 'os' is not allowed"):
        build_fusion("os.system", dims, 4, 0.0)
    with pytest.raises(ValueError, match="cannot be imported"):
        build_fusion("mmdetect.no_such_module.Fusion", dims, 4, 0.0)


def test_padding_and_empty_description_do_not_leak(tiny_config, make_batch, ja_vocab_dir):
    tok = load_tokenizer(str(ja_vocab_dir))
    model = _model(tiny_config(text={"vocab_size": len(tok)}))
    pairs = [("子供服 まとめ売り", ""), ("ＮＩＫＥ エアマックス", "数回着用しました。" * 5)]
    ids, mask = pad_batch(encode_batch(tok, pairs, 32), tok.pad_token_id)
    n = int(mask[0].sum())  # listing 0: [CLS] title [SEP] [SEP], then padding
    assert ids[0, n - 2 : n].tolist() == [tok.sep_token_id] * 2
    assert (ids[0, n:] == tok.pad_token_id).all()
    rest = {k: v[:2] for k, v in make_batch().items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        both = model(input_ids=ids, attention_mask=mask, **rest)
        single = {k: v[:1] for k, v in rest.items()}
        alone = model(input_ids=ids[:1, :n], attention_mask=mask[:1, :n], **single)
    assert torch.allclose(both[0], alone[0], atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"fusion": "gated", "image": {"pooling": "attention"}, "text": {"pooling": "mean"}},
        {"fusion": {"class_path": "cross_attention", "init_args": {"num_heads": 2, "layers": 2}}},
    ],
    ids=["concat", "gated", "cross_attention"],
)
def test_torchscript_trace_parity_across_shapes(tiny_config, make_batch, options):
    model = _model(tiny_config(**options)).eval()
    example = make_batch(b=2, length=16, k=2)
    # Traced without padding, run with it: the padding mask must not be skipped in the graph.
    example["attention_mask"][:] = 1
    # torch.jit.trace is deprecated in torch 2.14 (warns); no optimisation passes keeps it fast.
    with warnings.catch_warnings(), torch.no_grad(), torch.jit.optimized_execution(False):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, tuple(example.values()), check_trace=False)
        for shape in [dict(b=3, length=9, k=3), dict(b=3, length=9, k=0), dict(b=1, length=5, k=1)]:
            batch = make_batch(seed=1, **shape)
            assert torch.allclose(traced(*batch.values()), model(**batch), atol=1e-5), shape
