"""Any Hugging Face tokenizer with its encoder: a MeCab WordPiece BERT and a SentencePiece
DeBERTa-v2, both built here from data_samples text and saved as "pretrained" directories.

`save_bert_mecab` and `save_deberta_sp` are also used by tests/integration/test_text_encoders.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertJapaneseTokenizer,
    BertModel,
    DebertaV2Config,
    DebertaV2Model,
    DebertaV2Tokenizer,
)

from mmdetect.data.tokenize import (
    encode_batch,
    encode_listing,
    load_tokenizer,
    nfkc,
    pad_batch,
    pair_template,
    token_ids,
)
from mmdetect.data.vocab import VocabularyError, build_vocab, check_vocabulary

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[2]
# SentencePiece ids: [PAD] is not 0, so a hard-coded pad id would show.
SP_IDS = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=3)


def sample_texts(path: Path = REPO / "data_samples/train/listings.jsonl", n: int = 800):
    """Titles and descriptions of the first `n` listings of a snapshot."""
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line, _ in zip(fh, range(n), strict=False):
            row = json.loads(line)
            texts += [row["title"], row["description"]]
    return texts


def save_bert_mecab(out: Path, texts: list[str], max_positions: int = 64) -> Path:
    """A tiny BERT (with a pooler, which the tower leaves out) + MeCab WordPiece tokenizer."""
    build_vocab(texts, size=1000, out_dir=out)  # vocab.txt + tokenizer_config.json
    tok = load_tokenizer(str(out))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=max_positions,
    )  # fmt: skip
    BertModel(cfg).save_pretrained(out)
    return out


def save_deberta_sp(out: Path, texts: list[str], vocab_size: int = 600) -> Path:
    """A tiny DeBERTa-v2 (relative attention, as v3) + a SentencePiece unigram model trained on
    `texts`, converted by DebertaV2Tokenizer and saved with save_pretrained."""
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(out / "spm"), vocab_size=vocab_size,
        model_type="unigram", character_coverage=0.9995, num_threads=1, minloglevel=2,
        unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]", pad_piece="[PAD]",
        control_symbols=["[MASK]"], **SP_IDS,
    )  # fmt: skip
    DebertaV2Tokenizer.from_pretrained(str(out)).save_pretrained(str(out))
    (out / "spm.vocab").unlink()
    tok = load_tokenizer(str(out))
    torch.manual_seed(0)
    cfg = DebertaV2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, relative_attention=True,
        position_buckets=16, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    DebertaV2Model(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def texts():
    return sample_texts()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, texts):
    return save_bert_mecab(tmp_path_factory.mktemp("bert_mecab"), texts)


@pytest.fixture(scope="module")
def deberta_dir(tmp_path_factory, texts):
    return save_deberta_sp(tmp_path_factory.mktemp("deberta_sp"), texts)


@pytest.fixture(scope="module")
def sp(deberta_dir):
    return load_tokenizer(str(deberta_dir))


def test_load_tokenizer_picks_each_type(bert_dir, deberta_dir, sp, tmp_path):
    bert = load_tokenizer(str(bert_dir))
    assert isinstance(bert, BertJapaneseTokenizer) and bert.word_tokenizer_type == "mecab"
    assert isinstance(sp, DebertaV2Tokenizer) and len(sp) == 600
    assert (sp.unk_token_id, sp.cls_token_id, sp.sep_token_id, sp.pad_token_id) == (0, 1, 2, 3)
    assert pair_template(bert) == ((2,), (3,), (3,))  # [CLS] a [SEP] b [SEP]
    assert pair_template(sp) == ((1,), (2,), (2,))
    (tmp_path / "vocab.txt").write_text((bert_dir / "vocab.txt").read_text(encoding="utf-8"))
    bare = load_tokenizer(str(tmp_path))  # vocab.txt alone: the cl-tohoku v3 settings
    assert isinstance(bare, BertJapaneseTokenizer) and bare.mecab_kwargs == {
        "mecab_dic": "unidic_lite"
    }
    with pytest.raises((OSError, ValueError)):
        load_tokenizer(str(tmp_path / "missing"))


def test_sp_encode_matches_the_tokenizers_own_pair_call(sp, ja_listings):
    for title, desc in ja_listings[:-1]:
        expected = sp(nfkc(title), nfkc(desc))["input_ids"]
        assert encode_listing(sp, title, desc, max_length=512) == expected
    title = ja_listings[-1][0]  # an empty description still gets its [SEP] (the pair call's not)
    assert encode_listing(sp, title, "", 512) == [*sp(nfkc(title))["input_ids"], 2]
    ids = encode_listing(sp, *ja_listings[0], max_length=512)
    assert ids[0] == sp.cls_token_id and ids[-1] == sp.sep_token_id
    assert ids.count(sp.sep_token_id) == 2 and sp.cls_token_id not in ids[1:]
    assert encode_batch(sp, ja_listings[:3], 512) == [
        encode_listing(sp, t, d, 512) for t, d in ja_listings[:3]
    ]


def test_sp_truncates_the_description_first(sp, ja_listings):
    title, desc = ja_listings[0][0], "激安 ブランド 本物 " * 400  # prefix cut path
    title_ids = token_ids(sp, nfkc(title))
    desc_ids = sp(nfkc(desc), add_special_tokens=False)["input_ids"]
    ids = encode_listing(sp, title, desc, max_length=40)
    assert len(ids) == 40
    assert ids == [1, *title_ids, 2, *desc_ids[: 40 - 3 - len(title_ids)], 2]
    long_title = "ルイヴィトン 長財布 " * 30
    ids = encode_listing(sp, long_title, "説明", max_length=10)
    assert ids == [1, *token_ids(sp, nfkc(long_title))[:7], 2, 2]  # description dropped
    with pytest.raises(ValueError, match="max_length must be >= 4"):
        encode_listing(sp, "a", "b", max_length=3)


def test_sp_text_is_normalised_and_typed_specials_stay_text(sp):
    assert encode_listing(sp, "ＮＩＫＥ ｴｱﾏｯｸｽ", "", 32) == encode_listing(
        sp, "NIKE エアマックス", "", 32
    )
    assert encode_listing(sp, "財布\x00\x07", "", 32) == encode_listing(sp, "財布  ", "", 32)
    ids = encode_listing(sp, "財布 [SEP] [CLS]", "[PAD][MASK]", 64)
    assert ids.count(sp.sep_token_id) == 2 and ids.count(sp.cls_token_id) == 1
    assert sp.pad_token_id not in ids and sp.mask_token_id not in ids
    assert sp.unk_token_id in ids  # the typed specials became [UNK]


def test_pad_batch_uses_the_tokenizers_pad_id(sp, ja_listings):
    seqs = encode_batch(sp, ja_listings[:2], 64)
    ids, mask = pad_batch(seqs, sp.pad_token_id)
    short = min(range(2), key=lambda i: len(seqs[i]))
    n = len(seqs[short])
    assert ids[short, n:].tolist() == [3] * (ids.shape[1] - n)
    assert mask[short].tolist() == [1] * n + [0] * (ids.shape[1] - n)


def test_vocabulary_mismatch_is_a_clear_error(bert_dir, deberta_dir, sp):
    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig
    from mmdetect.training.datamodule import DetectorDataModule
    from mmdetect.training.module import DetectorModule

    text = TextConfig(pretrained=str(deberta_dir), max_length=64)
    image = ImageConfig(enabled=False)
    pattern = rf"{bert_dir} \(1000 tokens\).*{deberta_dir} \(600 embedding rows\)"
    with pytest.raises(VocabularyError, match=pattern):
        DetectorModule(text=text, image=image, tokenizer=str(bert_dir))
    with pytest.raises(VocabularyError, match=pattern):
        DetectorDataModule(tokenizer=str(bert_dir), text_pretrained=str(deberta_dir))
    # unset: the tokenizer comes with the encoder, and is recorded
    module = DetectorModule(text=text, image=image)
    assert module.hparams.tokenizer == str(deberta_dir)
    data = DetectorDataModule(text_pretrained=str(deberta_dir))
    assert data.hparams.tokenizer == str(deberta_dir)
    assert isinstance(data.tokenizer, DebertaV2Tokenizer)
    # a smaller tokenizer fits; a special id past the last row does not
    check_vocabulary(sp, "tok", 640, "enc")

    class Odd:
        pad_token_id, cls_token_id = 700, 1

        def __len__(self):
            return 10

    with pytest.raises(VocabularyError, match=r"special ids \{'pad': 700\}"):
        check_vocabulary(Odd(), "tok", 640, "enc")


@pytest.mark.parametrize("which", ["bert", "deberta"])
def test_pretrained_tower_traces_on_real_listings(which, bert_dir, deberta_dir, ja_listings):
    """AutoModel + its own tokenizer: traced on one batch, eager's values on another."""
    import warnings

    from mmdetect.models.text import TextConfig, TextTower

    path = bert_dir if which == "bert" else deberta_dir
    tok = load_tokenizer(str(path))
    tower = TextTower(TextConfig(pretrained=str(path), max_length=64, pooling="attention")).eval()
    assert getattr(tower.encoder, "pooler", None) is None  # no pooler head loaded
    assert tower.vocab_rows == len(tok) and tower.out_dim == (16 if which == "bert" else 32)
    first = pad_batch(encode_batch(tok, ja_listings[:3], 64), tok.pad_token_id)
    second = pad_batch(encode_batch(tok, ja_listings[3:], 24), tok.pad_token_id)
    assert first[0].shape[1] != second[0].shape[1] and (second[1] == 0).any()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(tower, first, check_trace=False)
        for got, want in zip(traced(*second), tower(*second), strict=True):
            assert torch.allclose(got.float(), want.float(), atol=1e-5)


def test_pretrained_tower_builds_on_the_meta_device(deberta_dir):
    """build_module checks a checkpoint's shapes on the meta device before loading anything."""
    from mmdetect.models.text import TextConfig, TextTower

    with torch.device("meta"):
        tower = TextTower(TextConfig(pretrained=str(deberta_dir), max_length=64))
    assert {p.device.type for p in tower.parameters()} == {"meta"}
    assert tower.vocab_rows == 600 and tower.out_dim == 32


def test_fit_refuses_a_mismatched_tokenizer_in_one_line(bert_dir, deberta_dir, monkeypatch, capsys):
    from mmdetect.training.run import run_lightning

    monkeypatch.chdir(REPO)
    args = ["fit", "--config", "configs/train/tiny.yaml", f"--model.text.pretrained={deberta_dir}",
            f"--data.tokenizer={bert_dir}", "--model.text.max_length=64",
            "--model.image.enabled=false"]  # fmt: skip
    assert run_lightning(args) == 1
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert len(err) == 1 and err[0].startswith(f"error: tokenizer {bert_dir} (1000 tokens)")
    assert f"{deberta_dir} (600 embedding rows)" in err[0]
