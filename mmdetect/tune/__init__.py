"""`mmdetect tune`: Optuna studies over `mmdetect fit` settings (docs/training.md, "Tuning").

space.py (the search space file) → trial.py (one trial: an overlay and a fit subprocess) →
pruning.py (the Lightning callback inside that fit) → measure.py (objectives measured after it)
→ study.py (storage, sharing, resumption) → report.py (best.yaml, trials.csv, plots) → cli.py.
"""
