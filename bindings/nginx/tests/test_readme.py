"""The nginx.conf of bindings/nginx/README.md, run as written but for its paths and ports:
auth_request authenticates (a stand-in service accepting tokens whose signature segment
is "good"), then the module rejects revoked tokens."""

from __future__ import annotations

import re
import time

import harness
from harness import REPO, create_ledger, jwt, ledger_dir, wait_for

import revledger
from revledger import Scope

GOOD = harness.b64url(b"good")
REALM = "https://kc.example/realms/acme"


def readme_conf() -> str:
    text = (REPO / "bindings" / "nginx" / "README.md").read_text()
    blocks = [b for b in re.findall(r"```nginx\n(.*?)```", text, re.S) if "load_module" in b]
    assert len(blocks) == 1, "bindings/nginx/README.md: one complete nginx.conf expected"
    return blocks[0]


def signed(payload: dict, signature: str = GOOD) -> str:
    header, body, _ = jwt(payload).split(".")
    return f"{header}.{body}.{signature}"


def test_readme_configuration_authenticates_then_rejects_revoked_tokens(base):
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, REALM, "john", cutoff)

    n = harness.Nginx(base, "", workers=2, modules=["-"])
    auth_port = harness.free_port()
    gateway_log = n.prefix / "logs" / "gateway.log"
    auth_server = f"""
    server {{
        listen 127.0.0.1:{auth_port};
        location = /verify {{
            if ($http_authorization ~ "\\.{GOOD}$") {{ return 200; }}
            return 401;
        }}
    }}
    """
    subs = {
        "load_module modules/ngx_http_revledger_module.so;":
            f"load_module {harness.module_path()};",
        "user www-data;": "user www-data;" if n.as_user else "",
        "worker_processes auto;": f"worker_processes {n.workers};",
        "events {}": "events {}\n" + n.preamble(),
        "http {": "http {\n" + n.upstream_server() + auth_server,
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{n.upstream};",
        "server 127.0.0.1:9000;": f"server 127.0.0.1:{auth_port};",
        "/var/lib/revledger/acme.ledger": str(path),
        "/var/log/nginx/access.log": str(gateway_log),
        "listen 80;": f"listen 127.0.0.1:{n.port};",
    }
    conf = readme_conf()
    for old, new in subs.items():
        assert old in conf, f"{old!r} is no longer in the README's nginx.conf"
        conf = conf.replace(old, new)
    n.conf.write_text(conf)
    assert n.test_config().returncode == 0, n.test_config().stderr

    with n:
        now = int(time.time())

        def token(sub: str, signature: str = GOOD) -> str:
            return signed({"iss": REALM, "sub": sub, "azp": "web",
                           "realm_access": {"roles": ["user"]}, "iat": now - 60,
                           "exp": now + 600}, signature)

        # genuine and not revoked: the API answers
        r = n.get("/orders", token("mike"))
        assert r.status == 200 and r.body == b"upstream /orders\n", r

        # genuine and revoked: revledger's 401
        r = n.get("/orders", token("john"))
        assert r.status == 401, r
        assert r.headers["www-authenticate"] == (
            'Bearer error="invalid_token", '
            f'error_description="token revoked: subject permissions changed at {cutoff}"')

        # not genuine: the authentication step answers; revledger never sees it
        r = n.get("/orders", token("john", signature=harness.b64url(b"forged")))
        assert r.status == 401 and "www-authenticate" not in r.headers, r
        assert n.get("/orders").status == 401  # no token at all

        # revledger off where the configuration says so
        assert n.get("/public", token("john")).status == 200

        # a revocation while running
        writer.revoke(Scope.SUBJECT, REALM, "mike", revledger.now_cutoff())
        assert n.get("/orders", token("mike")).status == 401

        wait_for(lambda: gateway_log.exists()
                 and "revledger=revoked scope=subject" in gateway_log.read_text(),
                 "the gateway log")
        log = gateway_log.read_text()
        assert '"GET /orders HTTP/1.1" 200 revledger=valid scope=' in log, log
