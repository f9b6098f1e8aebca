"""Word vectors through the real commands: fit with init_vectors, the wordvec tower's export,
`mmdetect vocab --lexicon-words`, and the one-line errors for bad vectors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch

from mmdetect.checkpoint import read_checkpoint
from mmdetect.cli import main
from mmdetect.data.tokenize import load_tokenizer, token_ids
from mmdetect.lit import DetectorModule
from mmdetect.models.text import TextConfig
from mmdetect.models.wordvec import project_vectors
from mmdetect.training import build_cli
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def vectors_for(tokenizer: Path, path: Path, dim: int = 12, extra: tuple[str, ...] = ()) -> Path:
    """A word2vec text file with a seeded vector for every whole-word token (and `extra`)."""
    vocab = load_tokenizer(str(tokenizer)).get_vocab()
    words = [t for t in vocab if not t.startswith(("##", "[")) and len(t) > 1] + list(extra)
    rng = np.random.default_rng(0)
    lines = [f"{w} " + " ".join(f"{x:.5f}" for x in rng.normal(size=dim)) for w in words]
    path.write_text(f"{len(words)} {dim}\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_setup_writes_the_projected_vectors_into_whole_word_rows(small_samples, tmp_path):
    tok = small_samples / "tokenizer"
    path = vectors_for(tok, tmp_path / "v.txt")
    text = TextConfig(hidden_size=8, num_heads=2, intermediate_size=16, max_length=48,
                      init_vectors={"source": str(path), "mode": "pca"})  # fmt: skip
    torch.manual_seed(0)
    module = DetectorModule(text=text, tokenizer=str(tok))
    before = module.net.text.get_input_embeddings().weight.detach().clone()
    module.setup("fit")
    after = module.net.text.get_input_embeddings().weight.detach()
    info = module.vectors_info
    vocab = load_tokenizer(str(tok)).get_vocab()
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    ids = [vocab[line.split(" ")[0]] for line in lines]
    values = torch.tensor([[float(x) for x in line.split(" ")[1:]] for line in lines])
    assert info["rows_initialised"] == len(ids) and info["dim"] == 12 and info["mode"] == "pca"
    expected = project_vectors(values, 8, "pca")
    got = after[sorted(ids)]
    order = np.argsort(ids)
    torch.testing.assert_close(got / got.std(), expected[order] / expected.std(), atol=1e-5, rtol=0)
    untouched = torch.ones(len(after), dtype=torch.bool)
    untouched[ids] = False
    assert torch.equal(after[untouched], before[untouched])  # specials, ## pieces keep theirs


def test_fit_with_vectors_records_them_in_the_checkpoint(small_samples, tmp_path):
    path = vectors_for(small_samples / "tokenizer", tmp_path / "v.txt")
    spec = json.dumps({"source": str(path), "mode": "random", "seed": 3})
    run = tmp_path / "run"
    build_cli(
        ["fit", *tiny_fit_args(small_samples, run, "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
         f"--model.text.init_vectors={spec}", f"--last_checkpoint.dirpath={run / 'ckpt'}",
         f"--checkpoint.dirpath={run / 'ckpt'}")]
    )  # fmt: skip
    ckpt = read_checkpoint(run / "ckpt" / "last.ckpt")
    assert ckpt["init_vectors"]["source"] == str(path) and ckpt["init_vectors"]["seed"] == 3
    assert ckpt["init_vectors"]["rows_initialised"] > 100
    assert ckpt["hyper_parameters"]["text"]["init_vectors"]["mode"] == "random"
    # Loading the checkpoint (export, serving) reads no vectors file: it may be gone.
    path.unlink()
    DetectorModule.load_from_checkpoint(run / "ckpt" / "last.ckpt", map_location="cpu")


def test_fit_with_bad_vectors_is_one_line(small_samples, tmp_path, capsys):
    bad = tmp_path / "bad.vec"
    bad.write_text("偽物 1 2 3\n本物 1 2\n", encoding="utf-8")
    code = main(["fit", *tiny_fit_args(small_samples, tmp_path, "--trainer.fast_dev_run=1",
                f'--model.text.init_vectors={{"source": "{bad}"}}')])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == f"error: {bad}:2: word '本物' has 2 values, expected 3"
    assert "Traceback" not in "\n".join(err)


def test_wordvec_tower_exports_with_parity(small_samples, tmp_path):
    """The bag-of-vectors tower traces like the BERT one: bundle == checkpoint."""
    from mmdetect.export import ExportConfig, export_bundle
    from mmdetect.models.image import ImageConfig

    tok = small_samples / "tokenizer"
    text = TextConfig(kind="wordvec", hidden_size=16, embedding_dim=12, max_length=48)
    image = ImageConfig(name="mobilenet_v3_small", image_size=32, max_photos=2)
    torch.manual_seed(0)
    module = DetectorModule(text=text, image=image, hidden=24, tokenizer=str(tok))
    hparams = {**dict(module.hparams), "text": asdict(text), "image": asdict(image)}
    hparams["_instantiator"] = "lightning.pytorch.cli.instantiate_module"
    data = {"tokenizer": str(tok), "max_length": 48, "image_size": 32, "max_photos": 2,
            "taxonomy": list(module.taxonomy), "categories": list(module.hparams.categories),
            "batch_size": 8, "num_workers": 0}  # fmt: skip
    ckpt = tmp_path / "wordvec.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams,
                "datamodule_hyper_parameters": data,
                "pytorch-lightning_version": lightning.__version__}, ckpt)  # fmt: skip
    bundle = tmp_path / "bundle"
    export_bundle(ckpt, bundle, ExportConfig(parity_listings=32, batch_size=8),
                  parity_snapshot=small_samples / "drift")  # fmt: skip
    meta = json.loads((bundle / "meta.json").read_text())
    for stage in ("traced", "served"):
        assert meta["parity"][stage]["listings"] > 0
        assert meta["parity"][stage]["max_abs_diff"] <= 1e-5
    assert meta["training_config"]["model"]["text"]["kind"] == "wordvec"


def test_vocab_lexicon_words_give_unseen_words_their_own_token(small_samples, tmp_path, capsys):
    unseen = ("レプリカ", "模造", "偽造")  # not in the small samples' text
    # MeCab cuts 模造品 into 模造 + 品: a token for it could never be used, so it is not added.
    path = vectors_for(small_samples / "tokenizer", tmp_path / "v.txt", extra=(*unseen, "模造品"))
    base, lex = tmp_path / "base", tmp_path / "lex"
    snap = str(small_samples / "train")
    assert main(["vocab", snap, "--size", "600", "--out", str(base)]) == 0
    code = main(["vocab", snap, "--size", "600", "--out", str(lex),
                 "--vectors", str(path), "--lexicon-words", "5000"])  # fmt: skip
    assert code == 0 and "lexicon words" in capsys.readouterr().out
    plain, rich = load_tokenizer(str(base)), load_tokenizer(str(lex))
    assert len(rich) > len(plain)
    file_words = {line.split(" ")[0] for line in path.read_text(encoding="utf-8").splitlines()}
    added = [t for t, i in rich.get_vocab().items() if i >= 600]  # appended after the pieces
    assert set(unseen) <= set(added) <= file_words and "模造品" not in added
    for word in unseen:
        assert len(token_ids(plain, word)) > 1 or token_ids(plain, word) == [plain.unk_token_id]
        assert token_ids(rich, word) == [rich.vocab[word]]


def test_vocab_with_bad_vectors_is_one_line(small_samples, tmp_path, capsys):
    code = main(["vocab", str(small_samples / "train"), "--out", str(tmp_path / "t"),
                 "--vectors", str(tmp_path / "none.vec"), "--lexicon-words", "10"])  # fmt: skip
    assert code == 1
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'none.vec'}: no such vectors file (or use the source name 'ja_ginza')"
    )
    assert not (tmp_path / "t").exists()
