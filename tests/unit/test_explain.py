"""Sanity checks of explanations that can fail: a tiny seeded model learns that one cue word
means `counterfeit`; planting the word raises the score and tops the attributions (IG on the
checkpoint, occlusion on its TorchScript bundle), a re-initialised model's attributions differ,
IG is complete, and photo / modality deltas equal the scores of the edited listing."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmdetect.data.dataset import Item
from mmdetect.data.records import Listing
from mmdetect.explain.attribution import Budget
from mmdetect.explain.core import explain_listing, top_spans
from mmdetect.explain.model import listing_inputs
from mmdetect.serving.explainable import load_explainable

CUE = "偽物"  # one MeCab word, one token: the only evidence of `counterfeit` in the data
BENIGN = ["ミニカー", "財布", "スニーカー", "カード", "バッグ", "時計", "新品", "未使用", "中古",
          "美品", "セット", "まとめ売り", "送料無料", "即購入", "限定", "箱付き"]  # fmt: skip
NOW = datetime(2026, 9, 1, tzinfo=timezone.utc)


def synthetic(n: int, seed: int) -> list[tuple[str, str, bool]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        title = rng.sample(BENIGN, 4)
        desc = rng.sample(BENIGN, 5)
        pos = rng.random() < 0.5
        if pos:
            (title if rng.random() < 0.5 else desc).insert(rng.randrange(4), CUE)
        rows.append((" ".join(title), " ".join(desc) + "です。", pos))
    return rows


def listing(lid: str, title: str, desc: str, images: tuple[str, ...] = (), **kw) -> Listing:
    return Listing(id=lid, title=title, description=desc, price=kw.get("price", 3000),
                   category=kw.get("category", "bags"), images=images, created_at=NOW,
                   labels=kw.get("labels"))  # fmt: skip


def _train(module, tokenizer, rows, steps: int = 120) -> None:
    from mmdetect.data.tokenize import encode_batch, pad_batch

    net = module.net.train()
    ids, mask = pad_batch(encode_batch(tokenizer, [(t, d) for t, d, _ in rows], 32), 0)
    y = torch.zeros(len(rows), len(module.taxonomy))
    y[:, 0] = torch.tensor([float(p) for _, _, p in rows])
    b = len(rows)
    rest = (torch.zeros(b, 1, 3, 32, 32), torch.zeros(b, 1, dtype=torch.bool),
            torch.randn(b), torch.ones(b, dtype=torch.bool), torch.randint(0, 10, (b,)))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, b, (32,), generator=g)
        logits = net(ids[i], mask[i], *(r[i] for r in rest))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def _save(module, tokenizer_dir: Path, path: Path) -> None:
    import lightning

    hp = {**dict(module.hparams), "text": asdict(module.hparams.text),
          "image": asdict(module.hparams.image)}  # fmt: skip
    data = {"tokenizer": str(tokenizer_dir), "max_length": 32, "image_size": 32, "max_photos": 2,
            "taxonomy": list(module.taxonomy), "categories": list(module.hparams.categories),
            "price_mean": 8.0, "price_std": 2.0}  # fmt: skip
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp,
                "datamodule_hyper_parameters": data,
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip


@pytest.fixture(scope="module")
def cue_model(tmp_path_factory, single_thread):
    return build_cue_model(tmp_path_factory.mktemp("cue"))


def build_cue_model(base: Path) -> tuple[Path, Path, Path, Path]:
    """(trained checkpoint, its TorchScript bundle, re-initialised checkpoint, snapshot dir)."""
    from mmdetect.data.tokenize import load_tokenizer
    from mmdetect.data.vocab import build_vocab
    from mmdetect.models.image import ImageConfig
    from mmdetect.models.text import TextConfig
    from mmdetect.ops.export import ExportConfig, export_bundle
    from mmdetect.training.module import DetectorModule

    rows = synthetic(400, seed=0)
    build_vocab([f"{t} {d}" for t, d, _ in rows], 1000, base / "tok")
    tok = load_tokenizer(str(base / "tok"))
    text = TextConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                      max_length=32, pooling="mean")  # fmt: skip
    image = ImageConfig(name="mobilenet_v3_small", image_size=32, max_photos=2)
    kw = dict(text=text, image=image, hidden=24, category_dim=4, tokenizer=str(base / "tok"))
    torch.manual_seed(0)
    trained = DetectorModule(**kw)
    _train(trained, tok, rows)
    _save(trained, base / "tok", base / "trained.ckpt")
    torch.manual_seed(1)
    _save(DetectorModule(**kw), base / "tok", base / "random.ckpt")
    snap = base / "snap"
    (snap / "images").mkdir(parents=True)
    for j, colour in enumerate([(220, 30, 30), (30, 30, 220)]):
        Image.new("RGB", (40, 48), colour).save(snap / "images" / f"p{j}.png")
    with (snap / "listings.jsonl").open("w", encoding="utf-8") as fh:
        for i, (t, d, p) in enumerate(synthetic(12, seed=5)):
            fh.write(json.dumps({"id": f"S{i}", "title": t, "description": d, "price": 2000,
                                 "category": "bags", "images": ["images/p0.png"],
                                 "created_at": NOW.isoformat(),
                                 "labels": ["counterfeit"] if p else []}, ensure_ascii=False) + "\n")  # fmt: skip
    export_bundle(base / "trained.ckpt", base / "bundle",
                  ExportConfig(parity_listings=4, batch_size=4), parity_snapshot=snap)  # fmt: skip
    return base / "trained.ckpt", base / "bundle", base / "random.ckpt", snap


BENIGN_TITLE, BENIGN_DESC = "新品 財布 セット 限定", "美品 時計 箱付き 送料無料です。"
PLANTED_TITLE = f"新品 財布 {CUE} セット 限定"


def _top_texts(e: dict, n: int = 3) -> list[str]:
    return [s["text"] for s in top_spans(e, n)]


def test_planted_cue_raises_the_score_and_tops_ig(cue_model):
    model = load_explainable(cue_model[0])
    root = cue_model[3]
    benign = explain_listing(
        model, Item(listing("b", BENIGN_TITLE, BENIGN_DESC), root), "counterfeit"
    )
    planted = explain_listing(
        model, Item(listing("p", PLANTED_TITLE, BENIGN_DESC), root), "counterfeit"
    )
    assert planted["score_model"] > benign["score_model"] + 0.4
    assert planted["text"]["method"] == "integrated_gradients"
    assert _top_texts(planted, 1) == [CUE]
    span = next(s for s in planted["text"]["spans"] if s["text"] == CUE)
    assert PLANTED_TITLE[span["start"] : span["end"]] == CUE and span["field"] == "title"


def test_spans_land_on_the_evasion_typed_with_the_bundles_normalisation(cue_model):
    """A model trained with data.normalize sees 偽物 in 偽\u200b物: its explanation must keep
    the spans (not drop them as "another tokenizer") and highlight what the seller typed."""
    model = load_explainable(cue_model[0])
    model.pre["normalize"] = {"invisible": True, "separators": True, "homoglyphs": True}
    title = f"新品 財布 {CUE[0]}\u200b{CUE[1]} セット 限定"
    e = explain_listing(model, Item(listing("z", title, BENIGN_DESC), cue_model[3]), "counterfeit")
    plain = explain_listing(
        model, Item(listing("p", PLANTED_TITLE, BENIGN_DESC), cue_model[3]), "counterfeit"
    )
    assert "note" not in e["text"] and e["score_model"] == pytest.approx(plain["score_model"])
    span = next(s for s in e["text"]["spans"] if s["field"] == "title" and "\u200b" in s["text"])
    assert title[span["start"] : span["end"]] == CUE[0] + "\u200b" + CUE[1] == span["text"]
    assert _top_texts(e, 1) == [span["text"]]


def test_ig_is_complete(cue_model):
    model = load_explainable(cue_model[0])
    x = listing("p", PLANTED_TITLE, BENIGN_DESC)
    budget = Budget(ig_steps=32, ig_max_steps=256, ig_tolerance=1e-3)
    e = explain_listing(model, Item(x, cue_model[3]), "counterfeit", budget=budget)
    total = sum(s["attribution"] for s in e["text"]["spans"])
    expected = e["score_model"] - e["text"]["baseline_value"]
    assert abs(expected) > 0.05  # a listing where the words matter
    assert total == pytest.approx(expected, abs=2e-3)
    assert e["text"]["completeness_gap"] < 1e-3
    assert e["text"]["steps"] > 32  # this steep model needed more than the first 32 steps
    # every doubling reran IG: 32 + 64 + ... + steps, all counted in the cost
    assert e["text"]["steps_total"] == 2 * e["text"]["steps"] - 32
    assert e["cost"]["forward_passes"] == 1 + 4 + e["text"]["steps_total"] + 2  # 4 modality masks


def test_model_randomisation_changes_attributions(cue_model):
    from scipy.stats import spearmanr

    trained, rand = load_explainable(cue_model[0]), load_explainable(cue_model[2])
    rhos = []
    for i, (t, d, _) in enumerate(synthetic(4, seed=9)):
        item = Item(listing(f"r{i}", t + f" {CUE}", d), cue_model[3])
        a = [
            s["attribution"] for s in explain_listing(trained, item, "counterfeit")["text"]["spans"]
        ]
        b = [s["attribution"] for s in explain_listing(rand, item, "counterfeit")["text"]["spans"]]
        rhos.append(spearmanr(a, b).statistic)
    assert np.mean(rhos) < 0.5, rhos


def test_occlusion_on_the_bundle_agrees_with_ig_on_the_checkpoint(cue_model):
    bundle = load_explainable(cue_model[1])
    assert bundle.kind == "torchscript" and bundle.net is None
    x = listing("p", PLANTED_TITLE, BENIGN_DESC)
    occ = explain_listing(bundle, Item(x, cue_model[3]), "counterfeit", budget=Budget(max_words=8))
    ig = explain_listing(load_explainable(cue_model[0]), Item(x, cue_model[3]), "counterfeit")
    assert occ["text"]["method"] == "occlusion" and occ["text"]["groups"] <= 8
    assert occ["score_model"] == pytest.approx(ig["score_model"], abs=1e-4)
    cue = [
        next(s["attribution"] for s in e["text"]["spans"] if s["text"] == CUE) for e in (occ, ig)
    ]
    assert cue[0] > 0.2 and cue[1] > 0.2  # same direction, both large
    assert _top_texts(occ, 1) == [CUE]


def test_photo_and_modality_deltas_are_scores_of_the_edited_listing(cue_model):
    model = load_explainable(cue_model[1])
    root = cue_model[3]
    x = listing("m", PLANTED_TITLE, BENIGN_DESC, ("images/p0.png", "images/p1.png"))
    e = explain_listing(model, Item(x, root), "counterfeit")

    def score(y: Listing) -> float:
        inputs, _ = listing_inputs(model, Item(y, root))
        return float(model.probs(inputs)[0, 0])

    full = score(x)
    assert e["score_model"] == pytest.approx(full, abs=1e-6)
    assert [p["path"] for p in e["photos"]] == list(x.images)
    for p in e["photos"]:
        without = replace(x, images=tuple(i for i in x.images if i != p["path"]))
        assert p["delta_model"] == pytest.approx(full - score(without), abs=1e-5)
    edits = {"text": replace(x, title="", description=""), "photos": replace(x, images=()),
             "price": replace(x, price=None), "category": replace(x, category=None)}  # fmt: skip
    for name, y in edits.items():
        assert e["modalities"][name]["delta_model"] == pytest.approx(full - score(y), abs=1e-5)
    assert e["modalities"]["text"]["delta_model"] > 0.2  # the cue is in the text


def _rows(snap: Path) -> list[dict]:
    return [
        json.loads(x) for x in (snap / "listings.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def _private_copy(snap: Path, tmp_path: Path) -> Path:
    """This test's own copy of the shared snapshot, to add files to."""
    import shutil

    return Path(shutil.copytree(snap, tmp_path / "snap"))


