"""Bad input maps to its exception (or TypeError/ValueError), never a panic, and changes
nothing."""

import pytest

import tessera
from tessera import errors
from conftest import provision


def test_every_code_has_a_class_and_the_hierarchy_holds():
    for code, cls in errors.CODES.items():
        e = errors._make(code, "m", None, 1500, 3)
        assert type(e) is cls and isinstance(e, tessera.TesseraError)
        assert e.code == code and e.retry_after == 1.5 and e.remaining_attempts == 3
    assert issubclass(tessera.InvalidInput, ValueError)
    assert issubclass(tessera.MalformedToken, tessera.InvalidToken)
    assert issubclass(tessera.RotationReuse, tessera.Revoked)
    assert issubclass(tessera.TesseraTimeout, TimeoutError)
    assert issubclass(tessera.TesseraConnectionError, ConnectionError)
    assert type(errors._make(999, "future code")) is tessera.TesseraError


#: What every wire code of the protocol raises (docs/protocol.md, "Errors").
WIRE_CLASSES = {
    "MALFORMED": tessera.ProtocolError,
    "UNSUPPORTED_VERSION": tessera.ProtocolError,
    "UNKNOWN_REQUEST": tessera.ProtocolError,
    "TOO_LARGE": tessera.ProtocolError,
    "INVALID_INPUT": tessera.InvalidInput,
    "TOKEN_FORMAT": tessera.MalformedToken,
    "UNAUTHENTICATED": tessera.Unauthenticated,
    "EXPIRED": tessera.Expired,
    "REVOKED": tessera.Revoked,
    "SUPERSEDED": tessera.Superseded,
    "ROTATION_REUSE": tessera.RotationReuse,
    "DEVICE_BLOCKED": tessera.DeviceBlocked,
    "NOT_FOUND": tessera.NotFound,
    "OPERATION_CLOSED": tessera.OperationClosed,
    "WRONG_CODE": tessera.WrongVerificationCode,
    "CODE_ATTEMPTS_EXHAUSTED": tessera.VerificationAttemptsExhausted,
    "CODE_REQUIRED": tessera.VerificationCodeRequired,
    "DEVICE_ID_IN_USE": tessera.DeviceIdInUse,
    "RATE_LIMITED": tessera.RateLimited,
    "TOO_MANY_PENDING": tessera.TooManyPendingOperations,
    "REGISTRATION_CAP": tessera.RegistrationCapReached,
    "GENERATION_EXHAUSTED": tessera.GenerationExhausted,
    "FORBIDDEN": tessera.Forbidden,
    "TIMEOUT": tessera.TesseraTimeout,
    "INTERNAL": tessera.ServerError,
    "UNAVAILABLE": tessera.Unavailable,
}


def test_every_wire_code_raises_its_class():
    """The protocol's own list of codes (from the native module), walked through the table."""
    from tessera import _native

    names = {name for _, name in _native.WIRE_CODES}
    assert names == set(WIRE_CLASSES), "a wire code without a class here, or one gone"
    for code, name in _native.WIRE_CODES:
        assert errors.CODES[code] is WIRE_CLASSES[name], name
        assert type(errors._make(code, "m")) is WIRE_CLASSES[name], name
    assert issubclass(tessera.Unavailable, tessera.ServerError)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda e: e.validate(12345), TypeError),
        (lambda e: e.validate(None), TypeError),
        (lambda e: e.validate("not a token"), tessera.MalformedToken),
        (lambda e: e.validate(b"tsrt_" + b"A" * 92), tessera.MalformedToken),
        (lambda e: e.refresh("tsrt_short"), tessera.MalformedToken),
        (lambda e: e.create_pt("x", kind="bogus"), tessera.InvalidInput),
        (lambda e: e.create_pt("x", kind="fleet"), tessera.InvalidInput),
        (lambda e: e.create_pt("x", approval="rule"), tessera.InvalidInput),
        (lambda e: e.create_pt("x" * 500), tessera.InvalidInput),
        (lambda e: e.create_pt(None), TypeError),
        (lambda e: e.approve("op_nope"), tessera.InvalidInput),
        (lambda e: e.approve("op_" + "A" * 22), tessera.NotFound),
        (lambda e: e.revoke_pt("pt_bad"), tessera.InvalidInput),
        (lambda e: e.block_device("bad id with spaces"), tessera.InvalidInput),
        (lambda e: e.registration(999), tessera.NotFound),
        (lambda e: e.revoke_registration(-1), OverflowError),
        (lambda e: e.begin("tspt_x"), tessera.MalformedToken),
        (lambda e: e.begin(e.create_pt("y")[1], device_id="ü"), tessera.InvalidInput),
        (lambda e: e.begin(e.create_pt("z")[1], attributes={"k": 1}), TypeError),
        (lambda e: e.begin(e.create_pt("w")[1], nonce=""), tessera.InvalidInput),
        (lambda e: tessera.check_pt(3.5), TypeError),
        (lambda e: tessera.inspect_rt("tspt_"), tessera.MalformedToken),
    ],
)
def test_bad_input_raises_and_changes_nothing(engine, call, exc):
    before = engine.status()["counts"]
    with pytest.raises(exc):
        call(engine)
    after = engine.status()["counts"]
    # Only the PTs the lambdas create on purpose (to reach the check under test) may appear.
    assert after["active_registrations"] == before["active_registrations"]
    assert after["pending_operations"] == before["pending_operations"]


def test_engine_constructor_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        tessera.Engine(root_key=b"short")
    with pytest.raises(TypeError):
        tessera.Engine(clock="not callable")
    with pytest.raises(ValueError):
        tessera.Engine(max_rt_lifetime=-1)
    with pytest.raises(TypeError):
        tessera.Engine(clock=lambda: "noon")
    with pytest.raises(ValueError):
        tessera.Engine(clock=lambda: -5.0)
    # A clock that goes bad later fails the call, not the process.
    times = iter([1_800_000_000.0, float("nan")])
    engine = tessera.Engine(tmp_path, clock=lambda: next(times))
    with pytest.raises(ValueError):
        engine.create_pt("x")


def test_limits_map_to_their_classes(engine):
    _, single = engine.create_pt("caps")
    for i in range(4):
        engine.begin(single, device_id=f"c-{i}", nonce=f"instance-nonce--{i:04d}")
    with pytest.raises(tessera.TooManyPendingOperations):
        engine.begin(single, device_id="c-9", nonce="n-9-instance-nonce")

    _, fleet = engine.create_pt("one", kind="fleet", approval="automatic", max_registrations=1)
    provision(engine, fleet, "only-1", nonce="a-instance-nonce")
    with pytest.raises(tessera.RegistrationCapReached):
        engine.begin(fleet, device_id="only-2", nonce="b-instance-nonce")

    _, coded = engine.create_pt("code", approval="manual_with_code")
    op = engine.begin(coded, device_id="guess-1")
    for _ in range(4):
        with pytest.raises(tessera.WrongVerificationCode):
            engine.approve(op.operation_id, code="0000-0000")
    with pytest.raises(tessera.VerificationAttemptsExhausted):
        engine.approve(op.operation_id, code="0000-0000")
    with pytest.raises(tessera.ProvisioningRejected):
        engine.poll(op.operation_id, op.secret)
