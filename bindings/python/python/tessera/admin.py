"""The admin client: one method per admin request of docs/protocol.md.

Every method checks its arguments before anything is sent: a wrong type raises ``TypeError``,
a negative count or id ``InvalidInput`` (also a ``ValueError``), an unknown keyword
``TypeError`` (Python's own). Results are the typed records of :mod:`tessera.records`.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Type, Union, cast

from . import _native
from .errors import InvalidInput
from .records import (
    to_seconds,
    AuditEvent,
    DeviceView,
    LeakSignal,
    OperationRecord,
    PtRecord,
    RegistrationRecord,
)


def _check(name: str, value: object, kind: Union[Type[Any], Tuple[Type[Any], ...]]) -> None:
    """``TypeError`` unless ``value`` is ``None`` or of ``kind`` (a ``bool`` is not an ``int``)."""
    if value is None:
        return
    if isinstance(value, bool) and kind is int:
        raise TypeError(f"{name} must be an int, not bool")
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {getattr(kind, '__name__', kind)}, not {type(value).__name__}")


def _count(name: str, value: Optional[int]) -> None:
    """A number that cannot be negative: ``TypeError`` for another type, ``InvalidInput`` below 0."""
    _check(name, value, int)
    if value is not None and value < 0:
        raise InvalidInput(f"{name} must be 0 or more", code=5)


def _present(**args: Any) -> Dict[str, Any]:
    """The arguments that have a value (an absent field, not ``null``, on the wire)."""
    return {k: v for k, v in args.items() if v is not None}

__all__ = ["AdminClient", "REQUESTS"]

#: Admin request names and their kind codes (docs/protocol.md).
REQUESTS: Dict[str, int] = {
    "status": 0x40,
    "pt_create": 0x41,
    "pt_batch": 0x42,
    "pt_list": 0x43,
    "pt_show": 0x44,
    "pt_revoke": 0x45,
    "op_list": 0x50,
    "op_show": 0x51,
    "op_approve": 0x52,
    "op_reject": 0x53,
    "device_list": 0x60,
    "device_show": 0x61,
    "device_revoke": 0x62,
    "device_block": 0x63,
    "device_unblock": 0x64,
    "audit": 0x70,
    "leaks": 0x71,
    "keys_rotate": 0x80,
    "keys_list": 0x81,
    "keys_retire": 0x82,
    "token_create": 0x90,
    "token_list": 0x91,
    "token_revoke": 0x92,
}

Json = Dict[str, Any]


class AdminClient:
    """An operator's (or technician's) connection to a server's admin endpoint over QUIC.

    Give ``ca_pem`` (the CA certificate) or ``pin`` (its SHA-256 fingerprint). Calls block the
    calling thread only (the GIL is released while waiting); one client may be shared by
    threads. Errors raise the classes of :mod:`tessera.errors`.
    """

    def __init__(
        self,
        address: str,
        token: str,
        *,
        server_name: str = "localhost",
        ca_pem: Union[str, bytes, None] = None,
        pin: Optional[str] = None,
    ) -> None:
        self._native = _native.AdminClient(
            address, token, server_name=server_name, ca_pem=ca_pem, pin=pin
        )

    def call(self, request: str, **args: Any) -> Json:
        """Make any admin request by name (see :data:`REQUESTS`) with keyword arguments."""
        try:
            kind = REQUESTS[request]
        except KeyError:
            raise InvalidInput(
                f"unknown admin request {request!r} (one of {', '.join(REQUESTS)})", code=5
            ) from None
        answer: Json = json.loads(self._native.call(kind, json.dumps(args)))
        return answer

    # PTs
    @staticmethod
    def _pt_args(
        label: str,
        kind: str,
        approval: str,
        max_registrations: Optional[int],
        rule: Optional[str],
        rt_lifetime_secs: Optional[int],
        device_id_policy: Optional[str],
        expires_at_ms: Optional[int],
    ) -> Dict[str, Any]:
        for name, value in (("label", label), ("kind", kind), ("approval", approval),
                            ("rule", rule), ("device_id_policy", device_id_policy)):
            _check(name, value, str)
        for name, number in (("max_registrations", max_registrations),
                             ("rt_lifetime_secs", rt_lifetime_secs),
                             ("expires_at_ms", expires_at_ms)):
            _count(name, number)
        return _present(
            label=label, kind=kind, approval=approval, max_registrations=max_registrations,
            rule=rule, rt_lifetime_secs=rt_lifetime_secs, device_id_policy=device_id_policy,
            expires_at_ms=expires_at_ms,
        )

    def create_pt(
        self,
        label: str,
        *,
        kind: str = "single",
        approval: str = "manual",
        max_registrations: Optional[int] = None,
        rule: Optional[str] = None,
        rt_lifetime_secs: Optional[int] = None,
        device_id_policy: Optional[str] = None,
        expires_at_ms: Optional[int] = None,
    ) -> Tuple[str, str]:
        """Create a PT; returns ``(pt_id, token)`` (the token is shown only here). ``kind``
        ``single``/``fleet`` (a fleet needs ``max_registrations``), ``approval``
        ``manual``/``manual_with_code``/``automatic``/``rule`` (with ``rule``),
        ``rt_lifetime_secs`` (default 30 days), ``device_id_policy``
        ``device``/``technician``/``either`` (default), ``expires_at_ms`` (Unix ms)."""
        args = self._pt_args(label, kind, approval, max_registrations, rule,
                             rt_lifetime_secs, device_id_policy, expires_at_ms)
        r = self.call("pt_create", **args)
        return r["pt"]["id"], r["token"]

    def create_pt_batch(
        self,
        label: str,
        count: int,
        *,
        kind: str = "single",
        approval: str = "manual",
        max_registrations: Optional[int] = None,
        rule: Optional[str] = None,
        rt_lifetime_secs: Optional[int] = None,
        device_id_policy: Optional[str] = None,
        expires_at_ms: Optional[int] = None,
    ) -> List[Tuple[str, str]]:
        """Create ``count`` PTs with the same settings, all or nothing; returns
        ``[(pt_id, token), ...]``. Arguments as :meth:`create_pt`."""
        _count("count", count)
        if count is None:
            raise TypeError("count is required")
        args = self._pt_args(label, kind, approval, max_registrations, rule,
                             rt_lifetime_secs, device_id_policy, expires_at_ms)
        _, lines = self._native.create_pt_batch(json.dumps(dict(args, count=count)))
        return [tuple(line.split("\t", 1)) for line in lines]  # type: ignore[misc]

    def list_pts(self, limit: int = 100, include_revoked: bool = False) -> List[PtRecord]:
        _count("limit", limit)
        _check("include_revoked", include_revoked, bool)
        r = self.call("pt_list", limit=limit, include_revoked=include_revoked)
        return cast(List[PtRecord], to_seconds(r["pts"]))

    def show_pt(self, pt_id: str) -> PtRecord:
        _check("pt_id", pt_id, str)
        return cast(PtRecord, to_seconds(self.call("pt_show", id=pt_id)["pt"]))

    def revoke_pt(self, pt_id: str, reason: str = "revoked") -> int:
        """Revoke a PT and every registration made through it; returns how many."""
        _check("pt_id", pt_id, str)
        _check("reason", reason, str)
        return int(self.call("pt_revoke", id=pt_id, reason=reason)["registrations_revoked"])

    # Operations
    def operations(
        self, state: Optional[str] = None, pt_id: Optional[str] = None, limit: int = 1000
    ) -> List[OperationRecord]:
        _check("state", state, str)
        _check("pt_id", pt_id, str)
        _count("limit", limit)
        r = self.call("op_list", **_present(state=state, pt_id=pt_id, limit=limit))
        return cast(List[OperationRecord], to_seconds(r["operations"]))

    def pending_operations(self, pt_id: Optional[str] = None) -> List[OperationRecord]:
        return self.operations(state="pending", pt_id=pt_id)

    def show_operation(self, operation_id: str) -> OperationRecord:
        _check("operation_id", operation_id, str)
        return cast(OperationRecord, to_seconds(self.call("op_show", id=operation_id)["operation"]))

    def approve(
        self,
        operation_id: str,
        code: Optional[str] = None,
        device_id: Optional[str] = None,
        rt_lifetime_secs: Optional[int] = None,
        reassign: bool = False,
    ) -> RegistrationRecord:
        """Approve an operation (with the verification code read off the device, when the PT
        asks for one); returns the new registration.

        ``reassign=True`` moves the device id from its active registration under another PT to
        this operation; without it such an approval raises :class:`DeviceIdInUse`."""
        _check("operation_id", operation_id, str)
        _check("code", code, str)
        _check("device_id", device_id, str)
        _count("rt_lifetime_secs", rt_lifetime_secs)
        _check("reassign", reassign, bool)
        r = self.call(
            "op_approve",
            **_present(
                id=operation_id,
                code=code,
                device_id=device_id,
                rt_lifetime_secs=rt_lifetime_secs,
                reassign=reassign or None,
            ),
        )
        return cast(RegistrationRecord, to_seconds(r["registration"]))

    def reject(self, operation_id: str, reason: str = "rejected") -> None:
        _check("operation_id", operation_id, str)
        _check("reason", reason, str)
        self.call("op_reject", id=operation_id, reason=reason)

    # Devices
    def devices(
        self,
        device_id: Optional[str] = None,
        pt_id: Optional[str] = None,
        active_only: bool = False,
        limit: int = 1000,
    ) -> List[RegistrationRecord]:
        _check("device_id", device_id, str)
        _check("pt_id", pt_id, str)
        _check("active_only", active_only, bool)
        _count("limit", limit)
        r = self.call(
            "device_list",
            **_present(device_id=device_id, pt_id=pt_id, active_only=active_only, limit=limit),
        )
        return cast(List[RegistrationRecord], to_seconds(r["registrations"]))

    def show_device(self, device_id: str) -> DeviceView:
        _check("device_id", device_id, str)
        return cast(DeviceView, to_seconds(self.call("device_show", device_id=device_id)))

    def revoke_device(
        self,
        *,
        registration_id: Optional[int] = None,
        device_id: Optional[str] = None,
        reason: str = "revoked",
    ) -> int:
        """Revoke one registration, or every registration of a device id; returns how many."""
        _count("registration_id", registration_id)
        _check("device_id", device_id, str)
        _check("reason", reason, str)
        args: Json = {"reason": reason}
        if registration_id is not None:
            args["registration_id"] = registration_id
        if device_id is not None:
            args["device_id"] = device_id
        return int(self.call("device_revoke", **args)["registrations_revoked"])

    def block_device(self, device_id: str, reason: str = "blocked") -> int:
        _check("device_id", device_id, str)
        _check("reason", reason, str)
        return int(self.call("device_block", device_id=device_id, reason=reason)[
            "registrations_revoked"
        ])

    def unblock_device(self, device_id: str) -> bool:
        _check("device_id", device_id, str)
        return bool(self.call("device_unblock", device_id=device_id)["was_blocked"])

    # Audit, leaks, keys, tokens, status
    def audit(self, after: int = 0, limit: int = 100, newest: bool = False) -> List[AuditEvent]:
        """Events with ``seq`` above ``after``, oldest first: the first ``limit`` of them, or
        with ``newest`` the last ``limit`` (the end of the log)."""
        _count("after", after)
        _count("limit", limit)
        _check("newest", newest, bool)
        r = self.call("audit", after=after, limit=limit, newest=newest)
        return cast(List[AuditEvent], to_seconds(r["events"]))

    def leaks(self, after: int = 0, limit: int = 100) -> List[LeakSignal]:
        _count("after", after)
        _count("limit", limit)
        return cast(List[LeakSignal], to_seconds(self.call("leaks", after=after, limit=limit)["signals"]))

    def rotate_keys(self) -> int:
        return int(self.call("keys_rotate")["epoch"])

    def create_token(self, name: str, role: str = "technician") -> str:
        """Create an admin token (role ``technician``, ``admin`` or ``service``); returns its text."""
        _check("name", name, str)
        _check("role", role, str)
        return str(self.call("token_create", name=name, role=role)["token"])

    def status(self) -> Json:
        return self.call("status")

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