def test_cli_writes_jsonl_and_html_and_counts_bad_rows(cue_model, tmp_path, capsys):
    from mmdetect.cli.explain import explain_main

    snap = _private_copy(cue_model[3], tmp_path)  # the module's snapshot stays as built
    rows = _rows(snap)[:3]
    rows[0]["title"] = "<b>偽物</b> ｶﾞﾝﾀﾞﾑ"  # markup and half-width kana from the seller
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "{not json\n"
    (snap / "cli.jsonl").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--model", str(cue_model[1]), "--input", str(snap / "cli.jsonl"), "--out", str(out),
            "--class", "counterfeit", "--max-words", "6"]  # fmt: skip
    assert explain_main(argv) == 0
    got = [json.loads(x) for x in (out / "explanations.jsonl").read_text().splitlines()]
    assert [e["id"] for e in got] == [r["id"] for r in rows]
    assert [e["labels"] for e in got] == [r["labels"] for r in rows]  # shown on the cards
    assert {e["text"]["method"] for e in got} == {"occlusion"} and got[0]["class"] == "counterfeit"
    assert all(e["text"]["groups"] <= 6 and e["cost"]["forward_passes"] <= 6 + 7 for e in got)
    for e, r in zip(got, rows, strict=True):
        for s in e["text"]["spans"]:
            assert r[s["field"]][s["start"] : s["end"]] == s["text"]
    page = (out / "explanations.html").read_text()
    assert page.count('class="card"') == 3 and "&lt;" in page and "&gt;" in page
    assert page.count("<b>") == 3 and page.count("</b>") == 3  # the cards' own, not the seller's
    assert 'id="card-counterfeit:S0"' in page and "data:image/jpeg;base64," in page
    assert "skipped: 1" in capsys.readouterr().out
    # --ids picks listings; an unknown class is one line, exit 1
    assert explain_main([*argv[:6], "--ids", "S2", "--out", str(tmp_path / "two")]) == 0
    assert len((tmp_path / "two" / "explanations.jsonl").read_text().splitlines()) == 1
    assert explain_main([*argv[:6], "--class", "nope", "--out", str(tmp_path / "x")]) == 1
    assert "not in" in capsys.readouterr().err
    # no output into any input: the photo root or the thresholds file given
    assert (
        explain_main([*argv[:6], "--images-root", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    )
    assert "inside the input" in capsys.readouterr().err
    thr = tmp_path / "thr"
    thr.mkdir()
    assert explain_main([*argv[:6], "--thresholds", str(thr), "--out", str(thr / "o")]) == 1
    assert "inside the input" in capsys.readouterr().err
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            explain_main([*argv, "--ig-tolerance", bad])
        assert "--ig-tolerance" in capsys.readouterr().err


def test_error_analysis_explains_false_hides_and_missed_positives(cue_model, tmp_path):
    from mmdetect.data.reader import read_snapshot
    from mmdetect.evaluate.predictions import PredictionRecord
    from mmdetect.evaluate.report import error_section, to_html
    from mmdetect.serving.error_analysis import error_analysis, select_errors

    snap = read_snapshot(cue_model[3], check_images=False)
    tax = ("counterfeit", "adult")
    recs = []
    for i, x in enumerate(snap.listings):  # every listing hidden for counterfeit, scores falling
        d = {"counterfeit": "hide" if i % 2 == 0 else "pass", "adult": "pass"}
        recs.append(PredictionRecord(x.id, {"counterfeit": 1 - i / 100, "adult": 0.1},
                                     x.labels, decisions=d, decision=d["counterfeit"]))  # fmt: skip
    chosen = select_errors(recs, tax, 2)
    fh = [r.id for r in recs if r.decisions["counterfeit"] == "hide" and not r.labels][:2]
    mp = [r.id for r in recs if r.decisions["counterfeit"] == "pass" and r.labels][::-1][:2]
    assert [x for k, c, x in chosen if k == "false_hide"] == fh
    assert {x for k, c, x in chosen if k == "missed_positive"} == set(mp)
    ea = error_analysis(cue_model[1], None, recs, snap, tax, tmp_path, 2)
    assert ea["method"] == ["occlusion"] and (tmp_path / "errors" / "explanations.html").is_file()
    missed = next(g for g in ea["groups"] if g["kind"] == "missed_positive")
    assert missed["top_words"][0]["word"] == CUE  # positives carry the cue word
    html = to_html([error_section(ea)], {})
    assert (
        f'href="errors/explanations.html#card-missed_positive:counterfeit:{missed["ids"][0]}"'
        in html
    )
    assert ea["skipped"] == {} and "skipped: 0 (none)" in html


def _two_class_errors(snap) -> list:
    """S0 is clean and hidden for both classes: one listing, two false-hide cards."""
    from mmdetect.evaluate.predictions import PredictionRecord

    recs = []
    for i, x in enumerate(snap.listings[:4]):
        d = {"counterfeit": "hide", "adult": "hide" if i == 0 else "pass"}
        recs.append(PredictionRecord(x.id, {"counterfeit": 0.9, "adult": 0.8 if i == 0 else 0.1},
                                     [] if i == 0 else x.labels, decisions=d,
                                     decision="hide"))  # fmt: skip
    return recs


def test_error_cards_of_one_listing_for_two_classes_have_their_own_anchors(cue_model, tmp_path):
    import re

    from mmdetect.data.reader import read_snapshot
    from mmdetect.serving.error_analysis import error_analysis

    snap = read_snapshot(cue_model[3], check_images=False)
    ea = error_analysis(cue_model[1], None, _two_class_errors(snap), snap,
                        ("counterfeit", "adult"), tmp_path, 1)  # fmt: skip
    groups = {(g["kind"], g["class"]): g for g in ea["groups"]}
    assert groups[("false_hide", "counterfeit")]["ids"] == ["S0"]
    assert groups[("false_hide", "adult")]["ids"] == ["S0"]
    page = (tmp_path / "errors" / "explanations.html").read_text()
    ids = re.findall(r'<section class="card" id="([^"]+)">', page)
    assert len(ids) == len(set(ids))  # no two cards share an HTML id
    for (_, c), g in groups.items():  # each link opens the card of its own class
        anchor = g["cards"][0].split("#", 1)[1]
        card = page[page.index(f'id="{anchor}"') :].split("</section>", 1)[0]
        assert card.count('class="card"') == 0 and f"S0: {c} " in card


def test_error_analysis_counts_a_failing_listing_and_goes_on(cue_model, tmp_path, monkeypatch):
    from mmdetect.data.reader import read_snapshot
    from mmdetect.evaluate.report import error_section, to_html
    from mmdetect.serving import error_analysis as errors

    real = errors.explain_listing

    def flaky(model, item, cls):
        if cls == "adult":
            raise RuntimeError("a listing that cannot be explained")
        return real(model, item, cls)

    monkeypatch.setattr(errors, "explain_listing", flaky)
    snap = read_snapshot(cue_model[3], check_images=False)
    ea = errors.error_analysis(cue_model[1], None, _two_class_errors(snap), snap,
                               ("counterfeit", "adult"), tmp_path, 1)  # fmt: skip
    assert ea["skipped"] == {"explain_error": 1}
    assert [(g["kind"], g["class"], g["ids"]) for g in ea["groups"]] == [
        ("false_hide", "counterfeit", ["S0"])
    ]
    assert "skipped: 1 (explain_error 1)" in to_html([error_section(ea)], {})


def test_http_score_returns_the_explanation_when_asked(cue_model):
    from mmdetect.serving.app import ServeConfig
    from tests.unit.test_http import Server

    row = {"id": "h1", "title": PLANTED_TITLE, "description": BENIGN_DESC, "price": 1000,
           "category": "bags", "images": ["images/p0.png"],
           "created_at": NOW.isoformat()}  # fmt: skip
    with Server(ServeConfig(bundle=cue_model[1], images_root=cue_model[3])) as s:
        status, _, plain = s.post(row)
        assert status == 200 and "explanation" not in plain
        status, _, doc = s.post({**row, "explain": True})
        assert status == 200 and doc["scores"] == plain["scores"]
        e = doc["explanation"]
        assert e["text"]["method"] == "occlusion" and _top_texts(e, 1) == [CUE]
        assert set(e["photos"][0]) == {"index", "delta", "delta_model"}  # no staged file name
        # the photo's delta is the score of the listing minus its score without that photo
        model, x = load_explainable(cue_model[1]), listing("h1", PLANTED_TITLE, BENIGN_DESC,
                                                           ("images/p0.png",), price=1000)  # fmt: skip

        def score(y: Listing) -> float:
            inputs = listing_inputs(model, Item(y, cue_model[3]))[0]
            return float(model.probs(inputs)[0, model.taxonomy.index(e["class"])])

        assert e["photos"][0]["delta_model"] == pytest.approx(
            score(x) - score(replace(x, images=())), abs=1e-5
        )
        assert e["score_model"] == pytest.approx(score(x), abs=1e-5)
        status, _, q = s.request("POST", "/v1/score?explain=true", json.dumps(row).encode())
        assert status == 200 and q["explanation"]["class"] == e["class"]
        status, _, batch = s.post({"listings": [row]})  # the batch form never explains
        assert status == 200 and "explanation" not in batch["results"][0]


def test_http_explanations_are_capped_and_honour_the_timeout(cue_model, monkeypatch):
    import threading

    from mmdetect.serving.app import ServeConfig
    from tests.unit.test_explain_service import _blocking
    from tests.unit.test_http import Server

    entered, release = _blocking(monkeypatch)
    row = {"id": "h2", "title": PLANTED_TITLE, "description": BENIGN_DESC, "price": 1000,
           "category": "bags", "images": [], "created_at": NOW.isoformat()}  # fmt: skip
    ask = {**row, "explain": True}
    cfg = ServeConfig(bundle=cue_model[1], images_root=cue_model[3], timeout_s=1.0)
    with Server(cfg) as s:
        assert s.post(row)[0] == 200  # warm: the first TorchScript call profiles
        first: list = []
        t = threading.Thread(target=lambda: first.append(s.post(ask)))
        t.start()
        assert entered.wait(10)
        status, headers, doc = s.post(ask)  # the one slot is taken
        retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
        assert status == 429 and "busy" in doc["error"] and int(retry) >= 1
        assert s.post(row)[0] == 200  # scoring alone is not limited by explanations
        t.join(10)
        status, headers, doc = first[0]
        assert status == 504 and "timeout" in doc["error"]
        assert s.post(ask)[0] == 429  # the abandoned thread still holds the slot
        release.set()
        deadline = time.monotonic() + 5
        while s.service.explain_gate.running and time.monotonic() < deadline:
            time.sleep(0.01)
        status, _, doc = s.post(ask)
        assert status == 200 and doc["explanation"] == {"id": "h2"}


def test_logit_units_are_complete_and_keep_the_cue_on_top(cue_model):
    from mmdetect.explain.attribution import to_units

    model = load_explainable(cue_model[0])
    x = listing("p", PLANTED_TITLE, BENIGN_DESC)
    budget = Budget(units="logit", ig_max_steps=256, ig_tolerance=1e-2)
    e = explain_listing(model, Item(x, cue_model[3]), "counterfeit", budget=budget)
    total = sum(s["attribution"] for s in e["text"]["spans"])
    logit = float(to_units(np.array([e["score_model"]]), "logit")[0])
    assert e["text"]["units"] == "logit"
    assert total == pytest.approx(logit - e["text"]["baseline_value"], abs=2e-2)
    assert _top_texts(e, 1) == [CUE] and top_spans(e, 1)[0]["attribution"] > 1.0


def test_empty_text_and_a_broken_photo_are_explained(cue_model, tmp_path):
    snap = _private_copy(cue_model[3], tmp_path)
    (snap / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    model = load_explainable(cue_model[1])
    x = listing("e", "", "", ("images/broken.png", "images/p1.png"))
    e = explain_listing(model, Item(x, snap), "counterfeit")
    assert e["text"]["spans"] == [] and e["text"].get("groups") == 0
    assert [p["path"] for p in e["photos"]] == ["images/p1.png"]  # the broken one is left out
    assert e["modalities"]["text"]["delta_model"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_onnx_bundle_occlusion_matches_torchscript(cue_model, tmp_path):
    from mmdetect.ops.export import ExportConfig, export_bundle

    onnx = tmp_path / "onnx"
    export_bundle(cue_model[0], onnx, ExportConfig(format="onnx", parity_listings=12,
                  batch_size=4), parity_snapshot=cue_model[3])  # fmt: skip
    x = Item(listing("o", PLANTED_TITLE, BENIGN_DESC, ("images/p0.png",)), cue_model[3])
    a = explain_listing(load_explainable(onnx), x, "counterfeit")
    b = explain_listing(load_explainable(cue_model[1]), x, "counterfeit")
    assert a["model_kind"] == "onnx" and a["text"]["method"] == "occlusion"
    for sa, sb in zip(a["text"]["spans"], b["text"]["spans"], strict=True):
        assert sa["attribution"] == pytest.approx(sb["attribution"], abs=1e-4)
    assert a["modalities"]["photos"]["delta"] == pytest.approx(
        b["modalities"]["photos"]["delta"], abs=1e-4
    )


@pytest.mark.slow  # two full evaluate runs (~6 s); error_analysis itself is tested above
def test_evaluate_explain_errors_flag_adds_the_section(cue_model, tmp_path, capsys):
    from mmdetect.cli.operating import evaluate_main

    out = tmp_path / "eval"
    argv = ["--model", str(cue_model[1]), "--snapshot", str(cue_model[3]), "--num-workers", "0",
            "--out", str(out)]  # fmt: skip
    assert evaluate_main([*argv, "--explain-errors", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["error_analysis"]["per_class_limit"] == 1
    assert "Errors explained" in (out / "report.html").read_text()
    assert (out / "errors" / "explanations.jsonl").is_file()
    assert evaluate_main([*argv[:-1], str(tmp_path / "plain")]) == 0  # default: no analysis
    assert "error_analysis" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
