"""The records the admin endpoint returns (docs/protocol.md, "Records"), as typed dictionaries.

Times are as on the wire: ``*_at`` fields of records are Unix milliseconds, except a
registration's ``issued_at`` and ``expires_at`` (its RT's times), which are Unix seconds. Fields
without a value are ``None``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, TypedDict

__all__ = [
    "PtRecord",
    "OperationRecord",
    "RegistrationRecord",
    "AuditEvent",
    "LeakSignal",
    "DeviceView",
]


class PtRecord(TypedDict):
    id: str
    label: str
    kind: Dict[str, Any]
    approval: Dict[str, Any]
    rt_lifetime_secs: int
    device_id_policy: str
    expires_at: Optional[int]
    created_at: int
    revoked_at: Optional[int]
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
    created_at: int
    expires_at: int
    decided_by: Optional[str]
    decided_at: Optional[int]
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
    issued_at: int
    expires_at: int
    lifetime_secs: int
    created_at: int
    revoked_at: Optional[int]
    revoke_reason: Optional[str]


class AuditEvent(TypedDict):
    seq: int
    at: int
    actor: str
    source: Optional[str]
    action: str
    subject: str
    detail: Dict[str, Any]


class LeakSignal(TypedDict):
    id: int
    at: int
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
