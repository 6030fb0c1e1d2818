"""The full benchmark's record: ``pillsnap bench``'s report plus peers, variants and gate.

Why one record: the table a person reads and the JSON CI keeps must never disagree, so
both are rendered from the same :class:`FullReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pillsnap_sdk.bench.report import (
    BenchReport,
    header_lines,
    scene_lines,
    tail_lines,
    value,
)

from .gate import GateResult
from .peers import GOAL_VS_PEERS, PeerResult
from .variants import VariantResult

__all__ = ["FullReport", "format_full_table"]


@dataclass
class FullReport(BenchReport):
    """Everything one ``python -m benchmarks`` run measured (``to_json``: CI history)."""

    peers: list[PeerResult] = field(default_factory=list)
    variants: list[VariantResult] = field(default_factory=list)
    gate: GateResult | None = None


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
            f"{value(p.ratio, '.3f'):>8}  {p.scope}{goal}"
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
        acc = value(r.accuracy_delta, "+.4f") + f" ({r.accuracy_note})"
        lines.append(
            f"{head}{value(r.stage.p50 if r.stage else None):>11}"
            f"{value(r.e2e.p50 if r.e2e else None):>9}{value(r.stage_vs_fp32, '.3f'):>9}  {acc}"
        )
    return [*lines, ""]


def _gate_lines(g: GateResult) -> list[str]:
    verdict = "PASS" if g.passed else "FAIL"
    lines = [
        f"regression gate vs {g.baseline_file} [{g.bundle}], tolerance +{g.tolerance:.0%}, "
        f"attempts {g.attempts}: {verdict} {g.note}"
    ]
    for gc in g.checks:
        lines.append(
            f"  {gc.metric:<24} baseline {value(gc.baseline, '.3f')}  now "
            f"{value(gc.current, '.3f')}  limit {value(gc.limit, '.3f')}  {gc.status.upper()}"
        )
    return lines


def format_full_table(report: FullReport) -> str:
    """The same blocks as ``pillsnap bench``, with peers and variants after the photos and
    the gate verdict last."""
    lines = header_lines(report.meta)
    for s in report.scenes:
        lines += scene_lines(s)
    if report.peers:
        lines += _peer_lines(report.peers)
    if report.variants:
        lines += _variant_lines(report.variants)
    lines += tail_lines(report)
    if report.gate:
        lines += _gate_lines(report.gate)
    return "\n".join(lines).rstrip() + "\n"
