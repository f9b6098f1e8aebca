"""Word vectors: sources and their errors, spaCy's hash, token rows, projection, lexicon words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdetect.data.tokenize import VocabularyError
from mmdetect.data.vectors import (
    VectorsError,
    embedding_init,
    lexicon_words,
    load_vectors,
    murmurhash64,
    token_vectors,
)
from mmdetect.models.wordvec import init_embedding_rows, project_vectors


def write_vec(path, rows: dict[str, list[float]], header: bool = True):
    dim = len(next(iter(rows.values())))
    lines = [f"{len(rows)} {dim}"] if header else []
    lines += [" ".join([w, *map(str, v)]) for w, v in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_murmurhash64_is_spacys_string_hash(strings):
    from spacy.strings import hash_string

    assert murmurhash64(strings).tolist() == [hash_string(s) for s in strings]


def test_text_file_with_and_without_header(tmp_path):
    rows = {"偽物": [1.0, 0.0, 2.0], "本物": [0.5, -1.0, 0.0]}
    for header in (True, False):
        v = load_vectors(str(write_vec(tmp_path / f"v{header}.txt", rows, header)))
        assert v.dim == 3 and v.row("偽物") == 0 and v.row("本物") == 1 and v.row("x") == -1
        np.testing.assert_array_equal(v.matrix[1], [0.5, -1.0, 0.0])


@pytest.mark.parametrize(
    "body, message",
    [
        ("a 1 2 3\nb 1 2\n", ":2: word 'b' has 2 values, expected 3"),
        ("a 1 x 3\n", ":1: a value is not a number"),
        ("", "no word vectors"),
    ],
)
def test_bad_text_file_names_file_and_line(tmp_path, body, message):
    path = tmp_path / "bad.vec"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(VectorsError, match="bad.vec") as err:
        load_vectors(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_missing_and_unknown_sources(tmp_path):
    (tmp_path / "latin.txt").write_bytes(b"\xff\xfe 1 2\n")
    (tmp_path / "v.bin").write_bytes(b"x")
    (tmp_path / "v.npz").write_bytes(b"not a zip")
    for name, message in [("latin.txt", "unreadable"), ("v.bin", "unknown vectors format"),
                          ("v.npz", "unreadable .npz"), ("none.txt", "no such vectors file")]:  # fmt: skip
        with pytest.raises(VectorsError, match=f"{name}: {message}"):
            load_vectors(str(tmp_path / name))
    assert issubclass(VectorsError, VocabularyError)  # fit prints it as one line, exit 1


def test_npz_source_and_shape_mismatch(tmp_path):
    np.savez(tmp_path / "ok.npz", words=np.array(["犬", "猫"]), vectors=np.eye(2, 4))
    v = load_vectors(str(tmp_path / "ok.npz"))
    assert v.row("猫") == 1 and v.matrix.shape == (2, 4)
    np.savez(tmp_path / "bad.npz", words=np.array(["犬"]), vectors=np.eye(2, 4))
    with pytest.raises(VectorsError, match="bad.npz: words .* do not fit"):
        load_vectors(str(tmp_path / "bad.npz"))


@pytest.fixture(scope="module")
def ginza():
    return load_vectors("ja_ginza")


def test_ja_ginza_vectors_read_without_spacy(ginza):
    assert ginza.matrix.shape == (20000, 300) and ginza.matrix.dtype == np.float32
    assert len(ginza.index) > 400_000  # many words share the 20,000 rows
    assert ginza.top_words(3) == ["の", "、", "て"]  # rows are by frequency
    dog, cat, car = (ginza.matrix[ginza.row(w)] for w in ("犬", "猫", "自動車"))
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(dog, cat) > cos(dog, car) + 0.1  # the vectors mean something


def test_token_vectors_only_whole_words(tmp_path):
    v = load_vectors(
        str(write_vec(tmp_path / "v.txt", {"偽": [1, 0], "物": [0, 1], "[UNK]": [3, 3]}))
    )
    vocab = {"[PAD]": 0, "[UNK]": 1, "偽": 2, "##物": 3, "物": 4, "無": 5}
    ids, values = token_vectors(vocab, v)
    assert ids.tolist() == [2, 4]  # not the special token, not the ## piece, not the unknown word
    np.testing.assert_array_equal(values, [[1, 0], [0, 1]])


def test_embedding_init_errors_name_the_file(tmp_path):
    path = write_vec(tmp_path / "v.txt", {"偽": [1.0, 0.0], "物": [0.0, 1.0]})
    with pytest.raises(
        VectorsError, match=r"v.txt: vectors have 2 dims, the text embedding has 64"
    ):
        embedding_init({"source": str(path), "mode": "native"}, {"偽": 0}, 64)
    with pytest.raises(VectorsError, match="v.txt: none of the tokenizer's 1 tokens"):
        embedding_init({"source": str(path)}, {"猫": 0}, 2)
    with pytest.raises(VectorsError, match="takes only"):
        embedding_init({"source": str(path), "dims": 3}, {"偽": 0}, 2)
    ids, values, info = embedding_init({"source": str(path), "mode": "native"}, {"物": 7}, 2)
    assert ids.tolist() == [7] and info["rows_initialised"] == 1 and info["mode"] == "native"


def test_pca_keeps_the_structure_better_than_a_random_projection():
    g = torch.Generator().manual_seed(0)
    # 300-dim vectors that really live near 8 directions, plus noise
    x = torch.randn(500, 8, generator=g) @ torch.randn(8, 300, generator=g) * 3
    x = x + 0.1 * torch.randn(500, 300, generator=g)
    xc = x - x.mean(0)
    d0 = torch.cdist(xc, xc)
    pca = project_vectors(x, 8, "pca")
    rnd = project_vectors(x, 8, "random", seed=1)

    def err(y: torch.Tensor) -> float:  # mean distance error after the best common scale
        dy = torch.cdist(y, y)
        return float((dy * d0.mean() / dy.mean() - d0).abs().mean())

    assert err(pca) < 0.1 * err(rnd)
    assert torch.allclose(pca.double().norm(dim=1), xc.double().norm(dim=1), rtol=0.01)
    assert torch.equal(project_vectors(x, 8, "pca"), pca)  # deterministic, sign fixed
    assert torch.equal(project_vectors(x, 8, "random", seed=1), rnd)
    assert not torch.equal(project_vectors(x, 8, "random", seed=2), rnd)
    with pytest.raises(ValueError, match="native vectors have 300 dims"):
        project_vectors(x, 8, "native")


def test_init_embedding_rows_writes_only_given_rows_at_the_embedding_scale():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 16)
    torch.nn.init.normal_(emb.weight, std=0.02)
    before = emb.weight.detach().clone()
    vectors = torch.randn(10, 40) * 5
    ids = torch.arange(3, 13)
    assert init_embedding_rows(emb, ids, vectors, "pca") == 10
    w = emb.weight.detach()
    others = torch.ones(50, dtype=torch.bool)
    others[ids] = False
    assert torch.equal(w[others], before[others])
    expected = project_vectors(vectors, 16, "pca")
    assert torch.allclose(w[ids] / w[ids].std(), expected / expected.std(), atol=1e-5)
    assert abs(float(w[ids].std()) - float(before.std())) < 1e-6


def test_lexicon_words_are_frequent_wordlike_and_kept_whole(tmp_path):
    rows = {"の": [1, 0], "ブランド": [0, 1], "、": [1, 1], "偽物": [2, 0], "本物です": [0, 2],
            "ロレックス": [1, 2]}  # fmt: skip
    v = load_vectors(str(write_vec(tmp_path / "v.txt", rows)))
    whole = {"ブランド", "偽物", "ロレックス", "の"}
    assert lexicon_words(v, 2, whole.__contains__) == ["ブランド", "偽物"]
    assert lexicon_words(v, 10, whole.__contains__) == ["ブランド", "偽物", "ロレックス"]
