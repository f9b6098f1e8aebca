"""WordVecTower (bag of word vectors + MLP) and the text tower choice."""

from __future__ import annotations

import pytest
import torch

from mmdetect.models.classifier import ModelConfig, MultimodalClassifier
from mmdetect.models.text import TextConfig, TextTower, build_text_tower
from mmdetect.models.wordvec import WordVecTower


@pytest.fixture
def tower() -> WordVecTower:
    torch.manual_seed(0)
    return WordVecTower(vocab_size=30, embedding_dim=12, hidden_size=8, dropout=0.1).eval()


def test_pooled_is_a_bag_padding_and_order_free(tower):
    ids = torch.tensor([[2, 5, 7, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    pooled, tokens, m = tower(ids, mask)
    assert pooled.shape == (1, 8) and tokens.shape == (1, 6, 8) and m.dtype == torch.bool
    shuffled, _, _ = tower(torch.tensor([[9, 7, 2, 5]]), torch.ones(1, 4, dtype=torch.long))
    torch.testing.assert_close(pooled, shuffled)  # a bag: order and padding do not matter
    other_pad, _, _ = tower(torch.tensor([[2, 5, 7, 9, 3, 3]]), mask)
    torch.testing.assert_close(pooled, other_pad)


def test_max_pooling_keeps_one_cue_word_in_a_long_text(tower):
    with torch.no_grad():
        tower.embeddings.weight[4] = 5.0  # a strong "cue word"
    short = torch.tensor([[2, 4]])
    long = torch.tensor([[2, 4] + [3] * 40])
    vec = lambda ids: tower.embeddings(ids)  # noqa: E731
    top_short = vec(short).amax(1)
    top_long = vec(long).amax(1)
    torch.testing.assert_close(top_short, top_long)  # the max part of the bag is not diluted
    p1, _, _ = tower(short, torch.ones_like(short))
    p2, _, _ = tower(long, torch.ones_like(long))
    assert not torch.allclose(p1, p2)  # the mean part still sees the rest


def test_empty_text_gives_finite_output(tower):
    pooled, _, _ = tower(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    assert torch.isfinite(pooled).all()


def test_traced_tower_matches_eager_on_other_lengths(tower):
    ids = torch.randint(0, 30, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    traced = torch.jit.trace(tower, (ids, mask))
    ids2, mask2 = torch.randint(0, 30, (5, 11)), torch.ones(5, 11, dtype=torch.long)
    mask2[0, 2:] = 0
    for a, b in zip(traced(ids2, mask2), tower(ids2, mask2), strict=True):
        torch.testing.assert_close(a, b)


def test_text_kind_selects_the_tower_and_the_classifier_uses_it():
    assert isinstance(build_text_tower(TextConfig(hidden_size=16, num_heads=2)), TextTower)
    wv = build_text_tower(
        TextConfig(kind="wordvec", vocab_size=40, hidden_size=16, embedding_dim=24)
    )
    assert isinstance(wv, WordVecTower) and wv.vocab_rows == 40 and wv.out_dim == 16
    assert wv.get_input_embeddings().embedding_dim == 24
    with pytest.raises(ValueError, match="text kind must be"):
        build_text_tower(TextConfig(kind="lstm"))
    with pytest.raises(ValueError, match="no pretrained encoder"):
        build_text_tower(TextConfig(kind="wordvec", pretrained="some/dir"))
    net = MultimodalClassifier(
        ModelConfig(text=TextConfig(kind="wordvec", vocab_size=40, hidden_size=16))
    )
    assert isinstance(net.text, WordVecTower)
    loss = net(torch.randint(0, 40, (2, 5)), torch.ones(2, 5, dtype=torch.long),
               torch.zeros(2, 1, 3, 32, 32), torch.ones(2, 1, dtype=torch.bool), torch.zeros(2),
               torch.ones(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long)).sum()  # fmt: skip
    loss.backward()
    assert net.text.embeddings.weight.grad.abs().sum() > 0  # the vectors are fine-tuned
