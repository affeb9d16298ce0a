"""Bad input and bad files: each gives its typed error, with the C side's message, and
changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from revledger import (
    MAX_KEY_LEN,
    MAX_ROLES,
    Corrupt,
    Incompatible,
    Internal,
    InvalidArgument,
    Ledger,
    LedgerClosed,
    LedgerIOError,
    Locked,
    ReadOnly,
    RevledgerError,
    Scope,
    Status,
    Verdict,
)

from revledger import _ERRORS

from support import child_env, run_python


def records(ledger: Ledger) -> int:
    return ledger.stats(now=0).rule_records


# -- over-long keys, too many roles -----------------------------------------------------


@pytest.mark.parametrize("where", ["tenant", "key"])
def test_keys_over_the_limit_are_refused_by_revoke(writer, reader, where):
    ok = b"x" * MAX_KEY_LEN
    long = b"x" * (MAX_KEY_LEN + 1)
    args = {"tenant": b"acme", "key": b"john", where: long}
    with pytest.raises(InvalidArgument, match=f"{MAX_KEY_LEN + 1} bytes long; the limit is {MAX_KEY_LEN}"):
        writer.revoke(Scope.SUBJECT, args["tenant"], args["key"], 1000)
    assert records(writer) == 0
    args[where] = ok
    writer.revoke(Scope.SUBJECT, args["tenant"], args["key"], 1000)
    assert reader.check(args["tenant"], args["key"], issued_at=1) == Verdict(True, Scope.SUBJECT, 1000)


@pytest.mark.parametrize("field", ["tenant", "subject", "client", "session", "token_id", "role"])
def test_keys_over_the_limit_are_refused_by_check(reader, field):
    token = dict(tenant="acme", subject="john", roles=["r"], client="c", session="s", token_id="j")
    long = "é" * (MAX_KEY_LEN // 2) + "x"  # 4097 bytes once UTF-8 encoded
    if field == "role":
        token["roles"] = ["r", long]
    else:
        token[field] = long
    with pytest.raises(InvalidArgument, match=f"the limit is {MAX_KEY_LEN}") as caught:
        reader.check(**token, issued_at=1)
    assert caught.value.status is Status.INVALID_ARGUMENT


def test_too_many_roles_are_refused(writer, reader):
    writer.revoke(Scope.ROLE, "acme", f"r{MAX_ROLES - 1}", 1000)
    roles = [f"r{i}" for i in range(MAX_ROLES)]
    assert reader.check("acme", "u", roles, issued_at=1) == Verdict(True, Scope.ROLE, 1000)
    with pytest.raises(InvalidArgument, match=f"{MAX_ROLES + 1} roles; the limit is {MAX_ROLES}"):
        reader.check("acme", "u", roles + ["one-more"], issued_at=1)


# -- scopes out of range: passed through, refused by C ----------------------------------


@pytest.mark.parametrize("value", [7, 8, 255, 256, 259, 2**31, 2**32 - 1])
def test_out_of_range_scopes_reach_c_and_c_refuses_them(writer, value):
    # The message is the C side's, naming the very integer Python was given: it was
    # neither checked nor truncated on the way (256 as a byte would be GLOBAL, 259 ROLE).
    c_message = f"scope {value} is not a revledger_scope"
    with pytest.raises(InvalidArgument, match=c_message):
        writer.revoke(value, "acme", "john", 1000)
    with pytest.raises(InvalidArgument, match=c_message):
        writer.revoke_now(value, "acme", "john")
    with pytest.raises(InvalidArgument, match=f"rule 0: {c_message}"):
        writer.revoke_batch([(value, "acme", "john", 1000)])
    assert records(writer) == 0


def test_a_negative_scope_goes_to_c_as_the_c_enum_would(writer):
    # -1 in a 32-bit C enum is 0xFFFFFFFF.
    with pytest.raises(InvalidArgument, match="scope 4294967295 is not a revledger_scope"):
        writer.revoke(-1, "acme", "john", 1000)


@pytest.mark.parametrize("value", [2**32, 2**32 + int(Scope.CLIENT), 2**64 + 2, -(2**31) - 1])
def test_scopes_no_c_enum_can_hold_are_refused_not_truncated(writer, reader, value):
    # 2**32 + 4 truncated to 32 bits would be CLIENT and revoke every token of "spa".
    with pytest.raises(InvalidArgument, match="does not fit in a C enum") as caught:
        writer.revoke(value, "acme", "spa", 1000)
    assert caught.value.status is Status.INVALID_ARGUMENT
    with pytest.raises(InvalidArgument):
        writer.revoke_batch([(value, "acme", "spa", 1000)])
    assert records(writer) == 0
    assert reader.check("acme", "u", client="spa", issued_at=1) == Verdict.VALID


# -- the wrong kind of handle, a second writer ------------------------------------------


def test_a_reader_cannot_write(writer, reader):
    for call in (
        lambda: reader.revoke(Scope.SUBJECT, "acme", "john", 1000),
        lambda: reader.revoke_now(Scope.SUBJECT, "acme", "john"),
        lambda: reader.revoke_batch([(Scope.SUBJECT, "acme", "john", 1000)]),
        reader.sync,
        lambda: reader.compact(0),
    ):
        with pytest.raises(ReadOnly, match="read-only") as caught:
            call()
        assert caught.value.status is Status.READ_ONLY
    assert records(writer) == 0


def test_a_second_writer_in_the_same_process_is_locked(writer, path: Path):
    with pytest.raises(Locked, match="locked by another writer") as caught:
        Ledger.open_writer(path)
    assert str(path) in caught.value.message
    writer.revoke(Scope.SUBJECT, "acme", "john", 1000)  # the first one is unharmed
    assert writer.check("acme", "john", issued_at=1).revoked


SECOND_WRITER = """
import sys
from revledger import Ledger, RevledgerError
try:
    Ledger.open_writer(sys.argv[1]).close()
    print("OPENED")
