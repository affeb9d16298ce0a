"""Publishing rules to the Redis stream that ``revledger sync`` follows (docs/SYNC.md §2).
Pure Python over redis-py (the optional ``sync`` dependency)."""

from __future__ import annotations

import base64
import operator
import os
import struct
import time
from typing import Any, Dict, Optional, Tuple, Union

from ._types import BytesLike, InvalidArgument, Scope, Status, _SCOPES
from ._revledger import MAX_KEY_LEN


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



#: Longest ``reason`` or ``origin`` :func:`publish` sends, in bytes.
MAX_NOTE_LEN = 4096
#: Default trimming of :func:`publish` (as ``revledger publish``): entries older than
#: a day plus five minutes are dropped.
DEFAULT_TRIM_LIFETIME = 86_400
DEFAULT_TRIM_LEEWAY = 300


PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

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
