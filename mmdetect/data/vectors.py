"""Word vectors from a named source, read from local files only (nothing is downloaded).

Sources:
  `ja_ginza`   the vectors the PyPI package ja-ginza ships (chiVe word2vec, 300 dims, 20,000
               rows shared by 480,443 Sudachi words; the `vectors` extra installs it). Its spaCy
               files are read directly: `vocab/vectors` (a .npy array), `vocab/key2row` (msgpack
               hash -> row) and `vocab/strings.json`; spaCy itself is never imported (6 s) and
               the pipeline (Sudachi, parser) is never loaded.
  a `.txt` / `.vec` file   word2vec text: `word v1 ... vD` a line, an optional `N D` header.
  a `.npz` file            arrays `words` (strings) and `vectors` [N, D] float, no pickles.

Rows are in the source's order; for ja_ginza and most word2vec files that is by frequency, so
`WordVectors.top_words(n)` gives the n most frequent words.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdetect.data.tokenize import VocabularyError

GINZA = "ja_ginza"
_M, _R = np.uint64(0xC6A4A7935BD1E995), np.uint64(47)


class VectorsError(VocabularyError):
    """A vectors source that cannot be read or does not fit; one line naming the file."""


def murmurhash64(strings: list[str], seed: int = 1) -> np.ndarray:
    """spaCy's string hash (MurmurHash64A of the UTF-8 bytes, seed 1), vectorised over strings.

    Written out because the Python `murmurhash` package exposes only the 32-bit hash and
    importing spaCy for `hash_string` costs seconds; checked against spaCy in the tests.
    """
    data = [s.encode("utf-8") for s in strings]
    lens = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
    width = int(-(-max(int(lens.max(initial=0)), 1) // 8) * 8)
    buf = np.zeros((len(data), width), dtype=np.uint8)
    flat = np.frombuffer(b"".join(data), dtype=np.uint8)
    rows = np.repeat(np.arange(len(data)), lens)
    buf[rows, np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)] = flat
    blocks = buf.view("<u8")
    with np.errstate(over="ignore"):
        h = np.uint64(seed) ^ (lens.astype(np.uint64) * _M)
        full = lens // 8
        for i in range(blocks.shape[1]):
            k = blocks[:, i] * _M
            k ^= k >> _R
            k *= _M
            h = np.where(full > i, (h ^ k) * _M, h)
            # The 1-7 tail bytes are zero-padded, so the whole block is the tail's value.
            h = np.where((lens % 8 > 0) & (full == i), (h ^ blocks[:, i]) * _M, h)
        h ^= h >> _R
        h *= _M
        h ^= h >> _R
    return h


@dataclass
class WordVectors:
    """A [rows, dim] float32 matrix and a word -> row map (several words may share a row)."""

    matrix: np.ndarray
    index: dict[str, int]
    source: str  # what the config named, recorded in checkpoints
    path: str  # the file read

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def row(self, word: str) -> int:
        """The word's row, -1 when it has no vector."""
        return self.index.get(word, -1)

    def top_words(self, n: int) -> list[str]:
        """The word owning each of the first n rows (the first word seen for that row)."""
        owner: dict[int, str] = {}
        for word, r in self.index.items():
            if r < n and r not in owner:
                owner[r] = word
        return [owner[r] for r in sorted(owner)]


# A lexicon word worth its own token: kana, kanji (with the long-vowel mark) or ASCII
# letters and digits, two characters or more (single characters are in the alphabet already).
_WORDLIKE = re.compile(r"[\u3041-\u309f\u30a0-\u30ff\u4e00-\u9fffA-Za-z0-9]{2,}")


def lexicon_words(vectors: WordVectors, n: int, one_word: Callable[[str], bool]) -> list[str]:
    """The n most frequent word-like words of `vectors` that `one_word` (MeCab) keeps whole."""
    out: list[str] = []
    for word in vectors.top_words(len(vectors.matrix)):
        if len(out) >= n:
            break
        if _WORDLIKE.fullmatch(word) and one_word(word):
            out.append(word)
    return out


def ginza_vocab_dir() -> Path:
    """The installed ja_ginza package's `vocab` directory (VectorsError when not installed)."""
    spec = importlib.util.find_spec(GINZA)
    if spec is None or not spec.submodule_search_locations:
        raise VectorsError(
            "vectors source ja_ginza: the ja-ginza package is not installed "
            "(pip install 'mmdetect[vectors]')"
        )
    found = sorted(Path(spec.submodule_search_locations[0]).glob("ja_ginza-*/vocab"))
    if not found:
        raise VectorsError(f"vectors source ja_ginza: no vocab/ directory under {spec.origin}")
    return found[-1]


