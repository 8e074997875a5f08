"""pytest fixtures for Tessera (registered through the ``pytest11`` entry point).

- ``tessera_server`` — a fresh :class:`tessera.Server` per test, stopped afterwards. Settings
  come from the test's marker: ``@pytest.mark.tessera(manual_clock=True,
  engine={"operation_ttl_secs": 60})`` (the keyword arguments of :class:`tessera.Server`);
- ``tessera_shared_server`` — one server for the whole session (no marker settings), for
  suites whose tests do not depend on a fresh store: starting a server costs tens of
  milliseconds, reusing one nothing;
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


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "tessera(**settings): keyword arguments of tessera.Server for the tessera_server fixture",
    )


@pytest.fixture
def tessera_server(tmp_path: Any, request: Any) -> Iterator[Server]:
    """A real server on ephemeral loopback ports, data in the test's tmp_path, with the
    settings of the test's ``tessera`` marker, if any."""
    marker = request.node.get_closest_marker("tessera")
    settings = dict(marker.kwargs) if marker is not None else {}
    server = Server(tmp_path / "tessera-data", **settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tessera_shared_server(tmp_path_factory: Any) -> Iterator[Server]:
    """One real server for the whole test session."""
    server = Server(tmp_path_factory.mktemp("tessera-shared") / "tessera-data")
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
