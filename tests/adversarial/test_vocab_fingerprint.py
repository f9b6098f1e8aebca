"""A tokenizer not tied to its encoder (issue #27, item 3): the vocabulary fingerprint is
recorded in checkpoints and bundles and checked at fit, warm start, checkpoint load, export and
bundle load; fresh embeddings only with `text.resize_embeddings: true`."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import pytest
import torch

from mmdetect.artifacts import bundle_format
from mmdetect.cli.commands import main as cli_main
from mmdetect.data import vocab_fingerprint as VF
from mmdetect.data.reader import read_snapshot
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.data.vocab import VocabularyError, build_vocab
from mmdetect.serving.predictor import Predictor
from mmdetect.training.checkpoint import CheckpointError
from mmdetect.training.loading import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")
REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "data_samples" / "tokenizer"


def test_the_fingerprint_is_the_canonical_token_id_map():
    tok = load_tokenizer(str(TOKENIZER))
    vocab = tok.get_vocab()
    fp = VF.describe(tok)
    assert fp["size"] == len(vocab) == len(tok)
    assert fp["sha256"] == VF.fingerprint(dict(reversed(list(vocab.items()))))  # order-free
    a, b = sorted(vocab, key=vocab.get)[10:12]
    swapped = {**vocab, a: vocab[b], b: vocab[a]}  # two ids exchanged: same size, other map
    assert VF.fingerprint(swapped) != fp["sha256"]


def _rewrite_vocab(tok_dir: Path, edit) -> None:
    path = tok_dir / "vocab.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def _shuffled(lines: list[str]) -> list[str]:
    head, rest = lines[:5], lines[5:]  # special tokens kept: pad id and template unchanged
    random.Random(0).shuffle(rest)
    return head + rest


VOCAB_EDITS = {
    "shuffled, same size": _shuffled,
    "cut, same size": lambda lines: lines[:-40] + [f"[unused{i}]" for i in range(40)],
    "larger": lambda lines: lines + [f"extra{i}" for i in range(500)],
}


@pytest.mark.parametrize("name", list(VOCAB_EDITS))
def test_a_bundle_with_another_vocabulary_is_refused_at_load(assets, tmp_path, name, capsys):
    root = tmp_path / "bundle"
    shutil.copytree(assets.bundle, root)
    pre = json.loads((root / "preprocess.json").read_text())
    assert pre["vocab_sha256"] == VF.describe(load_tokenizer(str(assets.tokenizer)))["sha256"]
    _rewrite_vocab(root / "tokenizer", VOCAB_EDITS[name])
    bundle_format.write_checksums(root)  # re-written: only the fingerprint can tell
    with pytest.raises(
        bundle_format.BundleError, match=r"preprocess.json: tokenizer .* is not the vocabulary"
    ):
        Predictor.from_bundle(root)
    out = tmp_path / "decisions.jsonl"
    args = ["predict", "--bundle", str(root), "--input", str(assets.drift / "listings.jsonl"),
            "--out", str(out)]  # fmt: skip
    assert cli_main(args) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is not the vocabulary" in err
    assert len([x for x in err.splitlines() if x.startswith("error")]) == 1, err
    assert not out.exists()  # no empty output left behind


def test_a_bundle_without_a_fingerprint_loads_and_says_so_once(assets, tmp_path, caplog):
    root = tmp_path / "old-bundle"
    shutil.copytree(assets.bundle, root)
    doc = json.loads((root / "preprocess.json").read_text())
    del doc["vocab_sha256"], doc["vocab_size"]
    (root / "preprocess.json").write_text(json.dumps(doc))
    bundle_format.write_checksums(root)
    with caplog.at_level(logging.WARNING, logger=VF.__name__):
        Predictor.from_bundle(root)
        Predictor.from_bundle(root)
    skipped = [r for r in caplog.records if "vocabulary check skipped" in r.getMessage()]
    assert len(skipped) == 1 and str(root / "preprocess.json") in skipped[0].getMessage()


def _same_size_other_vocab(assets, tmp_path: Path) -> Path:
    other = tmp_path / "other-tok"
    shutil.copytree(assets.tokenizer, other)
    _rewrite_vocab(other, _shuffled)
    return other


def test_a_checkpoint_refuses_another_vocabulary_at_load_and_export(assets, tmp_path):
    raw = torch.load(assets.ckpt, weights_only=True)
    assert raw[VF.CHECKPOINT_KEY] == VF.describe(load_tokenizer(str(assets.tokenizer)))
    other = _same_size_other_vocab(assets, tmp_path)
    with pytest.raises(CheckpointError, match=r"tokenizer .*other-tok.* is not the vocabulary"):
        load_checkpoint(assets.ckpt, tokenizer=str(other))
    from mmdetect.ops.export import export_bundle
    from tests.unit.test_export import small_config

    out = tmp_path / "bundle"
    with pytest.raises(CheckpointError, match="is not the vocabulary"):
        export_bundle(assets.ckpt, out, small_config(), parity_snapshot=assets.drift,
                      tokenizer=str(other))  # fmt: skip
    assert not out.exists()


def test_an_old_checkpoint_without_a_fingerprint_loads(assets, tmp_path, caplog):
    raw = torch.load(assets.ckpt, weights_only=True)
    raw.pop(VF.CHECKPOINT_KEY)
    old = tmp_path / "old.ckpt"
    torch.save(raw, old)
    with caplog.at_level(logging.WARNING, logger=VF.__name__):
        module, _ = load_checkpoint(old)
    assert module.vocab == VF.describe(load_tokenizer(str(assets.tokenizer)))
    assert any("vocabulary check skipped" in r.getMessage() for r in caplog.records)


def _module(assets, **text):
    from mmdetect.training.module import DetectorModule

    hp = torch.load(assets.ckpt, weights_only=True)["hyper_parameters"]
    hp = {k: v for k, v in hp.items() if not k.startswith("_")}
    hp["text"] = {**dict(hp["text"]), **text}
    return DetectorModule(**hp)


def test_warm_start_from_another_vocabulary_needs_resize_embeddings(assets, tmp_path):
    raw = torch.load(assets.ckpt, weights_only=True)
    raw[VF.CHECKPOINT_KEY] = {"sha256": "0" * 64, "size": raw[VF.CHECKPOINT_KEY]["size"]}
    ckpt = tmp_path / "other-vocab.ckpt"
    torch.save(raw, ckpt)
    with pytest.raises(CheckpointError, match="not the vocabulary.*text.resize_embeddings"):
        _module(assets).warm_start(str(ckpt))
    torch.manual_seed(0)
    module = _module(assets, resize_embeddings=True)
    key = "text.encoder.embeddings.word_embeddings.weight"
    fresh = module.net.state_dict()[key].clone()
    module.warm_start(str(ckpt))
    state = module.net.state_dict()
    assert torch.equal(state[key], fresh)  # its own fresh rows, not the other vocabulary's
    head = raw["state_dict"]["net.head.weight"]
    assert torch.equal(state["head.weight"], head)  # everything else warm-started
    _module(assets).warm_start(str(assets.ckpt))  # the same vocabulary: loads


@pytest.fixture(scope="module")
def encoder_with_own_vocab(tmp_path_factory):
    """A BERT encoder saved with its own 1672-token tokenizer, and a ~280-token `vocab` one."""
    from transformers import BertConfig, BertModel

    base = tmp_path_factory.mktemp("own_vocab")
    own = load_tokenizer(str(TOKENIZER))
    cfg = BertConfig(vocab_size=len(own), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(base / "enc")
    own.save_pretrained(str(base / "enc"))
    train = read_snapshot(REPO / "data_samples" / "train", check_images=False).listings
    small = build_vocab([f"{x.title} {x.description}" for x in train], 300, base / "small")
    assert len(load_tokenizer(str(small))) < len(own)
    return base / "enc", small


def test_fit_refuses_a_vocab_tokenizer_on_an_encoder_with_its_own(encoder_with_own_vocab):
    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig
    from mmdetect.training.module import DetectorModule

    enc, small = encoder_with_own_vocab
    n = len(load_tokenizer(str(small)))
    text = TextConfig(pretrained=str(enc), max_length=64)
    image = ImageConfig(enabled=False)
    with pytest.raises(VocabularyError, match=rf"small \({n} tokens.*is not the vocabulary.*1672"):
        DetectorModule(text=text, image=image, tokenizer=str(small))
    DetectorModule(text=text, image=image)  # its own tokenizer: fine
    resized = DetectorModule(text=TextConfig(pretrained=str(enc), max_length=64,
                                             resize_embeddings=True),
                             image=image, tokenizer=str(small))  # fmt: skip
    assert resized.net.text.vocab_rows == n


def test_fit_on_the_command_line_is_one_line(encoder_with_own_vocab, monkeypatch, capsys):
    from mmdetect.training.run import run_lightning

    enc, small = encoder_with_own_vocab
    n = len(load_tokenizer(str(small)))
    monkeypatch.chdir(REPO)
    args = ["fit", "--config", "configs/train/tiny.yaml", f"--model.text.pretrained={enc}",
            f"--data.tokenizer={small}", "--model.text.max_length=64",
            "--model.image.enabled=false"]  # fmt: skip
    assert run_lightning(args) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert len(err) == 1 and err[0].startswith(f"error: tokenizer {small} ({n} tokens"), err
    assert "text.resize_embeddings" in err[0]
