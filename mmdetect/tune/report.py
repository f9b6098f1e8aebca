"""What `mmdetect tune` leaves in --out: best.yaml, trials.csv, PNG plots and summary.html.

Every file is written atomically from the whole study (all processes' trials), so the process
that finishes last leaves the complete picture and a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mmdetect.common.outputs import atomic_output, atomic_write_text
from mmdetect.tune.space import Space
from mmdetect.tune.trial import TuneRun, overlay_text


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front, best first objective first."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: -t.values[0])


def write_best(run: TuneRun, study: optuna.Study) -> Path | None:
    """best.yaml: the overlay of the best trial (the front's best first objective when two),
    headed by the exact fit command of that trial: its own base configs and fit arguments, as
    recorded by the process that ran it. With no completed trial, a best.yaml left by an earlier
    run is removed (it would name a trial this study does not have); returns None."""
    path = run.out / "best.yaml"
    best = best_trials(study)
    if not best:
        path.unlink(missing_ok=True)  # one atomic unlink: the old file or none, never half
        return None
    t = best[0]
    values = ", ".join(f"{o}={v:.4g}" for o, v in zip(run.space.objectives, t.values, strict=True))
    note = f"best of study {study.study_name}: trial {t.number} ({values})"
    if len(best) > 1:
        note += "; Pareto front: trials " + ", ".join(str(b.number) for b in best)
    configs = t.user_attrs.get("configs", list(run.configs))
    fit_args = t.user_attrs.get("fit_args", [])
    atomic_write_text(path, overlay_text(configs, fit_args, t.user_attrs["overlay"], note, path))
    return path


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def trial_rows(space: Space, study: optuna.Study) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per trial: number, state, objectives, params (labels), seconds, dir, error."""
    keys = [p.key for p in space.params]
    head = ["number", "state", *space.objectives, *keys, "seconds", "pruned_at_epoch",
            "host", "run_dir", "error"]  # fmt: skip
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for o, v in zip(space.objectives, t.values or [None] * len(space.objectives), strict=True):
            row[o] = v
        row.update({k: _cell(t.params.get(k, "")) for k in keys})
        seconds = t.duration.total_seconds() if t.duration else None
        row.update(
            seconds=None if seconds is None else round(seconds, 1),
            pruned_at_epoch=t.user_attrs.get("pruned_at_epoch"),
            host=t.user_attrs.get("host"), run_dir=t.user_attrs.get("run_dir"),
            error=t.user_attrs.get("error"),
        )  # fmt: skip
        rows.append(row)
    return head, rows


def write_csv(path: Path, head: list[str], rows: list[dict[str, Any]]) -> None:
    with atomic_output(path) as fh:
        w = csv.DictWriter(fh, fieldnames=head, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _plots(space: Space, study: optuna.Study) -> dict[str, Any]:
    """name -> a function drawing it on the study (matplotlib Axes)."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as vm

    first = space.objectives[0]
    # fANOVA with 16 trees (Optuna's default 64 takes seconds more for a few dozen trials),
    # seeded so the same study draws the same bars
    fanova = FanovaImportanceEvaluator(n_trees=16, seed=0)
    plots = {
        "history": lambda: vm.plot_optimization_history(
            study, target=lambda t: t.values[0], target_name=first
        ),
        "importances": lambda: vm.plot_param_importances(
            study, evaluator=fanova, target=lambda t: t.values[0], target_name=first
        ),
        "curves": lambda: vm.plot_intermediate_values(study),
    }
    if len(space.objectives) > 1:
        plots["pareto"] = lambda: vm.plot_pareto_front(study, target_names=list(space.objectives))
    if len(space.objectives) > 1:
        del plots["curves"]  # no pruning, no intermediate values with two objectives
    return plots


def write_plots(space: Space, study: optuna.Study, out: Path) -> dict[str, str]:
    """PNG per plot; name -> file name, or -> 'not drawn: why' (e.g. too few trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = {}
    for name, draw in _plots(space, study).items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)
            with atomic_output(out / f"{name}.png", binary=True) as fh:
                fh.write(buf.getvalue())
            done[name] = f"{name}.png"
        except Exception as exc:  # optuna refuses some plots on too few trials: say so
            plt.close("all")
            done[name] = f"not drawn: {type(exc).__name__}: {exc}"
    return done


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def summary_html(run: TuneRun, study: optuna.Study, head, rows, plots, removed=False) -> str:
    states = {s.name: 0 for s in TrialState}
    for r in rows:
        states[r["state"]] += 1
    best = best_trials(study)
    best_line = (
        "no completed trial yet" + ("; the best.yaml of an earlier run was removed" if removed else "")
        if not best
        else "best: " + "; ".join(
            f"trial {t.number} " + ", ".join(f"{o}={v:.4g}" for o, v in
                                             zip(run.space.objectives, t.values, strict=True))
            for t in best)
    )  # fmt: skip
    figs = "".join(
        f"<h2>{html.escape(n)}</h2>"
        + (f'<img src="{html.escape(f)}">' if f.endswith(".png") else f"<p>{html.escape(f)}</p>")
        for n, f in plots.items()
    )
    table = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    for r in rows:
        table += "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(h)))}</td>" for h in head) + "</tr>"
    counts = ", ".join(f"{k.lower()} {v}" for k, v in states.items() if v)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>tune {html.escape(study.study_name)}"
        "</title><style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;"
        "font-size:12px}table{border-collapse:collapse}img{max-width:720px}</style></head><body>"
        f"<h1>mmdetect tune: study {html.escape(study.study_name)}</h1>"
        f"<p>base: {html.escape(' '.join(run.configs))}; space: {html.escape(str(run.space.path))};"
        f" storage: {html.escape(run.storage)}</p><p>trials: {counts}. {html.escape(best_line)}."
        " best.yaml is the best trial's overlay (selected on the validation split: judge it on"
        " data not used to select it).</p>"
        f"{figs}<h2>trials</h2><table>{table}</table></body></html>\n"
    )


def write_outputs(run: TuneRun, study: optuna.Study) -> dict[str, Any]:
    """Write everything; returns what was written (for the console)."""
    run.out.mkdir(parents=True, exist_ok=True)
    head, rows = trial_rows(run.space, study)
    write_csv(run.out / "trials.csv", head, rows)
    plots = write_plots(run.space, study, run.out)
    stale = (run.out / "best.yaml").exists()
    best = write_best(run, study)
    removed = stale and best is None
    html_text = summary_html(run, study, head, rows, plots, removed)
    atomic_write_text(run.out / "summary.html", html_text)
    return {"best": best, "trials": len(rows), "plots": plots, "best_removed": removed}
