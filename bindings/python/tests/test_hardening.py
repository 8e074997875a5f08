"""The security review's reproductions, run against a real server over QUIC: each one must now
fail the way docs/reliability.md ("Hardening rules") says."""

from concurrent.futures import ThreadPoolExecutor

import pytest

import tessera
from conftest import wait_for



def test_a_fleet_pt_cannot_take_over_a_registered_device_id(
    tessera_admin, tessera_device_factory
):
    pt_a_id, pt_a = tessera_admin.create_pt("A, manual")
    owner = tessera_device_factory(pt_a, device_id="pump-17")
    with ThreadPoolExecutor(max_workers=1) as pool:
        registering = pool.submit(owner.ensure_registered, 20)
        op = wait_for(lambda: tessera_admin.pending_operations(pt_a_id))[0]
        tessera_admin.approve(op["id"])
        owned = registering.result(timeout=20)

    _, pt_b = tessera_admin.create_pt(
        "B, fleet, automatic", kind="fleet", max_registrations=10, approval="automatic"
    )
    attacker = tessera_device_factory(pt_b, device_id="pump-17")
    # Before the fix the attacker got an RT at once; now the operation waits for a technician.
    with pytest.raises(tessera.PendingApproval):
        attacker.ensure_registered(1)
    held = wait_for(
        lambda: [o for o in tessera_admin.pending_operations() if o["pt_id"] != pt_a_id]
    )[0]
    assert held["replaces"] == [{"registration_id": owned.registration_id, "pt_id": pt_a_id}]
    # The owner's RT still validates and refreshes.
    assert owner.refresh().generation == 2
    signals = [s for s in tessera_admin.leaks() if s["kind"] == "device_id_collision"]
    assert len(signals) == 1 and signals[0]["action"] == "held_for_technician"
    # A technician must say reassign explicitly.
    with pytest.raises(tessera.DeviceIdInUse):
        tessera_admin.approve(held["id"])
    assert owner.refresh().generation == 3


def test_engine_closes_and_is_a_context_manager(tmp_path):
    with tessera.Engine() as engine:
        directory = engine.data_dir
        assert directory.exists()
        engine.create_pt("closing")
    assert not directory.exists(), "the temporary data directory is removed on close"
    with pytest.raises(tessera.ConfigError, match="closed"):
        engine.create_pt("after close")
    engine.close()  # again: nothing happens
    kept = tessera.Engine(tmp_path / "kept")
    kept.close()
    assert (tmp_path / "kept").exists(), "a data directory the caller gave is kept"


def test_the_clock_skew_leeway_is_settable_and_documented_behaviour_holds(clock):
    engine = tessera.Engine(clock=clock, clock_skew_leeway=0)
    _, pt = engine.create_pt("leeway", approval="automatic", rt_lifetime_secs=60)
    op = engine.begin(pt, device_id="skew-1")
    reg = engine.collect(op.operation_id, op.secret)
    clock.advance(60)
    with pytest.raises(tessera.Expired):
        engine.validate(reg.rt)  # no leeway: expired at expires_at exactly
    with pytest.raises(ValueError):
        tessera.Engine(clock_skew_leeway=301)


def test_unknown_admin_requests_are_tessera_errors(tessera_admin):
    with pytest.raises(tessera.InvalidInput, match="frobnicate"):
        tessera_admin.call("frobnicate")


def test_expired_operations_look_expired_everywhere(tmp_path):
    with tessera.Server(tmp_path, manual_clock=True, engine={"operation_ttl_secs": 60}) as s, \
            s.admin() as admin:
        _, pt = admin.create_pt("slow")
        with s.device(pt, device_id="slow-2", wait_timeout=0.2) as device:
            with pytest.raises(tessera.PendingApproval):
                device.ensure_registered(0.5)
            op_id = device.pending_operation_id
            assert admin.show_operation(op_id)["state"] == "pending"
            s.advance_clock(61)
            assert admin.show_operation(op_id)["state"] == "expired"
            assert admin.pending_operations() == []
            assert [o["id"] for o in admin.operations(state="expired")] == [op_id]
            assert admin.status()["engine"]["counts"]["pending_operations"] == 0
            with pytest.raises(tessera.OperationClosed, match="expired"):
                admin.approve(op_id)


def test_device_client_documents_its_parameters_and_reports_a_bad_stored_document(tessera_server):
    doc = tessera.DeviceClient.__doc__ or ""
    for name in ("load", "save", "on_log", "on_code", "request_timeout", "wait_timeout", "pin"):
        assert name in doc, name
    lines = []
    pt = tessera.Engine().create_pt("unused")[1]
    with tessera_server.device(pt, load=lambda: '{"rt": 5', on_log=lines.append) as device:
        assert device.current is None
    assert any("ignoring the stored registration" in line for line in lines), lines


def test_a_certificate_without_the_server_name_is_a_certificate_error(tessera_server):
    pt = tessera.Engine().create_pt("name")[1]
    with tessera.DeviceClient(
        tessera_server.device_address, pt, server_name="wrong.example", ca_pem=tessera_server.ca_pem
    ) as device:
        with pytest.raises(tessera.CertificateError):
            device.ensure_registered(5)


def test_the_admin_client_checks_its_arguments_before_sending(tessera_admin):
    before = tessera_admin.status()["engine"]["counts"]["pts"]
    with pytest.raises(TypeError):
        tessera_admin.create_pt(5)
    with pytest.raises(TypeError):
        tessera_admin.create_pt("x", bogus=1)
    with pytest.raises(TypeError):
        tessera_admin.create_pt("x", max_registrations="10")
    with pytest.raises(TypeError):
        tessera_admin.approve("op_x", reassign="yes")
    with pytest.raises(tessera.InvalidInput):
        tessera_admin.revoke_device(registration_id=-1)
    with pytest.raises(tessera.InvalidInput):
        tessera_admin.create_pt_batch("x", -1)
    with pytest.raises(TypeError):
        tessera_admin.audit(limit=True)
    assert tessera_admin.status()["engine"]["counts"]["pts"] == before


def test_one_time_convention_across_the_python_api(tessera_admin, tessera_device_factory, clock):
    import time

    _, pt = tessera_admin.create_pt("units", approval="automatic", rt_lifetime_secs=3600)
    reg = tessera_device_factory(pt, device_id="units-1").ensure_registered(10)
    rec = tessera_admin.devices(device_id="units-1")[0]
    # Record times and RT times alike: Unix seconds, as floats.
    assert all(isinstance(rec[k], float) for k in ("created_at", "issued_at", "expires_at"))
    assert rec["expires_at"] == float(reg.expires_at)
    assert abs(rec["expires_at"] - rec["created_at"] - 3600) < 5
    for record in (tessera_admin.operations()[0], tessera_admin.list_pts()[0]):
        assert abs(record["created_at"] - time.time()) < 300
    assert abs(tessera_admin.audit(newest=True, limit=1)[0]["at"] - time.time()) < 300
    # The in-process engine answers in the same shapes and units.
    engine = tessera.Engine(clock=clock)
    op = engine.begin(engine.create_pt("units")[1])
    approved = engine.approve(op.operation_id)
    assert set(approved) == set(rec)
    assert approved["created_at"] == clock()
    assert abs(op.expires_at - (approved["created_at"] + 900)) < 1
    assert engine.registration(approved["id"]) == approved
