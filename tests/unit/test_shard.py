"""mmdetect shard (scale extra): rows validated like the reader, manifest values, resume, and the
streaming loader: every listing once per epoch, the same tensors as the JSONL path."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

pytest.importorskip("litdata")

from mmdetect.common.outputs import OutputError  # noqa: E402
from mmdetect.data.reader import read_snapshot  # noqa: E402
from mmdetect.data.shard_photos import pack, unpack  # noqa: E402
from mmdetect.scale import shard_cli  # noqa: E402
from mmdetect.scale.plan import hash_fraction, sha256_file  # noqa: E402
from mmdetect.scale.shard import ShardOptions  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data_samples" / "train"
VAL_FROM = "2026-09-01"


def small_snapshot(root: Path) -> Path:
    """90 June rows and 40 September rows of data_samples/train (their photos copied), then bad
    rows: invalid JSON, a missing field, an unknown label, a duplicate id, a missing photo, a
    corrupt photo."""
    lines = (SAMPLES / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines[:90] + lines[-40:]]
    (root / "images").mkdir(parents=True)
    for row in rows:
        for rel in row["images"]:
            shutil.copyfile(SAMPLES / rel, root / rel)
    (root / "images" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    bad = [
        "{not json",
        json.dumps({k: v for k, v in rows[0].items() if k != "title"}),
        json.dumps({**rows[1], "id": "X1", "labels": ["no_such_class"]}),
        json.dumps(rows[2]),  # duplicate id
        json.dumps({**rows[3], "id": "X2", "images": ["images/missing.jpg"]}),
        json.dumps({**rows[4], "id": "X3", "images": [*rows[4]["images"], "images/bad.jpg"]}),
    ]
    text = "\n".join([json.dumps(r, ensure_ascii=False) for r in rows] + bad) + "\n"
    (root / "listings.jsonl").write_text(text, encoding="utf-8")
    shutil.copyfile(SAMPLES / "snapshot.json", root / "snapshot.json")
    return root


def options(**kw) -> ShardOptions:
    base = dict(split="time", val_from=VAL_FROM, image_size=64, chunk_bytes=None, chunk_size=16,
                part_size=60, workers=1)  # fmt: skip
    return ShardOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    base = tmp_path_factory.mktemp("shard")
    snap = small_snapshot(base / "snap")
    manifest = shard_cli.shard([snap], base / "out", options())
    return snap, base / "out", manifest


def test_manifest_counts_match_the_reader(sharded):
    snap, out, manifest = sharded
    ref = read_snapshot(snap)  # the reader's own validation of the same snapshot
    assert manifest["problems"] == dict(sorted(ref.problems.counts.items()))
    assert manifest["problems"] == {"all_photos_failed": 1, "duplicate_id": 1, "image_corrupt": 1,
                                    "image_missing": 1, "invalid_json": 1, "missing_field": 1,
                                    "unknown_label": 1}  # fmt: skip
    val = [x for x in ref.listings if x.created_at.strftime("%Y-%m") >= "2026-09"]
    subsets = manifest["subsets"]
    assert subsets["train"]["listings"] == len(ref.listings) - len(val) == 92
    assert subsets["val"]["listings"] == len(val) == 40
    assert subsets["val"]["months"] == {"2026-09": 40}
    labels = Counter(c for x in ref.listings if x.created_at.month < 9 for c in x.labels)
    assert subsets["train"]["labels"] == {c: labels.get(c, 0) for c in manifest["taxonomy"]}
    assert subsets["train"]["chunks"] == 6 and subsets["val"]["chunks"] == 3  # 16 per chunk
    assert manifest["rows_read"] == 136
    assert manifest["sources"][0]["listings_sha256"] == sha256_file(snap / "listings.jsonl")
    assert manifest["photos"]["image_size"] == 64 and manifest["litdata_version"]
    index = json.loads((out / "train" / "index.json").read_text())
    assert index["config"]["data_format"] == ["str", "str", "bytes"]  # never pickle
    assert not list(out.parent.glob(".out.shard-work*"))  # the work directory is gone


def test_refuses_outputs_inside_the_input_or_not_empty(sharded, tmp_path):
    snap, out, _ = sharded
    with pytest.raises(OutputError, match="inside the input"):
        shard_cli.shard([snap], snap / "shards", options())
    with pytest.raises(OutputError, match="not empty"):
        shard_cli.shard([snap], out, options())


class Killed(Exception):
    pass


def test_rerun_after_an_interruption_keeps_finished_parts(sharded, tmp_path, monkeypatch):
    snap, _, first = sharded
    out, calls, killed = tmp_path / "out", [], []
    real = shard_cli.run_part

    def interrupted(work, part, *args):
        calls.append(part["name"])
        if len(calls) == 2 and not killed:
            killed.append(part["name"])
            raise Killed  # the run dies in its second part
        return real(work, part, *args)

    monkeypatch.setattr(shard_cli, "run_part", interrupted)
    with pytest.raises(Killed):
        shard_cli.shard([snap], out, options())
    work = shard_cli.work_dir(out)
    assert not out.exists() and (work / "done" / f"{calls[0]}.json").is_file()
    done_before = {p.stat().st_ino for p in (work / "done" / calls[0]).glob("chunk-*.bin")}
    calls.clear()
    manifest = shard_cli.shard([snap], out, options())
    assert calls == ["part-train-00001", "part-val-00000"]  # the first part was not redone
    assert manifest["subsets"] == first["subsets"] and manifest["problems"] == first["problems"]
    linked = {p.stat().st_ino for p in (out / "train").glob("chunk-*.bin")}
    assert done_before and done_before <= linked  # the first run's chunks, linked, not rewritten
    ids = [json.loads(x["listing"])["id"] for x in iter_dataset(out / "train")]
    assert len(ids) == len(set(ids)) == 92


def iter_dataset(path: Path):
    from litdata import StreamingDataset

    ds = StreamingDataset(str(path))
    return [ds[i] for i in range(len(ds))]


def test_pack_round_trip_and_hash_split_matches_the_datamodule():
    from mmdetect.training.datamodule import hash_fraction as dm_hash

    blobs = [b"a", b"", b"xyz" * 100]
    assert unpack(pack(blobs)) == blobs and unpack(pack([])) == []
    with pytest.raises(ValueError):
        unpack(pack(blobs)[:-1])
    assert all(hash_fraction(i) == dm_hash(i) for i in ("L1", "L0000042", "日本"))


def shard_dataset(out: Path, name: str, tokenizer: str, size: int, shuffle: bool, **kw):
    from mmdetect.data.photos import eval_photo
    from mmdetect.data.streaming import ShardDataset
    from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
    from mmdetect.training.datamodule import DEFAULT_CATEGORIES

    ds = ShardDataset(str(out / name), tokenizer, 64, DEFAULT_TAXONOMY, DEFAULT_CATEGORIES,
                      eval_photo(size), 4, shuffle=shuffle, **kw)  # fmt: skip
    ds.price_mean, ds.price_std = 8.0, 2.0
    return ds


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_loader_yields_every_listing_once_per_epoch(sharded, workers):
    from functools import partial

    from mmdetect.data.streaming import ShardLoader, collate

    _, out, _ = sharded
    ds = shard_dataset(out, "train", str(REPO / "data_samples/tokenizer"), 64, True, seed=3)
    loader = ShardLoader(ds, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=8, num_workers=workers,
                         collate_fn=partial(collate, pad_id=0, image_size=64))  # fmt: skip
    epochs = []
    for _ in range(2):
        ids = [i for batch in loader for i in batch["ids"]]
        assert len(ids) == len(set(ids)) == 92
        epochs.append(ids)
    assert set(epochs[0]) == set(epochs[1]) and epochs[0] != epochs[1]  # reshuffled
    batch = next(iter(loader))
    assert batch["images"].dtype == torch.float32  # normalised once per batch, as PhotoLoader


@pytest.mark.parametrize("size", [128, 64])
def test_shards_give_the_jsonl_paths_tensors(sharded, tmp_path, size):
    """Photos already at the training side (128 px samples at 128): identical tensors. Shrunk
    to 64 px and re-encoded once: identical text, price, labels; photos within JPEG noise."""
    from mmdetect.data.dataset import Item, ListingDataset
    from mmdetect.data.photos import draft_side, eval_photo
    from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
    from mmdetect.data.tokenize import encode_batch, load_tokenizer
    from mmdetect.training.datamodule import DEFAULT_CATEGORIES

    snap, out, _ = sharded
    if size != 64:
        out = tmp_path / "out"
        shard_cli.shard([snap], out, options(image_size=size, split="none"))
    name = "all" if size != 64 else "val"
    tok = str(REPO / "data_samples/tokenizer")
    ds = shard_dataset(out, name, tok, size, False)
    stored = {s["id"]: s for s in (ds[i] for i in range(len(ds)))}
    listings = [x for x in read_snapshot(snap).listings if x.id in stored]
    ids = encode_batch(load_tokenizer(tok), [(x.title, x.description) for x in listings], 64)
    ref = ListingDataset([Item(x, snap) for x in listings], ids, DEFAULT_TAXONOMY,
                         DEFAULT_CATEGORIES, eval_photo(size), 4, 8.0, 2.0, draft_side(size))  # fmt: skip
    assert len(ref) == len(stored) >= 40
    diffs = []
    for i, x in enumerate(listings):
        a, b = ref[i], stored[x.id]
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
        assert (a["price"], a["price_mask"], a["category_id"]) == (
            b["price"], b["price_mask"], b["category_id"])  # fmt: skip
        assert len(a["photos"]) == len(b["photos"])
        for p, q in zip(a["photos"], b["photos"], strict=True):
            assert p.dtype == q.dtype == torch.uint8 and p.shape == q.shape == (3, size, size)
            if size == 128:
                assert torch.equal(p, q)
            diffs.append((p.float() - q.float()).abs().mean().item())
    # mean absolute difference in levels of 255 per photo: JPEG q95 4:4:4 noise only (the
    # resize itself is the eval transform's: 0 without the re-encoding)
    assert max(diffs) < 2.0 and sum(diffs) / len(diffs) < 1.2


def test_cli_errors_are_one_line(tmp_path, capsys):
    from mmdetect.cli.commands import main

    assert main(["shard", str(SAMPLES), "--out", str(tmp_path / "o"), "--split", "time"]) == 2
    assert "--val-from" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["shard", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no listings.jsonl" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")
