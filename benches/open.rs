//! Opening a ledger: the time from `Ledger::open_reader` to the answer of its first
//! `check`, for each ledger size (the file in the page cache, as on a gateway host where
//! the writer has just written it), measured in the opening thread's CPU time (opening
//! is single-threaded and, from the page cache, does not wait; see `common::ThreadCpu`).
//! The wall time of one open per size is also recorded. Also measures memory:
//! - per size: index bytes and file bytes per live rule (`Ledger::stats`);
//! - sharing: 8 reader processes of one ledger, their total PSS against one reader's RSS
//!   (DESIGN §5: ≤ 2×), read from /proc/PID/smaps_rollup.
//!
//! Each size is measured compacted (the snapshot index is used in place: opening should
//! not depend on the size) and never compacted (the reader indexes the whole log).
//!
//! Criterion group `open`, ids `revledger.open_first_check/<size>` (compacted) and
//! `revledger_log.open_first_check/<size>`; memory figures go to
//! `target/revledger-bench/open.json`.

mod common;

use common::*;
use criterion::{BenchmarkId, Criterion, SamplingMode};
use revledger::{Ledger, Token, Verdict};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

/// Reader processes in the sharing measurement.
const READERS: usize = 8;

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "reader" {
            reader_child();
        }
        return;
    }
    let mut c = Criterion::default()
        .with_measurement(ThreadCpu::default())
        .configure_from_args();
    let (warm, measure) = if quick() {
        (Duration::from_millis(100), Duration::from_millis(500))
    } else {
        (Duration::from_millis(500), Duration::from_secs(3))
    };
    let sizes = sizes();
    let share_n = if sizes.contains(&1_000_000) {
        1_000_000
    } else {
        *sizes.iter().max().expect("a size")
    };
    let mut figures = Vec::new();
    let mut sharing = Vec::new();
    for &n in &sizes {
        let label = size_label(n);
        for state in [State::Compacted, State::Log] {
            eprintln!(
                "revledger-bench: building the {label} ledger ({})",
                state.name()
            );
            let dir = scratch();
            let path = dir.path().join("bench.ledger");
            let build = build_ledger(&path, n, state);
            let pool = tokens(n, Kind::Valid, 3, 1);
            with_tokens(&pool, |toks| {
                let token = &toks[0];
                // One open outside criterion, the first after writing; and memory figures.
                let t = Instant::now();
                let reader = Ledger::open_reader(&path).expect("open_reader");
                assert_eq!(reader.check(token).expect("check"), Verdict::Valid);
                let first_open = t.elapsed();
                let stats = reader.stats(COMPACT_AT).expect("stats");
                drop(reader);
                let keys = key_bytes(n);
                let live = stats.live_keys.max(1) as f64;
                figures.push(serde_json::json!({
                    "rules": n,
                    "label": label,
                    "state": state.name(),
                    "append_s": build.append.as_secs_f64(),
                    "compact_s": build.compact.map(|d| d.as_secs_f64()),
                    "first_open_s": first_open.as_secs_f64(),
                    "live_keys": stats.live_keys,
                    "compacted_keys": stats.compacted_keys,
                    "rule_records": stats.rule_records,
                    "index_bytes": stats.index_bytes,
                    "index_bytes_per_rule": stats.index_bytes as f64 / live,
                    "log_bytes": stats.log_bytes,
                    "file_bytes": stats.file_bytes,
                    "key_bytes": keys,
                    "log_bytes_per_rule_beyond_keys": (stats.log_bytes as f64 - keys as f64) / live,
                }));

                let id = match state {
                    State::Compacted => "revledger.open_first_check",
                    State::Log => "revledger_log.open_first_check",
                };
                let mut g = c.benchmark_group("open");
                g.warm_up_time(warm)
                    .measurement_time(measure)
                    .sample_size(10)
                    .sampling_mode(SamplingMode::Flat);
                g.bench_function(BenchmarkId::new(id, &label), |b| {
                    b.iter_custom(|iters| {
                        let mut total = 0;
                        for _ in 0..iters {
                            let t = thread_cpu_ns();
                            let reader = Ledger::open_reader(&path).expect("open_reader");
                            black_box(reader.check(token).expect("check"));
                            total += thread_cpu_ns() - t;
                            drop(reader);
                        }
                        Duration::from_nanos(total.max(0) as u64)
                    })
                });
                g.finish();
            });
            if n == share_n {
                sharing.push(measure_sharing(&path, n, state));
            }
        }
    }
    write_json(
        "open",
        &serde_json::json!({ "quick": quick(), "sizes": figures, "sharing": sharing }),
    );
    c.final_summary();
}

/// Starts one reader process, then seven more, and reads their memory. Each reader
/// checks every key of the ledger once, so that it has touched all of its index.
fn measure_sharing(path: &std::path::Path, n: usize, state: State) -> serde_json::Value {
    let path = path.to_str().expect("a UTF-8 scratch path");
    let n_arg = n.to_string();
    let mut children = Vec::new();
    let start = |children: &mut Vec<std::process::Child>| {
        let mut child = spawn_child("reader", &[path, &n_arg]);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("child stdout"))
            .read_line(&mut line)
            .expect("reading from a reader process");
        assert_eq!(line.trim(), "ready", "reader process failed");
        children.push(child);
    };
    start(&mut children);
    let (alone_rss, alone_pss) = rss_pss(children[0].id());
    for _ in 1..READERS {
        start(&mut children);
    }
    let mem: Vec<(u64, u64)> = children.iter().map(|c| rss_pss(c.id())).collect();
    for mut child in children {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    let total_pss: u64 = mem.iter().map(|m| m.1).sum();
    eprintln!(
        "revledger-bench: {READERS} readers of {} ({}): total PSS {} MiB, one reader alone RSS {} MiB",
        size_label(n),
        state.name(),
        total_pss >> 20,
        alone_rss >> 20
    );
    serde_json::json!({
        "rules": n,
        "label": size_label(n),
        "state": state.name(),
        "readers": READERS,
        "one_reader_rss": alone_rss,
        "one_reader_pss": alone_pss,
        "total_pss": total_pss,
        "rss_each": mem.iter().map(|m| m.0).collect::<Vec<_>>(),
        "pss_each": mem.iter().map(|m| m.1).collect::<Vec<_>>(),
        "ratio": total_pss as f64 / alone_rss.max(1) as f64,
    })
}

/// A reader process: opens the ledger, checks one token per rule carrying that rule's
/// key, says `ready`, and stays until its stdin closes.
fn reader_child() {
    let args: Vec<String> = std::env::args().collect();
    let (path, n) = (&args[1], args[2].parse::<usize>().expect("rule count"));
    let reader = Ledger::open_reader(path).expect("open_reader");
    let mut revoked = 0usize;
    for r in rules(n) {
        let k = r.key_bytes();
        let roles = [k];
        let token = Token {
            tenant: &r.tenant,
            subject: k,
            session: k,
            client: k,
            token_id: k,
            roles: &roles,
            issued_at: VALID_IAT,
        };
        revoked += usize::from(reader.check(&token).expect("check").is_revoked());
    }
    black_box(revoked);
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
