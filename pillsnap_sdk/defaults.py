"""Where the default bundle lives, so ``pillsnap identify photo.jpg`` works out of the box.

Order: ``$PILLSNAP_BUNDLE``, then the bundle named in ``models/DEFAULT`` of the source
checkout (the repository ships its default bundle in ``models/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BundleError

__all__ = ["default_bundle_path"]

_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def default_bundle_path() -> Path:
    env = os.environ.get("PILLSNAP_BUNDLE")
    if env:
        return Path(env)
    pointer = _MODELS_DIR / "DEFAULT"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if name:
            return _MODELS_DIR / name
    raise BundleError(
        "no default bundle found (looked for $PILLSNAP_BUNDLE and models/DEFAULT in the "
        "source checkout); pass --bundle PATH or set PILLSNAP_BUNDLE"
    )
