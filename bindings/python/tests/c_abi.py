"""The C ABI through ctypes, for the tests that compare it with the Python API or test it
directly: the declarations of include/revledger.h (they were the ctypes binding's before
the package became a compiled extension), loaded from the repository's
target/release/librevledger.so (`cargo build --release --lib`; scripts/test-all builds
it), or from the file REVLEDGER_LIB names."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Dict, List, Sequence, Tuple

from support import REPO_ROOT

LIBRARY_PATH = os.environ.get("REVLEDGER_LIB") or str(REPO_ROOT / "target" / "release" / "librevledger.so")
if not os.path.isfile(LIBRARY_PATH):
    raise ImportError(
        f"{LIBRARY_PATH} is missing: run `cargo build --release --lib` at the repository root"
    )
_lib = ctypes.CDLL(LIBRARY_PATH)

# --------------------------------------------------------------------------------------
# The C ABI, declared after include/revledger.h
# --------------------------------------------------------------------------------------


class _Handle(ctypes.Structure):
    """``revledger``: an opaque handle, only ever used through a pointer."""


_HandlePtr = ctypes.POINTER(_Handle)


class _Claims(ctypes.Structure):
    """``revledger_claims``: a compiled claim mapping, only ever used through a pointer."""


_ClaimsPtr = ctypes.POINTER(_Claims)

#: ``revledger_status``: a C enum, returned as an int.
_c_status = ctypes.c_int
#: ``revledger_scope`` as the Rust side takes it: a 32-bit unsigned integer that it checks
#: (anything outside 0..=6 is ``REVLEDGER_INVALID_ARGUMENT``); same size and alignment as
#: the C enum.
_c_scope = ctypes.c_uint32


class _Bytes(ctypes.Structure):
    """``revledger_bytes``. ``ptr`` is declared ``c_char_p``, the same ABI as
    ``const uint8_t *``: assigning a ``bytes`` object points at its buffer without a copy,
    and ctypes keeps the object alive as long as the structure. Never read back as a
    C string (the bytes may contain NUL)."""

    _fields_ = [("ptr", ctypes.c_char_p), ("len", ctypes.c_size_t)]


class _Rule(ctypes.Structure):
    """``revledger_rule``."""

    _fields_ = [
        ("scope", _c_scope),
        ("tenant", _Bytes),
        ("key", _Bytes),
        ("at", ctypes.c_int64),
    ]


class _Token(ctypes.Structure):
    """``revledger_token``."""

    _fields_ = [
        ("tenant", _Bytes),
        ("subject", _Bytes),
        ("client", _Bytes),
        ("session", _Bytes),
        ("token_id", _Bytes),
        ("roles", ctypes.POINTER(_Bytes)),
        ("roles_len", ctypes.c_size_t),
        ("issued_at", ctypes.c_int64),
    ]


class _Verdict(ctypes.Structure):
    """``revledger_verdict``."""

    _fields_ = [
        ("revoked", ctypes.c_bool),
        ("scope", _c_scope),
        ("cutoff", ctypes.c_int64),
    ]


class _Stats(ctypes.Structure):
    """``revledger_statistics``, filled by ``revledger_stats``."""

    _fields_ = [
        ("rule_records", ctypes.c_uint64),
        ("live_keys", ctypes.c_uint64),
        ("expired_keys", ctypes.c_uint64),
        ("log_bytes", ctypes.c_uint64),
        ("file_bytes", ctypes.c_uint64),
        ("index_bytes", ctypes.c_uint64),
        ("max_token_lifetime", ctypes.c_int64),
        ("leeway", ctypes.c_int64),
    ]


def _declare(name: str, restype: Any, argtypes: Sequence[Any]) -> Any:
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


#: Every function of include/revledger.h: name -> (restype, argtypes). A test compares
#: this table with the header, so a function added to the ABI is noticed here.
class _WriterOptions(ctypes.Structure):
    """``revledger_writer_options``, filled by ``revledger_writer_options_init``."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("max_token_lifetime_s", ctypes.c_int64),
        ("leeway_s", ctypes.c_int64),
        ("keep_valid_prefix", ctypes.c_uint8),
        ("compaction", ctypes.c_uint32),
        ("compact_ratio", ctypes.c_double),
        ("compact_min_records", ctypes.c_uint64),
        ("file_mode", ctypes.c_uint32),
        ("file_group", ctypes.c_int64),
    ]


