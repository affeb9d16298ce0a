//! Fleet sync against Redis as it runs in production (docs/SYNC.md §6): TLS with the
//! server verified against a CA the test generates, mutual TLS, ACL users that may only
//! read (sync) or only append (publisher), passwords from files, a database number, and a
//! Sentinel primary with a replica failed over while publishing. Every test starts its own
//! `redis-server` / `redis-sentinel` processes on free loopback ports and kills them at
//! the end; `redis-server` must be installed (scripts/install-deps), built with TLS.
//!
//! No sleep stands for synchronisation: every wait polls a condition against a deadline.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use revledger::{Ledger, Rule, Scope, StreamId, StreamPosition, Token, Verdict};
use revledger_cli::sync::{Publisher, RedisConfig, Signer, SyncError, Trim};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const STREAM: &str = "revocations";
const DEADLINE: Duration = Duration::from_secs(60);

const SYNC_PW: &str = "sync-s3cret-pw";
const PUB_PW: &str = "pub-s3cret-pw";
const ADMIN_PW: &str = "admin-s3cret-pw";

/// Polls `cond` until it holds; fails the test naming `what` after `DEADLINE`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    // The kernel may hand the same ephemeral port out again once its listener is closed:
    // never give one twice in this process (two servers of one setup on one port).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` with the config file `conf`, its output in `log`.
fn spawn(program: &str, conf: &Path, log: &Path) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    Proc(
        Command::new(program)
            .arg(conf)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (scripts/install-deps installs it): {e}")),
    )
}

/// A test PKI: a CA, a server certificate for 127.0.0.1, a client certificate.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Another CA, which signed nothing the server presents.
    other_ca: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let ca_params = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name.push(DnType::CommonName, name);
        p
    };
    let ca =
        CertifiedIssuer::self_signed(ca_params("revledger test CA"), KeyPair::generate().unwrap())
            .unwrap();
    let other = CertifiedIssuer::self_signed(ca_params("another CA"), KeyPair::generate().unwrap())
        .unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.clone()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["revledger-sync".into()]);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other.pem()),
    }
}

/// ACL users: `syncer` may only read the stream, `publisher` only append to it.
fn acl_lines() -> String {
    format!(
        "user default off\n\
         user admin on >{ADMIN_PW} ~* &* +@all\n\
         user syncer on >{SYNC_PW} resetkeys ~{STREAM} resetchannels -@all +xread +xinfo|stream +select +ping\n\
         user publisher on >{PUB_PW} resetkeys ~{STREAM} resetchannels -@all +xadd +wait +select +ping\n"
    )
}

