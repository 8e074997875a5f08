"""Shared helpers. The fixtures tessera_server, tessera_admin and tessera_device_factory come
from the package's pytest plugin (entry point ``pytest11``)."""

import time

import pytest

import tessera


def wait_for(predicate, timeout=10.0):
    """Poll ``predicate`` until it returns something truthy (a condition on another thread's
    progress, not a sleep standing in for time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
def clock():
    return tessera.ManualClock()


@pytest.fixture
def engine(tmp_path, clock):
    return tessera.Engine(tmp_path / "engine", clock=clock)


def provision(engine, pt, device_id, nonce=None):
    """Begin, approve (with the code when one is shown) and collect; returns the Registration."""
    op = engine.begin(pt, device_id=device_id, nonce=nonce)
    if op.state == "pending":
        engine.approve(op.operation_id, code=op.verification_code)
    return engine.collect(op.operation_id, op.secret)
