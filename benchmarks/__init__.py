"""The repository's benchmarks, beyond what ``pillsnap bench`` ships to kiosk vendors.

Run from a checkout with the ``train`` extra (torch, timm, ultralytics for the peers):

- :mod:`.cli` / ``python -m benchmarks``: ``pillsnap bench`` plus peers, precision
  variants and the CI regression gate against ``benchmarks/baseline.json``
- :mod:`.run`         the full run's order, on :class:`pillsnap_sdk.bench.run.BenchSession`
- :mod:`.report`      its record and table (``pillsnap bench``'s plus three blocks)
- :mod:`.peers`       Ultralytics / timm eager / seed style on the same weights
- :mod:`.seed_style`  the seed project's serving style, reproduced
- :mod:`.variants`    precision variants against fp32
- :mod:`.gate`        the regression gate against ``benchmarks/baseline.json``
- ``make_bench_bundle.py``  the bench bundle (random weights, real architectures)
- ``test_*.py``       pytest-benchmark suites (``pytest benchmarks/``)
"""
