"""``pillsnap serve [...]`` and ``pillsnap serve keygen ID [--admin]``.

Reached from ``pillsnap_sdk.cli`` only when the subcommand runs. ``keygen`` needs nothing
beyond the standard library; serving needs the ``serve`` extra, and its absence is one clear
line on stderr (exit 1), not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence

from ..defaults import default_bundle_path
from ..errors import PillsnapError
from .auth import KeysFileError, KeyStore, generate_key
from .settings import SettingsError, add_serve_arguments, settings_from_args

__all__ = ["main"]

#: import name -> pip name of what the ``serve`` extra installs
_EXTRA = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "multipart": "python-multipart",
    "prometheus_client": "prometheus-client",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pillsnap serve",
        description="Serve the identifier over HTTP (and the kiosk page at /). "
        "`pillsnap serve keygen ID [--admin]` prints a new API key and its keys-file line.",
    )
    add_serve_arguments(p)
    return p


def _keygen_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pillsnap serve keygen",
        description="Print a new API key (line 1; shown only now) and its keys-file line "
        "'ID SHA256HEX ROLE' (line 2; append it to the keys file).",
    )
    p.add_argument("id", metavar="ID", help="who the key is for, e.g. kiosk-3")
    p.add_argument("--admin", action="store_true", help="may call /v1/admin/reload")
    return p


def missing_extra() -> list[str]:
    """pip names of the ``serve`` extra's packages that cannot be imported."""
    out = []
    for module, pip_name in _EXTRA.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(pip_name)
    return out


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["keygen"]:
        kargs = _keygen_parser().parse_args(argv[1:])
        try:
            key, line = generate_key(kargs.id, admin=kargs.admin)
        except KeysFileError as exc:
            print(f"pillsnap: error: {exc}", file=sys.stderr)
            return 2
        print(key)
        print(line)
        print(
            "# line 1: the key (shown once, give it to the client); line 2: append to "
            "the keys file",
            file=sys.stderr,
        )
        return 0
    args = _parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        if settings.api_keys_file is not None:
            KeyStore.from_file(settings.api_keys_file)  # refuse a bad file before anything else
        bundle = settings.bundle or default_bundle_path()
    except (SettingsError, KeysFileError) as exc:
        print(f"pillsnap: error: {exc}", file=sys.stderr)
        return 2
    except PillsnapError as exc:
        print(f"pillsnap: error: {exc}", file=sys.stderr)
        return 1
    missing = missing_extra()
    if missing:
        print(
            f"pillsnap: error: `pillsnap serve` needs the serve extra (missing: "
            f"{', '.join(missing)}); install it with: pip install 'pillsnap[serve]'",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    from .server import serve

    return serve(settings, bundle)
