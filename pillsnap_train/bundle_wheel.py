"""Turn a verified bundle into an installable wheel (``pillsnap-train bundle wheel``).

Why a wheel: ``pip install pillsnap`` alone cannot name a pill. A bundle wheel carries the
bundle files as package data and registers ``NAME = module:bundle_path`` in the entry-point
group ``pillsnap.bundles``; :meth:`pillsnap_sdk.Identifier.from_pretrained` and
``pillsnap identify`` find it there (the pattern spaCy uses for its models).

The wheel is written directly with :mod:`zipfile` (format: PyPA "binary distribution
format" with a RECORD of sha256 digests), not through a build backend: it needs no
network, no build isolation and no setuptools, and the same bundle always gives the same
bytes (fixed timestamps, sorted members). The bundle is verified (hashes, file list,
models loadable) before anything is written.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

from pillsnap_sdk import Identifier
from pillsnap_sdk.bundle.loader import load_bundle
from pillsnap_sdk.installed import ENTRY_POINT_GROUP
from pillsnap_sdk.version import parse_semver

__all__ = ["bundle_wheel", "distribution_name"]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: reproducible wheels
_SEMVER_PRE = re.compile(r"^(\d+\.\d+\.\d+)-(a|b|rc|alpha|beta)\.?(\d+)$")
_INIT = '''"""Model bundle {name} {version} for pillsnap (built by `pillsnap-train bundle wheel`).

Use it with ``pillsnap_sdk.Identifier.from_pretrained({name!r})``.
"""

from pathlib import Path

__all__ = ["bundle_path"]


def bundle_path() -> Path:
    """The directory that holds the bundle files."""
    return Path(__file__).resolve().parent / "bundle"
'''


def distribution_name(bundle_name: str) -> str:
    """``pushin-pill-edge`` -> ``pillsnap-bundle-pushin-pill-edge`` (PEP 503-normalised)."""
    return "pillsnap-bundle-" + re.sub(r"[-_.]+", "-", bundle_name).lower()


def _wheel_version(version: str) -> str:
    """Bundle semver -> PEP 440 (``1.2.0-rc.1`` -> ``1.2.0rc1``); build metadata refused."""
    v = version.strip()
    match = _SEMVER_PRE.match(v)
    if match:
        kind = {"alpha": "a", "beta": "b"}.get(match.group(2), match.group(2))
        return f"{match.group(1)}{kind}{match.group(3)}"
    parse_semver(v)
    if "-" in v or "+" in v:
        raise ValueError(
            f"bundle version {version!r} has no PEP 440 equivalent for a wheel; use "
            "MAJOR.MINOR.PATCH or MAJOR.MINOR.PATCH-rc.N"
        )
    return v


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def bundle_wheel(bundle_dir: str | Path, out_dir: str | Path) -> Path:
    """Verify ``bundle_dir`` (directory or zip) and write its wheel into ``out_dir``.

    Returns the wheel's path. Raises :class:`pillsnap_sdk.BundleError` for a bundle that
    does not verify, ``ValueError`` for a version a wheel cannot carry.
    """
    bundle = load_bundle(bundle_dir)
    Identifier(bundle).close()  # the models must load, as `pillsnap bundle verify` checks
    m = bundle.manifest
    dist = distribution_name(m.name)
    module = dist.replace("-", "_")
    version = _wheel_version(m.version)
    stem = f"{module}-{version}"
    info = f"{stem}.dist-info"
    members: dict[str, bytes] = {
        f"{module}/__init__.py": _INIT.format(name=m.name, version=m.version).encode(),
    }
    for rel, data in bundle.files.items():
        members[f"{module}/bundle/{rel}"] = data
    members[f"{info}/METADATA"] = _metadata(dist, version, m.name, m.version, m.min_sdk_version)
    members[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: pillsnap-train bundle wheel\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    members[f"{info}/entry_points.txt"] = (
        f"[{ENTRY_POINT_GROUP}]\n{m.name} = {module}:bundle_path\n"
    ).encode()
    members[f"{info}/top_level.txt"] = f"{module}\n".encode()
    record = [f"{name},{_digest(data)},{len(data)}" for name, data in sorted(members.items())]
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{stem}-py3-none-any.whl"
    tmp = wheel.with_name(wheel.name + ".part")
    # Package files first, dist-info last (RECORD at the very end), as installers expect.
    order = sorted(members, key=lambda n: (n.startswith(info), n == f"{info}/RECORD", n))
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in order:
            zi = zipfile.ZipInfo(name, date_time=_EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, members[name])
    tmp.replace(wheel)
    return wheel


def _metadata(dist: str, version: str, name: str, semver: str, min_sdk: str) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {dist}",
        f"Version: {version}",
        f"Summary: pillsnap model bundle {name} {semver} (verified ONNX models and labels)",
        f"Requires-Dist: pillsnap>={min_sdk}",
        "Requires-Python: >=3.11",
        "",
        f"Model bundle `{name}` {semver} for pillsnap. Its MODEL_CARD.md, inside the "
        "package's `bundle/` folder, states the data, licences, metrics and limits.",
        "",
    ]
    return "\n".join(lines).encode()
