"""``python -m benchmarks``: the full benchmark (see :mod:`benchmarks.cli`)."""

from .cli import main

raise SystemExit(main())
