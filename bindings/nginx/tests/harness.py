"""Runs Debian's real nginx on loopback ports with generated configurations.

Each `Nginx` gets its own prefix directory (configuration, logs, pid, temp paths) in a
world-traversable scratch directory, so that workers running as an unprivileged user
(`user www-data;` when the tests run as root, as CI does) reach the ledgers kept there.
The master runs in the foreground (`daemon off;`) as a child of the test; the tests
stop it by its pid.
"""

from __future__ import annotations

import base64
import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[3]

# The writer side of the tests: the installed Python package (`pip install
# ./bindings/python`; scripts/test-all runs these tests in its virtual environment).
import revledger  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SYSTEM_MODULES = Path("/usr/lib/nginx/modules")
WORKER_USER = "www-data"
IS_ROOT = os.geteuid() == 0

_built: List[Path] = []


def module_path() -> Path:
    """The module, built once per run by scripts/build-nginx-module (a no-op when it
    is newer than its inputs)."""
    if not _built:
        out = subprocess.run([str(REPO / "scripts" / "build-nginx-module")], cwd=REPO,
                             check=True, capture_output=True, text=True)
        _built.append(Path(out.stdout.strip().splitlines()[-1]))
    return _built[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0,
             interval: float = 0.02) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def scratch_dir() -> Path:
    """A fresh directory every user can traverse (pytest's tmp_path is 0700 for root)."""
    d = Path(tempfile.mkdtemp(prefix="revledger-nginx-"))
    d.chmod(0o755)
    return d


def worker_ids() -> Tuple[int, int]:
    """uid and gid the workers run as: www-data when root, else ourselves."""
    if IS_ROOT:
        return pwd.getpwnam(WORKER_USER).pw_uid, grp.getgrnam(WORKER_USER).gr_gid
    return os.geteuid(), os.getegid()


def ledger_dir(base: Path) -> Path:
    """A directory for ledgers that the workers can traverse: group www-data, 0750.
    Not setgid: the group of the files in it is the writer's doing."""
    d = base / "ledgers"
    d.mkdir()
    os.chown(d, -1, worker_ids()[1])
    d.chmod(0o750)
    return d


def create_ledger(path: Path, lifetime: int = 3600) -> revledger.Ledger:
    """Opens a new ledger for writing, readable by the workers: the writer creates its
    files with mode 0640 and the workers' group, and every compaction keeps them. The
    writer stays open: it is the permission system."""
    return revledger.Ledger.open_writer(path, max_token_lifetime=lifetime, file_mode=0o640,
                                        file_group=worker_ids()[1])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(payload: dict) -> str:
    """A compact JWS with this payload. The module never reads the signature (it sits
    behind the module that verifies it), so the one here is a placeholder."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "test"}
    return ".".join([b64url(json.dumps(header).encode()),
                     b64url(json.dumps(payload).encode()),
                     b64url(b"signature not checked by revledger")])


class Response:
    def __init__(self, status: int, raw_headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        # every header line as sent (a repeated header appears once per line)
        self.raw_headers = raw_headers
        self.headers = {k.lower(): v for k, v in raw_headers}
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def request(port: int, path: str = "/", token: Optional[str] = None,
            headers: Optional[Dict[str, str]] = None, timeout: float = 10) -> Response:
    """One GET on a fresh connection (so that requests spread over the workers)."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    h.setdefault("Connection", "close")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        body = r.read()
        return Response(r.status, r.getheaders(), body)
    finally:
        conn.close()


