"""An ASGI middleware that refuses revoked tokens, for Starlette, FastAPI and any ASGI app.

.. code-block:: python

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from revledger import Claims, Ledger
    from revledger.asgi import RevocationMiddleware

    ledger = Ledger.open_reader("/var/lib/revledger/acme.ledger")
    app = Starlette(routes=..., middleware=[
        Middleware(RevocationMiddleware, ledger=ledger, claims=Claims("keycloak")),
    ])

For each HTTP request (and WebSocket handshake) with a bearer token:

- the token is revoked: ``401`` with ``WWW-Authenticate: Bearer error="invalid_token",
  error_description="token revoked: role permissions changed at 1700000000"``, so the
  client refreshes its token;
- the token cannot be read (not a JWT, no ``iat``, a claim of the wrong type; or
  ``verify`` raised): ``401`` ``error="invalid_token"``;
- the ledger cannot answer (closed, unreadable, corrupt): ``503`` (fail closed), or the
  request goes on with ``fail_open=True``;
- no token: the request goes on (authentication is another layer's job).

Without ``verify``, the middleware reads the token's payload with
:meth:`Ledger.check_jwt`, which does **not** verify the signature: it is a deny layer,
and the application must still authenticate the token (a FastAPI dependency, an
authentication middleware, a gateway in front). A forged token gains nothing from it:
it is refused by this layer if it claims something revoked, and by authentication
otherwise. With ``verify`` (e.g. PyJWT's ``jwt.decode`` with your key), the middleware
authenticates too: a token ``verify`` rejects gets ``401``, and the claims it returns are
checked with :meth:`Ledger.check_claims`.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, Dict, List, Mapping, MutableMapping, Optional, Tuple, Union

from . import Claims, InvalidArgument, Ledger, RevledgerError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["RevocationMiddleware", "bearer_token"]


def bearer_token(scope: Scope) -> Optional[str]:
    """The bearer token of the ``Authorization`` header (RFC 6750 §2.1), or ``None``.
    A header of another scheme (``Basic``) is not a bearer token: ``None``."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


def _quote(text: str) -> str:
    """Safe inside a quoted-string: printable ASCII, backslash before '"' and '\\'."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif " " <= c <= "~":
            out.append(c)
    return "".join(out)


class RevocationMiddleware:
    """Refuses requests whose bearer token is revoked in ``ledger`` (see the module docs).

    :param app: the ASGI application to protect.
    :param ledger: an open :class:`~revledger.Ledger` (a reader, usually), shared by
        every request; the middleware does not close it. Once a second the middleware
        makes sure that its file is still the ledger at its path: when it was replaced
        (or deleted, then created again), a reader is opened afresh from the path; while
        the path holds no ledger, requests with a token get ``503``. A ledger the
        application closed stays closed: ``503`` (it is not opened again).
    :param claims: the claim mapping: a :class:`~revledger.Claims` or a spec for one
        (``"generic"``, ``"auth0"``, ``"keycloak"``, ``"entra"``, a pointer spec).
    :param token: where the token is: a callable taking the ASGI scope and returning the
        token or ``None`` (default: :func:`bearer_token`, the ``Authorization`` header).
    :param verify: optional; verifies the token and returns its claims as a ``dict``
        (e.g. ``lambda t: jwt.decode(t, key, algorithms=["RS256"], audience="api")``).
        Any exception it raises is a ``401``.
    :param fail_open: when the ledger cannot answer, let the request through instead of
        answering ``503``. Failing closed is the default.
    :param realm: adds ``realm="..."`` to the challenges.
    """

    def __init__(
        self,
        app: ASGIApp,
        ledger: Ledger,
        claims: Union[Claims, str, Dict[str, Any]] = "generic",
        token: Callable[[Scope], Optional[str]] = bearer_token,
        verify: Optional[Callable[[str], Mapping[str, Any]]] = None,
        fail_open: bool = False,
        realm: Optional[str] = None,
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.claims = claims if isinstance(claims, Claims) else Claims(claims)
        self.token = token
        self.verify = verify
        self.fail_open = fail_open
        self.realm = realm
        # The first request makes sure too: the middleware may be built long after the
        # ledger was opened (Starlette builds it at the first request).
        self._verified: Optional[int] = None

    def _verify(self) -> None:
        """Once a second: is the ledger's file still the ledger at its path? (The library
        looks when the kernel notices a change there, and on one check in thousands where
        no notice comes.) A reader whose file was deleted or replaced is opened afresh;
        while that fails, the lost handle fails every check (closed) and the next second
        tries again."""
        second = int(time.monotonic())
        if second == self._verified:
            return
        self._verified = second
        try:
            self.ledger.refresh()
        except (RevledgerError, ValueError):
            if self.ledger.is_writer or self.ledger.closed:
                # A handle the application closed stays closed: 503 until it gives
                # the middleware another.
                return
            try:
                self.ledger = Ledger.open_reader(self.ledger.path)
            except RevledgerError:
                pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = self.token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        self._verify()
        try:
            if self.verify is not None:
                try:
                    payload = dict(self.verify(token))
                except Exception:  # noqa: BLE001 - any verification failure is a 401
                    await self._refuse(scope, send, 401, "the access token could not be verified")
                    return
                verdict = self.ledger.check_claims(self.claims, payload)
            else:
                verdict = self.ledger.check_jwt(self.claims, token)
        except InvalidArgument:
            await self._refuse(scope, send, 401, "the access token could not be read")
            return
        except (RevledgerError, ValueError):
            # The ledger cannot answer (closed, unreadable, corrupt): never "valid".
            if self.fail_open:
                await self.app(scope, receive, send)
            else:
                await self._refuse(scope, send, 503, None)
            return
        if verdict.revoked:
            await self._refuse(scope, send, 401, verdict.description)
            return
        await self.app(scope, receive, send)

    def _challenge(self, description: str) -> str:
        params = []
        if self.realm:
            params.append(f'realm="{_quote(self.realm)}"')
        params.append('error="invalid_token"')
        params.append(f'error_description="{_quote(description)}"')
        return "Bearer " + ", ".join(params)

    async def _refuse(self, scope: Scope, send: Send, status: int, description: Optional[str]) -> None:
        if status == 401:
            body = b"Unauthorized"
            headers: List[Tuple[bytes, bytes]] = [
                (b"www-authenticate", self._challenge(description or "").encode("latin-1")),
            ]
        else:
            body = b"token revocation status unavailable"
            headers = []
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if scope["type"] == "websocket":
            # Refuse the handshake: an HTTP response where the server supports it
            # (ASGI "websocket.http.response"), else a close before accepting (403).
            if "websocket.http.response" in (scope.get("extensions") or {}):
                await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
