"""How long one check takes through the Python binding (not a test; no assertion).

A ledger of 10k live rules (subjects, roles, clients, sessions), then a valid token with
3 roles checked over and over: the common case of a gateway. Prints ns per check through
the typed API (argument conversion, ctypes structures, the close guard) and through a
bare ctypes call with a prepared token, so the binding's share is visible beside the C
library's (the Rust `cargo bench` figures are the library's own).

    cargo build --release --lib && python3 bindings/python/bench.py [--rules N] [--checks N]
"""

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import revledger  # noqa: E402
from revledger import Ledger, Scope  # noqa: E402


def best_ns_per_call(fn, calls: int, rounds: int = 5):
    """Best of `rounds`, in wall-clock and in this thread's CPU time (the latter is less
    disturbed by other processes on a shared machine)."""
    wall = cpu = float("inf")
    for _ in range(rounds):
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(calls):
            fn()
        cpu = min(cpu, (time.thread_time_ns() - start_cpu) / calls)
        wall = min(wall, (time.perf_counter_ns() - start) / calls)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=100_000)
    args = parser.parse_args()

    scopes = [Scope.SUBJECT, Scope.ROLE, Scope.CLIENT, Scope.SESSION]
    with tempfile.TemporaryDirectory() as tmp, Ledger.open_writer(Path(tmp) / "bench.ledger") as writer:
        writer.revoke_batch(
            (scopes[i % 4], "acme", f"key-{i}", 1_700_000_000) for i in range(args.rules)
        )
        with Ledger.open_reader(Path(tmp) / "bench.ledger") as reader:
            live = reader.stats(now=1_700_000_000).live_keys
            roles = ["viewer", "billing", "support"]

            def check():
                return reader.check("acme", "john", roles, client="spa", issued_at=1_700_000_100)

            assert not check().revoked

            # The same question as a prepared C token: the floor a ctypes call sets.
            keep = [b"acme", b"john", b"spa", b"viewer", b"billing", b"support"]
            role_array = (revledger._Bytes * 3)(*[(r, len(r)) for r in keep[3:]])
            token = revledger._Token(
                (keep[0], 4), (keep[1], 4), (keep[2], 3), (None, 0), (None, 0),
                role_array, 3, 1_700_000_100,
            )
            out = revledger._Verdict()
            handle, c_check, byref = reader._handle, revledger._check, ctypes.byref

            def raw():
                return c_check(handle, byref(token), byref(out))

            assert raw() == 0 and not out.revoked

            api = best_ns_per_call(check, args.checks)
            bare = best_ns_per_call(raw, args.checks)
    print(f"ledger: {live} live rules; token: valid, 3 roles, a client; best of 5 x {args.checks} checks")
    for name, (wall, cpu) in [("Ledger.check (typed API)", api), ("revledger_check (bare ctypes call)", bare)]:
        print(f"{name + ':':36} {wall:7.0f} ns/check wall, {cpu:7.0f} ns/check CPU")


if __name__ == "__main__":
    main()