/// A `redis-server` with TLS only (no plain port), ACL users, and mutual TLS `optional`
/// or `yes`.
struct TlsRedis {
    _proc: Proc,
    port: u16,
    pki: Pki,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(client_auth: &str) -> TlsRedis {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(dir.path());
        let port = free_port();
        let conf = dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n\
                 dir {}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients {client_auth}\n{}",
                dir.path().display(),
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca.display(),
                acl_lines()
            ),
        )
        .unwrap();
        let proc = spawn("redis-server", &conf, &dir.path().join("redis.log"));
        let r = TlsRedis {
            _proc: proc,
            port,
            pki,
            dir,
        };
        let mut last = String::new();
        let start = Instant::now();
        while let Err(e) = r.admin_conn() {
            last = e.to_string();
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "the TLS redis-server does not answer: {last}\n{}",
                    std::fs::read_to_string(r.dir.path().join("redis.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = last;
        r
    }

    fn url(&self, user: &str) -> String {
        format!("rediss://{user}@127.0.0.1:{}/3", self.port)
    }

    fn config(&self, user: &str, password: &str) -> RedisConfig {
        let mut c = RedisConfig::new(self.url(user));
        let pw = self.dir.path().join(format!("{user}.pw"));
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        c.password_file = Some(pw);
        c.ca_file = Some(self.pki.ca.clone());
        c.client_cert = Some(self.pki.client_cert.clone());
        c.client_key = Some(self.pki.client_key.clone());
        c
    }

    fn admin_conn(&self) -> Result<redis::Connection, SyncError> {
        Ok(self.config("admin", ADMIN_PW).connect()?.0)
    }
}

/// A `revledger sync` process with its stderr in a file.
struct SyncProc {
    proc: Proc,
    log: PathBuf,
}

impl SyncProc {
    fn start(ledger: &Path, args: &[String]) -> SyncProc {
        let log = ledger.with_extension("sync.log");
        let child = Command::new(BIN)
            .arg("sync")
            .arg(ledger)
            .args(["--max-token-lifetime", "86400"])
            .args(if args.iter().any(|a| a == "--stream") {
                &[][..]
            } else {
                &["--stream", STREAM][..]
            })
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start revledger sync");
        SyncProc {
            proc: Proc(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(None))
    }
}

fn reader(path: &Path) -> Ledger {
    let mut l = None;
    wait_until(&format!("{} exists", path.display()), || {
        l = Ledger::open_reader(path).ok();
        l.is_some()
    });
    l.unwrap()
}

fn revoked_subject(l: &Ledger, sub: &[u8], cutoff: i64) -> bool {
    let t = Token {
        tenant: b"acme",
        subject: sub,
        issued_at: cutoff - 1,
        ..Token::default()
    };
    l.check(&t).unwrap()
        == Verdict::Revoked {
            scope: Scope::Subject,
            cutoff,
        }
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

fn tls_args(r: &TlsRedis, user: &str, pw_file: &Path, ca: &Path) -> Vec<String> {
    vec![
        "--redis".into(),
        r.url(user),
        "--redis-password-file".into(),
        s(pw_file),
        "--tls-ca".into(),
        s(ca),
        "--tls-cert".into(),
        s(&r.pki.client_cert),
        "--tls-key".into(),
        s(&r.pki.client_key),
    ]
}

#[test]
fn tls_and_acl_users_one_reads_one_appends_and_no_password_is_printed() {
    let redis = TlsRedis::start("yes");
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("a.ledger");
    let sync_cfg = redis.config("syncer", SYNC_PW);
    let sync = SyncProc::start(
        &ledger,
        &tls_args(
            &redis,
            "syncer",
            sync_cfg.password_file.as_ref().unwrap(),
            &redis.pki.ca,
        ),
    );
    let ra = reader(&ledger);
    wait_until("sync hears from the TLS redis", || {
        ra.last_heard().unwrap().is_some()
    });

    // The publisher's user, through the library: password from a file, database 3.
    let pub_cfg = redis.config("publisher", PUB_PW);
    let mut p = Publisher::connect_with(&pub_cfg, STREAM, Trim::by_age(86_400, 300)).unwrap();
    let id = p
        .publish(&Rule::new(Scope::Subject, b"acme", b"john", 1_700_000_000))
        .unwrap();
    wait_until("the rule reaches the ledger over TLS", || {
        revoked_subject(&ra, b"john", 1_700_000_000)
    });
    wait_until("the position is the entry's", || {
        ra.stream_position().unwrap().map(|p| p.last_id) == Some(id)
    });

    // The command line, the password in the URL this time: not echoed.
    let out = Command::new(BIN)
        .args(["publish", "--stream", STREAM, "--redis"])
        .arg(format!(
            "rediss://publisher:{PUB_PW}@127.0.0.1:{}/3",
            redis.port
        ))
        .arg("--tls-ca")
        .arg(&redis.pki.ca)
        .arg("--tls-cert")
        .arg(&redis.pki.client_cert)
        .arg("--tls-key")
        .arg(&redis.pki.client_key)
        .args(["subject", "--tenant", "acme", "mike", "--at", "1700000100"])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains(PUB_PW), "{printed}");
    wait_until("the CLI's rule arrives", || {
        revoked_subject(&ra, b"mike", 1_700_000_100)
    });

    // Each user can do its part and nothing else.
    let (mut sc, _) = sync_cfg.connect().unwrap();
    let e = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg(&["scope", "global", "at", "1"])
        .query::<String>(&mut sc)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
    let (mut pc, _) = pub_cfg.connect().unwrap();
    let e = redis::cmd("XREAD")
        .arg("STREAMS")
        .arg(STREAM)
        .arg("0")
        .query::<redis::Value>(&mut pc)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");
    let e = redis::cmd("XADD")
        .arg("other-key")
        .arg("*")
        .arg(&["scope", "global", "at", "1"])
        .query::<String>(&mut pc)
        .unwrap_err();
    assert_eq!(e.code(), Some("NOPERM"), "{e}");

    // The data went to database 3, not 0.
    let (mut admin, _) = redis.config("admin", ADMIN_PW).connect().unwrap();
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut admin).unwrap();
    assert_eq!(len, 2);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut admin).unwrap();
    let len: i64 = redis::cmd("XLEN").arg(STREAM).query(&mut admin).unwrap();
    assert_eq!(len, 0);

    let log = sync.log();
    assert!(log.contains("rediss://syncer:***@127.0.0.1"), "{log}");
    for secret in [SYNC_PW, PUB_PW, ADMIN_PW] {
        assert!(!log.contains(secret), "a password reached the log: {log}");
    }
}

