//! Cross-process freshness: the time from a writer process's `revoke` returning to a
//! reader in another process, spinning on `check`, seeing `revoked`.
//!
//! The bench runs itself again as the writer (`REVLEDGER_BENCH_CHILD=freshness-writer`).
//! For each trial the reader sends the trial number down the writer's stdin and starts
//! spinning on `check` of a token that trial's rule revokes; the writer waits a random
//! 0–100 µs (so the reader is already spinning), revokes, reads CLOCK_MONOTONIC (one
//! clock for every process on Linux) before the call and after it returns, and sends
//! both back. The reader takes CLOCK_MONOTONIC when `check` first says `revoked`.
//! Latency = seen − returned (≤ 0 when the reader saw the record before `revoke` even
//! returned to the writer); also seen − called.
//!
//! On a shared machine the reader is sometimes descheduled while it spins, and the trial
//! then measures the scheduler. Each trial therefore also records whether the reader
//! thread was switched out involuntarily during its spin (`getrusage(RUSAGE_THREAD)`,
//! `ru_nivcsw`), or the writer between its two clock reads; the results give the
//! percentiles of all trials and of the undisturbed ones.
//!
//! Not a criterion benchmark (it wants percentiles): results go to
//! `target/revledger-bench/freshness.json` and are printed.

mod common;

use common::*;
use revledger::{Ledger, Rule, Scope, Token, WriterOptions};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// Rules in the ledger (compacted) besides the trials' own, appended after them.
const BACKGROUND_RULES: usize = 100_000;
const TENANT: &[u8] = b"tenant-000001";

fn trial_key(i: u64) -> Key {
    key(b"fre_", scramble(i))
}

/// Involuntary context switches of the calling thread so far.
fn preemptions() -> i64 {
    switches().1
}

/// Voluntary and involuntary context switches of the calling thread so far.
fn switches() -> (i64, i64) {
    // SAFETY: an all-zero `rusage` is a valid value; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD is supported on Linux.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (ru.ru_nvcsw, ru.ru_nivcsw)
}

