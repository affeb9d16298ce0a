"""One handle, many threads: checks run concurrently with each other and with revokes on
the same writer handle; a revoke that returned is seen by every check that starts after
it; close() waits for the calls in progress."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import List

from revledger import Ledger, LedgerClosed, Scope, Verdict

SUBJECTS = 400
CUTOFF = 1000


def test_threads_check_while_another_revokes(writer, reader):
    handles = [writer, reader]
    committed = [0]  # subjects u0..u{committed-1} are revoked (published after revoke returns)
    roles_committed = [0]
    revokers_done = threading.Event()
    start = threading.Barrier(5)
    failures: List[str] = []
    checks = [0] * 3

    def reporting(body):
        """Runs `body` so that an exception fails the test instead of only a warning."""

        def run(*args):
            try:
                body(*args)
            except BaseException as e:
                failures.append(f"{body.__name__}: {e!r}")
                revokers_done.set()

        return run

    def revoke_one_by_one():
        start.wait()
        for i in range(SUBJECTS):
            writer.revoke(Scope.SUBJECT, "acme", f"u{i}", CUTOFF)
            committed[0] = i + 1

    def revoke_in_batches():
        start.wait()
        for b in range(0, 100, 10):
            writer.revoke_batch([(Scope.ROLE, "acme", f"r{j}", CUTOFF + 1) for j in range(b, b + 10)])
            roles_committed[0] = b + 10

    def checker(n: int):
        rng = random.Random(n)
        seen_revoked = set()
        start.wait()
        while True:
            finished = revokers_done.is_set()
            known, known_roles = committed[0], roles_committed[0]
            h = handles[rng.randrange(2)]
            i = rng.randrange(SUBJECTS)
            got = h.check("acme", f"u{i}", issued_at=CUTOFF - 1)
            if i < known or i in seen_revoked:
                if got != Verdict(True, Scope.SUBJECT, CUTOFF):
                    failures.append(f"u{i} committed (or seen revoked) but {got}")
            if got.revoked:
                seen_revoked.add(i)
            j = rng.randrange(100)
            got = h.check("acme", "x", [f"r{j}", "viewer"], issued_at=CUTOFF - 1)
            if j < known_roles and got != Verdict(True, Scope.ROLE, CUTOFF + 1):
                failures.append(f"r{j} committed but {got}")
            if h.check("acme", "bruce", ["viewer"], issued_at=CUTOFF - 1) != Verdict.VALID:
                failures.append("bruce was revoked")
            checks[n] += 3
            if finished:
                break

    threads = [threading.Thread(target=reporting(checker), args=(n,)) for n in range(3)]
    revokers = [
        threading.Thread(target=reporting(revoke_one_by_one)),
        threading.Thread(target=reporting(revoke_in_batches)),
    ]
    for t in threads + revokers:
        t.start()
    for t in revokers:
        t.join()
    revokers_done.set()
    for t in threads:
        t.join()

    assert failures == []
    assert all(c > 0 for c in checks)
    for h in handles:
        for i in range(SUBJECTS):
            assert h.check("acme", f"u{i}", issued_at=CUTOFF - 1) == Verdict(True, Scope.SUBJECT, CUTOFF)
        assert h.stats(now=0).rule_records == SUBJECTS + 100


def test_close_waits_for_checks_in_progress_then_refuses_new_ones(path: Path):
    with Ledger.open_writer(path) as w:
        w.revoke(Scope.SUBJECT, "acme", "john", CUTOFF)
    reader = Ledger.open_reader(path)
    started = [threading.Event() for _ in range(4)]
    outcome: List[object] = [None] * 4

    def checker(n: int):
        count = 0
        try:
            while True:
                got = reader.check("acme", "john", ["a", "b", "c"], issued_at=CUTOFF - 1)
                if got != Verdict(True, Scope.SUBJECT, CUTOFF):
                    outcome[n] = f"wrong verdict {got}"
                    return
                count += 1
                started[n].set()
        except LedgerClosed:
            outcome[n] = count
        except BaseException as e:  # anything else is a failure
            outcome[n] = repr(e)

    threads = [threading.Thread(target=checker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for e in started:
        e.wait(timeout=120)  # a guard against a hang, not a synchronisation
    reader.close()
    for t in threads:
        t.join()
    assert all(e.is_set() for e in started), outcome
    assert all(isinstance(o, int) and o > 0 for o in outcome), outcome