#[test]
fn a_server_the_ca_did_not_sign_a_wrong_password_or_no_client_certificate_is_refused() {
    let redis = TlsRedis::start("yes");
    let dir = tempfile::tempdir().unwrap();
    let pw = redis.config("syncer", SYNC_PW).password_file.unwrap();

    // The server's certificate checked against another CA: never connects.
    let ledger = dir.path().join("wrong-ca.ledger");
    let mut sync = SyncProc::start(
        &ledger,
        &tls_args(&redis, "syncer", &pw, &redis.pki.other_ca),
    );
    wait_until("sync reports the certificate", || {
        sync.log().matches("redis unreachable").count() >= 2
    });
    let log = sync.log();
    assert!(
        log.to_lowercase().contains("certificate") || log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(sync.is_running(), "it retries: {log}");
    let rl = reader(&ledger);
    assert_eq!(rl.last_heard().unwrap(), None, "it never heard from redis");

    // A wrong password, from the file: refused, and not printed.
    let bad = dir.path().join("bad.pw");
    std::fs::write(&bad, "not-the-password\n").unwrap();
    let ledger = dir.path().join("wrong-pw.ledger");
    let sync = SyncProc::start(&ledger, &tls_args(&redis, "syncer", &bad, &redis.pki.ca));
    wait_until("sync reports the refused password", || {
        sync.log().contains("redis unreachable")
    });
    let log = sync.log();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(!log.contains("not-the-password"), "{log}");

    // Mutual TLS required: without a client certificate the handshake fails.
    let mut c = RedisConfig::new(redis.url("publisher"));
    c.password_file = Some(redis.config("publisher", PUB_PW).password_file.unwrap());
    c.ca_file = Some(redis.pki.ca.clone());
    c.connect_timeout = Duration::from_secs(2);
    let e = Publisher::connect_with(&c, STREAM, Trim::None)
        .err()
        .expect("no client certificate, no connection");
    assert!(matches!(e, SyncError::Redis(_)), "{e}");

    // And a plain redis:// URL cannot talk to the TLS port.
    let plain = RedisConfig {
        url: format!("redis://127.0.0.1:{}/", redis.port),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..RedisConfig::new("")
    };
    assert!(Publisher::connect_with(&plain, STREAM, Trim::None).is_err());
}

// ---------------------------------------------------------------------------------------
// Sentinel: a primary, a replica, two sentinels; a failover forced while publishing.
// ---------------------------------------------------------------------------------------

const MASTER: &str = "revmaster";

struct SentinelSetup {
    _procs: Vec<Proc>,
    primary: u16,
    replica: u16,
    sentinels: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn plain_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

fn sentinel_master(port: u16) -> Option<u16> {
    let mut c = plain_conn(port).ok()?;
    let addr: Vec<String> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER)
        .query(&mut c)
        .ok()?;
    addr.get(1)?.parse().ok()
}

/// Whether the sentinel at `port` knows a replica of the primary in good standing.
fn sentinel_sees_replica(port: u16, replica: u16) -> bool {
    let Ok(mut c) = plain_conn(port) else {
        return false;
    };
    let Ok(replicas) = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg(MASTER)
        .query::<Vec<std::collections::HashMap<String, String>>>(&mut c)
    else {
        return false;
    };
    replicas.iter().any(|r| {
        r.get("port").map(String::as_str) == Some(&replica.to_string())
            && r.get("flags").map(String::as_str) == Some("slave")
            && r.get("master-link-status").map(String::as_str) == Some("ok")
    })
}

impl SentinelSetup {
    fn start() -> SentinelSetup {
        let dir = tempfile::tempdir().unwrap();
        let (primary, replica) = (free_port(), free_port());
        let mut procs = Vec::new();
        for (port, extra) in [
            (primary, String::new()),
            (replica, format!("replicaof 127.0.0.1 {primary}\n")),
        ] {
            let d = dir.path().join(format!("r{port}"));
            std::fs::create_dir(&d).unwrap();
            let conf = d.join("redis.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{extra}",
                    d.display()
                ),
            )
            .unwrap();
            procs.push(spawn("redis-server", &conf, &d.join("log")));
        }
        wait_until("the replica is in sync with the primary", || {
            plain_conn(replica)
                .and_then(|mut c| {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query::<String>(&mut c)
                })
                .is_ok_and(|i| i.contains("master_link_status:up"))
        });
        let sentinels = vec![free_port(), free_port()];
        for &port in &sentinels {
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 1\n\
                     sentinel down-after-milliseconds {MASTER} 2000\n\
                     sentinel failover-timeout {MASTER} 10000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            procs.push(spawn(
                "redis-sentinel",
                &conf,
                &dir.path().join(format!("sentinel-{port}.log")),
            ));
        }
        for &port in &sentinels {
            wait_until("each sentinel sees the replica", || {
                sentinel_master(port) == Some(primary) && sentinel_sees_replica(port, replica)
            });
        }
        SentinelSetup {
            _procs: procs,
            primary,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    fn sentinel_list(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }
}

#[test]
fn sentinel_failover_while_publishing_loses_nothing() {
    let setup = SentinelSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("a.ledger");
    // The first sentinel address is dead: discovery goes on to the next ones.
    let mut sentinels = vec![format!("127.0.0.1:{}", free_port())];
    sentinels.extend(setup.sentinel_list());
    let sync = SyncProc::start(
        &ledger,
        &[
            "--redis".into(),
            format!("redis://{MASTER}/"),
            "--sentinel".into(),
            sentinels.join(","),
            "--connect-timeout".into(),
            "2".into(),
        ],
    );
    let ra = reader(&ledger);
    wait_until("sync hears from the primary", || {
        ra.last_heard().unwrap().is_some()
    });
    assert!(sync.log().contains(&format!("127.0.0.1:{}", setup.primary)));

    // A publisher that waits for one replica and retries until each rule is acknowledged.
    const N: usize = 400;
    const FAILOVER_AT: usize = 100;
    let mut cfg = RedisConfig::new(format!("redis://{MASTER}/"));
    cfg.sentinels = sentinels.clone();
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.read_timeout = Duration::from_secs(2);
    let (at_failover, failover_rx) = std::sync::mpsc::channel::<()>();
    let (failed_over, go_on) = std::sync::mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        let mut p: Option<Publisher> = None;
        let mut acknowledged = Vec::new();
        let mut retries = 0;
        for i in 0..N {
            if i == FAILOVER_AT {
                at_failover.send(()).unwrap();
            }
            if i == FAILOVER_AT + 20 {
                // Keep publishing through the failover, then make sure some rules come
                // after it.
                go_on.recv().unwrap();
            }
            let rule_key = format!("user-{i}");
            let rule = Rule::new(
                Scope::Subject,
                b"acme",
                rule_key.as_bytes(),
                1_700_000_000 + i as i64,
            );
            let start = Instant::now();
            loop {
                assert!(start.elapsed() < DEADLINE, "rule {i} never acknowledged");
                let pubr = match p.as_mut() {
                    Some(p) => p,
                    None => {
                        match Publisher::connect_with(&cfg, STREAM, Trim::by_age(86_400, 300)) {
                            Ok(np) => p.insert(np.wait_for_replicas(1, Duration::from_millis(200))),
                            Err(_) => {
                                retries += 1;
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        }
                    }
                };
                match pubr.publish(&rule) {
                    Ok(_) => break,
                    Err(_) => {
                        retries += 1;
                        p = None; // reconnect through the sentinels
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            acknowledged.push(i);
        }
        (acknowledged, retries)
    });

    failover_rx.recv().unwrap();
    let mut sc = plain_conn(setup.sentinels[0]).unwrap();
    let _: String = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(MASTER)
        .query(&mut sc)
        .unwrap();
    for &port in &setup.sentinels {
        wait_until(
            "every sentinel names the replica as the new primary",
            || sentinel_master(port) == Some(setup.replica),
        );
    }
    wait_until("the new primary takes writes", || {
        plain_conn(setup.replica)
            .and_then(|mut c| redis::cmd("ROLE").query::<redis::Value>(&mut c))
            .is_ok_and(|v| format!("{v:?}").contains("master"))
    });
    failed_over.send(()).unwrap();
    let (acknowledged, _retries) = publisher.join().unwrap();
    assert_eq!(acknowledged.len(), N);

    wait_until("every acknowledged rule is in the ledger", || {
        acknowledged.iter().all(|&i| {
            revoked_subject(
                &ra,
                format!("user-{i}").as_bytes(),
                1_700_000_000 + i as i64,
            )
        })
    });
    let log = sync.log();
    assert!(
        log.contains(&format!("127.0.0.1:{}", setup.replica)),
        "sync follows the failover to the new primary: {log}"
    );
    assert_eq!(ra.stats(0).unwrap().live_keys, N as u64);
    let pos = ra.stream_position().unwrap().unwrap();
    assert!(pos.last_id > StreamId::ZERO);
}

// ---------------------------------------------------------------------------------------
// Signed rules and honest freshness, on a plain redis-server.
// ---------------------------------------------------------------------------------------

/// A plain `redis-server` on a free loopback port.
struct PlainRedis {
    _proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PlainRedis {
    fn start() -> PlainRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let proc = spawn("redis-server", &conf, &dir.path().join("log"));
        wait_until("redis-server answers", || plain_conn(port).is_ok());
        PlainRedis {
            _proc: proc,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn xadd(&self, fields: &[(&str, &[u8])]) -> StreamId {
        let mut c = plain_conn(self.port).unwrap();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(STREAM).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        StreamId::parse(cmd.query::<String>(&mut c).unwrap().as_bytes()).unwrap()
    }
}

fn keygen(dir: &Path, kid: &str, scopes: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{kid}.key"));
    let out = Command::new(BIN)
        .arg("keygen")
        .arg(&key)
        .args(["--key-id", kid, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    (key, String::from_utf8(out.stdout).unwrap())
}

fn publish_cli(redis: &PlainRedis, extra: &[&str], rule: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["publish", "--redis", &redis.url(), "--stream", STREAM])
        .args(extra)
        .args(rule)
        .output()
        .unwrap()
}

#[test]
fn only_rules_signed_by_trusted_keys_for_their_scopes_are_applied_and_the_rest_degrades_the_ledger()
{
    let redis = PlainRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let (iam_key, iam_line) = keygen(dir.path(), "iam", "*");
    let (logout_key, logout_line) = keygen(dir.path(), "logout", "session,token");
    let trusted = dir.path().join("trusted-keys");
    std::fs::write(
        &trusted,
        format!("# kid key scopes\n{iam_line}{logout_line}"),
    )
    .unwrap();
    let ledger = dir.path().join("a.ledger");
    let args = [
        "--redis".to_string(),
        redis.url(),
        "--trusted-keys".into(),
        s(&trusted),
    ];
    let sync = SyncProc::start(&ledger, &args);
    let ra = reader(&ledger);
    wait_until("sync hears from redis", || {
        ra.last_heard().unwrap().is_some()
    });
    assert_eq!(ra.degraded().unwrap(), 0);

    let sign = |key: &Path, kid: &str| {
        vec![
            "--sign-key".to_string(),
            s(key),
            "--key-id".into(),
            kid.into(),
        ]
    };
    let iam = sign(&iam_key, "iam");
    let logout = sign(&logout_key, "logout");
    let run = |extra: &[String], rule: &[&str]| {
        let e: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = publish_cli(&redis, &e, rule);
        assert!(out.status.success(), "{out:?}");
    };
    // Signed by a trusted key for its scopes: applied.
    run(
        &iam,
        &["subject", "--tenant", "acme", "john", "--at", "100"],
    );
    run(
        &logout,
        &["session", "--tenant", "acme", "sid-1", "--at", "100"],
    );
    wait_until("signed rules are applied", || {
        revoked_subject(&ra, b"john", 100)
    });
    assert_eq!(ra.degraded().unwrap(), 0, "nothing refused yet");

    // The logout key may not publish global: refused, as are unsigned and forged entries.
    run(&logout, &["global", "--at", "100"]);
    redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"unsigned"),
        ("at", b"100"),
    ]);
    let forged = Signer::generate("iam").unwrap(); // the right name, another key
    let rule = Rule::new(Scope::Subject, b"acme", b"forged", 100);
    let sig = forged.sign(STREAM.as_bytes(), &rule);
    redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"forged"),
        ("at", b"100"),
        ("kid", b"iam"),
        ("sig", sig.as_bytes()),
    ]);
    // Through the library: a Publisher signing with the iam key, read from its file.
    let signer = Signer::from_pem_file("iam", &iam_key).unwrap();
    let last = Publisher::connect(&redis.url(), STREAM, Trim::by_age(86_400, 300))
        .unwrap()
        .sign_with(signer)
        .publish(&Rule::new(Scope::Subject, b"acme", b"after", 100))
        .unwrap();
    wait_until("the entry after the refused ones is applied", || {
        revoked_subject(&ra, b"after", 100)
    });
    wait_until("the position is past every entry", || {
        ra.stream_position().unwrap().map(|p| p.last_id) == Some(last)
    });
    let everyone = Token {
        tenant: b"acme",
        subject: b"bruce",
        issued_at: 50,
        ..Token::default()
    };
    assert_eq!(
        ra.check(&everyone).unwrap(),
        Verdict::Valid,
        "no global rule"
    );
    for k in [&b"unsigned"[..], b"forged"] {
        assert!(!revoked_subject(&ra, k, 100), "{k:?} applied");
    }
    assert_eq!(ra.degraded().unwrap(), StreamPosition::REFUSED);
    wait_until("the log names each refusal", || {
        sync.log().matches("refused entry").count() == 3
    });
    let log = sync.log();
    for why in [
        "may publish session,token rules, not global",
        "unsigned entry",
        "bad signature",
    ] {
        assert!(log.contains(why), "log lacks {why:?}: {log}");
    }
    assert!(log.contains("DEGRADED"), "{log}");

    // `stats` says so; a restart keeps it; `--resolve` (after a resync) clears it.
    let stats = Command::new(BIN)
        .arg("stats")
        .arg(&ledger)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(
        text.contains("DEGRADED: entries were refused for their signature"),
        "{text}"
    );
    drop(sync.proc);
    let sync = SyncProc::start(&ledger, &args);
    wait_until("the restarted sync warns", || {
        sync.log().contains("is DEGRADED")
    });
    assert_eq!(ra.degraded().unwrap(), StreamPosition::REFUSED);
    drop(sync);
    let mut resolve_args = args.to_vec();
    resolve_args.push("--resolve".into());
    let sync = SyncProc::start(&ledger, &resolve_args);
    wait_until("--resolve clears the degraded state", || {
        ra.degraded().unwrap() == 0
    });
    wait_until("and says so", || {
        sync.log().contains("resolved by the operator")
    });
    assert!(
        revoked_subject(&ra, b"john", 100),
        "resolving changes no rule"
    );
    // Its rewind has read the refused entries again (they are the last seconds before
    // the position) before it applies a later one: they do not mark the ledger again.
    run(
        &iam,
        &["subject", "--tenant", "acme", "later", "--at", "100"],
    );
    wait_until("a rule published after the resolve is applied", || {
        revoked_subject(&ra, b"later", 100)
    });
    assert_eq!(ra.degraded().unwrap(), 0, "{}", sync.log());
}

#[test]
fn malformed_entries_and_a_stream_trimmed_past_the_position_degrade_the_ledger_old_trims_do_not() {
    let redis = PlainRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--redis".to_string(),
        redis.url(),
        "--rewind".into(),
        "0".into(),
    ];

    // A malformed entry: skipped, and the ledger says it may lack a rule.
    let a = dir.path().join("a.ledger");
    let sa = SyncProc::start(&a, &args);
    let ra = reader(&a);
    redis.xadd(&[("scope", b"subject"), ("tenant", b"acme"), ("at", b"10")]);
    redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"ok"),
        ("at", b"10"),
    ]);
    wait_until("the good entry is applied", || {
        revoked_subject(&ra, b"ok", 10)
    });
    assert_eq!(ra.degraded().unwrap(), StreamPosition::SKIPPED);
    assert!(sa.log().contains("skipped malformed entry"));
    drop(sa);

    // Host b applies what is there, goes away; entries are published and trimmed
    // (XTRIM MAXLEN 1) before it comes back: rules it never saw are gone.
    let b = dir.path().join("b.ledger");
    let sb = SyncProc::start(&b, &args);
    let rb = reader(&b);
    let seen = redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"seen"),
        ("at", b"10"),
    ]);
    wait_until("b reaches the entry", || {
        rb.stream_position().unwrap().map(|p| p.last_id) == Some(seen)
    });
    drop(sb);
    assert_eq!(
        rb.degraded().unwrap(),
        StreamPosition::SKIPPED,
        "b read the malformed one too"
    );
    let lost = redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"lost"),
        ("at", b"10"),
    ]);
    let kept = redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"kept"),
        ("at", b"10"),
    ]);
    let mut c = plain_conn(redis.port).unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg(STREAM)
        .arg("MAXLEN")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let sb = SyncProc::start(&b, &args);
    wait_until("b applies what is left", || {
        revoked_subject(&rb, b"kept", 10)
    });
    assert!(!revoked_subject(&rb, b"lost", 10));
    assert_eq!(
        rb.degraded().unwrap(),
        StreamPosition::SKIPPED | StreamPosition::TRIMMED,
        "{}",
        sb.log()
    );
    let log = sb.log();
    assert!(
        lost > seen && log.contains("were trimmed from the stream"),
        "{log}"
    );
    assert!(log.contains("are lost"), "{log}");
    assert_eq!(rb.stream_position().unwrap().unwrap().last_id, kept);

    // Host c was away longer than every trimmed rule could matter: a warning, no mark.
    let old = Command::new(BIN)
        .args(["create"])
        .arg(dir.path().join("c.ledger"))
        .args(["--max-token-lifetime", "3600", "--leeway", "60"])
        .output()
        .unwrap();
    assert!(old.status.success(), "{old:?}");
    let c_path = dir.path().join("c.ledger");
    let old_stream = "old-stream";
    let mut conn = plain_conn(redis.port).unwrap();
    let now_ms = revledger::unix_now_floor() as u64 * 1000;
    let now_s = (now_ms / 1000).to_string();
    let cut = now_ms as i64 / 1000;
    // Entries of three days ago (trimmed before c reads them) and of two (kept): all
    // older than c's max token lifetime + 2 x leeway (86400 + 120 s, as sync opens it).
    for (key, age_s) in [
        ("old-1", 3 * 86_400u64),
        ("old-2", 3 * 86_400 - 60),
        ("kept", 2 * 86_400),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(old_stream)
            .arg(format!("{}-0", now_ms - age_s * 1000))
            .arg(&[
                "scope", "subject", "tenant", "acme", "key", key, "at", &now_s,
            ])
            .query(&mut conn)
            .unwrap();
    }
    // Trim the two old entries (both older than 3600 + 2 x 60 s) past c's position.
    let _: i64 = redis::cmd("XTRIM")
        .arg(old_stream)
        .arg("MAXLEN")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    {
        let w = Ledger::open_writer(&c_path, &revledger::WriterOptions::default()).unwrap();
        w.revoke_batch_at_position(
            &[],
            &StreamPosition::new(old_stream, StreamId::new(now_ms - 4 * 86_400 * 1000, 0), 1),
        )
        .unwrap();
        w.sync().unwrap();
    }
    let sc = SyncProc::start(
        &c_path,
        &[
            "--redis".to_string(),
            redis.url(),
            "--rewind".into(),
            "0".into(),
            "--stream".into(),
            old_stream.into(),
        ],
    );
    let rc = reader(&c_path);
    let start = Instant::now();
    while !revoked_subject(&rc, b"kept", cut) {
        assert!(
            start.elapsed() < DEADLINE,
            "c never applies what is left: {}",
            sc.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!revoked_subject(&rc, b"old-2", cut));
    assert_eq!(rc.degraded().unwrap(), 0, "{}", sc.log());
    assert!(sc.log().contains("has expired"), "{}", sc.log());
}

