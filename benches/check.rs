//! `check` against its baselines, side by side in one run, for each ledger size.
//!
//! Criterion group `check`, measured in the benchmark thread's CPU time (see
//! `common::ThreadCpu`: the machine is shared); ids
//! `<implementation>.<kind>.r<roles>[.<threads>t]/<size>`:
//! - `revledger.{valid,revoked}.r{0,3,10}`: one reader handle, tokens cycled from a pool;
//!   the ledger is compacted (every rule rewritten into a fresh file and its index);
//! - `revledger_log.{valid,revoked,fresh}.r3`: the same tokens against the same rules
//!   never compacted (appended by a writer with `compaction: None`; readers map the
//!   shared index the writer grew as it appended);
//! - `revledger.fresh.r3`: a token issued after every cutoff (the fast path);
//! - `{revledger,hashbrown_foldhash}.valid_cold.r3`: valid tokens whose own bytes are as
//!   cold as the index (every other row times batches of checks whose tokens were just
//!   read: `common::touch`);
//! - `std_hashmap.*`: `HashMap<(Vec<u8>, Vec<u8>), i64>` per scope, SipHash, probed by
//!   borrowed keys, the same lookups per token;
//! - `hashbrown_foldhash.*`: per-scope `hashbrown::HashTable`s hashed with `foldhash`, the
//!   tenant hashed once per token (the strongest in-process peer);
//! - `chase.access`: one dependent random memory access over 24 bytes per rule;
//! - `redb.valid.r3`: the same keys in one read transaction per token;
//! - `revledger.valid.r3.{1,2}t`: one token after another on one and on two threads
//!   sharing the handle, the tokens' own bytes not read before (as in the `*_cold` rows:
//!   the threads run unbatched so that their wall time is one span); the figure is CPU
//!   time per check (summed over the threads).
//!
//! Criterion group `check_wall`, in wall time, for what waits on something else:
//! - `revledger.valid.r3` again, as the reference in this clock;
//! - `revledger.valid.r3.{1,2}t`: the time per check at the aggregate throughput, so
//!   the two-thread throughput ratio is `1t / 2t`;
//! - `redis.valid.r3`: `EXISTS` of the same keys, pipelined, one round trip per token
//!   (only with `REVLEDGER_BENCH_REDIS`).
//!
//! Also writes `target/revledger-bench/check.json` (the fixtures: sizes, memory).

mod common;

use common::*;
use criterion::measurement::{Measurement, WallTime};
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion};
use revledger::{Ledger, Token};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let mut cpu = Criterion::default()
        .with_measurement(ThreadCpu::default())
        .configure_from_args();
    let mut wall = Criterion::default().configure_from_args();
    let mut redis = redis_connection("check");
    let mut fixtures = Vec::new();
    for n in sizes() {
        fixtures.push(bench_size(&mut cpu, &mut wall, n, redis.as_mut()));
    }
    if let Some(con) = redis.as_mut() {
        let _ = redis::cmd("FLUSHDB").exec(con);
    }
    write_json(
        "check",
        &serde_json::json!({ "quick": quick(), "fixtures": fixtures }),
    );
    cpu.final_summary();
    wall.final_summary();
}

