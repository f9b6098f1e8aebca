"""The sanity figures quoted in docs/explain.md, measured once on the tests' tiny cue-word model.

Usage: PYTHONPATH=. HF_HUB_OFFLINE=1 python scripts/explain_sanity_figures.py
"""

import tempfile
from pathlib import Path

import torch
from scipy.stats import spearmanr

from mmdetect.data.dataset import Item
from mmdetect.explain.attribution import Budget
from mmdetect.explain.core import explain_listing, top_spans
from mmdetect.serving.explainable import load_explainable
from tests.unit.test_explain import (
    BENIGN_DESC,
    BENIGN_TITLE,
    CUE,
    PLANTED_TITLE,
    build_cue_model,
    listing,
    synthetic,
)

torch.set_num_threads(1)
ckpt, bundle, rand, snap = build_cue_model(Path(tempfile.mkdtemp()))
trained, reinit, ts = (load_explainable(p) for p in (ckpt, rand, bundle))
rhos = []
for i, (title, desc, _) in enumerate(synthetic(4, seed=9)):
    item = Item(listing(f"r{i}", f"{title} {CUE}", desc), snap)
    a, b = ([s["attribution"] for s in explain_listing(m, item, "counterfeit")["text"]["spans"]]
            for m in (trained, reinit))  # fmt: skip
    rhos.append(round(float(spearmanr(a, b).statistic), 3))
print("rank correlation trained vs re-initialised:", rhos)
planted = Item(listing("p", PLANTED_TITLE, BENIGN_DESC), snap)
benign = explain_listing(
    trained, Item(listing("b", BENIGN_TITLE, BENIGN_DESC), snap), "counterfeit"
)
ig = explain_listing(
    trained, planted, "counterfeit", budget=Budget(ig_max_steps=256, ig_tolerance=1e-3)
)
occ = explain_listing(ts, planted, "counterfeit")
print(
    f"counterfeit: benign {benign['score_model']}, planted {ig['score_model']}; IG steps "
    f"{ig['text']['steps']}, completeness gap {ig['text']['completeness_gap']}"
)
print("IG top:", [(s["text"], s["attribution"]) for s in top_spans(ig, 3)])
print("occlusion (TorchScript) top:", [(s["text"], s["attribution"]) for s in top_spans(occ, 3)])
