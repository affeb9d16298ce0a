//! Fleet sync benchmark (issue 7, DESIGN.md §6): over a real Redis,
//!
//! - latency: from `publish` returning on the permission system's side to a reader of
//!   another host's ledger (fed by a `revledger sync` process) answering `revoked`,
//!   p50 / p99 over 1000 trials;
//! - throughput: rules per second a `revledger sync` applies (appended and synced) while
//!   catching up a stream of 100,000 rules from the beginning.
//!
//! `REVLEDGER_BENCH_REDIS=redis://host:port/` uses that Redis (the stream
//! `revledger-bench-<pid>` is deleted at the end); any other non-empty value starts a
//! `redis-server` of its own on a free loopback port. Unset: skipped, saying so.
//! Results: stdout and `target/revledger-bench/sync.json`.

use revledger::{Ledger, Rule, Scope, StreamId, Token, Verdict};
use revledger_cli::sync::{Publisher, Trim};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const TRIALS: usize = 1000;
const THROUGHPUT_RULES: usize = 100_000;

struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

fn start_redis() -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let url = format!("redis://127.0.0.1:{port}/");
    wait_for("redis-server answers", Duration::from_secs(20), || {
        redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    });
    (Server(Some(child)), url)
}

fn spawn_sync(url: &str, stream: &str, ledger: &Path) -> Child {
    Command::new(BIN)
        .args([
            "sync",
            "--redis",
            url,
            "--stream",
            stream,
            "--compact-every",
            "0",
        ])
        .arg(ledger)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("revledger sync")
}

fn open_when_there(path: &Path) -> Ledger {
    let mut l = None;
    wait_for(
        "the sync process creates its ledger",
        Duration::from_secs(20),
        || {
            l = Ledger::open_reader(path).ok();
            l.is_some()
        },
    );
    l.unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let Some(setting) = std::env::var_os("REVLEDGER_BENCH_REDIS").filter(|v| !v.is_empty()) else {
        println!(
            "sync benchmark skipped: set REVLEDGER_BENCH_REDIS=redis://host:port/ (a Redis \
             to use) or REVLEDGER_BENCH_REDIS=1 (start a redis-server on loopback)"
        );
        return;
    };
    let setting = setting.to_string_lossy().into_owned();
    let (_server, url) = if setting.starts_with("redis://") {
        (Server(None), setting)
    } else {
        start_redis()
    };
    let stream = format!("revledger-bench-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");

    // Latency: another host's sync process, a reader on its ledger, spinning.
    let host = dir.path().join("host-b.ledger");
    let mut sync = spawn_sync(&url, &stream, &host);
    let reader = open_when_there(&host);
    let mut publisher = Publisher::connect(&url, stream.as_str(), Trim::by_age(86_400, 300))
        .expect("connect the publisher");
    wait_for(
        "the sync process hears from redis",
        Duration::from_secs(20),
        || reader.last_heard().ok().flatten().is_some(),
    );
    let names: Vec<String> = (0..TRIALS).map(|i| format!("latency-{i}")).collect();
    let mut after_return = Vec::with_capacity(TRIALS);
    let mut whole = Vec::with_capacity(TRIALS);
    for name in &names {
        let rule = Rule::new(Scope::Subject, b"acme", name.as_bytes(), 1_700_000_000);
        let token = Token {
            tenant: b"acme",
            subject: name.as_bytes(),
            issued_at: 1_699_999_999,
            ..Token::default()
        };
        let t0 = Instant::now();
        publisher.publish(&rule).expect("publish");
        let t1 = Instant::now();
        wait_for(
            "the reader answers revoked",
            Duration::from_secs(20),
            || matches!(reader.check(&token), Ok(Verdict::Revoked { .. })),
        );
        let t2 = Instant::now();
        after_return.push(t2 - t1);
        whole.push(t2 - t0);
    }
    let _ = sync.kill();
    let _ = sync.wait();
    after_return.sort();
    whole.sort();

    // Throughput: a fresh host catching up 100,000 rules from the stream's beginning.
    let bulk = format!("{stream}-bulk");
    let mut p = Publisher::connect(&url, bulk.as_str(), Trim::by_age(86_400, 300))
        .expect("connect the publisher");
    let keys: Vec<String> = (0..THROUGHPUT_RULES).map(|i| format!("user-{i}")).collect();
    let mut last = StreamId::ZERO;
    for chunk in keys.chunks(1000) {
        let rules: Vec<Rule> = chunk
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"acme", k.as_bytes(), 1_700_000_000))
            .collect();
        last = *p
            .publish_batch(&rules)
            .expect("publish")
            .last()
            .expect("ids");
    }
    let fresh = dir.path().join("host-c.ledger");
    let start = Instant::now();
    let mut sync = spawn_sync(&url, &bulk, &fresh);
    let reader = open_when_there(&fresh);
    wait_for(
        "the fresh host reaches the last entry",
        Duration::from_secs(300),
        || matches!(reader.stream_position(), Ok(Some(pos)) if pos.last_id == last),
    );
    let took = start.elapsed();
    let _ = sync.kill();
    let _ = sync.wait();
    let live = reader.stats(0).map(|s| s.live_keys).unwrap_or(0);
    assert_eq!(live, THROUGHPUT_RULES as u64, "every rule arrived");
    let rate = THROUGHPUT_RULES as f64 / took.as_secs_f64();

    if let Ok(mut c) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&stream).arg(&bulk).query(&mut c);
    }

    let json = serde_json::json!({
        "benchmark": "sync",
        "trials": TRIALS,
        "publish_returned_to_revoked_us": {
            "p50": us(percentile(&after_return, 0.50)),
            "p99": us(percentile(&after_return, 0.99)),
            "max": us(*after_return.last().unwrap_or(&Duration::ZERO)),
        },
        "publish_called_to_revoked_us": {
            "p50": us(percentile(&whole, 0.50)),
            "p99": us(percentile(&whole, 0.99)),
        },
        "catch_up_rules": THROUGHPUT_RULES,
        "catch_up_seconds": took.as_secs_f64(),
        "sync_rules_per_second": rate,
        "goal": {"p99_ms": 10, "rules_per_second": 100_000},
    });
    println!("sync: publish returned -> other host's reader revoked, over {TRIALS} trials:");
    println!(
        "  p50 {:.0} us, p99 {:.0} us, max {:.0} us (publish call included: p50 {:.0} us, p99 {:.0} us)",
        us(percentile(&after_return, 0.50)),
        us(percentile(&after_return, 0.99)),
        us(*after_return.last().unwrap_or(&Duration::ZERO)),
        us(percentile(&whole, 0.50)),
        us(percentile(&whole, 0.99)),
    );
    println!(
        "sync: a fresh host applied {THROUGHPUT_RULES} rules in {:.3} s: {rate:.0} rules/s",
        took.as_secs_f64()
    );
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/revledger-bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let file = out.join("sync.json");
        match std::fs::write(&file, format!("{json:#}\n")) {
            Ok(()) => println!("results: {}", file.display()),
            Err(e) => eprintln!("could not write {}: {e}", file.display()),
        }
    }
}
