"""Lightning shell around the pure-torch model: DetectorModule, DetectorDataModule, optimiser
groups, checkpoint reading and loading, `mmdetect train`. Imports data, models, policy, artifacts.
"""
