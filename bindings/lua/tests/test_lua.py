"""The LuaJIT module: its own tests under plain `luajit`, its declarations against the
C header, and the OpenResty configuration of bindings/lua/README.md in Debian's nginx
with libnginx-mod-http-lua (workers as www-data when run as root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nginx" / "tests"))

import harness  # noqa: E402
from harness import REPO, create_ledger, jwt, ledger_dir, wait_for  # noqa: E402

import revledger  # noqa: E402
from revledger import Scope  # noqa: E402

LUA_DIR = REPO / "bindings" / "lua"
LIB_DIR = REPO / "target" / "release"
LUAJIT = shutil.which("luajit") or "luajit"


@pytest.fixture
def base():
    d = harness.scratch_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def luajit(script: str, *args: str, env_extra=None, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("REVLEDGER_LIB", None)
    env["LUA_PATH"] = f"{LUA_DIR}/?.lua;;"
    env["LUA_CPATH"] = f"{LIB_DIR}/?.so;;"
    env.update(env_extra or {})
    return subprocess.run([LUAJIT, script, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_lua_module_under_luajit(base):
    out = luajit(str(LUA_DIR / "tests" / "test_revledger.lua"), str(base))
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout, out.stdout


def test_library_search(base):
    probe = base / "probe.lua"
    probe.write_text('print(require("revledger").version())\n')
    # found through package.cpath
    out = luajit(str(probe))
    assert out.returncode == 0 and re.match(r"^\d+\.\d+\.\d+", out.stdout), out.stderr
    # REVLEDGER_LIB wins
    out = luajit(str(probe), env_extra={"LUA_CPATH": "/nonexistent/?.so",
                                        "REVLEDGER_LIB": str(LIB_DIR / "librevledger.so")})
    assert out.returncode == 0, out.stderr
    # nowhere: a message saying where it looked
    out = luajit(str(probe), env_extra={"LUA_CPATH": "/nonexistent/?.so",
                                        "LD_LIBRARY_PATH": ""})
    assert out.returncode != 0
    assert "librevledger.so not found" in out.stderr and "/nonexistent/?.so" in out.stderr, \
        out.stderr


def normalise(c: str) -> str:
    c = re.sub(r"/\*.*?\*/", " ", c, flags=re.S)
    c = re.sub(r"//[^\n]*", " ", c)
    c = re.sub(r"\s+", " ", c)
    return re.sub(r"\s*([(){},;*\[\]])\s*", r"\1", c).strip()


def declarations(c: str):
    """Top-level declarations (typedefs and prototypes), normalised, by name."""
    out = {}
    for decl in normalise(c).split(";"):
        decl = decl.strip()
        if not decl or decl.startswith("#") or decl.startswith("extern"):
            continue
        if decl.startswith("typedef"):
            name = re.findall(r"(\w+)$", decl)
        else:
            name = re.findall(r"(\w+)\(", decl)
        if name:
            out[name[0]] = decl
    return out


def test_cdefs_match_the_header():
    lua = (LUA_DIR / "revledger.lua").read_text()
    cdef = re.search(r"local C_DECLARATIONS = \[\[(.*?)\]\]", lua, re.S).group(1)
    header = (REPO / "include" / "revledger.h").read_text()
    header = re.sub(r"#[^\n]*", "", header)
    header = header.replace('extern "C" {', "").replace("}  ", "}")
    ours, theirs = declarations(cdef), declarations(header)
    assert len(ours) >= 14, ours.keys()
    for name, decl in ours.items():
        assert name in theirs, f"{name} is not in include/revledger.h"
        assert decl == theirs[name], f"{name} differs:\n lua:    {decl}\n header: {theirs[name]}"


README_SUBSTITUTIONS = {
    "load_module modules/": "load_module /usr/lib/nginx/modules/",
    '"/opt/revledger/lua/?.lua;;"': f'"{LUA_DIR}/?.lua;;"',
    '"/opt/revledger/lib/?.so;;"': f'"{LIB_DIR}/?.so;;"',
}


def readme_openresty_conf() -> str:
    text = (LUA_DIR / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "bindings/lua/README.md: one nginx block expected"
    return blocks[0]


def render(conf: str, n: harness.Nginx, ledger: Path) -> str:
    subs = dict(README_SUBSTITUTIONS)
    subs.update({
        "/var/lib/revledger/acme.ledger": str(ledger),
        "listen 80;": f"listen 127.0.0.1:{n.port} reuseport;\n"
                      "        add_header X-Worker $pid always;",
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{n.upstream};",
        "worker_processes auto;": f"worker_processes {n.workers};",
        "user www-data;": "user www-data;" if n.as_user else "",
        "events {}": "events {}\n" + n.preamble(),
        "http {": "http {\n" + n.upstream_server(),
    })
    for old, new in subs.items():
        assert old in conf, f"{old!r} is no longer in the README's configuration"
        conf = conf.replace(old, new)
    return conf


def test_readme_openresty_configuration_rejects_revoked_tokens(base):
    path = ledger_dir(base) / "acme.ledger"
    writer = create_ledger(path)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.ROLE, "acme", "super_admin", cutoff)
    n = harness.Nginx(base, "", workers=2, modules=["-"])
    n.conf.write_text(render(readme_openresty_conf(), n, path))
    n.start()
    try:
        now = int(time.time())

        def tok(sub, roles, iat=now - 60):
            return jwt({"tenant": "acme", "sub": sub, "roles": roles, "iat": iat})

        john, bruce = tok("john", ["super_admin"]), tok("bruce", ["billing"])
        r = n.get("/api", bruce)
        assert r.status == 200 and r.body == b"upstream /api\n", r
        r = n.get("/", john)
        assert r.status == 401, r
        assert r.headers["www-authenticate"] == (
            'Bearer error="invalid_token", '
            f'error_description="token revoked: role permissions changed at {cutoff}"'), r
        assert n.get("/").status == 200
        r = n.get("/", "garbage")
        assert r.status == 401 and "unreadable token" in r.headers["www-authenticate"], r
        for pid in n.worker_pids():
            assert harness.uid_of(pid) == harness.worker_ids()[0]

        # a revoke while running: the next request, in every worker
        writer.revoke(Scope.SUBJECT, "acme", "bruce", revledger.now_cutoff())
        seen = set()

        def every_worker_rejects() -> bool:
            r = n.get("/", bruce)
            assert r.status == 401, r
            seen.add(r.headers["x-worker"])
            return len(seen) == n.workers

        wait_for(every_worker_rejects, "every worker to reject bruce")

        # a compaction by root while the workers read as www-data
        writer.compact(int(time.time()))
        assert n.get("/", bruce).status == 401
        assert n.get("/", tok("mike", ["billing"])).status == 200

        # reload: new workers, new readers
        old = set(n.worker_pids())
        out = subprocess.run(n.cmd("-s", "reload"), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: not set(n.worker_pids()) & old
                 and len(n.worker_pids()) == n.workers, "new workers")
        assert n.get("/", bruce).status == 401
        assert n.get("/", tok("mike", ["billing"])).status == 200
        assert "[error]" not in n.log(), n.log()
    finally:
        n.stop()

    # the ledger missing: 503 (fail closed), never a pass; once it is there, it is
    # opened (tried once a second), without a reload
    late = path.parent / "late.ledger"  # readable by the workers, as acme.ledger
    n = harness.Nginx(base, "", workers=1, modules=["-"])
    n.conf.write_text(render(readme_openresty_conf(), n, late))
    with n:
        assert n.get("/", jwt({"sub": "x", "iat": 1})).status == 503
        assert n.get("/").status == 200
        writer = create_ledger(late)
        writer.revoke(Scope.SUBJECT, "acme", "john", revledger.now_cutoff())
        john = jwt({"tenant": "acme", "sub": "john", "iat": int(time.time()) - 60})

        def opened() -> bool:
            status = n.get("/", john).status
            assert status in (401, 503), status
            return status == 401

        wait_for(opened, "the worker to open the ledger created after it started")
        assert n.get("/", jwt({"tenant": "acme", "sub": "mike", "iat": 1})).status == 200
        writer.close()


def readme_lua_block(heading: str) -> str:
    """The first ```lua block after the line that starts with `heading`."""
    text = (LUA_DIR / "README.md").read_text()
    start = text.index("\n" + heading)
    return re.search(r"```lua\n(.*?)```", text[start:], re.S).group(1)


def test_readme_kong_and_apisix_plugins_with_stand_ins(base):
    """Not Kong or APISIX: the plugins' access functions with stand-ins for the gateway
    calls they make, under luajit (see plugins_with_stand_ins.lua)."""
    kong, apisix = base / "kong_handler.lua", base / "apisix_revledger.lua"
    kong.write_text(readme_lua_block("Kong ("))
    apisix.write_text(readme_lua_block("APISIX ("))
    path = base / "acme.ledger"
    writer = revledger.Ledger.open_writer(path, max_token_lifetime=3600)
    cutoff = revledger.now_cutoff()
    writer.revoke(Scope.SUBJECT, "acme", "john", cutoff)
    now = int(time.time())
    john = jwt({"tenant": "acme", "sub": "john", "iat": now - 60})
    mike = jwt({"tenant": "acme", "sub": "mike", "iat": now - 60})
    out = luajit(str(LUA_DIR / "tests" / "plugins_with_stand_ins.lua"), str(kong), str(apisix),
                 str(path), john, mike)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
    writer.close()
