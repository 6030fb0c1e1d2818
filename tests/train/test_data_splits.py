"""Group-aware stratified splits: invariants (hypothesis), stratification, holdout, leaks."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pillsnap_train.data.records import BoxRecord
from pillsnap_train.data.splits import assign_splits, split_leaks, split_summary


def _rec(group: str, code: str, *, source: str = "s", image: str | None = None) -> BoxRecord:
    return BoxRecord(
        image_path=f"/{source}/{image or group}.png",
        group=group,
        split="",
        kind="single",
        image_width=10,
        image_height=10,
        x1=0.0,
        y1=0.0,
        x2=5.0,
        y2=5.0,
        class_code=code,
        class_name=code,
        source=source,
    )


@st.composite
def datasets(draw: st.DrawFn) -> list[BoxRecord]:
    """Groups of 1-3 images with 1-4 boxes each over a few classes, from two sources."""
    n_classes = draw(st.integers(1, 6))
    records = []
    for g in range(draw(st.integers(1, 25))):
        source = draw(st.sampled_from(["a", "b"]))
        for i in range(draw(st.integers(1, 3))):
            for _ in range(draw(st.integers(1, 4))):
                code = f"C{draw(st.integers(0, n_classes - 1))}"
                records.append(_rec(f"g{g}", code, source=source, image=f"g{g}-{i}"))
    return records


fractions = st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.5]), st.sampled_from([0.0, 0.1, 0.25]))


@settings(max_examples=60, deadline=None)
@given(records=datasets(), fr=fractions, seed=st.integers(0, 3), data=st.data())
def test_split_invariants(
    records: list[BoxRecord], fr: tuple[float, float], seed: int, data: st.DataObject
) -> None:
    val, test = fr
    codes = sorted({r.class_code for r in records})
    holdout = data.draw(st.sets(st.sampled_from(codes), max_size=max(0, len(codes) - 1)))
    out = assign_splits(
        records, val_fraction=val, test_fraction=test, seed=seed, holdout_classes=holdout
    )

    # Every record assigned, in input order, nothing else changed.
    assert len(out) == len(records)
    assert all(replace(o, split="") == r for o, r in zip(out, records, strict=True))
    allowed = {"train", "holdout"} | ({"val"} if val else set()) | ({"test"} if test else set())
    assert {o.split for o in out} <= allowed
    # No photo group on two sides.
    assert split_leaks(out) == []
    # Holdout: every box of a holdout class, and only groups that show one.
    held_groups = {o.group_key for o in out if o.class_code in holdout}
    for o in out:
        assert (o.split == "holdout") == (o.group_key in held_groups)
    # Deterministic for a seed, independent of input order.
    assert (
        assign_splits(
            records, val_fraction=val, test_fraction=test, seed=seed, holdout_classes=holdout
        )
        == out
    )
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    again = assign_splits(
        shuffled, val_fraction=val, test_fraction=test, seed=seed, holdout_classes=holdout
    )
    assert {(r.group_key, r.split) for r in again} == {(r.group_key, r.split) for r in out}


def test_groups_with_equal_names_in_two_sources_are_distinct() -> None:
    records = [_rec("IMG_1", "A", source="x"), _rec("IMG_1", "A", source="y")]
    assert split_leaks([replace(records[0], split="train"), replace(records[1], split="val")]) == []
    leak = [replace(records[0], split="train"), replace(records[0], split="val", x1=1.0)]
    assert split_leaks(leak) == [("x", "IMG_1")]


def test_stratified_per_class() -> None:
    """10 classes x 10 single-photo groups at 20 %: exactly 2 val groups per class."""
    records = [_rec(f"{c}-{g}", f"C{c}") for c in range(10) for g in range(10)]
    out = assign_splits(records, val_fraction=0.2, seed=7)
    val = Counter(r.class_code for r in out if r.split == "val")
    assert val == {f"C{c}": 2 for c in range(10)}


def test_rare_classes_stay_in_train_and_combos_count_for_all_classes() -> None:
    records = [_rec("solo", "RARE")]
    records += [_rec(f"s{i}", "A") for i in range(8)] + [_rec(f"t{i}", "B") for i in range(8)]
    # Two combo photos showing A and B together (several boxes, one group each).
    records += [_rec(f"combo{i}", code) for i in range(2) for code in ("A", "B", "A")]
    out = assign_splits(records, val_fraction=0.2, seed=0)
    assert next(r.split for r in out if r.class_code == "RARE") == "train"
    val_groups: dict[str, set[str]] = defaultdict(set)
    all_groups: dict[str, set[str]] = defaultdict(set)
    for r in out:
        all_groups[r.class_code].add(r.group)
        if r.split == "val":
            val_groups[r.class_code].add(r.group)
    for code in ("A", "B"):  # 10 groups each -> 2 in val
        assert len(all_groups[code]) == 10 and len(val_groups[code]) == 2


def test_test_fraction_and_summary() -> None:
    records = [_rec(f"{c}-{g}", f"C{c}") for c in range(4) for g in range(10)]
    out = assign_splits(
        records, val_fraction=0.2, test_fraction=0.1, seed=1, holdout_classes=["C3"]
    )
    summary = split_summary(out)
    assert summary.groups == {"train": 21, "val": 6, "test": 3, "holdout": 10}
    assert summary.classes["holdout"] == 1 and summary.train_classes_without_val == 0
    assert summary.leaked_groups == []


def test_different_seeds_give_different_splits() -> None:
    records = [_rec(f"g{g}", f"C{g % 3}") for g in range(60)]
    splits = {
        tuple(r.split for r in assign_splits(records, val_fraction=0.2, seed=s)) for s in range(4)
    }
    assert len(splits) > 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, r"\[0, 1\)"),
        ({"val_fraction": -0.1}, r"\[0, 1\)"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "leave something"),
        ({"holdout_classes": ["NOPE"]}, "not in the data"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        assign_splits([_rec("g", "A")], **kwargs)  # type: ignore[arg-type]