class Nginx:
    """One nginx master (and its workers) on loopback. `http` is the body of the
    http block; it may use {port} (the port tests send to) and {upstream} (a second
    server of the same nginx that answers 200, standing for the API behind)."""

    def __init__(self, base: Path, http: str, *, workers: int = 2,
                 modules: Sequence[Path] = (), main: str = "", master: bool = True,
                 wrapper: Sequence[str] = (), as_user: bool = True):
        self.base = base
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=base))
        self.prefix.chmod(0o755)
        (self.prefix / "logs").mkdir()
        self.conf = self.prefix / "nginx.conf"
        self.error_log = self.prefix / "logs" / "error.log"
        self.access_log = self.prefix / "logs" / "access.log"
        self.port = free_port()
        self.upstream = free_port()
        self.workers = workers
        # the module under test unless told otherwise; ["-"]: none
        self.modules = [] if list(modules) == ["-"] else list(modules) or [module_path()]
        self.main = main
        self.master = master
        self.wrapper = list(wrapper)
        self.as_user = as_user and IS_ROOT
        self.proc: Optional[subprocess.Popen] = None
        self.write(http)

    # configuration

    def preamble(self) -> str:
        """Main-context directives every test configuration needs."""
        return "\n".join([
            f"error_log {self.error_log} info;",
            f"pid {self.prefix}/nginx.pid;",
            "daemon off;",
            f"master_process {'on' if self.master else 'off'};",
        ]) + "\n"

    def upstream_server(self) -> str:
        """http-context directives: logs and temp paths in the prefix, and the upstream
        server (nginx itself answering 200 with the request's URI)."""
        return "\n".join([
            "    log_format revledger '$status $revledger_verdict [$revledger_scope] $request_uri';"
            if self.modules else "",
            f"    access_log {self.access_log}{' revledger' if self.modules else ''};",
            f"    client_body_temp_path {self.prefix}/tmp/body;",
            f"    proxy_temp_path {self.prefix}/tmp/proxy;",
            f"    fastcgi_temp_path {self.prefix}/tmp/fastcgi;",
            f"    uwsgi_temp_path {self.prefix}/tmp/uwsgi;",
            f"    scgi_temp_path {self.prefix}/tmp/scgi;",
            "    server {",
            f"        listen 127.0.0.1:{self.upstream};",
            "        location / { return 200 \"upstream $request_uri\\n\"; }",
            "    }",
        ]) + "\n"

    def render(self, http: str) -> str:
        lines = [f"load_module {m};" for m in self.modules]
        if self.as_user:
            lines.append(f"user {WORKER_USER} {WORKER_USER};")
        lines += [
            f"worker_processes {self.workers};",
            self.preamble(),
            self.main,
            "events { worker_connections 256; }",
            "http {",
            self.upstream_server(),
            http.replace("{port}", str(self.port)).replace("{upstream}", str(self.upstream)),
            "}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, http: str) -> None:
        (self.prefix / "tmp").mkdir(exist_ok=True)
        self.conf.write_text(self.render(http))

    def cmd(self, *args: str) -> List[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-e",
                str(self.error_log), *args]

    def test_config(self) -> subprocess.CompletedProcess:
        """`nginx -t` on the current configuration."""
        return subprocess.run(self.cmd("-t"), capture_output=True, text=True, timeout=30)

    # life cycle

    def start(self, timeout: float = 15) -> "Nginx":
        self.stdout = open(self.prefix / "logs" / "stdout", "wb")
        self.proc = subprocess.Popen(self.wrapper + self.cmd(), stdout=self.stdout,
                                     stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(up, f"nginx to listen on {self.port}", timeout=timeout)
        if self.master:
            wait_for(lambda: len(self.worker_pids()) == self.workers,
                     f"{self.workers} workers", timeout=timeout)
        return self

    def reload(self, http: str) -> List[int]:
        """Writes a new configuration and has the running master load it; waits until
        every worker is a new one. Returns the new workers' pids."""
        old = set(self.worker_pids())
        self.write(http)
        out = subprocess.run(self.cmd("-s", "reload"), capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        wait_for(lambda: not (set(self.worker_pids()) & old)
                 and len(self.worker_pids()) == self.workers,
                 "the old workers to give way to new ones")
        return self.worker_pids()

    def stop(self, timeout: float = 30) -> int:
        """Graceful stop (SIGQUIT to our master); returns its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # observation

    def worker_pids(self) -> List[int]:
        """Pids of the master's children (its workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except FileNotFoundError:
                pass
        return pids

    def log(self) -> str:
        text = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
        out = self.prefix / "logs" / "stdout"
        if out.exists():
            text += out.read_text(errors="replace")
        return text

    def get(self, path: str = "/", token: Optional[str] = None, **kw) -> Response:
        return request(self.port, path, token, **kw)


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")
