"""Flows over real QUIC: the in-process server, the admin client and device clients, driven
through the plugin's fixtures."""

import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import tessera
from conftest import wait_for
from tessera import faults


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as p:
        yield p


def test_manual_approval_with_code_via_admin_client(tessera_admin, tessera_device_factory, pool):
    _, pt = tessera_admin.create_pt("unit 17", approval="manual_with_code")
    codes = queue.Queue()
    saved = []
    device = tessera_device_factory(
        pt, device_id="pump-0017", on_code=codes.put, save=saved.append
    )
    registering = pool.submit(device.ensure_registered, 20)
    code = codes.get(timeout=10)  # shown on the device's display
    op_id = wait_for(lambda: device.pending_operation_id)
    with pytest.raises(tessera.WrongVerificationCode):
        tessera_admin.approve(op_id, code="0000-0000")
    tessera_admin.approve(op_id, code=code)
    reg = registering.result(timeout=20)
    assert reg.device_id == "pump-0017" and reg.generation == 1
    assert json.loads(saved[-1])["rt"] == reg.rt
    assert device.current.rt == reg.rt
    assert device.next_refresh_at > time.time()


def test_manual_without_code_and_stored_rt_is_reused(tessera_admin, tessera_device_factory, pool):
    _, pt = tessera_admin.create_pt("unit 18")
    store = {}
    first = tessera_device_factory(pt, device_id="pump-0018", save=lambda s: store.update(rt=s))
    registering = pool.submit(first.ensure_registered, 20)
    op = wait_for(lambda: tessera_admin.pending_operations())[0]
    assert op["uses_code"] is False
    tessera_admin.approve(op["id"])
    reg = registering.result(timeout=20)
    # A reboot: a new client loads the stored RT and needs no new operation.
    rebooted = tessera_device_factory(pt, device_id="pump-0018", load=lambda: store["rt"])
    assert rebooted.ensure_registered(5).rt == reg.rt
    assert len(tessera_admin.operations()) == 1


def test_pin_instead_of_ca_and_automatic_policy(tessera_server, tessera_admin):
    _, pt = tessera_admin.create_pt("auto", approval="automatic")
    with tessera.DeviceClient(
        tessera_server.device_address, pt, pin=tessera_server.ca_fingerprint, device_id="auto-1"
    ) as device:
        assert device.ensure_registered(10).device_id == "auto-1"


def test_several_pins_during_a_ca_rollover(tessera_server, tessera_admin):
    # A device given the next CA's pin beside the current one connects to either.
    _, pt = tessera_admin.create_pt("rollover", approval="automatic")
    pins = ["ab" * 32, tessera_server.ca_fingerprint]
    with tessera.DeviceClient(
        tessera_server.device_address, pt, pin=pins, device_id="roll-1"
    ) as device:
        assert device.ensure_registered(10).device_id == "roll-1"
    with pytest.raises(tessera.ConfigError):
        tessera.DeviceClient(tessera_server.device_address, pt, pin=["ab" * 32, "abc"])


def test_rotation_with_a_dropped_response(tessera_admin, tessera_device_factory):
    _, pt = tessera_admin.create_pt("rot", approval="automatic")
    device = tessera_device_factory(pt, device_id="rot-1")
    g1 = device.ensure_registered(10)
    faults.drop_refresh_response(device)
    assert device.current.rt == g1.rt  # the device never saw the answer
    g2 = device.refresh()  # retries with g1 within the grace: the same successor, no alarm
    assert g2.generation == 2
    assert device.refresh().generation == 3
    assert tessera_admin.leaks() == []


def test_reuse_detection_revokes_the_registration(tessera_admin, tessera_device_factory):
    _, pt = tessera_admin.create_pt("reuse", approval="automatic")
    saved = []
    device = tessera_device_factory(pt, device_id="reuse-1", save=saved.append)
    device.ensure_registered(10)
    device.refresh()
    device.refresh()
    # A clone holding generation 1 (stolen from flash) tries to refresh. (The first save holds
    # the pending operation; the first with an RT holds generation 1.)
    generation_1 = next(s for s in saved if json.loads(s).get("rt"))
    clone = tessera_device_factory(pt, device_id="reuse-1", load=lambda: generation_1)
    with pytest.raises(tessera.RotationReuse):
        clone.refresh()
    with pytest.raises(tessera.Revoked):
        device.refresh()
    kinds = [s["kind"] for s in tessera_admin.leaks()]
    assert kinds[0] == "rotation_reuse" and "rotation_reuse" not in kinds[1:]


def test_pt_revocation_cascades(tessera_admin, tessera_device_factory):
    pt_id, pt = tessera_admin.create_pt(
        "fleet", kind="fleet", approval="automatic", max_registrations=5
    )
    devices = [tessera_device_factory(pt, device_id=f"c-{i}") for i in range(3)]
    for d in devices:
        d.ensure_registered(10)
    assert tessera_admin.revoke_pt(pt_id, "batch leaked") == 3
    # The end of the audit log: the three registrations' revocations and the PT's, in order.
    tail = tessera_admin.audit(limit=4, newest=True)
    assert [e["action"] for e in tail] == ["registration.revoke"] * 3 + ["pt.revoke"]
    assert [e["seq"] for e in tail] == sorted(e["seq"] for e in tail)
    assert tail == tessera_admin.audit(after=tail[0]["seq"] - 1, limit=4)
    for d in devices:
        with pytest.raises(tessera.Revoked):
            d.refresh()


