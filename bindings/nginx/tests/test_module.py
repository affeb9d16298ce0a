"""ngx_http_revledger_module in Debian's real nginx: generated configurations, a real
HTTP client (http.client, a fresh connection per request), nginx itself as the
upstream. Workers run as www-data when the tests run as root (CI), reading ledgers
that root writes and compacts."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import harness
from harness import create_ledger, jwt, ledger_dir, wait_for

import revledger
from revledger import Scope

INVALID_TOKEN = re.compile(r'^Bearer error="invalid_token", error_description="([^"\\]*)"$')


def token(sub: str = "john", roles=("billing",), tenant: str = "acme", age: int = 60,
          **claims) -> str:
    now = int(time.time())
    payload = {"iss": "https://idp.example", "tenant": tenant, "sub": sub,
               "roles": list(roles), "iat": now - age, "exp": now + 3600}
    payload.update(claims)
    return jwt(payload)


def front(directives: str = "", locations: str = "") -> str:
    """The server under test: the module's directives, the upstream behind `/`, and
    the module's variables echoed in response headers (on every status; nginx leaves
    out a header whose value is empty)."""
    return f"""
    server {{
        listen 127.0.0.1:{{port}} reuseport;
        add_header X-Verdict "$revledger_verdict" always;
        add_header X-Scope "$revledger_scope" always;
        add_header X-Worker $pid always;
        {directives}
        location / {{ proxy_pass http://127.0.0.1:{{upstream}}; }}
        {locations}
    }}
    """


def assert_upstream(r, path: str = "/") -> None:
    assert r.status == 200, r
    assert r.body == f"upstream {path}\n".encode(), r


def assert_revoked(r, scope: str, cutoff: int) -> None:
    assert r.status == 401, r
    expected = (f'Bearer error="invalid_token", '
                f'error_description="token revoked: {scope} permissions changed at {cutoff}"')
    assert r.headers["www-authenticate"] == expected, r
    assert r.headers.get("x-verdict", "") == "revoked", r
    assert r.headers.get("x-scope", "") == scope, r


def assert_unreadable(r) -> str:
    assert r.status == 401, r
    m = INVALID_TOKEN.match(r.headers.get("www-authenticate", ""))
    assert m, r
    assert r.headers.get("x-verdict", "") == "error", r
    return m.group(1)


def test_valid_revoked_unreadable_and_no_token(base, nginx):
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.ROLE, "acme", "super_admin", cutoff)
    n = nginx(front(f"revledger {path};"))

    # valid: the upstream answers
    r = n.get("/api?x=1", token(sub="bruce", roles=["billing"]))
    assert_upstream(r, "/api?x=1")
    assert r.headers.get("x-verdict", "") == "valid" and r.headers.get("x-scope", "") == ""

    # revoked: 401 naming the rule
    assert_revoked(n.get("/", token(sub="john", roles=["super_admin", "billing"])),
                   "role", cutoff)
    # issued after the change: valid
    assert_upstream(n.get("/", token(sub="john", roles=["super_admin"], age=-5)))

    # a single-token rule
    writer.revoke(Scope.TOKEN, "acme", "jti-7", int(time.time()) + 3600)
    r = n.get("/", token(sub="mike", jti="jti-7"))
    assert r.status == 401, r
    assert r.headers["www-authenticate"] == \
        'Bearer error="invalid_token", error_description="token revoked"'
    assert r.headers.get("x-scope", "") == "token"

    # no token, or another scheme: the module does nothing
    for headers in ({}, {"Authorization": "Basic am9objpwdw=="}, {"Authorization": "Bearer "}):
        r = n.get("/", headers=headers)
        assert_upstream(r)
        assert r.headers.get("x-verdict", "") == "" and r.headers.get("x-scope", "") == "", r

    # the scheme is case-insensitive (RFC 7235); a tab after it counts as a space (a
    # verifying module that accepts it would otherwise let the token pass unchecked)
    revoked = token(sub="john", roles=["super_admin"])
    for auth in ("bearer " + revoked, "BEARER  " + revoked, "Bearer\t" + revoked,
                 "Bearer \t " + revoked):
        assert_revoked(n.get("/", headers={"Authorization": auth}), "role", cutoff)

    # tokens it cannot read: 401 invalid_token, saying why
    now = int(time.time())
    unreadable = [
        "not-a-jwt",
        "abc.%%%.def",
        jwt({"tenant": "acme", "sub": "john"}),                      # no iat
        jwt({"tenant": "acme", "sub": "john", "iat": "yesterday"}),  # iat of the wrong type
        jwt({"tenant": "acme", "sub": 42, "iat": now}),              # sub of the wrong type
        harness.b64url(b'{"alg":"none"}') + "." + harness.b64url(b"[1,2]") + ".x",
    ]
    for bad in unreadable:
        why = assert_unreadable(n.get("/", bad))
        assert why, f"an empty error_description for {bad!r}"
    why = assert_unreadable(n.get("/", jwt({"tenant": "acme", "sub": "john"})))
    assert "iat" in why, why
    # issued after this host's clock plus the leeway: it cannot be judged, never valid
    why = assert_unreadable(n.get("/", jwt({"tenant": "acme", "sub": "bruce", "iat": now + 3600})))
    assert "future" in why, why

    # the variables reach the access log
    wait_for(lambda: "401 revoked [role] /" in n.access_log.read_text(), "the access log")
    log = n.access_log.read_text()
    assert "200 valid [] /api?x=1" in log, log
    assert "200  [] /" in log, log
    assert "401 error [] /" in log, log


def test_revoke_while_running_takes_effect_on_the_next_request(base, nginx):
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    n = nginx(front(f"revledger {path};"), workers=4)
    mike = token(sub="mike", roles=["editor"])

    # every worker has answered (so holds the ledger open) before the change
    seen = set()

    def all_workers_answered_valid() -> bool:
        r = n.get("/", mike)
        assert_upstream(r)
        seen.add(int(r.headers["x-worker"]))
        return len(seen) == n.workers

    wait_for(all_workers_answered_valid, "every worker to answer")

    cutoff = writer.revoke_now(Scope.SUBJECT, "acme", "mike")

    # from the very next request on, in every worker, with no reload
    seen.clear()

    def all_workers_answered_revoked() -> bool:
        r = n.get("/", mike)
        assert_revoked(r, "subject", cutoff)
        seen.add(int(r.headers["x-worker"]))
        return len(seen) == n.workers

    wait_for(all_workers_answered_revoked, "every worker to answer after the revoke")
    assert_upstream(n.get("/", token(sub="bruce", roles=["editor"])))


@pytest.mark.skipif(not harness.IS_ROOT, reason="workers change user only under a root master")
def test_workers_as_another_user_survive_a_compaction_by_root(base, nginx):
    uid, gid = harness.worker_ids()
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path, lifetime=3600)
    now = int(time.time())
    stale = now - 3600 - 3 * 86400  # expired long ago: compaction drops it
    writer.revoke(Scope.SUBJECT, "acme", "old-user", stale)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    n = nginx(front(f"revledger {path};"), workers=2)
    assert path.stat().st_uid == 0, "the writer is root"

    john, mike = token(sub="john"), token(sub="mike")
    seen = set()

    def every_worker_judges() -> bool:
        assert_revoked(n.get("/", john), "subject", cutoff)
        r = n.get("/", mike)
        assert_upstream(r)
        seen.add(int(r.headers["x-worker"]))
        return len(seen) == n.workers

    wait_for(every_worker_judges, "every worker to answer")
    # Asked once every worker has served a request: a worker changes user in its own
    # initialisation, so one just forked may still be root for a moment.
    for pid in n.worker_pids():
        assert harness.uid_of(pid) == uid, f"worker {pid} does not run as {harness.WORKER_USER}"

    before = path.stat()
    writer.compact(int(time.time()))
    after = path.stat()
    assert after.st_ino != before.st_ino, "compaction replaces the file"
    assert writer.stats().live_keys == 1, "the expired rule was dropped"
    assert (after.st_mode & 0o777, after.st_gid) == (0o640, gid), \
        "compaction keeps the mode and group the readers need"
    for f in path.parent.iterdir():  # the ledger and its index files
        st = f.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o640, gid), f"{f.name}: {oct(st.st_mode)}"

    seen.clear()
    wait_for(every_worker_judges, "every worker to answer after the compaction")
    cutoff2 = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "mike", cutoff2)
    assert_revoked(n.get("/", mike), "subject", cutoff2)
    assert "cannot" not in n.log(), n.log()


def test_missing_ledger_fails_closed_or_open_then_recovers(base, nginx):
    path = ledger_dir(base) / "later.ledger"
    n = nginx(front(f"revledger {path};", """
        location /open { revledger_fail open; proxy_pass http://127.0.0.1:{upstream}; }
    """))
    john = token(sub="john")
    r = n.get("/", john)
    assert r.status == 503, r
    assert r.headers.get("x-verdict", "") == "error"
    assert_upstream(n.get("/open", john), "/open")
    assert_upstream(n.get("/"))  # no token: nothing to check
    assert "cannot open ledger" in n.log()

    # the ledger appears: workers pick it up without a reload (retrying once a second)
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    opened = set()

    def every_worker_opened() -> bool:
        r = n.get("/", john)
        if r.status == 503:
            return False
        assert_revoked(r, "subject", cutoff)
        opened.add(int(r.headers["x-worker"]))
        return len(opened) == n.workers

    wait_for(every_worker_opened, "every worker to open the new ledger")
    for _ in range(10):
        assert_revoked(n.get("/", john), "subject", cutoff)
        assert_upstream(n.get("/", token(sub="mike")))


def test_a_ledger_deleted_or_replaced_while_running_is_noticed_within_a_second(base, nginx):
    d = ledger_dir(base)
    path = d / "replaced.ledger"
    writer = create_ledger(path)
    n = nginx(front(f"revledger {path};"), workers=1)
    john = token(sub="john")
    assert_upstream(n.get("/", john))
    assert n.get("/", john).headers.get("x-verdict", "") == "valid"

    # Another ledger renamed over the path, with john revoked in it: the worker must not
    # go on answering from the file it has open (the library alone looks at the path
    # only once in thousands of checks). Fewer than 200 requests in all.
    other = d / "other.ledger"
    replacement = create_ledger(other)
    cutoff = revledger.now_cutoff()
    replacement.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    replacement.close()
    writer.close()
    other.rename(path)
    sent = 0

    def revoked_in_the_new_file() -> bool:
        nonlocal sent
        sent += 1
        assert sent < 200, "still answering from the replaced file"
        r = n.get("/", john)
        # 503: the worker's handle learnt of the replacement first (the kernel's notice)
        # and fails closed until the worker's next look at the path opens the new file
        if r.status in (200, 503):
            return False
        assert_revoked(r, "subject", cutoff)
        return True

    wait_for(revoked_in_the_new_file, "the worker to read the ledger now at the path",
             interval=0.02)

    # Deleted: 503 (fail closed), never "valid" from the deleted file.
    path.unlink()
    sent = 0

    def fails_closed() -> bool:
        nonlocal sent
        sent += 1
        assert sent < 200, "still answering from the deleted file"
        r = n.get("/", token(sub="mike"))
        assert r.status in (200, 503), r
        return r.status == 503

    wait_for(fails_closed, "the worker to notice the deletion", interval=0.02)
    assert n.get("/", token(sub="mike")).headers.get("x-verdict", "") == "error"


def test_it_runs_after_access_by_lua_and_satisfy_any(base, nginx):
    """After every access check: access_by_lua* (which lua-nginx-module moves to the end
    of the access phase at run time) decides first, and no access module's grant under
    `satisfy any` lets a revoked token through."""
    path = ledger_dir(base) / "order.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    lua = [harness.SYSTEM_MODULES / "ndk_http_module.so",
           harness.SYSTEM_MODULES / "ngx_http_lua_module.so"]
    upstream = "proxy_pass http://127.0.0.1:{upstream};"
    locations = f"""
        location /lua-refuses {{
            access_by_lua_block {{ return ngx.exit(403) }}
            {upstream}
        }}
        location /lua-passes {{
            access_by_lua_block {{ ngx.req.set_header("X-Authenticated", "yes") }}
            {upstream}
        }}
        location /any {{ satisfy any; allow all; {upstream} }}
        location /refused {{ deny all; {upstream} }}
    """
    # the module loaded before the Lua module and after it
    for modules in ([harness.module_path(), *lua], [*lua, harness.module_path()]):
        n = nginx(front(f"revledger {path};", locations), modules=modules)
        john, mike = token(sub="john"), token(sub="mike")
        for _ in range(3):  # the Lua module moves its handler at its first request
            r = n.get("/lua-refuses", john)
            assert r.status == 403, r
            assert "www-authenticate" not in r.headers, r
            assert_revoked(n.get("/lua-passes", john), "subject", cutoff)
            assert_upstream(n.get("/lua-passes", mike), "/lua-passes")
            assert_revoked(n.get("/any", john), "subject", cutoff)
            assert_upstream(n.get("/any", mike), "/any")
            assert n.get("/refused", john).status == 403
        n.stop()


def test_an_error_page_for_401_gets_one_challenge(base, nginx):
    path = ledger_dir(base) / "error-page.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    upstream = "proxy_pass http://127.0.0.1:{upstream};"
    n = nginx(front(f"revledger {path};", f"""
        location /checked-page {{ error_page 401 /login; {upstream} }}
        location = /login {{ {upstream} }}
        location /page {{ error_page 401 /login-page; {upstream} }}
        location = /login-page {{ revledger off; {upstream} }}
    """))
    expected = ['Bearer error="invalid_token", '
                f'error_description="token revoked: subject permissions changed at {cutoff}"']
    # the page's location is checked too (the redirected request comes through again)
    r = n.get("/checked-page", token(sub="john"))
    assert r.status == 401, r
    assert [v for k, v in r.raw_headers if k.lower() == "www-authenticate"] == expected, r
    # the page's location not checked: the page is served, with the one challenge
    r = n.get("/page", token(sub="john"))
    assert r.status == 401, r
    assert r.body == b"upstream /login-page\n", r
    assert [v for k, v in r.raw_headers if k.lower() == "www-authenticate"] == expected, r
    # the variables survive the internal redirect: on the page and in the access log
    for r in (r, n.get("/checked-page", token(sub="john"))):
        assert r.headers.get("x-verdict", "") == "revoked", r
        assert r.headers.get("x-scope", "") == "subject", r
    wait_for(lambda: "401 revoked [subject] /page" in n.access_log.read_text(), "the access log")
    assert "401 revoked [subject] /checked-page" in n.access_log.read_text()


def test_corrupt_ledger_fails_closed_or_open(base, nginx):
    d = ledger_dir(base)
    garbage = d / "garbage.ledger"
    garbage.write_bytes(b"this is not a ledger\n" * 100)
    garbage.chmod(0o644)

    damaged = d / "damaged.ledger"
    writer = create_ledger(damaged)
    for i in range(200):
        writer.revoke(Scope.SUBJECT, "acme", f"user-{i}", 1_700_000_000 + i)
    middle = writer.stats().log_bytes // 2
    writer.close()
    with open(damaged, "r+b") as f:
        f.seek(middle)
        byte = f.read(1)
        f.seek(middle)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(revledger.RevledgerError):
        revledger.Ledger.open_reader(damaged)

    n = nginx(front("", f"""
        location /garbage {{ revledger {garbage}; proxy_pass http://127.0.0.1:{{upstream}}; }}
        location /damaged {{ revledger {damaged}; proxy_pass http://127.0.0.1:{{upstream}}; }}
        location /damaged-open {{
            revledger {damaged};
            revledger_fail open;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
    """))
    john = token(sub="john")
    for loc in ("/garbage", "/damaged"):
        r = n.get(loc, john)
        assert r.status == 503, r
        assert r.headers.get("x-verdict", "") == "error", r
    assert_upstream(n.get("/damaged-open", john), "/damaged-open")
    assert_upstream(n.get("/"))


def test_directives_inherit_and_inner_levels_override(base, nginx):
    d = ledger_dir(base)
    main_path, other_path = d / "main.ledger", d / "other.ledger"
    main, other = create_ledger(main_path), create_ledger(other_path)
    cutoff = revledger.now_cutoff()
    main.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    other.revoke(Scope.SUBJECT, "acme", "mike", cutoff)
    realm = "https://kc.example/realms/acme"
    main.revoke(Scope.SUBJECT, realm, "kc-user", cutoff)

    n = nginx(f"""
    revledger {main_path};
    revledger_fail open;
    """ + front("", f"""
        location /off {{ revledger off; proxy_pass http://127.0.0.1:{{upstream}}; }}
        location /other {{
            revledger {other_path};
            proxy_pass http://127.0.0.1:{{upstream}};
            location /other/off {{ revledger off; proxy_pass http://127.0.0.1:{{upstream}}; }}
        }}
        location /cookie {{
            revledger_token $cookie_at;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
        location /keycloak {{
            revledger_claims keycloak;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
        location /pointers {{
            revledger_claims '{{"tenant": ["/org/id"], "subject": ["/user"]}}';
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
        location /closed {{
            revledger {d}/missing.ledger;
            revledger_fail closed;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
        location /inherits-open {{
            revledger {d}/missing.ledger;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
    """))
    john, mike = token(sub="john"), token(sub="mike")

    # http level: the main ledger, generic claims, Authorization header
    assert_revoked(n.get("/", john), "subject", cutoff)
    assert_upstream(n.get("/", mike))
    # off
    assert_upstream(n.get("/off", john), "/off")
    # another ledger, and off again in a nested location
    assert_revoked(n.get("/other", mike), "subject", cutoff)
    assert_upstream(n.get("/other", john), "/other")
    assert_upstream(n.get("/other/off", mike), "/other/off")
    # the token from a cookie; the Authorization header is then not read
    assert_revoked(n.get("/cookie", headers={"Cookie": f"at={john}"}), "subject", cutoff)
    assert_upstream(n.get("/cookie", headers={"Cookie": f"at={mike}"}), "/cookie")
    assert_upstream(n.get("/cookie", john), "/cookie")
    # keycloak claims: the realm (iss) is the tenant
    kc = jwt({"iss": realm, "sub": "kc-user", "realm_access": {"roles": ["user"]},
              "iat": int(time.time()) - 10})
    assert_revoked(n.get("/keycloak", kc), "subject", cutoff)
    assert_upstream(n.get("/", kc))  # generic: no tenant claim, another key
    # a mapping of JSON Pointers
    custom = jwt({"org": {"id": "acme"}, "user": "john", "iat": int(time.time()) - 10})
    assert_revoked(n.get("/pointers", custom), "subject", cutoff)
    # revledger_fail: closed overrides the inherited open; open is inherited
    assert n.get("/closed", john).status == 503
    assert_upstream(n.get("/inherits-open", john), "/inherits-open")


@pytest.mark.parametrize("directives, message", [
    ("revledger_claims no-such-provider;", "invalid claim mapping"),
    ("revledger_claims '{\"subject\": 5}';", "invalid claim mapping"),
    ("revledger_fail maybe;", "invalid value"),
    ("revledger /a; revledger /b;", "is duplicate"),
    ("revledger_claims generic; revledger_claims auth0;", "is duplicate"),
    ("revledger \"\";", "takes a ledger path"),
    ("revledger_token \"\";", "takes a value that names the token"),
    ("revledger /a /b;", "invalid number of arguments"),
])
def test_configuration_errors_are_refused_by_nginx_t(base, directives, message):
    n = harness.Nginx(base, front(directives))
    out = n.test_config()
    assert out.returncode != 0, out.stderr
    assert message in out.stderr, out.stderr


def test_reload_keeps_working(base, nginx):
    d = ledger_dir(base)
    first, second = d / "first.ledger", d / "second.ledger"
    w1, w2 = create_ledger(first), create_ledger(second)
    cutoff = revledger.now_cutoff()
    w1.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    w2.revoke(Scope.SUBJECT, "acme", "mike", cutoff)
    john, mike = token(sub="john"), token(sub="mike")

    n = nginx(front(f"revledger {first};"))
    assert_revoked(n.get("/", john), "subject", cutoff)
    old = n.worker_pids()

    # same configuration: new workers, same answers
    new = n.reload(front(f"revledger {first};"))
    assert not set(new) & set(old)
    assert_revoked(n.get("/", john), "subject", cutoff)
    assert_upstream(n.get("/", mike))

    # another ledger
    n.reload(front(f"revledger {second};"))
    assert_upstream(n.get("/", john))
    assert_revoked(n.get("/", mike), "subject", cutoff)

    # revokes keep arriving after reloads
    cutoff2 = revledger.now_cutoff()
    w2.revoke(Scope.SUBJECT, "acme", "bruce", cutoff2)
    assert_revoked(n.get("/", token(sub="bruce")), "subject", cutoff2)

    # the module turned off by a reload
    n.reload(front("revledger off;"))
    assert_upstream(n.get("/", mike))
    assert n.proc.poll() is None
    assert "[alert]" not in n.log() and "[emerg]" not in n.log(), n.log()


def test_module_under_valgrind(base, nginx):
    """The module in a single nginx process (master_process off) under valgrind: no
    invalid access, no use of uninitialised memory, no definite leak at exit."""
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.ROLE, "acme", "super_admin", cutoff)
    vlog = base / "valgrind.log"
    n = nginx(front(f"revledger {path};", f"""
        location /missing {{
            revledger {base}/missing.ledger;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
        location /cookie {{
            revledger_token $cookie_at;
            revledger_claims keycloak;
            proxy_pass http://127.0.0.1:{{upstream}};
        }}
    """), master=False, workers=1, as_user=False, wrapper=[
        "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
        "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
        "--track-origins=yes", f"--suppressions={Path(__file__).parent / 'valgrind.supp'}",
        f"--log-file={vlog}",
    ])
    assert_upstream(n.get("/", token(sub="bruce")))
    assert_revoked(n.get("/", token(sub="john", roles=["super_admin"])), "role", cutoff)
    assert_unreadable(n.get("/", "not-a-jwt"))
    assert_unreadable(n.get("/", jwt({"sub": "x"})))
    assert_upstream(n.get("/"))
    assert n.get("/missing", token()).status == 503
    assert n.get("/cookie", headers={"Cookie": "at=" + token()}).status == 200
    writer.revoke(Scope.SUBJECT, "acme", "mike", revledger.now_cutoff())
    assert n.get("/", token(sub="mike")).status == 401
    status = n.stop(timeout=120)
    report = vlog.read_text()
    assert status == 0, f"nginx under valgrind exited with {status}:\n{report}\n{n.log()}"
    assert "Invalid" not in report and "uninitialised" not in report, report


@pytest.mark.skipif(not harness.IS_ROOT, reason="workers change user only under a root master")
def test_a_ledger_the_workers_cannot_read_fails_closed_until_it_is_readable(base, nginx):
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    path.chmod(0o600)  # as files are created by default: root only
    n = nginx(front(f"revledger {path};"), workers=2)
    john, mike = token(sub="john"), token(sub="mike")
    assert n.get("/", mike).status == 503
    assert "Permission denied" in n.log(), n.log()

    path.chmod(0o640)
    opened = set()

    def every_worker_reads_it() -> bool:
        r = n.get("/", mike)
        if r.status == 503:
            return False
        assert_upstream(r)
        opened.add(r.headers["x-worker"])
        return len(opened) == n.workers

    wait_for(every_worker_reads_it, "every worker to read the ledger")
    assert_revoked(n.get("/", john), "subject", cutoff)
