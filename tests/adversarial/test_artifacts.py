"""Hostile artifacts (issue #12): crafted pickles, broken checkpoints, edited bundles, dangerous
`export --out` targets and a killed export's leftovers, all built in tmp_path.

Each case checks the outcome a user sees (exit code, one `error: FILE: ...` line, no traceback,
the exception type and message) and that nothing ran (the payload's marker file is absent) and
nothing was destroyed (the files at the target are still there, byte for byte).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.cli.commands import main as cli_main
from mmdetect.ops.export import export_main
from mmdetect.serving.predictor import Predictor
from mmdetect.training.checkpoint import CheckpointError
from mmdetect.training.loading import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


class Payload:
    """Unpickling this creates `marker` (open(marker, "w")): proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoints(tmp_path: Path, assets) -> dict[str, tuple[Path, Path, str]]:
    """name -> (checkpoint, marker, message): bare pickles, and a real checkpoint with a payload.

    Protocol 2 reaches the GLOBAL (refused by name); a protocol-5 frame is rejected before.
    """
    out = {}
    for protocol, message in ((2, "refused: it contains io.open"), (5, "not a readable")):
        bare, m1 = tmp_path / f"bare{protocol}.ckpt", tmp_path / f"marker-bare{protocol}"
        bare.write_bytes(pickle.dumps(Payload(m1), protocol=protocol))
        out[f"bare pickle, protocol {protocol}"] = (bare, m1, message)
    inside, m2 = tmp_path / "inside.ckpt", tmp_path / "marker-inside"
    raw = torch.load(assets.ckpt, weights_only=True)
    torch.save({**raw, "callbacks": {"x": Payload(m2)}}, inside)
    out["payload in a real checkpoint"] = (inside, m2, "refused: it contains io.open")
    return out


def one_error_line(err: str, path: Path) -> None:
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}: "), err
    assert "Traceback" not in err


def test_the_payload_is_real(tmp_path):
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()  # so its absence below means the loader refused it


# --- code execution ---------------------------------------------------------------------------


def test_export_refuses_crafted_pickles(assets, tmp_path, capsys):
    for name, (ckpt, marker, message) in crafted_checkpoints(tmp_path, assets).items():
        out = tmp_path / "bundle"
        rc = export_main(["--ckpt", str(ckpt), "--out", str(out), "--parity-snapshot",
                          str(assets.drift)])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 1, name
        one_error_line(err, ckpt)
        assert message in err and "weights_only" not in err, err
        assert not marker.exists(), name
        assert not out.exists()


