"""Explanations reviewers can use: which words, photos and modalities drove a decision
(docs/explain.md). `mmdetect explain` (cli.py), the evaluate error analysis (errors.py) and the
HTTP service's `explain=true` (service.py) all call `core.explain_listing`."""
