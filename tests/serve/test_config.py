"""Settings, keys file, keygen and the CLI's refusals (no server needed)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pillsnap_sdk.cli import main
from pillsnap_sdk.serve import server
from pillsnap_sdk.serve.auth import (
    MAX_FILE_BYTES,
    KeysFileError,
    KeyStore,
    generate_key,
    hash_key,
    parse_keys,
    presented_key,
)
from pillsnap_sdk.serve.settings import (
    SettingsError,
    add_serve_arguments,
    is_loopback,
    settings_from_args,
)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    return p.parse_args(list(argv))


def test_flags_beat_env_beat_defaults() -> None:
    env = {"PILLSNAP_PORT": "9000", "PILLSNAP_MAX_QUEUE": "3", "PILLSNAP_BUNDLE": "/b"}
    s = settings_from_args(_args("--port", "9100"), env)
    assert (s.port, s.max_queue, s.bundle, s.host) == (9100, 3, Path("/b"), "127.0.0.1")
    d = settings_from_args(_args(), {})
    assert (d.port, d.max_upload_mb, d.bundle) == (8080, 20.0, None)
    assert d.max_upload_bytes == 20 * 1024 * 1024


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--port", "http"], {}, "--port: expected int"),
        ([], {"PILLSNAP_MAX_CONCURRENCY": "0"}, "--max-concurrency must be > 0"),
        (["--max-upload-mb", "-1"], {}, "--max-upload-mb must be > 0"),
        (["--max-queue", "-1"], {}, ">= 0"),
        (["--host", "0.0.0.0"], {}, "without --api-keys-file"),
        (["--host", "192.168.1.10"], {}, "without --api-keys-file"),
    ],
)
def test_bad_settings_are_refused(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle.replace("-", r"\-").replace(".", r"\.")):
        settings_from_args(_args(*argv), env)


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--drain-timeout-s", "inf", "expected float"),  # was an OverflowError traceback
        ("--drain-timeout-s", "1e999", "must be > 0 and <= 3600"),  # parses to inf
        ("--drain-timeout-s", "3601", "must be > 0 and <= 3600"),
        ("--drain-grace-s", "nan", "expected float"),  # NaN passed the old '< 0' check
        ("--read-timeout-s", "-inf", "expected float"),
        ("--max-upload-mb", "NaN", "expected float"),
        ("--max-upload-mb", "1_0", "expected float"),
        ("--port", "\u0663", "expected int"),  # Arabic-Indic 3: int() took it
        ("--port", "80_80", "expected int"),
        ("--port", " 7 ", "expected int"),
        ("--port", "0x50", "expected int"),
        ("--max-batch", "1e2", "expected int"),
        ("--threads", "99999999999", "must be > 0 and <= 256"),
        ("--max-concurrency", "1000", "must be > 0 and <= 256"),
        ("--max-queue", "100001", "must be >= 0 and <= 100000"),
        ("--body-timeout-s", "0", "must be > 0 and <= 3600"),
        ("--body-timeout-s", "inf", "expected float"),
        ("--max-connections", "1", "must be > 1 and <= 100000"),
        ("--max-connections", "1e3", "expected int"),
    ],
)
def test_numbers_are_strict_finite_and_in_range(flag: str, value: str, needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_args(_args(f"{flag}={value}"), {})
    assert flag in str(info.value) and needle in str(info.value)
    env_name = "PILLSNAP_" + flag[2:].replace("-", "_").upper()
    with pytest.raises(SettingsError, match=needle.replace(".", r"\.")):
        settings_from_args(_args(), {env_name: value})


def test_plain_numbers_still_accepted() -> None:
    s = settings_from_args(
        _args("--drain-timeout-s", "3600", "--read-timeout-s", ".5", "--max-upload-mb", "2e1"),
        {"PILLSNAP_DRAIN_GRACE_S": "0", "PILLSNAP_PORT": "0", "PILLSNAP_THREADS": "256"},
    )
    assert (s.drain_timeout_s, s.read_timeout_s, s.max_upload_mb) == (3600.0, 0.5, 20.0)
    assert (s.drain_grace_s, s.port, s.threads) == (0.0, 0, 256)


def test_cli_infinite_drain_timeout_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_start(*_: object) -> int:
        raise AssertionError("the server started with a bad --drain-timeout-s")

    monkeypatch.setattr(server, "serve", must_not_start)
    assert main(["serve", "--drain-timeout-s", "inf", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pillsnap: error: --drain-timeout-s")


def test_non_loopback_allowed_with_keys_file(tmp_path: Path) -> None:
    s = settings_from_args(_args("--host", "0.0.0.0", "--api-keys-file", str(tmp_path / "k")), {})
    assert s.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("host", "loop"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_keygen_line_round_trips() -> None:
    key, line = generate_key("kiosk-7", admin=True)
    assert key.startswith("psk_") and len(key) > 40
    (entry,) = parse_keys(line)
    assert (entry.id, entry.role, entry.digest) == ("kiosk-7", "admin", hash_key(key))
    store = KeyStore([entry])
    assert store.check(key) == entry
    assert store.check(key + "x") is None
    assert store.check("") is None
    assert store.check("a" * 10_000) is None  # over MAX_KEY_CHARS: refused without hashing
    other, _ = generate_key("kiosk-8")
    assert other != key


def test_keys_file_defaults_role_and_skips_comments() -> None:
    d = "ab" * 32
    entries = parse_keys(f"# ops keys\n\nk1 {d}\nk2 {d.upper()} admin  # on-call\n")
    assert [(e.id, e.role) for e in entries] == [("k1", "client"), ("k2", "admin")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("k1", "expected 'ID SHA256HEX"),
        ("k1 abc", "64 hex digits"),
        (f"k1 {'a' * 64} root", "role must be"),
        (f"k1 {'a' * 64}\nk1 {'b' * 64}", "listed twice"),
        (f"bad/id {'a' * 64}", "bad key ID"),
    ],
)
def test_bad_keys_file_lines(text: str, needle: str) -> None:
    with pytest.raises(KeysFileError, match=needle):
        parse_keys(text, "keys")


def test_keys_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read"):
        KeyStore.from_file(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(KeysFileError, match="no keys"):
        KeyStore.from_file(empty)


def test_keys_file_size_cap(tmp_path: Path) -> None:
    d = "ab" * 32
    at_cap = tmp_path / "at-cap"
    line = f"k1 {d}\n".encode()
    at_cap.write_bytes(line + b"#" * (MAX_FILE_BYTES - len(line)))
    assert len(KeyStore.from_file(at_cap)) == 1
    over = tmp_path / "over"
    over.write_bytes(line + b"#" * (MAX_FILE_BYTES - len(line) + 1))
    with pytest.raises(KeysFileError, match="larger than 1 MiB"):
        KeyStore.from_file(over)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
def test_keys_file_must_be_a_regular_file(tmp_path: Path) -> None:
    """A FIFO without a writer blocked start-up forever and /dev/zero was read forever (it
    reports size 0). Run in a child with a deadline, so a regression fails, not hangs."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from pillsnap_sdk.cli import main
        from pillsnap_sdk.serve.auth import KeyStore, KeysFileError
        for path in ({str(fifo)!r}, "/dev/zero", {str(tmp_path)!r}):
            try:
                KeyStore.from_file(Path(path))
            except KeysFileError as exc:
                print("refused:", exc)
        print("rc", main(["serve", "--api-keys-file", "/dev/zero", "--port", "1"]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines == [
        f"refused: keys file {fifo} is a device, FIFO or socket, not a regular file",
        "refused: keys file /dev/zero is a device, FIFO or socket, not a regular file",
        f"refused: keys file {tmp_path} is a directory, not a regular file",
        "rc 2",
    ]
    assert out.stderr == (
        "pillsnap: error: keys file /dev/zero is a device, FIFO or socket, not a regular file\n"
    )


def test_presented_key_headers() -> None:
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key(None, "xyz") == "xyz"
    assert presented_key("Basic abc", None) is None
    assert presented_key("Bearer ", None) is None
    assert presented_key(None, None) is None


def test_cli_keygen(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "keygen", "front-desk"]) == 0
    key, line = capsys.readouterr().out.splitlines()
    assert parse_keys(line)[0].digest == hash_key(key)
    assert main(["serve", "keygen", "x y"]) == 2


def test_cli_refuses_public_bind_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without --api-keys-file" in err


def test_cli_refuses_bad_keys_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "keys"
    bad.write_text("only-an-id\n")
    assert main(["serve", "--api-keys-file", str(bad), "--port", "1"]) == 2
    assert f"{bad}:1" in capsys.readouterr().err


def test_without_the_serve_extra_one_clear_line() -> None:
    code = (
        "import sys\n"
        "for m in ('fastapi', 'uvicorn', 'multipart', 'prometheus_client'):\n"
        "    sys.modules[m] = None\n"
        "from pillsnap_sdk.cli import main\n"
        "rc = main(['serve', 'keygen', 'k'])\n"
        "assert rc == 0, rc\n"
        "sys.exit(main(['serve', '--port', '1']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if not ln.startswith("# line 1")]
    assert len(lines) == 1, out.stderr
    assert "needs the serve extra" in lines[0] and "pillsnap[serve]" in lines[0]
    assert "fastapi" in lines[0]
