"""The independent-phrasing evaluation set (mmdetect/samples/independent.py)."""

from __future__ import annotations

import json
from pathlib import Path

from mmdetect.cli import main
from mmdetect.data.reader import read_snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY

REPO = Path(__file__).resolve().parents[2]


def _sample_generator_cues() -> set[str]:
    """The sample generator's own cue words: its per-class short cues (old and drift month),
    its drift-only slang, its fictional brands, games and artists."""
    from mmdetect.samples import text as S

    cues = set(S.DRIFT_WORDS) | set(S.LUX) | set(S.GAMES_OLD) | set(S.GAMES_NEW) | set(S.ARTISTS)
    cues |= {w for brands in S._B.values() for w in brands}
    for v in S.VIOLATIONS.values():
        cues |= {w for phrase in v["short"] + v["short_new"] for w in phrase.split()}
    return cues - {"1:1"}  # a ratio, not a word, and not in the independent set anyway


def test_same_seed_same_bytes_and_the_committed_snapshot_is_its_output(tmp_path, capsys):
    assert main(["samples", "--independent", "--out", str(tmp_path / "a"), "--seed", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["listings"] == 700
    for name in ("listings.jsonl", "snapshot.json"):
        committed = (REPO / "data_samples/independent" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() == committed, name
    main(["samples", "--independent", "--out", str(tmp_path / "b"), "--seed", "1"])
    other = (tmp_path / "b/listings.jsonl").read_bytes()
    assert other != (tmp_path / "a/listings.jsonl").read_bytes()


def test_every_class_and_confusers_and_it_validates():
    snap = read_snapshot(REPO / "data_samples/independent")
    assert not snap.problems.total and len(snap.listings) == 700
    counts = {c: sum(c in x.labels for x in snap.listings) for c in DEFAULT_TAXONOMY}
    assert min(counts.values()) >= 45, counts
    clean = [x for x in snap.listings if not x.labels]
    assert len(clean) == 350
    confusers = (
        "レプリカユニフォーム",
        "ヌードカラー",
        "お札入れ",
        "初期化済み",
        "デジタルコード付き",
    )
    text = "\n".join(f"{x.title} {x.description}" for x in clean)
    assert all(c in text for c in confusers)
    assert all(not x.images for x in snap.listings)  # text only, by design (module docstring)
    assert all(x.created_at.strftime("%Y-%m") == "2026-11" for x in snap.listings)


def test_independent_shares_no_phrase_with_the_sample_generator():
    rows = (REPO / "data_samples/independent/listings.jsonl").read_text(encoding="utf-8")
    found = sorted(w for w in _sample_generator_cues() if w in rows)
    assert found == [], f"sample-generator cue words in the independent set: {found}"
    # and the other way round: the independent set's slang never entered data_samples
    from mmdetect.samples import independent_lexicon as L

    train = (REPO / "data_samples/train/listings.jsonl").read_text(encoding="utf-8")
    own = ["レプリカ", "パチモン", "ぱちもん", "詮索なし", "入手経路", "🔞", "えっちな", "ラブグッズ",
           "諭吉", "ピン札", "プリペイド番号", "あかうんと", "完凸", "セーブ丸ごと", "眠れるやつ",
           *L.BRANDS, *L.GAMES, *L.PAY]  # fmt: skip
    assert [w for w in own if w in train] == []
