"""pytest fixtures for Tessera (registered through the ``pytest11`` entry point).

- ``tessera_server`` — a fresh :class:`tessera.Server` per test, stopped afterwards;
- ``tessera_admin`` — an :class:`tessera.AdminClient` on it with the first admin token;
- ``tessera_device_factory`` — ``make(pt, **kwargs)`` returns a :class:`tessera.DeviceClient`
  for the server; every device made is closed after the test.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from . import _native
from .admin import AdminClient
from .server import Server

DeviceFactory = Callable[..., _native.DeviceClient]


@pytest.fixture
def tessera_server(tmp_path: Any) -> Iterator[Server]:
    """A real server on ephemeral loopback ports, data in the test's tmp_path."""
    server = Server(tmp_path / "tessera-data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tessera_admin(tessera_server: Server) -> Iterator[AdminClient]:
    """An admin client (role admin) for ``tessera_server``."""
    admin = tessera_server.admin()
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def tessera_device_factory(tessera_server: Server) -> Iterator[DeviceFactory]:
    """Make device clients for ``tessera_server``: ``make(pt, device_id=..., on_code=...)``."""
    made: List[_native.DeviceClient] = []

    def make(pt: str, **kwargs: Any) -> _native.DeviceClient:
        device = tessera_server.device(pt, **kwargs)
        made.append(device)
        return device

    try:
        yield make
    finally:
        for device in made:
            device.close()