def test_parallel_operations_conflict_and_approving_one_cancels_the_other(
    tessera_admin, tessera_device_factory, pool
):
    _, pt = tessera_admin.create_pt("single")
    a = tessera_device_factory(pt, device_id="twin-a")
    b = tessera_device_factory(pt, device_id="twin-b")
    fa = pool.submit(a.ensure_registered, 20)
    fb = pool.submit(b.ensure_registered, 20)
    ops = wait_for(lambda: len(tessera_admin.pending_operations()) == 2 and
                   tessera_admin.pending_operations())
    assert all(op["conflict"] for op in ops)
    tessera_admin.approve(wait_for(lambda: a.pending_operation_id))
    assert fa.result(timeout=20).device_id == "twin-a"
    with pytest.raises(tessera.ProvisioningCancelled):
        fb.result(timeout=20)


def test_duplicated_begin_makes_one_operation(tessera_server, tessera_admin, pool):
    _, pt = tessera_admin.create_pt("dup")
    with faults.duplicating_device(tessera_server, pt, device_id="dup-1") as device:
        registering = pool.submit(device.ensure_registered, 20)
        op = wait_for(lambda: tessera_admin.pending_operations())
        assert len(op) == 1
        tessera_admin.approve(op[0]["id"])
        assert registering.result(timeout=20).device_id == "dup-1"
        assert len(tessera_admin.operations()) == 1


def test_skewed_device_clock_changes_nothing(tessera_server, tessera_admin):
    _, pt = tessera_admin.create_pt("skew", kind="fleet", approval="automatic",
                                    max_registrations=2)
    day = 86_400
    with faults.skewed_device(tessera_server, pt, day, device_id="ahead") as ahead, \
            tessera_server.device(pt, device_id="right") as right:
        ra = ahead.ensure_registered(10)
        rr = right.ensure_registered(10)
        # The RT's lifetime comes from the server, and the refresh is scheduled in the device's
        # own (skewed) time: a day later on its clock, the same moment in server time.
        assert abs((ra.expires_at - ra.issued_at) - (rr.expires_at - rr.issued_at)) <= 1
        due_shift = (ahead.next_refresh_at - ra.issued_at) - (right.next_refresh_at - rr.issued_at)
        assert abs(due_shift - day) < 0.2 * (rr.expires_at - rr.issued_at)
        # Still valid: the skewed device does not think its RT expired and re-provision.
        assert ahead.ensure_registered(5).rt == ra.rt
        assert ahead.refresh().generation == 2


def test_operation_expiry_on_the_server_clock(tmp_path):
    with tessera.Server(tmp_path, manual_clock=True, engine={"operation_ttl_secs": 120}) as s, \
            s.admin() as admin:
        _, pt = admin.create_pt("slow")
        with s.device(pt, device_id="slow-1", wait_timeout=0.2) as device:
            with pytest.raises(tessera.PendingApproval):
                device.ensure_registered(0.5)
            s.advance_clock(121)
            with pytest.raises(tessera.ProvisioningExpired):
                device.ensure_registered(5)


def test_admin_errors_map_to_exceptions(tessera_server, tessera_admin):
    tech = tessera_admin.create_token("alice", role="technician")
    with tessera_server.admin(tech) as technician:
        with pytest.raises(tessera.Forbidden):
            technician.create_pt("nope")
        assert technician.pending_operations() == []
    with tessera_server.admin("tsat_" + "A" * 76) as forged:
        with pytest.raises((tessera.Unauthenticated, tessera.MalformedToken)):
            forged.status()
    with pytest.raises(tessera.ProtocolError):
        tessera_admin._native.call(0x3F, "{}")
    with pytest.raises(tessera.ProtocolError):
        tessera_admin.call("pt_create", label="x", bogus=1)
    with pytest.raises(ValueError):
        tessera_admin.call("no_such_request")
    with pytest.raises(tessera.NotFound):
        tessera_admin.show_operation("op_" + "A" * 22)
    batch = tessera_admin.create_pt_batch("line 4", 5, approval="automatic")
    assert len(batch) == 5 and all(tessera.check_pt(tok) == pid for pid, tok in batch)


def test_device_configuration_errors(tessera_server):
    with pytest.raises(tessera.ConfigError):
        tessera.DeviceClient(tessera_server.device_address, "tspt_x")  # no CA, no pin
    with pytest.raises(tessera.ConfigError):
        tessera.DeviceClient("nowhere", "tspt_x", pin="00")
    with pytest.raises(TypeError):
        tessera_server.device("tspt_x", on_code=42)
    with tessera_server.device("tspt_x") as device:
        with pytest.raises(tessera.NotRegistered):
            device.refresh()  # not registered
        with pytest.raises(tessera.MalformedToken):
            device.ensure_registered(5)


def test_unreachable_server_is_a_connection_error_or_deadline(tessera_server):
    pt = tessera.Engine().create_pt("offline")[1]
    with tessera.DeviceClient(
        "127.0.0.1:9", pt, ca_pem=tessera_server.ca_pem, request_timeout=0.3,
        initial_backoff=0.05, max_backoff=0.1,
    ) as device:
        with pytest.raises((tessera.DeadlineExceeded, tessera.TesseraConnectionError)):
            device.ensure_registered(1.0)


def test_close_from_another_thread_ends_a_waiting_device(tessera_admin, tessera_device_factory, pool):
    _, pt = tessera_admin.create_pt("closing")
    device = tessera_device_factory(pt, device_id="closing-1")
    waiting = pool.submit(device.ensure_registered, 60)
    wait_for(lambda: device.pending_operation_id)
    closing = pool.submit(device.close)
    closing.result(timeout=10)  # returns although another thread is mid-request
    with pytest.raises(tessera.ConfigError):
        waiting.result(timeout=10)  # the wait ends instead of reconnecting
    with pytest.raises(tessera.NotRegistered):
        device.refresh()  # it never registered
