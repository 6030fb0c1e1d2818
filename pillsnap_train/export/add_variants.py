"""Add gated precision variants to an already-published bundle, without retraining.

Why: a variant is built from the bundle's own fp32 classifier and the release's data, so
a better INT8 recipe can ship as a minor version (2.0.0 -> 2.1.0) whose fp32 models,
labels and thresholds are byte-identical to the published ones; only a variant that
passes the same gate as in a full release is added.

Calibration crops come from the *training* split and the gate from the grouped
*validation* split of the config's work dir (``pillsnap-train ingest`` rebuilds it from
the sources; no model is trained); the dataset's sha256 must match the bundle's
provenance, or the gate would measure a split the bundle was never validated on.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pillsnap_sdk.bundle.loader import Bundle, load_bundle
from pillsnap_sdk.bundle.manifest import CARD_NAME, MANIFEST_NAME
from pillsnap_sdk.bundle.writer import write_bundle, zip_bundle
from pillsnap_sdk.version import parse_semver

from ..config import ReleaseConfig

__all__ = ["AddVariantsResult", "add_variants", "add_variants_command", "next_minor"]


@dataclass(frozen=True)
class AddVariantsResult:
    """The gate rows of every variant tried, and the bundle written (None: none passed)."""

    reports: list[dict[str, Any]]
    bundle: Path | None
    zip: Path | None
    version: str


def next_minor(version: str) -> str:
    """``2.0.0`` -> ``2.1.0``: a variant added is a compatible feature, not a fix."""
    major, minor, _ = parse_semver(version)
    return f"{major}.{minor + 1}.0"


def add_variants(
    cfg: ReleaseConfig,
    bundle_path: Path,
    out_dir: Path,
    *,
    version: str | None = None,
    command: str = "",
) -> AddVariantsResult:
    """Build ``cfg.export.variants`` from the bundle's classifier, gate them, and write
    ``out_dir/<name>`` (+ zip) as ``version`` with the released ones added. ``version``
    defaults to the config's when that is newer than the bundle's, else the next minor."""
    from ..release import Release
    from ..release.variants import build_gated_variants
    from ..release.workdir import GateFailure

    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    if m.name != cfg.name:
        raise GateFailure(f"bundle {m.name!r} was not built by config {cfg.name!r}")
    if m.classifier.precision != "fp32":
        raise GateFailure(
            f"bundle {m.name} {m.version} serves an {m.classifier.precision} classifier: "
            "variants are built from an fp32 classifier; rebuild with `pillsnap-train release`"
        )
    rel = Release(cfg, read_only=True)
    ingest = rel.done("ingest")
    if ingest is None:
        raise GateFailure(f"no ingested data in {rel.work}: run `pillsnap-train ingest` first")
    if m.provenance.dataset_sha256 and ingest["dataset_sha256"] != m.provenance.dataset_sha256:
        raise GateFailure(
            f"dataset sha256 {ingest['dataset_sha256'][:12]} of {rel.work} is not the bundle's "
            f"({m.provenance.dataset_sha256[:12]}): its split would not be the bundle's"
        )
    new_version = version or (
        cfg.version
        if parse_semver(cfg.version) > parse_semver(m.version)
        else next_minor(m.version)
    )
    if parse_semver(new_version) <= parse_semver(m.version):
        raise GateFailure(f"version {new_version} is not newer than the bundle's {m.version}")
    with tempfile.TemporaryDirectory(prefix="pillsnap-variants-") as tmp:
        fp32 = Path(tmp) / m.classifier.file
        fp32.write_bytes(bundle.model_bytes(m.classifier.file))
        reports = build_gated_variants(rel, fp32)
        released = [r for r in reports if r["released"]]
        if not released:
            return AddVariantsResult(reports, None, None, new_version)
        files = {r["file"]: (Path(tmp) / r["file"]).read_bytes() for r in released}
        stage = Path(tmp) / "bundle"
        _write(bundle, stage, new_version, files, released, cfg, command)
        load_bundle(stage)  # verifies as users will load it, before anything is replaced
        dest = _replace(stage, out_dir / cfg.name)
    zips = Path(cfg.work_dir) / "bundle"  # where a release leaves its zip, not output_dir
    zips.mkdir(parents=True, exist_ok=True)
    zip_path = zip_bundle(dest, zips / f"{cfg.name}-{new_version}.zip")
    return AddVariantsResult(reports, dest, zip_path, new_version)


def _replace(stage: Path, dest: Path) -> Path:
    """``dest`` becomes the staged bundle (the old one is read into memory already)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(stage, dest)
    return dest


