"""Python-side validation throughput: tessera.Engine.validate against PyJWT's HS256 decode of
equivalent claims, in the same run, and tessera with 1, 2 and 4 Python threads.

Run against a release build of the package (pip's default):

    python3 -m venv /tmp/bench && /tmp/bench/bin/pip install ./bindings/python PyJWT
    /tmp/bench/bin/python bindings/python/benches/bench_validate.py

Prints a JSON summary. Each figure is the best of ``--repeats`` timed runs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import threading
import time
from typing import Callable, List

import jwt

import tessera


def best_rate(fn: Callable[[], int], repeats: int) -> float:
    """Operations per second of the fastest of ``repeats`` runs of ``fn`` (which returns how
    many operations it did)."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def threaded(threads: int, work: Callable[[int], int]) -> Callable[[], int]:
    def run() -> int:
        done: List[int] = [0] * threads
        barrier = threading.Barrier(threads)

        def one(i: int) -> None:
            barrier.wait()
            done[i] = work(i)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return sum(done)

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    engine = tessera.Engine()
    _, pt = engine.create_pt("bench", kind="fleet", approval="automatic",
                             max_registrations=args.tokens)
    regs = []
    for i in range(args.tokens):
        op = engine.begin(pt, device_id=f"bench-{i:05d}", nonce=f"instance-nonce-{i:04d}")
        regs.append(engine.collect(op.operation_id, op.secret))
    rts = [r.rt for r in regs]

    key = os.urandom(32)
    jwts = [
        jwt.encode({"sub": r.device_id, "reg": r.registration_id, "gen": r.generation,
                    "iat": r.issued_at, "exp": r.expires_at}, key, algorithm="HS256")
        for r in regs
    ]
    macs = [(r.rt.encode(), hmac.new(key, r.rt.encode(), hashlib.sha256).digest()) for r in regs]

    validate = engine.validate
    decode = jwt.decode

    def tessera_loop(_: int = 0, share: int = 1) -> int:
        for _ in range(args.rounds // share):
            for t in rts:
                validate(t)
        return (args.rounds // share) * len(rts)

    def pyjwt_loop() -> int:
        for _ in range(args.rounds):
            for t in jwts:
                decode(t, key, algorithms=["HS256"])
        return args.rounds * len(jwts)

    def hmac_floor() -> int:
        for _ in range(args.rounds):
            for msg, mac in macs:
                hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).digest(), mac)
        return args.rounds * len(macs)

    def batch_loop(share: int = 1) -> Callable[[int], int]:
        def run(_: int) -> int:
            for _ in range(args.rounds // share):
                engine.validate_many(rts)
            return (args.rounds // share) * len(rts)
        return run

    tessera_rate = best_rate(tessera_loop, args.repeats)
    pyjwt_rate = best_rate(pyjwt_loop, args.repeats)
    hmac_rate = best_rate(hmac_floor, args.repeats)
    threads = {}
    for n in (1, 2, 4):
        per_call = best_rate(threaded(n, lambda i, n=n: tessera_loop(i, n)), args.repeats)
        batched = best_rate(threaded(n, batch_loop(n)), args.repeats)
        threads[str(n)] = {"validate_per_s": round(per_call), "validate_many_per_s": round(batched)}
    base_call = threads["1"]["validate_per_s"]
    base_batch = threads["1"]["validate_many_per_s"]
    for v in threads.values():
        v["validate_scaling"] = round(v["validate_per_s"] / base_call, 2)
        v["validate_many_scaling"] = round(v["validate_many_per_s"] / base_batch, 2)

    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "tokens": args.tokens,
        "tessera_validate_per_s": round(tessera_rate),
        "tessera_validate_ns": round(1e9 / tessera_rate),
        "pyjwt_hs256_decode_per_s": round(pyjwt_rate),
        "pyjwt_hs256_decode_ns": round(1e9 / pyjwt_rate),
        "tessera_vs_pyjwt": round(tessera_rate / pyjwt_rate, 1),
        "python_hmac_sha256_per_s": round(hmac_rate),
        "threads": threads,
    }, indent=2))


if __name__ == "__main__":
    main()
