//! Appending rules: records per second committed (visible to readers) without sync,
//! with group commit, and with one sync per record, beside redb (and Redis `SET` with
//! `REVLEDGER_BENCH_REDIS`) doing the same.
//!
//! Criterion group `append`, throughput in records; ids:
//! - `revledger.revoke.nosync`: one `revoke` per record;
//! - `revledger.batch1000.nosync`: `revoke_batch` of 1000 records;
//! - `revledger.revoke.group1000`: 1000 `revoke`s then one `sync` (group commit);
//! - `revledger.batch1000.sync`: `revoke_batch` of 1000 then one `sync`;
//! - `revledger.revoke.sync`: `revoke` then `sync`, per record;
//! - `redb.insert.nosync` (one insert per transaction, `Durability::None`),
//!   `redb.insert.group1000` (1000 inserts per durable commit), `redb.insert.sync`
//!   (one insert per durable commit);
//! - `redis.set` (one `SET` per round trip), `redis.set.pipeline1000`.
//!
//! Writers run the default background compaction policy, judged by the workload's clock
//! (`common::workload_clock`) so that it keeps every rule, as a live ledger's does.
//! Files live in a scratch directory on the build's file system (not tmpfs) and are
//! replaced by fresh ones between samples once they hold a few million records, so the
//! suite's disk use stays bounded; replacing is not timed.

mod common;

use common::*;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use revledger::{Ledger, Rule, Scope};
use std::time::{Duration, Instant};

/// Records a file takes before it is replaced by a fresh one.
const ROTATE_AFTER: u64 = 4_000_000;

/// A writer over a fresh ledger, replaced once it holds [`ROTATE_AFTER`] records.
struct Rotating {
    dir: tempfile::TempDir,
    ledger: Option<Ledger>,
    records: u64,
    generation: u32,
}

impl Rotating {
    fn new() -> Rotating {
        Rotating {
            dir: scratch_on_disk(),
            ledger: None,
            records: 0,
            generation: 0,
        }
    }

    /// The writer, fresh if the current one is full; then counts `records` more.
    fn writer(&mut self, records: u64) -> &Ledger {
        if self.ledger.is_none() || self.records + records > ROTATE_AFTER {
            if self.ledger.take().is_some() {
                let _ = std::fs::remove_file(self.path());
            }
            self.generation += 1;
            self.records = 0;
            let ledger = Ledger::open_writer(self.path(), &compacting_writer_options())
                .expect("creating an append ledger");
            self.ledger = Some(ledger);
        }
        self.records += records;
        self.ledger.as_ref().expect("writer just opened")
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("append-{}.ledger", self.generation))
    }
}

