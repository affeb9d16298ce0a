"""How long one check takes through the Python package (not a test; no assertion).

A ledger of 10k live rules (subjects, roles, clients, sessions, token ids), then tokens
with 3 roles, a client, a session and a token id checked over and over: "valid" tokens
are issued before every rule's cutoff and carry no key that has a rule, so every scope
is probed (the common case of a gateway, as in the Rust benchmarks); "fresh" tokens are
issued after every cutoff. Prints ns per check through `Ledger.check` (argument
conversion, the Rust check, the verdict) and, for scale, through the C ABI with ctypes
and a token prepared once (needs the repository's target/release/librevledger.so,
skipped without it). DESIGN.md §5 asks ≤ 1 µs per Python check. `--json FILE` also
writes the figures for benches/report.py (scripts/bench).

    pip install ./bindings/python && python3 bindings/python/bench.py [--rules N] [--checks N]
"""

import argparse
import ctypes
import json
import platform
import tempfile
import time
from pathlib import Path

from revledger import Ledger, Scope

REPO_LIBRARY = Path(__file__).resolve().parents[2] / "target" / "release" / "librevledger.so"
CUTOFF = 1_700_000_000
TENANT, SUBJECT, CLIENT, SESSION, JTI = b"acme", b"john", b"spa", b"sid-0a1b2c3d", b"jti-9f8e7d6c"
ROLES = [b"viewer", b"billing", b"support"]


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


class _Bytes(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_char_p), ("len", ctypes.c_size_t)]


class _Token(ctypes.Structure):
    _fields_ = [("tenant", _Bytes), ("subject", _Bytes), ("client", _Bytes), ("session", _Bytes),
                ("token_id", _Bytes), ("roles", ctypes.POINTER(_Bytes)), ("roles_len", ctypes.c_size_t),
                ("issued_at", ctypes.c_int64)]


class _Verdict(ctypes.Structure):
    _fields_ = [("revoked", ctypes.c_bool), ("scope", ctypes.c_uint32), ("cutoff", ctypes.c_int64)]


def ctypes_check(path: Path, issued_at: int):
    """A bare `revledger_check` through ctypes on a prepared token, or None without the
    repository's shared library."""
    if not REPO_LIBRARY.is_file():
        return None
    lib = ctypes.CDLL(str(REPO_LIBRARY))
    handle = ctypes.c_void_p()
    lib.revledger_open_reader.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.revledger_check.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Token), ctypes.POINTER(_Verdict)]
    assert lib.revledger_open_reader(str(path).encode(), ctypes.byref(handle)) == 0
    roles = (_Bytes * 3)(*[(r, len(r)) for r in ROLES])
    token = _Token((TENANT, len(TENANT)), (SUBJECT, len(SUBJECT)), (CLIENT, len(CLIENT)),
                   (SESSION, len(SESSION)), (JTI, len(JTI)), roles, 3, issued_at)
    out = _Verdict()
    c_check, byref = lib.revledger_check, ctypes.byref

    def raw():
        return c_check(handle, byref(token), byref(out))

    assert raw() == 0 and not out.revoked
    return raw, (roles, token)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    scopes = [Scope.SUBJECT, Scope.ROLE, Scope.CLIENT, Scope.SESSION, Scope.TOKEN]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ledger"
        with Ledger.open_writer(path) as writer:
            writer.revoke_batch((scopes[i % 5], "acme", f"key-{i}", CUTOFF + i % 1000)
                                for i in range(args.rules))
        with Ledger.open_reader(path) as reader:
            live = reader.stats(now=CUTOFF).live_keys
            for kind, iat in (("valid", CUTOFF - 1), ("fresh", CUTOFF + 3_600)):
                def check(iat=iat):
                    return reader.check(TENANT, SUBJECT, ROLES, client=CLIENT, session=SESSION,
                                        token_id=JTI, issued_at=iat)

                assert not check().revoked
                results.append((f"Ledger.check, {kind}", kind, "python", best_ns_per_call(check, args.checks)))
        bare = ctypes_check(path, CUTOFF - 1)
        if bare is not None:
            results.append(("revledger_check via ctypes (prepared), valid", "valid", "ctypes",
                            best_ns_per_call(bare[0], args.checks)))
    print(f"ledger: {live} live rules; token: 3 roles, client, session, token id; "
          f"best of 5 x {args.checks} checks")
    for name, _, _, (wall, cpu) in results:
        print(f"{name + ':':48} {wall:7.0f} ns/check wall, {cpu:7.0f} ns/check CPU")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "python": platform.python_version(),
            "rules": live,
            "checks": args.checks,
            "results": [{"what": name, "kind": kind, "via": via, "wall_ns": wall, "cpu_ns": cpu}
                        for name, kind, via, (wall, cpu) in results],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
