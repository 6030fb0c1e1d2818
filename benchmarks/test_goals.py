"""The issue's goals as assertions, each measured interleaved in one run.

- SDK end to end / floor (the fastest bare onnxruntime configuration found,
  ``floorsearch``) <= 1.10 on the multi-pill photo;
- our detector+classifier time / (Ultralytics predict + timm eager) <= 0.3;
- a 12 MP JPEG of the multi-pill scene <= 1.3 x the 0.3 MP photo, end to end;
- ``identify_batch`` of 8 photos no slower than a loop of ``identify`` (5 % noise allowed).

Deselect with ``-m "not goal"`` while a known gap is being worked on; ``pillsnap bench``
shows the same numbers with their breakdown.
"""

from __future__ import annotations

import pytest
from conftest import ROUNDS, SceneCtx

from benchmarks.peers import GOAL_VS_PEERS, measure_peers
from pillsnap_sdk.bench.bigphoto import GOAL_BIG_VS_SMALL, measure_big_photo
from pillsnap_sdk.bench.scenes import MULTI
from pillsnap_sdk.bench.stages import GOAL_E2E_VS_FLOOR, measure_scene
from pillsnap_sdk.bench.throughput import measure_throughput

pytestmark = pytest.mark.goal


def test_goal_multi_pill_end_to_end_vs_floor(ctx: dict[str, SceneCtx]) -> None:
    c = ctx[MULTI]
    r = measure_scene(c.idf, (c.floor, c.sdk_floor), c.scene, ROUNDS)
    detail = (
        f"SDK {r.e2e.p50:.0f} ms, floor {r.floor.p50:.0f} ms, floor with SDK session options "
        f"{r.sdk_floor.p50:.0f} ms; e2e/floor {r.e2e_vs_floor:.3f}, "
        f"e2e/sdk-floor {r.e2e_vs_sdk_floor:.3f}, session options {r.sdk_floor_vs_floor:.3f}"
    )
    print(detail)
    assert r.e2e_vs_floor <= GOAL_E2E_VS_FLOOR, detail


def test_goal_vs_ultralytics_plus_timm(ctx: dict[str, SceneCtx]) -> None:
    c = ctx[MULTI]
    peers = measure_peers(c.bundle, c.idf, c.scene, max(3, ROUNDS // 2))
    combined = next(p for p in peers if p.peer.startswith("(a)+(b)"))
    if combined.status != "run" or combined.ratio is None:
        pytest.skip(f"peers not available: {[p.reason for p in peers if p.reason]}")
    print(combined)
    assert combined.ratio <= GOAL_VS_PEERS, combined


def test_goal_12mp_vs_small_photo(ctx: dict[str, SceneCtx]) -> None:
    c = ctx[MULTI]
    r = measure_big_photo(c.idf, c.scene, ROUNDS)
    print(r)
    # Same pills, always. Names: the 12 MP stand-in is an upscale with sensor noise, so even
    # a full-size decode renames some pills near the unknown threshold (845 pills of 40
    # photos: 94.0 % same names with the old full-size decode, 95.2 % now; this 20-pill
    # scene 18/20 on the idle box, 2026-12-02). A decode that broke crops would drop far
    # below 85 %.
    assert r.matched == r.pills_small == r.pills_big, r
    assert r.same_names >= 0.85 * r.matched, r
    assert r.big_vs_small <= GOAL_BIG_VS_SMALL, r


def test_goal_batch_never_loses_to_loop(ctx: dict[str, SceneCtx]) -> None:
    c = ctx[MULTI]
    rows = measure_throughput(c.idf, c.scene, rounds=max(3, ROUNDS // 2), threads=())
    batch = next(t for t in rows if t.vs_loop is not None)
    print(rows)
    assert batch.vs_loop is not None and batch.vs_loop <= 1.05, rows
