"""Choosing a precision variant of a bundle's classifier (``precision="int8"``).

Why here and not in the pipeline: a variant is just another verified file of the same
bundle, fed exactly like the fp32 model (same input, preprocessing and logits), so
selecting one is swapping the classifier's :class:`ModelSpec` before any session is
built. Everything else (thresholds, labels, detector) stays the bundle's. The variant's
bytes were checked against the manifest's sha256 when the bundle was loaded, like every
other file: a tampered variant never reaches onnxruntime.
"""

from __future__ import annotations

import dataclasses
import os

from ..errors import InvalidArgumentError
from .loader import Bundle

__all__ = ["PRECISION_ENV", "available_precisions", "precision_from_env", "select_precision"]

#: Environment variable read when no precision is given (worker processes, ``pillsnap
#: serve``): one setting reaches every Identifier a deployment builds.
PRECISION_ENV = "PILLSNAP_PRECISION"


def precision_from_env() -> str | None:
    """``$PILLSNAP_PRECISION`` (stripped), or None when unset or empty."""
    value = os.environ.get(PRECISION_ENV, "").strip()
    return value or None


def available_precisions(bundle: Bundle) -> list[str]:
    """The classifier precisions this bundle ships: its own first, then its variants."""
    m = bundle.manifest
    out: list[str] = [m.classifier.precision]
    out += [v.precision for v in m.variants if v.role == "classifier" and v.precision not in out]
    return out


def select_precision(bundle: Bundle, precision: str | None) -> Bundle:
    """``bundle`` with its ``precision`` classifier variant as the classifier (in memory).

    ``None`` means ``$PILLSNAP_PRECISION``, else the bundle's own classifier; that or the
    classifier's own precision returns ``bundle`` unchanged. A precision
    the bundle does not ship is an :class:`InvalidArgumentError` naming the ones it has
    (never a silent fallback to fp32: the caller asked for other speed and accuracy).
    """
    source = ""
    if precision is None:
        precision, source = precision_from_env(), f" (from ${PRECISION_ENV})"
        if precision is None:
            return bundle
    m = bundle.manifest
    if not isinstance(precision, str):
        raise InvalidArgumentError(
            f"precision must be a string such as 'int8', got {type(precision).__name__}"
        )
    if precision == m.classifier.precision:
        return bundle
    found = [v for v in m.variants if v.role == "classifier" and v.precision == precision]
    if not found:
        have = ", ".join(available_precisions(bundle))
        raise InvalidArgumentError(
            f"bundle {m.name} {m.version} has no {precision!r:.40} classifier{source}; "
            f"available: {have}"
        )
    variant = found[0]
    spec = m.classifier.model_copy(
        update={"file": variant.file, "sha256": variant.sha256, "precision": variant.precision}
    )
    return dataclasses.replace(bundle, manifest=m.model_copy(update={"classifier": spec}))
