"""Exceptions raised by Tessera, one class per error family, each with a stable numeric code.

Codes below 100 are the wire protocol's (docs/protocol.md, "Error codes"); codes from 100 are
raised by the clients themselves. Every exception carries ``code``, ``message``, and where they
apply ``detail`` (why a token is malformed), ``retry_after`` (seconds) and
``remaining_attempts`` (verification codes).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "TesseraError",
    "InvalidToken",
    "MalformedToken",
    "Unauthenticated",
    "Expired",
    "Revoked",
    "RotationReuse",
    "Superseded",
    "DeviceBlocked",
    "DeviceIdInUse",
    "InvalidInput",
    "NotFound",
    "ApprovalError",
    "OperationClosed",
    "WrongVerificationCode",
    "VerificationAttemptsExhausted",
    "VerificationCodeRequired",
    "RateLimited",
    "LimitReached",
    "TooManyPendingOperations",
    "RegistrationCapReached",
    "GenerationExhausted",
    "Forbidden",
    "TesseraTimeout",
    "DeadlineExceeded",
    "ServerError",
    "Unavailable",
    "ProtocolError",
    "TesseraConnectionError",
    "CertificateError",
    "ConfigError",
    "ProvisioningFailed",
    "ProvisioningRejected",
    "ProvisioningExpired",
    "ProvisioningCancelled",
    "PendingApproval",
    "NotRegistered",
    "CODES",
]


class TesseraError(Exception):
    """Base class of every Tessera error."""

    code: int
    message: str
    detail: Optional[str]
    retry_after: Optional[float]
    remaining_attempts: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        detail: Optional[str] = None,
        retry_after: Optional[float] = None,
        remaining_attempts: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.retry_after = retry_after
        self.remaining_attempts = remaining_attempts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class InvalidToken(TesseraError):
    """A token (PT, RT, operation credentials, admin token) was not accepted."""


class MalformedToken(InvalidToken, ValueError):
    """The token's text is malformed (``detail``: wrong_prefix, wrong_length, bad_encoding,
    bad_checksum, unknown_version). Code 6."""


class Unauthenticated(InvalidToken):
    """The credential was not accepted; deliberately without detail. Code 10."""


class Expired(InvalidToken):
    """The credential is authentic but expired. Code 11."""


class Revoked(InvalidToken):
    """The credential is authentic but revoked. Code 12."""


class RotationReuse(Revoked):
    """An old RT generation was reused outside the grace: the registration is revoked. Code 14."""


class Superseded(InvalidToken):
    """The RT is authentic but a newer generation exists. Code 13."""


class DeviceBlocked(TesseraError):
    """The device id is blocked from provisioning. Code 15."""


class InvalidInput(TesseraError, ValueError):
    """An argument was rejected; nothing changed. Code 5."""


class NotFound(TesseraError, LookupError):
    """The named object does not exist. Code 20."""


class ApprovalError(TesseraError):
    """An approval could not be made."""


class OperationClosed(ApprovalError):
    """The operation is no longer pending. Code 21."""


class WrongVerificationCode(ApprovalError):
    """The verification code did not match (``remaining_attempts`` left). Code 22."""


class VerificationAttemptsExhausted(ApprovalError):
    """Too many wrong codes: the operation was rejected. Code 23."""


class VerificationCodeRequired(ApprovalError):
    """The PT's policy needs the verification code. Code 24."""


class DeviceIdInUse(ApprovalError):
    """The device id is registered under another PT; approve with ``reassign=True`` to move
    it. Code 25."""


class RateLimited(TesseraError):
    """Too many requests; retry after ``retry_after`` seconds. Code 30."""


class LimitReached(TesseraError):
    """A fixed limit was reached (not a rate: waiting does not help)."""


class TooManyPendingOperations(LimitReached):
    """The PT has as many pending operations as it may. Code 31."""


class RegistrationCapReached(LimitReached):
    """The fleet PT has made as many registrations as it may. Code 32."""


class GenerationExhausted(LimitReached):
    """The registration's generation counter is exhausted. Code 33."""


class Forbidden(TesseraError):
    """The admin token's role does not allow this request. Code 40."""


class TesseraTimeout(TesseraError, TimeoutError):
    """A request timed out (server-side deadline, code 41, or client-side, code 101)."""


class DeadlineExceeded(TesseraTimeout):
    """A device call's overall deadline passed. Code 114."""


class ServerError(TesseraError):
    """The server failed internally or is unavailable; nothing changed. Codes 50, 51."""


class Unavailable(ServerError):
    """The server cannot answer now: shutting down, overloaded, or (several nodes) behind the
    shared store. Retry later, or on another node. Code 51."""


class ProtocolError(TesseraError):
    """A malformed, unknown or oversized message. Codes 1-4, and 102 from the client."""


class TesseraConnectionError(TesseraError, ConnectionError):
    """The connection could not be made or was lost. Code 100."""


class CertificateError(TesseraConnectionError):
    """The server's certificate was not accepted: it does not carry ``server_name``, or the CA or
    pin does not match. Retrying does not help. Code 104."""


class ConfigError(TesseraError, ValueError):
    """Invalid or incomplete configuration. Code 103."""


class ProvisioningFailed(TesseraError):
    """A provisioning operation ended without a registration."""


class ProvisioningRejected(ProvisioningFailed):
    """A technician rejected the operation. Code 110."""


class ProvisioningExpired(ProvisioningFailed):
    """The operation expired before a decision. Code 111."""


class ProvisioningCancelled(ProvisioningFailed):
    """The operation was cancelled. Code 112."""


class PendingApproval(TesseraError):
    """The operation is still waiting for a technician. Code 113."""


class NotRegistered(TesseraError):
    """The device has no registration to refresh: call ``ensure_registered`` first (also after
    the server refused it as revoked, expired or reused). Code 115."""


#: Every code and the class raised for it.
CODES: Dict[int, Type[TesseraError]] = {
    1: ProtocolError,
    2: ProtocolError,
    3: ProtocolError,
    4: ProtocolError,
    5: InvalidInput,
    6: MalformedToken,
    10: Unauthenticated,
    11: Expired,
    12: Revoked,
    13: Superseded,
    14: RotationReuse,
    15: DeviceBlocked,
    20: NotFound,
    21: OperationClosed,
    22: WrongVerificationCode,
    23: VerificationAttemptsExhausted,
    24: VerificationCodeRequired,
    25: DeviceIdInUse,
    30: RateLimited,
    31: TooManyPendingOperations,
    32: RegistrationCapReached,
    33: GenerationExhausted,
    40: Forbidden,
    41: TesseraTimeout,
    50: ServerError,
    51: Unavailable,
    100: TesseraConnectionError,
    101: TesseraTimeout,
    102: ProtocolError,
    103: ConfigError,
    104: CertificateError,
    110: ProvisioningRejected,
    111: ProvisioningExpired,
    112: ProvisioningCancelled,
    113: PendingApproval,
    114: DeadlineExceeded,
    115: NotRegistered,
}


def _make(
    code: int,
    message: str,
    detail: Optional[str] = None,
    retry_after_ms: Optional[int] = None,
    remaining_attempts: Optional[int] = None,
) -> TesseraError:
    """Build the exception for ``code`` (called by the native module)."""
    cls = CODES.get(code, TesseraError)
    return cls(
        message,
        code=code,
        detail=detail,
        retry_after=None if retry_after_ms is None else retry_after_ms / 1000.0,
        remaining_attempts=remaining_attempts,
    )
