"""Typed errors: every failure the SDK raises is a :class:`PillsnapError`.

Callers embed the SDK in servers and kiosks; they need to tell "the photo is bad" (tell the
user to retake it) from "the model bundle is bad" (page the operator) without parsing
messages. Each message says what happened *and* what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "BundleIntegrityError",
    "InvalidArgumentError",
    "InvalidImageError",
    "MissingDependencyError",
    "PillsnapError",
    "ProviderUnavailableError",
    "UnsupportedBundleError",
]


class PillsnapError(Exception):
    """Base class of every error raised on purpose by pillsnap_sdk."""


class InvalidImageError(PillsnapError, ValueError):
    """The input could not be turned into an RGB photo (corrupt, too large, wrong type...)."""


class BundleError(PillsnapError):
    """The model bundle is malformed: missing manifest, bad JSON, model/manifest mismatch."""


class BundleIntegrityError(BundleError):
    """A bundle file does not match its recorded sha256, or the file list differs.

    Raised before any ONNX session is created: a tampered bundle never runs.
    """


class UnsupportedBundleError(BundleError):
    """The bundle needs a newer SDK (schema version or ``min_sdk_version``)."""


class ProviderUnavailableError(PillsnapError):
    """A requested onnxruntime execution provider is not active (strict mode only)."""


class InvalidArgumentError(PillsnapError, ValueError):
    """An argument is out of range (unknown mode, top_k < 1, combo without a detector...)."""


class MissingDependencyError(PillsnapError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""
