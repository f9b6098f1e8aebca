"""An exported bundle in a fresh process: torch alone runs model.ts, Predictor never imports
Lightning, and both give the very probabilities computed in this process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdetect.artifacts import bundle_format
from mmdetect.data.reader import read_snapshot
from mmdetect.serving.predictor import Predictor, build_loader

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np
    import torch

    torch.set_num_threads(1)
    bundle, snapshot, inputs, out = (Path(a) for a in sys.argv[1:5])

    # 1. torch alone: model.ts + preprocess.json, tensors prepared elsewhere
    model = torch.jit.load(str(bundle / "model.ts"))
    order = json.loads((bundle / "preprocess.json").read_text())["inputs"]
    batch = torch.load(inputs)
    with torch.no_grad():
        raw = model(*[batch[name] for name in order]).numpy()
    torch_only = sorted(m for m in sys.modules if m.split(".")[0] == "mmdetect")

    # 2. Predictor: checksums, tokenizer, preprocessing, batching
    from mmdetect.data.reader import read_snapshot
    from mmdetect.serving.predictor import Predictor

    predictor = Predictor.from_bundle(bundle, batch_size=4)
    probs = predictor.predict_proba(read_snapshot(snapshot).listings, snapshot)
    forbidden = ("lightning", "pytorch_lightning")
    local = ("mmdetect.training.module", "mmdetect.training.run", "mmdetect.training.datamodule")
    bad = sorted(m for m in sys.modules if m.split(".")[0] in forbidden or m in local)
    np.savez(out, raw=raw, probs=probs)
    print(json.dumps({"bad": bad, "torch_only": torch_only, "mmdetect": "mmdetect" in sys.modules}))
    """
)


def test_bundle_in_a_fresh_process_without_lightning(assets, tmp_path):
    import json

    predictor = Predictor.from_bundle(assets.bundle, batch_size=4)
    listings = read_snapshot(assets.drift).listings
    probs = predictor.predict_proba(listings, assets.drift)
    batch = next(iter(build_loader(predictor.dataset(listings[:6], assets.drift),
                                   predictor.bundle.preprocess, 6)))  # fmt: skip
    with torch.no_grad():
        raw = predictor.bundle.module(*[batch[name] for name in bundle_format.INPUT_NAMES]).numpy()
    torch.save({name: batch[name] for name in bundle_format.INPUT_NAMES}, tmp_path / "inputs.pt")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    args = [str(assets.bundle), str(assets.drift), str(tmp_path / "inputs.pt"), str(tmp_path / "out.npz")]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["torch_only"] == []  # step 1 ran before anything of mmdetect was imported
    assert report["mmdetect"] and report["bad"] == []
    child = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(child["raw"], raw)
    np.testing.assert_array_equal(child["probs"], probs)
    assert probs.shape == (30, 7)
