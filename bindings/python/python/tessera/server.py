"""A real Tessera server in this process, for tests and simulations."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from . import _native
from .admin import AdminClient

__all__ = ["Server"]


class Server:
    """Start a real server (QUIC device and admin endpoints, engine, SQLite store) on
    ephemeral loopback ports with a temporary data directory, inside this process.

    Use it as a context manager, or call :meth:`stop`. ``manual_clock=True`` freezes the
    server's clock until :meth:`advance_clock`; ``engine`` overrides ``[engine]`` settings of
    docs/operations.md (for example ``{"operation_ttl_secs": 60}``).
    """

    def __init__(
        self,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        *,
        manual_clock: bool = False,
        engine: Optional[Dict[str, Any]] = None,
        max_connections_per_source: int = 100_000,
        request_deadline_ms: Optional[int] = None,
    ) -> None:
        self._native = _native.Server(
            data_dir,
            manual_clock=manual_clock,
            engine=engine,
            max_connections_per_source=max_connections_per_source,
            request_deadline_ms=request_deadline_ms,
        )

    @property
    def device_address(self) -> str:
        """``"127.0.0.1:port"`` of the device endpoint."""
        return self._native.device_address

    @property
    def device_port(self) -> int:
        return self._native.device_port

    @property
    def admin_address(self) -> str:
        """``"127.0.0.1:port"`` of the admin endpoint."""
        return self._native.admin_address

    @property
    def admin_port(self) -> int:
        return self._native.admin_port

    @property
    def ca_pem(self) -> str:
        """The CA certificate (PEM) that devices and admin clients trust."""
        return self._native.ca_pem

    @property
    def ca_fingerprint(self) -> str:
        """The CA's SHA-256 fingerprint (hex), to pin instead of the PEM."""
        return self._native.ca_fingerprint

    @property
    def admin_token(self) -> str:
        """The first admin token (role admin). A secret."""
        return self._native.admin_token

    @property
    def data_dir(self) -> str:
        return str(self._native.data_dir)

    @property
    def running(self) -> bool:
        return self._native.running

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward (needs ``manual_clock=True``)."""
        self._native.advance_clock(seconds)

    def admin(self, token: Optional[str] = None) -> AdminClient:
        """An admin client for this server (the first admin token unless ``token``)."""
        return AdminClient(
            self.admin_address, token or self.admin_token, ca_pem=self.ca_pem
        )

    def device(self, pt: str, **kwargs: Any) -> "_native.DeviceClient":
        """A device client for this server's device endpoint; keyword arguments as
        :class:`tessera.DeviceClient`."""
        kwargs.setdefault("ca_pem", self.ca_pem)
        return _native.DeviceClient(self.device_address, pt, **kwargs)

    def stop(self, grace: float = 1.0) -> None:
        """Drain for up to ``grace`` seconds, close both endpoints, remove a temporary data
        directory. Idempotent."""
        self._native.stop(grace)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return repr(self._native)