def _write(
    bundle: Bundle,
    out: Path,
    version: str,
    files: dict[str, bytes],
    released: list[dict[str, Any]],
    cfg: ReleaseConfig,
    command: str,
) -> None:
    """The bundle again, byte for byte, plus ``files`` as classifier variants."""
    m = bundle.manifest
    raw = json.loads(bundle.files[MANIFEST_NAME])
    models = {m.classifier.file: bundle.model_bytes(m.classifier.file)}
    if m.detector is not None:
        models[m.detector.file] = bundle.model_bytes(m.detector.file)
    for v in m.variants:
        models[v.file] = bundle.model_bytes(v.file)
    models.update(files)
    kept = [v.model_dump(exclude={"sha256"}) for v in m.variants if v.file not in files]
    new = [
        {
            "role": "classifier",
            "file": r["file"],
            "precision": r["precision"],
            "metrics": {
                "top1": r["top1"],
                "top1_drop": r["top1_drop"],
                "speedup": r["speedup"],
                "latency_ms": r["latency_ms"],
            },
        }
        for r in released
    ]
    provenance = dict(raw["provenance"])
    training = dict(provenance.get("training_config", {}))
    # The variant's recipe is part of how this bundle was built; the weights' is unchanged.
    training["export"] = json.loads(cfg.export.model_dump_json())
    training["version"] = version
    provenance["training_config"] = training
    extra = {k: raw[k] for k in ("min_sdk_version", "thresholds", "metrics", "data") if k in raw}
    extra["provenance"] = provenance
    card = bundle.files.get(CARD_NAME, b"").decode("utf-8")
    write_bundle(
        out,
        name=m.name,
        version=version,
        classifier=m.classifier.model_dump(exclude={"sha256"}),
        detector=m.detector.model_dump(exclude={"sha256"}) if m.detector else None,
        variants=kept + new,
        models=models,
        labels=bundle.labels,
        model_card=card_with_variants(card, m.version, version, released, command),
        extra=extra,
    )


def card_with_variants(
    card: str, old: str, new: str, released: list[dict[str, Any]], command: str
) -> str:
    """The model card with its title at ``new`` and the released variants' rows (measured
    now) in its "Precision variants" section, which says how they were added."""
    from .variants import variant_table

    card = re.sub(rf"^(# \S+) {re.escape(old)}$", rf"\1 {new}", card, count=1, flags=re.M)
    lines = [
        "## Precision variants",
        "",
        f"Added in {new} to the {old} models (byte-identical) without retraining"
        + (f": `{command}`." if command else "."),
        "Select one with `Identifier.from_bundle(path, precision=...)` or "
        "`pillsnap identify --precision ...`.",
        "",
        *variant_table(released),
        "",
        f"Measured {datetime.now(UTC).date()} on {_machine()}: top-1 on the grouped validation "
        "crops; latency is the median of 10 runs on a batch of 8 of them (milliseconds on a "
        "busy machine are contended; the speed-up compares runs of the same session).",
        *_build_lines(released),
        "",
    ]
    section = "\n".join(lines) + "\n"
    pattern = re.compile(r"^## Precision variants\n.*?(?=^## )", re.S | re.M)
    if pattern.search(card):
        return pattern.sub(lambda _: section, card, count=1)
    return card.rstrip("\n") + "\n\n" + section


def _machine() -> str:
    import platform

    from pillsnap_sdk.batch.pool import available_cpus

    cpus = available_cpus()
    return f"CPU ({platform.processor() or platform.machine()}, {cpus} cores)"


def _build_lines(released: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in released:
        b = r.get("build") or {}
        if b:
            out.append(
                f"\n{r['precision']}: static QDQ, {b['calibration']} ranges from "
                f"{b['n_calibration']} training crops, per-channel weights: "
                f"{b['per_channel']}, 7-bit weights: {b['reduce_range']}; kept in float: "
                f"{', '.join(b['keep_float']) or 'nothing'} "
                f"({len(b['kept_float_nodes'])} nodes)."
            )
    return out


def add_variants_command(args: Any) -> int:
    """``pillsnap-train bundle add-variants``: 0 a variant was added, 1 none passed or a
    gate/check refused, 2 a bad config or bundle."""
    import sys

    import yaml

    from pillsnap_sdk.errors import PillsnapError

    from ..config import load_config
    from ..release.workdir import GateFailure

    try:
        cfg = load_config(args.config)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"pillsnap-train: error: config {args.config}: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path(cfg.output_dir)
    command = f"pillsnap-train bundle add-variants {args.bundle_dir} --config {args.config}"
    try:
        res = add_variants(cfg, args.bundle_dir, out, version=args.version, command=command)
    except PillsnapError as exc:
        print(f"pillsnap-train: error: {exc}", file=sys.stderr)
        return 2
    except GateFailure as exc:
        print(f"pillsnap-train: RELEASE BLOCKED: {exc}", file=sys.stderr)
        return 1
    for r in res.reports:
        print(
            f"  {r['precision']:<5} {'released' if r['released'] else 'rejected':<9} {r['reason']}"
        )
    if res.bundle is None:
        print("pillsnap-train: no variant passed its gate; no bundle written", file=sys.stderr)
        return 1
    print(f"  bundle: {res.bundle} ({res.version})\n  zip:    {res.zip}")
    return 0
