"""``start_local_ray``'s contract, on a stand-in ``ray`` module (no Ray process started):
bounded retries, a typed error that says what to do, loopback or nothing."""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from pillsnap_sdk.errors import MissingDependencyError, PillsnapError
from pillsnap_sdk.integrations import ray_local
from pillsnap_sdk.integrations.ray_local import LocalRayError, local_ray, start_local_ray


class FakeRay:
    """Records ``init`` calls; fails the first ``failures`` of them."""

    def __init__(self, failures: int, ip: str = "127.0.0.1") -> None:
        self.failures = failures
        self.inits: list[dict[str, Any]] = []
        self.shutdowns = 0
        self.up = False
        self.util = types.SimpleNamespace(get_node_ip_address=lambda: ip)

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)
        if len(self.inits) <= self.failures:
            raise Exception("The current node timed out during startup.")
        self.up = True

    def is_initialized(self) -> bool:
        return self.up

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.up = False


@pytest.fixture()
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(failures: int = 0, ip: str = "127.0.0.1") -> FakeRay:
        fake = FakeRay(failures, ip)
        module = types.ModuleType("ray")
        for name in ("init", "is_initialized", "shutdown"):
            setattr(module, name, getattr(fake, name))
        module.util = fake.util  # type: ignore[attr-defined]
        private = types.ModuleType("ray._private")
        constants = types.ModuleType("ray._private.ray_constants")
        constants.ENABLE_RAY_CLUSTER = True  # type: ignore[attr-defined]
        private.ray_constants = constants  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "ray", module)
        monkeypatch.setitem(sys.modules, "ray._private", private)
        monkeypatch.setitem(sys.modules, "ray._private.ray_constants", constants)
        fake.constants = constants  # type: ignore[attr-defined]
        return fake

    for key in [*ray_local._ENV, "RAY_gcs_server_port_wait_time_s"]:
        monkeypatch.setenv(key, "x")  # records the original value, restored after the test
        monkeypatch.delenv(key)
    return install


def test_loopback_only_and_quiet(fake_ray: Any) -> None:
    fake = fake_ray()
    start_local_ray(2, retry_delay_s=0)
    (kwargs,) = fake.inits
    assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["address"] == "local"
    assert kwargs["include_dashboard"] is False and kwargs["num_cpus"] == 2
    assert fake.constants.ENABLE_RAY_CLUSTER is False  # Ray's "no cluster" switch
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_a_failed_start_is_retried_a_bounded_number_of_times(fake_ray: Any) -> None:
    fake = fake_ray(failures=2)
    start_local_ray(2, attempts=3, retry_delay_s=0)
    assert len(fake.inits) == 3 and fake.shutdowns == 2 and fake.up

    fake = fake_ray(failures=99)
    with pytest.raises(LocalRayError, match=r"in 3 attempts.*timed out during startup") as err:
        start_local_ray(2, attempts=3, retry_delay_s=0)
    assert len(fake.inits) == 3 and not fake.up
    assert isinstance(err.value, PillsnapError) and "ray stop" in str(err.value)


def test_a_node_off_loopback_is_refused_and_shut_down(fake_ray: Any) -> None:
    fake = fake_ray(ip="10.1.2.3")
    with pytest.raises(LocalRayError, match=r"10\.1\.2\.3, not 127\.0\.0\.1"):
        start_local_ray(2, retry_delay_s=0)
    assert fake.shutdowns == 1 and not fake.up


def test_context_manager_always_shuts_down(fake_ray: Any) -> None:
    fake = fake_ray()
    with pytest.raises(RuntimeError), local_ray(1, retry_delay_s=0):
        assert fake.up
        raise RuntimeError("test body failed")
    assert fake.shutdowns == 1


def test_bad_arguments_and_missing_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LocalRayError, match="num_cpus"):
        start_local_ray(0)
    with pytest.raises(LocalRayError, match="attempts"):
        start_local_ray(1, attempts=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pillsnap\[ray\]"):
        start_local_ray(1)
