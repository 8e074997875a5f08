"""Tessera for Python: the engine, a real server, the QUIC admin and device clients, and a
test harness (pytest fixtures, a fleet simulator, fault injection).

    >>> import tessera
    >>> with tessera.Server() as server, server.admin() as admin:
    ...     pt_id, pt = admin.create_pt("line 3", approval="automatic")
    ...     with server.device(pt, device_id="pump-1") as device:
    ...         reg = device.ensure_registered(timeout=10)
    ...     reg.device_id
    'pump-1'
"""

from . import errors, faults, records
from ._native import (
    Claims,
    DeviceClient,
    Engine,
    Operation,
    Registration,
    __version__,
    check_pt,
    inspect_rt,
)
from .admin import AdminClient
from .clock import ManualClock
from .errors import *  # noqa: F401,F403  (the exception classes; listed in __all__)
from .errors import __all__ as _errors_all
from .fleet import FleetSummary, simulate_fleet
from .server import Server

__all__ = [
    "__version__",
    "Engine",
    "Server",
    "AdminClient",
    "DeviceClient",
    "Claims",
    "Registration",
    "Operation",
    "ManualClock",
    "check_pt",
    "inspect_rt",
    "simulate_fleet",
    "FleetSummary",
    "errors",
    "records",
    "faults",
    *_errors_all,
]
