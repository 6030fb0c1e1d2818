"""Write a bundle: the single place that computes file hashes and the manifest digest.

The training tools' packager and the SDK's tests both call :func:`write_bundle`, so the
writer and the verifying loader can never disagree on how a bundle is hashed.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .loader import sha256_hex, verify_files
from .manifest import (
    CARD_NAME,
    LABELS_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BundleManifest,
    LabelsFile,
    canonical_manifest_digest,
)

__all__ = ["write_bundle", "zip_bundle"]


def write_bundle(
    out_dir: str | Path,
    *,
    name: str,
    version: str,
    classifier: dict[str, Any],
    models: dict[str, bytes],
    labels: LabelsFile,
    detector: dict[str, Any] | None = None,
    variants: list[dict[str, Any]] | None = None,
    model_card: str = "",
    extra: dict[str, Any] | None = None,
) -> BundleManifest:
    """Write ``out_dir`` with the ONNX ``models`` (file name -> bytes), labels and card.

    ``classifier``/``detector``/``variants`` are :class:`ModelSpec`/:class:`VariantSpec`
    fields without ``sha256`` (filled in here). ``extra`` holds the other manifest fields
    (thresholds, metrics, provenance, data, min_sdk_version, created_at).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; bundles are written to fresh directories")
    payload: dict[str, bytes] = dict(models)
    payload[LABELS_NAME] = (labels.model_dump_json(indent=2) + "\n").encode("utf-8")
    payload[CARD_NAME] = (model_card or f"# {name} {version}\n").encode("utf-8")
    hashes = {fname: sha256_hex(data) for fname, data in sorted(payload.items())}

    def with_hash(spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "sha256": hashes[spec["file"]]}

    raw: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
        "classifier": with_hash(classifier),
        "detector": with_hash(detector) if detector else None,
        "variants": [with_hash(v) for v in variants or []],
        "files": hashes,
        "manifest_sha256": "",
    }
    # Round-trip through the model so defaults are explicit and types are JSON-native.
    raw = json.loads(BundleManifest.model_validate(raw).model_dump_json())
    raw["manifest_sha256"] = canonical_manifest_digest(raw)
    manifest_bytes = (json.dumps(raw, indent=2, sort_keys=True) + "\n").encode("utf-8")
    for fname, data in payload.items():
        (out / fname).write_bytes(data)
    (out / MANIFEST_NAME).write_bytes(manifest_bytes)
    return verify_files(out, {**payload, MANIFEST_NAME: manifest_bytes}).manifest


def zip_bundle(bundle_dir: str | Path, zip_path: str | Path) -> Path:
    """Zip a bundle directory (flat, deterministic order and timestamps)."""
    src, dst = Path(bundle_dir), Path(zip_path)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.iterdir()):
            info = zipfile.ZipInfo(p.name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes())
    return dst
