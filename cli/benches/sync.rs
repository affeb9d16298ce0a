//! Fleet sync benchmark (issues 7 and 16, DESIGN.md §5: across hosts p99 ≤ 10 ms), over a
//! real Redis, with "another host" simulated by a network namespace:
//!
//! - host A (this process, the root namespace): `redis-server` and the publisher;
//! - host B (`ip netns` namespace joined to A by a veth pair, 10.211.<n>.0/30): a
//!   `revledger sync` process and a gateway process spinning on `check` of B's ledger.
//!
//! Measured, side by side in one run: from `publish` returning on host A to the gateway
//! process on host B answering `revoked` (p50 / p99 / max over 1000 trials, the two
//! processes' CLOCK_MONOTONIC compared), plain (`redis://`, unsigned) and production
//! (`rediss://` with the server verified, Ed25519-signed entries verified by sync against
//! its trusted keys); then catch-up: host B's sync is stopped, 1,000,000 signed rules are
//! published (an outage), and the time host B's restarted sync takes to apply them.
//!
//! `REVLEDGER_BENCH_REDIS=1` runs it (it needs `redis-server`; `ip netns` needs root —
//! without it, host B's processes run on loopback and the report says so). Unset:
//! skipped, saying so. `REVLEDGER_BENCH_CATCHUP=N` changes the outage's size.
//! Results: stdout and `target/revledger-bench/sync.json`.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use revledger::{Ledger, Rule, Scope, StreamId, Token, Verdict};
use revledger_cli::sync::{Publisher, RedisConfig, Signer, Trim};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const TRIALS: usize = 1000;
const CATCH_UP: usize = 1_000_000;
const GATEWAY_ENV: &str = "REVLEDGER_BENCH_GATEWAY";

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The gateway process on host B: reads a subject a line, says `ready` once its first
/// check of it answered valid, spins until it answers revoked, then prints the time.
fn gateway(ledger: &str) {
    let mut l = None;
    wait_for("the ledger exists", Duration::from_secs(30), || {
        l = Ledger::open_reader(ledger).ok();
        l.is_some()
    });
    let l = l.unwrap();
    let out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let sub = line.expect("a subject");
        let t = Token {
            tenant: b"acme",
            subject: sub.as_bytes(),
            issued_at: 1_699_999_999,
            ..Token::default()
        };
        assert_eq!(l.check(&t).unwrap(), Verdict::Valid);
        writeln!(out.lock(), "ready").unwrap();
        while !matches!(l.check(&t), Ok(Verdict::Revoked { .. })) {
            std::hint::spin_loop();
        }
        let now = mono_ns();
        writeln!(out.lock(), "{now}").unwrap();
    }
}

/// Host B: a network namespace joined to this one by a veth pair (torn down on drop), or
/// nothing when `ip netns` is not available (not root).
struct HostB {
    ns: Option<String>,
    /// Host A's address as host B reaches it.
    a_addr: String,
}

impl HostB {
    fn new() -> HostB {
        let id = std::process::id();
        let ns = format!("rlbench-{id}");
        let (va, vb) = (
            format!("rla{}", id % 100_000),
            format!("rlb{}", id % 100_000),
        );
        let net = format!("10.211.{}", id % 250);
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let a = format!("{net}.1");
        let ok = ip(&["netns", "add", &ns])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &vb, "netns", &ns])
            && ip(&["addr", "add", &format!("{a}/30"), "dev", &va])
            && ip(&["link", "set", &va, "up"])
            && ip(&["-n", &ns, "addr", "add", &format!("{net}.2/30"), "dev", &vb])
            && ip(&["-n", &ns, "link", "set", &vb, "up"])
            && ip(&["-n", &ns, "link", "set", "lo", "up"]);
        if ok {
            HostB {
                ns: Some(ns),
                a_addr: a,
            }
        } else {
            let _ = ip(&["link", "del", &va]);
            let _ = ip(&["netns", "del", &ns]);
            HostB {
                ns: None,
                a_addr: "127.0.0.1".into(),
            }
        }
    }

    /// A command run on host B.
    fn command(&self, program: &str) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn describe(&self) -> String {
        match &self.ns {
            Some(ns) => format!(
                "network namespace {ns} joined by a veth pair; Redis at {}",
                self.a_addr
            ),
            None => "separate processes on loopback (ip netns unavailable)".into(),
        }
    }
}

