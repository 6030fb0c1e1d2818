"""Staged subsets: class choice, photo cap, single/combo ratio, shortfall reporting."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pillsnap_train.data.records import BoxRecord
from pillsnap_train.data.subsets import select_subset


def _rec(group: str, image: str, code: str, kind: str) -> BoxRecord:
    return BoxRecord(
        image_path=f"/{image}.png",
        group=group,
        split="",
        kind=kind,
        image_width=10,
        image_height=10,
        x1=0.0,
        y1=0.0,
        x2=5.0,
        y2=5.0,
        class_code=code,
        class_name=code,
        source="s",
    )


def _singles(code: str, n: int, copies: int = 1) -> list[BoxRecord]:
    return [
        _rec(f"{code}-{i}", f"{code}-{i}-{c}", code, "single")
        for i in range(n)
        for c in range(copies)
    ]


def _combo(name: str, codes: list[str]) -> list[BoxRecord]:
    return [_rec(name, name, code, "combo") for code in codes]


def _images(records: list[BoxRecord], kind: str | None = None) -> int:
    return len({r.image_path for r in records if kind is None or r.kind == kind})


def test_most_photographed_classes_first_ties_by_code() -> None:
    records = _singles("K-3", 9) + _singles("K-2", 5) + _singles("K-1", 5) + _singles("K-0", 2)
    kept, report = select_subset(records, max_classes=2)
    assert {r.class_code for r in kept} == {"K-3", "K-1"}
    assert report.selected_classes == 2 and report.available_classes == 4
    assert report.warnings == []
    # A bigger stage is a superset of the smaller one's classes.
    bigger, _ = select_subset(records, max_classes=3)
    assert {r.class_code for r in bigger} == {"K-3", "K-2", "K-1"}


def test_combos_with_a_dropped_class_are_excluded_and_reported() -> None:
    records = _singles("A", 6) + _singles("B", 5) + _singles("C", 1)
    records += _combo("ab", ["A", "B"]) + _combo("abc", ["A", "B", "C"])
    kept, report = select_subset(records, max_classes=2)
    assert {r.group for r in kept if r.kind == "combo"} == {"ab"}
    assert report.excluded_combos == 1
    assert any("outside the selected classes" in w for w in report.warnings)


def test_ratio_met_when_the_data_allows() -> None:
    records = [r for c in "ABCDE" for r in _singles(c, 20)]
    records += [r for i in range(10) for r in _combo(f"k{i}", ["A", "B"])]
    kept, report = select_subset(records, max_samples=60, single_combo_ratio=5.0, seed=1)
    assert (_images(kept, "single"), _images(kept, "combo")) == (50, 10)
    assert report.achieved_ratio == 5.0 and report.warnings == []
    # Singles are shared round-robin: 10 per class.
    assert set(Counter(r.class_code for r in kept if r.kind == "single").values()) == {10}


def test_ratio_shortfall_keeps_the_count_and_says_so() -> None:
    records = [r for c in "AB" for r in _singles(c, 50)]
    records += [r for i in range(2) for r in _combo(f"k{i}", ["A", "B"])]
    kept, report = select_subset(records, max_samples=60, single_combo_ratio=5.0)
    assert (_images(kept, "single"), _images(kept, "combo")) == (58, 2)
    assert report.requested_ratio == 5.0 and report.achieved_ratio == 29.0
    assert any("achieved 29.0" in w and "combination" in w for w in report.warnings)


def test_ratio_without_combos_warns() -> None:
    kept, report = select_subset(_singles("A", 10), single_combo_ratio=143.0)
    assert _images(kept) == 10 and report.achieved_ratio is None
    assert any("singles only" in w for w in report.warnings)


def test_ratio_without_cap_trims_the_excess_kind() -> None:
    records = _singles("A", 30) + [r for i in range(10) for r in _combo(f"k{i}", ["A"])]
    kept, report = select_subset(records, single_combo_ratio=2.0)
    assert (_images(kept, "single"), _images(kept, "combo")) == (20, 10)
    assert report.achieved_ratio == 2.0 and report.warnings == []
    kept, _ = select_subset(records, single_combo_ratio=10.0)
    assert (_images(kept, "single"), _images(kept, "combo")) == (30, 3)


def test_groups_are_never_cut_and_cap_never_exceeded() -> None:
    records = [r for c in "ABC" for r in _singles(c, 10, copies=3)]
    kept, report = select_subset(records, max_samples=20, seed=4)
    assert _images(kept) == report.selected_images == 18  # 6 groups of 3 copies
    per_group = Counter(r.group for r in kept)
    assert set(per_group.values()) == {3}


def test_seeded() -> None:
    records = [r for c in "ABC" for r in _singles(c, 30)]
    a = select_subset(records, max_samples=15, seed=1)
    assert a == select_subset(records, max_samples=15, seed=1)
    assert {r.group for r in a[0]} != {
        r.group for r in select_subset(records, max_samples=15, seed=2)[0]
    }


def test_asking_for_more_than_exists_warns() -> None:
    kept, report = select_subset(_singles("A", 3), max_classes=5, max_samples=10)
    assert len(kept) == 3
    assert len(report.warnings) == 2


@pytest.mark.parametrize(
    "kwargs", [{"max_classes": 0}, {"max_samples": 0}, {"single_combo_ratio": 0.0}]
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        select_subset(_singles("A", 1), **kwargs)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    spec=st.lists(
        st.tuples(st.integers(0, 4), st.integers(1, 3), st.booleans()), min_size=1, max_size=40
    ),
    max_classes=st.none() | st.integers(1, 5),
    max_samples=st.none() | st.integers(1, 60),
    ratio=st.none() | st.sampled_from([0.5, 3.0, 143.0]),
    seed=st.integers(0, 2),
)
def test_subset_properties(
    spec: list[tuple[int, int, bool]],
    max_classes: int | None,
    max_samples: int | None,
    ratio: float | None,
    seed: int,
) -> None:
    records: list[BoxRecord] = []
    for g, (cls, copies, combo) in enumerate(spec):
        for c in range(copies):
            codes = [f"C{cls}", f"C{(cls + 1) % 5}"] if combo else [f"C{cls}"]
            records += [
                _rec(f"g{g}", f"g{g}-{c}", code, "combo" if combo else "single") for code in codes
            ]
    kept, report = select_subset(
        records,
        max_classes=max_classes,
        max_samples=max_samples,
        single_combo_ratio=ratio,
        seed=seed,
    )
    kept_groups = {r.group for r in kept}
    assert kept == [r for r in records if r.group in kept_groups]  # whole groups, input order
    if max_samples is not None:
        assert _images(kept) <= max_samples
    if max_classes is not None:
        assert len({r.class_code for r in kept}) <= max_classes
    assert report.selected_images == _images(kept)
    assert report.selected_boxes == len(kept)
    assert (report.selected_singles, report.selected_combos) == (
        _images(kept, "single"),
        _images(kept, "combo"),
    )
    assert (
        (
            select_subset(
                records,
                max_classes=max_classes,
                max_samples=max_samples,
                single_combo_ratio=ratio,
                seed=seed,
            )[0]
        )
        == kept
    )
