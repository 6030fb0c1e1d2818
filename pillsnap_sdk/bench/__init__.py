"""``pillsnap bench``: latency of the SDK against the onnxruntime floor on this machine.

Why ratios: absolute milliseconds depend on the machine and on whatever else it runs. The
*floor* -- bare ``onnxruntime`` ``session.run`` on pre-made input tensors for the same
models -- is measured in the same process, interleaved round by round with the SDK, so
load that slows one slows the other. ``SDK / floor`` is what the SDK adds (decode,
letterbox, crops, Python) and is stable where milliseconds are not; the CI gate compares
that ratio with a committed baseline. This package holds what a kiosk vendor runs on
their own box (stages, floor, device profiles, throughput, cold start) with onnxruntime
only; peers (Ultralytics, timm), precision variants and the regression gate live in the
repository's ``benchmarks`` package, which builds on :class:`~.run.BenchSession`.

Layout, one job per module:

- :mod:`.timing`      rounds, percentiles, interleaving, paired ratios
- :mod:`.scenes`      the two photos (one pill, many pills) and the bundle as seen by each
- :mod:`.floor`       the bare-onnxruntime floor
- :mod:`.floorsearch` the fastest bare configuration on this machine: the bench's floor
- :mod:`.bigphoto`    a 12 MP JPEG of the multi-pill scene against the photo itself
- :mod:`.stages`      the SDK against the floors on one photo, with its stage breakdown
- :mod:`.throughput`  images per second through one Identifier
- :mod:`.coldstart`   fresh-process cold start and peak RSS
- :mod:`.profiles`    device profiles (``devices.yaml`` beside it) and device detection
- :mod:`.report`      the run's record and its table
- :mod:`.run`         one run: which measurements, in which order
- :mod:`.cli`         ``pillsnap bench`` / ``python -m pillsnap_sdk.bench`` once parsed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import BenchReport, format_table
    from .run import run_bench

__all__ = ["BenchReport", "format_table", "run_bench"]

_LAZY = {"BenchReport": ".report", "format_table": ".report", "run_bench": ".run"}


def __getattr__(name: str) -> Any:
    """Import the measuring modules on first use, not with the package.

    ``from pillsnap_sdk.bench import run_bench`` should cost only what it uses.
    """
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
