"""Predictor over an exported bundle: training-preprocessing parity, checksums, decisions, CLI."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.data.reader import read_snapshot
from mmdetect.serving.decision import Decision
from mmdetect.serving.predict import predict_main
from mmdetect.serving.predictor import Predictor, build_loader

pytestmark = pytest.mark.usefixtures("single_thread")

MMDETECT = Path(__file__).resolve().parents[2] / "mmdetect"
FORBIDDEN = ("lightning", "pytorch_lightning", "mmdetect.training.module", "mmdetect.training.run",
             "mmdetect.training.datamodule")  # fmt: skip


@pytest.fixture(scope="module")
def predictor(assets) -> Predictor:
    return Predictor.from_bundle(assets.bundle, batch_size=3)


def test_predictor_matches_the_detector_module_on_training_batches(assets, predictor):
    """Eager DetectorModule on batches built by DetectorDataModule == the served bundle."""
    from mmdetect.training.datamodule import DetectorDataModule
    from mmdetect.training.module import DetectorModule

    module = DetectorModule.load_from_checkpoint(assets.ckpt, map_location="cpu").eval()
    data_hp = torch.load(assets.ckpt, weights_only=False)["datamodule_hyper_parameters"]
    for split in ("drift", "incoming"):  # incoming/ is unlabeled and was not the parity set
        snapshot = assets.samples / split
        dm = DetectorDataModule(
            **{**data_hp, "predict_snapshots": [str(snapshot)], "batch_size": 4}
        )
        dm.setup("predict")
        with torch.no_grad():
            batches = list(dm.predict_dataloader())
            eager = torch.cat([torch.sigmoid(module(b)) for b in batches]).numpy()
        assert any(b["attention_mask"].min() == 0 for b in batches)  # padding was exercised
        assert any((~b["image_mask"]).all(1).any() for b in batches)  # a listing without photos
        listings = [item.listing for item in dm.datasets["predict"].items]
        served = predictor.predict_proba(listings, snapshot)  # batches of 3: other padding
        assert served.shape == (len(listings), 7) and served.dtype == np.float32
        np.testing.assert_allclose(served, eager, atol=1e-5, rtol=0)


def test_decisions_follow_the_operating_point(predictor):
    from mmdetect.policy import unfitted_operating_point

    th = unfitted_operating_point(predictor.taxonomy)
    th["severity"] = dict.fromkeys(predictor.taxonomy, 1.0)
    th["severity"]["adult"] = 0.2  # adult at 0.99 weighs 0.198 < 0.25: not reviewed
    th["review"]["threshold"] = 0.25
    th["classes"]["counterfeit"].update(hide=0.75, certified=True)  # exact in float32
    predictor.thresholds = th
    try:
        probs = np.full((3, 7), 0.1, dtype=np.float32)
        probs[0, 0] = 0.75  # counterfeit at the hide threshold: hidden (score >= threshold)
        probs[1, 0], probs[1, 2] = 0.25, 0.99  # counterfeit reviewed; adult weighs too little
        out = predictor.decide(["a", "b", "c"], probs)
    finally:
        predictor.thresholds = predictor.bundle.thresholds
    assert [d.decision for d in out] == ["hide", "review", "pass"]
    assert out[0].decisions["counterfeit"] == "hide" and out[1].decisions["adult"] == "pass"
    assert out[1].decisions["counterfeit"] == "review"
    assert out[1].priority == pytest.approx(0.25)
    assert out[2].scores["counterfeit"] == pytest.approx(0.1)  # identity calibration
    assert set(out[0].to_json()) == {
        "id", "scores", "decisions", "decision", "priority", "model_scores", "rules", "ruleset"
    }  # fmt: skip


def test_bundle_input_names_are_the_model_inputs():
    from mmdetect.training.module import MODEL_INPUTS

    assert bundle_format.INPUT_NAMES == MODEL_INPUTS


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda root: (root / "tokenizer" / "vocab.txt").open("a").write("extra\n"),
            "tokenizer/vocab.txt",
        ),  # fmt: skip
        (lambda root: (root / "thresholds.json").unlink(), "thresholds.json is missing"),
        (
            lambda root: (root / "tokenizer" / "added_tokens.json").write_text("{}"),
            "tokenizer/added_tokens.json is not listed",
        ),  # fmt: skip
        (lambda root: (root / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
    ],
    ids=["tampered", "missing", "extra", "no-sums"],
)
def test_checksums_name_the_bad_file(assets, tmp_path, change, named):
    root = tmp_path / "bundle"
    shutil.copytree(assets.bundle, root)
    change(root)
    with pytest.raises(bundle_format.BundleError, match=named):
        Predictor.from_bundle(root)


def test_device_refusals():
    if not torch.cuda.is_available():
        with pytest.raises(bundle_format.BundleError, match="no CUDA device is visible"):
            B.resolve_device("cuda", {"device": "cpu", "dtype": "fp32"})
        # a CUDA bundle without a GPU falls back to CPU when no device is asked for
        assert B.resolve_device(None, {"device": "cuda:0", "dtype": "bf16"}).type == "cpu"
    with pytest.raises(bundle_format.BundleError, match="fp16, which runs on CUDA only"):
        B.resolve_device("cpu", {"device": "cuda:0", "dtype": "fp16"})


def test_retargeted_graph_follows_the_new_device(assets, predictor):
    """The CPU -> CUDA path without a GPU: patched device constants are really used."""
    if torch.cuda.is_available():
        pytest.skip("covered for real by the gpu test")
    meta = predictor.bundle.meta
    module = B.load_torchscript(assets.bundle / "model.ts", torch.device("cpu"), meta)
    listings = read_snapshot(assets.drift).listings[:4]
    loader = build_loader(predictor.dataset(listings, assets.drift), predictor.bundle.preprocess, 4)
    batch = next(iter(loader))
    inputs = [batch[name] for name in bundle_format.INPUT_NAMES]
    expected = module(*inputs)
    fresh = B.load_torchscript(assets.bundle / "model.ts", torch.device("cpu"), meta)
    assert (
        B.retarget_devices(fresh, torch.device("cuda")) > 0
    )  # before the first call, as loading does
    with pytest.raises(RuntimeError, match="(?i)nvidia|cuda"):
        fresh(*inputs)
    module = B.load_torchscript(assets.bundle / "model.ts", torch.device("cpu"), meta)
    B.retarget_devices(module, torch.device("cuda"))
    B.retarget_devices(module, torch.device("cpu"))
    torch.testing.assert_close(module(*inputs), expected, atol=0, rtol=0)


def _source(module: str) -> Path | None:
    """The file of an mmdetect module, or None for anything else."""
    if module.split(".")[0] != "mmdetect":
        return None
    base = MMDETECT.parent / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> list[str]:
    """Every module an import statement in the file names, at any depth (lazy ones too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return out


def reachable_imports(start: str) -> tuple[set[str], list[str]]:
    """(our modules `start` can import, even lazily; one line per import of a FORBIDDEN one)."""
    todo, seen, found = [start], set(), []
    while todo:
        name = todo.pop()
        if name in seen or _source(name) is None:
            continue
        seen.add(name)
        for imported in _imports(_source(name)):
            if imported.startswith(FORBIDDEN):
                found.append(f"{name} imports {imported}")
            todo.append(imported)
    return seen, found


def test_serve_reaches_no_lightning_import():
    """Static: nothing mmdetect.serving.predictor can import, even lazily, names a forbidden module.
    tests/integration/test_bundle_subprocess.py checks sys.modules in a real process."""
    seen, found = reachable_imports("mmdetect.serving.predictor")
    assert {"mmdetect.artifacts.bundle", "mmdetect.data.dataset", "mmdetect.data.tokenize"} <= seen
    assert found == []


def test_predict_cli_skips_bad_rows_and_scores_the_rest(assets, predictor, tmp_path, capsys):
    rows = [json.loads(line) for line in (assets.drift / "listings.jsonl").read_text().splitlines()]
    good = rows[:9]
    bad_label = {**rows[9], "labels": ["no_such_class"]}  # labels are not read: still scored
    missing_photo = {**rows[10], "images": [*rows[10]["images"], "images/gone.jpg"]}
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in good[:5]]
    lines += [
        b"{not json",
        json.dumps({k: v for k, v in rows[11].items() if k != "title"}).encode(),
        json.dumps({**rows[12], "price": -5}).encode(),
        json.dumps({**rows[13], "price": "1000"}).encode(),
        json.dumps(good[0]).encode(),  # duplicate id
        b"\xff\xfe broken bytes",
        b"   ",
        json.dumps(bad_label, ensure_ascii=False).encode(),
        json.dumps(missing_photo, ensure_ascii=False).encode(),
    ]
    lines += [json.dumps(r, ensure_ascii=False).encode() for r in good[5:]]
    src = tmp_path / "in" / "listings.jsonl"
    src.parent.mkdir()
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out" / "decisions.jsonl"
    argv = ["--bundle", str(assets.bundle), "--input", str(src), "--images-root", str(assets.drift),
            "--out", str(out), "--batch-size", "4", "--chunk-size", "5", "--num-workers", "1"]  # fmt: skip
    assert predict_main(argv) == 0
    printed = capsys.readouterr().out
    assert "rows read: 17" in printed and "scored: 11" in printed
    assert ("skipped: 6 (bad_price 1, duplicate_id 1, invalid_json 1, invalid_utf8 1, "
            "missing_field 1, wrong_type 1)") in printed  # fmt: skip
    assert "photo problems (listing still scored): image_missing 1" in printed
    assert "decisions: hide 0, review 11, pass 0" in printed  # HEAD_BIAS: two classes at p > 0.5

    written = [json.loads(line) for line in out.read_text().splitlines()]
    queue_file = out.parent / "decisions.review_queue.jsonl"
    assert f"review queue (11, by priority): {queue_file}" in printed
    queue = [json.loads(line) for line in queue_file.read_text().splitlines()]
    reviewed = sorted((d for d in written if d["decision"] == "review"),
                      key=lambda d: (-d["priority"], d["id"]))  # fmt: skip
    assert [q["id"] for q in queue] == [d["id"] for d in reviewed]
    assert [q["rank"] for q in queue] == list(range(1, 12))
    assert all(a["priority"] >= b["priority"] for a, b in zip(queue, queue[1:], strict=False))
    expected_ids = [r["id"] for r in good[:5]] + [rows[9]["id"], rows[10]["id"]]
    expected_ids += [r["id"] for r in good[5:]]
    assert [d["id"] for d in written] == expected_ids
    by_id = {x.id: x for x in read_snapshot(assets.drift).listings}
    expected = predictor.predict([by_id[i] for i in expected_ids], assets.drift)
    for got, want in zip(written, expected, strict=True):
        assert got["decisions"] == want.decisions and got["decision"] == want.decision
        np.testing.assert_allclose(list(got["scores"].values()), list(want.scores.values()), atol=1e-5)  # fmt: skip
        assert list(got["scores"]) == list(predictor.taxonomy)


def test_predict_cli_fails_on_a_bad_bundle_or_nothing_usable(assets, tmp_path, capsys):
    src = tmp_path / "listings.jsonl"
    src.write_text('{"id": "x"}\n[1, 2]\n')
    out = tmp_path / "o.jsonl"
    argv = ["--bundle", str(tmp_path / "nope"), "--input", str(src), "--out", str(out)]
    assert predict_main(argv) == 1
    assert "no such bundle directory" in capsys.readouterr().err
    argv = ["--bundle", str(assets.bundle), "--input", str(src), "--out", str(out)]
    assert predict_main(argv) == 1  # rows, but none usable
    printed = capsys.readouterr().out
    assert "scored: 0" in printed and "skipped: 2 (missing_field 1, not_an_object 1)" in printed
    assert out.read_text() == ""


def test_empty_input_gives_empty_outputs(predictor, tmp_path):
    assert predictor.predict_proba([], tmp_path).shape == (0, 7)
    assert predictor.predict([], tmp_path) == []
    assert isinstance(Decision("x", {}, {}, "pass"), Decision)