def _load_ginza() -> WordVectors:
    import srsly  # a dependency of spaCy, installed with ja-ginza; reads msgpack safely

    vocab = ginza_vocab_dir()
    matrix = _read_npy(vocab / "vectors")
    try:
        key2row = srsly.read_msgpack(vocab / "key2row")
        strings = json.loads((vocab / "strings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VectorsError(f"{vocab}: unreadable ja_ginza vocabulary: {exc}") from None
    hashes = murmurhash64(strings).tolist()
    # key2row keeps its insertion order (rows 0.. first, by frequency); follow it.
    by_hash = dict(zip(hashes, strings, strict=True))
    index = {by_hash[k]: int(r) for k, r in key2row.items() if k in by_hash}
    return WordVectors(matrix, index, GINZA, str(vocab / "vectors"))


def _read_npy(path: Path) -> np.ndarray:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise VectorsError(f"{path}: unreadable vectors array: {exc}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise VectorsError(f"{path}: vectors must be a 2-D float array, got {matrix.shape}")
    return matrix.astype(np.float32, copy=False)


def _load_text(path: Path) -> WordVectors:
    """word2vec text format; every line must have the same number of values."""
    index: dict[str, int] = {}
    rows: list[list[float]] = []
    dim = None
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # the "count dim" header
                if not parts[0]:
                    continue
                try:
                    values = [float(x) for x in parts[1:]]
                except ValueError:
                    raise VectorsError(f"{path}:{n}: a value is not a number") from None
                if dim is None:
                    dim = len(values)
                if len(values) != dim or dim == 0:
                    raise VectorsError(
                        f"{path}:{n}: word {parts[0]!r} has {len(values)} values, expected {dim}"
                    )
                if parts[0] not in index:
                    index[parts[0]] = len(rows)
                    rows.append(values)
    except (OSError, UnicodeDecodeError) as exc:
        raise VectorsError(f"{path}: unreadable vectors file: {exc}") from None
    if not rows:
        raise VectorsError(f"{path}: no word vectors in the file")
    return WordVectors(np.asarray(rows, dtype=np.float32), index, str(path), str(path))


def _load_npz(path: Path) -> WordVectors:
    try:
        with np.load(path, allow_pickle=False) as z:
            words, matrix = z["words"], z["vectors"]
    except (OSError, ValueError, KeyError) as exc:
        raise VectorsError(
            f"{path}: unreadable .npz (needs arrays words, vectors): {exc}"
        ) from None
    if matrix.ndim != 2 or words.ndim != 1 or len(words) != len(matrix):
        raise VectorsError(
            f"{path}: words {words.shape} and vectors {matrix.shape} do not fit (N and [N, D])"
        )
    index: dict[str, int] = {}
    for i, w in enumerate(words.tolist()):
        index.setdefault(str(w), i)
    return WordVectors(matrix.astype(np.float32), index, str(path), str(path))


def load_vectors(source: str) -> WordVectors:
    """Vectors from `ja_ginza` or a .txt/.vec/.npz file; VectorsError naming the file if bad."""
    if source == GINZA:
        return _load_ginza()
    path = Path(source)
    if not path.is_file():
        raise VectorsError(f"{path}: no such vectors file (or use the source name {GINZA!r})")
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix in (".txt", ".vec"):
        return _load_text(path)
    raise VectorsError(f"{path}: unknown vectors format {path.suffix!r} (.txt, .vec or .npz)")


def token_vectors(vocab: dict[str, int], vectors: WordVectors) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, their vectors [n, D]) for the tokens that are whole words with a vector.

    A whole-word token is one that can start a word (no `##` prefix) and is not a special
    `[...]` token; it gets the vector of that word. Continuation pieces get none.
    """
    ids, rows = [], []
    for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
        if token.startswith("##") or (token.startswith("[") and token.endswith("]")):
            continue
        r = vectors.row(token)
        if r >= 0:
            ids.append(i)
            rows.append(r)
    return np.asarray(ids, dtype=np.int64), vectors.matrix[np.asarray(rows, dtype=np.int64)]


INIT_KEYS = {"source", "mode", "seed"}


def embedding_init(
    spec: dict, vocab: dict[str, int], dim: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(token ids, their vectors, a record for the checkpoint) for `model.text.init_vectors`.

    `spec` is {source, mode (pca | random | native, default pca), seed (default 0)}; `dim` is
    the embedding size the vectors go into (mode native needs the vectors' own size).
    """
    from mmdetect.models.wordvec import PROJECTIONS

    unknown = set(spec) - INIT_KEYS
    if unknown or "source" not in spec:
        raise VectorsError(
            f"model.text.init_vectors needs 'source' and takes only {sorted(INIT_KEYS)}; "
            f"got {sorted(spec)}"
        )
    mode = spec.get("mode", "pca")
    if mode not in PROJECTIONS:
        raise VectorsError(f"model.text.init_vectors.mode must be one of {list(PROJECTIONS)}")
    vectors = load_vectors(str(spec["source"]))
    if mode == "native" and vectors.dim != dim:
        raise VectorsError(
            f"{vectors.path}: vectors have {vectors.dim} dims, the text embedding has {dim}; "
            "mode native needs equal sizes (set model.text.embedding_dim, or use mode pca)"
        )
    ids, values = token_vectors(vocab, vectors)
    if len(ids) == 0:
        raise VectorsError(
            f"{vectors.path}: none of the tokenizer's {len(vocab)} tokens has a vector"
        )
    info = {
        "source": vectors.source,
        "path": vectors.path,
        "mode": mode,
        "seed": int(spec.get("seed", 0)),
        "dim": vectors.dim,
        "rows_initialised": int(len(ids)),
        "vocab_size": len(vocab),
    }
    return ids, values, info