/// A pool of 1000 realistic subject rules, cycled by the single-record benchmarks.
fn rule_pool() -> Vec<OwnedRule> {
    let mut rng = Rng::new(0xA99E);
    (0..1000)
        .map(|_| OwnedRule {
            scope: Scope::Subject,
            tenant: tenant_name(rng.below(TOKEN_TENANTS)),
            key: key(b"usr_", rng.next()),
            at: BASE + rng.below(DAY as u64) as i64,
        })
        .collect()
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let (warm, measure, samples) = if quick() {
        (Duration::from_millis(100), Duration::from_millis(400), 10)
    } else {
        (Duration::from_millis(500), Duration::from_secs(2), 20)
    };
    let pool = rule_pool();
    let rules: Vec<Rule> = pool.iter().map(OwnedRule::as_rule).collect();

    let mut g = c.benchmark_group("append");
    g.warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples)
        .sampling_mode(SamplingMode::Flat);

    // revledger
    let mut w = Rotating::new();
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("revledger.revoke.nosync", "1"), |b| {
        b.iter_custom(|iters| {
            let ledger = w.writer(iters);
            let start = Instant::now();
            for i in 0..iters as usize {
                ledger.revoke(&rules[i % rules.len()]).expect("revoke");
            }
            start.elapsed()
        })
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function(
        BenchmarkId::new("revledger.batch1000.nosync", "1000"),
        |b| {
            b.iter_custom(|iters| {
                let ledger = w.writer(iters * 1000);
                let start = Instant::now();
                for _ in 0..iters {
                    ledger.revoke_batch(&rules).expect("revoke_batch");
                }
                start.elapsed()
            })
        },
    );
    g.bench_function(
        BenchmarkId::new("revledger.revoke.group1000", "1000"),
        |b| {
            b.iter_custom(|iters| {
                let ledger = w.writer(iters * 1000);
                let start = Instant::now();
                for _ in 0..iters {
                    for r in &rules {
                        ledger.revoke(r).expect("revoke");
                    }
                    ledger.sync().expect("sync");
                }
                start.elapsed()
            })
        },
    );
    g.bench_function(BenchmarkId::new("revledger.batch1000.sync", "1000"), |b| {
        b.iter_custom(|iters| {
            let ledger = w.writer(iters * 1000);
            let start = Instant::now();
            for _ in 0..iters {
                ledger.revoke_batch(&rules).expect("revoke_batch");
                ledger.sync().expect("sync");
            }
            start.elapsed()
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("revledger.revoke.sync", "1"), |b| {
        b.iter_custom(|iters| {
            let ledger = w.writer(iters);
            let start = Instant::now();
            for i in 0..iters as usize {
                ledger.revoke(&rules[i % rules.len()]).expect("revoke");
                ledger.sync().expect("sync");
            }
            start.elapsed()
        })
    });
    drop(w);

    // redb: the same records as rows keyed like the check baseline, new keys each time.
    let dir = scratch_on_disk();
    let mut db = RedbRotating {
        dir: &dir,
        db: None,
        rows: 0,
        next_key: 0,
        generation: 0,
    };
    for (name, per_txn, durable) in [
        ("redb.insert.nosync", 1u64, false),
        ("redb.insert.group1000", 1000, true),
        ("redb.insert.sync", 1, true),
    ] {
        g.throughput(Throughput::Elements(per_txn));
        g.bench_function(BenchmarkId::new(name, per_txn.to_string()), |b| {
            b.iter_custom(|iters| {
                let first = db.reserve(iters * per_txn);
                let handle = db.db.as_ref().expect("redb open");
                let start = Instant::now();
                for t in 0..iters {
                    let mut txn = handle.begin_write().expect("redb write transaction");
                    if !durable {
                        txn.set_durability(redb::Durability::None)
                            .expect("redb durability");
                    }
                    {
                        let mut table = txn.open_table(REDB_TABLE).expect("redb table");
                        let mut buf = [0u8; 64];
                        for r in 0..per_txn {
                            let k = key(b"usr_", scramble(first + t * per_txn + r));
                            let row = kv_key(&mut buf, Scope::Subject, b"tenant-000042", &k);
                            table.insert(row, BASE).expect("redb insert");
                        }
                    }
                    txn.commit().expect("redb commit");
                }
                start.elapsed()
            })
        });
    }
    drop(db);

    // Redis
    if let Some(mut con) = redis_connection("append") {
        let _ = redis::cmd("FLUSHDB").exec(&mut con);
        let mut buf = [0u8; 64];
        let mut n = 0u64;
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("redis.set", "1"), |b| {
            b.iter(|| {
                n += 1;
                let k = key(b"usr_", scramble(n));
                let row = kv_key(&mut buf, Scope::Subject, b"tenant-000042", &k);
                redis::cmd("SET")
                    .arg(row)
                    .arg(BASE)
                    .exec(&mut con)
                    .expect("redis SET");
            })
        });
        g.throughput(Throughput::Elements(1000));
        let mut pipe = redis::pipe();
        g.bench_function(BenchmarkId::new("redis.set.pipeline1000", "1000"), |b| {
            b.iter(|| {
                pipe.clear();
                for _ in 0..1000 {
                    n += 1;
                    let k = key(b"usr_", scramble(n));
                    let row = kv_key(&mut buf, Scope::Subject, b"tenant-000042", &k);
                    pipe.cmd("SET").arg(row).arg(BASE).ignore();
                }
                pipe.exec(&mut con).expect("redis SET");
            })
        });
        let _ = redis::cmd("FLUSHDB").exec(&mut con);
    }
    g.finish();
    c.final_summary();
}

/// A redb database, replaced by a fresh one once it holds a few million rows.
struct RedbRotating<'a> {
    dir: &'a tempfile::TempDir,
    db: Option<redb::Database>,
    rows: u64,
    next_key: u64,
    generation: u32,
}

impl RedbRotating<'_> {
    /// Makes room for `rows` more rows; returns the first key number to use.
    fn reserve(&mut self, rows: u64) -> u64 {
        if self.db.is_none() || self.rows + rows > ROTATE_AFTER {
            if self.db.take().is_some() {
                let _ = std::fs::remove_file(self.path());
            }
            self.generation += 1;
            self.rows = 0;
            self.db = Some(redb::Database::create(self.path()).expect("creating redb"));
        }
        self.rows += rows;
        let first = self.next_key;
        self.next_key += rows;
        first
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("append-{}.redb", self.generation))
    }
}
