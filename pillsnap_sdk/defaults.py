"""Which bundle ``pillsnap identify photo.jpg`` uses when no ``--bundle`` is given.

Order: ``$PILLSNAP_BUNDLE`` (a path, or the name of an installed bundle package); then,
only when running from the source checkout, the bundle named in its ``models/DEFAULT``;
then the one installed bundle package (entry-point group ``pillsnap.bundles``).

The checkout test matters: an installed wheel lives in ``site-packages``, whose parent may
hold anything, so ``models/`` next to the package is only trusted when the package's
parent is the pillsnap source tree (its ``pyproject.toml`` names the project).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BundleError
from .installed import installed_bundle_names, installed_bundle_path

__all__ = ["default_bundle_path", "resolve_bundle"]

_ROOT = Path(__file__).resolve().parent.parent


def _checkout_models_dir(root: Path = _ROOT) -> Path | None:
    """``root/models`` when ``root`` is the pillsnap source checkout, else None."""
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if 'name = "pillsnap"' not in text:
        return None
    return root / "models"


def resolve_bundle(spec: str | Path) -> Path:
    """A bundle path for ``--bundle``/``$PILLSNAP_BUNDLE``: an existing path, else the
    name of an installed bundle package."""
    path = Path(spec)
    if path.exists() or isinstance(spec, Path) or os.sep in str(spec) or "/" in str(spec):
        return path
    if str(spec) in installed_bundle_names():
        return installed_bundle_path(str(spec))
    return path  # not a package either: the loader says "bundle not found: ..."


def default_bundle_path(root: Path = _ROOT) -> Path:
    env = os.environ.get("PILLSNAP_BUNDLE")
    if env:
        return resolve_bundle(env)
    models = _checkout_models_dir(root)
    if models is not None:
        pointer = models / "DEFAULT"
        if pointer.is_file():
            name = pointer.read_text(encoding="utf-8").strip()
            if name:
                return models / name
    names = installed_bundle_names()
    if len(names) == 1:
        return installed_bundle_path(names[0])
    if len(names) > 1:
        raise BundleError(
            f"several bundle packages are installed ({', '.join(names)}); pick one with "
            "--bundle NAME or PILLSNAP_BUNDLE=NAME"
        )
    raise BundleError(
        "no bundle found: $PILLSNAP_BUNDLE is unset, this is not a source checkout with "
        "models/DEFAULT, and no bundle package is installed; pip install a bundle wheel "
        "(e.g. pillsnap-bundle-pushin-pill-edge), or pass --bundle PATH"
    )
