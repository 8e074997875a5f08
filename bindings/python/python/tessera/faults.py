"""Fault injection for test harnesses.

- :func:`drop_refresh_response` — a refresh whose answer is lost: the device keeps its RT, so
  its next refresh presents the same generation again and must get the same successor (the
  server's retry grace), not trigger reuse detection.
- :func:`duplicating_device` — a device whose network duplicates every BEGIN: the server must
  recognise the copy by its instance nonce and make one operation, not two.
- :func:`skewed_device` — a device whose clock is off by ``skew`` seconds: scheduling uses
  server time, so it must behave exactly like a device with a correct clock.
"""

from __future__ import annotations

from typing import Any

from . import _native

__all__ = ["drop_refresh_response", "duplicating_device", "skewed_device"]


def drop_refresh_response(device: _native.DeviceClient) -> None:
    """Send a refresh for ``device``'s current RT and throw the answer away."""
    device.refresh_losing_response()


def duplicating_device(server: Any, pt: str, **kwargs: Any) -> _native.DeviceClient:
    """A device client for ``server`` that sends every BEGIN twice."""
    kwargs.setdefault("ca_pem", server.ca_pem)
    return _native.DeviceClient(server.device_address, pt, duplicate_begin=True, **kwargs)


def skewed_device(server: Any, pt: str, skew: float, **kwargs: Any) -> _native.DeviceClient:
    """A device client for ``server`` whose local clock is ``skew`` seconds off (positive:
    ahead)."""
    kwargs.setdefault("ca_pem", server.ca_pem)
    return _native.DeviceClient(server.device_address, pt, clock_skew=skew, **kwargs)