/// Time the hypervisor ran something else on this machine's CPUs (the `steal` column
/// of /proc/stat), in clock ticks: a guest cannot see it as a context switch.
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(8).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "freshness-writer" {
            writer_child();
        }
        return;
    }
    let trials: u64 = if quick() { 500 } else { 20_000 };
    let dir = scratch_on_disk();
    let path = dir.path().join("fresh.ledger");
    build_ledger(&path, BACKGROUND_RULES, State::Compacted);
    let reader = Ledger::open_reader(&path).expect("open_reader");
    let mut child = spawn_child(
        "freshness-writer",
        &[path.to_str().expect("a UTF-8 scratch path")],
    );
    let mut to_writer = child.stdin.take().expect("writer stdin");
    let mut from_writer = BufReader::new(child.stdout.take().expect("writer stdout"));
    let mut line = String::new();
    from_writer.read_line(&mut line).expect("writer hello");
    assert_eq!(line.trim(), "ready", "writer process failed to start");

    let mut after_return = Vec::with_capacity(trials as usize);
    let mut after_call = Vec::with_capacity(trials as usize);
    let mut revoke_ns = Vec::with_capacity(trials as usize);
    let mut undisturbed = Vec::with_capacity(trials as usize);
    let (mut reader_switches, mut writer_switches) = (0u64, 0u64);
    let mut reader_blocked = 0u64;
    let steal_before = steal_ticks();
    let started = std::time::Instant::now();
    for i in 0..trials {
        let key = trial_key(i);
        let token = Token {
            tenant: TENANT,
            subject: &key,
            issued_at: VALID_IAT,
            ..Token::default()
        };
        assert!(!reader.check(&token).expect("check").is_revoked());
        writeln!(to_writer, "{i}").expect("writing to the writer");
        to_writer.flush().expect("writing to the writer");
        let spin_start = std::time::Instant::now();
        let (blocked_before, switched_before) = switches();
        let seen = loop {
            if reader.check(&token).expect("check").is_revoked() {
                break monotonic_ns();
            }
            assert!(
                spin_start.elapsed() < Duration::from_secs(10),
                "trial {i}: the revocation never became visible"
            );
        };
        let (blocked_after, switched_after) = switches();
        let reader_switched = switched_after != switched_before;
        reader_blocked += u64::from(blocked_after != blocked_before);
        line.clear();
        from_writer
            .read_line(&mut line)
            .expect("reading the writer's clock");
        let mut parts = line.split_whitespace().map(|p| p.parse::<i64>());
        let (Some(Ok(called)), Some(Ok(returned)), Some(Ok(writer_switched))) =
            (parts.next(), parts.next(), parts.next())
        else {
            panic!("writer answered {line:?}");
        };
        after_return.push(seen - returned);
        after_call.push(seen - called);
        revoke_ns.push(returned - called);
        reader_switches += u64::from(reader_switched);
        writer_switches += u64::from(writer_switched != 0);
        if !reader_switched && writer_switched == 0 {
            undisturbed.push(seen - returned);
        }
    }
    drop(to_writer);
    let _ = child.wait();
    let elapsed = started.elapsed();

    let summary = |name: &str, v: &mut Vec<i64>| {
        if v.is_empty() {
            eprintln!("freshness {name}: no trials");
            return serde_json::Value::Null;
        }
        v.sort_unstable();
        let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let s = serde_json::json!({
            "trials": v.len(),
            "p50_ns": pct(0.50), "p90_ns": pct(0.90), "p99_ns": pct(0.99),
            "p999_ns": pct(0.999), "min_ns": v[0], "max_ns": v[v.len() - 1],
            "mean_ns": v.iter().sum::<i64>() as f64 / v.len() as f64,
            "at_or_below_zero": v.iter().filter(|&&x| x <= 0).count(),
        });
        eprintln!(
            "freshness {name}: p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs, max {:.1} µs ({} trials)",
            pct(0.50) as f64 / 1e3,
            pct(0.90) as f64 / 1e3,
            pct(0.99) as f64 / 1e3,
            v[v.len() - 1] as f64 / 1e3,
            v.len()
        );
        s
    };
    let undisturbed_trials = undisturbed.len();
    let json = serde_json::json!({
        "quick": quick(),
        "trials": trials,
        "undisturbed_trials": undisturbed_trials,
        "reader_switched_trials": reader_switches,
        "writer_switched_trials": writer_switches,
        "reader_blocked_trials": reader_blocked,
        "steal_ticks": steal_ticks() - steal_before,
        "from_revoke_return_undisturbed": summary("from revoke returning, undisturbed trials", &mut undisturbed),
        "background_rules": BACKGROUND_RULES,
        "seconds": elapsed.as_secs_f64(),
        "from_revoke_return": summary("from revoke returning", &mut after_return),
        "from_revoke_call": summary("from revoke called", &mut after_call),
        "revoke_call": summary("revoke call itself", &mut revoke_ns),
    });
    write_json("freshness", &json);
}

/// The writer process: revokes trial `i`'s rule when told, after a random short wait,
/// and answers with CLOCK_MONOTONIC before the call and after it returned.
fn writer_child() {
    let path = std::env::args().nth(1).expect("ledger path");
    let writer = Ledger::open_writer(&path, &WriterOptions::default()).expect("open_writer");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .expect("stdout");
    let mut rng = Rng::new(0xF2E5);
    for line in std::io::stdin().lock().lines() {
        let Ok(i) = line.expect("stdin").trim().parse::<u64>() else {
            break;
        };
        let key = trial_key(i);
        let rule = Rule::new(Scope::Subject, TENANT, &key, BASE + 2 * DAY);
        let until = monotonic_ns() + rng.below(100_000) as i64;
        while monotonic_ns() < until {
            std::hint::spin_loop();
        }
        let switched = preemptions();
        let called = monotonic_ns();
        writer.revoke(&rule).expect("revoke");
        let returned = monotonic_ns();
        let switched = preemptions() - switched;
        writeln!(out, "{called} {returned} {switched}")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}
