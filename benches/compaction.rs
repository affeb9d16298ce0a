//! Revoke latency while the writer compacts a large ledger in the background (DESIGN §5:
//! p99 ≤ 1 ms while a 10M-rule ledger compacts; the max is reported too).
//!
//! A ledger of the largest size of the run (10M rules; 1M in quick mode) is written
//! never compacted. Its writer is then opened twice, on the disk (the swap fsyncs):
//! 1. without background compaction: revokes paced at [`RATE`] per second for
//!    [`BASELINE`], the reference distribution of this run;
//! 2. with the default policy (`CompactionPolicy::default()`, judged by the workload's
//!    clock so that every rule is kept): the first revoke starts a background
//!    compaction of every rule; revokes go on at the same pace until the compacted
//!    file has replaced the old one (its inode changed) and for [`AFTER_SWAP`] more.
//!
//! Each latency is the wall time of one `revoke` call (committed, no sync): what a
//! sync process or an admin API waits for. Revokes are paced on an open-loop schedule
//! (sleeping between them), so a stall shows up as latency, not as fewer samples.
//! Writes `target/revledger-bench/compaction.json`.

mod common;

use common::*;
use revledger::{Ledger, Rule, Scope};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Revokes per second, paced.
const RATE: u64 = 10_000;
/// How long the reference distribution is measured.
const BASELINE: Duration = Duration::from_secs(5);
/// Revokes measured after the compacted file replaced the old one.
const AFTER_SWAP: Duration = Duration::from_secs(1);
/// Longest a compaction may take before the bench gives up.
const TIMEOUT: Duration = Duration::from_secs(900);

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let n = *sizes().iter().max().expect("a size");
    let label = size_label(n);
    let dir = scratch_on_disk();
    let path = dir.path().join("bench.ledger");
    eprintln!("revledger-bench: compaction: building the {label} ledger (never compacted)");
    let built = build_ledger(&path, n, State::Log);
    let mut keys = Rng::new(0xC0A1_E5CE);

    let quiet = Ledger::open_writer(&path, &bench_writer_options()).expect("open_writer");
    let (mut baseline, _) = paced(&quiet, &mut keys, |elapsed| elapsed >= BASELINE);
    drop(quiet);

    let writer = Ledger::open_writer(&path, &compacting_writer_options()).expect("open_writer");
    let inode = std::fs::metadata(&path).expect("ledger metadata").ino();
    let mut swapped_at: Option<Duration> = None;
    let (during_all, times) = paced(&writer, &mut keys, |elapsed| {
        if swapped_at.is_none() && replaced(&path, inode) {
            swapped_at = Some(elapsed);
        }
        match swapped_at {
            Some(at) => elapsed >= at + AFTER_SWAP,
            None => {
                assert!(
                    elapsed < TIMEOUT,
                    "the background compaction did not finish"
                );
                false
            }
        }
    });
    writer.wait_background().expect("the background compaction");
    let swapped_at = swapped_at.expect("the compaction replaced the file");
    let stats = writer.stats(COMPACT_AT).expect("stats");
    assert_eq!(stats.generation, 1, "one compaction ran");
    assert_eq!(stats.expired_keys, 0);
    drop(writer);

    // Revokes started before the swap was seen, and the max with when it happened.
    let mut during: Vec<i64> = Vec::new();
    let mut after: Vec<i64> = Vec::new();
    let mut worst = (0i64, Duration::ZERO);
    for (&ns, &at) in during_all.iter().zip(&times) {
        if at < swapped_at {
            during.push(ns);
        } else {
            after.push(ns);
        }
        if ns > worst.0 {
            worst = (ns, at);
        }
    }
    let achieved = |count: usize, span: Duration| count as f64 / span.as_secs_f64().max(1e-9);
    let json = serde_json::json!({
        "quick": quick(),
        "rules": n,
        "label": label,
        "file_system": file_system_of(dir.path()),
        "rate_per_s": RATE,
        "ledger_append_s": built.append.as_secs_f64(),
        "compaction_s": swapped_at.as_secs_f64(),
        "keys_after": stats.live_keys,
        "baseline": latency_summary(&mut baseline),
        "baseline_rate": achieved(baseline.len(), BASELINE),
        "during": latency_summary(&mut during),
        "during_rate": achieved(during.len(), swapped_at),
        "after_swap": latency_summary(&mut after),
        "max_at_s": worst.1.as_secs_f64(),
        "max_from_swap_s": worst.1.as_secs_f64() - swapped_at.as_secs_f64(),
    });
    eprintln!(
        "revledger-bench: compaction of {label}: {:.1} s; revoke p50 {} ns, p99 {} ns, max {} ns \
         (without compaction: p99 {} ns, max {} ns)",
        swapped_at.as_secs_f64(),
        json["during"]["p50_ns"],
        json["during"]["p99_ns"],
        json["during"]["max_ns"],
        json["baseline"]["p99_ns"],
        json["baseline"]["max_ns"],
    );
    write_json("compaction", &json);
}

/// Whether the file at `path` is no longer the one with `inode` (a compaction renamed
/// its file over it).
fn replaced(path: &Path, inode: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.ino() != inode)
}

/// Revokes new subject rules at [`RATE`] per second until `done(elapsed)`, which is
/// asked between revokes; returns each revoke's wall time (ns) and when it started.
fn paced(
    writer: &Ledger,
    keys: &mut Rng,
    mut done: impl FnMut(Duration) -> bool,
) -> (Vec<i64>, Vec<Duration>) {
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let (mut lat, mut at) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut next = start;
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += interval;
        let elapsed = start.elapsed();
        if done(elapsed) {
            break;
        }
        let tenant = tenant_name(keys.below(TOKEN_TENANTS));
        let key = key(b"usr_", keys.next());
        let cutoff = BASE + keys.below(DAY as u64) as i64;
        let rule = Rule::new(Scope::Subject, &tenant, &key, cutoff);
        let t = Instant::now();
        writer.revoke(&rule).expect("revoke");
        lat.push(t.elapsed().as_nanos() as i64);
        at.push(elapsed);
    }
    (lat, at)
}
