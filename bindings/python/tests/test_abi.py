"""The C ABI through ctypes (tests/c_abi.py) against include/revledger.h: every function declared with its
types, every structure laid out as a C compiler lays it out, every enum value equal; and
the raw ABI's own argument checks (NULL pointers, bad lengths)."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import revledger
from revledger import Scope, Status

import c_abi
from c_abi import _SIGNATURES, _Bytes, _Rule, _Stats, _Token, _Verdict, _c, _lib
from support import REPO_ROOT

HEADER = REPO_ROOT / "include" / "revledger.h"
STRUCTS = {
    "revledger_bytes": _Bytes,
    "revledger_rule": _Rule,
    "revledger_token": _Token,
    "revledger_verdict": _Verdict,
    "revledger_statistics": _Stats,
}


def header_functions():
    """name -> number of parameters, for every function the header declares."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    found = {}
    for m in re.finditer(r"\b(revledger_\w+)\s*\(([^)]*)\)\s*;", text):
        params = m.group(2).strip()
        found[m.group(1)] = 0 if params in ("", "void") else params.count(",") + 1
    return found


def test_every_header_function_is_declared_with_its_types():
    declared = header_functions()
    assert len(declared) >= 14
    assert set(declared) == set(_SIGNATURES)
    for name, params in declared.items():
        fn = getattr(_lib, name)
        assert fn is _c[name]
        assert fn.argtypes is not None and len(fn.argtypes) == params, name
        restype, argtypes = _SIGNATURES[name]
        assert fn.restype is restype, name
        assert list(fn.argtypes) == list(argtypes), name


def test_struct_fields_follow_the_header_order():
    text = HEADER.read_text()
    for cname, cls in STRUCTS.items():
        body = re.search(r"typedef struct \{([^{}]*)\}\s*" + cname + r";", text, re.S).group(1)
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        names = re.findall(r"(\w+)\s*;", body)
        assert [f[0] for f in cls._fields_] == names, cname


def layout_program() -> str:
    """A C program printing what the compiler makes of every structure and enum."""
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "revledger.h"', "int main(void) {"]
    for cname, cls in STRUCTS.items():
        lines.append(f'    printf("size {cname} %zu\\n", sizeof({cname}));')
        for fname, _ in cls._fields_:
            lines.append(f'    printf("offset {cname} {fname} %zu\\n", offsetof({cname}, {fname}));')
    for enum in ("revledger_scope", "revledger_status"):
        lines.append(f'    printf("size {enum} %zu\\n", sizeof({enum}));')
    for s in Scope:
        lines.append(f'    printf("enum REVLEDGER_SCOPE_{s.name} %d\\n", (int)REVLEDGER_SCOPE_{s.name});')
    for s in Status:
        lines.append(f'    printf("enum REVLEDGER_{s.name} %d\\n", (int)REVLEDGER_{s.name});')
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_structures_and_enums_match_what_a_c_compiler_makes_of_the_header(tmp_path: Path):
    src = tmp_path / "layout.c"
    src.write_text(layout_program())
    exe = tmp_path / "layout"
    subprocess.run(
        ["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", str(HEADER.parent),
         str(src), "-o", str(exe)],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    seen = 0
    for line in out.splitlines():
        kind, *rest = line.split()
        if kind == "size":
            name, size = rest
            if name in STRUCTS:
                assert ctypes.sizeof(STRUCTS[name]) == int(size), name
            else:  # the two enums
                assert ctypes.sizeof(c_abi._c_scope) == int(size)
                assert ctypes.sizeof(c_abi._c_status) == int(size)
        elif kind == "offset":
            name, field, offset = rest
            assert getattr(STRUCTS[name], field).offset == int(offset), f"{name}.{field}"
        else:
            name, value = rest
            if name.startswith("REVLEDGER_SCOPE_"):
                assert Scope[name[len("REVLEDGER_SCOPE_"):]] == int(value)
            else:
                assert Status[name[len("REVLEDGER_"):]] == int(value)
        seen += 1
    fields = sum(len(cls._fields_) for cls in STRUCTS.values())
    assert seen == len(STRUCTS) + fields + 2 + len(Scope) + len(Status)
    assert (len(Scope), len(Status)) == (7, 8)


def test_raw_abi_refuses_null_pointers_and_bad_lengths(path: Path):
    INVALID = int(Status.INVALID_ARGUMENT)
    last = lambda: _c["revledger_last_error"]().decode()  # noqa: E731
    _c["revledger_close"](None)  # a no-op, not a crash

    out = c_abi._HandlePtr()
    assert _c["revledger_open_writer"](None, 0, ctypes.byref(out)) == INVALID
    assert "path is NULL" in last()
    assert not out  # never written on failure
    assert _c["revledger_open_reader"](b"/nonexistent", None) == INVALID
    assert "out is NULL" in last()

    token = _Token()
    verdict = _Verdict()
    assert _c["revledger_check"](None, ctypes.byref(token), ctypes.byref(verdict)) == INVALID
    assert "handle is NULL" in last()
    h = c_abi.open_handle(path, writer=True)
    assert _c["revledger_check"](h, None, ctypes.byref(verdict)) == INVALID
    assert _c["revledger_check"](h, ctypes.byref(token), None) == INVALID
    assert _c["revledger_check"](h, ctypes.byref(token), ctypes.byref(verdict)) == 0
    assert not verdict.revoked

    token.roles_len = 2  # roles NULL with a length
    assert _c["revledger_check"](h, ctypes.byref(token), ctypes.byref(verdict)) == INVALID
    assert "roles is NULL" in last()
    token = _Token()
    token.subject.len = 5  # ptr NULL with a length
    assert _c["revledger_check"](h, ctypes.byref(token), ctypes.byref(verdict)) == INVALID
    assert "subject: ptr is NULL" in last()

    assert _c["revledger_revoke"](h, 2, _Bytes(b"acme", 4), _Bytes(None, 3), 1) == INVALID
    assert "key: ptr is NULL" in last()
    assert _c["revledger_revoke_batch"](h, None, 3) == INVALID
    assert _c["revledger_revoke_batch"](h, None, 0) == 0
    assert _c["revledger_stats"](h, 0, None) == INVALID
    assert _c["revledger_sync"](None) == INVALID
    assert _c["revledger_refresh"](None) == INVALID
    assert _c["revledger_compact"](None, 0) == INVALID
    assert _c["revledger_revoke_now"](h, 2, _Bytes(b"a", 1), _Bytes(b"b", 1), None) == 0
    stats = _Stats()
    assert _c["revledger_stats"](h, 0, ctypes.byref(stats)) == 0
    assert stats.rule_records == 1  # only the last call wrote
    _c["revledger_close"](h)


def test_the_version_is_a_static_string():
    assert _c["revledger_version"]().decode() == revledger.__version__
    for status in Status:
        assert _c["revledger_status_name"](int(status)).decode() == f"REVLEDGER_{status.name}"
