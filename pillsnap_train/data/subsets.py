"""Staged training subsets: N classes, M photos, a singles-to-combos ratio.

Why: the full AIHub set (~5,000 classes) takes days per epoch, so the training plan climbs
stages (5K photos / 50 classes -> 25K / 250 -> 100K / 1,000 -> all), each a strict,
reproducible subset that catches pipeline bugs cheaply before the expensive run. The ratio
of single-pill to combination photos is a knob of its own because the real data has ~143
singles per combo and the detector needs enough combos to learn crowded scenes.

Rules, all deterministic for a seed:

* classes: the ``max_classes`` most-photographed (images showing the class), ties by code,
  so a stage's classes are a superset of the previous, smaller stage's;
* a combination photo is kept only if *every* pill in it is of a kept class; a photo with
  an unlabelled (dropped-class) pill would teach the detector that a pill is background;
* photos are taken a whole group at a time (augmented copies stay together), singles
  round-robin over classes so each class gets a similar share;
* ``max_samples`` counts images and is never exceeded; when the data cannot give both the
  sample count and the ratio, the count wins, and the report says so.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence

from pydantic import BaseModel, Field

from .records import BoxRecord, GroupKey, group_key

__all__ = ["SubsetReport", "select_subset"]


class SubsetReport(BaseModel):
    """What was asked for, what the data allowed, and why they differ."""

    requested_classes: int | None = None
    requested_samples: int | None = None
    requested_ratio: float | None = Field(default=None, description="singles per combo")
    available_classes: int = 0
    available_singles: int = 0
    available_combos: int = 0
    excluded_combos: int = Field(default=0, description="combo images with a dropped class")
    selected_classes: int = 0
    selected_images: int = 0
    selected_singles: int = 0
    selected_combos: int = 0
    selected_groups: int = 0
    selected_boxes: int = 0
    achieved_ratio: float | None = Field(default=None, description="None when no combos")
    warnings: list[str] = Field(default_factory=list)


class _Unit:
    """One photo group: the indivisible unit of selection."""

    __slots__ = ("classes", "images", "is_combo", "key", "primary")

    def __init__(self, key: GroupKey, rows: list[BoxRecord]) -> None:
        self.key = key
        self.images = len({r.image_path for r in rows})
        self.is_combo = any(r.kind == "combo" for r in rows)
        counts = Counter(r.class_code for r in rows)
        self.classes = set(counts)
        self.primary = min(counts, key=lambda c: (-counts[c], c))


def _take_round_robin(units: list[_Unit], budget: int, rng: random.Random) -> list[_Unit]:
    """Fill ``budget`` images, one group per class in turn, so classes stay balanced."""
    by_class: dict[str, list[_Unit]] = defaultdict(list)
    for u in units:
        by_class[u.primary].append(u)
    queues = []
    for cls in sorted(by_class):
        queue = by_class[cls]
        rng.shuffle(queue)
        queues.append(queue)
    taken: list[_Unit] = []
    left = budget
    while left > 0 and any(queues):
        progressed = False
        for queue in queues:
            # The next group of this class that still fits (copies may not fit at the end).
            for i, u in enumerate(queue):
                if u.images <= left:
                    taken.append(queue.pop(i))
                    left -= u.images
                    progressed = True
                    break
            if left == 0:
                break
        if not progressed:
            break
    return taken


def _take_shuffled(units: list[_Unit], budget: int, rng: random.Random) -> list[_Unit]:
    pool = list(units)
    rng.shuffle(pool)
    taken: list[_Unit] = []
    left = budget
    for u in pool:
        if u.images <= left:
            taken.append(u)
            left -= u.images
    return taken


def _targets(
    singles: int, combos: int, max_samples: int | None, ratio: float | None
) -> tuple[int, int]:
    """(single images, combo images) to aim for, before rounding to whole groups."""
    if max_samples is None:
        if ratio is None or combos == 0:
            return singles, combos
        if singles >= ratio * combos:
            return int(ratio * combos), combos
        return singles, min(combos, round(singles / ratio))
    if ratio is None:
        total = singles + combos
        c_want = round(max_samples * combos / total) if total else 0
    else:
        c_want = round(max_samples / (ratio + 1))
    s_want = max_samples - c_want
    c, s = min(combos, c_want), min(singles, s_want)
    if c < c_want:  # too few combos: fill the count with singles
        s = min(singles, max_samples - c)
    if s < s_want:  # too few singles: fill with combos
        c = min(combos, max_samples - s)
    return s, c


def select_subset(
    records: Sequence[BoxRecord],
    *,
    max_classes: int | None = None,
    max_samples: int | None = None,
    single_combo_ratio: float | None = None,
    seed: int = 0,
) -> tuple[list[BoxRecord], SubsetReport]:
    """Pick a staged subset (see the module doc); returns kept records in input order.

    ``max_samples`` counts images (photos); ``single_combo_ratio`` is singles per combo
    (e.g. ``143.0``). Without ``max_samples`` a ratio trims whichever kind is in excess.
    """
    if max_classes is not None and max_classes < 1:
        raise ValueError("max_classes must be >= 1")
    if max_samples is not None and max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    if single_combo_ratio is not None and not single_combo_ratio > 0:
        raise ValueError("single_combo_ratio must be > 0 (singles per combo)")
    report = SubsetReport(
        requested_classes=max_classes,
        requested_samples=max_samples,
        requested_ratio=single_combo_ratio,
    )
    rng = random.Random(seed)

    images_per_class: dict[str, set[str]] = defaultdict(set)
    rows_of: dict[GroupKey, list[BoxRecord]] = defaultdict(list)
    for rec in records:
        images_per_class[rec.class_code].add(rec.image_path)
        rows_of[group_key(rec)].append(rec)
    report.available_classes = len(images_per_class)
    ranked = sorted(images_per_class, key=lambda c: (-len(images_per_class[c]), c))
    if max_classes is not None and max_classes > len(ranked):
        report.warnings.append(
            f"asked for {max_classes} classes but the data has only {len(ranked)}"
        )
    chosen = set(ranked if max_classes is None else ranked[:max_classes])

    units = [_Unit(k, rows_of[k]) for k in sorted(rows_of)]
    eligible = [u for u in units if u.classes <= chosen]
    report.excluded_combos = sum(
        u.images for u in units if u.is_combo and u.classes & chosen and not u.classes <= chosen
    )
    singles = [u for u in eligible if not u.is_combo]
    combos = [u for u in eligible if u.is_combo]
    report.available_singles = sum(u.images for u in singles)
    report.available_combos = sum(u.images for u in combos)
    if report.excluded_combos:
        report.warnings.append(
            f"{report.excluded_combos} combination images left out: they show a pill of a "
            "class outside the selected classes"
        )
    available = report.available_singles + report.available_combos
    if max_samples is not None and max_samples > available:
        report.warnings.append(f"asked for {max_samples} photos but only {available} qualify")

    s_want, c_want = _targets(
        report.available_singles, report.available_combos, max_samples, single_combo_ratio
    )
    picked = _take_round_robin(singles, s_want, rng) + _take_shuffled(combos, c_want, rng)
    keep = {u.key for u in picked}
    kept = [r for r in records if group_key(r) in keep]

    report.selected_singles = sum(u.images for u in picked if not u.is_combo)
    report.selected_combos = sum(u.images for u in picked if u.is_combo)
    report.selected_images = report.selected_singles + report.selected_combos
    report.selected_groups = len(keep)
    report.selected_boxes = len(kept)
    report.selected_classes = len({r.class_code for r in kept})
    if report.selected_combos:
        report.achieved_ratio = report.selected_singles / report.selected_combos
    _ratio_warning(report)
    return kept, report


def _ratio_warning(report: SubsetReport) -> None:
    wanted = report.requested_ratio
    if wanted is None:
        return
    got = report.achieved_ratio
    if got is None:
        if report.selected_singles and report.available_combos == 0:
            report.warnings.append(
                f"requested {wanted:g} singles per combo but no combination photo qualifies; "
                "the subset has singles only"
            )
        elif report.selected_singles:
            report.warnings.append(
                f"requested {wanted:g} singles per combo: {report.selected_singles} singles "
                "leave room for no combination photo; the subset has singles only"
            )
        return
    if abs(got - wanted) > 0.1 * wanted and abs(got - wanted) >= 1.0:
        short = "combination" if got > wanted else "single-pill"
        report.warnings.append(
            f"requested {wanted:g} singles per combo, achieved {got:.1f}: not enough "
            f"{short} photos ({report.available_singles} singles, "
            f"{report.available_combos} combos available)"
        )
