"""What one bench run measured, as a record (JSON for CI history) and as a table.

Why one record: the table a person reads and the JSON CI keeps must never disagree, so
both are rendered from the same :class:`BenchReport`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .coldstart import ColdStart
from .gate import GateResult
from .peers import GOAL_VS_PEERS, PeerResult
from .profiles import TargetCheck
from .scenes import MULTI
from .stages import GOAL_E2E_VS_FLOOR, SceneResult
from .throughput import ThroughputResult
from .variants import VariantResult

__all__ = ["BenchReport", "format_table"]


@dataclass
class BenchReport:
    """Everything one ``pillsnap bench`` run measured; ``to_json`` is the CI history record."""

    meta: dict[str, Any]
    scenes: list[SceneResult] = field(default_factory=list)
    peers: list[PeerResult] = field(default_factory=list)
    variants: list[VariantResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)
    cold_start: ColdStart | None = None
    profiles: list[TargetCheck] = field(default_factory=list)
    gate: GateResult | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def scene(self, name: str) -> SceneResult | None:
        return next((s for s in self.scenes if s.scene == name), None)


def _f(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _header(m: dict[str, Any]) -> list[str]:
    v = m["versions"]
    return [
        f"pillsnap bench  {m['date']}  bundle {m['bundle']['key']}"
        + ("  (random weights)" if m["bundle"]["synthetic_weights"] else ""),
        f"  {m['machine']['cpus']} CPUs {m['machine']['processor']}, {m['machine']['platform']}",
        f"  onnxruntime {v['onnxruntime']}, numpy {v['numpy']}, opencv {v['opencv']}, "
        f"providers {','.join(m['providers'])}; {m['rounds']} rounds interleaved with the floor",
        "",
    ]


def _scene_lines(s: SceneResult) -> list[str]:
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
        ("floor total (ORT defaults)", s.floor),
        ("floor, SDK session options", s.sdk_floor),
    ]
    for label, st in rows:
        lines.append(f"  {label:<28}{st.p50:>10.1f}{st.p95:>10.1f}")
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
        f"  SDK session.run / floor run: detector {_f(s.detect_run_vs_floor, '.3f')}, "
        f"classifier {s.classify_run_vs_floor:.3f}",
        "",
    ]


def _peer_lines(peers: list[PeerResult]) -> list[str]:
    lines = [
        "peers (same weights, same photo; ratio = ours / theirs, lower is better)",
        f"  {'peer':<30}{'scene':<8}{'ours p50':>10}{'theirs p50':>12}{'ratio':>8}  scope",
    ]
    for p in peers:
        if p.status != "run" or p.ours is None or p.theirs is None:
            lines.append(f"  {p.peer:<30}{p.scene:<8}{'not run':>30}  {p.reason}")
            continue
        goal = ""
        if p.peer.startswith("(a)+(b)") and p.ratio is not None:
            met = "met" if p.ratio <= GOAL_VS_PEERS else "MISSED"
            goal = f"  [goal <= {GOAL_VS_PEERS}: {met}]"
        lines.append(
            f"  {p.peer:<30}{p.scene:<8}{p.ours.p50:>10.1f}{p.theirs.p50:>12.1f}"
            f"{_f(p.ratio, '.3f'):>8}  {p.scope}{goal}"
        )
    return [*lines, ""]


def _variant_lines(variants: list[VariantResult]) -> list[str]:
    lines = [
        "precision variants (multi-pill photo)",
        f"  {'role':<11}{'prec':<6}{'file':<24}{'MB':>7}{'stage p50':>11}{'e2e p50':>9}"
        f"{'vs fp32':>9}  accuracy",
    ]
    for r in variants:
        head = f"  {r.role:<11}{r.precision:<6}{r.file:<24}{r.size_mb:>7.1f}"
        if r.status != "run":
            lines.append(f"{head}  not run: {r.reason}")
            continue
        acc = _f(r.accuracy_delta, "+.4f") + f" ({r.accuracy_note})"
        lines.append(
            f"{head}{_f(r.stage.p50 if r.stage else None):>11}"
            f"{_f(r.e2e.p50 if r.e2e else None):>9}{_f(r.stage_vs_fp32, '.3f'):>9}  {acc}"
        )
    return [*lines, ""]


def format_table(report: BenchReport) -> str:
    """The human-readable report: one block per measurement, ratios beside milliseconds."""
    m = report.meta
    lines = _header(m)
    for s in report.scenes:
        lines += _scene_lines(s)
    if report.peers:
        lines += _peer_lines(report.peers)
    if report.variants:
        lines += _variant_lines(report.variants)
    if report.throughput:
        lines.append("throughput (one Identifier, multi-pill photo)")
        for t in report.throughput:
            lines.append(f"  {t.name:<34}{t.seconds.p50:>10.0f} ms{t.images_per_s:>8.2f} img/s")
        lines.append("")
    if report.cold_start:
        c = report.cold_start
        lines.append(f"cold start (fresh process, median of {c.runs})")
        lines.append(
            f"  import {c.import_ms:.0f} ms, from_bundle {c.load_ms:.0f} ms, first result "
            f"{c.first_result_ms:.0f} ms -> from_bundle to first result {c.cold_start_ms:.0f} ms; "
            f"peak RSS {_f(c.peak_rss_mb, '.0f')} MB"
        )
        lines.append("")
    if report.profiles:
        lines.append(f"device profiles ({m.get('profiles_source', '')}); p50 ms vs target")
        for tc in report.profiles:
            lines.append(
                f"  {tc.profile:<10}{tc.metric:<12}{tc.scene:<8}{_f(tc.measured_ms):>9} <= "
                f"{tc.target_ms:<8.0f}{tc.status.upper():<8} {tc.note}"
            )
        lines.append("")
    if report.gate:
        g = report.gate
        verdict = "PASS" if g.passed else "FAIL"
        lines.append(
            f"regression gate vs {g.baseline_file} [{g.bundle}], tolerance +{g.tolerance:.0%}, "
            f"attempts {g.attempts}: {verdict} {g.note}"
        )
        for gc in g.checks:
            lines.append(
                f"  {gc.metric:<24} baseline {_f(gc.baseline, '.3f')}  now "
                f"{_f(gc.current, '.3f')}  limit {_f(gc.limit, '.3f')}  {gc.status.upper()}"
            )
    return "\n".join(lines).rstrip() + "\n"
