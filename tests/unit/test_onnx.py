"""`mmdetect export --format onnx`: the bundle, its parity with TorchScript, dynamic shapes,
refusal of tampered or unsafe graphs, and evaluate / promote on an ONNX bundle.

The ONNX bundle is exported once per session from tiny_assets' checkpoint (the same one the
TorchScript bundle of test_export.py comes from), with the same parity settings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx  # the `onnx` extra: pip install -e '.[onnx]'
import pytest
import torch

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.artifacts.onnx_runtime import ONNX_FILE
from mmdetect.artifacts.tracing import ProbabilityModel
from mmdetect.ops.export import ExportError, export_bundle, export_main
from mmdetect.serving.predictor import Predictor
from tests.unit.test_export import Assets, eager_net, small_config
from tests.unit.test_registry import Pair, pair, promote_cli  # noqa: F401 (pair: a fixture)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="session")
def onnx_bundle(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("onnx") / "bundle"
        export_bundle(assets.ckpt, out, small_config(format="onnx"), parity_snapshot=assets.drift)
        return out
    finally:
        torch.set_num_threads(threads)


def test_onnx_bundle_layout_meta_and_parity(assets, onnx_bundle):
    files = bundle_format.bundle_files(onnx_bundle)
    assert ONNX_FILE in files and "model.ts" not in files
    assert {"preprocess.json", "thresholds.json", "meta.json", "tokenizer/vocab.txt"} <= set(files)
    bundle_format.verify_checksums(onnx_bundle)
    meta = json.loads((onnx_bundle / "meta.json").read_text())
    assert meta["format"] == "onnx" and meta["parity_check"]["format"] == "onnx"
    assert meta["onnx"]["exporter"] == "dynamo" and "fallback_reason" not in meta["onnx"]
    assert meta["onnx"]["versions"]["onnxruntime"] and meta["onnx"]["opset"] >= 18
    for stage in ("traced", "served"):
        assert meta["parity"][stage]["max_abs_diff"] <= 1e-5
        assert meta["parity"][stage]["class_disagreements"] == 0
    # the same documents as the TorchScript bundle of the same checkpoint
    for name in ("preprocess.json", "thresholds.json"):
        assert (onnx_bundle / name).read_text() == (assets.bundle / name).read_text()
    ts_meta = json.loads((assets.bundle / "meta.json").read_text())
    assert ts_meta["format"] == "torchscript"
    assert meta["checkpoint"] == ts_meta["checkpoint"]


def test_predict_through_onnx_equals_torchscript(assets, onnx_bundle):
    from mmdetect.data.reader import read_snapshot

    ts, ox = Predictor.from_bundle(assets.bundle), Predictor.from_bundle(onnx_bundle)
    assert type(ox.bundle.module).__name__ == "OnnxModule" and ox.device.type == "cpu"
    snap = read_snapshot(assets.drift)
    p_ts = ts.predict_proba(snap.listings, snap.root)
    p_ox = ox.predict_proba(snap.listings, snap.root)
    assert p_ox.dtype == np.float32 and p_ox.shape == p_ts.shape == (30, 7)
    assert np.abs(p_ox - p_ts).max() <= 1e-5
    assert (ox.decisions(p_ox).codes == ts.decisions(p_ts).codes).all()
    got = [d.to_json() for d in ox.predict(snap.listings[:5], snap.root)]
    want = [d.to_json() for d in ts.predict(snap.listings[:5], snap.root)]
    assert [d["decision"] for d in got] == [d["decision"] for d in want]


@pytest.mark.parametrize(("b", "length", "k"), [(1, 7, 1), (5, 40, 3), (5, 64, 2), (2, 2, 4)])
def test_dynamic_batch_length_and_photo_count(assets, onnx_bundle, make_batch, b, length, k):
    module = B.load_bundle(onnx_bundle).module
    batch = make_batch(b=b, length=length, k=k, size=32, vocab=100, seed=b + length)
    inputs = [batch[n] for n in bundle_format.INPUT_NAMES]
    with torch.no_grad():
        want = ProbabilityModel(eager_net(assets), torch.float32)(*inputs)
    got = module(*inputs)
    assert got.dtype == torch.float32 and got.shape == (b, 7)
    assert (got - want).abs().max() <= 1e-5


def test_missing_photos_all_false_masks_and_no_photo_slots(assets, onnx_bundle, make_batch):
    module = B.load_bundle(onnx_bundle).module
    net = ProbabilityModel(eager_net(assets), torch.float32)
    batch = make_batch(b=4, length=12, k=2, size=32, vocab=100, seed=3)
    batch["image_mask"][:] = False  # no listing has a photo: the CNN runs on an empty batch
    for k in (2, 0):  # K = 0: no photo slots at all
        batch["images"], batch["image_mask"] = batch["images"][:, :k], batch["image_mask"][:, :k]
        inputs = [batch[n] for n in bundle_format.INPUT_NAMES]
        with torch.no_grad():
            want = net(*inputs)
        assert (module(*inputs) - want).abs().max() <= 1e-5


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_tampered_model_onnx_is_refused(onnx_bundle, tmp_path):
    bad = _copy(onnx_bundle, tmp_path / "tampered")
    data = bytearray((bad / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(bundle_format.BundleError, match="model.onnx does not match its SHA256"):
        B.load_bundle(bad)
    bundle_format.write_checksums(
        bad
    )  # re-summed: now ORT or the parser must refuse what it cannot run
    (bad / ONNX_FILE).write_bytes(b"not a protobuf at all" * 10)
    bundle_format.write_checksums(bad)
    with pytest.raises(bundle_format.BundleError, match="model.onnx"):
        B.load_bundle(bad)


def _recrafted(onnx_bundle: Path, dst: Path, edit) -> Path:
    """A copy whose model.onnx is edited by `edit(model)` and whose SHA256SUMS is rewritten:
    what an attacker who can write the bundle produces."""
    bad = _copy(onnx_bundle, dst)
    model = onnx.load(str(bad / ONNX_FILE))
    edit(model)
    (bad / ONNX_FILE).write_bytes(model.SerializeToString())
    bundle_format.write_checksums(bad)
    return bad


def test_external_data_and_custom_ops_are_refused(onnx_bundle, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4096, dtype=np.float32).tobytes())

    def point_outside(model):
        init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", str(secret)), ("offset", "0")):
            init.external_data.add(key=key, value=value)

    bad = _recrafted(onnx_bundle, tmp_path / "external", point_outside)
    with pytest.raises(bundle_format.BundleError, match="external data: refused"):
        B.load_bundle(bad)

    def custom_op(model):
        model.graph.node[0].domain = "evil.ops"

    bad = _recrafted(onnx_bundle, tmp_path / "custom", custom_op)
    with pytest.raises(bundle_format.BundleError, match="custom domain 'evil.ops'"):
        B.load_bundle(bad)


def test_format_and_quantize_combinations_are_checked(assets, tmp_path, capsys):
    common = ["--ckpt", str(assets.ckpt), "--parity-snapshot", str(assets.drift)]
    out = tmp_path / "x"
    assert export_main([*common, "--out", str(out), "--quantize", "static_int8"]) == 1
    assert "torchscript quantize must be one of" in capsys.readouterr().err
    with pytest.raises(ExportError, match="format must be one of"):
        export_bundle(assets.ckpt, out, small_config(format="tflite"))
    assert not out.exists()
    meta = json.loads((assets.bundle / "meta.json").read_text())
    bad = _copy(assets.bundle, tmp_path / "badformat")
    B.write_json(bad / "meta.json", {**meta, "format": "tflite"})
    bundle_format.write_checksums(bad)
    with pytest.raises(bundle_format.BundleError, match="format must be one of"):
        B.load_bundle(bad)


@pytest.mark.slow  # the registry pair (two exports), one more export, 2 evaluations, 2 promotions
def test_evaluate_and_promote_accept_an_onnx_bundle(assets, pair: Pair, tmp_path, capsys):  # noqa: F811
    from mmdetect.artifacts.registry_history import read_history
    from mmdetect.artifacts.registry_layout import resolve_current
    from mmdetect.cli.commands import main

    # the registry pair's "good" model and fitted operating point, as an ONNX bundle
    onnx_good = tmp_path / "onnx_good"
    thresholds = pair.good / bundle_format.THRESHOLDS_FILE
    export_bundle(assets.ckpt, onnx_good, small_config(format="onnx"), thresholds, assets.drift)
    for bundle in (pair.good, onnx_good):
        out = tmp_path / f"eval_{bundle.name}"
        assert main(["evaluate", "--model", str(bundle), "--snapshot", str(pair.snapshot),
                     "--out", str(out), "--num-workers", "0"]) == 0  # fmt: skip
    rows = {}
    for bundle in (pair.good, onnx_good):
        lines = (tmp_path / f"eval_{bundle.name}" / "predictions.jsonl").read_text().splitlines()
        rows[bundle.name] = {r["id"]: r for r in map(json.loads, lines)}
    ts, ox = rows[pair.good.name], rows["onnx_good"]
    assert ts.keys() == ox.keys() and len(ox) == 30
    # Thresholds are fitted on these very listings; they sit between scores, not on them
    # (policy.fit.RUNTIME_TOLERANCE), so a 1e-7 runtime difference flips no decision.
    for key, r in ox.items():
        assert r["scores"] == pytest.approx(ts[key]["scores"], abs=1e-5)
        assert r["decisions"] == ts[key]["decisions"] and r["decision"] == ts[key]["decision"]
    # TorchScript champion, then the same model as ONNX: not worse, so promoted
    reg = tmp_path / "reg"
    assert promote_cli(reg, pair.good, pair) == 0
    assert promote_cli(reg, onnx_good, pair) == 0, capsys.readouterr().err
    assert (resolve_current(reg) / ONNX_FILE).is_file()
    assert [h["action"] for h in read_history(reg)] == ["promote", "promote"]
    assert Predictor.from_bundle(resolve_current(reg)).bundle.meta["format"] == "onnx"


@pytest.mark.slow  # three more exports of the tiny model (about a minute on 2 shared cores)
@pytest.mark.parametrize("mode", ["dynamic_int8", "static_int8", "hybrid_int8"])
def test_onnx_int8_exports_pass_the_reduced_precision_gate(assets, tmp_path, mode, capsys):
    out = tmp_path / mode
    cfg = small_config(format="onnx", quantize=mode)
    parity = export_bundle(assets.ckpt, out, cfg, parity_snapshot=assets.drift)
    printed = capsys.readouterr().out
    assert f"parity fp32 {mode} on cpu, eager fp32 vs served ONNX, 30 listings" in printed
    for fig in parity.values():  # quantized: not exact, within the low-precision gate
        assert 0 < fig["max_abs_diff"] <= 0.02 and fig["class_agreement"] >= 0.995
    model = onnx.load(str(out / ONNX_FILE))
    ops = {node.op_type for node in model.graph.node}
    want = {"dynamic_int8": {"DynamicQuantizeLinear"}, "static_int8": {"QuantizeLinear"},
            "hybrid_int8": {"DynamicQuantizeLinear", "QuantizeLinear"}}[mode]  # fmt: skip
    assert want <= ops, sorted(ops)
    if mode == "hybrid_int8":  # static around the convolutions; MatMul/Gemm stay dynamic
        quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
        dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        users = {n.op_type for n in model.graph.node for i in n.input if dq.get(i) in quantized}
        assert "Conv" in users and not users & {"MatMul", "Gemm", "MatMulInteger"}, users
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["format"], meta["quantize"]) == ("onnx", mode)
    assert B.load_bundle(out).device.type == "cpu"
    with pytest.raises(bundle_format.BundleError, match="runs on CPU only"):
        B.load_bundle(out, "cuda")
