"""Every route over loopback HTTP, with keys and roles, against the tiny test bundle."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pillsnap_sdk import Identifier, IdentifyResult
from pillsnap_sdk.serve.app import MULTIPART_LOGGER
from pillsnap_sdk.serve.state import ServiceContext

from .conftest import png
from .live import Keys, Live, live_server, multipart, served, settings


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_and_ready_need_no_key(live: Live) -> None:
    assert live.request("GET", "/healthz").json() == {"status": "ok"}
    r = live.request("GET", "/readyz")
    assert r.status == 200
    assert r.json()["bundle"] == {"name": "tiny-test", "version": "1.0.0"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/bundle"),
        ("GET", "/v1/classes"),
        ("GET", "/metrics"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/identify/batch"),
        ("POST", "/v1/admin/reload"),
    ],
)
def test_keyed_routes_refuse_missing_and_wrong_keys(live: Live, method: str, path: str) -> None:
    r = live.request(method, path)
    assert r.status == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "Unauthorized"
    wrong = live.request(method, path, headers={"X-API-Key": "psk_not-a-real-key"})
    assert wrong.status == 403
    assert "psk_not-a-real-key" not in wrong.body.decode()  # keys are never echoed


def test_both_key_headers_work(live: Live, keys: Keys) -> None:
    assert live.request("GET", "/v1/classes", headers=_auth(keys.client)).status == 200
    assert live.request("GET", "/v1/classes", headers={"X-API-Key": keys.client}).status == 200
    assert live.request("GET", "/v1/classes", headers={"Authorization": "Basic abc"}).status == 401


def test_client_key_cannot_reload(live: Live, keys: Keys) -> None:
    r = live.request("POST", "/v1/admin/reload", headers=_auth(keys.client))
    assert r.status == 403
    assert "admin" in r.json()["error"]["message"]


def test_bundle_and_classes(live: Live, keys: Keys, tiny_bundle: Path) -> None:
    info = live.request("GET", "/v1/bundle", headers=_auth(keys.client)).json()
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert info["name"] == "tiny-test" and info["version"] == "1.0.0"
    assert info["manifest_sha256"] == manifest["manifest_sha256"]
    assert info["classes"] == 3
    assert set(info["models"]) == {"classifier", "detector"}
    assert info["models"]["classifier"]["sha256"] == manifest["classifier"]["sha256"]
    assert info["thresholds"]["unknown_threshold"] == pytest.approx(0.6)
    classes = live.request("GET", "/v1/classes", headers=_auth(keys.client)).json()["classes"]
    assert [c["name"] for c in classes] == ["red pill", "green pill", "blue pill"]


def test_identify_equals_in_process_sdk(
    live: Live, keys: Keys, tiny_bundle: Path, two_pills: bytes
) -> None:
    r = live.identify(two_pills, keys.client, top_k="2")
    assert r.status == 200, r.body
    got = IdentifyResult.model_validate_json(r.body)
    want = Identifier.from_bundle(tiny_bundle).identify(two_pills, top_k=2)
    assert got.mode_used == want.mode_used == "combo"
    assert [p.label.name if p.label else None for p in got.pills] == ["red pill", "blue pill"]
    assert [p.model_dump(exclude={"label"}) for p in got.pills] == [
        p.model_dump(exclude={"label"}) for p in want.pills
    ]
    assert all(len(p.candidates) == 2 for p in got.pills)


def test_identify_mode_single(live: Live, keys: Keys, two_pills: bytes) -> None:
    r = live.identify(two_pills, keys.client, mode="single")
    assert r.status == 200
    body = r.json()
    assert body["mode_used"] == "single" and len(body["pills"]) == 1
    assert body["pills"][0]["bbox"] is None


def test_batch_one_bad_image_does_not_fail_the_others(
    live: Live, keys: Keys, two_pills: bytes
) -> None:
    parts = [
        ("images", "a.png", "image/png", two_pills),
        ("images", "b.jpg", "image/jpeg", b"\xff\xd8 not really a jpeg"),
        ("images", "c.txt", "text/plain", b"hello"),
        ("images", "d.png", "image/png", png(np.full((64, 64, 3), (20, 230, 20), np.uint8))),
    ]
    r = live.post_parts("/v1/identify/batch", parts, keys.client)
    assert r.status == 200, r.body
    res = r.json()["results"]
    assert len(res) == 4
    assert [p["label"]["name"] for p in res[0]["result"]["pills"]] == ["red pill", "blue pill"]
    assert res[1]["status"] == 400 and res[1]["error"]["type"] == "InvalidImageError"
    assert res[2]["status"] == 415 and res[2]["error"]["type"] == "UnsupportedMediaType"
    assert res[3]["result"]["pills"][0]["label"]["name"] == "green pill"


def test_batch_limits(live: Live, keys: Keys, two_pills: bytes) -> None:
    assert live.post_parts("/v1/identify/batch", [], keys.client).status == 422
    many = [("images", f"{i}.png", "image/png", two_pills) for i in range(17)]  # max_batch 16
    r = live.post_parts("/v1/identify/batch", many, keys.client)
    assert r.status == 422
    assert "got 17" in r.json()["error"]["message"]


def test_bad_image_is_400(live: Live, keys: Keys) -> None:
    r = live.identify(b"GIF89a truncated", keys.client)
    assert r.status == 400
    assert r.json()["error"]["type"] == "InvalidImageError"


def test_not_an_image_type_is_415(live: Live, keys: Keys, two_pills: bytes) -> None:
    r = live.post_parts("/v1/identify", [("image", "x.txt", "text/plain", two_pills)], keys.client)
    assert r.status == 415
    r = live.request(
        "POST",
        "/v1/identify",
        json.dumps({"image": "x"}).encode(),
        {"Content-Type": "application/json", **_auth(keys.client)},
    )
    assert r.status == 415
    assert r.json()["error"]["type"] == "UnsupportedMediaType"


@pytest.mark.parametrize(
    "fields",
    [{"mode": "fast"}, {"top_k": "0"}, {"top_k": "many"}, {"top_k": "101"}],
)
def test_bad_parameters_are_422(
    live: Live, keys: Keys, two_pills: bytes, fields: dict[str, str]
) -> None:
    r = live.identify(two_pills, keys.client, **fields)
    assert r.status == 422
    assert r.json()["error"]["type"] == "InvalidArgument"


@pytest.mark.parametrize(
    "top_k",
    # int() accepted the first four (Arabic-Indic 3, underscore, padding, sign)
    ["\u0663", "1_0", " 7 ", "+5", "0x10", "1e2", "5.0", "nan", "inf", "1e999", "-1", "0101"],
)
def test_top_k_is_plain_ascii_digits(live: Live, keys: Keys, two_pills: bytes, top_k: str) -> None:
    r = live.identify(two_pills, keys.client, top_k=top_k)
    assert r.status == 422, r.body
    assert r.json()["error"] == {
        "type": "InvalidArgument",
        "message": "top_k must be a whole number 1..100 in ASCII digits (e.g. 5)",
    }


def test_top_k_edges_and_repeated_fields(live: Live, keys: Keys, two_pills: bytes) -> None:
    for top_k, want in (("1", 1), ("003", 3), ("100", 3), ("", 3)):  # 3 classes; "" = default
        r = live.identify(two_pills, keys.client, top_k=top_k)
        assert r.status == 200, (top_k, r.body)
        assert {len(p["candidates"]) for p in r.json()["pills"]} == {want}, top_k
    for name, values in (("top_k", (b"2", b"3")), ("mode", (b"single", b"single"))):
        parts = [("image", "a.png", "image/png", two_pills)]
        parts += [(name, None, None, v) for v in values]
        r = live.post_parts("/v1/identify", parts, keys.client)
        assert r.status == 422
        assert r.json()["error"]["message"] == f"send the field '{name}' at most once"


def test_malformed_multipart_is_400_without_library_warnings(
    live: Live, keys: Keys, two_pills: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """python-multipart logged a WARNING per malformed upload; now it is our DEBUG."""
    caplog.set_level(logging.DEBUG, logger="pillsnap.serve.multipart")
    body, _ = multipart([("image", "a.png", "image/png", two_pills)])
    bad = [
        (body, "multipart/form-data; boundary=zzz"),  # boundary mismatch
        (b"\x00\xff" * 1000, "multipart/form-data; boundary=abc"),  # garbage
        (b"--abc\r\nno colon here\r\n\r\nx\r\n--abc--\r\n", "multipart/form-data; boundary=abc"),
        (body, "multipart/form-data"),  # no boundary
    ]
    for data, content_type in bad:
        r = live.request(
            "POST",
            "/v1/identify",
            data,
            {"Content-Type": content_type, "X-API-Key": keys.client},
        )
        assert r.status == 400, r.body
        assert r.json()["error"]["type"] == "BadRequest"
    lib = [rec for rec in caplog.records if rec.name.startswith("python_multipart")]
    assert not lib, [rec.getMessage() for rec in lib]
    ours = [rec for rec in caplog.records if rec.name == "pillsnap.serve.multipart"]
    assert ours and all(rec.levelno == logging.DEBUG for rec in ours)
    assert any("Expected boundary character" in rec.getMessage() for rec in ours)
    # the library's own errors still pass, at their level
    caplog.clear()
    logging.getLogger(MULTIPART_LOGGER).error("disk full")
    assert [(rec.name, rec.levelno) for rec in caplog.records] == [
        (MULTIPART_LOGGER, logging.ERROR)
    ]


def test_missing_image_field_is_422(live: Live, keys: Keys, two_pills: bytes) -> None:
    r = live.post_parts("/v1/identify", [("photo", "a.png", "image/png", two_pills)], keys.client)
    assert r.status == 422
    r = live.post_parts("/v1/identify", [("image", None, None, b"text")], keys.client)
    assert r.status == 422


def test_unknown_path_is_json_404(live: Live) -> None:
    r = live.request("GET", "/nope")
    assert r.status == 404
    assert r.json()["error"]["type"] == "NotFound"
    assert live.request("GET", "/v1/identify").status == 405


def test_kiosk_page_is_self_contained(live: Live) -> None:
    r = live.request("GET", "/")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    page = r.body.decode()
    assert 'accept="image/*"' in page and "capture=" in page
    assert "Not sure: ask the pharmacist" in page
    for marker in ("http://", "https://", "//cdn", "<link", "src="):
        assert marker not in page, marker


def test_metrics_count_requests_pills_and_bundle(live: Live, keys: Keys, two_pills: bytes) -> None:
    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = live.request("GET", "/metrics", headers=_auth(keys.client)).body.decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    before = scrape()
    assert live.identify(two_pills, keys.client).status == 200
    assert live.identify(b"junk", keys.client).status == 400
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        k = (name, tuple(sorted(labels.items())))
        return after.get(k, 0.0) - before.get(k, 0.0)

    assert delta("pillsnap_requests_total", route="/v1/identify", status="200") == 1
    assert delta("pillsnap_requests_total", route="/v1/identify", status="400") == 1
    assert delta("pillsnap_pills_total", status="identified") == 2
    assert delta("pillsnap_stage_seconds_count", stage="detect") == 1
    assert delta("pillsnap_stage_seconds_count", stage="queue") == 1
    info = [k for k in after if k[0] == "pillsnap_bundle_info"]
    assert len(info) == 1 and dict(info[0][1])["version"] == "1.0.0"
    live.request("GET", "/random/path/123")
    assert not any("/random" in str(k) for k in scrape())  # route label is the template


def test_unknown_pill_is_reported_unknown(tiny_bundle: Path, keys: Keys) -> None:
    # A grey photo: no class reaches the 0.6 threshold -> status "unknown", no label.
    ctx = ServiceContext(settings(), keys=None, holder=served(tiny_bundle))
    with live_server(ctx) as srv:
        r = srv.identify(png(np.full((64, 64, 3), 128, np.uint8)), mode="single")
        assert r.status == 200
        pill = r.json()["pills"][0]
        assert pill["status"] == "unknown" and pill["label"] is None
        # no keys file (loopback only): every route is open, admin included
        assert srv.request("GET", "/v1/bundle").status == 200
        assert srv.request("POST", "/v1/admin/reload").status == 200
