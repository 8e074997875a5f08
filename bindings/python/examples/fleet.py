"""Provision a fleet of simulated devices against a local Tessera server.

1,000 devices (``--devices``) provision through a fleet PT with the automatic policy and refresh
once; a few more (``--manual``) are approved by hand, a technician typing the verification code
each device shows; one device is revoked; a JSON summary is printed.

    python bindings/python/examples/fleet.py [--devices 1000] [--threads 64] [--manual 3]
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time

import tessera


def approve_by_hand(server: tessera.Server, admin: tessera.AdminClient, i: int) -> tessera.Registration:
    """A device with its own PT asking for a code; the technician reads it off the display."""
    _, pt = admin.create_pt(f"hand-approved unit {i}", approval="manual_with_code")
    display: "queue.Queue[str]" = queue.Queue()
    result: dict = {}
    with server.device(pt, device_id=f"manual-{i:03d}", on_code=display.put) as device:
        worker = threading.Thread(target=lambda: result.update(reg=device.ensure_registered(60)))
        worker.start()
        code = display.get(timeout=30)
        op = next(
            o for o in admin.pending_operations() if o["requested_device_id"] == f"manual-{i:03d}"
        )
        admin.approve(op["id"], code=code)
        worker.join(60)
    return result["reg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--manual", type=int, default=3)
    args = parser.parse_args()

    with tessera.Server() as server, server.admin() as admin:
        fleet = tessera.simulate_fleet(server, args.devices, threads=args.threads, refreshes=1)

        t0 = time.perf_counter()
        manual = [approve_by_hand(server, admin, i) for i in range(args.manual)]
        manual_seconds = time.perf_counter() - t0

        victim = fleet.registrations[0]
        revoked = admin.revoke_device(registration_id=victim.registration_id, reason="stolen")
        active = admin.devices(active_only=True, limit=args.devices + args.manual + 10)

        print(json.dumps({
            "fleet": fleet.as_dict(),
            "approved_by_hand": [r.device_id for r in manual],
            "approved_by_hand_seconds": round(manual_seconds, 3),
            "revoked": {"device_id": victim.device_id, "registrations_revoked": revoked},
            "active_registrations": len(active),
            "server": {"device": server.device_address, "ca_fingerprint": server.ca_fingerprint},
        }, indent=2))


if __name__ == "__main__":
    main()
