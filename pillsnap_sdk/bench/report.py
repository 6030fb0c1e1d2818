"""What one bench run measured, as a record (JSON for CI history) and as a table.

Why one record: the table a person reads and the JSON CI keeps must never disagree, so
both are rendered from the same :class:`BenchReport`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .bigphoto import GOAL_BIG_VS_SMALL, BigPhotoResult
from .coldstart import ColdStart
from .profiles import TargetCheck
from .scenes import MULTI
from .stages import GOAL_E2E_VS_FLOOR, SceneResult
from .throughput import ThroughputResult

__all__ = ["BenchReport", "format_table", "header_lines", "scene_lines", "tail_lines", "value"]


@dataclass
class BenchReport:
    """Everything one ``pillsnap bench`` run measured; ``to_json`` is the CI history record."""

    meta: dict[str, Any]
    scenes: list[SceneResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)
    cold_start: ColdStart | None = None
    profiles: list[TargetCheck] = field(default_factory=list)
    big_photo: BigPhotoResult | None = None
    floor_search: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def scene(self, name: str) -> SceneResult | None:
        return next((s for s in self.scenes if s.scene == name), None)


def value(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def header_lines(m: dict[str, Any]) -> list[str]:
    v = m["versions"]
    return [
        f"pillsnap bench  {m['date']}  bundle {m['bundle']['key']}"
        + ("  (random weights)" if m["bundle"]["synthetic_weights"] else ""),
        f"  {m['machine']['cpus']} CPUs {m['machine']['processor']}, {m['machine']['platform']}",
        f"  onnxruntime {v['onnxruntime']}, numpy {v['numpy']}, opencv {v['opencv']}, "
        f"providers {','.join(m['providers'])}; {m['rounds']} rounds interleaved with the floor",
        "",
    ]


def scene_lines(s: SceneResult) -> list[str]:
    w, h = s.image_size
    lines = [
        f"{s.scene}: {s.source} ({w}x{h}), {s.pills} pill(s), mode {s.mode_used}",
        f"  {'stage':<28}{'p50 ms':>10}{'p95 ms':>10}",
    ]
    rows = [*s.stages.items(), ("SDK end to end", s.e2e)]
    if s.floor_detector:
        rows.append(("floor: detector run", s.floor_detector))
    rows += [
        ("floor: classifier run", s.floor_classifier),
        ("floor total (best bare ORT)", s.floor),
        ("floor, SDK session options", s.sdk_floor),
    ]
    for label, st in rows:
        lines.append(f"  {label:<28}{st.p50:>10.1f}{st.p95:>10.1f}")
    if s.floor_config:
        lines.append(f"  floor = {s.floor_config}")
    goal = ""
    if s.scene == MULTI:
        ok = s.e2e_vs_floor <= GOAL_E2E_VS_FLOOR
        goal = f"   goal <= {GOAL_E2E_VS_FLOOR:.2f}: {'met' if ok else 'MISSED'}"
    return [
        *lines,
        f"  SDK end to end / floor                   {s.e2e_vs_floor:.3f}{goal}",
        f"  SDK end to end / floor w/ SDK options    {s.e2e_vs_sdk_floor:.3f}"
        "   (decode, letterbox, crops, Python)",
        f"  floor w/ SDK options / floor            {s.sdk_floor_vs_floor:.3f}   (session options)",
        f"  SDK session.run / floor run: detector {value(s.detect_run_vs_floor, '.3f')}, "
        f"classifier {s.classify_run_vs_floor:.3f}",
        "",
    ]


def big_photo_lines(b: BigPhotoResult) -> list[str]:
    """The 12 MP row: end to end and decode beside the same scene at its own size."""
    (sw, sh), (bw, bh) = b.small_size, b.big_size
    ok = "met" if b.big_vs_small <= GOAL_BIG_VS_SMALL else "MISSED"
    return [
        f"12 MP photo ({b.scene} enlarged to {bw}x{bh}) vs {sw}x{sh}; p50 ms",
        f"  {'end to end':<28}{b.big.p50:>10.1f} vs {b.small.p50:>8.1f}",
        f"  {'decode':<28}{b.big_decode.p50:>10.1f} vs {b.small_decode.p50:>8.1f}",
        f"  12 MP / small end to end                 {b.big_vs_small:.3f}"
        f"   goal <= {GOAL_BIG_VS_SMALL:.2f}: {ok}",
        f"  pills {b.pills_big} vs {b.pills_small}; matched by box {b.matched}, "
        f"same name {b.same_names}",
        "",
    ]


def format_table(report: BenchReport) -> str:
    """The human-readable report: one block per measurement, ratios beside milliseconds."""
    lines = header_lines(report.meta)
    for s in report.scenes:
        lines += scene_lines(s)
    lines += tail_lines(report)
    return "\n".join(lines).rstrip() + "\n"


def tail_lines(report: BenchReport) -> list[str]:
    """Throughput, cold start and device profiles: the blocks after the per-photo ones."""
    m = report.meta
    lines: list[str] = []
    if report.big_photo:
        lines += big_photo_lines(report.big_photo)
    if report.throughput:
        lines.append("throughput (one Identifier, multi-pill photo)")
        for t in report.throughput:
            vs = "" if t.vs_loop is None else f"   / loop {t.vs_loop:.3f} (<= 1.0: batching pays)"
            lines.append(f"  {t.name:<34}{t.seconds.p50:>10.0f} ms{t.images_per_s:>8.2f} img/s{vs}")
        lines.append("")
    if report.cold_start:
        c = report.cold_start
        lines.append(f"cold start (fresh process, median of {c.runs})")
        lines.append(
            f"  import {c.import_ms:.0f} ms, from_bundle {c.load_ms:.0f} ms, first result "
            f"{c.first_result_ms:.0f} ms -> from_bundle to first result {c.cold_start_ms:.0f} ms; "
            f"peak RSS {value(c.peak_rss_mb, '.0f')} MB"
        )
        lines.append("")
    if report.profiles:
        lines.append(f"device profiles ({m.get('profiles_source', '')}); p50 ms vs target")
        for tc in report.profiles:
            lines.append(
                f"  {tc.profile:<10}{tc.metric:<12}{tc.scene:<8}{value(tc.measured_ms):>9} <= "
                f"{tc.target_ms:<8.0f}{tc.status.upper():<8} {tc.note}"
            )
        lines.append("")
    return lines
