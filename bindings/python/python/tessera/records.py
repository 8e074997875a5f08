"""The records the admin endpoint returns (docs/protocol.md, "Records"), as typed dictionaries.

One convention across the Python API: every time named ``*_at`` is Unix seconds, a ``float``
(a registration's RT times ``issued_at`` / ``expires_at`` included), and every duration is
seconds; a name that ends in ``_ms`` or ``_secs`` carries its own unit. The wire format keeps
record times in milliseconds (docs/protocol.md); :func:`to_seconds` converts, and
``AdminClient.call`` alone returns the wire's JSON unchanged. Fields without a value are
``None``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypedDict

__all__ = [
    "to_seconds",
    "PtRecord",
    "OperationRecord",
    "RegistrationRecord",
    "AuditEvent",
    "LeakSignal",
    "DeviceView",
]


#: Record times the wire carries in milliseconds.
_MILLIS = ("created_at", "expires_at", "decided_at", "revoked_at", "at", "rt_keep_until", "retired_at")
#: A registration's RT times, which the wire already carries in seconds.
_RT_SECONDS = ("issued_at", "expires_at")


def to_seconds(value: Any) -> Any:
    """The wire's records (a record, a list of them, or an answer holding them) with every time
    in Unix seconds as a ``float``: millisecond fields divided by 1,000, a registration's RT
    times (already seconds) made ``float``. Other values are returned as they are."""
    if isinstance(value, list):
        return [to_seconds(v) for v in value]
    if not isinstance(value, dict):
        return value
    registration = "lifetime_secs" in value and "generation" in value
    out: Dict[str, Any] = {}
    for key, v in value.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if registration and key in _RT_SECONDS:
                out[key] = float(v)
                continue
            if key in _MILLIS:
                out[key] = v / 1000.0
                continue
        out[key] = to_seconds(v) if isinstance(v, (dict, list)) and key != "detail" else v
    return out


class PtRecord(TypedDict):
    id: str
    label: str
    kind: Dict[str, Any]
    approval: Dict[str, Any]
    rt_lifetime_secs: int
    device_id_policy: str
    expires_at: Optional[float]
    created_at: float
    revoked_at: Optional[float]
    registrations_created: int
    batch: Optional[str]


class _OperationBase(TypedDict):
    id: str
    pt_id: str
    state: str
    requested_device_id: Optional[str]
    attributes: Dict[str, str]
    uses_code: bool
    code_failures: int
    conflict: bool
    key_epoch: int
    source: Optional[str]
    created_at: float
    expires_at: float
    decided_by: Optional[str]
    decided_at: Optional[float]
    reason: Optional[str]
    device_id: Optional[str]
    registration_id: Optional[int]


class OperationRecord(_OperationBase, total=False):
    #: Active registrations of the requested device id that approving would replace.
    replaces: List[Dict[str, Any]]


class RegistrationRecord(TypedDict):
    id: int
    device_id: str
    pt_id: str
    operation_id: str
    status: str
    generation: int
    key_epoch: int
    issued_at: float
    expires_at: float
    lifetime_secs: int
    created_at: float
    revoked_at: Optional[float]
    revoke_reason: Optional[str]


class AuditEvent(TypedDict):
    seq: int
    at: float
    actor: str
    source: Optional[str]
    action: str
    subject: str
    detail: Dict[str, Any]


class LeakSignal(TypedDict):
    id: int
    at: float
    kind: str
    pt_id: Optional[str]
    registration_id: Optional[int]
    operation_id: Optional[str]
    source: Optional[str]
    action: str
    detail: str


class DeviceView(TypedDict):
    registrations: List[RegistrationRecord]
    blocked: Optional[Dict[str, Any]]
