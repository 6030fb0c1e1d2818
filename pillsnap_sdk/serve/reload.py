"""The bundle being served, and hot reload: verify + load + warm beside it, then swap.

A request takes :attr:`BundleHolder.current` once and uses that :class:`ServedBundle` to the
end, so a swap never changes a bundle under a running request: in-flight requests finish
on the old bundle, which is freed when the last of them drops it. The swap is one
attribute assignment (atomic under the GIL). Any failure while verifying, loading or
warming leaves the old bundle in place; reloads run one at a time.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import BundleError, PillsnapError
from ..pipeline import Identifier, Mode

__all__ = ["BundleHolder", "ServedBundle", "load_served", "warmup_photos"]


@dataclass(frozen=True, slots=True)
class ServedBundle:
    """A verified, warmed identifier and where it came from."""

    identifier: Identifier
    path: Path

    def info(self) -> dict[str, Any]:
        """The ``GET /v1/bundle`` body: what is being served, without internals."""
        m = self.identifier.manifest
        models: dict[str, Any] = {}
        for role, spec in (("classifier", m.classifier), ("detector", m.detector)):
            if spec is not None:
                models[role] = {
                    "file": spec.file,
                    "sha256": spec.sha256,
                    "precision": spec.precision,
                    "input_shape": spec.input_shape,
                }
        return {
            "name": m.name,
            "version": m.version,
            "manifest_sha256": m.manifest_sha256,
            "created_at": m.created_at.isoformat(),
            "models": models,
            "classes": len(self.identifier.labels.classes),
            "thresholds": m.thresholds.model_dump(),
        }


def warmup_photos() -> list[tuple[str, npt.NDArray[np.uint8], Mode]]:
    """The photos a bundle must identify before it is served, with the mode each runs in.

    A blank photo in ``auto`` runs the detector, then the classifier on the whole photo
    (nothing is detected). It alone let through a classifier whose outputs blow up only on
    some inputs (logits x 1e38: every later request failed), so two more fixed photos run:
    a white round "pill" on a blue-grey background (``auto``: the default bundle's detector
    finds it, so boxes, crops and the crop classifier run) and noise classified whole
    (``single``: texture for certain). More inputs make such a bundle likelier to be
    caught; no fixed set of photos can prove it never fails.
    """
    h, w = 480, 640
    blank = np.full((h, w, 3), 200, dtype=np.uint8)
    yy, xx = np.ogrid[:h, :w]
    pill = np.empty((h, w, 3), dtype=np.uint8)
    pill[:] = (90, 110, 140)
    pill[(xx - w // 2) ** 2 + (yy - h // 2) ** 2 <= 40**2] = (240, 240, 235)
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [
        ("blank photo", blank, "auto"),
        ("pill photo", pill, "auto"),
        ("noise photo", noise, "single"),
    ]


def load_served(path: Path, *, threads: int | None = None) -> ServedBundle:
    """Verify and load ``path``, then run the warm-up photos so the first request is warm.

    Raises :class:`BundleError` (with the reason) for any failure, including a warm-up
    that raises an SDK error (e.g. non-finite classifier output): a bundle that cannot
    identify these photos must not be swapped in. (Other exceptions, e.g. a result the
    SDK's model refuses, become a :class:`BundleError` in :meth:`BundleHolder.reload`.)
    """
    idf = Identifier.from_bundle(path, intra_op_threads=threads)
    for what, photo, mode in warmup_photos():
        try:
            idf.identify(photo, mode=mode, top_k=1)
        except PillsnapError as exc:
            raise BundleError(f"{path}: warm-up on a {what} failed: {exc}") from exc
    return ServedBundle(idf, Path(path))


class BundleHolder:
    """Holds the served bundle; :meth:`reload` replaces it only with a working one."""

    def __init__(self, served: ServedBundle, *, threads: int | None = None) -> None:
        self._current = served
        self._threads = threads
        self._lock = asyncio.Lock()
        self._swap_lock = threading.Lock()

    @property
    def current(self) -> ServedBundle:
        return self._current

    async def reload(self, path: Path | None) -> ServedBundle:
        """Load ``path`` (default: the path served now) beside the current bundle and swap.

        Raises :class:`BundleError` when the new bundle is refused; the old one keeps serving.
        """
        async with self._lock:
            target = Path(path) if path is not None else self._current.path
            try:
                fresh = await asyncio.to_thread(load_served, target, threads=self._threads)
            except BundleError:
                raise
            except Exception as exc:  # anything else from ORT or the OS: refuse, keep serving
                raise BundleError(f"{target}: {type(exc).__name__}: {exc}") from exc
            with self._swap_lock:
                self._current = fresh
            return fresh