fn bench_size(
    cpu: &mut Criterion<ThreadCpu>,
    wall: &mut Criterion<WallTime>,
    n: usize,
    mut redis: Option<&mut redis::Connection>,
) -> serde_json::Value {
    let label = size_label(n);
    eprintln!("revledger-bench: building the {label} fixtures");
    let dir = scratch();
    let path = dir.path().join("bench.ledger");
    let build = build_ledger(&path, n, State::Compacted);
    let reader = Ledger::open_reader(&path).expect("opening the benchmark ledger");
    let stats = reader.stats(COMPACT_AT).expect("stats");
    assert_eq!(
        stats.compacted_keys, n as u64,
        "the compacted ledger holds every rule"
    );
    let log_path = dir.path().join("bench-log.ledger");
    let log_build = build_ledger(&log_path, n, State::Log);
    let log_reader = Ledger::open_reader(&log_path).expect("opening the benchmark ledger");
    let log_stats = log_reader.stats(COMPACT_AT).expect("stats");
    assert!(
        log_stats.shared_index && log_stats.compacted_keys == 0 && log_stats.live_keys == n as u64,
        "the never-compacted ledger: every rule in the shared index, none compacted: {log_stats:?}"
    );
    let t = Instant::now();
    let maps = StdMaps::build(n);
    let maps_build = t.elapsed();
    let folds = FoldMaps::build(n);
    let t = Instant::now();
    let redb_path = dir.path().join("bench.redb");
    let redb = build_redb(&redb_path, n);
    let redb_build = t.elapsed();
    let mut chase = Chase::new(24 * n);
    if let Some(con) = redis.as_deref_mut() {
        load_redis(con, n);
    }
    eprintln!(
        "revledger-bench: {label}: ledger {:.1} s + compaction {:.1} s, HashMap {:.1} s, redb {:.1} s",
        build.append.as_secs_f64(),
        build.compact.unwrap_or_default().as_secs_f64(),
        maps_build.as_secs_f64(),
        redb_build.as_secs_f64()
    );

    let (warm, measure, samples) = micro_times();
    let mut g = cpu.benchmark_group("check");
    g.warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples);
    let mut gw = wall.benchmark_group("check_wall");
    gw.warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples);

    g.bench_function(BenchmarkId::new("chase.access", &label), |b| {
        b.iter(|| black_box(chase.step()))
    });

    for roles in [0, 3, 10] {
        for kind in [Kind::Valid, Kind::Revoked] {
            let pool = tokens(n, kind, roles, pool_size(n));
            with_tokens(&pool, |toks| {
                verify(&reader, toks, &pool);
                let name = |what: &str| format!("{what}.{}.r{roles}", kind.name());
                cycle(&mut g, &name("revledger"), &label, toks, |t| {
                    reader.check(t).expect("check")
                });
                if roles == 3 {
                    verify(&log_reader, toks, &pool);
                    cycle(&mut g, &name("revledger_log"), &label, toks, |t| {
                        log_reader.check(t).expect("check")
                    });
                }
                if kind == Kind::Valid || roles == 3 {
                    for (t, o) in toks.iter().zip(&pool).take(2_000) {
                        assert_eq!(maps.check(t), o.expect, "HashMap baseline disagrees");
                        assert_eq!(folds.check(t), o.expect, "hashbrown baseline disagrees");
                    }
                    cycle(&mut g, &name("hashbrown_foldhash"), &label, toks, |t| {
                        folds.check(t)
                    });
                    cycle(&mut g, &name("std_hashmap"), &label, toks, |t| {
                        maps.check(t)
                    });
                }
                if roles == 3 && kind == Kind::Valid {
                    for (t, o) in toks.iter().zip(&pool).take(200) {
                        assert_eq!(redb_check(&redb, t), o.expect, "redb baseline disagrees");
                    }
                    cycle(&mut g, &name("redb"), &label, toks, |t| {
                        redb_check(&redb, t)
                    });
                    let cold = "revledger.valid_cold.r3";
                    cycle_with(&mut g, cold, &label, toks, Input::Cold, |t| {
                        reader.check(t).expect("check")
                    });
                    let cold = "hashbrown_foldhash.valid_cold.r3";
                    cycle_with(&mut g, cold, &label, toks, Input::Cold, |t| folds.check(t));
                    cycle(&mut gw, &name("revledger"), &label, toks, |t| {
                        reader.check(t).expect("check")
                    });
                    if let Some(con) = redis.as_deref_mut() {
                        let mut pipe = redis::pipe();
                        assert_eq!(redis_exists(con, &mut pipe, &toks[0]), 0);
                        cycle(&mut gw, &name("redis"), &label, toks, |t| {
                            redis_exists(con, &mut pipe, t)
                        });
                    }
                    for threads in [1, 2] {
                        let id = format!("{}.{threads}t", name("revledger"));
                        g.bench_function(BenchmarkId::new(&id, &label), |b| {
                            b.iter_custom(|iters| on_threads(threads, iters, &reader, toks).1)
                        });
                        gw.bench_function(BenchmarkId::new(&id, &label), |b| {
                            b.iter_custom(|iters| on_threads(threads, iters, &reader, toks).0)
                        });
                    }
                }
            });
        }
    }
    let pool = tokens(n, Kind::Fresh, 3, pool_size(n));
    with_tokens(&pool, |toks| {
        verify(&reader, toks, &pool);
        cycle(&mut g, "revledger.fresh.r3", &label, toks, |t| {
            reader.check(t).expect("check")
        });
        verify(&log_reader, toks, &pool);
        cycle(&mut g, "revledger_log.fresh.r3", &label, toks, |t| {
            log_reader.check(t).expect("check")
        });
    });
    g.finish();
    gw.finish();

    serde_json::json!({
        "rules": n,
        "label": label,
        "pool_tokens": pool_size(n),
        "ledger_append_s": build.append.as_secs_f64(),
        "ledger_compact_s": build.compact.unwrap_or_default().as_secs_f64(),
        "log_ledger_append_s": log_build.append.as_secs_f64(),
        "log_live_keys": log_stats.live_keys,
        "log_index_bytes": log_stats.index_bytes,
        "log_shared_index": log_stats.shared_index,
        "log_tail_bytes": log_stats.tail_bytes,
        "file_system": file_system_of(dir.path()),
        "log_log_bytes": log_stats.log_bytes,
        "compacted_keys": stats.compacted_keys,
        "hashmap_build_s": maps_build.as_secs_f64(),
        "redb_build_s": redb_build.as_secs_f64(),
        "redb_file_bytes": std::fs::metadata(&redb_path).map(|m| m.len()).unwrap_or(0),
        "live_keys": stats.live_keys,
        "index_bytes": stats.index_bytes,
        "log_bytes": stats.log_bytes,
        "file_bytes": stats.file_bytes,
        "key_bytes": key_bytes(n),
        "chase_bytes": 24 * n,
    })
}

