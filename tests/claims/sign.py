#!/usr/bin/env python3
"""Signs the provider-shaped payloads of tests/claims/providers.json with PyJWT (RS256,
a fresh RSA key from `cryptography`), verifies each token with the public key, and
prints them for the Rust and C tests, so that no code of this repository wrote both
the token and its reader.

    python3 tests/claims/sign.py --format json    # a JSON array, for tests/claims.rs
    python3 tests/claims/sign.py --format lines   # a line format, for tests/c

Each token gets iat = now - 10 and exp = now + 3600. The line format, one item a line,
byte strings in hex ("-" for the empty string):

    token <name> <spec-hex> <iat> <exp> <jwt>
    revoked_by <scope> <tenant-hex> <key-hex>
    not_revoked_by <scope> <tenant-hex> <key-hex>
"""

import argparse
import json
import pathlib
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = pathlib.Path(__file__).resolve().parent


def signed_tokens(now=None):
    """The cases of providers.json, each with `jwt`, `iat` and `exp` added."""
    now = int(time.time()) if now is None else now
    cases = json.loads((HERE / "providers.json").read_text())["tokens"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for case in cases:
        claims = dict(case["claims"], iat=now - 10, exp=now + 3600)
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-1"})
        # The token is a real one: PyJWT verifies it with the public key.
        decoded = jwt.decode(
            token, key.public_key(), algorithms=["RS256"], options={"verify_aud": False}
        )
        assert decoded == claims, case["name"]
        case.update(jwt=token, iat=claims["iat"], exp=claims["exp"])
    return cases


def hexed(s):
    return s.encode().hex() if s else "-"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--format", choices=["json", "lines"], default="json")
    args = p.parse_args()
    cases = signed_tokens()
    if args.format == "json":
        json.dump(cases, sys.stdout)
        return
    for c in cases:
        print(f"token {c['name']} {hexed(c['spec'])} {c['iat']} {c['exp']} {c['jwt']}")
        for kind in ("revoked_by", "not_revoked_by"):
            for r in c[kind]:
                print(f"{kind} {r['scope']} {hexed(r['tenant'])} {hexed(r['key'])}")


if __name__ == "__main__":
    main()
