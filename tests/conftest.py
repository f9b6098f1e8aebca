"""Shared tiny fixtures: nothing here downloads anything."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub are imported
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# (title, description) pairs: brands, full-width / half-width forms, an empty description.
JA_LISTINGS = [
    (
        "ルイヴィトン 長財布 モノグラム 本物",
        "正規店で購入しました。目立つ傷はありません。箱と保存袋付きです。",
    ),
    ("ＮＩＫＥ エアマックス９０ ２７ｃｍ", "数回着用しました。即日発送します。"),
    ("ﾎﾟｹﾓﾝｶｰﾄﾞ 未開封 BOX", "シュリンク付き。送料無料です。"),
    ("iPhone15 Pro 256GB SIMフリー", "バッテリー最大容量98%。画面割れなし。"),
    ("Amazonギフト券 5000円分", "コードをメッセージでお送りします。即日対応。"),
    ("ゲームアカウント レベル99 引退", "レアキャラ多数。ログイン情報をお渡しします。"),
    ("スーパーコピー ブランド時計 激安", "本物と見分けがつかない高品質。"),
    ("子供服 まとめ売り 100cm", ""),
]


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: tiny models run no slower, and never spin against other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ja_listings() -> list[tuple[str, str]]:
    return list(JA_LISTINGS)


@pytest.fixture(scope="session")
def ja_vocab_dir(tmp_path_factory: pytest.TempPathFactory):
    """A BertJapaneseTokenizer directory trained by build_vocab on JA_LISTINGS."""
    from mmdetect.data.vocab import build_vocab

    texts = [f"{t} {d}" for t, d in JA_LISTINGS]
    return build_vocab(texts, size=1000, out_dir=tmp_path_factory.mktemp("vocab"))


@pytest.fixture
def tiny_config() -> Callable:
    """Factory of a tiny seeded-size ModelConfig (16-dim BERT, resnet18 at 32 px)."""
    from mmdetect.models.classifier import ModelConfig
    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig

    def make(text: dict | None = None, image: dict | None = None, **model) -> ModelConfig:
        text_kw = dict(vocab_size=60, hidden_size=16, num_heads=2, intermediate_size=32)
        image_kw = dict(image_size=32, max_photos=3)
        return ModelConfig(
            text=TextConfig(**{**text_kw, "max_length": 32, **(text or {})}),
            image=ImageConfig(**{**image_kw, **(image or {})}),
            **{"hidden": 24, "category_dim": 4, **model},
        )

    return make


@pytest.fixture
def make_batch() -> Callable:
    """Factory of a seeded model batch. Listing 0 has one valid photo (others padded); listing
    1 has padded tokens; listing 2, if any, has no photo and no price."""

    def make(
        b: int = 3, length: int = 12, k: int = 3, size: int = 32, vocab: int = 60, seed: int = 0
    ):
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(5, vocab, (b, length), generator=g)
        attention_mask = torch.ones(b, length, dtype=torch.long)
        image_mask = torch.ones(b, k, dtype=torch.bool)
        price_mask = torch.ones(b, dtype=torch.bool)
        if b > 1:
            attention_mask[1, length // 2 :] = 0
        image_mask[0, 1:] = False
        if b > 2:
            image_mask[2] = False
            price_mask[2] = False
        return dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            images=torch.randn(b, k, 3, size, size, generator=g),
            image_mask=image_mask,
            price=torch.randn(b, generator=g),
            price_mask=price_mask,
            category_id=torch.arange(b) % 10,
        )

    return make


@pytest.fixture(scope="session")
def small_samples(tmp_path_factory: pytest.TempPathFactory):
    """Generated sample snapshots (train/ drift/ incoming/ reviews.jsonl) plus a tokenizer/."""
    from mmdetect.data.vocab import build_vocab
    from mmdetect.samples.generator import generate_samples

    root = tmp_path_factory.mktemp("samples")
    generate_samples(root, seed=1, n_train=160, n_drift=60, n_incoming=40)
    texts = []
    for line in (root / "train" / "listings.jsonl").read_text(encoding="utf-8").splitlines():
        import json

        row = json.loads(line)
        texts.append(f"{row['title']}\n{row['description']}")
    build_vocab(texts, size=2000, out_dir=root / "tokenizer")
    return root


def tiny_fit_args(samples, run_dir, *extra: str) -> list[str]:
    """tiny.yaml shrunk for tests: 16-dim BERT, 32 px photos, no workers, CSV logs in run_dir."""
    return [
        "--config", "configs/train/tiny.yaml",
        f"--data.snapshots=[{samples / 'train'}]",
        f"--data.tokenizer={samples / 'tokenizer'}",
        "--data.num_workers=0",
        "--data.batch_size=16",
        "--model.text.hidden_size=16",
        "--model.text.intermediate_size=32",
        "--model.text.max_length=48",
        "--model.image.image_size=32",
        "--model.hidden=32",
        f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_checkpoint(small_samples, tmp_path_factory: pytest.TempPathFactory):
    """A tiny model trained for 2 short epochs on the small samples: its best checkpoint."""
    from pathlib import Path

    from mmdetect.training.run import build_cli

    run = tmp_path_factory.mktemp("tiny_run")
    repo = Path(__file__).resolve().parents[1]
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        build_cli(
            ["fit", *tiny_fit_args(small_samples, run, "--trainer.max_epochs=2",
             f"--checkpoint.dirpath={run / 'ckpt'}", f"--last_checkpoint.dirpath={run / 'ckpt'}")]
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    return next((run / "ckpt").glob("best-*.ckpt"))


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory):
    """A seeded tiny checkpoint, its exported bundle and small snapshots (test_export.tiny_assets)."""
    from tests.unit.test_export import tiny_assets

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # built before the module-scoped `single_thread` applies
    try:
        return tiny_assets(tmp_path_factory.getbasetemp() / "export_assets")
    finally:
        torch.set_num_threads(threads)
