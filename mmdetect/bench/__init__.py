"""Benchmarks printed as ratios measured side by side in one run (scripts/bench.py).

Kept import-light: `python -m mmdetect.bench.gpu run` must work where MeCab is not installed.
"""