/// How a benchmark loop meets each token's own bytes.
#[derive(Clone, Copy)]
enum Input {
    /// Timed in batches of [`BATCH`] checks whose tokens were read just before
    /// ([`touch`]): hot input, cold index lines.
    Hot,
    /// One token after another, its bytes as cold as the index lines they lead to (the
    /// rows `*.valid_cold.r3`: how this bench measured before 2026-12-01).
    Cold,
}

/// Benchmarks `f` over the pool with hot tokens ([`Input::Hot`]).
fn cycle<M: Measurement, R>(
    g: &mut BenchmarkGroup<'_, M>,
    name: &str,
    label: &str,
    toks: &[Token],
    f: impl FnMut(&Token) -> R,
) {
    cycle_with(g, name, label, toks, Input::Hot, f)
}

/// Benchmarks `f` over the pool, one token per iteration, in order (the pool is random).
fn cycle_with<M: Measurement, R>(
    g: &mut BenchmarkGroup<'_, M>,
    name: &str,
    label: &str,
    toks: &[Token],
    input: Input,
    mut f: impl FnMut(&Token) -> R,
) {
    let mask = toks.len() - 1;
    assert!(toks.len().is_power_of_two());
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new(name, label), |b| match input {
        Input::Hot => b.iter_batched(
            || {
                i = i.wrapping_add(1);
                let t = &toks[i & mask];
                black_box(touch(t));
                t
            },
            |t| f(black_box(t)),
            BatchSize::NumIterations(BATCH as u64),
        ),
        Input::Cold => b.iter(|| {
            i = i.wrapping_add(1);
            black_box(f(black_box(&toks[i & mask])))
        }),
    });
}

/// `iters` checks on each of `threads` threads sharing one handle, each from its own
/// part of the pool. Returns, divided by `threads`, the wall time (so: the time per
/// check at the aggregate throughput) and the threads' summed CPU time (the CPU time
/// per check).
fn on_threads(threads: usize, iters: u64, reader: &Ledger, toks: &[Token]) -> (Duration, Duration) {
    let mask = toks.len() - 1;
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant, i64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let barrier = &barrier;
                s.spawn(move || {
                    let offset = k * toks.len() / threads;
                    barrier.wait();
                    let start = Instant::now();
                    let cpu = thread_cpu_ns();
                    for j in 0..iters as usize {
                        let t = &toks[(offset + j) & mask];
                        black_box(reader.check(black_box(t)).expect("check"));
                    }
                    let cpu = thread_cpu_ns() - cpu;
                    (start, Instant::now(), cpu)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = spans.iter().map(|s| s.0).min().expect("a thread");
    let end = spans.iter().map(|s| s.1).max().expect("a thread");
    let cpu: i64 = spans.iter().map(|s| s.2).sum();
    (
        (end - start) / threads as u32,
        Duration::from_nanos(cpu.max(0) as u64) / threads as u32,
    )
}
