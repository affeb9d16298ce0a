"""How long one check takes through the Python package (not a test; no assertion).

A ledger of 10k live rules (subjects, roles, clients, sessions), then a valid token with
3 roles and a client checked over and over: the common case of a gateway. Prints ns per
check through `Ledger.check` (argument conversion, the handle's lock, the Rust check,
the verdict) and, for scale, through the C ABI with ctypes and a token prepared once
(the floor of the ctypes binding this package replaced; needs the repository's
target/release/librevledger.so, skipped without it). DESIGN.md §5 asks ≤ 1 µs per
Python check. The Rust `cargo bench` figures are the library's own.

    pip install ./bindings/python && python3 bindings/python/bench.py [--rules N] [--checks N]
"""

import argparse
import ctypes
import tempfile
import time
from pathlib import Path

from revledger import Ledger, Scope

REPO_LIBRARY = Path(__file__).resolve().parents[2] / "target" / "release" / "librevledger.so"


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


def ctypes_check(path: Path):
    """A bare `revledger_check` through ctypes on a prepared token, or None without the
    repository's shared library."""
    if not REPO_LIBRARY.is_file():
        return None
    lib = ctypes.CDLL(str(REPO_LIBRARY))
    handle = ctypes.c_void_p()
    lib.revledger_open_reader.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.revledger_check.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Token), ctypes.POINTER(_Verdict)]
    assert lib.revledger_open_reader(str(path).encode(), ctypes.byref(handle)) == 0
    keep = [b"acme", b"john", b"spa", b"viewer", b"billing", b"support"]
    roles = (_Bytes * 3)(*[(r, len(r)) for r in keep[3:]])
    token = _Token((keep[0], 4), (keep[1], 4), (keep[2], 3), (None, 0), (None, 0), roles, 3, 1_700_000_100)
    out = _Verdict()
    c_check, byref = lib.revledger_check, ctypes.byref

    def raw():
        return c_check(handle, byref(token), byref(out))

    assert raw() == 0 and not out.revoked
    return raw, keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=100_000)
    args = parser.parse_args()

    scopes = [Scope.SUBJECT, Scope.ROLE, Scope.CLIENT, Scope.SESSION]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ledger"
        with Ledger.open_writer(path) as writer:
            writer.revoke_batch((scopes[i % 4], "acme", f"key-{i}", 1_700_000_000) for i in range(args.rules))
        with Ledger.open_reader(path) as reader:
            live = reader.stats(now=1_700_000_000).live_keys
            roles = ["viewer", "billing", "support"]

            def check():
                return reader.check("acme", "john", roles, client="spa", issued_at=1_700_000_100)

            assert not check().revoked
            results.append(("Ledger.check", best_ns_per_call(check, args.checks)))
        bare = ctypes_check(path)
        if bare is not None:
            results.append(("revledger_check via ctypes (prepared)", best_ns_per_call(bare[0], args.checks)))
    print(f"ledger: {live} live rules; token: valid, 3 roles, a client; best of 5 x {args.checks} checks")
    for name, (wall, cpu) in results:
        print(f"{name + ':':40} {wall:7.0f} ns/check wall, {cpu:7.0f} ns/check CPU")


if __name__ == "__main__":
    main()
