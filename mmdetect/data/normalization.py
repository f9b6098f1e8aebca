"""ImageNet photo normalisation: the default of from-scratch backbones, and of bundles written
before preprocess.json carried a backbone's own values. Here, on the data side, so that the
photo pipeline (data/) and the models (models/) both read it without data importing models."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
