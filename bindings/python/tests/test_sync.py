"""Fleet sync from Python (docs/SYNC.md): ``Ledger.freshness`` and ``revledger.publish``,
against a real ``redis-server`` and ``revledger sync`` process that each test starts (a
free loopback port, no persistence) and kills at its end. Without the ``redis`` package
or ``redis-server`` those tests are skipped, saying so, unless ``CI`` is set: then they
fail. No sleep stands for synchronisation: every wait polls a condition with a deadline.
Needs `cargo build --release --bins` (scripts/test-all does it)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

import revledger
from revledger import Freshness, InvalidArgument, Ledger, Scope

from support import REPO_ROOT, run_python

CLI = REPO_ROOT / "target" / "release" / "revledger"
STREAM = "revocations"
DEADLINE = 60.0


def wait_until(what: str, cond: Callable[[], bool]) -> None:
    """Polls ``cond`` until it holds; fails naming ``what`` after ``DEADLINE`` seconds."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > DEADLINE:
            pytest.fail(f"timed out after {DEADLINE:.0f} s waiting until {what}")
        time.sleep(0.005)


def unavailable(why: str) -> None:
    """Skips the test, or fails it when CI is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{why}, and CI is set: the sync tests need it "
                    "(scripts/install-deps installs redis-server and the redis package)")
    pytest.skip(why)


def redis_module() -> Any:
    try:
        import redis
    except ImportError:
        unavailable("the redis package is not installed (pip install redis)")
    return redis


class RedisServer:
    """A ``redis-server`` of the test's own on a free loopback port."""

    def __init__(self, tmp: Path, password: Optional[str] = None) -> None:
        self.redis = redis_module()
        if shutil.which("redis-server") is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tmp
        self.password = password
        self.proc: Any = None
        self.launch()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def launch(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                return bool(self.client().ping())
            except self.redis.exceptions.ConnectionError:
                return False

        try:
            wait_until("redis-server answers PING", answers)
        except BaseException:
            self.stop()  # the caller never gets the server to stop
            raise

    def client(self) -> Any:
        return self.redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                                socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class SyncProcess:
    """``revledger sync`` feeding ``ledger``; killed (-9) at the end."""

    def __init__(self, redis_url: str, ledger: Path, *extra: str) -> None:
        if not CLI.exists():
            pytest.fail(f"{CLI} is missing: run `cargo build --release --bins` at the repository root")
        self.log = ledger.with_suffix(f".{time.time_ns()}.sync.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(CLI), "sync", "--redis", redis_url, "--stream", STREAM,
                 "--max-token-lifetime", "86400", str(ledger), *extra],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def start_sync() -> Iterator[Callable[[str, Path], SyncProcess]]:
    started: List[SyncProcess] = []

    def start(redis_url: str, ledger: Path, *extra: str) -> SyncProcess:
        p = SyncProcess(redis_url, ledger, *extra)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
        # Captured: pytest shows it when the test failed.
        print(f"log of revledger sync ({p.log}):\n{p.log.read_text(errors='replace')}")


def reader_of(path: Path) -> Ledger:
    """A reader of a ledger a sync process creates, once the file is there."""
    opened: List[Ledger] = []

    def try_open() -> bool:
        try:
            opened.append(Ledger.open_reader(path))
            return True
        except revledger.RevledgerError:
            return False

    wait_until(f"{path} can be opened", try_open)
    return opened[0]


def id_key(entry_id: str) -> tuple:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


# -- without Redis ---------------------------------------------------------------------


def test_freshness_of_a_ledger_never_synced(writer: Ledger, reader: Ledger) -> None:
    writer.revoke(Scope.ROLE, "acme", "admin", at=2000)  # revoking is not hearing from a stream
    for ledger in (writer, reader):
        f = ledger.freshness()
        assert f == Freshness(last_heard=None, last_id=None)
        assert ledger.last_heard() is None
        assert f.age() is None
        assert f.is_stale(3600)
    reader.close()
    with pytest.raises(revledger.LedgerClosed):
        reader.freshness()
    with pytest.raises(revledger.LedgerClosed):
        reader.last_heard()


def test_freshness_age_and_staleness() -> None:
    f = Freshness(last_heard=1_700_000_000, last_id="1-0")
    assert f.age(now=1_700_000_042) == 42
    assert f.age(now=1_699_999_999) == 0  # a clock behind: never negative
    assert not f.is_stale(10, now=1_700_000_009)
    assert f.is_stale(10, now=1_700_000_011)


@pytest.mark.parametrize(
    "scope, tenant, key, at, kwargs, words",
    [
        ("global", None, "x", 1, {}, "no tenant and no key"),
        (Scope.TENANT, "acme", "x", 1, {}, "no key besides"),
        ("role", "acme", None, 1, {}, "non-empty role key"),
        ("sub", "acme", "k" * 4097, 1, {}, "the limit is 4096"),
        ("tenant", "t" * 4097, None, 1, {}, "tenant is 4097 bytes"),
        ("nonsense", "acme", "x", 1, {}, "unknown scope"),
        (7, "acme", "x", 1, {}, "unknown scope 7"),
        ("role", "acme", "x", "now", {}, None),  # TypeError, below
        ("role", "acme", "x", int(time.time()) + 3600, {}, "a cutoff more than leeway ahead"),
        ("token", "acme", "jti", int(time.time()) + 7200,
         {"max_token_lifetime": 3600, "leeway": 60}, "exp more than max token lifetime + leeway ahead"),
        ("global", None, None, 1, {"reason": "r" * 4097}, "reason is longer than 4096"),
        ("global", None, None, 1, {"max_token_lifetime": 0}, "max_token_lifetime > 0"),
        ("global", None, None, 1, {"stream": ""}, "stream name must be 1 to 4096 bytes"),
    ],
)
def test_publish_refuses_bad_rules_before_connecting(scope: Any, tenant: Any, key: Any, at: Any,
                                                     kwargs: Any, words: Any) -> None:
    # Port 1 on loopback: nothing listens there, so a refusal from the network would be a
    # connection error; these are refused before, without even importing redis.
    stream = kwargs.pop("stream", STREAM)
    if words is None:
        with pytest.raises(TypeError):
            revledger.publish("redis://127.0.0.1:1/", stream, scope, tenant, key, at, **kwargs)
        return
    with pytest.raises(InvalidArgument, match=re.escape(words)):
        revledger.publish("redis://127.0.0.1:1/", stream, scope, tenant, key, at, **kwargs)


def test_publish_without_the_redis_package_says_how_to_get_it() -> None:
    # A fresh interpreter in which `import redis` fails.
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import revledger\n"
        "try:\n"
        "    revledger.publish('redis://127.0.0.1:1/', 's', 'tenant', 'acme', None, 1)\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert "ImportError: revledger.publish needs the redis package" in out.stdout
    assert "pip install 'revledger[sync]'" in out.stdout


# -- against redis-server and revledger sync ---------------------------------------------


def test_publish_sync_read_and_freshness(redis_server: RedisServer,
                                         start_sync: Callable[[str, Path], SyncProcess],
                                         tmp_path: Path) -> None:
    path = tmp_path / "host.ledger"
    sync = start_sync(redis_server.url, path)
    with reader_of(path) as gateway:
        # Connected to an empty stream: heard from it, no entry applied yet.
        wait_until("the ledger has heard from the stream", lambda: gateway.last_heard() is not None)
        assert gateway.freshness().last_id is None

        cutoff = revledger.now_cutoff()
        assert not gateway.check("acme", "john", ["super_admin"], issued_at=cutoff - 60).revoked
        id1 = revledger.publish(redis_server.url, STREAM, Scope.ROLE, "acme", "super_admin", cutoff,
                                reason="super_admin lost billing:write", origin="pytest")
        wait_until("the gateway sees john revoked",
                   lambda: gateway.check("acme", "john", ["super_admin"], issued_at=cutoff - 60).revoked)
        v = gateway.check("acme", "john", ["super_admin"], issued_at=cutoff - 60)
        assert (v.scope, v.cutoff) == (Scope.ROLE, cutoff)
        wait_until("the position is the entry", lambda: gateway.freshness().last_id == id1)
        entry = redis_server.client().xrange(STREAM, id1, id1)
        assert entry[0][1] == {b"scope": b"role", b"tenant": b"acme", b"key": b"super_admin",
                               b"at": str(cutoff).encode(), b"reason": b"super_admin lost billing:write",
                               b"origin": b"pytest"}

        # Binary-safe, through a client the caller keeps.
        client = redis_server.client()
        tenant, sub = b"t\x00\xff\r\n", b"user\r\n$3\r\n*"
        id2 = revledger.publish(client, STREAM, "subject", tenant, sub, 1_700_000_000)
        assert id_key(id2) > id_key(id1)
        wait_until("the gateway sees the binary subject revoked",
                   lambda: gateway.check(tenant, sub, issued_at=1_699_999_999).revoked)
        assert not gateway.check(tenant, b"user", issued_at=1).revoked
        wait_until("freshness names the second entry", lambda: gateway.freshness().last_id == id2)
        assert b"reason" not in client.xrange(STREAM, id2, id2)[0][1]

        # A quiet stream still advances "last heard" (heartbeats).
        before = gateway.freshness().last_heard
        assert before is not None
        wait_until("last heard advances on a quiet stream",
                   lambda: (gateway.last_heard() or 0) > before)

        # The sync process dies: the ledger keeps answering; its freshness stops.
        sync.kill()
        f = gateway.freshness()
        assert f.last_id == id2 and f.last_heard is not None
        assert gateway.check("acme", "john", ["super_admin"], issued_at=cutoff - 60).revoked
        assert not f.is_stale(10, now=f.last_heard + 9)
        assert f.is_stale(10, now=f.last_heard + 11)


def test_publish_trims_by_age(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.xadd(STREAM, {"scope": "global", "at": "5"}, id="1000-0")  # an entry from 1970
    kept = revledger.publish(redis_server.url, STREAM, "tenant", "acme", None, 1_700_000_000, trim=False)
    assert [e[0].decode() for e in client.xrange(STREAM)] == ["1000-0", kept]
    last = revledger.publish(redis_server.url, STREAM, "tenant", "acme", None, 1_700_000_000,
                             max_token_lifetime=3600, leeway=60)
    # Exact trimming drops the old entry even in a stream this small (MINID ~ would not).
    assert [e[0].decode() for e in client.xrange(STREAM)] == [kept, last]
    # The default trims too (a day and five minutes).
    client.xadd("other", {"scope": "global", "at": "5"}, id="2000-0")
    only = revledger.publish(client, "other", "tenant", "acme", None, 1_700_000_000)
    assert [e[0].decode() for e in client.xrange("other")] == [only]


def test_publish_with_a_password_and_a_database(tmp_path: Path,
                                                start_sync: Callable[[str, Path], SyncProcess]) -> None:
    server = RedisServer(tmp_path, password="s3cret")
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        path = tmp_path / "host.ledger"
        start_sync(url, path)
        with reader_of(path) as gateway:
            revledger.publish(url, STREAM, "session", "acme", "sid-7", 1_700_000_000)
            wait_until("sync (on db 3) applies the rule",
                       lambda: gateway.check("acme", "x", session="sid-7", issued_at=1).revoked)
        with pytest.raises(server.redis.exceptions.AuthenticationError):
            revledger.publish(f"redis://:wrong@127.0.0.1:{server.port}/3", STREAM, "global", None, None, 1)
    finally:
        server.stop()


def test_signed_publish_and_a_degraded_ledger(redis_server: RedisServer, start_sync: Any, tmp_path: Path) -> None:
    """A Python publisher signs with an Ed25519 key (``cryptography``); sync applies what
    that key may publish, refuses the rest, and the ledger reports itself degraded."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    import base64

    private = Ed25519PrivateKey.generate()
    key_file = tmp_path / "logout.key"
    key_file.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    trusted = tmp_path / "trusted"
    trusted.write_text(f"logout {base64.b64encode(raw).decode()} session,token\n")
    ledger = tmp_path / "host.ledger"
    start_sync(redis_server.url, ledger, "--trusted-keys", str(trusted))
    wait_until("the ledger exists", ledger.exists)
    gw = Ledger.open_reader(ledger)
    try:
        key = revledger.load_signing_key(key_file)
        revledger.publish(redis_server.url, STREAM, "session", "acme", "sid-1", 100,
                          signing_key=("logout", key))
        wait_until("the signed rule is applied",
                   lambda: gw.check("acme", "x", [], session="sid-1", issued_at=99).revoked)
        assert gw.freshness().degraded == 0
        assert not gw.freshness().is_stale(60)
        last = revledger.publish(redis_server.url, STREAM, "global", None, None, 100,
                                 signing_key=("logout", key))
        wait_until("the refusal marks the ledger degraded",
                   lambda: gw.freshness().last_id == last and gw.degraded() != 0)
        f = gw.freshness()
        assert f.degraded == revledger.DEGRADED_REFUSED and f.is_degraded
        assert f.is_stale(3600), "a degraded ledger is stale, however recent"
        assert not gw.check("acme", "bruce", [], issued_at=1).revoked
        with pytest.raises(InvalidArgument):
            revledger.publish(redis_server.url, STREAM, "session", "acme", "s", 1,
                              signing_key=("bad kid", key))
    finally:
        gw.close()


def test_signed_message_layout() -> None:
    got = revledger.signed_message("s", Scope.ROLE, "acme", "admin", -2)
    want = (b"revledger-rule-v1\x00" + bytes([1, 0, 0, 0]) + b"s" + bytes([3, 4, 0, 0, 0]) + b"acme"
            + bytes([5, 0, 0, 0]) + b"admin" + (-2).to_bytes(8, "little", signed=True))
    assert got == want


def _test_pki(tmp: Path) -> dict:
    """A CA and a certificate for 127.0.0.1 (``cryptography``), as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revledger python test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = {
        "ca": (tmp / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": (tmp / "redis.pem", cert.public_bytes(serialization.Encoding.PEM)),
        "key": (tmp / "redis.key", key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {name: str(path) for name, (path, _) in files.items()}


def test_publish_over_tls_with_an_acl_user_that_may_only_append(start_sync: Any, tmp_path: Path) -> None:
    """Production Redis from Python: a redis-py client over TLS (the server verified
    against the test's CA) as an ACL user that may only append; sync reads with a user
    that may only read, its password from a file."""
    redis = redis_module()
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    pki = _test_pki(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "redis.conf"
    conf.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {tmp_path}\n"
        f"tls-cert-file {pki['cert']}\ntls-key-file {pki['key']}\ntls-ca-cert-file {pki['ca']}\n"
        "tls-auth-clients no\nuser default off\n"
        f"user syncer on >py-sync-pw resetkeys ~{STREAM} resetchannels -@all +xread +xinfo|stream +ping\n"
        f"user publisher on >py-pub-pw resetkeys ~{STREAM} resetchannels -@all +xadd +ping\n")
    server = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=pki["ca"],
                             username="publisher", password="py-pub-pw", socket_timeout=5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                return False

        wait_until("the TLS redis-server answers", answers)
        pw = tmp_path / "sync.pw"
        pw.write_text("py-sync-pw\n")
        ledger = tmp_path / "host.ledger"
        sync = start_sync(f"rediss://syncer@127.0.0.1:{port}/", ledger,
                          "--redis-password-file", str(pw), "--tls-ca", pki["ca"])
        wait_until("the ledger exists", ledger.exists)
        gw = Ledger.open_reader(ledger)
        try:
            revledger.publish(client, STREAM, "subject", "acme", "john", 100)
            wait_until("the rule published over TLS is applied",
                       lambda: gw.check("acme", "john", [], issued_at=99).revoked)
            with pytest.raises(redis.exceptions.ResponseError, match="no permissions"):
                client.xrange(STREAM)
            assert "py-sync-pw" not in sync.log.read_text()
        finally:
            gw.close()
        client.close()
    finally:
        server.kill()
        server.wait()
