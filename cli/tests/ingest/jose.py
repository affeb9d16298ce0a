#!/usr/bin/env python3
"""The identity provider's side of cli/tests/ingest.rs, written with other people's code:
keys and Security Event Tokens from jwcrypto (a JOSE library in Python), HMAC from
Python's standard library, certificates from `cryptography`.

  jose.py keys DIR               ES256 keys es-1, es-2 and an RS256 key rs-1: DIR/private.json
                                 (every key), DIR/jwks.json (public es-1, rs-1),
                                 DIR/jwks-rotated.json (public es-2, rs-1), and DIR/es-1.pem,
                                 DIR/rs-1.pem (private, PKCS#8)
  jose.py sign PRIVATE.json      stdin: one JSON object per line {"kid", "alg", "claims",
                                 "typ"?, "header_kid"?}; stdout: one compact JWS per line
  jose.py hmac SECRET ALGORITHM  stdin: the body; stdout: the hex HMAC (HmacSHA256/HmacSHA1)
  jose.py cert DIR               a self-signed certificate for 127.0.0.1 and localhost:
                                 DIR/cert.pem, DIR/key.pem
"""
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import sys

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode


def keys(out):
    private = jwk.JWKSet()
    for kid, kw in (("es-1", {"kty": "EC", "crv": "P-256"}),
                    ("es-2", {"kty": "EC", "crv": "P-256"}),
                    ("rs-1", {"kty": "RSA", "size": 2048})):
        private.add(jwk.JWK.generate(kid=kid, use="sig", **kw))
    with open(os.path.join(out, "private.json"), "w") as f:
        f.write(private.export(private_keys=True))
    for kid in ("es-1", "rs-1"):  # PKCS#8 PEM, for signers in other languages (the benchmark)
        with open(os.path.join(out, kid + ".pem"), "wb") as f:
            f.write(private.get_key(kid).export_to_pem(private_key=True, password=None))

    def public(kids):
        return json.dumps({"keys": [json.loads(private.get_key(k).export_public()) for k in kids]})

    with open(os.path.join(out, "jwks.json"), "w") as f:
        f.write(public(["es-1", "rs-1"]))
    with open(os.path.join(out, "jwks-rotated.json"), "w") as f:
        f.write(public(["es-2", "rs-1"]))


def sign(private_path):
    with open(private_path) as f:
        private = jwk.JWKSet.from_json(f.read())
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        header = {"alg": req["alg"], "kid": req.get("header_kid", req["kid"]),
                  "typ": req.get("typ", "secevent+jwt")}
        if header["typ"] is None:
            del header["typ"]
        token = jws.JWS(json.dumps(req["claims"]).encode())
        token.add_signature(private.get_key(req["kid"]), alg=req["alg"], protected=json_encode(header))
        print(token.serialize(compact=True), flush=True)


def mac(secret, algorithm):
    digest = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}[algorithm]
    print(hmac.new(secret.encode(), sys.stdin.buffer.read(), digest).hexdigest())


def cert(out):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revledger ingest test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder()
         .subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.SubjectAlternativeName([
             x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
             critical=False)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .sign(key, hashes.SHA256()))
    with open(os.path.join(out, "cert.pem"), "wb") as f:
        f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(out, "key.pem"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"keys": keys, "sign": sign, "hmac": mac, "cert": cert}[cmd](*args)
