"""revledger.asgi.RevocationMiddleware in a Starlette app, through Starlette's TestClient,
with tokens signed by PyJWT."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from revledger import Claims, InvalidArgument, Ledger, Scope
from revledger.asgi import RevocationMiddleware, bearer_token

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
REALM = "https://sso.example.com/realms/acme"


def keycloak_token(iat: int, key=KEY, **extra) -> str:
    claims = {
        "iss": REALM,
        "sub": "john",
        "azp": "web-app",
        "iat": iat,
        "exp": iat + 3600,
        "realm_access": {"roles": ["billing-admin"]},
        "resource_access": {"billing-api": {"roles": ["refund"]}},
        "scope": "openid email",
    }
    claims.update(extra)
    return jwt.encode(claims, key, algorithm="RS256")


async def orders(request):
    return PlainTextResponse("orders")


async def socket(ws: WebSocket):
    await ws.accept()
    await ws.send_text("hello")
    await ws.close()


def app(ledger: Ledger, **options) -> TestClient:
    a = Starlette(
        routes=[Route("/orders", orders), WebSocketRoute("/ws", socket)],
        middleware=[Middleware(RevocationMiddleware, ledger=ledger, claims=Claims("keycloak"), **options)],
    )
    return TestClient(a)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def ledgers(tmp_path: Path):
    with Ledger.open_writer(tmp_path / "l", max_token_lifetime=7200) as w, Ledger.open_reader(tmp_path / "l") as r:
        yield w, r


def test_valid_tokens_pass_and_revoked_ones_get_401(ledgers):
    w, r = ledgers
    client = app(r)
    iat = int(time.time()) - 10
    token = keycloak_token(iat)
    resp = client.get("/orders", headers=bearer(token))
    assert (resp.status_code, resp.text) == (200, "orders")
    # The client role billing-api/refund changed: the key form of the keycloak mapping.
    w.revoke(Scope.ROLE, REALM, "billing-api:refund", iat + 1)
    resp = client.get("/orders", headers=bearer(token))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="token revoked: role permissions changed at {iat + 1}"'
    )
    assert resp.headers["cache-control"] == "no-store"
    # A token issued after the change passes: the client's refresh works.
    assert client.get("/orders", headers=bearer(keycloak_token(iat + 1))).status_code == 200


def test_requests_without_a_token_pass(ledgers):
    w, r = ledgers
    w.revoke(Scope.GLOBAL, b"", b"", int(time.time()) + 1)
    client = app(r)
    assert client.get("/orders").status_code == 200
    assert client.get("/orders", headers={"Authorization": "Basic am9objpwdw=="}).status_code == 200


def test_unreadable_tokens_get_401_invalid_token(ledgers):
    _, r = ledgers
    client = app(r)
    now = int(time.time())
    no_iat = jwt.encode({"iss": REALM, "sub": "john"}, KEY, algorithm="RS256")
    wrong_type = jwt.encode({"iss": REALM, "iat": now, "realm_access": {"roles": 5}}, KEY, algorithm="RS256")
    for token in ["not-a-jwt", "a.b!.c", no_iat, wrong_type]:
        resp = client.get("/orders", headers=bearer(token))
        assert resp.status_code == 401, token
        assert resp.headers["www-authenticate"] == (
            'Bearer error="invalid_token", error_description="the access token could not be read"'
        )


def test_the_ledger_cannot_answer_503_or_fail_open(tmp_path: Path):
    w = Ledger.open_writer(tmp_path / "l", max_token_lifetime=3600)
    r = Ledger.open_reader(tmp_path / "l")
    closed_client = app(r)
    open_client = app(r, fail_open=True)
    token = keycloak_token(int(time.time()) - 10)
    r.close()
    resp = closed_client.get("/orders", headers=bearer(token))
    assert resp.status_code == 503
    assert open_client.get("/orders", headers=bearer(token)).status_code == 200
    # past the middleware's once-a-second look at the path: a handle the application
    # closed is not opened again behind its back
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        assert closed_client.get("/orders", headers=bearer(token)).status_code == 503
        time.sleep(0.02)
    w.close()


def test_a_ledger_deleted_before_the_first_request_is_noticed_at_once(tmp_path: Path):
    path = tmp_path / "l"
    Ledger.open_writer(path, max_token_lifetime=7200).close()
    with Ledger.open_reader(path) as r:
        client = app(r)  # Starlette builds the middleware at the first request
        path.unlink()
        token = keycloak_token(int(time.time()) - 10)
        assert client.get("/orders", headers=bearer(token)).status_code == 503


def test_a_ledger_replaced_or_deleted_is_noticed_within_a_second(tmp_path: Path):
    path = tmp_path / "l"
    Ledger.open_writer(path, max_token_lifetime=7200).close()
    with Ledger.open_reader(path) as r:
        client = app(r)
        iat = int(time.time()) - 10
        token = keycloak_token(iat)
        assert client.get("/orders", headers=bearer(token)).status_code == 200

        def until(status: int, *allowed: int) -> None:
            # at most 150 requests over 3 s: far fewer than the library's own look at
            # the path (one check in 4093)
            for _ in range(150):
                got = client.get("/orders", headers=bearer(token)).status_code
                if got == status:
                    return
                assert got in allowed, got
                time.sleep(0.02)
            raise AssertionError(f"150 requests over 3 s and still not {status}")

        # another ledger, john revoked in it, renamed over the path: read afresh
        with Ledger.open_writer(tmp_path / "other", max_token_lifetime=7200) as w:
            w.revoke(Scope.SUBJECT, REALM, "john", iat + 1)
        (tmp_path / "other").rename(path)
        # the old handle may learn of it first (the kernel's notice) and fail closed (503)
        # until the middleware's next look at the path opens the new file
        until(401, 200, 503)
        # deleted: 503 (fail closed); then a ledger at the path again
        path.unlink()
        until(503, 401)
        Ledger.open_writer(path, max_token_lifetime=7200).close()
        until(200, 503)


def test_verify_authenticates_with_pyjwt_then_checks_the_claims(ledgers):
    w, r = ledgers
    public = KEY.public_key()
    client = app(r, verify=lambda t: jwt.decode(t, public, algorithms=["RS256"]), realm="orders")
    iat = int(time.time()) - 10
    assert client.get("/orders", headers=bearer(keycloak_token(iat))).status_code == 200
    forged = keycloak_token(iat, key=OTHER_KEY)
    resp = client.get("/orders", headers=bearer(forged))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == (
        'Bearer realm="orders", error="invalid_token", error_description="the access token could not be verified"'
    )
    expired = jwt.encode({"iss": REALM, "sub": "john", "iat": iat - 7200, "exp": iat - 3600}, KEY, algorithm="RS256")
    assert client.get("/orders", headers=bearer(expired)).status_code == 401
    w.revoke(Scope.SUBJECT, REALM, "john", iat + 1)
    resp = client.get("/orders", headers=bearer(keycloak_token(iat)))
    assert resp.status_code == 401
    assert "subject permissions changed" in resp.headers["www-authenticate"]


def test_claims_verify_returns_that_json_cannot_hold_are_unreadable(ledgers):
    _, r = ledgers
    iat = int(time.time()) - 10
    with pytest.raises(InvalidArgument, match="not JSON"):
        r.check_claims(Claims("keycloak"), {"iss": REALM, "sub": "john", "iat": iat, "at": datetime.now()})
    client = app(r, verify=lambda t: {"iss": REALM, "sub": "john", "iat": iat, "at": datetime.now()})
    resp = client.get("/orders", headers=bearer(keycloak_token(iat)))
    assert resp.status_code == 401
    assert 'error_description="the access token could not be read"' in resp.headers["www-authenticate"]


def test_a_token_from_a_cookie(ledgers):
    w, r = ledgers

    def from_cookie(scope):
        for name, value in scope.get("headers") or ():
            if name == b"cookie" and value.startswith(b"at="):
                return value[3:].decode()
        return None

    client = app(r, token=from_cookie)
    iat = int(time.time()) - 10
    w.revoke(Scope.ROLE, REALM, "billing-admin", iat + 1)
    assert client.get("/orders", headers={"Cookie": f"at={keycloak_token(iat)}"}).status_code == 401
    assert client.get("/orders", headers=bearer(keycloak_token(iat))).status_code == 200


def test_websocket_handshakes_are_refused_for_revoked_tokens(ledgers):
    w, r = ledgers
    client = app(r)
    iat = int(time.time()) - 10
    with client.websocket_connect("/ws", headers=bearer(keycloak_token(iat))) as ws:
        assert ws.receive_text() == "hello"
    w.revoke(Scope.SUBJECT, REALM, "john", iat + 1)
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws", headers=bearer(keycloak_token(iat))) as ws:
            ws.receive_text()


def test_bearer_token_reads_the_authorization_header():
    assert bearer_token({"headers": [(b"authorization", b"Bearer abc")]}) == "abc"
    assert bearer_token({"headers": [(b"Authorization", b"bearer  abc ")]}) == "abc"
    assert bearer_token({"headers": [(b"authorization", b"Basic abc")]}) is None
    assert bearer_token({"headers": [(b"authorization", b"Bearer ")]}) is None
    assert bearer_token({"headers": []}) is None
