"""Type stubs of the compiled module ``revledger._revledger`` (src/ in Rust, PyO3).
The tests compare them with the module's own signatures."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple, Union

from ._types import BytesLike, Freshness, Rule, Scope, Stats, Verdict

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

#: Longest tenant, subject, role, client id, session id or token id, in bytes.
MAX_KEY_LEN: int
#: Most roles one token given to :meth:`Ledger.check` may carry.
MAX_ROLES: int

def version() -> str:
    """The version of the revledger library compiled into this module."""

class Ledger:
    """An open ledger: a writer (one per ledger, can revoke) or a reader. Made by
    :meth:`open_writer` and :meth:`open_reader`; thread-safe; a ``with`` block closes it."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Ledger: ...
    @staticmethod
    def open_writer(
        path: PathLike,
        max_token_lifetime: Optional[int] = None,
        *,
        file_mode: int = 0o600,
        file_group: Optional[int] = None,
        compaction: bool = True,
    ) -> Ledger:
        """The one writer (exclusive lock); creates the file if missing.
        ``max_token_lifetime`` (default 3600 s): 0 keeps the ledger's, larger raises it,
        smaller is ``InvalidArgument``. ``file_mode``/``file_group``: of the files it
        creates, kept by compactions. ``compaction``: in the background (default)."""
    def wait_background(self) -> None:
        """Writer: waits for the background compaction or index growth, if one runs."""
    @staticmethod
    def open_reader(path: PathLike) -> Ledger:
        """A reader, any number, any process."""
    def check(
        self,
        tenant: BytesLike,
        subject: BytesLike,
        roles: Optional[Iterable[BytesLike]] = None,
        client: BytesLike = None,
        session: BytesLike = None,
        token_id: BytesLike = None,
        *,
        issued_at: int,
    ) -> Verdict:
        """Is the token revoked? Thread-safe; an error never means "valid"."""
    def check_claims(self, claims: Claims, payload: Union[bytes, str, Dict[str, Any]]) -> Verdict:
        """Is the token whose JWT payload (JSON text or a dict of verified claims) is
        ``payload`` revoked, read through ``claims``? Unreadable: ``InvalidArgument``."""
    def check_jwt(self, claims: Claims, jwt: Union[bytes, str]) -> Verdict:
        """Is the compact JWS ``jwt`` revoked? **The signature is NOT verified**: a deny
        layer after authentication, never instead of it."""
    def revoke(self, scope: Union[Scope, int], tenant: BytesLike, key: BytesLike, at: int) -> None:
        """Records "``scope`` changed at ``at``"; returns once committed."""
    def revoke_now(self, scope: Union[Scope, int], tenant: BytesLike = None, key: BytesLike = None) -> int:
        """Revokes as of now (rounded up to the next second); returns the cutoff."""
    def revoke_batch(self, rules: Iterable[Union[Rule, Tuple[Any, Any, Any, int]]]) -> int:
        """Records every rule in one write, all or none; returns how many."""
    def sync(self) -> None:
        """Makes every committed record durable (fdatasync)."""
    def compact(self, now: int) -> None:
        """Drops the rules that can no longer revoke an unexpired token at ``now``."""
    def refresh(self) -> None:
        """Brings this handle's index up to date with the log now, and makes sure that
        the file is still the ledger at its path (a reader otherwise does that when the
        kernel notices a change there, inotify, and on one check in thousands): a file
        deleted, or replaced by another ledger (a compaction is followed), raises, as
        every later call on this handle does: open the ledger again. The ASGI middleware
        does this once a second."""
    def stats(self, now: Optional[int] = None) -> Stats:
        """Figures about the ledger as of ``now`` (default: the current time)."""
    def freshness(self) -> Freshness:
        """When the ledger last heard from its stream, and the last entry applied."""
    def degraded(self) -> int:
        """:attr:`Freshness.degraded` alone, lock-free (0: the ledger holds every rule)."""
    def last_heard(self) -> Optional[int]:
        """:attr:`Freshness.last_heard` alone, without a lock."""
    def close(self) -> None:
        """Waits for calls in progress, then closes (a writer syncs and unlocks). Idempotent."""
    @property
    def path(self) -> str:
        """The path the ledger was opened at."""
    @property
    def is_writer(self) -> bool:
        """Whether this handle is the writer."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the handle was inherited across a fork)."""
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...

class Claims:
    """A compiled claim mapping (DESIGN.md §7): a built-in name (``BUILTIN``) or a JSON
    pointer spec (text or dict). Immutable, thread-safe; a ``with`` block closes it."""

    BUILTIN: ClassVar[Tuple[str, str, str, str]]
    def __init__(self, spec: Union[str, Dict[str, Any], None] = None) -> None: ...
    @property
    def spec(self) -> str:
        """The spec the mapping was compiled from."""
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
    def close(self) -> None:
        """Frees the mapping once the checks in progress are done. Idempotent."""
    def __enter__(self) -> Claims: ...
    def __exit__(self, *exc: object) -> None: ...
