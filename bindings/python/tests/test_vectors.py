"""The shared table of cases (tests/vectors/cases.txt, format in tests/vectors/README.md),
the same lines the Rust, C and Go runners play, through the Python API."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple, Union

import pytest

from revledger import (
    Corrupt,
    Incompatible,
    Internal,
    InvalidArgument,
    Ledger,
    LedgerIOError,
    Locked,
    ReadOnly,
    RevledgerError,
    Scope,
    Verdict,
)

from support import REPO_ROOT

VECTORS = REPO_ROOT / "tests" / "vectors" / "cases.txt"

ERRORS = {
    "INVALID_ARGUMENT": InvalidArgument,
    "IO": LedgerIOError,
    "CORRUPT": Corrupt,
    "LOCKED": Locked,
    "READ_ONLY": ReadOnly,
    "INCOMPATIBLE": Incompatible,
    "INTERNAL": Internal,
}

SCOPE_NAMES = {s.label: s for s in Scope}


def unescape(text: str) -> bytes:
    """A byte-string field: `-` is empty, `*N*C` is C repeated N times, else
    percent-encoded bytes (`%XX`) and bare characters."""
    if text == "-":
        return b""
    if text.startswith("*"):
        count, char = text[1:].split("*", 1)
        assert len(char) == 1, f"bad repeat field {text!r}"
        return char.encode() * int(count)
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            digits = text[i + 1:i + 3]
            assert len(digits) == 2, f"truncated escape in {text!r}"
            out.append(int(digits, 16))
            i += 3
        else:
            out += text[i].encode()
            i += 1
    return bytes(out)


def roles_of(text: str) -> List[bytes]:
    return [] if text == "-" else [unescape(r) for r in text.split(",")]


def scope_of(text: str) -> Union[Scope, int]:
    """A name, or a decimal integer handed to the C ABI as it is."""
    if text.lstrip("-").isdigit():
        return int(text)
    return SCOPE_NAMES[text]


@dataclass
class Case:
    name: str
    line: int
    statements: List[Tuple[int, List[str]]] = field(default_factory=list)


def load_cases(path: Path = VECTORS) -> List[Case]:
    cases: List[Case] = []
    current = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(" ")
        kind = fields[0]
        if kind == "case":
            assert current is None, f"line {number}: case inside case {current.name}"
            current = Case(fields[1], number)
        elif kind == "end":
            assert current is not None, f"line {number}: end outside a case"
            cases.append(current)
            current = None
        elif kind in ("rule", "rule-error", "check", "check-error"):
            assert current is not None, f"line {number}: {kind} outside a case"
            want = {"rule": 5, "rule-error": 6, "check-error": 9}.get(kind)
            if kind == "check":
                want = 9 if fields[8] == "valid" else 11
            assert len(fields) == want, f"line {number}: {len(fields)} fields, want {want}"
            current.statements.append((number, fields))
        else:
            raise AssertionError(f"line {number}: unknown statement {kind!r}")
    assert current is None, f"case {current.name} has no end"
    return cases


CASES = load_cases()


def run_check(ledger: Ledger, number: int, f: List[str]) -> None:
    where = f"cases.txt line {number}: {' '.join(f)}"

    def call() -> Verdict:
        return ledger.check(
            unescape(f[1]),
            unescape(f[2]),
            roles_of(f[3]),
            client=unescape(f[4]),
            session=unescape(f[5]),
            token_id=unescape(f[6]),
            issued_at=int(f[7]),
        )

    if f[0] == "check-error":
        with pytest.raises(RevledgerError) as caught:
            call()
        assert type(caught.value) is ERRORS[f[8]], where
        assert caught.value.status.name == f[8], where
        assert caught.value.message, where
        return
    got = call()
    if f[8] == "valid":
        want = Verdict(False)
    else:
        assert f[8] == "revoked", where
        want = Verdict(True, Scope(scope_of(f[9])), int(f[10]))
    assert got == want, where


def test_the_table_is_all_there():
    assert len(CASES) >= 15
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
    kinds = {f[0] for c in CASES for _, f in c.statements}
    assert kinds == {"rule", "rule-error", "check", "check-error"}


def test_unescape_follows_the_readme():
    assert unescape("-") == b""
    assert unescape("%2D") == b"-"
    assert unescape("%00%FF%20") == b"\x00\xff "
    assert unescape("a%2Cb") == b"a,b"
    assert unescape("*3*x") == b"xxx"
    assert unescape("%E2%82%AC") == "€".encode()
    assert roles_of("a,%2C,b") == [b"a", b",", b"b"]
    assert scope_of("4294967295") == 4294967295
    assert scope_of("session") is Scope.SESSION


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path):
    path = tmp_path / case.name
    checks = []
    with Ledger.open_writer(path, max_token_lifetime=3600) as writer:
        for number, f in case.statements:
            where = f"cases.txt line {number}: {' '.join(f)}"
            if f[0] in ("rule", "rule-error"):
                args = (scope_of(f[1]), unescape(f[2]), unescape(f[3]), int(f[4]))
                if f[0] == "rule":
                    writer.revoke(*args)
                else:
                    before = writer.stats(now=0)
                    with pytest.raises(RevledgerError) as caught:
                        writer.revoke(*args)
                    assert type(caught.value) is ERRORS[f[5]], where
                    assert caught.value.status.name == f[5], where
                    assert caught.value.message, where
                    assert writer.stats(now=0) == before, f"{where}: a refused rule changed the ledger"
            else:
                run_check(writer, number, f)
                checks.append((number, f))
        # A reader opened while the writer is open, and one opened after it closed.
        early = Ledger.open_reader(path)
    with early, Ledger.open_reader(path) as fresh:
        for number, f in checks:
            run_check(early, number, f)
            run_check(fresh, number, f)
