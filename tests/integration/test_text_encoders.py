"""Switching the text encoder by YAML alone: a MeCab WordPiece BERT and a SentencePiece DeBERTa-v2,
each saved as a "pretrained" directory, go `mmdetect fit` (a few steps, the tokenizer coming with
the encoder) -> `mmdetect export` (parity gate) -> `mmdetect predict`, whose probabilities are
the checkpoint's; the bundle's model then runs in a fresh process with torch alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdetect.artifacts import bundle_format
from mmdetect.cli.commands import main
from mmdetect.data.reader import read_snapshot
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.serving.predictor import build_dataset, build_loader
from mmdetect.training.loading import load_checkpoint
from tests.conftest import tiny_fit_args
from tests.unit.test_tokenizers import sample_texts, save_bert_mecab, save_deberta_sp

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

REPO = Path(__file__).resolve().parents[2]

# Step 1 of the child: torch alone (no transformers, no mmdetect) runs the bundle's model.
CHILD = textwrap.dedent(
    """
    import json, sys
    import torch

    torch.set_num_threads(1)
    model_ts, order, inputs, out = sys.argv[1:5]
    model = torch.jit.load(model_ts)
    batch = torch.load(inputs)
    with torch.no_grad():
        probs = model(*[batch[name] for name in json.loads(order)])
    torch.save(probs, out)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "mmdetect"))
    print(json.dumps(loaded))
    """
)

ENCODERS = {
    # name: (builder, pooling, tokenizer class)
    "bert_mecab": (save_bert_mecab, "attention", "BertJapaneseTokenizer"),
    "deberta_sp": (save_deberta_sp, "mean", "DebertaV2Tokenizer"),
}


def checkpoint_probabilities(ckpt: Path, snapshot: Path, pre: dict) -> dict[str, np.ndarray]:
    """The checkpoint's eager fp32 probabilities per listing id (the training-side model)."""
    module, data = load_checkpoint(ckpt)
    listings = read_snapshot(snapshot).listings
    dataset = build_dataset(listings, snapshot, load_tokenizer(data["tokenizer"]), pre)
    probs = []
    with torch.no_grad():
        for batch in build_loader(dataset, pre, 16):
            probs.append(torch.sigmoid(module(batch)).numpy())
    return dict(zip([x.id for x in listings], np.concatenate(probs), strict=True))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_fit_export_predict_with_a_pretrained_encoder(name, small_samples, tmp_path, monkeypatch):
    from mmdetect.training.run import build_cli

    build, pooling, tok_class = ENCODERS[name]
    monkeypatch.chdir(REPO)  # tiny.yaml names paths relative to the repository
    encoder = build(tmp_path / name, sample_texts(small_samples / "train" / "listings.jsonl"))
    run, ckpt_dir = tmp_path / "run", tmp_path / "run" / "ckpt"
    cli = build_cli(
        ["fit", *tiny_fit_args(small_samples, run,
         f"--model.text.pretrained={encoder}", "--data.tokenizer=null",  # comes with the encoder
         f"--model.text.pooling={pooling}", "--trainer.max_epochs=1",
         "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
         f"--checkpoint.dirpath={ckpt_dir}", f"--last_checkpoint.dirpath={ckpt_dir}")]
    )  # fmt: skip
    assert cli.trainer.global_step == 3
    assert cli.model.hparams.tokenizer == cli.datamodule.hparams.tokenizer == str(encoder)
    assert type(cli.datamodule.tokenizer).__name__ == tok_class
    ckpt = next(ckpt_dir.glob("best-*.ckpt"))

    drift, bundle = small_samples / "drift", tmp_path / "bundle"
    assert main(["export", "--ckpt", str(ckpt), "--out", str(bundle),
                 "--parity-snapshot", str(drift), "--parity-listings", "64"]) == 0  # fmt: skip
    meta = json.loads((bundle / "meta.json").read_text())
    assert meta["parity"]["traced"]["max_abs_diff"] <= 1e-5
    assert meta["parity"]["served"]["max_abs_diff"] <= 1e-5
    pre = json.loads((bundle / "preprocess.json").read_text())
    served_tok = load_tokenizer(str(bundle / "tokenizer"))
    assert type(served_tok).__name__ == tok_class
    assert pre["pad_id"] == served_tok.pad_token_id == cli.datamodule.tokenizer.pad_token_id

    out = tmp_path / "decisions.jsonl"
    args = ["predict", "--bundle", str(bundle), "--input", str(drift / "listings.jsonl")]
    assert main([*args, "--out", str(out), "--batch-size", "8"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = checkpoint_probabilities(ckpt, drift, pre)
    assert len(rows) == len(expected) == 60
    got = np.array([[r["model_scores"][c] for c in pre["taxonomy"]] for r in rows])
    want = np.stack([expected[r["id"]] for r in rows])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

    # a fresh process, torch alone: the very probabilities of this process's traced model
    first = read_snapshot(drift).listings[:8]
    dataset = build_dataset(first, drift, served_tok, pre)
    batch = next(iter(build_loader(dataset, pre, 8)))
    inputs = {name: batch[name] for name in bundle_format.INPUT_NAMES}
    torch.save(inputs, tmp_path / "inputs.pt")
    with torch.no_grad():
        local = torch.jit.load(str(bundle / "model.ts"))(*inputs.values())
    argv = [str(bundle / "model.ts"), json.dumps(pre["inputs"]), str(tmp_path / "inputs.pt"),
            str(tmp_path / "probs.pt")]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no transformers, no mmdetect
    assert torch.equal(torch.load(tmp_path / "probs.pt"), local)
    want = np.stack([expected[x.id] for x in first])
    np.testing.assert_allclose(local.numpy(), want, atol=1e-5, rtol=0)
