"""``python -m pillsnap_sdk.bench``: the same options as ``pillsnap bench``."""

from .cli import main

raise SystemExit(main())
