"""Many Python threads at once: validation from 8 threads gives correct results, and devices
driven from threads make progress together (the GIL is released while they wait)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import tessera
from conftest import provision


def test_validation_from_8_threads_is_correct(engine):
    _, pt = engine.create_pt("t", kind="fleet", approval="automatic", max_registrations=100)
    regs = [provision(engine, pt, f"t-{i}", nonce=f"instance-nonce-{i:04d}") for i in range(40)]
    revoked = {r.registration_id for r in regs[::5]}
    for rid in revoked:
        engine.revoke_registration(rid, "test")
    superseded = regs[1]
    current = {r.registration_id: r for r in regs}
    current[superseded.registration_id] = engine.refresh(superseded.rt)

    def check(worker: int) -> int:
        checked = 0
        for round_ in range(50):
            for r in regs:
                if r.registration_id in revoked:
                    with pytest.raises(tessera.Revoked):
                        engine.validate(r.rt)
                elif r is superseded:
                    with pytest.raises(tessera.Superseded):
                        engine.validate(r.rt)
                else:
                    c = engine.validate(r.rt)
                    assert (c.registration_id, c.generation) == (r.registration_id, 1)
                checked += 1
            batch = engine.validate_many([current[r.registration_id].rt for r in regs])
            for r, got in zip(regs, batch):
                if r.registration_id in revoked:
                    assert isinstance(got, tessera.Revoked)
                else:
                    assert got.registration_id == r.registration_id
            checked += len(batch)
        return checked

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(check, range(8)))
    assert results == [50 * 80] * 8


def test_device_waits_do_not_hold_the_gil(tessera_admin, tessera_device_factory):
    # Eight devices long-poll for approval at once; while they wait, this thread keeps running
    # Python code and approves them one by one. If a wait held the GIL, the approvals (and the
    # counter) could not advance until a wait timed out.
    # Eight single-device PTs so the operations do not conflict with each other.
    pts = [tessera_admin.create_pt(f"gil-{i}")[1] for i in range(8)]
    devices = [tessera_device_factory(p, device_id=f"g-{i}") for i, p in enumerate(pts)]
    done = []
    threads = [
        threading.Thread(target=lambda d=d: done.append(d.ensure_registered(30)))
        for d in devices
    ]
    for t in threads:
        t.start()
    approved = set()
    spins = 0
    while len(approved) < 8:
        spins += 1
        for op in tessera_admin.pending_operations():
            if op["id"] not in approved:
                tessera_admin.approve(op["id"])
                approved.add(op["id"])
    for t in threads:
        t.join(30)
    assert len(done) == 8 and spins > 0
    assert sorted(r.device_id for r in done) == sorted(f"g-{i}" for i in range(8))
