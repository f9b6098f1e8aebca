"""Optimiser groups by provenance, and freezing as a zero learning rate (mmdetect.training.optim)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from transformers import BertConfig, BertModel

from mmdetect.models.classifier import MultimodalClassifier
from mmdetect.training.optim import group_lambdas, group_names, param_groups, warmup_decay


@pytest.fixture(scope="module")
def pretrained_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny BERT directory (save_pretrained) and a ResNet-18 state dict file, both seeded."""
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(cfg).save_pretrained(root / "bert")
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), root / "resnet18.pth")
    return root / "bert", root / "resnet18.pth"


def build(tiny_config, files, text: bool = True, image: bool = True) -> MultimodalClassifier:
    bert, weights = files
    torch.manual_seed(0)
    return MultimodalClassifier(
        tiny_config(
            text={"pretrained": str(bert)} if text else None,
            image={"weights": str(weights), "pooling": "attention"} if image else None,
        )
    )


def membership(net, groups) -> dict[str, str]:
    return {name: group for group, names in group_names(groups, net) for name in names}


def test_only_loaded_weights_are_pretrained(tiny_config, pretrained_files) -> None:
    net = build(tiny_config, pretrained_files)
    groups = param_groups(net, lr=1e-3, pretrained_lr=5e-5, weight_decay=0.01)
    where = membership(net, groups)
    assert sorted(where) == sorted(n for n, _ in net.named_parameters())  # each exactly once
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    for name, group in where.items():
        loaded = name.startswith(("text.encoder.", "image.backbone."))
        assert group.startswith("pretrained" if loaded else "new"), name
    # the tower's own new layers learn at lr, like the fusion and the head
    assert where["image.missing"] == "new/no_decay"
    assert where["image.pool.score.0.weight"] == "new"
    assert where["image.pool.score.0.bias"] == "new/no_decay"
    assert where["head.weight"] == "new"
    # biases and norm scales are not decayed, in both provenances
    assert where["text.encoder.embeddings.LayerNorm.weight"] == "pretrained/no_decay"
    assert where["text.encoder.encoder.layer.0.attention.self.query.bias"] == "pretrained/no_decay"
    assert where["text.encoder.encoder.layer.0.attention.self.query.weight"] == "pretrained"
    assert where["image.backbone.bn1.weight"] == "pretrained/no_decay"
    assert where["image.backbone.conv1.weight"] == "pretrained"
    by_name = {g["name"]: g for g in groups}
    assert by_name["pretrained"]["lr"] == by_name["pretrained/no_decay"]["lr"] == 5e-5
    assert by_name["new"]["lr"] == by_name["new/no_decay"]["lr"] == 1e-3
    assert by_name["new"]["weight_decay"] == by_name["pretrained"]["weight_decay"] == 0.01
    assert (
        by_name["new/no_decay"]["weight_decay"]
        == by_name["pretrained/no_decay"]["weight_decay"]
        == 0
    )


def test_provenance_follows_each_tower_setting(tiny_config, pretrained_files) -> None:
    text_only = build(tiny_config, pretrained_files, image=False)
    where = membership(text_only, param_groups(text_only, 1e-3, 5e-5, 0.01))
    assert all(g.startswith("new") for n, g in where.items() if n.startswith("image."))
    assert all(g.startswith("pretrained") for n, g in where.items() if n.startswith("text."))
    scratch = build(tiny_config, pretrained_files, text=False, image=False)
    groups = param_groups(scratch, 1e-3, 5e-5, 0.01)
    assert {g["name"] for g in groups} == {"new", "new/no_decay"}


def test_schedule_zero_while_frozen_then_rewarmed() -> None:
    groups = [{"kind": "new"}, {"kind": "pretrained"}]
    new, pre = group_lambdas(groups, warmup=2, total=10, frozen_steps=4)
    assert [new(s) for s in range(10)] == [warmup_decay(s, 2, 10) for s in range(10)]
    assert [pre(s) for s in range(4)] == [0.0] * 4
    assert pre(4) == pytest.approx(0.5 * warmup_decay(4, 2, 10))
    assert [pre(s) for s in range(5, 10)] == [warmup_decay(s, 2, 10) for s in range(5, 10)]
    unfrozen = group_lambdas(groups, warmup=2, total=10, frozen_steps=0)[1]
    assert [unfrozen(s) for s in range(10)] == [warmup_decay(s, 2, 10) for s in range(10)]


def snapshot(net, prefix: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in net.named_parameters() if n.startswith(prefix)}


def changed(before: dict, net) -> set[str]:
    now = dict(net.named_parameters())
    return {n for n, v in before.items() if not torch.equal(v, now[n])}


def test_frozen_steps_leave_pretrained_weights_bit_identical(
    tiny_config, pretrained_files, make_batch
) -> None:
    net = build(tiny_config, pretrained_files).train()
    groups = param_groups(net, lr=1e-2, pretrained_lr=1e-2, weight_decay=0.1)
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, group_lambdas(groups, 1, 8, frozen_steps=3))
    loaded = ("text.encoder.", "image.backbone.")
    start_pre = snapshot(net, loaded)
    start_new = snapshot(net, ("head.", "fusion.", "image.pool.", "image.missing"))

    def step(seed: int) -> None:
        batch = make_batch(b=4, seed=seed)
        logits, aux = net.forward_with_aux(*batch.values())  # as DetectorModule trains
        loss = sum(x.square().mean() for x in (logits, *aux))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    for seed in range(3):  # the frozen phase: gradients flow, nothing pretrained moves
        step(seed)
    assert not changed(start_pre, net)
    assert changed(start_new, net) == set(start_new)
    pretrained = [p for g in groups if g["kind"] == "pretrained" for p in g["params"]]
    assert [n for n, p in net.named_parameters() if p.grad is None] == []
    assert all(p.grad.abs().sum() > 0 for p in pretrained[:4])  # gradients still flow (DDP)
    step(3)  # unfrozen: every pretrained tensor that got a gradient moves
    moved = changed(start_pre, net)
    assert "text.encoder.embeddings.word_embeddings.weight" in moved
    assert "image.backbone.conv1.weight" in moved and "image.backbone.layer4.1.bn2.bias" in moved
