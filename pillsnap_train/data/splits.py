"""Group-aware, class-stratified train/val/test/holdout assignment.

Why groups: a Roboflow export holds each photo three times (small rotations), AIHub shoots
one combination from several angles; if copies of one photo land in train *and* val, val
accuracy measures memory, not recognition. So the unit of assignment is the photo group
``(source, group)`` and every box of a group gets the same split.

Why stratified: with ~5,000 classes and a handful of photos each, a random group split
leaves many classes without any validation photo and others with all of them. We use the
iterative stratification of Sechidis et al. (2011), adapted to groups: classes with the
fewest unassigned groups are placed first, each of their groups going to the split that
still wants that class most. A combination photo counts toward every class it contains.
A class with a single group stays in train (val cannot have what train lacks).

``holdout_classes`` removes whole classes (and every group that shows one) into ``holdout``,
the never-seen pills used to calibrate and test unknown-pill rejection.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from pydantic import BaseModel, Field

from .records import SPLITS, BoxRecord, GroupKey, group_key

__all__ = ["SplitSummary", "assign_splits", "split_leaks", "split_summary"]


def assign_splits(
    records: Sequence[BoxRecord],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    holdout_classes: Iterable[str] = (),
) -> list[BoxRecord]:
    """Return ``records`` (same order) with ``split`` set; see the module doc for the method.

    Deterministic for a seed and independent of input order (groups are sorted before the
    seeded shuffle). Fractions are of *groups* per class, not of boxes. Raises
    ``ValueError`` for fractions outside ``[0, 1)`` summing to 1 or more, or for a holdout
    code that no record has (a typo would otherwise silently hold out nothing).
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise ValueError("val_fraction and test_fraction must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must leave something to train on")
    holdout = set(holdout_classes)
    present = {r.class_code for r in records}
    unknown = sorted(holdout - present)
    if unknown:
        raise ValueError(f"holdout classes not in the data: {unknown}")

    classes_of: dict[GroupKey, set[str]] = defaultdict(set)
    for rec in records:
        classes_of[group_key(rec)].add(rec.class_code)
    assignment: dict[GroupKey, str] = {
        g: "holdout" for g, classes in classes_of.items() if classes & holdout
    }

    rng = random.Random(seed)
    free = sorted(g for g in classes_of if g not in assignment)
    rng.shuffle(free)
    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction}
    if test_fraction > 0:
        fractions["test"] = test_fraction
    names = list(fractions)

    groups_of: dict[str, list[GroupKey]] = defaultdict(list)
    for g in free:
        for c in sorted(classes_of[g]):
            groups_of[c].append(g)
    # desired[s][c]: how many more groups with class c split s wants (may go negative).
    desired = {s: {c: f * len(gs) for c, gs in groups_of.items()} for s, f in fractions.items()}
    desired_total = {s: f * len(free) for s, f in fractions.items()}
    remaining = {c: len(gs) for c, gs in groups_of.items()}
    class_rank = {c: i for i, c in enumerate(rng.sample(sorted(groups_of), len(groups_of)))}
    heap = [(n, class_rank[c], c) for c, n in remaining.items()]
    heapq.heapify(heap)

    while heap:
        n, _, cls = heapq.heappop(heap)
        if n != remaining[cls] or n == 0:
            continue  # stale entry: the count dropped since it was pushed
        for g in groups_of[cls]:
            if g in assignment:
                continue
            best = max(desired[s][cls] for s in names)
            tied = [s for s in names if desired[s][cls] == best]
            if len(tied) > 1:
                top = max(desired_total[s] for s in tied)
                tied = [s for s in tied if desired_total[s] == top]
            split = tied[0] if len(tied) == 1 else rng.choice(tied)
            assignment[g] = split
            desired_total[split] -= 1
            for c in classes_of[g]:
                desired[split][c] -= 1
                remaining[c] -= 1
                if c != cls and remaining[c] > 0:
                    heapq.heappush(heap, (remaining[c], class_rank[c], c))

    return [replace(r, split=assignment[group_key(r)]) for r in records]


def split_leaks(records: Iterable[BoxRecord]) -> list[GroupKey]:
    """Groups whose boxes sit in more than one split, sorted. Must be empty for a records CSV.

    Cheap enough to run on every records load; it is the invariant that keeps validation
    scores honest.
    """
    seen: dict[GroupKey, set[str]] = defaultdict(set)
    for rec in records:
        seen[group_key(rec)].add(rec.split)
    return sorted(g for g, splits in seen.items() if len(splits) > 1)


class SplitSummary(BaseModel):
    """Per split: groups, images, boxes, classes; plus classes missing from val."""

    groups: dict[str, int] = Field(default_factory=dict)
    images: dict[str, int] = Field(default_factory=dict)
    boxes: dict[str, int] = Field(default_factory=dict)
    classes: dict[str, int] = Field(default_factory=dict)
    train_classes_without_val: int = 0
    leaked_groups: list[str] = Field(default_factory=list)


def split_summary(records: Sequence[BoxRecord]) -> SplitSummary:
    """Counts for the ingest report, so a reviewer sees the split without loading data."""
    out = SplitSummary()
    for split in (*SPLITS, ""):
        rows = [r for r in records if r.split == split]
        if not rows:
            continue
        label = split or "unassigned"
        out.groups[label] = len({group_key(r) for r in rows})
        out.images[label] = len({r.image_path for r in rows})
        out.boxes[label] = len(rows)
        out.classes[label] = len({r.class_code for r in rows})
    per_split: Counter[tuple[str, str]] = Counter((r.class_code, r.split) for r in records)
    train = {c for c, s in per_split if s == "train"}
    val = {c for c, s in per_split if s == "val"}
    out.train_classes_without_val = len(train - val)
    out.leaked_groups = [f"{s}/{g}" for s, g in split_leaks(records)]
    return out
