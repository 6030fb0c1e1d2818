"""The SDK's own semantic version; bundles declare the minimum they need."""

from __future__ import annotations

__version__ = "0.10.0"


def parse_semver(text: str) -> tuple[int, int, int]:
    """Parse ``MAJOR.MINOR.PATCH`` (pre-release/build suffixes ignored) for comparisons."""
    core = text.strip().split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a semantic version (MAJOR.MINOR.PATCH): {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])
