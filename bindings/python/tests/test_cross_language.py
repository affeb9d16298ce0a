"""Ledgers cross languages: one written from Python is read by the Rust CLI, and one
written by the Rust CLI is read from Python. Needs `cargo build --release --bins`
(scripts/test-all does it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import revledger

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "target" / "release" / "revledger"


@pytest.fixture
def cli() -> Path:
    if not CLI.exists():
        pytest.fail(f"{CLI} is missing: run `cargo build --release --bins` at the repository root")
    return CLI


def run(cli: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=60)


def test_python_writes_rust_cli_reads(cli: Path, path: Path) -> None:
    with revledger.Ledger.open_writer(path, max_token_lifetime=3600) as w:
        w.revoke(revledger.Scope.ROLE, "acme", "super_admin", at=2000)
        w.revoke(revledger.Scope.SUBJECT, b"acme", b"\xffbyte\x00name", at=3000)
    john = run(cli, "check", str(path), "--tenant", "acme", "--sub", "john",
               "--role", "super_admin", "--iat", "1999")
    assert john.returncode == 1, john
    assert "role" in john.stdout
    bruce = run(cli, "check", str(path), "--tenant", "acme", "--sub", "bruce",
                "--role", "billing", "--iat", "1999")
    assert bruce.returncode == 0, bruce
    odd = run(cli, "check", str(path), "--hex", "--tenant", b"acme".hex(),
              "--sub", b"\xffbyte\x00name".hex(), "--iat", "2999")
    assert odd.returncode == 1, odd


def test_rust_cli_writes_python_reads(cli: Path, path: Path) -> None:
    assert run(cli, "create", str(path), "--max-token-lifetime", "3600").returncode == 0
    assert run(cli, "revoke", str(path), "session", "--tenant", "acme", "sid-7",
               "--at", "5000").returncode == 0
    assert run(cli, "revoke", str(path), "token", "--tenant", "acme", "jti-1",
               "--exp", "9000").returncode == 0
    with revledger.Ledger.open_reader(path) as r:
        v = r.check("acme", "mike", session="sid-7", issued_at=4999)
        assert (v.revoked, v.scope, v.cutoff) == (True, revledger.Scope.SESSION, 5000)
        t = r.check("acme", "mike", token_id="jti-1", issued_at=1)
        assert (t.revoked, t.scope, t.cutoff) == (True, revledger.Scope.TOKEN, 9000)
        assert not r.check("acme", "mike", session="sid-8", issued_at=1).revoked


# -- the shared vectors: the Python API and the C ABI give the same answers ------------

from test_vectors import CASES, Case, roles_of, scope_of, unescape  # noqa: E402

import c_abi  # noqa: E402


def python_answer(call):
    try:
        v = call()
    except revledger.RevledgerError as e:
        return ("error", e.status.name)
    if hasattr(v, "revoked"):
        return ("ok", v.revoked, None if v.scope is None else int(v.scope), v.cutoff)
    return ("ok",)


def c_answer(status, value=None):
    if status:
        return ("error", revledger.Status(status).name)
    if value is None:
        return ("ok",)
    return ("ok", *value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_python_and_the_c_abi_agree_on_the_shared_vectors(case: Case, tmp_path: Path):
    py_writer = revledger.Ledger.open_writer(tmp_path / "python.ledger", max_token_lifetime=3600)
    c_writer = c_abi.open_handle(tmp_path / "c.ledger", writer=True)
    try:
        compared = 0
        for number, f in case.statements:
            where = f"cases.txt line {number}: {' '.join(f)}"
            if f[0] in ("rule", "rule-error"):
                scope, tenant, key, at = scope_of(f[1]), unescape(f[2]), unescape(f[3]), int(f[4])
                py = python_answer(lambda: py_writer.revoke(scope, tenant, key, at))
                c = c_answer(c_abi.revoke(c_writer, int(scope), tenant, key, at)[0])
            else:
                token = (unescape(f[1]), unescape(f[2]), roles_of(f[3]), unescape(f[4]),
                         unescape(f[5]), unescape(f[6]), int(f[7]))
                py = python_answer(lambda: py_writer.check(
                    token[0], token[1], token[2], client=token[3], session=token[4],
                    token_id=token[5], issued_at=token[6]))
                status, value = c_abi.check(c_writer, *token)
                c = c_answer(status, value if not status else None)
            assert py == c, where
            compared += 1
        assert compared == len(case.statements) > 0
    finally:
        py_writer.close()
        c_abi._close(c_writer)
