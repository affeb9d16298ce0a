#!/usr/bin/env python3
"""Throughput of Debian's nginx with and without ngx_http_revledger_module, measured with
wrk (Debian's package) on loopback. One worker process, so that the figures are per
core; nginx serves a small static file (the content phase runs after the access phase,
where the module works).

    target/python-venv/bin/python bindings/nginx/bench.py [--seconds 5] [--rounds 3] [--rules 10000]

with a Python that has the revledger package (`pip install ./bindings/python`; the virtual
environment scripts/test-all makes has it): it writes the ledger.

Configurations, alternated round after round so that a noisy neighbour hits them alike:
  without      the module not loaded
  off          loaded, `revledger off;`
  valid        `revledger <ledger>;`, a valid 3-role token (the common case)
  revoked      the same, a revoked token (every answer a 401 from the module)
Prints requests/s and the worker's CPU time per request (from /proc/<pid>/schedstat,
far less sensitive than requests/s to other work on the machine), medians of the rounds,
and the CPU cost per request over `without`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import harness  # noqa: E402
from harness import create_ledger, jwt, ledger_dir  # noqa: E402

from revledger import Scope  # noqa: E402


def server(directives: str) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        {directives}
        location / {{ root html; }}
    }}
    """


def cpu_ns(pid: int) -> int:
    """Time the process has spent on a CPU, in nanoseconds (schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def wrk(n: harness.Nginx, token: str, seconds: int, connections: int) -> tuple:
    """requests/s, the worker's CPU time per request (ns), non-2xx answers."""
    (worker,) = n.worker_pids()
    before = cpu_ns(worker)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-H",
         f"Authorization: Bearer {token}", f"http://127.0.0.1:{n.port}/ok.txt"],
        capture_output=True, text=True, check=True)
    used = cpu_ns(worker) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    total = int(re.search(r"(\d+) requests in", out.stdout).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    return rps, used / total, int(non2xx.group(1)) if non2xx else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()

    base = harness.scratch_dir()
    try:
        path = ledger_dir(base) / "bench.ledger"
        writer = create_ledger(path)
        now = int(time.time())
        writer.revoke_batch([(Scope.SUBJECT, "acme", f"user-{i}", now - 60)
                             for i in range(args.rules)])
        writer.revoke(Scope.ROLE, "acme", "super_admin", now + 1)
        payload = {"iss": "https://idp.example/realms/acme", "tenant": "acme",
                   "sub": "3f2b8c1e-5d0a-4c1b-9a7e-2b9d6f1e0c44", "azp": "web-app",
                   "sid": "0e8c2a6d-1f3b-4d5e-8a9c-7b6d5e4f3a2b",
                   "jti": "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
                   "roles": ["billing", "reports", "editor"], "iat": now - 30,
                   "exp": now + 3600, "aud": "api", "scope": "openid profile email"}
        valid = jwt(payload)
        revoked = jwt(dict(payload, roles=["billing", "super_admin", "editor"]))

        runs = {
            "without": (["-"], "", valid),
            "off": ([], "revledger off;", valid),
            "valid": ([], f"revledger {path};", valid),
            "revoked": ([], f"revledger {path};", revoked),
        }
        results = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (modules, directives, token) in runs.items():
                n = harness.Nginx(base, server(directives), workers=1, modules=modules)
                (n.prefix / "html").mkdir()
                (n.prefix / "html" / "ok.txt").write_text("ok\n")
                with n:
                    wrk(n, token, 1, args.connections)  # warm up
                    rps, ns, non2xx = wrk(n, token, args.seconds, args.connections)
                    expected_errors = name == "revoked"
                    assert (non2xx > 0) == expected_errors, (name, non2xx)
                    results[name].append(rps)
                    cpu[name].append(ns)

        print(f"nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip()}, "
              f"1 worker, wrk -t1 -c{args.connections}, {args.seconds:g} s x {args.rounds} rounds, "
              f"ledger of {args.rules} rules, token {len(valid)} bytes")
        print(f"  {'':8} {'req/s':>8}  {'worker CPU/request':>18}  {'vs without':>10}   "
              "(req/s of each round)")
        base_cpu = statistics.median(cpu["without"])
        for name, values in results.items():
            ns = statistics.median(cpu[name])
            print(f"  {name:8} {statistics.median(values):8.0f}  {ns / 1000:15.2f} us"
                  f"  {(ns - base_cpu) / 1000:+8.2f} us   ({', '.join(f'{v:.0f}' for v in values)})")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
