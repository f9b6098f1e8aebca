"""`mmdetect tune`: Optuna studies over `mmdetect fit` settings (docs/training.md, "Tuning").

space.py (the search space file) → draw.py (a trial's values, its overlay, the probes) →
trial.py (one trial: an overlay and a fit subprocess) → pruning.py (the Lightning callback inside
that fit) → measure.py (objectives measured after it) → study.py (storage, sharing, resumption)
→ report.py (best.yaml, trials.csv, plots) → cli.py.

The package sits at the CLI level, above every stage: it drives `mmdetect fit`, export and
scoring as subprocesses (measure.py is such a subprocess entry point, which is why it may import
export, serve and scoring), and no stage imports it.
"""
