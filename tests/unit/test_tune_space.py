"""The search space file of `mmdetect tune`: every shipped file, the errors, sampling, overlays."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from mmdetect.tune.draw import overlay, probes, suggest, values_of
from mmdetect.tune.space import SpaceError, load_space

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "configs/tune").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_tune_space_loads(path: Path) -> None:
    space = load_space(path)
    assert path.read_text(encoding="utf-8").startswith("# mmdetect tune --config ")
    assert space.params and space.objectives[0] in ("val_macro_ap", "operating_recall")
    # every probe uses each choice of each categorical entry at least once
    drawn = probes(space)
    for p in space.params:
        if p.choices:
            assert {str(d[p.key]) for d in drawn} >= {str(v) for v in p.choices.values()}


def test_tiny_space_values() -> None:
    space = load_space(REPO / "configs/tune/tiny.yaml")
    assert space.directions == ["maximize"]
    assert space.sampler == {"name": "tpe", "seed": 0}
    by = {p.key: p for p in space.params}
    assert by["model.lr"].log and by["model.lr"].low == 3.0e-4
    assert by["model.focal_gamma"].when == {"model.loss": ["focal"]}
    assert load_space(REPO / "configs/tune/operating_latency.yaml").directions == [
        "maximize",
        "minimize",
    ]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("params:\n  model.lr: {type: float, low: 0.1, high: 0.01}\n", ":2: params.model.lr.low: low (0.1) must be < high"),
        ("params:\n  model.lr: {type: floaty, low: 1, high: 2}\n", ":2: params.model.lr.type: must be one of"),
        ("params:\n  model.lr: {type: float, low: 0, high: 1, log: true}\n", "log scale needs low > 0"),
        ("params:\n  model.lr: {type: float, low: 1.0e-3, high: 1, log: true, step: 0.1}\n", "cannot go with log"),
        ("params:\n  a.b: {type: int, low: 1, high: 2.5}\n", "integer low, high and step"),
        ("params:\n  a.b: {type: float, high: 2}\n", "needs `low`"),
        ("params:\n  a.b: {type: categorical, choices: []}\n", "non-empty list or mapping"),
        ("params:\n  a.b: {type: categorical, choices: [x], low: 1}\n", "takes only `choices`"),
        ("params:\n  a.b: {type: categorical, choices: [[1, 2]]}\n", "is not a scalar"),
        ("params:\n  a.b: {type: float, low: 1, high: 2, bogus: 1}\n", "params.a.b.bogus: unknown field"),
        ("params:\n  a.b: {type: float, low: 1, high: 2, when: {x.y: 1}}\n", "'x.y' is not a searched key listed above"),
        ("params:\n  a: {type: categorical, choices: [p, q]}\n  b: {type: int, low: 1, high: 2, when: {a: r}}\n", ":3: params.b.when: 'r' is not a choice of a"),
        ("objectives: [latency_ms]\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":1: objectives: must be one of"),
        ("sampler: cmaes\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":1: sampler.name: must be one of"),
        ("fixed: {a.b: 1}\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", "fixed.a.b: is also a searched key"),
        ("paramz: {}\n", ":1: paramz: unknown key"),
        ("params: {}\n", "params: must map dotted"),
        ("params: [\n", "not valid YAML"),
        ("latency: {listings: 8, warmup: 2}\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":1: latency.warmup: unknown field; fields: listings"),
        ("latency: 8\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":1: latency: must be a mapping"),
        ("monitor: val/loss\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":1: monitor: must be val/macro_ap or val/ap_CLASS"),
        ("objectives: [operating_recall]\npruner: median\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":2: pruner: pruning needs the single objective val_macro_ap"),
        ("objectives: [val_macro_ap, latency_ms]\npruner: {name: hyperband}\nparams:\n  a.b: {type: int, low: 1, high: 2}\n", ":2: pruner: pruning needs"),
    ],
)  # fmt: skip
def test_space_errors_name_file_line_and_key(tmp_path: Path, text: str, expect: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpaceError) as err:
        load_space(path)
    assert str(path) in str(err.value) and expect in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "nope.yaml")


def test_conditional_entries_and_labelled_choices(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "params:\n"
        "  model.loss: {type: categorical, choices: [bce, focal]}\n"
        "  model.focal_gamma: {type: float, low: 1, high: 3, step: 0.5, when: {model.loss: focal}}\n"
        "  model.fusion:\n    type: categorical\n    choices:\n      concat: concat\n"
        "      xattn: {class_path: m.X, init_args: {num_heads: 2}}\n"
        "  model.text.num_layers: {type: int, low: 1, high: 4, step: 1}\n",
    )
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = {"bce": 0, "focal": 0}
    for _ in range(30):
        trial = study.ask()
        drawn = suggest(space, trial)
        seen[drawn["model.loss"]] += 1
        assert ("model.focal_gamma" in drawn) == (drawn["model.loss"] == "focal")
        if "model.focal_gamma" in drawn:
            assert drawn["model.focal_gamma"] in (1.0, 1.5, 2.0, 2.5, 3.0)
        assert 1 <= drawn["model.text.num_layers"] <= 4
        values = values_of(space, drawn)
        if drawn["model.fusion"] == "xattn":  # the label is recorded, the value is written
            assert values["model.fusion"] == {"class_path": "m.X", "init_args": {"num_heads": 2}}
        study.tell(trial, 0.0)
    assert seen["bce"] and seen["focal"]


def test_overlay_nests_dotted_keys() -> None:
    doc = overlay({"model.lr": 0.01, "model.text.num_layers": 3, "data.batch_size": 16})
    assert doc == {"model": {"lr": 0.01, "text": {"num_layers": 3}}, "data": {"batch_size": 16}}
    assert yaml.safe_load(yaml.safe_dump(doc)) == doc
    with pytest.raises(SpaceError, match="both a value and a section"):
        overlay({"model.fusion": "concat", "model.fusion.init_args": {}})


def test_the_cli_refuses_a_bad_space_and_a_missing_budget(tmp_path: Path, capsys) -> None:
    from mmdetect.cli.commands import main

    path = _write(tmp_path, "params:\n  model.lr: {type: float, low: 1, high: 0.5}\n")
    argv = ["tune", "--config", "configs/train/tiny.yaml", "--space", str(path),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "give --n-trials, --timeout or both" in capsys.readouterr().err
    assert main([*argv, "--n-trials", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:2: params.model.lr.low: low (1) must be < high (0.5)"
    assert not (tmp_path / "out").exists()  # nothing written for a refused space


def test_pruning_is_on_by_default_only_for_val_macro_ap(tmp_path: Path) -> None:
    """A pruned trial is recorded with its last validation AP: sound only for that objective."""
    body = "params:\n  a.b: {type: int, low: 1, high: 2}\n"
    assert load_space(_write(tmp_path, body)).pruner == {"name": "median"}
    space = load_space(_write(tmp_path, "objectives: [operating_recall]\n" + body))
    assert space.pruner == {"name": "none"}
    space = load_space(_write(tmp_path, "monitor: val/ap_weapons\npruner: median\n" + body))
    assert space.monitor == "val/ap_weapons" and space.pruner == {"name": "median"}
