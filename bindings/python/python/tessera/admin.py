"""The admin client: one method per admin request of docs/protocol.md."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _native
from .errors import InvalidInput

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
    def create_pt(self, label: str, **args: Any) -> Tuple[str, str]:
        """Create a PT; returns ``(pt_id, token)``. Arguments as PT_CREATE: ``kind``
        (single/fleet), ``max_registrations``, ``approval`` (manual/manual_with_code/
        automatic/rule), ``rule``, ``rt_lifetime_secs``, ``device_id_policy``,
        ``expires_at_ms``."""
        r = self.call("pt_create", label=label, **args)
        return r["pt"]["id"], r["token"]

    def create_pt_batch(self, label: str, count: int, **args: Any) -> List[Tuple[str, str]]:
        """Create ``count`` PTs atomically; returns ``[(pt_id, token), ...]``."""
        _, lines = self._native.create_pt_batch(
            json.dumps(dict(label=label, count=count, **args))
        )
        return [tuple(line.split("\t", 1)) for line in lines]  # type: ignore[misc]

    def list_pts(self, limit: int = 100, include_revoked: bool = False) -> List[Json]:
        return list(self.call("pt_list", limit=limit, include_revoked=include_revoked)["pts"])

    def show_pt(self, pt_id: str) -> Json:
        return dict(self.call("pt_show", id=pt_id)["pt"])

    def revoke_pt(self, pt_id: str, reason: str = "revoked") -> int:
        """Revoke a PT and every registration made through it; returns how many."""
        return int(self.call("pt_revoke", id=pt_id, reason=reason)["registrations_revoked"])

    # Operations
    def operations(
        self, state: Optional[str] = None, pt_id: Optional[str] = None, limit: int = 1000
    ) -> List[Json]:
        return list(self.call("op_list", state=state, pt_id=pt_id, limit=limit)["operations"])

    def pending_operations(self, pt_id: Optional[str] = None) -> List[Json]:
        return self.operations(state="pending", pt_id=pt_id)

    def show_operation(self, operation_id: str) -> Json:
        return dict(self.call("op_show", id=operation_id)["operation"])

    def approve(
        self,
        operation_id: str,
        code: Optional[str] = None,
        device_id: Optional[str] = None,
        rt_lifetime_secs: Optional[int] = None,
        reassign: bool = False,
    ) -> Json:
        """Approve an operation (with the verification code read off the device, when the PT
        asks for one); returns the new registration.

        ``reassign=True`` moves the device id from its active registration under another PT to
        this operation; without it such an approval raises :class:`DeviceIdInUse`."""
        r = self.call(
            "op_approve",
            id=operation_id,
            code=code,
            device_id=device_id,
            rt_lifetime_secs=rt_lifetime_secs,
            reassign=reassign,
        )
        return dict(r["registration"])

    def reject(self, operation_id: str, reason: str = "rejected") -> None:
        self.call("op_reject", id=operation_id, reason=reason)

    # Devices
    def devices(
        self,
        device_id: Optional[str] = None,
        pt_id: Optional[str] = None,
        active_only: bool = False,
        limit: int = 1000,
    ) -> List[Json]:
        r = self.call(
            "device_list", device_id=device_id, pt_id=pt_id, active_only=active_only, limit=limit
        )
        return list(r["registrations"])

    def show_device(self, device_id: str) -> Json:
        return self.call("device_show", device_id=device_id)

    def revoke_device(
        self,
        *,
        registration_id: Optional[int] = None,
        device_id: Optional[str] = None,
        reason: str = "revoked",
    ) -> int:
        """Revoke one registration, or every registration of a device id; returns how many."""
        args: Json = {"reason": reason}
        if registration_id is not None:
            args["registration_id"] = registration_id
        if device_id is not None:
            args["device_id"] = device_id
        return int(self.call("device_revoke", **args)["registrations_revoked"])

    def block_device(self, device_id: str, reason: str = "blocked") -> int:
        return int(self.call("device_block", device_id=device_id, reason=reason)[
            "registrations_revoked"
        ])

    def unblock_device(self, device_id: str) -> bool:
        return bool(self.call("device_unblock", device_id=device_id)["was_blocked"])

    # Audit, leaks, keys, tokens, status
    def audit(self, after: int = 0, limit: int = 100, newest: bool = False) -> List[Json]:
        """Events with ``seq`` above ``after``, oldest first: the first ``limit`` of them, or
        with ``newest`` the last ``limit`` (the end of the log)."""
        return list(self.call("audit", after=after, limit=limit, newest=newest)["events"])

    def leaks(self, after: int = 0, limit: int = 100) -> List[Json]:
        return list(self.call("leaks", after=after, limit=limit)["signals"])

    def rotate_keys(self) -> int:
        return int(self.call("keys_rotate")["epoch"])

    def create_token(self, name: str, role: str = "technician") -> str:
        """Create an admin token (role ``technician`` or ``admin``); returns its text."""
        return str(self.call("token_create", name=name, role=role)["token"])

    def status(self) -> Json:
        return self.call("status")

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
