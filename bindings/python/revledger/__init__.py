"""revledger: instant JWT revocation, from Python.

A thin ctypes binding over the revledger C ABI (``include/revledger.h``): no compiled
extension. The permission system records "scope S changed at time T"; every process
asks "is this token revoked?" and gets the answer from a memory-mapped ledger file, as
soon as the writer commits::

    from revledger import Ledger, Scope

    with Ledger.open_writer("/var/lib/revledger/acme.ledger") as writer:
        writer.revoke(Scope.ROLE, "acme", "super_admin", at=1_700_000_000)

    with Ledger.open_reader("/var/lib/revledger/acme.ledger") as reader:
        verdict = reader.check("acme", "john", roles=["super_admin"], issued_at=1_699_999_000)
        if verdict.revoked:
            ...  # 401, WWW-Authenticate: verdict.www_authenticate()

Byte strings (tenant, subject, roles, client, session, token id, keys) are ``bytes``,
passed through unchanged, or ``str``, encoded as UTF-8; ``None`` is the empty string.
Times are ``int`` Unix seconds. Errors are :class:`RevledgerError` subclasses carrying
the C status and the message of ``revledger_last_error()``.

On a fleet, one ``revledger sync`` process per host feeds the host's ledger from a Redis
stream (docs/SYNC.md). :func:`publish` puts a rule on that stream (it needs the optional
``redis`` package: ``pip install 'revledger[sync]'``), and :meth:`Ledger.freshness` tells
when the ledger last heard from it, so that a gateway can refuse to answer from a stale
ledger.

The shared library is taken from the environment variable ``REVLEDGER_LIB`` if set,
else from ``target/release/`` of the repository this package sits in (built by
``cargo build --release --lib``), else from the system's library path.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import enum
import json
import operator
import os
import struct
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

__all__ = [
    "Claims",
    "Corrupt",
    "Freshness",
    "Incompatible",
    "Internal",
    "InvalidArgument",
    "Ledger",
    "LedgerClosed",
    "LedgerIOError",
    "LIBRARY_PATH",
    "Locked",
    "MAX_KEY_LEN",
    "MAX_ROLES",
    "ReadOnly",
    "RevledgerError",
    "Rule",
    "Scope",
    "Stats",
    "Status",
    "Verdict",
    "__version__",
    "library_version",
    "now_cutoff",
    "publish",
    "signed_message",
    "load_signing_key",
    "DEGRADED_SKIPPED",
    "DEGRADED_REFUSED",
    "DEGRADED_TRIMMED",
]

#: Longest tenant, subject, role, client id, session id or token id, in bytes
#: (``MAX_KEY_LEN`` in the crate; the C side enforces it).
MAX_KEY_LEN = 4096
#: Most roles one token given to :meth:`Ledger.check` may carry (enforced by C).
MAX_ROLES = 4096

BytesLike = Union[bytes, bytearray, memoryview, str, None]
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# --------------------------------------------------------------------------------------
# Finding and loading the shared library
# --------------------------------------------------------------------------------------

if sys.platform == "darwin":
    _LIB_FILE = "librevledger.dylib"
elif sys.platform == "win32":
    _LIB_FILE = "revledger.dll"
else:
    _LIB_FILE = "librevledger.so"


def _repo_library() -> Optional[Path]:
    """``<repo>/target/release/librevledger.so`` for a package at ``<repo>/bindings/python``."""
    parents = Path(__file__).resolve().parents
    if len(parents) < 4:
        return None
    return parents[3] / "target" / "release" / _LIB_FILE


def _load_library() -> Tuple[ctypes.CDLL, str]:
    from_env = os.environ.get("REVLEDGER_LIB")
    if from_env:
        try:
            return ctypes.CDLL(from_env), from_env
        except OSError as e:
            raise ImportError(
                f"revledger: cannot load the library named by REVLEDGER_LIB={from_env!r}: {e}"
            ) from e
    repo_lib = _repo_library()
    if repo_lib is not None and repo_lib.is_file():
        try:
            return ctypes.CDLL(str(repo_lib)), str(repo_lib)
        except OSError as e:
            raise ImportError(f"revledger: cannot load {repo_lib}: {e}") from e
    found = ctypes.util.find_library("revledger")
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as e:
            raise ImportError(f"revledger: cannot load {found}: {e}") from e
    repo = repo_lib.parents[2] if repo_lib is not None else None
    where = f" ({repo})" if repo is not None and (repo / "Cargo.toml").is_file() else ""
    raise ImportError(
        f"revledger: cannot find the shared library {_LIB_FILE}. Build it with "
        f"`cargo build --release --lib` at the root of the revledger repository{where}, "
        f"or set REVLEDGER_LIB to the library's path, or install it where the system "
        f"linker looks (ctypes.util.find_library('revledger') found nothing)."
    )


_lib, LIBRARY_PATH = _load_library()

# --------------------------------------------------------------------------------------
# The C ABI, declared after include/revledger.h
# --------------------------------------------------------------------------------------


class _Handle(ctypes.Structure):
    """``revledger``: an opaque handle, only ever used through a pointer."""


_HandlePtr = ctypes.POINTER(_Handle)

class _ClaimsHandle(ctypes.Structure):
    """``revledger_claims``: a compiled claim mapping, only ever used through a pointer."""


_ClaimsPtr = ctypes.POINTER(_ClaimsHandle)

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
_SIGNATURES: Dict[str, Tuple[Any, List[Any]]] = {
    "revledger_open_writer": (
        _c_status,
        [ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(_HandlePtr)],
    ),
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
    "revledger_freshness_state": (
        _c_status,
        [_HandlePtr, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_uint32)],
    ),
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
    "revledger_check_jwt": (_c_status, [_HandlePtr, _ClaimsPtr, _Bytes, ctypes.POINTER(_Verdict)]),
    "revledger_check_jwt_ptr": (
        _c_status,
        [_HandlePtr, _ClaimsPtr, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Verdict)],
    ),
    "revledger_last_error": (ctypes.c_char_p, []),
    "revledger_status_name": (ctypes.c_char_p, [ctypes.c_uint32]),
    "revledger_version": (ctypes.c_char_p, []),
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
_freshness_state = _c["revledger_freshness_state"]
_claims_new = _c["revledger_claims_new"]
_claims_free = _c["revledger_claims_free"]
_check_claims = _c["revledger_check_claims"]
_check_jwt = _c["revledger_check_jwt"]
_last_error = _c["revledger_last_error"]
_status_name = _c["revledger_status_name"]
_version = _c["revledger_version"]
_byref = ctypes.byref


def library_version() -> str:
    """The version of the loaded C library (``revledger_version()``)."""
    return str(_version().decode("ascii"))


#: The package is versioned with the library it binds.
__version__ = library_version()

# --------------------------------------------------------------------------------------
# Enums, values, errors
# --------------------------------------------------------------------------------------


class Status(enum.IntEnum):
    """``revledger_status``, without the ``REVLEDGER_`` prefix."""

    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    CORRUPT = 3
    LOCKED = 4
    READ_ONLY = 5
    INCOMPATIBLE = 6
    INTERNAL = 7


class Scope(enum.IntEnum):
    """``revledger_scope``: the part of the token space a rule covers."""

    #: Every token.
    GLOBAL = 0
    #: Every token of one tenant (no key).
    TENANT = 1
    #: One user's tokens; key = ``sub``.
    SUBJECT = 2
    #: Tokens carrying one role / group / permission; key = that string.
    ROLE = 3
    #: Tokens issued to one client app; key = ``azp`` / ``client_id``.
    CLIENT = 4
    #: Tokens of one login session; key = ``sid``.
    SESSION = 5
    #: Exactly one token; key = ``jti``, time = the token's ``exp``.
    TOKEN = 6

    @property
    def label(self) -> str:
        """Lower-case name, as the CLI and the documentation spell it (``"role"``)."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, name: str) -> Scope:
        """A scope from its name (any case), or one of the aliases ``sub``, ``user``,
        ``azp``, ``client_id``, ``sid``, ``jti``. Unknown names raise ``ValueError``."""
        key = name.lower()
        alias = _SCOPE_ALIASES.get(key)
        if alias is not None:
            return alias
        try:
            return cls[key.upper()]
        except KeyError:
            raise ValueError(f"unknown scope name {name!r}") from None


