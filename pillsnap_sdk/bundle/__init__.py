"""Model bundles: the manifest schema and the verified loader."""

from .loader import Bundle, load_bundle
from .manifest import BundleManifest, LabelsFile, Thresholds

__all__ = ["Bundle", "BundleManifest", "LabelsFile", "Thresholds", "load_bundle"]
