"""The values and errors of the Python API, in Python: the extension module
(``revledger._revledger``) returns and raises these classes. Import them from
``revledger``."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Optional, Union

BytesLike = Union[bytes, bytearray, memoryview, str, None]

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


def status_name(status: int) -> str:
    """The C name of a status code (``revledger_status_name``), e.g. ``REVLEDGER_LOCKED``;
    ``"unknown status"`` for a code that is none."""
    try:
        return f"REVLEDGER_{Status(status).name}"
    except ValueError:
        return "unknown status"


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


#: Bits of :attr:`Freshness.degraded`.
DEGRADED_SKIPPED = 1  #: entries that were not valid rules were skipped
DEGRADED_REFUSED = 2  #: entries were refused for their signature
DEGRADED_TRIMMED = 4  #: the stream was trimmed past the ledger's position


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

