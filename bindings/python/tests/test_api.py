"""The typed API: the scenario of DESIGN.md §1, every scope, revoke_now, batches, stats,
compaction, verdicts, argument conversion, and the life of a handle."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

import revledger
from revledger import (
    InvalidArgument,
    Ledger,
    LedgerClosed,
    RevledgerError,
    Rule,
    Scope,
    Stats,
    Status,
    Verdict,
)

T = 1_700_000_000  # "super_admin changed at T"


def test_design_scenario_john_and_mike_hold_super_admin_bruce_does_not(writer, reader):
    tokens = {
        "john": ["super_admin", "billing"],
        "mike": ["super_admin"],
        "bruce": ["viewer", "billing"],
    }
    # Before the change nobody is revoked.
    for user, roles in tokens.items():
        assert not reader.check("acme", user, roles, client="spa", issued_at=T - 60).revoked

    writer.revoke(Scope.ROLE, "acme", "super_admin", T)

    for user, roles in tokens.items():
        got = reader.check("acme", user, roles, client="spa", issued_at=T - 60)
        if user == "bruce":
            assert got == Verdict.VALID
        else:
            assert got == Verdict(True, Scope.ROLE, T)
            assert got.description == f"token revoked: role permissions changed at {T}"
    # After a silent refresh (a token issued at or after T), John is fine again.
    assert reader.check("acme", "john", tokens["john"], issued_at=T) == Verdict.VALID
    # Another tenant's super_admin did not change.
    assert reader.check("globex", "john", ["super_admin"], issued_at=T - 60) == Verdict.VALID


def test_revoke_now_rounds_up_so_a_token_of_the_same_second_is_revoked(writer, reader):
    before = int(time.time())
    cutoff = writer.revoke_now(Scope.SUBJECT, "acme", "john")
    after = int(time.time())
    assert before < cutoff <= after + 1
    assert reader.check("acme", "john", issued_at=cutoff - 1) == Verdict(True, Scope.SUBJECT, cutoff)
    assert reader.check("acme", "john", issued_at=cutoff) == Verdict.VALID
    with pytest.raises(InvalidArgument, match="exp"):
        writer.revoke_now(Scope.TOKEN, "acme", "jti-1")


@pytest.mark.parametrize(
    "scope, tenant, key, token, other",
    [
        (Scope.GLOBAL, None, None, dict(tenant="acme", subject="u"), None),
        (Scope.TENANT, "acme", None, dict(tenant="acme", subject="u"), dict(tenant="globex", subject="u")),
        (Scope.SUBJECT, "acme", "john", dict(tenant="acme", subject="john"), dict(tenant="acme", subject="mike")),
        (Scope.ROLE, "acme", "admin", dict(tenant="acme", subject="u", roles=["x", "admin"]),
         dict(tenant="acme", subject="u", roles=["x", "administrator"])),
        (Scope.CLIENT, "acme", "spa", dict(tenant="acme", subject="u", client="spa"),
         dict(tenant="acme", subject="u", client="cli")),
        (Scope.SESSION, "acme", "sid-9", dict(tenant="acme", subject="u", session="sid-9"),
         dict(tenant="acme", subject="u", session="sid-8")),
    ],
    ids=lambda v: v.label if isinstance(v, Scope) else None,
)
def test_every_cutoff_scope(writer, reader, scope, tenant, key, token, other):
    writer.revoke(scope, tenant, key, 1000)
    assert reader.check(**token, issued_at=999) == Verdict(True, scope, 1000)
    assert reader.check(**token, issued_at=1000) == Verdict.VALID
    if other is not None:
        assert reader.check(**other, issued_at=999) == Verdict.VALID
    # The writer's own handle answers the same.
    assert writer.check(**token, issued_at=999) == Verdict(True, scope, 1000)


def test_token_scope_revokes_one_jti_whatever_its_iat(writer, reader):
    exp = T + 3600
    writer.revoke(Scope.TOKEN, "acme", "jti-7", exp)
    for iat in (0, T, exp, exp + 10):
        got = reader.check("acme", "john", token_id="jti-7", issued_at=iat)
        assert got == Verdict(True, Scope.TOKEN, exp)
    assert got.description == "token revoked"
    assert reader.check("acme", "john", token_id="jti-8", issued_at=0) == Verdict.VALID
    assert reader.check("globex", "john", token_id="jti-7", issued_at=0) == Verdict.VALID


def test_the_latest_cutoff_is_named_and_the_token_rule_first(writer, reader):
    writer.revoke(Scope.GLOBAL, b"", b"", 1000)
    writer.revoke(Scope.ROLE, "acme", "admin", 3000)
    writer.revoke(Scope.SUBJECT, "acme", "john", 2000)
    assert reader.check("acme", "john", ["admin"], issued_at=10) == Verdict(True, Scope.ROLE, 3000)
    assert reader.check("acme", "john", issued_at=10) == Verdict(True, Scope.SUBJECT, 2000)
    writer.revoke(Scope.TOKEN, "acme", "j1", 50)
    assert reader.check("acme", "john", ["admin"], token_id="j1", issued_at=10) == Verdict(True, Scope.TOKEN, 50)


def test_str_is_utf8_and_bytes_pass_through(writer, reader):
    writer.revoke(Scope.SUBJECT, "ácme", "jöhn€", 1000)
    assert reader.check("ácme".encode(), "jöhn€".encode(), issued_at=1) == Verdict(True, Scope.SUBJECT, 1000)
    assert reader.check(bytearray("ácme".encode()), memoryview("jöhn€".encode()), issued_at=1).revoked
    # Not Latin-1, not normalised: other bytes are other keys.
    assert reader.check("ácme".encode("latin-1"), "jöhn€", issued_at=1) == Verdict.VALID
    # Arbitrary bytes, NUL included, are keys like any other.
    writer.revoke(Scope.ROLE, b"\x00t", b"\xff\x00r", 1000)
    assert reader.check(b"\x00t", b"u", [b"\xff\x00r"], issued_at=1) == Verdict(True, Scope.ROLE, 1000)
    assert reader.check(b"\x00t", b"u", [b"\xff"], issued_at=1) == Verdict.VALID


def test_none_and_empty_are_the_same_empty_string(writer, reader):
    writer.revoke(Scope.SUBJECT, None, "john", 1000)  # single-tenant use
    assert reader.check(b"", "john", issued_at=1).revoked
    assert reader.check(None, "john", client=None, session=b"", token_id="", issued_at=1).revoked
    assert not reader.check("acme", "john", issued_at=1).revoked


def test_tenant_and_key_are_not_concatenated(writer, reader):
    writer.revoke(Scope.SUBJECT, "a", "bc", 1000)
    assert reader.check("a", "bc", issued_at=1).revoked
    assert not reader.check("ab", "c", issued_at=1).revoked


def test_revoke_batch_commits_all_or_nothing(writer, reader):
    n = writer.revoke_batch(
        [
            Rule(Scope.SUBJECT, "acme", "john", 1000),
            (Scope.ROLE, "acme", "admin", 2000),
            (int(Scope.GLOBAL), None, None, 500),
        ]
    )
    assert n == 3
    assert reader.check("acme", "john", issued_at=999) == Verdict(True, Scope.SUBJECT, 1000)
    assert reader.check("acme", "x", ["admin"], issued_at=999) == Verdict(True, Scope.ROLE, 2000)
    assert reader.check("z", "z", issued_at=499) == Verdict(True, Scope.GLOBAL, 500)
    records = writer.stats(now=0).rule_records

    with pytest.raises(InvalidArgument, match="rule 1"):
        writer.revoke_batch([(Scope.SUBJECT, "acme", "mike", 1000), (Scope.SUBJECT, "acme", "", 1000)])
    with pytest.raises(InvalidArgument, match="rule 1: scope 9"):
        writer.revoke_batch([(Scope.SUBJECT, "acme", "mike", 1000), (9, "acme", "k", 1000)])
    assert writer.stats(now=0).rule_records == records
    assert reader.check("acme", "mike", issued_at=999) == Verdict.VALID

    assert writer.revoke_batch([]) == 0
    assert writer.revoke_batch(iter([(Scope.SUBJECT, "acme", "mike", 1000)])) == 1
    assert reader.check("acme", "mike", issued_at=999).revoked
    with pytest.raises(TypeError, match="rule 0"):
        writer.revoke_batch([(Scope.SUBJECT, "acme", "mike")])


def test_a_cutoff_is_never_lowered(writer, reader):
    writer.revoke(Scope.SUBJECT, "acme", "john", 3000)
    writer.revoke(Scope.SUBJECT, "acme", "john", 1000)
    assert reader.check("acme", "john", issued_at=2000) == Verdict(True, Scope.SUBJECT, 3000)


def test_stats_count_records_keys_and_expiry(writer, reader, path: Path):
    s = writer.stats(now=0)
    assert isinstance(s, Stats)
    assert (s.rule_records, s.live_keys, s.expired_keys) == (0, 0, 0)
    assert s.max_token_lifetime == 3600
    assert s.leeway >= 0
    assert s.file_bytes >= s.log_bytes > 0
    writer.revoke(Scope.SUBJECT, "acme", "john", 1000)
    writer.revoke(Scope.SUBJECT, "acme", "john", 2000)
    writer.revoke(Scope.ROLE, "acme", "admin", 10_000)
    s = reader.stats(now=0)
    assert (s.rule_records, s.live_keys, s.expired_keys) == (3, 2, 0)
    # At 2000 + lifetime + leeway + 1 the subject rule can no longer revoke anything.
    later = 2000 + s.max_token_lifetime + s.leeway + 1
    assert reader.stats(now=later).expired_keys == 1
    assert dataclasses.asdict(s)["live_keys"] == 2
    assert reader.stats().expired_keys == 2  # default now: the current time


def test_compact_drops_dead_rules_and_readers_follow(writer, reader):
    now = T
    lifetime_and_leeway = writer.stats(now=now).max_token_lifetime + writer.stats(now=now).leeway
    dead = now - lifetime_and_leeway - 10
    writer.revoke(Scope.SUBJECT, "acme", "old", dead)
    writer.revoke(Scope.SUBJECT, "acme", "john", now)
    writer.revoke(Scope.TOKEN, "acme", "expired-jti", dead)
    assert reader.check("acme", "old", issued_at=dead - 1).revoked
    writer.compact(now)
    assert writer.stats(now=now).live_keys == 1
    assert reader.stats(now=now).live_keys == 1
    assert reader.check("acme", "john", issued_at=now - 1) == Verdict(True, Scope.SUBJECT, now)
    # The reader opened before the compaction follows the new file, including new rules.
    writer.revoke(Scope.SUBJECT, "acme", "mike", now)
    assert reader.check("acme", "mike", issued_at=now - 1) == Verdict(True, Scope.SUBJECT, now)


def test_sync_and_refresh(writer, reader):
    writer.revoke(Scope.SUBJECT, "acme", "john", 1000)
    writer.sync()
    writer.sync()  # nothing new: still fine
    reader.refresh()
    assert reader.check("acme", "john", issued_at=1).revoked


def test_max_token_lifetime_can_be_kept_or_raised_never_lowered(path: Path):
    with Ledger.open_writer(path, max_token_lifetime=3600) as w:
        assert w.stats(now=0).max_token_lifetime == 3600
    with Ledger.open_writer(path, max_token_lifetime=0) as w:
        assert w.stats(now=0).max_token_lifetime == 3600
    with Ledger.open_writer(path, max_token_lifetime=7200) as w:
        assert w.stats(now=0).max_token_lifetime == 7200
    with pytest.raises(InvalidArgument, match="smaller"):
        Ledger.open_writer(path, max_token_lifetime=3600)
    with pytest.raises(InvalidArgument):
        Ledger.open_writer(path, max_token_lifetime=-1)
    with Ledger.open_reader(path) as r:
        assert r.stats(now=0).max_token_lifetime == 7200


def test_records_survive_reopening(path: Path):
    with Ledger.open_writer(path) as w:
        w.revoke(Scope.SESSION, "acme", "sid-1", 1000)
    with Ledger.open_writer(path) as w:
        assert w.check("acme", "u", session="sid-1", issued_at=999) == Verdict(True, Scope.SESSION, 1000)
        w.revoke(Scope.CLIENT, "acme", "spa", 2000)
    with Ledger.open_reader(path) as r:
        assert r.check("acme", "u", client="spa", session="sid-1", issued_at=999) == Verdict(True, Scope.CLIENT, 2000)


def test_verdict_is_a_frozen_value_with_a_www_authenticate_text():
    v = Verdict(True, Scope.ROLE, 2000)
    assert v == Verdict(True, Scope.ROLE, 2000)
    assert hash(v) == hash(Verdict(True, Scope.ROLE, 2000))
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.revoked = False  # type: ignore[misc]
    assert v.www_authenticate() == (
        'Bearer error="invalid_token", '
        'error_description="token revoked: role permissions changed at 2000"'
    )
    assert Verdict.VALID == Verdict(False)
    assert Verdict.VALID.description == "token is valid"
    assert (Verdict.VALID.scope, Verdict.VALID.cutoff) == (None, None)
    with pytest.raises(ValueError):
        Verdict.VALID.www_authenticate()
    assert Verdict(True, Scope.GLOBAL, 5).description == "token revoked: global permissions changed at 5"


def test_scope_mirrors_the_c_enum_and_parses_names():
    assert [(s.name, int(s)) for s in Scope] == [
        ("GLOBAL", 0), ("TENANT", 1), ("SUBJECT", 2), ("ROLE", 3),
        ("CLIENT", 4), ("SESSION", 5), ("TOKEN", 6),
    ]
    assert str(Scope.ROLE) == "role"
    assert Scope.parse("Role") is Scope.ROLE
    assert Scope.parse("sid") is Scope.SESSION
    assert Scope.parse("jti") is Scope.TOKEN
    assert Scope.parse("azp") is Scope.CLIENT
    with pytest.raises(ValueError):
        Scope.parse("everything")


def test_arguments_of_the_wrong_type_are_refused_in_python(writer):
    with pytest.raises(TypeError, match="roles"):
        writer.check("acme", "john", "admin", issued_at=1)  # a str is not a list of roles
    with pytest.raises(TypeError, match="roles"):
        writer.check("acme", "john", b"admin", issued_at=1)
    with pytest.raises(TypeError, match="subject"):
        writer.check("acme", 42, issued_at=1)
    with pytest.raises(TypeError, match="issued_at"):
        writer.check("acme", "john", issued_at=1.5)
    with pytest.raises(TypeError, match="at"):
        writer.revoke(Scope.SUBJECT, "acme", "john", time.time())
    with pytest.raises(TypeError, match="scope"):
        writer.revoke("subject", "acme", "john", 1)
    with pytest.raises(TypeError):
        writer.check("acme", "john", [], None, None, None, 5)  # issued_at is keyword-only
    with pytest.raises(UnicodeEncodeError):
        writer.revoke(Scope.SUBJECT, "acme", "\udc80", 1)
    assert writer.stats(now=0).rule_records == 0


def test_times_outside_i64_are_refused_not_wrapped(writer, reader):
    with pytest.raises(InvalidArgument, match="64-bit"):
        writer.revoke(Scope.SUBJECT, "acme", "john", 2**63)
    with pytest.raises(InvalidArgument, match="64-bit"):
        reader.check("acme", "john", issued_at=-(2**63) - 1)
    writer.revoke(Scope.SUBJECT, "acme", "john", 2**63 - 1)
    assert reader.check("acme", "john", issued_at=-(2**63)) == Verdict(True, Scope.SUBJECT, 2**63 - 1)


def test_a_ledger_is_made_only_by_the_open_functions():
    with pytest.raises(TypeError, match="open_writer"):
        Ledger()


def test_handle_properties_and_repr(writer, reader, path: Path):
    assert writer.is_writer and not reader.is_writer
    assert writer.path == str(path) == reader.path
    assert repr(writer) == f"<revledger.Ledger writer {str(path)!r} open>"
    assert not writer.closed
    reader.close()
    assert reader.closed
    assert repr(reader).endswith("closed>")


def test_open_accepts_str_bytes_and_pathlike(path: Path):
    with Ledger.open_writer(str(path)) as w:
        w.revoke(Scope.SUBJECT, "acme", "john", 10)
    for p in (path, str(path), bytes(path)):
        with Ledger.open_reader(p) as r:
            assert r.check("acme", "john", issued_at=1).revoked


def test_with_block_closes_and_every_method_then_raises_ledger_closed(path: Path):
    with Ledger.open_writer(path) as w:
        w.revoke(Scope.SUBJECT, "acme", "john", 10)
    assert w.closed
    calls = {
        "revoke": lambda: w.revoke(Scope.SUBJECT, "acme", "john", 10),
        "revoke_now": lambda: w.revoke_now(Scope.SUBJECT, "acme", "john"),
        "revoke_batch": lambda: w.revoke_batch([(Scope.SUBJECT, "acme", "john", 10)]),
        "sync": w.sync,
        "check": lambda: w.check("acme", "john", issued_at=1),
        "compact": lambda: w.compact(0),
        "stats": w.stats,
        "refresh": w.refresh,
        "with": lambda: w.__enter__(),
    }
    for name, call in calls.items():
        with pytest.raises(LedgerClosed) as caught:
            call()
        assert isinstance(caught.value, RevledgerError), name
        assert isinstance(caught.value, ValueError), name
        assert caught.value.status is Status.INVALID_ARGUMENT
    w.close()  # idempotent
    w.close()
    # The lock went with the handle: a new writer can open at once.
    with Ledger.open_writer(path) as again:
        assert again.check("acme", "john", issued_at=1).revoked


def test_close_on_error_exits_the_with_block(path: Path):
    with pytest.raises(RuntimeError):
        with Ledger.open_writer(path) as w:
            raise RuntimeError("boom")
    assert w.closed
    Ledger.open_writer(path).close()  # lock released


def test_a_dropped_handle_releases_its_lock(path: Path):
    import gc

    w = Ledger.open_writer(path)
    w.revoke(Scope.SUBJECT, "acme", "john", 10)
    del w
    gc.collect()
    with Ledger.open_writer(path) as again:
        assert again.check("acme", "john", issued_at=1).revoked


def test_version_comes_from_the_library():
    assert revledger.__version__ == revledger.library_version()
    assert revledger.__version__.count(".") == 2
    assert revledger.status_name(Status.LOCKED) == "REVLEDGER_LOCKED"
    assert revledger.status_name(99) == "unknown status"


def test_error_str_names_the_status():
    e = InvalidArgument(Status.INVALID_ARGUMENT, "key too long")
    assert str(e) == "key too long [INVALID_ARGUMENT]"
    assert (e.status, e.message) == (Status.INVALID_ARGUMENT, "key too long")


def test_roles_may_be_none_or_any_iterable(writer, reader):
    writer.revoke(Scope.ROLE, "acme", "admin", 1000)
    assert reader.check("acme", "john", None, issued_at=1) == Verdict.VALID
    assert reader.check("acme", "john", ("viewer", "admin"), issued_at=1).revoked
    assert reader.check("acme", "john", (r for r in ["admin"]), issued_at=1).revoked
    assert reader.check("acme", "john", {"admin": 1}, issued_at=1).revoked


def test_errors_survive_pickling_as_multiprocessing_sends_them():
    import pickle

    for e in [
        revledger.Locked(Status.LOCKED, "ledger x is locked"),
        InvalidArgument(Status.INVALID_ARGUMENT, "bad"),
        LedgerClosed("closed for good"),
        RevledgerError(99, "odd status"),
    ]:
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e)
        assert (back.status, back.message, str(back)) == (e.status, e.message, str(e))


def test_a_handle_cannot_be_pickled_or_copied(writer):
    import copy
    import pickle

    for attempt in (lambda: pickle.dumps(writer), lambda: copy.copy(writer), lambda: copy.deepcopy(writer)):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            attempt()


def test_close_from_two_threads_returns_in_both_only_once_the_handle_is_gone(path: Path):
    import threading

    one_reopen_at_a_time = threading.Lock()
    for _ in range(20):
        w = Ledger.open_writer(path)
        w.revoke(Scope.SUBJECT, "acme", "john", 10)
        barrier = threading.Barrier(2)
        relocked = []

        def closer():
            barrier.wait()
            w.close()
            # Whichever thread returns, the lock is gone: a new writer opens.
            with one_reopen_at_a_time:
                Ledger.open_writer(path).close()
            relocked.append(True)

        threads = [threading.Thread(target=closer) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert relocked == [True, True]


def test_a_reader_follows_the_file_as_it_grows(writer, reader):
    long = "x" * 200  # ~250-byte records: 12k of them outgrow the first MiB of the file
    assert reader.check("acme", "u0" + long, issued_at=1) == Verdict.VALID
    first_size = reader.stats(now=0).file_bytes
    for b in range(3):
        writer.revoke_batch((Scope.SUBJECT, "acme", f"u{i}{long}", 1000) for i in range(b * 4000, (b + 1) * 4000))
        assert reader.check("acme", f"u{b * 4000 + 3999}{long}", issued_at=1) == Verdict(True, Scope.SUBJECT, 1000)
    assert reader.stats(now=0).file_bytes > first_size
    assert reader.check("acme", "u0" + long, issued_at=1).revoked
    assert reader.stats(now=0).live_keys == 12000


def test_writer_options_mode_group_and_background_compaction(tmp_path):
    import os
    import stat

    path = tmp_path / "opts.ledger"
    w = revledger.Ledger.open_writer(path, 3600, file_mode=0o640, file_group=os.getgid(), compaction=False)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        for i in range(50):
            w.revoke(revledger.Scope.SUBJECT, b"t", b"u%d" % i, 1000 + i)
        w.wait_background()
        w.compact(0)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        index = [n for n in os.listdir(tmp_path) if n.endswith(".index")]
        assert index, os.listdir(tmp_path)
        assert stat.S_IMODE(os.stat(tmp_path / index[0]).st_mode) == 0o640
    finally:
        w.close()
    with pytest.raises(revledger.InvalidArgument):
        revledger.Ledger.open_writer(tmp_path / "bad.ledger", 3600, file_mode=0o400)
