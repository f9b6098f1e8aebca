"""Benchmark models: the tiny training config and a BERT-base + ResNet-50 sized one, random
weights; a LightningCLI-format checkpoint of the tiny one and its exported bundle."""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from mmdetect.data.dataset import DEFAULT_CATEGORIES
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.models.classifier import ModelConfig, MultimodalClassifier
from mmdetect.models.image import ImageConfig
from mmdetect.models.text import TextConfig

TINY_YAML = Path("configs/train/tiny.yaml")


def tiny_sections(path: Path = TINY_YAML) -> tuple[dict, dict]:
    """(model, data) sections of configs/train/tiny.yaml, text/image as dicts."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return dict(doc["model"]), dict(doc["data"])


def tiny_config(vocab_size: int, **model_overrides) -> ModelConfig:
    """The model of configs/train/tiny.yaml (tiny BERT + ResNet-18 at 64 px)."""
    model, _ = tiny_sections()
    text = TextConfig(**{**model["text"], "vocab_size": vocab_size})
    image = ImageConfig(**model["image"])
    return ModelConfig(
        text=text,
        image=image,
        num_labels=len(DEFAULT_TAXONOMY),
        num_categories=len(DEFAULT_CATEGORIES),
        fusion=model.get("fusion", "concat"),
        **model_overrides,
    )


def big_config() -> ModelConfig:
    """BERT-base (768 x 12 layers, 12 heads, 3072, vocab 32768, 128 tokens) + ResNet-50 at 224."""
    text = TextConfig(
        vocab_size=32768,
        hidden_size=768,
        num_layers=12,
        num_heads=12,
        intermediate_size=3072,
        max_length=128,
    )
    image = ImageConfig(name="resnet50", image_size=224, max_photos=4)
    return ModelConfig(
        text=text,
        image=image,
        num_labels=len(DEFAULT_TAXONOMY),
        num_categories=len(DEFAULT_CATEGORIES),
        hidden=256,
    )


def build_net(cfg: ModelConfig, seed: int = 0) -> MultimodalClassifier:
    """Seeded random weights; the head bias is spread (std 1.5) as a trained model's would be,
    so that not every probability sits at 0.5 (decision flips would be overstated)."""
    torch.manual_seed(seed)
    net = MultimodalClassifier(cfg).eval()
    with torch.no_grad():
        net.head.bias.normal_(0.0, 1.5)
    return net


def random_batch(
    cfg: ModelConfig, batch: int, photos: int = 1, length: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Model inputs in MultimodalClassifier.forward order; a quarter of the tokens padded on
    every other row, every third listing without photos."""
    g = torch.Generator().manual_seed(seed)
    length = length or cfg.text.max_length
    size = cfg.image.image_size
    input_ids = torch.randint(5, cfg.text.vocab_size, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[1::2, (3 * length) // 4 :] = 0
    image_mask = torch.ones(batch, photos, dtype=torch.bool)
    image_mask[2::3] = False
    return (
        input_ids,
        attention_mask,
        torch.randn(batch, photos, 3, size, size, generator=g),
        image_mask,
        torch.randn(batch, generator=g),
        torch.ones(batch, dtype=torch.bool),
        torch.arange(batch) % cfg.num_categories,
    )


def write_tiny_checkpoint(
    path: Path, tokenizer: str, price_snapshot: str, head_bias: float = -0.5
) -> None:
    """A seeded tiny DetectorModule saved as LightningCLI saves one (untrained weights), with
    price statistics fitted on `price_snapshot` where a trained one has the training split's."""
    import lightning

    from mmdetect.data.dataset import fit_price_stats
    from mmdetect.data.reader import read_snapshot
    from mmdetect.training.datamodule import DetectorDataModule
    from mmdetect.training.module import DetectorModule

    model, data = tiny_sections()
    text, image = TextConfig(**model["text"]), ImageConfig(**model["image"])
    torch.manual_seed(0)
    module = DetectorModule(
        text=text, image=image, fusion=model.get("fusion", "concat"), tokenizer=tokenizer
    )
    with torch.no_grad():  # untrained: keep scores off 0.5 so the tiers are stable
        module.net.head.bias.fill_(head_bias)
    hparams = {**dict(module.hparams), "text": asdict(text), "image": asdict(image)}
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    stats = fit_price_stats(x.price for x in read_snapshot(price_snapshot).listings)
    datamodule = {
        "tokenizer": tokenizer,
        "max_length": text.max_length,
        "image_size": image.image_size,
        "max_photos": image.max_photos,
        "taxonomy": list(module.taxonomy),
        "categories": list(module.hparams.categories),
        "batch_size": data.get("batch_size", 32),
        "num_workers": data.get("num_workers", 2),
    }
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": hparams,
            "datamodule_hyper_parameters": datamodule,
            DetectorDataModule.__qualname__: {"price_mean": stats.mean, "price_std": stats.std},
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )


def export_tiny_bundle(
    workdir: Path, tokenizer: str, parity_snapshot: str, parity_listings: int = 64
) -> tuple[Path, Path]:
    """(checkpoint, bundle) under workdir: configs/export/cpu.yaml, a shorter parity check."""
    from mmdetect.ops.export import export_bundle, load_export_config

    ckpt, bundle = workdir / "tiny.ckpt", workdir / "bundle"
    write_tiny_checkpoint(ckpt, tokenizer, parity_snapshot)
    cfg = load_export_config("configs/export/cpu.yaml")
    cfg.parity_listings = parity_listings
    with contextlib.redirect_stdout(io.StringIO()):
        export_bundle(ckpt, bundle, cfg, parity_snapshot=parity_snapshot, force=True)
    return ckpt, bundle
