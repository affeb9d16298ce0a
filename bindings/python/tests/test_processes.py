"""Several processes on one ledger file: a reader sees what another process's writer
commits on its very next check, follows another process's compaction, and a forked
child cannot use the handles it inherited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from revledger import Ledger, LedgerClosed, Locked, Scope, Verdict

from support import child_env, run_python

T = 1_700_000_000

REVOKE = """
import sys
from revledger import Ledger, Scope
with Ledger.open_writer(sys.argv[1]) as w:
    w.revoke(Scope[sys.argv[2]], sys.argv[3], sys.argv[4], int(sys.argv[5]))
"""


def revoke_in_child(path: Path, scope: Scope, tenant: str, key: str, at: int) -> None:
    child = run_python(REVOKE, str(path), scope.name, tenant, key, str(at))
    assert child.returncode == 0, child.stderr


def test_a_reader_sees_what_another_process_committed(path: Path):
    Ledger.open_writer(path).close()  # create the ledger
    with Ledger.open_reader(path) as reader:
        john = dict(tenant="acme", subject="john", roles=["super_admin"], issued_at=T - 1)
        bruce = dict(tenant="acme", subject="bruce", roles=["viewer"], issued_at=T - 1)
        assert reader.check(**john) == Verdict.VALID  # the index is built and warm

        revoke_in_child(path, Scope.ROLE, "acme", "super_admin", T)
        # The child has exited: the same handle, no reopen, no wait.
        assert reader.check(**john) == Verdict(True, Scope.ROLE, T)
        assert reader.check(**bruce) == Verdict.VALID

        revoke_in_child(path, Scope.SUBJECT, "acme", "bruce", T + 5)
        assert reader.check(**bruce) == Verdict(True, Scope.SUBJECT, T + 5)
        assert reader.stats(now=0).rule_records == 2


HOLD_AND_REVOKE = """
import sys
from revledger import Ledger, Scope
w = Ledger.open_writer(sys.argv[1])
for line in sys.stdin:
    subject = line.strip()
    if not subject:
        break
    w.revoke(Scope.SUBJECT, "acme", subject, 1000)
    print("committed", subject, flush=True)
w.close()
"""


def test_a_commit_is_visible_before_the_writer_syncs_or_closes(path: Path):
    Ledger.open_writer(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_REVOKE, str(path)],
        env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        with Ledger.open_reader(path) as reader:
            for subject in ("john", "mike", "ann"):
                assert not reader.check("acme", subject, issued_at=999).revoked
                child.stdin.write(subject + "\n")
                child.stdin.flush()
                assert child.stdout.readline() == f"committed {subject}\n"
                # The writer is still open, has not synced: the record is committed.
                assert reader.check("acme", subject, issued_at=999) == Verdict(True, Scope.SUBJECT, 1000)
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0


COMPACT = """
import sys
from revledger import Ledger, Scope
with Ledger.open_writer(sys.argv[1]) as w:
    w.compact(int(sys.argv[2]))
    w.revoke(Scope.SUBJECT, "acme", "after-compaction", int(sys.argv[2]))
"""


def test_a_reader_follows_a_compaction_done_by_another_process(path: Path):
    now = T
    with Ledger.open_writer(path) as w:
        s = w.stats(now=now)
        dead = now - s.max_token_lifetime - s.leeway - 1
        w.revoke(Scope.SUBJECT, "acme", "gone", dead)
        w.revoke(Scope.SUBJECT, "acme", "kept", now)
    with Ledger.open_reader(path) as reader:
        assert reader.stats(now=now).live_keys == 2
        child = run_python(COMPACT, str(path), str(now))
        assert child.returncode == 0, child.stderr
        assert reader.check("acme", "kept", issued_at=now - 1) == Verdict(True, Scope.SUBJECT, now)
        assert reader.check("acme", "after-compaction", issued_at=now - 1) == Verdict(True, Scope.SUBJECT, now)
        assert reader.stats(now=now).live_keys == 2  # "gone" dropped, "after-compaction" added


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_inherited_handles_but_can_open_new_ones(writer, path: Path):
    writer.revoke(Scope.SUBJECT, "acme", "john", 1000)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(read_end)
            report = {}
            try:
                writer.revoke(Scope.SUBJECT, "acme", "mike", 1000)
                report["inherited"] = "usable"
            except LedgerClosed as e:
                report["inherited"] = e.message
            try:
                Ledger.open_writer(path).close()
                report["new_writer"] = "opened"
            except Locked:
                report["new_writer"] = "locked"
            with Ledger.open_reader(path) as r:
                report["new_reader"] = r.check("acme", "john", issued_at=1).revoked
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "before a fork" in report["inherited"]
    assert report["new_writer"] == "locked"  # the parent still holds the lock
    assert report["new_reader"] is True
    # The parent's handle is untouched by what the child did.
    writer.revoke(Scope.SUBJECT, "acme", "mike", 1000)
    assert writer.check("acme", "mike", issued_at=1).revoked
    assert writer.stats(now=0).rule_records == 2
