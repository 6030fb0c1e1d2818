"""The JSON Schema of :class:`IdentifyResult`, shipped as ``schema/result.schema.json``.

Why ship it: clients in other languages read ``pillsnap identify --json`` output and
server responses; they need the contract without running Python. It is the schema of
what is *written* (serialization mode, so the computed ``label`` is included).

    python -m pillsnap_sdk.result_schema     # regenerate after changing results.py
    pillsnap schema result                   # print it
"""

from __future__ import annotations

import json
from pathlib import Path

from .results import IdentifyResult

__all__ = ["RESULT_SCHEMA_PATH", "render"]

RESULT_SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "result.schema.json"


def render() -> str:
    schema = IdentifyResult.model_json_schema(mode="serialization")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    RESULT_SCHEMA_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {RESULT_SCHEMA_PATH}")


if __name__ == "__main__":
    main()
