"""revledger: instant JWT revocation, from Python.

A compiled extension (PyO3) over the revledger Rust crate, built into the wheel by
maturin: ``pip install`` it and import it, from any directory, with nothing else to
build or find. The permission system records "scope S changed at time T"; every process
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
the status code of the C ABI and its message.

On a fleet, one ``revledger sync`` process per host feeds the host's ledger from a Redis
stream (docs/SYNC.md). :func:`publish` puts a rule on that stream (it needs the optional
``redis`` package: ``pip install 'revledger[sync]'``), and :meth:`Ledger.freshness` tells
when the ledger last heard from it, so that a gateway can refuse to answer from a stale
ledger.

Gateways hold a verified JWT: :class:`Claims` (a claim mapping, DESIGN.md §7) with
:meth:`Ledger.check_jwt` / :meth:`Ledger.check_claims` checks it directly, and
:mod:`revledger.asgi` is a middleware for Starlette/FastAPI.

Layout: ``_revledger`` (compiled: :class:`Ledger`, :class:`Claims`), ``_types`` (values
and errors), ``_publish`` (the Redis stream), ``asgi`` (the middleware). This module
re-exports the public names.
"""

from __future__ import annotations

from . import _revledger
from ._publish import (
    DEFAULT_TRIM_LEEWAY,
    DEFAULT_TRIM_LIFETIME,
    MAX_NOTE_LEN,
    load_signing_key,
    now_cutoff,
    publish,
    signed_message,
)
from ._revledger import MAX_KEY_LEN, MAX_ROLES, Claims, Ledger
from ._types import (  # _ERRORS: status -> exception class (the tests use it)
    _ERRORS,
    DEGRADED_REFUSED,
    DEGRADED_SKIPPED,
    DEGRADED_TRIMMED,
    Corrupt,
    Freshness,
    Incompatible,
    Internal,
    InvalidArgument,
    LedgerClosed,
    LedgerIOError,
    Locked,
    ReadOnly,
    RevledgerError,
    Rule,
    Scope,
    Stats,
    Status,
    Verdict,
    status_name,
)

__all__ = [
    "Claims",
    "Corrupt",
    "DEGRADED_REFUSED",
    "DEGRADED_SKIPPED",
    "DEGRADED_TRIMMED",
    "DEFAULT_TRIM_LEEWAY",
    "DEFAULT_TRIM_LIFETIME",
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
    "MAX_NOTE_LEN",
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
    "load_signing_key",
    "now_cutoff",
    "publish",
    "signed_message",
    "status_name",
]

#: The file of the compiled module in use (the revledger library is linked into it).
LIBRARY_PATH: str = str(_revledger.__file__)


def library_version() -> str:
    """The version of the revledger library compiled into the extension."""
    return str(_revledger.version())


#: The package is versioned with the library it binds (one version: Cargo.toml).
__version__ = library_version()