impl Drop for HostB {
    fn drop(&mut self) {
        if let Some(ns) = &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, ip: std::net::IpAddr) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "revledger bench CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "redis");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.subject_alt_names.push(SanType::IpAddress(ip));
    p.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = p.signed_by(&key, &ca).unwrap();
    let w = |n: &str, t: String| {
        let f = dir.join(n);
        std::fs::write(&f, t).unwrap();
        f
    };
    Pki {
        ca: w("ca.pem", ca.pem()),
        cert: w("redis.pem", cert.pem()),
        key: w("redis.key", key.serialize_pem()),
    }
}

/// A host-B sync process with its gateway.
struct Follower {
    _sync: Proc,
    gw: Proc,
    gw_in: ChildStdin,
    gw_out: BufReader<ChildStdout>,
}

fn spawn_sync(b: &HostB, ledger: &Path, args: &[String]) -> Proc {
    Proc(
        b.command(BIN)
            .arg("sync")
            .arg(ledger)
            .args(["--compact-every", "0", "--max-token-lifetime", "86400"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(ledger.with_extension("log")).unwrap())
            .spawn()
            .expect("revledger sync"),
    )
}

impl Follower {
    fn start(b: &HostB, ledger: &Path, args: &[String]) -> Follower {
        let sync = spawn_sync(b, ledger, args);
        let exe = std::env::current_exe().unwrap();
        let mut gw = b
            .command(exe.to_str().unwrap())
            .env(GATEWAY_ENV, ledger)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the gateway process");
        let gw_in = gw.stdin.take().unwrap();
        let gw_out = BufReader::new(gw.stdout.take().unwrap());
        Follower {
            _sync: sync,
            gw: Proc(gw),
            gw_in,
            gw_out,
        }
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.gw_out.read_line(&mut s).unwrap();
        assert!(!s.is_empty(), "the gateway process ended");
        s.trim().to_string()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Publish returned on host A → the gateway on host B says revoked, `TRIALS` times.
fn latency(p: &mut Publisher, f: &mut Follower, label: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let sub = format!("{label}-{i}");
        writeln!(f.gw_in, "{sub}").unwrap();
        assert_eq!(f.line(), "ready");
        p.publish(&Rule::new(
            Scope::Subject,
            b"acme",
            sub.as_bytes(),
            1_700_000_000,
        ))
        .expect("publish");
        let returned = mono_ns();
        let seen: u64 = f.line().parse().unwrap();
        out.push(Duration::from_nanos(seen.saturating_sub(returned)));
    }
    out.sort();
    out
}

fn main() {
    if let Some(ledger) = std::env::var_os(GATEWAY_ENV) {
        return gateway(ledger.to_str().unwrap());
    }
    if std::env::var_os("REVLEDGER_BENCH_REDIS").is_none_or(|v| v.is_empty()) {
        println!(
            "sync benchmark skipped: set REVLEDGER_BENCH_REDIS=1 (starts redis-server; \
             as root, host B is a network namespace)"
        );
        return;
    }
    let catch_up: usize = std::env::var("REVLEDGER_BENCH_CATCHUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CATCH_UP);
    let dir = tempfile::tempdir().expect("temp dir");
    let b = HostB::new();
    let a_ip: std::net::IpAddr = b.a_addr.parse().unwrap();
    let pki = pki(dir.path(), a_ip);
    let (plain_port, tls_port) = (free_port(), free_port());
    let conf = dir.path().join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            "port {plain_port}\ntls-port {tls_port}\nbind 127.0.0.1 {}\nsave \"\"\n\
             appendonly no\ndir {}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\nprotected-mode no\n",
            b.a_addr,
            dir.path().display(),
            pki.cert.display(),
            pki.key.display(),
            pki.ca.display()
        ),
    )
    .unwrap();
    let _redis = Proc(
        Command::new("redis-server")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)"),
    );
    let plain_url = format!("redis://{}:{plain_port}/", b.a_addr);
    let tls_url = format!("rediss://{}:{tls_port}/", b.a_addr);
    let mut tls_cfg = RedisConfig::new(tls_url.clone());
    tls_cfg.ca_file = Some(pki.ca.clone());
    wait_for("redis-server answers", Duration::from_secs(20), || {
        tls_cfg.connect().is_ok()
    });

    let signer = Signer::generate("bench").unwrap();
    let trusted = dir.path().join("trusted-keys");
    std::fs::write(
        &trusted,
        format!("bench {} *\n", signer.public_key_base64()),
    )
    .unwrap();
    let trim = Trim::by_age(86_400, 300);

    // Plain: redis://, unsigned.
    let plain_ledger = dir.path().join("plain.ledger");
    let mut f = Follower::start(
        &b,
        &plain_ledger,
        &[
            "--redis".into(),
            plain_url.clone(),
            "--stream".into(),
            "plain".into(),
        ],
    );
    let mut p = Publisher::connect(&plain_url, "plain", trim).expect("publisher");
    let plain = latency(&mut p, &mut f, "plain");
    drop(f);

    // Production: rediss:// verified, signed entries verified against trusted keys.
    let prod_ledger = dir.path().join("prod.ledger");
    let prod_args = vec![
        "--redis".into(),
        tls_url.clone(),
        "--tls-ca".into(),
        pki.ca.to_string_lossy().into_owned(),
        "--trusted-keys".into(),
        trusted.to_string_lossy().into_owned(),
        "--stream".into(),
        "prod".into(),
    ];
    let mut f = Follower::start(&b, &prod_ledger, &prod_args);
    let mut p = Publisher::connect_with(&tls_cfg, "prod", trim)
        .expect("publisher")
        .sign_with(signer.clone());
    let prod = latency(&mut p, &mut f, "prod");
    let _ = f.gw.0.kill();
    drop(f); // host B's sync stops: the outage begins

    // Outage: `catch_up` signed rules published while host B is down, then its sync
    // restarts and catches up.
    let keys: Vec<String> = (0..catch_up).map(|i| format!("user-{i}")).collect();
    let mut last = StreamId::ZERO;
    let t_pub = Instant::now();
    for chunk in keys.chunks(1000) {
        let rules: Vec<Rule> = chunk
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"acme", k.as_bytes(), 1_700_000_000))
            .collect();
        last = *p.publish_batch(&rules).expect("publish").last().unwrap();
    }
    let published_in = t_pub.elapsed();
    let reader = Ledger::open_reader(&prod_ledger).expect("host B's ledger");
    let start = Instant::now();
    let sync = spawn_sync(&b, &prod_ledger, &prod_args);
    wait_for(
        "host B catches up",
        Duration::from_secs(1800),
        || matches!(reader.stream_position(), Ok(Some(pos)) if pos.last_id == last),
    );
    let took = start.elapsed();
    drop(sync);
    let live = reader.stats(0).map(|s| s.live_keys).unwrap_or(0);
    assert!(live >= catch_up as u64, "every rule arrived ({live})");
    assert_eq!(reader.degraded().unwrap(), 0, "nothing refused");
    let rate = catch_up as f64 / took.as_secs_f64();

    let row = |d: &[Duration]| {
        serde_json::json!({
            "p50_us": us(percentile(d, 0.50)),
            "p99_us": us(percentile(d, 0.99)),
            "max_us": us(*d.last().unwrap()),
        })
    };
    let json = serde_json::json!({
        "benchmark": "sync",
        "host_b": b.describe(),
        "trials": TRIALS,
        "publish_returned_to_other_host_revoked": {
            "plain_unsigned": row(&plain),
            "tls_signed": row(&prod),
        },
        "catch_up": {
            "rules": catch_up,
            "signed_and_tls": true,
            "published_seconds": published_in.as_secs_f64(),
            "applied_seconds": took.as_secs_f64(),
            "rules_per_second": rate,
        },
        "goal": {"p99_ms": 10},
    });
    println!("sync benchmark; host B: {}", b.describe());
    for (name, d) in [
        ("plain redis://, unsigned", &plain),
        ("rediss:// verified, Ed25519-signed", &prod),
    ] {
        println!(
            "  publish returned -> host B's gateway revoked ({name}): p50 {:.0} us, p99 {:.0} us, max {:.0} us",
            us(percentile(d, 0.50)),
            us(percentile(d, 0.99)),
            us(*d.last().unwrap())
        );
    }
    println!(
        "  tls+signed / plain: p50 {:.2}x, p99 {:.2}x",
        us(percentile(&prod, 0.5)) / us(percentile(&plain, 0.5)).max(1e-9),
        us(percentile(&prod, 0.99)) / us(percentile(&plain, 0.99)).max(1e-9)
    );
    println!(
        "  catch-up after an outage: {catch_up} signed rules (published in {:.1} s) applied \
         over TLS in {:.1} s: {rate:.0} rules/s",
        published_in.as_secs_f64(),
        took.as_secs_f64()
    );
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/revledger-bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let file = out.join("sync.json");
        match std::fs::write(&file, format!("{json:#}\n")) {
            Ok(()) => println!("results: {}", file.display()),
            Err(e) => eprintln!("could not write {}: {e}", file.display()),
        }
    }
}
