"""Bundles installed as Python packages (entry-point group ``pillsnap.bundles``).

Why packages: ``pip install pillsnap`` alone cannot name a pill, and a bundle that lives
only in the source checkout does not travel. ``pillsnap-train bundle wheel`` turns a
verified bundle into a wheel (the pattern spaCy uses for its models); installing it
registers ``NAME = module:bundle_path`` in this group, and ``bundle_path()`` returns the
bundle directory inside the installed package. Nothing is fetched and nothing is looked
up by file-system guessing: only what pip installed is seen.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from .errors import BundleError

__all__ = ["ENTRY_POINT_GROUP", "installed_bundle_names", "installed_bundle_path"]

ENTRY_POINT_GROUP = "pillsnap.bundles"


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def installed_bundle_names() -> list[str]:
    """Names of the bundle packages installed in this environment, sorted."""
    return sorted({ep.name for ep in _entry_points()})


def installed_bundle_path(name: str) -> Path:
    """The bundle directory of the installed bundle package registered as ``name``.

    Raises :class:`BundleError` naming what is installed when ``name`` is not, when two
    packages claim the same name, or when the package is broken.
    """
    found = [ep for ep in _entry_points() if ep.name == name]
    if not found:
        have = ", ".join(installed_bundle_names()) or "none"
        raise BundleError(
            f"no installed bundle package named {name!r} (installed: {have}); "
            "pip install the bundle's wheel (built with `pillsnap-train bundle wheel`), "
            "or pass a bundle directory/zip, or a URL with its sha256"
        )
    if len({ep.value for ep in found}) > 1:
        dists = ", ".join(sorted(ep.value for ep in found))
        raise BundleError(
            f"several installed packages register bundle {name!r} ({dists}); uninstall all but one"
        )
    ep = found[0]
    try:
        getter = ep.load()
        path = Path(getter())
    except Exception as exc:  # a broken third-party package: any import-time error
        raise BundleError(
            f"installed bundle package {name!r} ({ep.value}) cannot be loaded: {exc}; reinstall it"
        ) from exc
    if not path.is_dir():
        raise BundleError(
            f"installed bundle package {name!r} points to {path}, which is not a directory; "
            "reinstall it"
        )
    return path
