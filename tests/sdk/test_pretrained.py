"""``Identifier.from_pretrained``: installed bundle packages and pinned-URL downloads.

The URL tests run against a loopback HTTP server (127.0.0.1, port chosen by the OS,
bounded timeouts): the SDK never reaches the network unless asked, and then only the URL
it was given.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tinymodels import quadrant_image

from pillsnap_sdk import (
    BundleError,
    BundleIntegrityError,
    Identifier,
    InvalidArgumentError,
)
from pillsnap_sdk.bundle.writer import zip_bundle
from pillsnap_sdk.defaults import default_bundle_path
from pillsnap_sdk.installed import installed_bundle_names

IMG = quadrant_image({0: "red", 3: "blue"})
_SEQ = itertools.count()


# -- installed bundle packages ---------------------------------------------------------
def _fake_install(site: Path, bundle: Path, name: str, module: str) -> Path:
    """What pip leaves behind for a bundle wheel: a module and a dist-info with the EP.

    Module names are made unique per call: an imported module stays in sys.modules.
    """
    module = f"{module}_{next(_SEQ)}"
    pkg = site / module
    shutil.copytree(bundle, pkg / "bundle")
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n\n"
        "def bundle_path():\n    return Path(__file__).resolve().parent / 'bundle'\n"
    )
    info = site / f"{module}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[pillsnap.bundles]\n{name} = {module}:bundle_path\n")
    return pkg


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.delenv("PILLSNAP_BUNDLE", raising=False)
    return d


def test_from_pretrained_finds_installed_package(site: Path, tiny_bundle: Path) -> None:
    _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    assert "tiny-test" in installed_bundle_names()
    with Identifier.from_pretrained("tiny-test") as idf:
        assert idf.manifest.name == "tiny-test"
        assert {p.label.name for p in idf.identify(IMG).pills if p.label} == {
            "red pill",
            "blue pill",
        }


def test_from_pretrained_unknown_name_lists_installed(site: Path, tiny_bundle: Path) -> None:
    _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    with pytest.raises(BundleError, match=r"no installed bundle package named 'nope'.*tiny-test"):
        Identifier.from_pretrained("nope")


def test_installed_package_is_verified(site: Path, tiny_bundle: Path) -> None:
    pkg = _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    (pkg / "bundle" / "labels.json").write_text("{}")
    with pytest.raises(BundleIntegrityError, match=r"labels\.json"):
        Identifier.from_pretrained("tiny-test")


def test_broken_package_is_a_bundle_error(site: Path, tiny_bundle: Path) -> None:
    pkg = _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    (pkg / "__init__.py").write_text("raise RuntimeError('x')\n")
    with pytest.raises(BundleError, match="cannot be loaded"):
        Identifier.from_pretrained("tiny-test")


def test_sha256_with_a_name_is_refused(site: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="pins a URL"):
        Identifier.from_pretrained("tiny-test", sha256="0" * 64)


def test_default_bundle_falls_back_to_the_installed_package(
    site: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    not_a_checkout = tmp_path / "elsewhere"
    not_a_checkout.mkdir()
    (not_a_checkout / "models").mkdir()  # a stray models/ dir must not be trusted
    (not_a_checkout / "models" / "DEFAULT").write_text("evil\n")
    pkg = _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    if len(installed_bundle_names()) != 1:
        pytest.skip("other bundle packages are installed in this environment")
    assert default_bundle_path(root=not_a_checkout) == pkg / "bundle"


def test_default_bundle_several_installed_asks_to_choose(
    site: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    _fake_install(site, tiny_bundle, "tiny-two", "pillsnap_bundle_tiny_two")
    with pytest.raises(BundleError, match="several bundle packages"):
        default_bundle_path(root=tmp_path)


def test_pillsnap_bundle_env_takes_an_installed_name(
    site: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = _fake_install(site, tiny_bundle, "tiny-test", "pillsnap_bundle_tiny_test")
    monkeypatch.setenv("PILLSNAP_BUNDLE", "tiny-test")
    assert default_bundle_path() == pkg / "bundle"


def test_checkout_default_still_used_in_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PILLSNAP_BUNDLE", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert default_bundle_path(root=repo) == repo / "models" / "pushin-pill-edge"


# -- pinned URL downloads ----------------------------------------------------------------
class _Server:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture()
def zipped(tiny_bundle: Path, tmp_path: Path) -> bytes:
    return zip_bundle(tiny_bundle, tmp_path / "tiny.zip").read_bytes()


@pytest.fixture()
def server(zipped: bytes) -> Iterator[_Server]:
    srv = _Server({"/tiny.zip": zipped, "/other.zip": b"PK\x05\x06" + b"\0" * 18})
    yield srv
    srv.close()


def test_url_download_verified_cached_and_reused(
    server: _Server, zipped: bytes, home: Path
) -> None:
    digest = hashlib.sha256(zipped).hexdigest()
    idf = Identifier.from_pretrained(server.url("/tiny.zip"), sha256=digest)
    assert idf.manifest.name == "tiny-test"
    cached = home / "bundles" / f"{digest}.zip"
    assert cached.read_bytes() == zipped
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temp leftovers
    Identifier.from_pretrained(server.url("/tiny.zip"), sha256=digest.upper())
    assert server.hits == ["/tiny.zip"]  # second call served from the cache


def test_url_wrong_sha256_caches_nothing(server: _Server, home: Path) -> None:
    with pytest.raises(BundleIntegrityError, match="expected"):
        Identifier.from_pretrained(server.url("/tiny.zip"), sha256="ab" * 32)
    assert list((home / "bundles").iterdir()) == []


def test_url_corrupted_cache_is_fetched_again(server: _Server, zipped: bytes, home: Path) -> None:
    digest = hashlib.sha256(zipped).hexdigest()
    (home / "bundles").mkdir(parents=True)
    (home / "bundles" / f"{digest}.zip").write_bytes(b"not the bundle")
    Identifier.from_pretrained(server.url("/tiny.zip"), sha256=digest)
    assert server.hits == ["/tiny.zip"]
    assert (home / "bundles" / f"{digest}.zip").read_bytes() == zipped


def test_url_needs_a_sha256(server: _Server, home: Path) -> None:
    for bad in (None, "", "xyz", "0" * 63):
        with pytest.raises(InvalidArgumentError, match="sha256"):
            Identifier.from_pretrained(server.url("/tiny.zip"), sha256=bad)
    assert server.hits == []


def test_url_http_error_is_a_bundle_error(server: _Server, home: Path) -> None:
    with pytest.raises(BundleError, match="HTTP 404"):
        Identifier.from_pretrained(server.url("/missing.zip"), sha256="0" * 64)


def test_url_oversize_download_refused(
    server: _Server, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pillsnap_sdk.download as download

    monkeypatch.setattr(download, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(BundleError, match="larger than any bundle"):
        Identifier.from_pretrained(server.url("/tiny.zip"), sha256="0" * 64)
    assert list((home / "bundles").iterdir()) == []


def test_url_refused_port_is_a_bundle_error(home: Path) -> None:
    srv = _Server({})
    url = srv.url("/x.zip")
    srv.close()  # nothing listens there any more
    with pytest.raises(BundleError, match="download failed"):
        Identifier.from_pretrained(url, sha256="0" * 64)