_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    "revledger_open_writer": (
        _c_status,
        [ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(_HandlePtr)],
    ),
    "revledger_writer_options_init": (None, [ctypes.POINTER(_WriterOptions)]),
    "revledger_open_writer_with": (
        _c_status,
        [ctypes.c_char_p, ctypes.POINTER(_WriterOptions), ctypes.POINTER(_HandlePtr)],
    ),
    "revledger_wait_background": (_c_status, [_HandlePtr]),
    "revledger_open_reader": (_c_status, [ctypes.c_char_p, ctypes.POINTER(_HandlePtr)]),
    "revledger_close": (None, [_HandlePtr]),
    "revledger_revoke": (_c_status, [_HandlePtr, _c_scope, _Bytes, _Bytes, ctypes.c_int64]),
    "revledger_revoke_now": (
        _c_status,
        [_HandlePtr, _c_scope, _Bytes, _Bytes, ctypes.POINTER(ctypes.c_int64)],
    ),
    "revledger_revoke_batch": (_c_status, [_HandlePtr, ctypes.POINTER(_Rule), ctypes.c_size_t]),
    "revledger_sync": (_c_status, [_HandlePtr]),
    "revledger_check": (_c_status, [_HandlePtr, ctypes.POINTER(_Token), ctypes.POINTER(_Verdict)]),
    "revledger_refresh": (_c_status, [_HandlePtr]),
    "revledger_compact": (_c_status, [_HandlePtr, ctypes.c_int64]),
    "revledger_stats": (_c_status, [_HandlePtr, ctypes.c_int64, ctypes.POINTER(_Stats)]),
    "revledger_dropped_bytes": (_c_status, [_HandlePtr, ctypes.POINTER(ctypes.c_uint64)]),
    "revledger_freshness": (
        _c_status,
        [
            _HandlePtr,
            ctypes.POINTER(ctypes.c_int64),
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.POINTER(ctypes.c_uint64),
        ],
    ),
    "revledger_claims_new": (_c_status, [ctypes.c_char_p, ctypes.POINTER(_ClaimsPtr)]),
    "revledger_claims_free": (None, [_ClaimsPtr]),
    "revledger_check_claims": (
        _c_status,
        [_HandlePtr, _ClaimsPtr, _Bytes, ctypes.POINTER(_Verdict)],
    ),
    "revledger_check_jwt": (
        _c_status,
        [_HandlePtr, _ClaimsPtr, _Bytes, ctypes.POINTER(_Verdict)],
    ),
    "revledger_check_jwt_ptr": (
        _c_status,
        [_HandlePtr, _ClaimsPtr, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Verdict)],
    ),
    "revledger_freshness_state": (
        _c_status,
        [_HandlePtr, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint32)],
    ),
    "revledger_last_error": (ctypes.c_char_p, []),
    "revledger_status_name": (ctypes.c_char_p, [ctypes.c_uint32]),
    "revledger_version": (ctypes.c_char_p, []),
    "revledger_testing_panic_in": (_c_status, [ctypes.c_char_p]),
}

_c = {name: _declare(name, res, args) for name, (res, args) in _SIGNATURES.items()}
_open_writer = _c["revledger_open_writer"]
_open_reader = _c["revledger_open_reader"]
_close = _c["revledger_close"]
_revoke = _c["revledger_revoke"]
_revoke_now = _c["revledger_revoke_now"]
_revoke_batch = _c["revledger_revoke_batch"]
_sync = _c["revledger_sync"]
_check = _c["revledger_check"]
_refresh = _c["revledger_refresh"]
_compact = _c["revledger_compact"]
_stats = _c["revledger_stats"]
_freshness = _c["revledger_freshness"]
_last_error = _c["revledger_last_error"]
_status_name = _c["revledger_status_name"]
_version = _c["revledger_version"]
_byref = ctypes.byref


# --------------------------------------------------------------------------------------
# A few calls, for comparing answers with the Python API
# --------------------------------------------------------------------------------------


def open_handle(path: Any, writer: bool, max_token_lifetime: int = 3600) -> Any:
    """A C handle (revledger_open_writer / revledger_open_reader); raises on failure."""
    out = _HandlePtr()
    raw = os.fsencode(path)
    status = _open_writer(raw, max_token_lifetime, ctypes.byref(out)) if writer else _open_reader(raw, ctypes.byref(out))
    if status:
        raise RuntimeError(f"opening {path}: status {status}: {_last_error().decode()}")
    return out


def revoke(handle: Any, scope: int, tenant: bytes, key: bytes, at: int) -> Tuple[int, str]:
    """(status, last error message or "")."""
    status = _revoke(handle, scope & 0xFFFFFFFF, _Bytes(tenant, len(tenant)), _Bytes(key, len(key)), at)
    return status, (_last_error().decode() if status else "")


def check(handle: Any, tenant: bytes, subject: bytes, roles: List[bytes], client: bytes,
          session: bytes, token_id: bytes, issued_at: int) -> Tuple[int, Any]:
    """(status, (revoked, scope, cutoff)) — or (status, message) when it failed."""
    n = len(roles)
    role_array = (_Bytes * n)(*[(r, len(r)) for r in roles]) if n else None
    token = _Token((tenant, len(tenant)), (subject, len(subject)), (client, len(client)),
                   (session, len(session)), (token_id, len(token_id)), role_array, n, issued_at)
    out = _Verdict()
    status = _check(handle, ctypes.byref(token), ctypes.byref(out))
    if status:
        return status, _last_error().decode()
    return 0, (bool(out.revoked), int(out.scope) if out.revoked else None, out.cutoff if out.revoked else None)
