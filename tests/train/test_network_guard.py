"""The no-network guard used by the e2e tests really refuses and records network use."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from .conftest import NetworkGuard

# TEST-NET-1 (RFC 5737): never routed, so nothing leaves even if the guard failed open.
NOWHERE = ("192.0.2.1", 9)


def test_guard_refuses_and_records_every_route_out() -> None:
    guard = NetworkGuard()
    with guard.installed():
        with pytest.raises(OSError, match="network disabled"):
            socket.create_connection(NOWHERE, timeout=0.5)
        with pytest.raises(OSError, match="network disabled"):
            socket.getaddrinfo("example.com", 443)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(OSError, match="network disabled"):
                s.connect(NOWHERE)
            with pytest.raises(OSError, match="network disabled"):
                s.connect_ex(NOWHERE)
        finally:
            s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(OSError, match="network disabled"):
                u.sendto(b"x", NOWHERE)
        finally:
            u.close()
        # What libraries do: urllib resolves the host first.
        with pytest.raises(OSError):
            urllib.request.urlopen("http://example.com/", timeout=0.5)
    kinds = [a.split()[0] for a in guard.attempts]
    assert kinds[:5] == [
        "socket.create_connection",
        "socket.getaddrinfo",
        "socket.connect",
        "socket.connect_ex",
        "socket.sendto",
    ]
    assert any("example.com" in a for a in guard.attempts[5:]), guard.attempts
    assert "192.0.2.1" in guard.attempts[0]


def test_guard_is_removed_afterwards_and_leaves_local_sockets_alone() -> None:
    guard = NetworkGuard()
    with guard.installed():
        a, b = socket.socketpair()  # AF_UNIX: local IPC, not network
        with a, b:
            a.sendall(b"ok")
            assert b.recv(2) == b"ok"
    assert guard.attempts == []
    assert "connect" not in vars(socket.socket)  # the class attribute is gone again
    assert socket.getaddrinfo.__module__ == "socket"
