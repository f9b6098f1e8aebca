"""Tokenizer, listing encoding and text tower."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertJapaneseTokenizer, BertModel

from mmdetect.data.tokenize import (
    encode_batch,
    encode_listing,
    load_tokenizer,
    nfkc,
    pad_batch,
    token_ids,
)
from mmdetect.data.vocab import ASCII_KEPT, SPECIAL_TOKENS
from mmdetect.models.classifier import ModelConfig, MultimodalClassifier
from mmdetect.models.image import ImageConfig
from mmdetect.models.text import AttentionPooling, TextConfig, TextTower

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tok(ja_vocab_dir):
    return load_tokenizer(str(ja_vocab_dir))


def test_build_vocab_layout(ja_vocab_dir, tok):
    vocab = (ja_vocab_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert set(ASCII_KEPT) | {f"##{c}" for c in ASCII_KEPT} <= set(vocab)
    assert len(vocab) == len(set(vocab)) <= 1000
    assert len(tok) == len(vocab)
    assert tok.unk_token_id not in token_ids(tok, "xQz9 Kw7")  # unseen ASCII never [UNK]


def test_build_vocab_round_trip_through_auto_tokenizer(ja_vocab_dir, tok, ja_listings):
    auto = AutoTokenizer.from_pretrained(str(ja_vocab_dir))
    assert isinstance(auto, BertJapaneseTokenizer)
    assert auto.word_tokenizer_type == "mecab" and auto.subword_tokenizer_type == "wordpiece"
    assert auto.mecab_kwargs == {"mecab_dic": "unidic_lite"}
    for title, desc in ja_listings:
        expected = auto(nfkc(title), nfkc(desc), split_special_tokens=True)["input_ids"]
        assert encode_listing(tok, title, desc, max_length=512) == expected
        assert encode_listing(auto, title, desc, max_length=512) == expected


def test_mecab_words_and_nfkc(tok):
    ids = encode_listing(tok, "ＡＢＣ１２３ ﾎﾟｹﾓﾝ", "", max_length=32)
    assert ids == encode_listing(tok, "ABC123 ポケモン", "", max_length=32)
    pieces = tok.convert_ids_to_tokens(ids)
    assert pieces[0] == "[CLS]" and pieces[-2:] == ["[SEP]", "[SEP]"]
    assert "".join(p.removeprefix("##") for p in pieces[1:-2]) == "ABC123ポケモン"


@pytest.mark.parametrize("lower", [False, True])
def test_fast_path_matches_tokenizer(ja_vocab_dir, lower):
    tok = BertJapaneseTokenizer.from_pretrained(str(ja_vocab_dir), do_lower_case=lower)
    text = nfkc("ルイヴィトン\t財布。\n[SEP] 😀 ＮＩＫＥ ﾎﾟｹﾓﾝ iPhone15Pro " + "x" * 120)
    slow = tok.convert_tokens_to_ids(tok.tokenize(text, split_special_tokens=True))
    assert token_ids(tok, text) == slow
    assert tok.sep_token_id not in slow  # a typed "[SEP]" is not the special token
    pieces = [p for p in tok.convert_ids_to_tokens(slow) if p not in tok.all_special_tokens]
    assert any(c.isupper() for p in pieces for c in p) != lower


def test_long_description_keeps_title(tok, ja_listings):
    title, desc = ja_listings[0][0], "激安 ブランド 本物 " * 400
    ids = encode_listing(tok, title, desc, max_length=40)
    title_ids = token_ids(tok, nfkc(title))
    assert len(ids) == 40
    assert ids[: len(title_ids) + 2] == [tok.cls_token_id, *title_ids, tok.sep_token_id]
    desc_ids = token_ids(tok, nfkc(desc))  # the prefix cut gives the same ids as the full text
    assert ids[len(title_ids) + 2 :] == [*desc_ids[: 40 - 3 - len(title_ids)], tok.sep_token_id]


def test_long_title_is_truncated_and_both_sep_kept(tok, ja_listings):
    title = "ルイヴィトン 長財布 " * 20
    ids = encode_listing(tok, title, "説明", max_length=10)
    assert ids == [
        tok.cls_token_id,
        *token_ids(tok, nfkc(title))[:7],
        tok.sep_token_id,
        tok.sep_token_id,
    ]


def test_empty_description_and_batch(tok, ja_listings):
    (title, _), pair = ja_listings[-1], ja_listings[1]
    ids = encode_listing(tok, title, "", max_length=64)
    assert ids == [
        tok.cls_token_id,
        *token_ids(tok, nfkc(title)),
        tok.sep_token_id,
        tok.sep_token_id,
    ]
    assert encode_batch(tok, [(title, ""), pair], 64) == [ids, encode_listing(tok, *pair, 64)]
    with pytest.raises(ValueError, match="max_length"):
        encode_listing(tok, title, "", max_length=3)


def test_pad_batch_values():
    ids, mask = pad_batch([[2, 7, 3], [2, 3]], pad_id=0)
    assert ids.tolist() == [[2, 7, 3], [2, 3, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_tokenizer_pickles_for_dataloader_workers(tok, ja_listings):
    clone = pickle.loads(pickle.dumps(tok))
    title, desc = ja_listings[3]
    assert encode_listing(clone, title, desc, 64) == encode_listing(tok, title, desc, 64)


def test_text_tower_pooling_ignores_padding():
    torch.manual_seed(0)
    cfg = TextConfig(vocab_size=40, hidden_size=8, num_heads=2, intermediate_size=16, max_length=16)
    ids = torch.randint(5, 40, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    other = ids.clone()
    other[1, 6:] = 0
    for pooling in ("cls", "mean", "attention"):
        torch.manual_seed(0)
        tower = TextTower(TextConfig(**{**cfg.__dict__, "pooling": pooling})).eval()
        with torch.no_grad():
            out, states, states_mask = tower(ids, mask)
            hidden = tower.encoder(input_ids=ids[1:, :6]).last_hidden_state[0]
        assert out.shape == (2, tower.out_dim) == (2, 8)
        assert states.shape == (2, ids.shape[1], 8) and torch.equal(states_mask, mask.bool())
        assert torch.allclose(out, tower(other, mask)[0], atol=1e-6)
        if pooling == "attention":
            with torch.no_grad():
                w = torch.softmax(tower.attention.score(hidden).squeeze(-1), dim=0)
            expected = (w[:, None] * hidden).sum(0)
        else:
            expected = hidden[0] if pooling == "cls" else hidden.mean(0)
        assert torch.allclose(out[1], expected, atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        TextTower(TextConfig(pooling="max"))


def test_pretrained_dir_loads_offline(tmp_path, ja_vocab_dir, tok, ja_listings):
    torch.manual_seed(0)
    bert_cfg = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    saved = BertModel(bert_cfg).eval()
    saved.save_pretrained(tmp_path)
    load_tokenizer(str(ja_vocab_dir)).save_pretrained(tmp_path)

    tokenizer = load_tokenizer(str(tmp_path))
    tower = TextTower(TextConfig(pretrained=str(tmp_path), max_length=64)).eval()
    assert tower.out_dim == 16
    ids, mask = pad_batch(encode_batch(tokenizer, ja_listings[:3], 64), tokenizer.pad_token_id)
    with torch.no_grad():
        expected = saved(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        assert torch.allclose(tower(ids, mask)[0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="positions"):
        TextTower(TextConfig(pretrained=str(tmp_path), max_length=128))

    text_cfg = TextConfig(pretrained=str(tmp_path), max_length=64)
    model = MultimodalClassifier(ModelConfig(text=text_cfg, image=ImageConfig(enabled=False)))
    loaded = model.text.encoder.state_dict()
    expected = {k: v for k, v in saved.state_dict().items() if not k.startswith("pooler.")}
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def test_attention_pooling_values_and_gradient():
    pool = AttentionPooling(2)
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[1.0, 0.0]]))
        pool.score.bias.zero_()
    hidden = torch.tensor([[[0.0, 1.0], [math.log(3.0), 5.0], [9.0, 9.0]]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])  # the padded token scores highest: ignored
    out = pool(hidden, mask)
    # softmax(0, log 3) = (1/4, 3/4) over the two real tokens
    assert torch.allclose(out, torch.tensor([[0.75 * math.log(3.0), 0.25 + 3.75]]))
    out.sum().backward()
    assert hidden.grad[0, 2].abs().sum() == 0 and pool.score.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["cls", "mean", "attention"])
def test_text_tower_traces_for_any_length(pooling):
    """Traced on one batch, the graph gives eager's values on another length and padding."""
    torch.manual_seed(0)
    cfg = TextConfig(vocab_size=40, hidden_size=8, num_heads=2, intermediate_size=16,
                     max_length=32, pooling=pooling)  # fmt: skip
    tower = TextTower(cfg).eval()
    ids, mask = torch.randint(5, 40, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(tower, (ids, mask), check_trace=False)
        other, other_mask = torch.randint(5, 40, (3, 17)), torch.ones(3, 17, dtype=torch.long)
        other_mask[0, 3:] = 0
        for got, want in zip(traced(other, other_mask), tower(other, other_mask), strict=True):
            assert torch.allclose(got.float(), want.float(), atol=1e-6)


def test_encoder_decoder_is_refused(tmp_path):
    from transformers import T5Config, T5Model

    cfg = T5Config(vocab_size=50, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    T5Model(cfg).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="encoder-decoder"):
        TextTower(TextConfig(pretrained=str(tmp_path), max_length=16))


def test_untraceable_text_encoder_is_named_by_export(tiny_config, make_batch, monkeypatch):
    from mmdetect.artifacts.tracing import trace_model
    from mmdetect.models.classifier import MODEL_INPUTS
    from mmdetect.ops.export import ExportConfig, ExportError

    net = MultimodalClassifier(tiny_config(image={"enabled": False})).eval()
    forward = type(net.text.encoder).forward

    def untraceable(self, *args, **kwargs):
        if torch.jit.is_tracing():
            raise RuntimeError("data-dependent control flow")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(net.text.encoder), "forward", untraceable)
    batch = make_batch()
    example = tuple(batch[name] for name in MODEL_INPUTS)
    with pytest.raises(
        ExportError,
        match=r"cannot trace this model \(text encoder bert \(BertModel\)\): data-dependent",
    ):
        trace_model(net, example, "fp32", ExportConfig())
