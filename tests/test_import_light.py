"""The runtime must stay light: importing it never pulls in torch & co."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "torchvision", "timm", "ultralytics", "onnx", "pillsnap_train", "ray")
# The serve extra is optional: importing the runtime or its CLI must not need it.
SERVE_EXTRA = ("fastapi", "starlette", "uvicorn", "multipart", "prometheus_client")


def test_import_pillsnap_sdk_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, pillsnap_sdk, pillsnap_sdk.cli, pillsnap_sdk.annotate, pillsnap_sdk.batch;"
        "import pillsnap_sdk.integrations.ray;"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY + SERVE_EXTRA!r}];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"


def test_public_api_names() -> None:
    import pillsnap_sdk

    for name in (
        "Identifier",
        "IdentifyResult",
        "PillResult",
        "Candidate",
        "BBox",
        "PillsnapError",
        "InvalidImageError",
        "BundleError",
        "BundleIntegrityError",
        "UnsupportedBundleError",
        "ProviderUnavailableError",
    ):
        assert hasattr(pillsnap_sdk, name), name
    errs = [
        pillsnap_sdk.InvalidImageError,
        pillsnap_sdk.BundleError,
        pillsnap_sdk.BundleIntegrityError,
        pillsnap_sdk.UnsupportedBundleError,
        pillsnap_sdk.ProviderUnavailableError,
    ]
    assert all(issubclass(e, pillsnap_sdk.PillsnapError) for e in errs)
    assert issubclass(pillsnap_sdk.BundleIntegrityError, pillsnap_sdk.BundleError)
