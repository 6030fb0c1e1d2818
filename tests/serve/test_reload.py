"""Hot reload: success swaps, failure keeps the old bundle, in-flight requests finish on it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tinymodels import make_bundle

from pillsnap_sdk.serve.state import ServiceContext

from .live import Keys, Live, live_server, served, settings
from .test_limits import blocking_identifier


@pytest.fixture(scope="module")
def bundle_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("v2") / "tiny-v2", version="2.0.0")


@pytest.fixture
def srv(tiny_bundle: Path, keys: Keys) -> Iterator[Live]:
    ctx = ServiceContext(settings(), keys=keys.store, holder=served(tiny_bundle))
    with live_server(ctx) as s:
        yield s


def _reload(srv: Live, key: str, bundle: Path | str | None = None) -> tuple[int, dict[str, object]]:
    body = json.dumps({"bundle": str(bundle)}).encode() if bundle is not None else b""
    r = srv.request(
        "POST",
        "/v1/admin/reload",
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    return r.status, r.json()


def _version(srv: Live, key: str) -> str:
    info = srv.request("GET", "/v1/bundle", headers={"X-API-Key": key}).json()
    return str(info["version"])


def _bundle_info_versions(srv: Live, key: str) -> list[str]:
    text = srv.request("GET", "/metrics", headers={"X-API-Key": key}).body.decode()
    return [
        line.split('version="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("pillsnap_bundle_info{")
    ]


def test_reload_success_swaps(srv: Live, keys: Keys, bundle_v2: Path, two_pills: bytes) -> None:
    status, body = _reload(srv, keys.admin, bundle_v2)
    assert status == 200, body
    assert body["bundle"]["version"] == "2.0.0"  # type: ignore[index]
    assert body["previous"]["version"] == "1.0.0"  # type: ignore[index]
    assert _version(srv, keys.client) == "2.0.0"
    assert srv.identify(two_pills, keys.client).json()["bundle"]["version"] == "2.0.0"
    assert _bundle_info_versions(srv, keys.client) == ["2.0.0"]
    # no body: reload the path being served (e.g. after replacing files in place)
    status, body = _reload(srv, keys.admin)
    assert status == 200 and body["bundle"]["version"] == "2.0.0"  # type: ignore[index]


def test_reload_failure_keeps_the_old_bundle(
    srv: Live, keys: Keys, tiny_bundle: Path, tmp_path: Path, two_pills: bytes
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_bundle, tampered)
    labels = tampered / "labels.json"
    labels.write_text(labels.read_text().replace("red pill", "rod pill"))
    status, body = _reload(srv, keys.admin, tampered)
    assert status == 422
    assert body["error"]["type"] == "BundleIntegrityError"  # type: ignore[index]
    assert "labels.json" in body["error"]["message"]  # type: ignore[index]
    assert body["serving"]["version"] == "1.0.0"  # type: ignore[index]

    status, body = _reload(srv, keys.admin, tmp_path / "missing")
    assert status == 422 and body["error"]["type"] == "BundleError"  # type: ignore[index]

    r = srv.identify(two_pills, keys.client)
    assert r.status == 200
    assert [p["label"]["name"] for p in r.json()["pills"]] == ["red pill", "blue pill"]
    assert _version(srv, keys.client) == "1.0.0"
    text = srv.request("GET", "/metrics", headers={"X-API-Key": keys.client}).body.decode()
    assert 'pillsnap_reloads_total{result="failed"} 2.0' in text


@pytest.mark.parametrize("body", [b"not json", b'{"path": "x"}', b'{"bundle": 3}', b"[1]"])
def test_reload_bad_body_is_422(srv: Live, keys: Keys, body: bytes) -> None:
    r = srv.request("POST", "/v1/admin/reload", body, {"X-API-Key": keys.admin})
    assert r.status == 422
    assert r.json()["error"]["type"] == "InvalidArgument"


def test_in_flight_request_finishes_on_the_old_bundle(
    tiny_bundle: Path, bundle_v2: Path, keys: Keys, two_pills: bytes
) -> None:
    old = blocking_identifier(tiny_bundle)
    ctx = ServiceContext(settings(), keys=keys.store, holder=served(tiny_bundle, old))
    try:
        with live_server(ctx) as srv, ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(srv.identify, two_pills, keys.client)
            assert old.entered.acquire(timeout=20)
            status, _ = _reload(srv, keys.admin, bundle_v2)
            assert status == 200
            fresh = srv.identify(two_pills, keys.client)
            assert fresh.json()["bundle"]["version"] == "2.0.0"
            old.release.set()
            done = in_flight.result(timeout=30)
            assert done.status == 200
            assert done.json()["bundle"]["version"] == "1.0.0"
    finally:
        old.release.set()