except RevledgerError as e:
    print(e.status.name, type(e).__name__)
"""


def test_a_second_writer_in_another_process_is_locked(writer, path: Path):
    child = run_python(SECOND_WRITER, str(path))
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["LOCKED", "Locked"]
    writer.close()
    child = run_python(SECOND_WRITER, str(path))
    assert child.stdout.split() == ["OPENED"], child.stderr


HOLD_WRITER = """
import sys
from revledger import Ledger, Scope
w = Ledger.open_writer(sys.argv[1])
w.revoke(Scope.SUBJECT, "acme", "john", 1000)
print("ready", flush=True)
sys.stdin.readline()   # hold the lock until the parent says so
w.close()
print("closed", flush=True)
"""


def test_a_writer_in_another_process_locks_this_one_out(path: Path):
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITER, str(path)],
        env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n"
        with pytest.raises(Locked):
            Ledger.open_writer(path)
        with Ledger.open_reader(path) as r:  # readers are never locked out
            assert r.check("acme", "john", issued_at=1).revoked
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "closed\n"
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0
    with Ledger.open_writer(path) as w:
        assert w.check("acme", "john", issued_at=1).revoked


# -- files that are not ledgers, paths that do not exist --------------------------------


@pytest.mark.parametrize("content", [b"", b"just some text\n" * 20, bytes(4096)])
def test_a_file_that_is_not_a_ledger_is_incompatible(tmp_path: Path, content: bytes):
    p = tmp_path / "notes.txt"
    p.write_bytes(content)
    for open_ in (Ledger.open_reader, Ledger.open_writer):
        with pytest.raises(Incompatible, match="not a revledger ledger") as caught:
            open_(p)
        assert caught.value.status is Status.INCOMPATIBLE
    assert p.read_bytes() == content  # and it was left alone


def test_a_missing_directory_is_an_io_error(tmp_path: Path):
    p = tmp_path / "no-such-dir" / "x.ledger"
    with pytest.raises(LedgerIOError) as caught:
        Ledger.open_writer(p)
    assert caught.value.status is Status.IO
    assert "No such file or directory" in caught.value.message
    with pytest.raises(LedgerIOError, match=re.escape(str(p))):
        Ledger.open_reader(p)
    assert not (tmp_path / "no-such-dir").exists()


def test_a_reader_of_a_missing_file_is_an_io_error_and_creates_nothing(path: Path):
    with pytest.raises(LedgerIOError, match=re.escape(str(path))):
        Ledger.open_reader(path)
    assert not path.exists()


def test_a_path_with_a_nul_byte_is_refused_not_truncated(tmp_path: Path):
    p = str(tmp_path / "a.ledger") + "\0suffix"
    with pytest.raises(InvalidArgument, match="NUL"):
        Ledger.open_writer(p)
    with pytest.raises(InvalidArgument, match="NUL"):
        Ledger.open_reader(p)
    assert list(tmp_path.iterdir()) == []


def test_corruption_in_the_middle_is_reported_with_its_offset(path: Path):
    with Ledger.open_writer(path) as w:
        w.revoke(Scope.SUBJECT, "acme", "first", 1000)
        w.revoke(Scope.SUBJECT, "acme", "damage-me", 1000)
        w.revoke(Scope.SUBJECT, "acme", "last", 1000)
    data = bytearray(path.read_bytes())
    at = data.index(b"damage-me")
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    for open_ in (Ledger.open_reader, Ledger.open_writer):
        with pytest.raises(Corrupt) as caught:
            open_(path)
        assert caught.value.status is Status.CORRUPT
        offset = int(re.search(r"offset (\d+)", caught.value.message).group(1))
        assert 0 < offset <= at


# -- the message is the failing call's, per thread ---------------------------------------


def test_last_error_is_per_thread(writer):
    """Two threads fail differently at the same time; each gets its own message
    (revledger_last_error is thread-local and read right after the call)."""
    rounds = 300
    barrier = threading.Barrier(2)
    mixups = []

    def fail_with_long_keys():
        barrier.wait()
        for _ in range(rounds):
            try:
                writer.revoke(Scope.SUBJECT, "acme", b"k" * (MAX_KEY_LEN + 1), 1)
            except InvalidArgument as e:
                if "bytes long" not in e.message:
                    mixups.append(e.message)

    def fail_with_bad_scopes():
        barrier.wait()
        for _ in range(rounds):
            try:
                writer.revoke(42, "acme", "john", 1)
            except InvalidArgument as e:
                if "scope 42" not in e.message:
                    mixups.append(e.message)

    threads = [threading.Thread(target=fail_with_long_keys), threading.Thread(target=fail_with_bad_scopes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mixups == []
    assert records(writer) == 0


def test_every_error_is_a_revledger_error_with_a_status():
    for cls, status in [
        (InvalidArgument, Status.INVALID_ARGUMENT),
        (LedgerIOError, Status.IO),
        (Corrupt, Status.CORRUPT),
        (Locked, Status.LOCKED),
        (ReadOnly, Status.READ_ONLY),
        (Incompatible, Status.INCOMPATIBLE),
        (Internal, Status.INTERNAL),
    ]:
        assert issubclass(cls, RevledgerError)
        assert _ERRORS[status] is cls
    assert issubclass(LedgerClosed, RevledgerError)
