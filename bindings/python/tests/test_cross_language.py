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
