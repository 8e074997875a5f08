"""A fleet simulator: N devices provisioning and refreshing concurrently against a server."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import _native
from .errors import TesseraError

__all__ = ["FleetSummary", "simulate_fleet"]


def _percentile(values: List[float], p: float) -> Optional[float]:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(v, 2)


@dataclass(frozen=True)
class FleetSummary:
    """What :func:`simulate_fleet` measured. Latencies in milliseconds."""

    devices: int
    provisioned: int
    refreshed: int
    wall_seconds: float
    errors: Dict[str, int] = field(default_factory=dict)
    provision_p50_ms: Optional[float] = None
    provision_p99_ms: Optional[float] = None
    refresh_p50_ms: Optional[float] = None
    refresh_p99_ms: Optional[float] = None
    registrations: List[_native.Registration] = field(default_factory=list, repr=False)

    @property
    def provisions_per_second(self) -> float:
        return self.provisioned / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {
            "devices": self.devices,
            "provisioned": self.provisioned,
            "refreshed": self.refreshed,
            "wall_seconds": round(self.wall_seconds, 3),
            "provisions_per_second": round(self.provisions_per_second, 1),
            "errors": dict(self.errors),
            "provision_p50_ms": _round(self.provision_p50_ms),
            "provision_p99_ms": _round(self.provision_p99_ms),
            "refresh_p50_ms": _round(self.refresh_p50_ms),
            "refresh_p99_ms": _round(self.refresh_p99_ms),
        }


def simulate_fleet(
    server: Any,
    count: int,
    *,
    pt: Optional[str] = None,
    threads: int = 32,
    refreshes: int = 1,
    device_id_prefix: str = "sim-",
    timeout: float = 60.0,
    **device_kwargs: Any,
) -> FleetSummary:
    """Run ``count`` simulated devices through provisioning and ``refreshes`` refreshes each,
    ``threads`` at a time, against ``server`` (a :class:`tessera.Server`, or anything with
    ``device_address`` and ``ca_pem``).

    Without ``pt``, a fleet PT with the automatic policy and room for ``count`` devices is
    created through the server's admin endpoint. Errors are counted by exception class, never
    raised. Each device has its own QUIC connection, closed when it is done.
    """
    if count < 0 or threads < 1 or refreshes < 0:
        raise ValueError("count and refreshes must be >= 0 and threads >= 1")
    if pt is None:
        with server.admin() as admin:
            _, pt = admin.create_pt(
                "simulated fleet", kind="fleet", approval="automatic", max_registrations=count
            )
    lock = threading.Lock()
    provision_ms: List[float] = []
    refresh_ms: List[float] = []
    errors: Counter[str] = Counter()
    registrations: List[_native.Registration] = []

    def one(i: int) -> None:
        device = _native.DeviceClient(
            server.device_address,
            pt,
            ca_pem=server.ca_pem,
            device_id=f"{device_id_prefix}{i:06d}",
            **device_kwargs,
        )
        try:
            t0 = time.perf_counter()
            reg = device.ensure_registered(timeout=timeout)
            t1 = time.perf_counter()
            mine = []
            for _ in range(refreshes):
                r0 = time.perf_counter()
                reg = device.refresh()
                mine.append((time.perf_counter() - r0) * 1000.0)
            with lock:
                provision_ms.append((t1 - t0) * 1000.0)
                refresh_ms.extend(mine)
                registrations.append(reg)
        except TesseraError as e:
            with lock:
                errors[type(e).__name__] += 1
        finally:
            device.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tessera-fleet") as pool:
        list(pool.map(one, range(count)))
    wall = time.perf_counter() - start
    return FleetSummary(
        devices=count,
        provisioned=len(provision_ms),
        refreshed=len(refresh_ms),
        wall_seconds=wall,
        errors=dict(errors),
        provision_p50_ms=_percentile(provision_ms, 50),
        provision_p99_ms=_percentile(provision_ms, 99),
        refresh_p50_ms=_percentile(refresh_ms, 50),
        refresh_p99_ms=_percentile(refresh_ms, 99),
        registrations=registrations,
    )
