"""Scoring a bundle: Predictor, `mmdetect predict`, the HTTP service (batching, bundle switching),
scoring and explaining a checkpoint or bundle. Imports training, explain, artifacts and below.
"""
