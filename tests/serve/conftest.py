from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tinymodels import quadrant_image

from pillsnap_sdk.serve.state import ServiceContext

from .live import Keys, Live, live_server, make_keys, served, settings


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def keys() -> Keys:
    return make_keys()


@pytest.fixture(scope="session")
def two_pills() -> bytes:
    """Red pill top-left, blue pill bottom-right: the tiny bundle names both."""
    return png(quadrant_image({0: "red", 3: "blue"}))


@pytest.fixture(scope="module")
def live(tiny_bundle: Path, keys: Keys) -> Iterator[Live]:
    ctx = ServiceContext(settings(max_upload_mb=1.0), keys=keys.store, holder=served(tiny_bundle))
    with live_server(ctx) as srv:
        yield srv
