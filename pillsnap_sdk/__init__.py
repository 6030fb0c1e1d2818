"""pillsnap_sdk: identify pills in photos with a verified, versioned ONNX model bundle.

>>> from pillsnap_sdk import Identifier
>>> idf = Identifier.from_pretrained("pushin-pill-edge")            # doctest: +SKIP
>>> idf = Identifier.from_bundle("models/pushin-pill-edge")       # doctest: +SKIP
>>> res = idf.identify("examples/multi_pills.jpg")                  # doctest: +SKIP
>>> [(p.label.name if p.label else "unknown") for p in res.pills]  # doctest: +SKIP

The runtime depends on numpy, opencv-python-headless, pillow, pydantic and onnxruntime
only; it never imports torch.
"""

from .errors import (
    BundleError,
    BundleIntegrityError,
    InvalidArgumentError,
    InvalidImageError,
    MissingDependencyError,
    PillsnapError,
    ProviderUnavailableError,
    UnsupportedBundleError,
)
from .pipeline import Identifier, Mode, Runners
from .results import BBox, BundleRef, Candidate, IdentifyResult, PillResult
from .stages import Detections, Runner
from .version import __version__

__all__ = [
    "BBox",
    "BundleError",
    "BundleIntegrityError",
    "BundleRef",
    "Candidate",
    "Detections",
    "Identifier",
    "IdentifyResult",
    "InvalidArgumentError",
    "InvalidImageError",
    "MissingDependencyError",
    "Mode",
    "PillResult",
    "PillsnapError",
    "ProviderUnavailableError",
    "Runner",
    "Runners",
    "UnsupportedBundleError",
    "__version__",
]
