"""Benchmarks printed as ratios measured side by side in one run (scripts/bench.py); import-light
(`python -m mmdetect.bench.gpu run` works without MeCab). Imports ops, serving and below.
"""
