"""Per-image errors in batches, close()/context manager, identify_async, env settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tinymodels import quadrant_image

from pillsnap_sdk import (
    Identifier,
    IdentifyResult,
    InvalidArgumentError,
    InvalidImageError,
    PillsnapError,
    ProviderUnavailableError,
)
from pillsnap_sdk.runtime import install_hint

IMG = quadrant_image({0: "red", 3: "blue"})


@pytest.fixture(scope="module")
def idf(tiny_bundle: Path) -> Identifier:
    return Identifier.from_bundle(tiny_bundle)


def _names(res: IdentifyResult) -> set[str]:
    return {p.label.name for p in res.pills if p.label}


def test_return_exceptions_puts_each_error_in_its_place(idf: Identifier) -> None:
    out = idf.identify_batch(
        [IMG, b"junk", IMG, np.zeros((2, 2, 7), np.uint8)], return_exceptions=True
    )
    assert len(out) == 4
    assert isinstance(out[0], IdentifyResult) and isinstance(out[2], IdentifyResult)
    assert isinstance(out[1], InvalidImageError) and isinstance(out[3], InvalidImageError)
    assert _names(out[0]) == _names(out[2]) == {"red pill", "blue pill"}
    # The good photos get exactly what they get alone.
    alone = idf.identify(IMG)
    assert out[0].pills == alone.pills


def test_without_return_exceptions_one_bad_photo_raises(idf: Identifier) -> None:
    with pytest.raises(InvalidImageError):
        idf.identify_batch([IMG, b"junk"])


def test_return_exceptions_all_bad_and_empty(idf: Identifier) -> None:
    out = idf.identify_batch([b"", b"junk"], return_exceptions=True)
    assert all(isinstance(e, PillsnapError) for e in out)
    assert idf.identify_batch([], return_exceptions=True) == []


def test_bad_arguments_still_raise_with_return_exceptions(idf: Identifier) -> None:
    with pytest.raises(InvalidArgumentError):
        idf.identify_batch([IMG], top_k=0, return_exceptions=True)


def test_close_and_context_manager(tiny_bundle: Path) -> None:
    with Identifier.from_bundle(tiny_bundle) as idf:
        assert _names(idf.identify(IMG)) == {"red pill", "blue pill"}
        assert not idf.closed
    assert idf.closed
    for call in (
        lambda: idf.identify(IMG),
        lambda: idf.identify_batch([IMG], return_exceptions=True),
        lambda: idf.classify_probabilities([IMG]),
        lambda: idf.providers,
    ):
        with pytest.raises(InvalidArgumentError, match="closed"):
            call()
    idf.close()  # idempotent
    assert idf.manifest.name == "tiny-test"  # metadata stays readable


def test_identify_async_matches_identify(idf: Identifier) -> None:
    async def many() -> list[IdentifyResult]:
        return list(await asyncio.gather(*(idf.identify_async(IMG) for _ in range(4))))

    results = asyncio.run(many())
    want = idf.identify(IMG).pills
    assert all(r.pills == want for r in results)


def test_identify_async_raises_typed_errors(idf: Identifier) -> None:
    with pytest.raises(InvalidImageError):
        asyncio.run(idf.identify_async(b"junk"))


def test_threads_from_env(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pillsnap_sdk.sessions as sessions

    seen: list[int | None] = []
    real = sessions.create_session

    def spy(*args: object, **kw: object) -> object:
        seen.append(kw["intra_op_threads"])  # type: ignore[arg-type]
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sessions, "create_session", spy)
    monkeypatch.setenv("PILLSNAP_THREADS", "1")
    Identifier.from_bundle(tiny_bundle)
    assert seen and set(seen) == {1}
    seen.clear()
    Identifier.from_bundle(tiny_bundle, intra_op_threads=2)  # the argument wins
    assert set(seen) == {2}
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("PILLSNAP_THREADS", bad)
        with pytest.raises(InvalidArgumentError, match="PILLSNAP_THREADS"):
            Identifier.from_bundle(tiny_bundle)


def test_providers_from_env(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILLSNAP_PROVIDERS", "CPUExecutionProvider")
    assert Identifier.from_bundle(tiny_bundle).providers == ["CPUExecutionProvider"]
    monkeypatch.setenv("PILLSNAP_PROVIDERS", "NoSuchExecutionProvider")
    with pytest.raises(InvalidArgumentError, match="NoSuchExecutionProvider"):
        Identifier.from_bundle(tiny_bundle)
    monkeypatch.setenv("PILLSNAP_PROVIDERS", " , ")
    with pytest.raises(InvalidArgumentError, match="PILLSNAP_PROVIDERS"):
        Identifier.from_bundle(tiny_bundle)


def test_provider_specific_install_hints(tiny_bundle: Path) -> None:
    import onnxruntime as ort

    assert "onnxruntime-gpu" in install_hint("CUDAExecutionProvider")
    assert "TensorRT" in install_hint("TensorrtExecutionProvider")
    assert "onnxruntime-directml" in install_hint("DmlExecutionProvider")
    assert "onnxruntime-openvino" in install_hint("OpenVINOExecutionProvider")
    absent = [
        p
        for p in ("OpenVINOExecutionProvider", "DmlExecutionProvider")
        if p not in ort.get_available_providers()
    ]
    if not absent:
        pytest.skip("both providers are available here")
    with pytest.raises(ProviderUnavailableError) as exc:
        Identifier.from_bundle(tiny_bundle, providers=[absent[0]], strict_providers=True)
    assert install_hint(absent[0]) in str(exc.value)
