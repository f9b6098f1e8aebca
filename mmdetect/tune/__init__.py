"""`mmdetect tune`: Optuna studies over `mmdetect fit` settings (docs/training.md, "Tuning").
A leaf: imports the stages it drives (training, ops export, serving); only cli imports it.
"""
