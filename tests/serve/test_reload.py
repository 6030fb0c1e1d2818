"""Hot reload: success swaps, failure keeps the old bundle, in-flight requests finish on it."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tinymodels
from onnx import TensorProto, helper, numpy_helper
from tinymodels import make_bundle

from pillsnap_sdk.serve.routes import MAX_RELOAD_BODY
from pillsnap_sdk.serve.state import ServiceContext

from .conftest import png
from .live import Keys, Live, live_server, served, settings
from .test_limits import blocking_identifier


@pytest.fixture(scope="module")
def bundle_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("v2") / "tiny-v2", version="2.0.0")


def _blowup_classifier(batch: int | str = "N", size: int = tinymodels.CLS_SIZE) -> bytes:
    """logits = per-channel contrast (max - min) x 3e38 x 3e38: exactly 0 on a flat photo,
    so a warm-up on a blank photo passes, but inf (float32 overflow) on any texture."""
    nodes = [
        helper.make_node("GlobalMaxPool", ["input"], ["mx"]),
        helper.make_node("Neg", ["input"], ["neg"]),
        helper.make_node("GlobalMaxPool", ["neg"], ["neg_min"]),
        helper.make_node("Add", ["mx", "neg_min"], ["contrast"]),
        helper.make_node("Flatten", ["contrast"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Mul", ["mm", "S"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "blowup_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
        initializer=[
            numpy_helper.from_array(np.full((3, 3), 3e38, np.float32), "W"),
            numpy_helper.from_array(np.array(3e38, np.float32), "S"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", tinymodels.OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def blowup_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed, valid bundle whose classifier output is non-finite on textured photos."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tinymodels, "classifier_onnx", _blowup_classifier)
        return make_bundle(tmp_path_factory.mktemp("blowup") / "blowup", version="9.0.0")


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


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"[" * 100_000, 413, "reload body over"),  # was RecursionError: 500 + traceback
        (b"[" * 10_000, 422, "nests too deeply"),  # under the size cap: the depth check
        (b'{"bundle": ' + b"[" * 20 + b"]" * 20 + b"}", 422, "nests too deeply"),
        (b'{"bundle": "' + b"x" * MAX_RELOAD_BODY + b'"}', 413, "reload body over"),
        (b"\xff\xfe[\x00", 422, "UTF-8"),
    ],
)
def test_reload_hostile_bodies_are_4xx_without_traceback(
    srv: Live, keys: Keys, body: bytes, status: int, needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = srv.request("POST", "/v1/admin/reload", body, {"X-API-Key": keys.admin})
    assert r.status == status, r.body
    assert needle in r.json()["error"]["message"]
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


def test_brackets_inside_strings_do_not_count_as_nesting(srv: Live, keys: Keys) -> None:
    status, body = _reload(srv, keys.admin, "/nonexistent/" + "[{" * 50)
    assert status == 422
    assert body["error"]["type"] == "BundleError"  # type: ignore[index]  # parsed, then refused


def test_reload_refuses_a_bundle_whose_output_blows_up_on_texture(
    srv: Live, keys: Keys, blowup_bundle: Path, two_pills: bytes
) -> None:
    """The blank-photo warm-up passed this bundle, and then every real photo failed."""
    status, body = _reload(srv, keys.admin, blowup_bundle)
    assert status == 422, body
    assert body["error"]["type"] == "BundleError"  # type: ignore[index]
    message = body["error"]["message"]  # type: ignore[index]
    assert "warm-up on a" in message and "non-finite" in message
    assert body["serving"]["version"] == "1.0.0"  # type: ignore[index]
    assert srv.identify(two_pills, keys.client).json()["bundle"]["version"] == "1.0.0"


def test_typed_sdk_error_during_a_request_is_a_json_500(
    blowup_bundle: Path, two_pills: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Served without the warm-up: the SDK's typed error becomes a 500 with its type name,
    one log line and no traceback, on both identify routes."""
    caplog.set_level(logging.INFO, logger="pillsnap.serve")
    ctx = ServiceContext(settings(), keys=None, holder=served(blowup_bundle))
    with live_server(ctx) as s:
        flat = s.identify(png(np.full((64, 64, 3), 128, np.uint8)), mode="single")
        assert flat.status == 200  # the blind spot of a blank-photo warm-up
        replies = [
            s.identify(two_pills, mode="single"),
            s.post_parts(
                "/v1/identify/batch",
                [("images", "a.png", "image/png", two_pills), ("mode", None, None, b"single")],
            ),
        ]
    for r in replies:
        assert r.status == 500
        err = r.json()["error"]
        assert err["type"] == "BundleError" and "non-finite" in err["message"]
    logged = [rec for rec in caplog.records if rec.name == "pillsnap.serve"]
    assert [rec.levelno for rec in logged] == [logging.ERROR, logging.ERROR]
    assert all("SDK error: BundleError" in rec.getMessage() for rec in logged)
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
