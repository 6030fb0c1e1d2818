"""Write the manifest JSON schema shipped in ``pillsnap_sdk/schema/`` (for non-Python tools).

python -m pillsnap_sdk.bundle.schema      # regenerate after changing manifest.py
"""

from __future__ import annotations

import json
from pathlib import Path

from .manifest import manifest_json_schema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "manifest.schema.json"


def render() -> str:
    return json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