def test_evaluate_refuses_crafted_pickles(assets, tmp_path, capsys):
    for name, (ckpt, marker, _) in crafted_checkpoints(tmp_path, assets).items():
        out = tmp_path / "report"
        rc = cli_main(["evaluate", "--model", str(ckpt), "--snapshot", str(assets.drift),
                       "--out", str(out), "--num-workers", "0"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 1, name
        one_error_line(err, ckpt)
        assert not marker.exists(), name


def fresh_module(assets):
    from mmdetect.training.module import DetectorModule

    hp = torch.load(assets.ckpt, weights_only=True)["hyper_parameters"]
    return DetectorModule(**{k: v for k, v in hp.items() if not k.startswith("_")})


def test_warm_start_refuses_crafted_pickles_directly_and_through_a_bundle(assets, tmp_path):
    module = fresh_module(assets)
    for ckpt, marker, message in crafted_checkpoints(tmp_path, assets).values():
        with pytest.raises(CheckpointError, match=message):
            module.warm_start(str(ckpt))
        assert not marker.exists()
    ckpt, marker, _ = crafted_checkpoints(tmp_path, assets)["payload in a real checkpoint"]
    # A registry bundle whose meta.json is edited to name the crafted checkpoint...
    bundle = tmp_path / "bundle"
    shutil.copytree(assets.bundle, bundle)
    meta = json.loads((bundle / "meta.json").read_text())
    meta["checkpoint"] = {"path": str(ckpt), "sha256": bundle_format.sha256_file(ckpt)}
    (bundle / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="meta.json does not match its SHA256"):
        module.warm_start(str(bundle))  # ...is refused before meta.json is even read
    # ...and if the attacker re-writes SHA256SUMS too, the checkpoint is still loaded safely.
    bundle_format.write_checksums(bundle)
    with pytest.raises(CheckpointError, match="refused"):
        module.warm_start(str(bundle))
    assert not marker.exists()


# --- damaged checkpoints ----------------------------------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _edited(assets, path: Path, edit) -> Path:
    raw = torch.load(assets.ckpt, weights_only=True)
    edit(raw)
    torch.save(raw, path)
    return path


def _set_hp(key, value):
    def edit(raw):
        raw["hyper_parameters"][key] = value

    return edit


def _more_layers(raw):
    raw["hyper_parameters"]["text"] = {**raw["hyper_parameters"]["text"], "num_layers": 2}


BROKEN = {
    "truncated": (lambda a, p: _write(p, a.ckpt.read_bytes()[:5000]), "not a readable"),
    "random bytes": (lambda a, p: _write(p, os.urandom(4096)), "not a readable"),
    "empty": (lambda a, p: _write(p, b""), "empty file"),
    "JSON": (lambda a, p: _write(p, b'{"state_dict": {}}'), "not a readable"),
    "a list": (lambda a, p: torch.save([1, 2], p) or p, "expected a checkpoint dict"),
    "no state_dict": (lambda a, p: torch.save({"epoch": 1}, p) or p, "no 'state_dict'"),
    "num_layers changed": (
        lambda a, p: _edited(a, p, _more_layers),
        "weights do not fit its hyper-parameters.*missing",
    ),
    "taxonomy size changed": (
        lambda a, p: _edited(a, p, _set_hp("taxonomy", ["a", "b", "c"])),
        "weights do not fit its hyper-parameters.*shape",
    ),
    "hidden=10**7 (a huge model)": (
        lambda a, p: _edited(a, p, _set_hp("hidden", 10**7)),
        "weights do not fit its hyper-parameters.*shape",
    ),
    "unknown hyper-parameter": (
        lambda a, p: _edited(a, p, _set_hp("bogus", 1)),
        "hyper-parameters do not build a model",
    ),
    "text config not a mapping": (
        lambda a, p: _edited(a, p, _set_hp("text", "big")),
        "hyper-parameters do not build a model",
    ),
    "tokenizer moved": (
        lambda a, p: _edited(a, p, _set_hp("tokenizer", str(p.parent / "gone"))),
        "pass --tokenizer DIR",
    ),
    "hyper_parameters not a mapping": (
        lambda a, p: _edited(a, p, lambda raw: raw.update(hyper_parameters=[1])),
        "'hyper_parameters' must be a mapping",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_checkpoints_give_one_clear_line(assets, tmp_path, capsys, name):
    make, message = BROKEN[name]
    ckpt = make(assets, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(ckpt)
    out = tmp_path / "bundle"
    rc = export_main(["--ckpt", str(ckpt), "--out", str(out), "--parity-snapshot",
                      str(assets.drift)])  # fmt: skip
    assert rc == 1
    one_error_line(capsys.readouterr().err, ckpt)
    assert not out.exists()


@pytest.mark.parametrize("name", ["truncated", "taxonomy size changed"])
def test_evaluate_on_a_broken_checkpoint_is_one_line(assets, tmp_path, capsys, name):
    ckpt = BROKEN[name][0](assets, tmp_path / "bad.ckpt")
    rc = cli_main(["evaluate", "--model", str(ckpt), "--snapshot", str(assets.drift),
                   "--out", str(tmp_path / "report"), "--num-workers", "0"])  # fmt: skip
    assert rc == 1
    one_error_line(capsys.readouterr().err, ckpt)


def test_warm_start_from_mismatched_weights_is_a_clear_error(assets, tmp_path):
    ckpt = BROKEN["taxonomy size changed"][0](assets, tmp_path / "bad.ckpt")
    raw = torch.load(ckpt, weights_only=True)
    raw["state_dict"]["net.head.weight"] = torch.zeros(3, 24)
    torch.save(raw, ckpt)
    with pytest.raises(CheckpointError, match="does not match this model.*head.weight"):
        fresh_module(assets).warm_start(str(ckpt))


# --- edited bundles (SHA256SUMS re-written, so only the cross-checks can catch them) -----------


def _json_edit(name, edit):
    def change(root: Path):
        doc = json.loads((root / name).read_text())
        edit(doc)  # in place
        (root / name).write_text(json.dumps(doc))

    return change


def _truncate(root: Path):
    data = (root / "model.ts").read_bytes()
    (root / "model.ts").write_bytes(data[: len(data) // 2])


BUNDLE_ATTACKS = {
    "truncated model.ts": (_truncate, "model.ts: cannot load TorchScript"),
    "random model.ts": (
        lambda r: (r / "model.ts").write_bytes(os.urandom(2048)),
        "model.ts: cannot load TorchScript",
    ),
    "missing vocab.txt": (
        lambda r: (r / "tokenizer" / "vocab.txt").unlink(),
        "vocab.txt is missing",
    ),
    "bad device": (_json_edit("meta.json", lambda d: d.update(device="gpu0")), "meta.json: device"),
    "device not a string": (
        _json_edit("meta.json", lambda d: d.update(device=5)),
        "meta.json: device",
    ),
    "bad dtype": (_json_edit("meta.json", lambda d: d.update(dtype="int4")), "meta.json: dtype"),
    "meta.json a list": (
        lambda r: (r / "meta.json").write_text("[1]"),
        "meta.json: expected a JSON object",
    ),
    "meta.json without training taxonomy": (
        _json_edit("meta.json", lambda d: d.pop("training_config")),
        "meta.json: missing training_config.model.taxonomy",
    ),
    "reversed taxonomy": (
        _json_edit("preprocess.json", lambda d: d["taxonomy"].reverse()),
        "preprocess.json: taxonomy .* different order",
    ),
    "renamed class": (
        _json_edit("preprocess.json", lambda d: d["taxonomy"].__setitem__(0, "other")),
        "preprocess.json: taxonomy .* differs",
    ),
    "thresholds taxonomy reversed": (
        _json_edit("thresholds.json", lambda d: d["taxonomy"].reverse()),
        "thresholds.json: taxonomy .* different order",
    ),
    "preprocess.json a list": (
        lambda r: (r / "preprocess.json").write_text("[1]"),
        "preprocess.json: expected a JSON object",
    ),
    "preprocess.json no max_length": (
        _json_edit("preprocess.json", lambda d: d.pop("max_length")),
        "preprocess.json: missing key 'max_length'",
    ),
    "preprocess.json no taxonomy": (
        _json_edit("preprocess.json", lambda d: d.pop("taxonomy")),
        "preprocess.json: missing key 'taxonomy'",
    ),
    "preprocess.json no pad_id": (
        _json_edit("preprocess.json", lambda d: d.pop("pad_id")),
        "preprocess.json: missing key 'pad_id'",
    ),
    "inputs reordered": (
        _json_edit("preprocess.json", lambda d: d["inputs"].reverse()),
        "preprocess.json: inputs",
    ),
    "image_size a string": (
        _json_edit("preprocess.json", lambda d: d.update(image_size="32")),
        "preprocess.json: image_size",
    ),
    "interpolation unknown": (
        _json_edit("preprocess.json", lambda d: d.update(interpolation="lanczos")),
        "preprocess.json: interpolation",
    ),
    "std zero": (
        _json_edit("preprocess.json", lambda d: d.update(std=[0.5, 0.0, 0.5])),
        "preprocess.json: std must be positive",
    ),
    "thresholds.json a list": (
        lambda r: (r / "thresholds.json").write_text("[]"),
        "thresholds.json: expected a JSON object",
    ),
    "meta.json without format_version": (
        _json_edit("meta.json", lambda d: d.pop("format_version")),
        "bundle format None",
    ),
    "preprocess.json not JSON": (
        lambda r: (r / "preprocess.json").write_text("{"),
        "preprocess.json: cannot read JSON",
    ),
}


@pytest.mark.parametrize("name", list(BUNDLE_ATTACKS))
def test_edited_bundles_are_refused(assets, tmp_path, name):
    change, message = BUNDLE_ATTACKS[name]
    root = tmp_path / "bundle"
    shutil.copytree(assets.bundle, root)
    change(root)
    with pytest.raises(bundle_format.BundleError, match="SHA256|missing"):
        Predictor.from_bundle(root)  # as edited: the checksums catch it
    bundle_format.write_checksums(root)  # an attacker (or a careless edit) re-writes them
    with pytest.raises(bundle_format.BundleError, match=message):
        B.load_bundle(root)
    with pytest.raises(bundle_format.BundleError, match=message):
        Predictor.from_bundle(root)


def test_a_bad_requested_device_is_a_bundle_error(assets):
    with pytest.raises(bundle_format.BundleError, match="'banana' is not a torch device"):
        Predictor.from_bundle(assets.bundle, device="banana")


# --- export --out: what --force may replace, leftovers of a killed export ---------------------


def _export(assets, ckpt: Path, out: Path, *extra: str) -> int:
    return export_main(["--ckpt", str(ckpt), "--out", str(out), "--parity-snapshot",
                        str(assets.drift), "--parity-listings", "8", *extra])  # fmt: skip


def _snapshot_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_force_never_replaces_what_is_not_our_bundle(assets, tmp_path, capsys):
    run = tmp_path / "runs" / "v1"
    (run / "ckpt").mkdir(parents=True)
    ckpt = run / "ckpt" / "best.ckpt"
    shutil.copy(assets.ckpt, ckpt)
    results = tmp_path / "results"
    results.mkdir()
    (results / "report.html").write_text("months of work")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    tampered = tmp_path / "tampered"
    shutil.copytree(assets.bundle, tampered)
    (tampered / "thresholds.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(assets.bundle, target_is_directory=True)
    cases = {
        results: "not an mmdetect bundle",
        run / "ckpt": "contains the input",
        run: "contains the input",
        tmp_path: "contains the input",
        a_file: "not a directory",
        tampered: "not an mmdetect bundle",
        link: "symbolic link",
        assets.drift: "contains the input",
    }
    before = _snapshot_files(tmp_path)
    for out, message in cases.items():
        rc = _export(assets, ckpt, out, "--force")
        err = capsys.readouterr().err
        assert rc == 1, out
        one_error_line(err, out)
        assert message in err, err
    assert _snapshot_files(tmp_path) == before  # nothing destroyed, nothing added
    assert link.is_symlink()


def test_stale_temporaries_are_cleaned_and_reported(assets, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid = int(dead.stdout)
    out = tmp_path / "bundle"
    out.mkdir()  # an empty directory: --force may use it
    stale = tmp_path / f".bundle.tmp-{dead_pid}-abcd1234"
    old_style = tmp_path / ".bundle.tmp-q8x2k1"  # an older mmdetect's mkdtemp name
    live = tmp_path / f".bundle.tmp-{os.getppid()}-abcd1234"  # a live export's: left alone
    for d in (stale, old_style, live):
        d.mkdir()
        (d / "model.ts").write_bytes(b"half")
    os.utime(old_style, (0, 0))
    assert _export(assets, assets.ckpt, out, "--force") == 0
    err = capsys.readouterr().err
    assert f"removed {stale}" in err and f"removed {old_style}" in err
    assert not stale.exists() and not old_style.exists() and live.exists()
    bundle_format.verify_checksums(out)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle."))
    assert leftovers == [live.name]


def test_a_previous_bundle_left_by_a_killed_install_is_reported_not_deleted(tmp_path):
    from mmdetect.artifacts.bundle_dir import clean_stale

    out = tmp_path / "bundle"
    old = tmp_path / ".bundle.old-999999999-abcd1234"  # no such pid
    old.mkdir()
    (old / "meta.json").write_text("{}")
    notes = clean_stale(out)
    assert len(notes) == 1 and "previous bundle" in notes[0] and old.exists()
    out.mkdir()
    assert clean_stale(out) == [f"removed {old}, a replaced bundle left by an interrupted export"]
    assert not old.exists()


def test_fit_warm_start_from_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    from mmdetect.cli.commands import main

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(range(256)) * 4)
    code = main(["fit", "--config", "configs/train/tiny.yaml", f"--model.init_from={bad}",
                 "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: not a readable checkpoint" in err and "Traceback" not in err
