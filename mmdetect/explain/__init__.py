"""Explanations of one decision (words, photos, modalities) over any model or predictor
(docs/explain.md). Imports models, policy, data, common; no bundle code, no serving.
"""
