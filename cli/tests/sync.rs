//! Fleet sync against a real `redis-server` (docs/SYNC.md): every test starts its own
//! server on a free loopback port (`--save '' --appendonly no`) and `revledger sync`
//! processes, and kills them at the end. Without `redis-server` on the PATH the tests
//! fail when `CI` is set and are skipped, with a line on stderr, otherwise.
//!
//! No sleep stands for synchronisation: every wait polls a condition ("the ledger holds
//! X", "the log says Y") against a deadline.

use revledger::{unix_now_floor, Ledger, Rule, Scope, StreamId, StreamPosition, Token, Verdict};
use revledger_cli::sync::{Publisher, Trim};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const STREAM: &str = "revocations";
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` until it holds; fails the test naming `what` after `DEADLINE`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn redis_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `redis-server` of our own on a free loopback port, killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one, or returns `None` (after saying so) when it is not installed and `CI`
    /// is not set. With `CI` set, a missing `redis-server` fails the test.
    fn start(test: &str) -> Option<Redis> {
        if !redis_installed() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "redis-server is not installed, and CI is set: the sync tests need it \
                     (scripts/install-deps installs the Debian package redis-server)"
                );
            }
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipping {test}: redis-server is not installed (apt-get install redis-server)"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut r = Redis {
            child: None,
            port,
            _dir: tempfile::tempdir().unwrap(),
        };
        r.launch();
        Some(r)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self._dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let url = self.url();
        wait_until("redis-server answers PING", || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server and starts a new one on the same port (its data is gone).
    fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url().as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn publisher(&self) -> Publisher {
        Publisher::connect(&self.url(), STREAM, Trim::by_age(86_400, 300)).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `revledger sync` process, its stderr in a file; killed (-9) when dropped.
struct Sync {
    child: Child,
    log: PathBuf,
}

impl Sync {
    fn start(redis: &Redis, ledger: &Path) -> Sync {
        Sync::start_with(redis, ledger, &[])
    }

    fn start_with(redis: &Redis, ledger: &Path, extra: &[&str]) -> Sync {
        let log = ledger.with_extension(format!(
            "sync{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let child = Command::new(BIN)
            .args(["sync", "--redis", &redis.url(), "--stream", STREAM])
            .arg(ledger)
            .args(["--max-token-lifetime", "86400"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start revledger sync");
        Sync { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A reader of a ledger that a sync process creates: waits until the file is there.
fn reader(path: &Path) -> Ledger {
    let mut l = None;
    wait_until(&format!("{} exists", path.display()), || {
        l = Ledger::open_reader(path).ok();
        l.is_some()
    });
    l.unwrap()
}

fn subject_verdict(l: &Ledger, tenant: &[u8], sub: &[u8], iat: i64) -> Verdict {
    let t = Token {
        tenant,
        subject: sub,
        issued_at: iat,
        ..Token::default()
    };
    l.check(&t).unwrap()
}

fn holds_subject(l: &Ledger, sub: &str, cutoff: i64) -> bool {
    subject_verdict(l, b"acme", sub.as_bytes(), cutoff - 1)
        == Verdict::Revoked {
            scope: Scope::Subject,
            cutoff,
        }
}

fn last_id(l: &Ledger) -> Option<StreamId> {
    l.stream_position().unwrap().map(|p| p.last_id)
}

#[test]
fn two_hosts_see_a_published_rule_and_a_new_host_catches_up() {
    let Some(redis) = Redis::start("two_hosts_see_a_published_rule") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.ledger"),
        dir.path().join("b.ledger"),
        dir.path().join("c.ledger"),
    );
    let _sa = Sync::start(&redis, &a);
    let _sb = Sync::start(&redis, &b);
    let (ra, rb) = (reader(&a), reader(&b));

    let roles: &[&[u8]] = &[b"super_admin"];
    let john = Token {
        tenant: b"acme",
        subject: b"john",
        roles,
        issued_at: 1_700_000_000,
        ..Token::default()
    };
    assert_eq!(ra.check(&john).unwrap(), Verdict::Valid);
    let rule = Rule::new(Scope::Role, b"acme", b"super_admin", 1_700_000_001);
    let id = redis.publisher().publish(&rule).unwrap();
    let revoked = Verdict::Revoked {
        scope: Scope::Role,
        cutoff: 1_700_000_001,
    };
    wait_until("host a sees the rule", || {
        ra.check(&john).unwrap() == revoked
    });
    wait_until("host b sees the rule", || {
        rb.check(&john).unwrap() == revoked
    });
    wait_until("both record the entry as their position", || {
        last_id(&ra) == Some(id) && last_id(&rb) == Some(id)
    });

    // A fresh host with an empty ledger reads the stream from its beginning.
    let _sc = Sync::start(&redis, &c);
    let rc = reader(&c);
    wait_until("the new host catches up", || {
        rc.check(&john).unwrap() == revoked && last_id(&rc) == Some(id)
    });
    let bruce = Token {
        subject: b"bruce",
        roles: &[],
        ..john
    };
    assert_eq!(rc.check(&bruce).unwrap(), Verdict::Valid);
}

#[test]
fn kill_9_during_a_burst_of_10k_then_restart_loses_nothing() {
    let Some(redis) = Redis::start("kill_9_during_a_burst") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ledger"), dir.path().join("b.ledger"));
    let mut sa = Sync::start(&redis, &a);
    let _sb = Sync::start(&redis, &b);
    let (ra, rb) = (reader(&a), reader(&b));
    const N: usize = 10_000;
    const BASE: i64 = 1_700_000_000;
    let names: Vec<String> = (0..N).map(|i| format!("user-{i}")).collect();

    // The publisher sends the first half, waits for the kill, then sends the rest.
    let (half_sent, half_rx) = mpsc::channel::<StreamId>();
    let (go_on, go_rx) = mpsc::channel::<()>();
    let mut publisher = redis.publisher();
    let burst = std::thread::spawn(move || {
        let mut last = StreamId::ZERO;
        for (n, chunk) in names.chunks(100).enumerate() {
            let rules: Vec<Rule> = chunk
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    let i = n * 100 + j;
                    Rule::new(Scope::Subject, b"acme", s.as_bytes(), BASE + i as i64)
                })
                .collect();
            last = *publisher.publish_batch(&rules).unwrap().last().unwrap();
            if (n + 1) * 100 == N / 2 {
                half_sent.send(last).unwrap();
                go_rx.recv().unwrap();
            }
        }
        last
    });
    let half = half_rx.recv().unwrap();
    wait_until("host a has applied part of the burst", || {
        last_id(&ra).is_some_and(|id| id > StreamId::ZERO) && holds_subject(&ra, "user-0", BASE)
    });
    sa.kill9(); // wherever it is: mid-batch, mid-sync, or waiting
    go_on.send(()).unwrap();
    let last = burst.join().unwrap();
    assert!(half < last);
    let _sa = Sync::start(&redis, &a);

    for (name, l) in [("a", &ra), ("b", &rb)] {
        wait_until(&format!("host {name} reaches the last entry"), || {
            last_id(l) == Some(last)
        });
        for i in 0..N {
            let sub = format!("user-{i}");
            let cutoff = BASE + i as i64;
            assert!(
                holds_subject(l, &sub, cutoff),
                "host {name}: {sub} not revoked"
            );
            assert_eq!(
                subject_verdict(l, b"acme", sub.as_bytes(), cutoff),
                Verdict::Valid,
                "host {name}: {sub}'s cutoff is not {cutoff}"
            );
        }
        assert_eq!(l.stats(0).unwrap().live_keys, N as u64, "host {name}");
    }
}

#[test]
fn redis_restarted_mid_stream_sync_reconnects_and_goes_on() {
    let Some(mut redis) = Redis::start("redis_restarted_mid_stream") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let sa = Sync::start(&redis, &a);
    let ra = reader(&a);
    let mut publisher = redis.publisher();
    publisher
        .publish(&Rule::new(Scope::Subject, b"acme", b"before", 100))
        .unwrap();
    wait_until("the first rule arrives", || {
        holds_subject(&ra, "before", 100)
    });

    redis.restart(); // same port, empty: no persistence
    wait_until("sync reconnects", || {
        sa.log().matches("connected to").count() == 2
    });
    // The same publisher: its connection broke with the restart; it connects again.
    publisher
        .publish(&Rule::new(Scope::Subject, b"acme", b"after", 200))
        .unwrap();
    wait_until("the rule published after the restart arrives", || {
        holds_subject(&ra, "after", 200)
    });
    assert!(holds_subject(&ra, "before", 100));
    let log = sa.log();
    assert!(log.contains("redis unreachable"), "{log}");
    assert_eq!(log.matches("connected to").count(), 2, "{log}");
    assert!(
        log.contains("does not exist"),
        "the emptied stream is read from its beginning: {log}"
    );
    assert_eq!(
        last_id(&ra).map(|id| id.ms > 0),
        Some(true),
        "the position is the new stream's"
    );
}

#[test]
fn malformed_entries_are_logged_and_skipped_and_later_ones_applied() {
    let Some(redis) = Redis::start("malformed_entries") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let mut sa = Sync::start(&redis, &a);
    let ra = reader(&a);
    let mut conn = redis.conn();
    let long_key = vec![b'k'; 5000];
    let entries: Vec<Vec<(&str, &[u8])>> = vec![
        vec![("scope", b"subject"), ("tenant", b"acme"), ("at", b"10")],
        vec![
            ("scope", b"superuser"),
            ("tenant", b"acme"),
            ("key", b"bad-scope"),
            ("at", b"10"),
        ],
        vec![
            ("scope", b"subject"),
            ("tenant", b"acme"),
            ("key", b"bad-time"),
            ("at", b"yesterday"),
        ],
        vec![
            ("scope", b"subject"),
            ("tenant", b"acme"),
            ("key", &long_key),
            ("at", b"10"),
        ],
        vec![
            ("scope", b"subject"),
            ("tenant", b"acme"),
            ("key", b"bin\xff\x00ary"),
            ("at", b"20"),
        ],
        vec![
            ("scope", b"subject"),
            ("tenant", b"acme"),
            ("key", b"last"),
            ("at", b"30"),
            ("reason", b"ok"),
        ],
    ];
    for fields in &entries {
        xadd_at(&mut conn, "*", fields);
    }
    wait_until("the entry after the bad ones is applied", || {
        holds_subject(&ra, "last", 30)
    });
    assert_eq!(
        subject_verdict(&ra, b"acme", b"bin\xff\x00ary", 19),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: 20
        }
    );
    for bad in ["bad-scope", "bad-time"] {
        assert_eq!(
            subject_verdict(&ra, b"acme", bad.as_bytes(), 0),
            Verdict::Valid
        );
    }
    assert_eq!(ra.stats(0).unwrap().live_keys, 2);
    wait_until("the log names every skipped entry", || {
        sa.log().matches("skipped malformed entry").count() == 4
    });
    let log = sa.log();
    for why in [
        "missing field `key`",
        "bad scope",
        "not a whole number",
        "limit is 4096",
    ] {
        assert!(log.contains(why), "log lacks {why:?}: {log}");
    }
    assert!(sa.is_running(), "sync stopped on bad input: {log}");
}

/// `XADD`s an entry with the id `id` (`<ms>-<seq>`, or `*`: Redis chooses).
fn xadd_at(conn: &mut redis::Connection, id: &str, fields: &[(&str, &[u8])]) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(STREAM).arg(id);
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    let _: String = cmd.query(conn).unwrap();
}

fn good(key: &[u8]) -> [(&'static str, &[u8]); 4] {
    [
        ("scope", b"subject"),
        ("tenant", b"acme"),
        ("key", key),
        ("at", b"10"),
    ]
}

const MALFORMED: [(&str, &[u8]); 3] = [("scope", b"subject"), ("tenant", b"acme"), ("at", b"10")];

#[test]
fn a_bad_entry_read_again_by_the_rewind_is_judged_once_but_one_a_failover_put_below_the_position_counts(
) {
    let Some(redis) = Redis::start("bad_entry_judged_once") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let mut conn = redis.conn();
    // A malformed entry marks the ledger; the default rewind (60 s of entry ids) covers
    // it on every later connection, since nothing newer than a second after it comes.
    let mut sync = Sync::start(&redis, &a);
    let ra = reader(&a);
    xadd_at(&mut conn, "1000-0", &MALFORMED);
    xadd_at(&mut conn, "2000-0", &good(b"g1"));
    wait_until("g1 is applied", || holds_subject(&ra, "g1", 10));
    assert_eq!(ra.degraded().unwrap(), StreamPosition::SKIPPED);
    sync.kill9();

    // Resolved, and it stays resolved once the rewind has read the bad entry again (g2
    // is applied after that reading, in the same batch or the next).
    let mut sync = Sync::start_with(&redis, &a, &["--resolve"]);
    wait_until("the operator's resolve is logged", || {
        sync.log().contains("resolved by the operator")
    });
    xadd_at(&mut conn, "3000-0", &good(b"g2"));
    wait_until("g2 is applied", || holds_subject(&ra, "g2", 10));
    assert_eq!(ra.degraded().unwrap(), 0, "{}", sync.log());
    assert!(
        !sync.log().contains("skipped malformed entry"),
        "{}",
        sync.log()
    );
    sync.kill9();

    // A later start without --resolve reads it again too, and keeps the ledger healthy.
    let mut sync = Sync::start(&redis, &a);
    xadd_at(&mut conn, "4000-0", &good(b"g3"));
    wait_until("g3 is applied", || holds_subject(&ra, "g3", 10));
    assert_eq!(ra.degraded().unwrap(), 0, "{}", sync.log());

    // A failover: the new primary lacks what this process read and holds a bad entry
    // below the ledger's position that no one has read. The stream is replaced, then the
    // connection dropped, so the sync reconnects and reads it in its rewind: it counts.
    let _: i64 = redis::cmd("DEL").arg(STREAM).query(&mut conn).unwrap();
    xadd_at(&mut conn, "3500-0", &MALFORMED);
    xadd_at(&mut conn, "5000-0", &good(b"g4"));
    wait_until("g4 is applied", || holds_subject(&ra, "g4", 10));
    assert_eq!(
        ra.degraded().unwrap(),
        0,
        "3500-0 is not read without a reconnection"
    );
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .query(&mut conn)
        .unwrap();
    wait_until("the bad entry below the position marks the ledger", || {
        ra.degraded().unwrap() == StreamPosition::SKIPPED
    });
    assert!(
        sync.log().contains("skipped malformed entry 3500-0"),
        "{}",
        sync.log()
    );
    assert!(sync.is_running());
}

#[test]
fn a_second_sync_on_one_ledger_exits_2_with_locked() {
    let Some(redis) = Redis::start("a_second_sync_is_locked") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let mut first = Sync::start(&redis, &a);
    let ra = reader(&a);
    wait_until("the first sync has heard from redis", || {
        ra.last_heard().unwrap().is_some()
    });
    let second = Command::new(BIN)
        .args(["sync", "--redis", &redis.url(), "--stream", STREAM])
        .arg(&a)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(stderr.contains("one sync per ledger"), "{stderr}");
    assert!(first.is_running(), "the first sync must go on");
}

#[test]
fn freshness_advances_with_heartbeats_and_stays_put_while_redis_is_down() {
    let Some(mut redis) = Redis::start("freshness") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let sa = Sync::start(&redis, &a);
    let ra = reader(&a);
    let id = redis
        .publisher()
        .publish(&Rule::new(Scope::Subject, b"acme", b"x", 100))
        .unwrap();
    let mut h1 = 0;
    wait_until("the rule and a first 'last heard'", || {
        h1 = ra.last_heard().unwrap().unwrap_or(0);
        last_id(&ra) == Some(id) && h1 > 0
    });
    wait_until("a heartbeat moves 'last heard' past the first", || {
        ra.last_heard().unwrap().is_some_and(|h| h > h1)
    });
    assert_eq!(last_id(&ra), Some(id), "a heartbeat keeps the position");

    redis.stop();
    wait_until("sync reports redis unreachable", || {
        sa.log().contains("redis unreachable")
    });
    let down = ra.last_heard().unwrap().unwrap();
    wait_until("two seconds pass and sync retries twice more", || {
        unix_now_floor() > down + 2 && sa.log().matches("redis unreachable").count() >= 3
    });
    assert_eq!(
        ra.last_heard().unwrap(),
        Some(down),
        "no heartbeat without redis"
    );
    assert!(holds_subject(&ra, "x", 100), "the ledger keeps answering");

    redis.launch();
    wait_until("'last heard' moves again once redis is back", || {
        ra.last_heard().unwrap().is_some_and(|h| h > down)
    });
}

#[test]
fn trimming_by_age_leaves_exactly_the_rules_that_can_still_matter() {
    let Some(redis) = Redis::start("trimming_by_age") else {
        return;
    };
    let mut conn = redis.conn();
    let now_ms = unix_now_floor() as u64 * 1000;
    // Entries as old publishers left them: two days old (dead for a one-day lifetime)
    // and one hour old (alive).
    for (age_s, key) in [(2 * 86_400, "two-days"), (3_600, "one-hour")] {
        let id = format!("{}-0", now_ms - age_s * 1000);
        let at = (unix_now_floor() - age_s as i64).to_string();
        let _: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg(&id)
            .arg(&["scope", "subject", "tenant", "acme", "key", key, "at", &at])
            .query(&mut conn)
            .unwrap();
    }
    let len =
        |c: &mut redis::Connection| -> i64 { redis::cmd("XLEN").arg(STREAM).query(c).unwrap() };
    assert_eq!(len(&mut conn), 2);
    redis
        .publisher()
        .publish(&Rule::new(
            Scope::Subject,
            b"acme",
            b"now",
            unix_now_floor(),
        ))
        .unwrap();
    assert_eq!(
        len(&mut conn),
        2,
        "the two-day-old entry is trimmed, the others kept"
    );

    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.ledger");
    let _sa = Sync::start(&redis, &a);
    let ra = reader(&a);
    wait_until("a fresh host catches up", || {
        subject_verdict(&ra, b"acme", b"now", i64::MIN).is_revoked()
    });
    assert!(subject_verdict(&ra, b"acme", b"one-hour", i64::MIN).is_revoked());
    assert_eq!(
        subject_verdict(&ra, b"acme", b"two-days", i64::MIN),
        Verdict::Valid
    );
    assert_eq!(ra.stats(0).unwrap().live_keys, 2);
}

#[test]
fn a_sync_whose_redis_settings_cannot_work_exits_2_without_creating_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let l = dir.path().join("l.ledger");
    for settings in [
        &["--redis", "foo://x"][..],
        &[
            "--redis",
            "redis://127.0.0.1:1/",
            "--tls-ca",
            "/nonexistent-ca.pem",
        ][..],
    ] {
        let out = Command::new(BIN)
            .arg("sync")
            .args(settings)
            .args(["--stream", STREAM])
            .arg(&l)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{settings:?}: {stderr}");
        assert!(!l.exists(), "{settings:?} created the ledger: {stderr}");
    }
}