/// `GET path` over a plain HTTP/1.0 connection: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_health_and_json_logs() {
    let redis = PlainRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("a.ledger");
    let sync = SyncProc::start(
        &ledger,
        &[
            "--redis".to_string(),
            redis.url(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--log-format".into(),
            "json".into(),
        ],
    );
    let ra = reader(&ledger);
    let mut addr = String::new();
    wait_until("sync says where its metrics are", || {
        let log = sync.log();
        addr = log
            .split("metrics on http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default()
            .to_string();
        !addr.is_empty()
    });
    wait_until("sync hears from redis", || {
        ra.last_heard().unwrap().is_some()
    });
    wait_until("healthy", || http_get(&addr, "/healthz").0 == 200);

    redis.xadd(&[
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", b"a"),
        ("at", b"10"),
    ]);
    redis.xadd(&[("scope", b"subject"), ("tenant", b"acme"), ("at", b"10")]); // malformed
    wait_until("the entries are counted", || {
        let m = http_get(&addr, "/metrics").1;
        metric(&m, "revledger_sync_entries_applied_total") == Some(1.0)
            && metric(&m, "revledger_sync_entries_skipped_total") == Some(1.0)
    });
    let (status, m) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&m, "revledger_sync_ledger_live_rules"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "revledger_sync_ledger_degraded"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "revledger_sync_redis_up"), Some(1.0), "{m}");
    assert!(metric(&m, "revledger_sync_ledger_file_bytes").unwrap() > 0.0);
    assert!(metric(&m, "revledger_sync_last_heard_age_seconds").unwrap() >= 0.0);
    assert!(
        m.contains("revledger_sync_compaction_duration_seconds_bucket"),
        "{m}"
    );
    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 503, "a degraded ledger is unhealthy: {body}");
    assert!(body.contains("degraded"), "{body}");

    // Every log line is one JSON object with a time, a level and an event.
    let log = sync.log();
    let mut kinds = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(),
            "{line}"
        );
        kinds.push(v["event"].as_str().unwrap().to_string());
    }
    for k in ["connected", "applied", "skipped", "degraded"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {log}");
    }
    drop(redis);
    wait_until("redis down: unhealthy, and the metrics say so", || {
        let m = http_get(&addr, "/metrics").1;
        metric(&m, "revledger_sync_redis_up") == Some(0.0)
            && metric(&m, "revledger_sync_redis_failures_total").is_some_and(|n| n >= 1.0)
    });
    let (_, body) = http_get(&addr, "/healthz");
    assert!(body.contains("redis is unreachable"), "{body}");
}
