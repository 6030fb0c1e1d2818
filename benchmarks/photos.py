"""Which photos the repository's benchmarks time: the installed bench's choice, plus the
development machine's training photos as the default.

Why here and not in ``pillsnap_sdk.bench.scenes``: installed code must not know paths of
the machine it was developed on. ``pillsnap bench`` times ``--images`` /
``$PILLSNAP_BENCH_IMAGES`` or synthetic photos; the repository's benchmarks (``python -m
benchmarks``, ``pytest benchmarks/``, ``explore.py``), whose baseline was recorded on the
pushin-pill training photos, fall back to those when neither is given and they exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pillsnap_sdk.bench.scenes import Scene, find_scenes

__all__ = ["DEV_IMAGES", "bench_scenes"]

#: The pushin-pill training photos on the development machine (YOLO layout).
DEV_IMAGES: Final = Path("/work/shared/data/pushin-pill-train/images")


def bench_scenes(images: Path | None = None) -> list[Scene]:
    """:func:`~pillsnap_sdk.bench.scenes.find_scenes` with :data:`DEV_IMAGES` as the last
    folder tried before synthetic photos."""
    if images is None and not os.environ.get("PILLSNAP_BENCH_IMAGES"):
        images = DEV_IMAGES
    return find_scenes(images)
