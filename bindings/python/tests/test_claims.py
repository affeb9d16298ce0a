"""Claim mappings: revledger.Claims, Ledger.check_claims and Ledger.check_jwt, with
provider-shaped tokens (tests/claims/providers.json) signed here by PyJWT."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from revledger import Claims, InvalidArgument, Ledger, LedgerClosed, Scope, Verdict

from support import REPO_ROOT

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def provider_cases():
    return json.loads((REPO_ROOT / "tests" / "claims" / "providers.json").read_text())["tokens"]


def signed(claims: dict) -> str:
    token = jwt.encode(claims, KEY, algorithm="RS256")
    # A real token: PyJWT verifies it with the public key.
    jwt.decode(token, KEY.public_key(), algorithms=["RS256"], options={"verify_aud": False})
    return token


def unsigned(payload: str) -> str:
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return f"{enc(b'{}')}.{enc(payload.encode())}.c2ln"


def pair(tmp_path: Path, name: str):
    w = Ledger.open_writer(tmp_path / name, max_token_lifetime=7200)
    return w, Ledger.open_reader(tmp_path / name)


def test_builtin_and_pointer_specs_compile_and_close_idempotently():
    for spec in [*Claims.BUILTIN, '{"subject":["/sub"]}', {"roles": ["/realm_access/roles"]}]:
        with Claims(spec) as c:
            assert not c.closed
        assert c.closed
        c.close()
    assert Claims().spec == "generic"


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("okta", 'unknown claim mapping "okta"'),
        ('{"subject":["sub"]}', "must start with '/'"),
        ({"roles": ["/a/*/b/*"]}, "more than one '*'"),
        ("generic\0", "NUL byte"),
    ],
)
def test_bad_specs_are_invalid_argument(spec, needle):
    with pytest.raises(InvalidArgument) as e:
        Claims(spec)
    assert needle in str(e.value)


@pytest.mark.parametrize("case", provider_cases(), ids=lambda c: c["name"])
def test_provider_tokens_signed_by_pyjwt(tmp_path: Path, case):
    iat = int(time.time()) - 10
    exp = iat + 3600
    token = signed(dict(case["claims"], iat=iat, exp=exp))
    payload = jwt.decode(token, KEY.public_key(), algorithms=["RS256"], options={"verify_aud": False})
    with Claims(case["spec"]) as mapping:
        for i, r in enumerate(case["revoked_by"]):
            w, reader = pair(tmp_path, f"l{i}")
            with w, reader:
                assert reader.check_jwt(mapping, token) == Verdict.VALID
                scope = Scope.parse(r["scope"])
                at = exp if scope is Scope.TOKEN else iat + 1
                w.revoke(scope, r["tenant"], r["key"], at)
                want = Verdict(True, scope, at)
                assert reader.check_jwt(mapping, token) == want, r
                assert reader.check_jwt(mapping, token.encode()) == want, r
                assert reader.check_claims(mapping, payload) == want, r
        w, reader = pair(tmp_path, "misses")
        with w, reader:
            for r in case["not_revoked_by"]:
                scope = Scope.parse(r["scope"])
                w.revoke(scope, r["tenant"], r["key"], exp if scope is Scope.TOKEN else iat + 1)
            assert reader.check_jwt(mapping, token) == Verdict.VALID


def test_unreadable_tokens_name_the_claim(reader):
    with Claims("generic") as c:
        for token, needle in [
            (unsigned('{"sub":"x"}'), 'no "iat"'),
            (unsigned('{"iat":1,"sub":7}'), 'claim "sub" must be a string'),
            (unsigned("[1]"), "must be a JSON object"),
            ("a.b!.c", "not base64url"),
            ("a.b", "not a compact JWS"),
            ("", "empty"),
        ]:
            with pytest.raises(InvalidArgument) as e:
                reader.check_jwt(c, token)
            assert needle in str(e.value), token
        with pytest.raises(InvalidArgument, match="roles/0"):
            reader.check_claims(c, {"iat": 1, "roles": [5]})
        with pytest.raises(InvalidArgument, match="not valid JSON"):
            reader.check_claims(c, "{")
        with pytest.raises(TypeError):
            reader.check_jwt("generic", unsigned('{"iat":1}'))  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            reader.check_jwt(c, 42)  # type: ignore[arg-type]


def test_check_claims_takes_bytes_str_and_dict(writer, reader):
    now = int(time.time())
    writer.revoke(Scope.SUBJECT, "acme", "john", now)
    claims = {"tid": "acme", "sub": "john", "iat": now - 5}
    with Claims() as c:
        want = Verdict(True, Scope.SUBJECT, now)
        assert reader.check_claims(c, claims) == want
        assert reader.check_claims(c, json.dumps(claims)) == want
        assert reader.check_claims(c, json.dumps(claims).encode()) == want
        assert reader.check_claims(c, dict(claims, iat=now)) == Verdict.VALID


def test_closed_mapping_and_closed_ledger(tmp_path: Path):
    w, r = pair(tmp_path, "l")
    token = unsigned('{"sub":"x","iat":1}')
    c = Claims()
    assert r.check_jwt(c, token) == Verdict.VALID
    c.close()
    with pytest.raises(LedgerClosed):
        r.check_jwt(c, token)
    with Claims() as c2:
        r.close()
        with pytest.raises(LedgerClosed):
            r.check_jwt(c2, token)
    w.close()


def test_one_mapping_serves_threads_while_it_is_closed(reader):
    c = Claims("entra")
    token = unsigned(json.dumps({"tid": "t", "oid": "o", "roles": ["a", "b"], "iat": int(time.time())}))
    answered = []
    errors = []

    def run():
        try:
            for _ in range(20000):
                reader.check_jwt(c, token)
                answered.append(1)
        except LedgerClosed:
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not answered and time.monotonic() < deadline:
        time.sleep(0.001)
    c.close()
    for t in threads:
        t.join()
    assert answered and not errors
    with pytest.raises(LedgerClosed):
        reader.check_jwt(c, token)