_SCOPE_ALIASES = {
    "sub": Scope.SUBJECT,
    "user": Scope.SUBJECT,
    "azp": Scope.CLIENT,
    "client_id": Scope.CLIENT,
    "sid": Scope.SESSION,
    "jti": Scope.TOKEN,
}
_SCOPES = tuple(Scope)


class RevledgerError(Exception):
    """An error reported by revledger: ``status`` (a :class:`Status`) and ``message``
    (from ``revledger_last_error()``, or from this binding for checks done in Python)."""

    def __init__(self, status: Union[Status, int], message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return f"{self.message} [{name}]"


class InvalidArgument(RevledgerError):
    """A key over its limit, an empty key where one is needed, an out-of-range scope, a
    smaller ``max_token_lifetime`` than the ledger's, ... Nothing was changed."""


class LedgerIOError(RevledgerError):
    """The operating system refused an operation (file or directory missing, permission,
    disk full)."""


class Corrupt(RevledgerError):
    """The file is damaged; the message names the byte offset."""


class Locked(RevledgerError):
    """Another writer (in this process or another) holds the ledger."""


class ReadOnly(RevledgerError):
    """A write on a handle opened with :meth:`Ledger.open_reader`."""


class Incompatible(RevledgerError):
    """Not a revledger file, or one of an unknown format version."""


class Internal(RevledgerError):
    """A bug in revledger (including a panic caught at the C boundary)."""


class LedgerClosed(RevledgerError, ValueError):
    """A method was called on a closed handle (or on one inherited across ``fork``).
    Like I/O on a closed Python file, it is also a ``ValueError``."""

    def __init__(self, message: str = "the ledger handle is closed") -> None:
        super().__init__(Status.INVALID_ARGUMENT, message)

    def __reduce__(self) -> Any:
        return (LedgerClosed, (self.message,))


_ERRORS = {
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.IO: LedgerIOError,
    Status.CORRUPT: Corrupt,
    Status.LOCKED: Locked,
    Status.READ_ONLY: ReadOnly,
    Status.INCOMPATIBLE: Incompatible,
    Status.INTERNAL: Internal,
}


def _error(status: int) -> RevledgerError:
    """The exception for a failed call. Must run right after that call, on the same
    thread: ``revledger_last_error()`` is thread-local and overwritten by the next call
    (ctypes runs foreign calls on the calling thread)."""
    raw = _last_error()
    message = raw.decode("utf-8", "replace") if raw else ""
    try:
        code: Union[Status, int] = Status(status)
    except ValueError:
        code = status
    cls: Type[RevledgerError] = _ERRORS.get(code, RevledgerError) if isinstance(code, Status) else RevledgerError
    return cls(code, message or f"revledger call failed with status {status}")


def status_name(status: int) -> str:
    """The C name of a status code (``revledger_status_name``), e.g. ``REVLEDGER_LOCKED``."""
    return str(_status_name(status & 0xFFFFFFFF).decode("ascii"))


@dataclass(frozen=True)
class Verdict:
    """The answer of :meth:`Ledger.check`. When ``revoked``, ``scope`` and ``cutoff`` name
    the deciding rule (for :attr:`Scope.TOKEN`, ``cutoff`` is the ``exp`` it was recorded
    with); for a valid token both are ``None``."""

    revoked: bool
    scope: Optional[Scope] = None
    cutoff: Optional[int] = None

    VALID: ClassVar[Verdict]

    @property
    def description(self) -> str:
        """A text for ``error_description`` in ``WWW-Authenticate`` (the same words as the
        Rust crate's ``Verdict::description``)."""
        if not self.revoked:
            return "token is valid"
        if self.scope is Scope.TOKEN:
            return "token revoked"
        return f"token revoked: {self.scope} permissions changed at {self.cutoff}"

    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` header value for the ``401`` of a revoked token."""
        if not self.revoked:
            raise ValueError("a valid token gets no WWW-Authenticate error")
        return f'Bearer error="invalid_token", error_description="{self.description}"'


Verdict.VALID = Verdict(False)


@dataclass(frozen=True)
class Stats:
    """Figures about a ledger, from :meth:`Ledger.stats` (``revledger_stats``)."""

    #: Rule records in the log, duplicates included.
    rule_records: int
    #: Distinct keys with a rule.
    live_keys: int
    #: Keys whose rule can no longer revoke an unexpired token (compaction drops them).
    expired_keys: int
    #: Bytes of committed log, header included.
    log_bytes: int
    #: Size of the file.
    file_bytes: int
    #: Bytes of memory held by this handle's index.
    index_bytes: int
    #: Effective maximum token lifetime, seconds.
    max_token_lifetime: int
    #: Clock-skew leeway, seconds.
    leeway: int


@dataclass(frozen=True)
class Freshness:
    """How current a ledger fed by ``revledger sync`` is, from :meth:`Ledger.freshness`
    (``revledger_freshness``)."""

    #: Unix second at which the sync process last heard from the stream (a new entry, or
    #: a heartbeat about once a second while the stream answers); ``None`` when no sync
    #: process ever recorded a position in this ledger.
    last_heard: Optional[int]
    #: Id of the last stream entry applied, ``"<ms>-<seq>"``; ``None`` when none was.
    last_id: Optional[str]
    #: Why the ledger may lack rules its stream carried: 0 when it holds every one, else
    #: bits :data:`DEGRADED_SKIPPED`, :data:`DEGRADED_REFUSED`, :data:`DEGRADED_TRIMMED`.
    #: Set until an operator resyncs and runs ``revledger sync --resolve`` (docs/SYNC.md §5).
    degraded: int = 0

    @property
    def is_degraded(self) -> bool:
        """Whether the ledger may lack rules its stream carried."""
        return self.degraded != 0

    def age(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds since the ledger last heard from its stream as of ``now`` (default: the
        current time), never negative; ``None`` when it never did."""
        if self.last_heard is None:
            return None
        when = time.time() if now is None else now
        return max(0.0, when - self.last_heard)

    def is_stale(self, max_staleness: float, now: Optional[float] = None) -> bool:
        """Whether a gateway wanting answers at most ``max_staleness`` seconds old should
        fail closed: the ledger never heard from its stream, or longer ago than that.
        (Heartbeats come about once a second, in whole seconds: use a few seconds at
        least, say 10.)"""
        if self.degraded:
            return True
        age = self.age(now)
        return age is None or age > max_staleness


class Rule(NamedTuple):
    """One rule for :meth:`Ledger.revoke_batch`; a plain ``(scope, tenant, key, at)``
    tuple does as well."""

    scope: Union[Scope, int]
    tenant: BytesLike
    key: BytesLike
    at: int


# --------------------------------------------------------------------------------------
# Argument conversion
# --------------------------------------------------------------------------------------

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def _as_bytes(value: BytesLike, what: str) -> bytes:
    cls = value.__class__
    if cls is bytes:
        return value  # type: ignore[return-value]
    if cls is str:
        return value.encode("utf-8")  # type: ignore[union-attr]
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, not {cls.__name__}")


def _as_i64(value: int, what: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{what} must be an int (Unix seconds), not {value.__class__.__name__}"
        ) from None
    if not _I64_MIN <= v <= _I64_MAX:
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"{what} {v} does not fit in a signed 64-bit integer"
        )
    return v


def _as_scope(value: Union[Scope, int]) -> int:
    """The scope as the C ABI takes it. Any integer a C caller could pass goes through
    unchanged, so that the C side decides what is in range (out-of-range values come
    back as ``InvalidArgument``); only integers no C enum can hold are refused here,
    instead of being silently truncated to some other, valid, scope."""
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"scope must be a Scope or an int, not {value.__class__.__name__}") from None
    if not -(1 << 31) <= v < (1 << 32):
        raise InvalidArgument(
            Status.INVALID_ARGUMENT, f"scope {v} does not fit in a C enum (32 bits)"
        )
    return v & 0xFFFFFFFF


def _as_path(path: PathLike) -> bytes:
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise InvalidArgument(Status.INVALID_ARGUMENT, f"path {path!r} contains a NUL byte")
    return raw


# --------------------------------------------------------------------------------------
# The handle
# --------------------------------------------------------------------------------------

# Open handles, so that a forked child can disown the ones it inherited (see _after_fork).
_live: weakref.WeakSet[Ledger] = weakref.WeakSet()
_live_lock = threading.Lock()


def _close_handle(handle: Any) -> None:
    _close(handle)


def _free_claims(handle: Any) -> None:
    _claims_free(handle)


class Claims:
    """A compiled claim mapping (DESIGN.md §7): where the tenant, subject, roles, client,
    session, token id and ``iat`` of the token to check are found in a JWT's payload.

    ``spec`` is a built-in name, ``"generic"``, ``"auth0"``, ``"keycloak"`` or
    ``"entra"``, or the JSON text (or a ``dict``) of a pointer spec such as
    ``{"tenant": ["/tid"], "subject": ["/sub"], "roles": ["/realm_access/roles"]}``.
    An unknown name or a misshapen spec raises :class:`InvalidArgument` saying what is
    wrong. Immutable and thread-safe: share one among threads and ledgers.
    :meth:`close` waits for the checks in progress; use it as a ``with`` block.
    """

    __slots__ = ("__weakref__", "_handle", "_busy", "_closing", "_lock", "_cond", "_finalizer", "_spec")

    BUILTIN: ClassVar[Tuple[str, ...]] = ("generic", "auth0", "keycloak", "entra")

    def __init__(self, spec: Union[str, Dict[str, Any]] = "generic") -> None:
        if isinstance(spec, dict):
            spec = json.dumps(spec)
        if not isinstance(spec, str):
            raise TypeError(f"spec must be a str or a dict, not {spec.__class__.__name__}")
        raw = spec.encode("utf-8")
        if b"\0" in raw:
            raise InvalidArgument(Status.INVALID_ARGUMENT, "the claim mapping spec contains a NUL byte")
        out = _ClaimsPtr()
        status = _claims_new(raw, ctypes.byref(out))
        if status:
            raise _error(status)
        self._spec = spec
        self._handle = out
        self._busy = 0
        self._closing = False
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._finalizer = weakref.finalize(self, _free_claims, out)
        self._finalizer.atexit = False

    @property
    def spec(self) -> str:
        """The spec the mapping was compiled from."""
        return self._spec

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def _enter(self) -> Any:
        with self._lock:
            handle = self._handle
            if handle is None:
                raise LedgerClosed("the claim mapping is closed")
            self._busy += 1
            return handle

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._closing and self._busy == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Frees the mapping once the checks in progress are done. Idempotent."""
        with self._cond:
            if self._handle is None:
                return
            self._handle = None
            self._closing = True
            while self._busy:
                self._cond.wait()
        self._finalizer()

    def __enter__(self) -> Claims:
        if self._handle is None:
            raise LedgerClosed("the claim mapping is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        return (Claims, (self._spec,))

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else "open"
        spec = self._spec if len(self._spec) <= 60 else self._spec[:57] + "..."
        return f"<revledger.Claims {spec!r} {state}>"


class Ledger:
    """An open ledger: a writer (one per ledger, can revoke) or a reader.

    :meth:`check` is thread-safe and runs concurrently with other checks and, on a
    writer, with revokes on the same handle: share one handle among threads (ctypes
    releases the GIL during the C call). :meth:`close` waits for the calls in progress on
    other threads, then frees the handle; every later call raises :class:`LedgerClosed`.
    Use it as a ``with`` block. A handle inherited by a forked child is unusable there
    (it raises :class:`LedgerClosed`): open a new one in the child.
    """

    __slots__ = (
        "__weakref__",
        "_busy",
        "_closing",
        "_released",
        "_cond",
        "_lock",
        "_finalizer",
        "_handle",
        "_closed_message",
        "_path",
        "_is_writer",
    )
    _handle: Any  # the C handle (a ctypes pointer), or None once closed
    _busy: int  # calls in progress
    _closing: bool  # close() has begun
    _released: bool  # the C handle is freed
    _lock: threading.Lock
    _cond: threading.Condition
    _finalizer: Any  # weakref.finalize freeing the C handle
    _closed_message: str
    _path: str
    _is_writer: bool

    def __init__(self, *_: Any, **__: Any) -> None:
        raise TypeError("use Ledger.open_writer(path) or Ledger.open_reader(path)")

    @classmethod
    def _from_handle(cls, handle: Any, path: str, writer: bool) -> Ledger:
        self = object.__new__(cls)
        self._handle = handle
        self._busy = 0
        self._closing = False
        self._released = False
        self._lock = threading.Lock()  # guards _handle, _busy, _closing, _released
        self._cond = threading.Condition(self._lock)
        self._closed_message = "the ledger handle is closed"
        self._path = path
        self._is_writer = writer
        # Frees the handle if the object is dropped without close(); not at interpreter
        # exit, where daemon threads may still be inside a check. (Committed records are
        # in the file already; close() only adds the fdatasync.)
        self._finalizer = weakref.finalize(self, _close_handle, handle)
        self._finalizer.atexit = False
        with _live_lock:
            _live.add(self)
        return self

    @classmethod
    def open_writer(cls, path: PathLike, max_token_lifetime: int = 3600) -> Ledger:
        """Opens (creating it if missing) the ledger at ``path`` for writing and takes its
        exclusive lock until :meth:`close`. Another writer, in any process: :class:`Locked`.

        ``max_token_lifetime``: on creation, the longest lifetime (seconds) of the tokens
        to cover (0 = one day); on reopening, 0 keeps the ledger's value, a larger value
        raises it, a smaller one is :class:`InvalidArgument`.
        """
        raw = _as_path(path)
        lifetime = _as_i64(max_token_lifetime, "max_token_lifetime")
        out = _HandlePtr()
        status = _open_writer(raw, lifetime, ctypes.byref(out))
        if status:
            raise _error(status)
        return cls._from_handle(out, os.fsdecode(raw), True)

    @classmethod
    def open_reader(cls, path: PathLike) -> Ledger:
        """Opens the ledger at ``path`` read-only. A reader sees every record the writer
        commits on its next check."""
        raw = _as_path(path)
        out = _HandlePtr()
        status = _open_reader(raw, ctypes.byref(out))
        if status:
            raise _error(status)
        return cls._from_handle(out, os.fsdecode(raw), False)

    # -- lifetime -------------------------------------------------------------------

    # Every call on the handle runs between _enter() and _leave(), which count the calls
    # in progress so that close() can wait for them: the C handle must not be freed
    # under a call (revledger_close must not race with any other call). `with` on the
    # plain Lock, not on the Condition, keeps this off Python-level __enter__ methods:
    # it is on the path of every check.

    def _enter(self) -> Any:
        with self._lock:
            handle = self._handle
            if handle is None:
                raise LedgerClosed(self._closed_message)
            self._busy += 1
            return handle

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._closing and self._busy == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Closes the handle: a writer makes its records durable and releases its lock.
        Waits for calls in progress on other threads (and for a close in progress on
        another thread), so that when it returns the handle is gone. Idempotent."""
        with self._cond:
            if self._closing:
                while not self._released:
                    self._cond.wait()
                return
            self._handle = None  # new calls raise LedgerClosed from here on
            self._closing = True
            while self._busy:
                self._cond.wait()
        with _live_lock:
            _live.discard(self)
        try:
            self._finalizer()  # revledger_close, once
        finally:
            with self._cond:
                self._released = True
                self._cond.notify_all()

    @property
    def path(self) -> str:
        """The path the ledger was opened at."""
        return self._path

    @property
    def is_writer(self) -> bool:
        """Whether this handle is the writer."""
        return self._is_writer

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def __enter__(self) -> Ledger:
        if self._handle is None:
            raise LedgerClosed(self._closed_message)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(
            "a Ledger handle cannot be pickled or copied; open the ledger where it is needed"
        )

    def __repr__(self) -> str:
        kind = "writer" if self.is_writer else "reader"
        state = "closed" if self._handle is None else "open"
        return f"<revledger.Ledger {kind} {self.path!r} {state}>"

    # -- writes ---------------------------------------------------------------------

    def revoke(self, scope: Union[Scope, int], tenant: BytesLike, key: BytesLike, at: int) -> None:
        """Records "``scope`` changed at ``at``": tokens in scope issued before ``at``
        (Unix seconds) are revoked. For :attr:`Scope.TOKEN`, ``key`` is the jti and ``at``
        the token's ``exp``. ``key`` is empty (``b""``/``None``) for GLOBAL and TENANT,
        and GLOBAL takes no tenant. Returns once the record is committed (every reader's
        next check sees it); durable after :meth:`sync`."""
        s = _as_scope(scope)
        t = _as_bytes(tenant, "tenant")
        k = _as_bytes(key, "key")
        when = _as_i64(at, "at")
        handle = self._enter()
        try:
            status = _revoke(handle, s, _Bytes(t, len(t)), _Bytes(k, len(k)), when)
            if status:
                raise _error(status)
        finally:
            self._leave()

    def revoke_now(self, scope: Union[Scope, int], tenant: BytesLike = None, key: BytesLike = None) -> int:
        """Revokes as of now: the current time rounded up to the next second (a token
        issued in the same second counts as issued before). Returns the cutoff written.
        Not for :attr:`Scope.TOKEN` (whose time is the token's ``exp``)."""
        s = _as_scope(scope)
        t = _as_bytes(tenant, "tenant")
        k = _as_bytes(key, "key")
        cutoff = ctypes.c_int64()
        handle = self._enter()
        try:
            status = _revoke_now(handle, s, _Bytes(t, len(t)), _Bytes(k, len(k)), ctypes.byref(cutoff))
            if status:
                raise _error(status)
        finally:
            self._leave()
        return cutoff.value

    def revoke_batch(self, rules: Iterable[Union[Rule, Tuple[Any, Any, Any, int]]]) -> int:
        """Records every rule of ``rules`` (:class:`Rule` or ``(scope, tenant, key, at)``
        tuples) in one write: all are checked first, then all are committed, or none is.
        Returns how many were committed."""
        items = []
        for i, rule in enumerate(rules):
            try:
                scope, tenant, key, at = rule
            except (TypeError, ValueError):
                raise TypeError(
                    f"rule {i} must be a Rule or a (scope, tenant, key, at) tuple"
                ) from None
            t = _as_bytes(tenant, "tenant")
            k = _as_bytes(key, "key")
            items.append((_as_scope(scope), (t, len(t)), (k, len(k)), _as_i64(at, "at")))
        n = len(items)
        array = (_Rule * n)(*items) if n else None  # type: ignore[misc]
        handle = self._enter()
        try:
            status = _revoke_batch(handle, array, n)
            if status:
                raise _error(status)
        finally:
            self._leave()
        return n

    def sync(self) -> None:
        """Makes every committed record durable (fdatasync). Many revokes, then one sync,
        is group commit."""
        self._call(_sync)

    def compact(self, now: int) -> None:
        """Rewrites the ledger without the rules that can no longer revoke an unexpired
        token at ``now`` (Unix seconds) and swaps it in atomically; readers follow on their
        next check. Writer only."""
        self._call(_compact, _as_i64(now, "now"))

    def refresh(self) -> None:
        """Brings this handle's index up to date with the log now (checks do it on their
        own; this moves the work off a request's path)."""
        self._call(_refresh)

    def _call(self, fn: Any, *args: Any) -> None:
        handle = self._enter()
        try:
            status = fn(handle, *args)
            if status:
                raise _error(status)
        finally:
            self._leave()

    # -- reads ----------------------------------------------------------------------

    def check(
        self,
        tenant: BytesLike,
        subject: BytesLike,
        roles: Optional[Iterable[BytesLike]] = (),
        client: BytesLike = None,
        session: BytesLike = None,
        token_id: BytesLike = None,
        *,
        issued_at: int,
    ) -> Verdict:
        """Is the token revoked? ``issued_at`` is its ``iat`` (Unix seconds); ``roles``
        every entitlement string it carries (or ``None``); an absent ``client``,
        ``session`` or ``token_id`` is ``None`` (or empty). Thread-safe. An error
        (:class:`Corrupt` when the ledger became unreadable, ...) never means "valid":
        the caller decides what to do with a token it could not check."""
        t = _as_bytes(tenant, "tenant")
        s = _as_bytes(subject, "subject")
        c = _as_bytes(client, "client")
        se = _as_bytes(session, "session")
        j = _as_bytes(token_id, "token_id")
        if roles is None:
            roles = ()
        elif isinstance(roles, (str, bytes, bytearray, memoryview)):
            raise TypeError("roles must be a collection of strings, not a single string")
        role_bytes = [_as_bytes(r, "role") for r in roles]
        n = len(role_bytes)
        role_array = (_Bytes * n)(*[(r, len(r)) for r in role_bytes]) if n else None  # type: ignore[misc]
        token = _Token(
            (t, len(t)),
            (s, len(s)),
            (c, len(c)),
            (se, len(se)),
            (j, len(j)),
            role_array,
            n,
            _as_i64(issued_at, "issued_at"),
        )
        out = _Verdict()
        lock = self._lock
        with lock:  # self._enter(), inlined on the hot path
            handle = self._handle
            if handle is None:
                raise LedgerClosed(self._closed_message)
            self._busy += 1
        try:
            status = _check(handle, _byref(token), _byref(out))
            if status:
                raise _error(status)
        finally:
            with lock:  # self._leave(), inlined
                self._busy -= 1
                if self._closing and self._busy == 0:
                    self._cond.notify_all()
        if not out.revoked:
            return Verdict.VALID
        try:
            scope = _SCOPES[out.scope]
        except IndexError:
            raise Internal(Status.INTERNAL, f"check returned scope {out.scope}") from None
        return Verdict(True, scope, out.cutoff)

    def stats(self, now: Optional[int] = None) -> Stats:
        """Figures about the ledger as of ``now`` (Unix seconds; default: the current
        time), which decides ``expired_keys``."""
        when = int(time.time()) if now is None else _as_i64(now, "now")
        out = _Stats()
        handle = self._enter()
        try:
            status = _stats(handle, when, ctypes.byref(out))
            if status:
                raise _error(status)
        finally:
            self._leave()
        return Stats(
            rule_records=out.rule_records,
            live_keys=out.live_keys,
            expired_keys=out.expired_keys,
            log_bytes=out.log_bytes,
            file_bytes=out.file_bytes,
            index_bytes=out.index_bytes,
            max_token_lifetime=out.max_token_lifetime,
            leeway=out.leeway,
        )


    def check_claims(self, claims: Claims, payload: Union[bytes, str, Dict[str, Any]]) -> Verdict:
        """Is the token whose JWT payload is ``payload`` revoked? ``payload`` is the JSON
        object as ``bytes``/``str``, or a ``dict`` of verified claims (as PyJWT's
        ``jwt.decode`` returns them), read through the mapping ``claims``. A payload the
        mapping cannot read (not a JSON object, no ``iat``, a claim of the wrong type,
        over a limit) raises :class:`InvalidArgument` naming the claim: refuse the
        request (401). Thread-safe."""
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":"))
        data = _as_bytes(payload, "payload")
        return self._check_mapped(_check_claims, claims, data)

    def check_jwt(self, claims: Claims, jwt: Union[bytes, str]) -> Verdict:
        """Is the token ``jwt`` (a compact JWS ``header.payload.signature``) revoked? Its
        payload is base64url-decoded and read through the mapping ``claims``.

        **The signature is NOT verified** (nor ``exp``, ``aud``, or the header): this is
        a deny layer after authentication, never instead of it. A token that is not
        three base64url parts, or whose payload the mapping cannot read, raises
        :class:`InvalidArgument`. Thread-safe."""
        return self._check_mapped(_check_jwt, claims, _as_bytes(jwt, "jwt"))

    def _check_mapped(self, fn: Any, claims: Claims, data: bytes) -> Verdict:
        if not isinstance(claims, Claims):
            raise TypeError(f"claims must be a revledger.Claims, not {claims.__class__.__name__}")
        out = _Verdict()
        mapping = claims._enter()
        try:
            handle = self._enter()
            try:
                status = fn(handle, mapping, _Bytes(data, len(data)), _byref(out))
                if status:
                    raise _error(status)
            finally:
                self._leave()
        finally:
            claims._leave()
        return self._verdict(out)

    @staticmethod
    def _verdict(out: Any) -> Verdict:
        if not out.revoked:
            return Verdict.VALID
        try:
            scope = _SCOPES[out.scope]
        except IndexError:
            raise Internal(Status.INTERNAL, f"check returned scope {out.scope}") from None
        return Verdict(True, scope, out.cutoff)

    def freshness(self) -> Freshness:
        """When the ledger last heard from the stream that feeds it, and the last entry
        applied (see :class:`Freshness`). A ledger written only through :meth:`revoke`
        never heard from a stream: ``Freshness(None, None)``. For a check on every
        request, :meth:`last_heard` takes no lock."""
        heard = ctypes.c_int64()
        ms = ctypes.c_uint64()
        seq = ctypes.c_uint64()
        bits = ctypes.c_uint32()
        handle = self._enter()
        try:
            status = _freshness(handle, ctypes.byref(heard), ctypes.byref(ms), ctypes.byref(seq))
            if not status:
                status = _freshness_state(handle, ctypes.byref(heard), ctypes.byref(bits))
            if status:
                raise _error(status)
        finally:
            self._leave()
        return Freshness(
            last_heard=heard.value or None,
            last_id=f"{ms.value}-{seq.value}" if ms.value or seq.value else None,
            degraded=bits.value,
        )

    def degraded(self) -> int:
        """:attr:`Freshness.degraded` alone, lock-free (``revledger_freshness_state``)."""
        heard = ctypes.c_int64()
        bits = ctypes.c_uint32()
        handle = self._enter()
        try:
            status = _freshness_state(handle, ctypes.byref(heard), ctypes.byref(bits))
            if status:
                raise _error(status)
        finally:
            self._leave()
        return bits.value

    def last_heard(self) -> Optional[int]:
        """:attr:`Freshness.last_heard` alone, without the lock that reading the entry id
        takes: cheap enough for every request."""
        heard = ctypes.c_int64()
        handle = self._enter()
        try:
            status = _freshness(handle, ctypes.byref(heard), None, None)
            if status:
                raise _error(status)
        finally:
            self._leave()
        return heard.value or None


def _after_fork_in_child() -> None:
    """A forked child must not use the handles it inherited: a writer's handle would
    append at an offset the parent moves on from (two writers), and freeing it could
    block on a lock that a parent thread held at the fork. The child disowns them
    (without a C call) and opens new handles."""
    global _live_lock
    _live_lock = threading.Lock()
    parent = os.getppid()
    for ledger in list(_live):
        ledger._finalizer.detach()
        ledger._lock = threading.Lock()
        ledger._cond = threading.Condition(ledger._lock)
        ledger._busy = 0
        ledger._closing = True
        ledger._released = True
        ledger._handle = None
        ledger._closed_message = (
            f"this handle was opened in process {parent} before a fork; "
            "open a new handle in the child"
        )
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------
# Publishing to a Redis stream (docs/SYNC.md §2)
# --------------------------------------------------------------------------------------

#: Longest ``reason`` or ``origin`` :func:`publish` sends, in bytes.
MAX_NOTE_LEN = 4096
#: Default trimming of :func:`publish` (as ``revledger publish``): entries older than
#: a day plus five minutes are dropped.
DEFAULT_TRIM_LIFETIME = 86_400
DEFAULT_TRIM_LEEWAY = 300


#: Bits of :attr:`Freshness.degraded`.
DEGRADED_SKIPPED = 1  #: entries that were not valid rules were skipped
DEGRADED_REFUSED = 2  #: entries were refused for their signature
DEGRADED_TRIMMED = 4  #: the stream was trimmed past the ledger's position

_SIGN_DOMAIN = b"revledger-rule-v1\x00"


def signed_message(stream: BytesLike, scope: Union[Scope, int], tenant: BytesLike, key: BytesLike, at: int) -> bytes:
    """The bytes a publisher signs for a rule published to ``stream`` (docs/SYNC.md §5.1):
    ``"revledger-rule-v1\\0"``, then the stream, the scope number, the tenant and the key
    (each byte string after its u32 little-endian length) and ``at`` (i64 little-endian)."""
    name = _as_bytes(stream, "stream")
    t = _as_bytes(tenant, "tenant")
    k = _as_bytes(key, "key")
    return b"".join([
        _SIGN_DOMAIN,
        struct.pack("<I", len(name)), name,
        struct.pack("<B", int(scope)),
        struct.pack("<I", len(t)), t,
        struct.pack("<I", len(k)), k,
        struct.pack("<q", _as_i64(at, "at")),
    ])


def load_signing_key(path: PathLike) -> Any:
    """An Ed25519 private key from a PKCS#8 PEM file (``revledger keygen``, or ``openssl
    genpkey -algorithm ed25519``), for :func:`publish`'s ``signing_key``. Needs the
    ``cryptography`` package (``pip install 'revledger[sync]'``)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as f:
        key = load_pem_private_key(f.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise _invalid(f"signing key {path}: not an Ed25519 key")
    return key


def now_cutoff() -> int:
    """"Now" as a rule's cutoff: the current Unix time rounded up to the next second, so a
    token issued in the current second counts as issued before."""
    return int(time.time()) + 1


def _redis_module() -> Any:
    try:
        import redis
    except ImportError as e:
        raise ImportError(
            "revledger.publish needs the redis package (redis-py): "
            "pip install 'revledger[sync]' or pip install redis"
        ) from e
    return redis


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(Status.INVALID_ARGUMENT, message)


def publish(
    redis_url: Any,
    stream: BytesLike,
    scope: Union[Scope, int, str],
    tenant: BytesLike,
    key: BytesLike,
    at: int,
    reason: BytesLike = None,
    origin: BytesLike = None,
    *,
    max_token_lifetime: int = DEFAULT_TRIM_LIFETIME,
    leeway: int = DEFAULT_TRIM_LEEWAY,
    trim: bool = True,
    signing_key: Optional[Tuple[str, Any]] = None,
    wait_replicas: int = 0,
    wait_timeout_ms: int = 1000,
) -> str:
    """Publishes one rule to ``stream`` for the ``revledger sync`` processes that follow it
    and returns the id Redis gave the entry (``"<ms>-<seq>"``) once Redis holds it.

    ``redis_url`` is a URL (``redis://[[user]:password@]host[:port][/db]``, a connection
    per call) or a ``redis.Redis`` client to reuse. ``scope`` is a :class:`Scope` or its
    name; ``tenant``, ``key``, ``at`` as for :meth:`Ledger.revoke` (``at``: the cutoff,
    for :attr:`Scope.TOKEN` the token's ``exp``; :func:`now_cutoff` for "now"); ``reason``
    and ``origin`` are texts for people (sync ignores them).

    Unless ``trim`` is false, the stream is trimmed by age on the way (``XADD MINID``
    now − ``max_token_lifetime`` − ``leeway``, exact), so that a host catching up from the
    beginning reads exactly the rules that can still matter; ``max_token_lifetime`` must
    be at least that of every ledger fed from the stream. A rule the trimming would drop
    while it still matters (a cutoff more than ``leeway`` ahead, a token's ``exp`` more
    than ``max_token_lifetime + leeway`` ahead) is refused.

    ``signing_key`` is ``(kid, key)``: a name the sync processes' trusted-keys files
    know and an Ed25519 private key (``cryptography``'s, e.g. from
    :func:`load_signing_key`); the entry then carries ``kid`` and ``sig`` (docs/SYNC.md
    §5.1). ``wait_replicas`` > 0 waits (``WAIT``) until that many replicas hold the entry
    and raises ``RuntimeError`` when fewer did within ``wait_timeout_ms``: a failover
    could lose it, publish it again. For TLS, ACL users and Sentinel, pass a client:
    ``redis.Redis(host=..., port=..., ssl=True, ssl_ca_certs=ca, ssl_certfile=...,
    ssl_keyfile=..., username=..., password=...)`` or
    ``redis.sentinel.Sentinel([...]).master_for("mymaster")``.

    Raises :class:`InvalidArgument` for a rule every sync process would skip (checked
    before connecting), ``ImportError`` when the ``redis`` package is missing, and
    redis-py's exceptions (``redis.exceptions.ConnectionError``, ...) for Redis's.
    """
    if isinstance(scope, str):
        try:
            s = Scope.parse(scope)
        except ValueError as e:
            raise _invalid(str(e)) from None
    else:
        v = _as_scope(scope)
        if v >= len(_SCOPES):
            raise _invalid(f"unknown scope {v}")
        s = _SCOPES[v]
    name = _as_bytes(stream, "stream")
    t = _as_bytes(tenant, "tenant")
    k = _as_bytes(key, "key")
    when = _as_i64(at, "at")
    notes = [(b"reason", _as_bytes(reason, "reason") if reason is not None else None),
             (b"origin", _as_bytes(origin, "origin") if origin is not None else None)]
    if not 0 < len(name) <= MAX_KEY_LEN:
        raise _invalid(f"the stream name must be 1 to {MAX_KEY_LEN} bytes long")
    if len(t) > MAX_KEY_LEN:
        raise _invalid(f"tenant is {len(t)} bytes long; the limit is {MAX_KEY_LEN}")
    if len(k) > MAX_KEY_LEN:
        raise _invalid(f"{s} is {len(k)} bytes long; the limit is {MAX_KEY_LEN}")
    if s is Scope.GLOBAL and (t or k):
        raise _invalid("a global rule takes no tenant and no key")
    if s is Scope.TENANT and k:
        raise _invalid("a tenant rule takes no key besides the tenant")
    if s > Scope.TENANT and not k:
        raise _invalid(f"a {s} rule needs a non-empty {s} key")
    for field, note in notes:
        if note is not None and len(note) > MAX_NOTE_LEN:
            raise _invalid(f"{field.decode()} is longer than {MAX_NOTE_LEN} bytes")
    min_id: Optional[int] = None
    if trim:
        lifetime = _as_i64(max_token_lifetime, "max_token_lifetime")
        skew = _as_i64(leeway, "leeway")
        if lifetime <= 0 or skew < 0:
            raise _invalid("trimming by age needs max_token_lifetime > 0 and leeway >= 0")
        now_ms = time.time_ns() // 1_000_000
        now = now_ms // 1000
        if s is Scope.TOKEN:
            limit, what = now + lifetime + skew, "a token rule's exp more than max token lifetime + leeway ahead"
        else:
            limit, what = now + skew, "a cutoff more than leeway ahead"
        if when > limit:
            raise _invalid(
                f"{what} ({when} > {limit}) would be trimmed from the stream (entries are "
                f"kept max token lifetime + leeway = {lifetime + skew} s) while it still matters"
            )
        min_id = max(0, now_ms - (lifetime + skew) * 1000)

    fields: Dict[bytes, bytes] = {
        b"scope": s.label.encode("ascii"),
        b"tenant": t,
        b"key": k,
        b"at": str(when).encode("ascii"),
    }
    for field, note in notes:
        if note is not None:
            fields[field] = note
    if signing_key is not None:
        kid, private = signing_key
        if not (isinstance(kid, str) and 0 < len(kid) <= 64
                and all(c.isascii() and (c.isalnum() or c in "._-@") for c in kid)):
            raise _invalid(f"signing key name {kid!r}: 1 to 64 of A-Z a-z 0-9 . _ - @")
        sig = private.sign(signed_message(name, s, t, k, when))
        fields[b"kid"] = kid.encode("ascii")
        fields[b"sig"] = base64.b64encode(sig)

    def send(client: Any) -> Any:
        reply = client.xadd(name, fields, minid=min_id, approximate=False)
        if wait_replicas > 0:
            acked = client.execute_command("WAIT", wait_replicas, max(1, wait_timeout_ms))
            if int(acked) < wait_replicas:
                raise RuntimeError(
                    f"entry {reply!r} reached {acked} replica(s) of the {wait_replicas} asked "
                    "for in time: a failover could lose it; publish it again"
                )
        return reply

    if isinstance(redis_url, str):
        redis = _redis_module()
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            reply = send(client)
        finally:
            client.close()
    else:
        reply = send(redis_url)
    return reply.decode("ascii") if isinstance(reply, bytes) else str(reply)
