"""Code execution from a stranger's files (issue #27, item 2): `auto_map` in a tokenizer or
encoder directory, class paths in checkpoints, MeCab options in a tokenizer config.

Every case answers "y" on stdin (transformers asks "Do you wish to run the custom code? [y/N]"
when `trust_remote_code` is unset) and checks that the module that would run writes no marker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdetect.artifacts import bundle as B
from mmdetect.artifacts import bundle_format
from mmdetect.common.safe_pretrained import UnsafePretrainedError
from mmdetect.data.tokenize import load_tokenizer
from mmdetect.serving.predictor import Predictor
from mmdetect.training.checkpoint import CheckpointError
from mmdetect.training.loading import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TOKENIZER = REPO / "data_samples" / "tokenizer"
PAYLOAD = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


def _payload(where: Path, module: str, marker: Path) -> None:
    (where / f"{module}.py").write_text(PAYLOAD.format(marker=str(marker)), encoding="utf-8")


def _edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    doc.update(changes)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, stdin answering "y" to any prompt."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "HF_MODULES_CACHE": str(cwd / "hf_modules")}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-c", code], input="y\ny\n", capture_output=True, text=True,
        cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


@pytest.fixture
def evil_tokenizer(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "tok"
    shutil.copytree(TOKENIZER, root)
    marker = tmp_path / "marker-tokenizer"
    _payload(root, "evil_tok", marker)
    # no local class of that name: transformers would have to run the bundle's module
    _edit_json(root / "tokenizer_config.json", tokenizer_class="EvilTokenizer",
               auto_map={"AutoTokenizer": ["evil_tok.EvilTokenizer", None]})  # fmt: skip
    return root, marker


def test_auto_map_in_a_tokenizer_config_is_refused_and_never_runs(evil_tokenizer, tmp_path):
    root, marker = evil_tokenizer
    done = _run(f"from mmdetect.data.tokenize import load_tokenizer; load_tokenizer({str(root)!r})",
                tmp_path)  # fmt: skip
    assert not marker.exists(), "the tokenizer's custom code ran"
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert done.returncode != 0
    assert f"{root / 'tokenizer_config.json'}: key 'auto_map'" in done.stderr
    with pytest.raises(UnsafePretrainedError, match=r"tokenizer_config.json: key 'auto_map'"):
        load_tokenizer(str(root))


def test_auto_map_in_an_encoder_config_is_refused_and_never_runs(tmp_path):
    from transformers import BertConfig, BertModel

    enc = tmp_path / "enc"
    BertModel(BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(enc)  # fmt: skip
    marker = tmp_path / "marker-encoder"
    _payload(enc, "evil_model", marker)
    auto_map = {"AutoConfig": "evil_model.C", "AutoModel": "evil_model.M"}
    _edit_json(enc / "config.json", model_type="evil_bert", auto_map=auto_map)  # not built in
    code = (
        "from mmdetect.models.text import TextConfig, TextTower; "
        f"TextTower(TextConfig(pretrained={str(enc)!r}, max_length=16))"
    )
    done = _run(code, tmp_path)
    assert not marker.exists(), "the encoder's custom code ran"
    assert "Do you wish to run the custom code" not in done.stdout + done.stderr
    assert f"{enc / 'config.json'}: key 'auto_map'" in done.stderr
    # the datamodule's row count reads the same config.json
    from mmdetect.training.datamodule import DetectorDataModule

    with pytest.raises(UnsafePretrainedError, match="config.json: key 'auto_map'"):
        DetectorDataModule(tokenizer=str(TOKENIZER), text_pretrained=str(enc))
    assert not marker.exists()


def test_a_checkpoint_naming_an_encoder_with_custom_code_is_one_line(assets, tmp_path):
    enc = tmp_path / "enc"
    enc.mkdir()
    auto_map = {"AutoConfig": "evil_model.C", "AutoModel": "evil_model.M"}
    _edit_json(enc / "config.json", model_type="evil_bert", auto_map=auto_map)
    marker = tmp_path / "marker-ckpt-encoder"
    _payload(enc, "evil_model", marker)
    raw = torch.load(assets.ckpt, weights_only=True)
    raw["hyper_parameters"]["text"] = {**raw["hyper_parameters"]["text"], "pretrained": str(enc)}
    ckpt = tmp_path / "encoder.ckpt"
    torch.save(raw, ckpt)
    with pytest.raises(CheckpointError, match=r"config.json: key 'auto_map'"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def _fusion_checkpoint(assets, tmp_path: Path, module: str) -> Path:
    raw = torch.load(assets.ckpt, weights_only=True)
    raw["hyper_parameters"]["fusion"] = {"class_path": f"{module}.Fusion", "init_args": {}}
    ckpt = tmp_path / "fusion.ckpt"
    torch.save(raw, ckpt)
    return ckpt


def test_a_checkpoint_naming_venv_main_as_fusion_runs_nothing(assets, tmp_path):
    """In a subprocess: on import, venv.__main__ parses the command line and exits (it did)."""
    ckpt = _fusion_checkpoint(assets, tmp_path, "venv.__main__")
    code = (
        "import sys\nfrom mmdetect.training.loading import load_checkpoint\n"
        f"try:\n    load_checkpoint({str(ckpt)!r})\n"
        "except Exception as exc:\n    print(exc, file=sys.stderr)\n"
        "print(sorted(m for m in sys.modules if m.startswith('venv')))"
    )
    done = _run(code, tmp_path)
    assert "module 'venv.__main__' is not allowed" in done.stderr, done.stderr[-2000:]
    assert "usage: venv" not in done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout  # never imported


@pytest.mark.parametrize("module", ["evil_fusion", "evil_pkg.sub", "os"])
def test_a_checkpoint_fusion_class_path_outside_the_allow_list_imports_nothing(
    assets, tmp_path, module, monkeypatch
):
    marker = tmp_path / "marker-fusion"
    _payload(tmp_path, "evil_fusion", marker)
    (tmp_path / "evil_pkg").mkdir()
    _payload(tmp_path / "evil_pkg", "__init__", marker)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, were anything imported
    ckpt = _fusion_checkpoint(assets, tmp_path, module)
    with pytest.raises(CheckpointError, match=f"module '{module}' is not allowed"):
        load_checkpoint(ckpt)
    assert not marker.exists(), "the checkpoint's module was imported"
    if module != "os":  # os is imported by Python itself
        assert not [m for m in sys.modules if m.startswith(module.split(".")[0])]


def test_the_user_may_allow_a_fusion_package_by_environment(assets, tmp_path, monkeypatch):
    """A plugin checkpoint loads when the user (not the checkpoint) names its package."""
    raw = torch.load(assets.ckpt, weights_only=True)
    spec = {"class_path": "tests.custom_fusion.TokenPhotoSumFusion", "init_args": {"scale": 0.5}}
    raw["hyper_parameters"]["fusion"] = spec
    ckpt = tmp_path / "plugin.ckpt"
    torch.save(raw, ckpt)
    with pytest.raises(CheckpointError, match="'tests.custom_fusion' is not allowed"):
        load_checkpoint(ckpt)
    raw["hyper_parameters"]["allow_modules"] = ["tests"]  # a checkpoint cannot widen the list
    torch.save(raw, ckpt)
    with pytest.raises(CheckpointError, match="'tests.custom_fusion' is not allowed"):
        load_checkpoint(ckpt)
    monkeypatch.setenv("MMDETECT_ALLOW_MODULES", "tests.custom_fusion")
    with pytest.raises(CheckpointError, match="weights do not fit"):  # it imports, then builds
        load_checkpoint(ckpt)


MECAB_ATTACKS = {
    "mecab_option -r": ({"mecab_dic": "unidic_lite", "mecab_option": "-r /etc/passwd"},
                        "mecab_kwargs.mecab_option"),
    "mecab_dic a path": ({"mecab_dic": "/etc"}, "mecab_kwargs.mecab_dic"),
    "user dictionary": ({"mecab_dic": "unidic_lite", "mecab_option": "-u /tmp/x.dic"},
                        "mecab_kwargs.mecab_option"),
    "not an object": ("-d /etc", "mecab_kwargs"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MECAB_ATTACKS))
def test_a_bundle_may_not_choose_mecab_options(assets, tmp_path, name):
    kwargs, key = MECAB_ATTACKS[name]
    root = tmp_path / "bundle"
    shutil.copytree(assets.bundle, root)
    _edit_json(root / "tokenizer" / "tokenizer_config.json", mecab_kwargs=kwargs)
    bundle_format.write_checksums(root)  # re-written, as anyone editing a bundle can
    with pytest.raises(
        bundle_format.BundleError, match=rf"tokenizer_config.json: key '{key}'"
    ) as info:
        Predictor.from_bundle(root)
    with pytest.raises(bundle_format.BundleError, match=rf"tokenizer_config.json: key '{key}'"):
        B.load_bundle(root, model=False)  # the bundle check itself, before any tokenizer loads
    assert len(str(info.value).splitlines()) == 1


def test_our_own_tokenizers_and_bundles_still_load(assets):
    assert len(load_tokenizer(str(TOKENIZER))) > 0
    assert Predictor.from_bundle(assets.bundle).tokenizer.mecab_kwargs == {
        "mecab_dic": "unidic_lite"
    }
