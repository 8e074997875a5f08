"""The engine from Python: flows, rotation, reuse, cascades, parallel operations, the clock."""

import pytest

import tessera
from conftest import provision

DAY = 86_400.0


def test_flow_with_verification_code(engine):
    _, pt = engine.create_pt("unit 17", approval="manual_with_code")
    op = engine.begin(pt, device_id="pump-0017")
    assert op.state == "pending" and op.verification_code is not None
    assert engine.poll(op.operation_id, op.secret) is None
    with pytest.raises(tessera.PendingApproval):
        engine.collect(op.operation_id, op.secret)
    with pytest.raises(tessera.VerificationCodeRequired):
        engine.approve(op.operation_id)
    with pytest.raises(tessera.WrongVerificationCode) as wrong:
        engine.approve(op.operation_id, code="0000-0000")
    assert wrong.value.remaining_attempts == 4
    # Typed the Crockford way: lower case, no dash.
    engine.approve(op.operation_id, code=op.verification_code.replace("-", "").lower())
    reg = engine.collect(op.operation_id, op.secret)
    assert reg.device_id == "pump-0017" and reg.generation == 1
    claims = engine.validate(reg.rt)
    assert claims.registration_id == reg.registration_id
    assert engine.introspect(reg.rt)["device_id"] == "pump-0017"
    assert "redacted" in repr(reg) and reg.rt not in repr(reg)
    assert op.secret not in repr(op)


def test_flow_without_code_and_the_operation_secret_is_required(engine):
    _, pt = engine.create_pt("unit 18")
    op = engine.begin(pt, device_id="pump-0018")
    assert op.verification_code is None
    engine.approve(op.operation_id)
    other = engine.begin(engine.create_pt("other")[1], device_id="x")
    with pytest.raises(tessera.Unauthenticated):
        engine.poll(op.operation_id, other.secret)
    assert engine.collect(op.operation_id, op.secret).device_id == "pump-0018"


def test_automatic_policy_and_attribute_rule(engine):
    _, auto = engine.create_pt("auto", approval="automatic")
    op = engine.begin(auto, device_id="auto-1")
    assert engine.collect(op.operation_id, op.secret).device_id == "auto-1"
    _, ruled = engine.create_pt("rule", approval="rule", rule="model=P100")
    ok = engine.begin(ruled, device_id="r-1", attributes={"model": "P100"})
    assert engine.poll(ok.operation_id, ok.secret) is not None


def test_rotation_with_a_dropped_response_returns_the_same_successor(engine, clock):
    _, pt = engine.create_pt("rot", approval="automatic")
    reg = provision(engine, pt, "rot-1")
    clock.advance(DAY)
    lost = engine.refresh(reg.rt)  # the answer is lost on its way to the device
    clock.advance(30)
    retried = engine.refresh(reg.rt)  # the device retries with the RT it still holds
    assert retried.rt == lost.rt and retried.generation == 2
    with pytest.raises(tessera.Superseded):
        engine.validate(reg.rt)
    assert engine.validate(retried.rt).generation == 2


def test_reuse_of_an_old_generation_revokes_the_registration(engine, clock):
    _, pt = engine.create_pt("reuse", approval="automatic")
    g1 = provision(engine, pt, "reuse-1")
    g2 = engine.refresh(g1.rt)
    g3 = engine.refresh(g2.rt)
    with pytest.raises(tessera.RotationReuse):
        engine.refresh(g1.rt)
    with pytest.raises(tessera.Revoked):
        engine.validate(g3.rt)


def test_pt_revocation_cascades(engine):
    pt_id, pt = engine.create_pt("fleet", kind="fleet", approval="automatic", max_registrations=10)
    regs = [provision(engine, pt, f"f-{i}", nonce=f"instance-nonce-{i:04d}") for i in range(3)]
    assert engine.revoke_pt(pt_id, "stolen batch") == 3
    for r in regs:
        with pytest.raises(tessera.Revoked):
            engine.validate(r.rt)
    # The PT is authentic but revoked: it can begin nothing more.
    with pytest.raises(tessera.Revoked):
        engine.begin(pt, device_id="f-9", nonce="late-instance-nonce")


def test_parallel_operations_on_one_pt(engine):
    _, pt = engine.create_pt("single")
    a = engine.begin(pt, device_id="dev-a", nonce="instance-a-instance-nonce")
    b = engine.begin(pt, device_id="dev-b", nonce="instance-b-instance-nonce")
    again = engine.begin(pt, device_id="dev-a", nonce="instance-a-instance-nonce")
    assert again.operation_id == a.operation_id and again.resumed
    engine.approve(a.operation_id)
    with pytest.raises(tessera.ProvisioningCancelled):
        engine.poll(b.operation_id, b.secret)
    with pytest.raises(tessera.OperationClosed):
        engine.approve(b.operation_id)


def test_expiry_follows_the_injected_clock(tmp_path, clock):
    engine = tessera.Engine(tmp_path, clock=clock, operation_ttl=600, max_rt_lifetime=DAY)
    _, pt = engine.create_pt("short", approval="automatic", rt_lifetime_secs=3600)
    reg = provision(engine, pt, "short-1")
    engine.validate(reg.rt)
    clock.advance(3600 + 300)
    with pytest.raises(tessera.Expired):
        engine.validate(reg.rt)
    _, manual = engine.create_pt("manual", rt_lifetime_secs=3600)
    op = engine.begin(manual, device_id="late-1")
    clock.advance(601)
    with pytest.raises(tessera.ProvisioningExpired):
        engine.poll(op.operation_id, op.secret)


def test_block_reject_and_data_survive_reopen(tmp_path, clock):
    path = tmp_path / "data"
    engine = tessera.Engine(path, clock=clock)
    _, pt = engine.create_pt("b", approval="automatic")
    reg = provision(engine, pt, "blocked-1")
    assert engine.block_device("blocked-1", "tampered") == 1
    with pytest.raises(tessera.DeviceBlocked):
        engine.begin(engine.create_pt("b2", approval="automatic")[1], device_id="blocked-1")
    _, manual = engine.create_pt("m")
    op = engine.begin(manual, device_id="rej-1")
    engine.reject(op.operation_id, "wrong unit")
    with pytest.raises(tessera.ProvisioningRejected):
        engine.poll(op.operation_id, op.secret)
    del engine
    reopened = tessera.Engine(path, clock=clock)
    with pytest.raises(tessera.Revoked):
        reopened.validate(reg.rt)
    assert reopened.unblock_device("blocked-1") is True
    assert reopened.registration(reg.registration_id)["device_id"] == "blocked-1"
