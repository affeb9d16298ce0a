//! Fault injection at every file-system call (the anchor: redb's `StorageBackend` with a
//! failing test backend). Every call revledger makes on a ledger, its index and their
//! temporary files goes through `src/io.rs`; `revledger::testing` makes the n-th call of
//! a kind fail with an errno.
//!
//! A scripted workload — create, single revokes, batches, syncs, a growth of the shared
//! index, a background compaction, an explicit compaction, close, reopen — runs once to
//! count its calls of each kind; then, for every call and for EIO and ENOSPC, it runs
//! again on a fresh directory with that one call failing, and checks:
//! - the error surfaced: some call returned it, or the background job reported it
//!   (`wait_background`, `Stats::background_error`);
//! - nothing acknowledged is lost or hidden: while the run goes on, no reader (one open
//!   since the start, one opened at each checkpoint) and not the writer answers "valid"
//!   for a rule whose `revoke` returned Ok; afterwards, with the fault disarmed, a new
//!   reader, a new writer (recovery) and a reader after it answer, for every key, exactly
//!   the largest cutoff of the calls that returned Ok. Calls that returned an error
//!   left nothing behind (no power loss is modelled here: tests/crash.rs does that), so
//!   this is stronger than "every rule whose `revoke` and `sync` returned Ok".
//!
//! A second sweep makes every call from the n-th on fail (a disk that died or filled up
//! for good), then lets the disk come back for the checks.
//!
//! Its own test binary, its tests one at a time: the injector is process-wide. `REVLEDGER_FAULT_STRIDE=N`
//! sweeps every N-th call only (default 1: all of them).

use revledger::testing::{self, Op};
use revledger::{CompactionPolicy, Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const TENANT: &[u8] = b"acme";

/// Every kind of call, in the order of `src/io.rs`.
const OPS: [Op; 13] = [
    Op::Open,
    Op::Create,
    Op::Lock,
    Op::Write,
    Op::Allocate,
    Op::SetLen,
    Op::SyncData,
    Op::SyncAll,
    Op::Rename,
    Op::SyncDir,
    Op::Link,
    Op::Chmod,
    Op::Read,
];

/// The first writer: compaction only when asked (`compact`), so that its index grows.
fn options() -> WriterOptions {
    WriterOptions {
        max_token_lifetime: 3600,
        // Small, so that the workload grows it (twice) after a few hundred keys.
        index_keys: 64,
        compaction: None,
        ..WriterOptions::default()
    }
}

/// The writers that reopen the ledger: a background compaction once 150 records were
/// appended.
fn reopen_options() -> WriterOptions {
    WriterOptions {
        compaction: Some(CompactionPolicy {
            ratio: 0.5,
            min_records: 150,
        }),
        ..options()
    }
}

/// What the callers were told, and what must therefore hold.
#[derive(Default)]
struct Run {
    /// Per key (subject): the largest cutoff of a revoke that returned Ok.
    acked: BTreeMap<Vec<u8>, i64>,
    /// Errors the callers saw (and background errors reported).
    errors: Vec<String>,
    /// A reader or the writer answered "valid" for an acknowledged rule (the step).
    hidden: Vec<String>,
    /// The writer's (generation, index epoch) after each phase: proof, in a run with no
    /// fault, that the workload grew the index and compacted.
    phases: Vec<(u64, u64)>,
}

impl Run {
    fn note<T>(&mut self, what: &str, r: revledger::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{what}: {e}"));
                None
            }
        }
    }

    /// Every acknowledged rule, asked of `l`: revoked with its cutoff, or an error;
    /// never "valid".
    fn look(&mut self, l: &Ledger, step: &str) {
        for (key, &cutoff) in &self.acked {
            match l.check(&token(key)) {
                Ok(Verdict::Revoked { .. }) => {}
                Ok(Verdict::Valid) => {
                    self.hidden.push(format!(
                        "{step}: {} (cutoff {cutoff}) answered valid",
                        String::from_utf8_lossy(key)
                    ));
                    return; // one per handle and step is enough to tell
                }
                Err(e) => {
                    self.errors.push(format!("{step}: check: {e}"));
                    return;
                }
            }
        }
    }
}

fn token(subject: &[u8]) -> Token<'_> {
    Token {
        tenant: TENANT,
        subject,
        issued_at: 1,
        ..Token::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("user-{i:05}").into_bytes()
}

/// Revokes `keys` (one call, or one call each) with cutoff `at`, recording what returned
/// Ok, then lets a background job that the append started finish.
fn revoke(run: &mut Run, w: &Ledger, keys: &[Vec<u8>], at: i64, batch: bool) {
    let rules: Vec<Rule> = keys
        .iter()
        .map(|k| Rule::new(Scope::Subject, TENANT, k, at))
        .collect();
    let mut ok = Vec::new();
    if batch {
        if run.note("revoke_batch", w.revoke_batch(&rules)).is_some() {
            ok.extend(keys.iter());
        }
    } else {
        for (k, r) in keys.iter().zip(&rules) {
            if run.note("revoke", w.revoke(r)).is_some() {
                ok.push(k);
            }
        }
    }
    for k in ok {
        let e = run.acked.entry(k.clone()).or_insert(i64::MIN);
        *e = (*e).max(at);
    }
    // Background jobs run one at a time; waiting here keeps the order of the calls the
    // same from run to run, so that "call n" names the same call in every run.
    run.note("wait_background", w.wait_background());
}

/// Writes the start of a frame whose CRC does not match past the committed end, as a
/// writer killed during an append leaves it (with plain file calls: not a fault point).
fn tear_the_tail(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut word = [0u8; 8];
    f.read_exact_at(&mut word, revledger::header::OFF_COMMITTED_LEN as u64)
        .unwrap();
    let end = u64::from_le_bytes(word);
    let mut torn = vec![0xA5u8; 40];
    torn[..4].copy_from_slice(&32u32.to_le_bytes());
    f.write_all_at(&torn, end).unwrap();
}

/// What the writer reports of its background work (and of an index it could not build
/// at open), as an error the caller saw.
fn background_error(run: &mut Run, w: &Ledger, step: &str) {
    if let Some(e) = run
        .note("stats", w.stats(0))
        .and_then(|s| s.background_error)
    {
        run.errors.push(format!("{step}: background: {e}"));
    }
}

/// The workload; `dir` is fresh. Returns what the callers were told.
fn workload(dir: &Path) -> Run {
    let path = dir.join("ledger");
    let mut run = Run::default();
    // Recent cutoffs: compaction keeps them (every token they revoke may be unexpired).
    let at = revledger::unix_now_floor() - 100;
    let Some(w) = run.note("open_writer", Ledger::open_writer(&path, &options())) else {
        return run;
    };
    let reader = run.note("open_reader", Ledger::open_reader(&path));
    let checkpoint = |run: &mut Run, w: &Ledger, step: &str| {
        if let Some(r) = &reader {
            run.look(r, &format!("{step} (reader open since the start)"));
        }
        run.look(w, &format!("{step} (writer)"));
        if let Some(r) = run.note("open_reader", Ledger::open_reader(&path)) {
            run.look(&r, &format!("{step} (new reader)"));
        }
        background_error(run, w, step);
        if let Some(s) = run.note("stats", w.stats(0)) {
            run.phases.push((s.generation, s.index_epoch));
        }
    };
    background_error(&mut run, &w, "open");

    // 1. Single revokes, a sync every ten.
    for i in 0..30 {
        revoke(&mut run, &w, &[key(i)], at, false);
        if i % 10 == 9 {
            run.note("sync", w.sync());
        }
    }
    checkpoint(&mut run, &w, "singles");
    // 2. Batches: the index (64 keys) grows in the background, twice.
    let keys: Vec<Vec<u8>> = (30..130).map(key).collect();
    revoke(&mut run, &w, &keys, at, true);
    let keys: Vec<Vec<u8>> = (130..260).map(key).collect();
    revoke(&mut run, &w, &keys, at, true);
    run.note("sync", w.sync());
    checkpoint(&mut run, &w, "growth");
    // 3. Raised cutoffs for keys already there: records that add no key.
    for round in 0..3 {
        let keys: Vec<Vec<u8>> = (round * 60..round * 60 + 60).map(key).collect();
        revoke(&mut run, &w, &keys, at + 1 + round as i64, true);
    }
    run.note("sync", w.sync());
    checkpoint(&mut run, &w, "raised cutoffs");
    // 4. An explicit compaction, appends after it, close.
    revoke(&mut run, &w, &[key(300), key(301)], at, false);
    run.note("compact", w.compact(revledger::unix_now_floor()));
    revoke(&mut run, &w, &[key(302), key(303)], at, true);
    run.note("sync", w.sync());
    checkpoint(&mut run, &w, "compact");
    drop(w);
    // 5. What a crash in the middle of an append leaves (a frame begun past the committed
    // end), then a reopening: recovery cuts and zeroes it; the index, whose ledger file
    // changed since its writer closed, is rebuilt. Appends: enough raised cutoffs for a
    // background compaction. Close.
    tear_the_tail(&path);
    if let Some(w) = run.note(
        "reopen writer",
        Ledger::open_writer(&path, &reopen_options()),
    ) {
        background_error(&mut run, &w, "reopen");
        if let Some(s) = run.note("stats", w.stats(0)) {
            run.phases.push((s.generation, s.index_epoch));
        }
        revoke(&mut run, &w, &[key(400)], at, false);
        for round in 0..2 {
            let keys: Vec<Vec<u8>> = (100 + round * 80..180 + round * 80).map(key).collect();
            revoke(&mut run, &w, &keys, at + 5 + round as i64, true);
        }
        revoke(&mut run, &w, &[key(401), key(0)], at + 9, true);
        run.note("sync", w.sync());
        checkpoint(&mut run, &w, "reopen and background compaction");
    }
    // 6. A clean reopening: the index is trusted as its writer left it. Append, close.
    if let Some(w) = run.note(
        "reopen writer",
        Ledger::open_writer(&path, &reopen_options()),
    ) {
        background_error(&mut run, &w, "second reopen");
        revoke(&mut run, &w, &[key(402), key(1)], at + 10, true);
        run.note("sync", w.sync());
        checkpoint(&mut run, &w, "second reopen");
    }
    if let Some(r) = &reader {
        run.look(r, "end (reader open since the start)");
    }
    run
}

/// With the fault disarmed: every key answers exactly its acknowledged cutoff, to a new
/// reader, to a writer that recovers the file, and to a reader after it; keys never
/// acknowledged answer "valid".
fn verify(dir: &Path, run: &Run, what: &str) {
    let path = dir.join("ledger");
    let expect = |l: &Ledger, who: &str| {
        for i in (0..260).chain(300..304).chain(400..403) {
            let k = key(i);
            let want = match run.acked.get(&k) {
                Some(&cutoff) => Verdict::Revoked {
                    scope: Scope::Subject,
                    cutoff,
                },
                None => Verdict::Valid,
            };
            let got = l.check(&token(&k));
            assert!(
                matches!(&got, Ok(v) if *v == want),
                "{what}: {who}: {}: {got:?}, expected {want:?}; errors seen: {:?}",
                String::from_utf8_lossy(&k),
                run.errors
            );
        }
    };
    if !path.exists() {
        // The creation itself failed: nothing was acknowledged.
        assert!(run.acked.is_empty(), "{what}: acknowledged rules, no file");
        return;
    }
    let r = Ledger::open_reader(&path).unwrap_or_else(|e| panic!("{what}: reader: {e}"));
    expect(&r, "new reader");
    let w =
        Ledger::open_writer(&path, &options()).unwrap_or_else(|e| panic!("{what}: writer: {e}"));
    expect(&w, "writer reopened");
    expect(&r, "reader open across the reopening");
    drop(w);
    let r = Ledger::open_reader(&path).unwrap_or_else(|e| panic!("{what}: reader: {e}"));
    expect(&r, "reader after the writer closed");
}

fn scratch() -> tempfile::TempDir {
    // On tmpfs when there is one: fsync is free there, and the sweep runs hundreds of
    // workloads.
    if Path::new("/dev/shm").is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("revledger-faults")
            .tempdir_in("/dev/shm")
        {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// The process-wide injector serves one test at a time.
static INJECTOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn stride() -> u64 {
    std::env::var("REVLEDGER_FAULT_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs the workload with no fault, twice, and returns its calls of each kind (the same
/// both times: the sweep relies on the workload making the same calls in the same order).
fn count_calls() -> [u64; OPS.len()] {
    testing::disarm();
    let mut counts = [0u64; OPS.len()];
    for pass in 0..2 {
        let dir = scratch();
        let before: Vec<u64> = OPS.iter().map(|op| testing::calls(&[*op])).collect();
        let run = workload(dir.path());
        assert!(
            run.errors.is_empty() && run.hidden.is_empty(),
            "the workload fails with no fault: {:?} {:?}",
            run.errors,
            run.hidden
        );
        let after: Vec<u64> = OPS.iter().map(|op| testing::calls(&[*op])).collect();
        verify(dir.path(), &run, "no fault");
        // singles, growth, raised cutoffs, compact, at the reopening, after it, second
        // reopening: the index grew (a new epoch) in the background; the explicit
        // compaction made generation 1; the reopening rebuilt the index (a new epoch); the
        // appends then made background compactions (generation 2 or more); the second reopening
        // trusted its index.
        let p = &run.phases;
        assert_eq!(p.len(), 7, "{p:?}");
        assert!(p[1].1 > p[0].1, "the index did not grow: {p:?}");
        assert_eq!((p[0].0, p[1].0, p[2].0, p[3].0), (0, 0, 0, 1), "{p:?}");
        assert_eq!(p[4].0, 1, "{p:?}");
        assert!(p[4].1 > p[3].1, "the index was not rebuilt: {p:?}");
        assert!(p[5].0 >= 2, "no background compaction: {p:?}");
        assert_eq!(p[6], p[5], "the index was not trusted: {p:?}");
        for (i, op) in OPS.iter().enumerate() {
            let n = after[i] - before[i];
            if pass == 0 {
                counts[i] = n;
            } else {
                assert_eq!(counts[i], n, "{op:?} calls differ between two clean runs");
            }
        }
    }
    for op in [Op::Open, Op::Create, Op::Lock, Op::Allocate, Op::SyncData] {
        assert!(counts[op as usize] > 0, "the workload makes no {op:?} call");
    }
    for op in [Op::Rename, Op::SyncDir] {
        // Index growth renames; compaction renames and syncs the directory.
        assert!(
            counts[op as usize] >= 2,
            "the workload makes few {op:?} calls"
        );
    }
    counts
}

/// One workload with a fault armed by `arm`, checked.
fn faulty_run(what: &str, arm: impl FnOnce()) -> bool {
    let dir = scratch();
    arm();
    let run = workload(dir.path());
    let hit = testing::fired();
    testing::disarm();
    assert!(run.hidden.is_empty(), "{what}: {:?}", run.hidden);
    if hit {
        assert!(
            !run.errors.is_empty(),
            "{what}: the failure surfaced nowhere"
        );
    }
    verify(dir.path(), &run, what);
    hit
}

const ERRNOS: [(i32, &str); 2] = [(libc::EIO, "EIO"), (libc::ENOSPC, "ENOSPC")];

#[test]
fn every_io_call_of_a_workload_fails_closed() {
    let _one = INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let counts = count_calls();
    let total: u64 = counts.iter().sum();
    let per_op = OPS
        .iter()
        .zip(counts)
        .filter(|(_, c)| *c > 0)
        .map(|(op, c)| format!("{op:?} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("fault sweep: {total} calls in the workload ({per_op})");
    let mut swept = 0u64;
    let mut not_fired = Vec::new();
    for (i, op) in OPS.iter().enumerate() {
        for n in (1..=counts[i]).step_by(stride() as usize) {
            for (errno, name) in ERRNOS {
                let what = format!("{op:?} call {n} of {} failing with {name}", counts[i]);
                if !faulty_run(&what, || testing::fail_nth(&[*op], n, errno)) {
                    not_fired.push(what);
                }
                swept += 1;
            }
        }
    }
    eprintln!(
        "fault sweep: {swept} runs with one call failing, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        not_fired.is_empty(),
        "armed faults that never fired (the calls drifted): {not_fired:?}"
    );
}

/// A disk that stops working (EIO) or fills up (ENOSPC) for good at any call of the
/// workload: every call from there on fails, then the disk comes back for `verify`.
#[test]
fn a_disk_that_fails_from_any_call_on_fails_closed() {
    let _one = INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let total: u64 = count_calls().iter().sum();
    let mut swept = 0u64;
    for n in (1..=total).step_by(stride() as usize) {
        for (errno, name) in ERRNOS {
            let what = format!("every call from call {n} of {total} on failing with {name}");
            assert!(
                faulty_run(&what, || testing::fail_from(&OPS, n, errno)),
                "{what}: never fired"
            );
            swept += 1;
        }
    }
    eprintln!(
        "fault sweep: {swept} runs with every call failing from one on, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A growth of a full index that failed is tried again once the log has grown enough: the
/// retry used to wait for the index's record count, which a full index no longer moves,
/// so every later record stayed in the writer's and every reader's private tail.
#[test]
fn a_failed_growth_of_a_full_index_is_tried_again() {
    let _one = INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let path = dir.path().join("l");
    let w = Ledger::open_writer(
        &path,
        &WriterOptions {
            index_keys: 1,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    // The next file created (the growth's new index) fails.
    testing::fail_nth(&[Op::Create], 1, libc::EIO);
    let batch = |prefix: &str, n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{prefix}-{i}").into_bytes())
            .collect()
    };
    let keys = batch("k", 100);
    let rules: Vec<Rule> = keys
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, now))
        .collect();
    w.revoke_batch(&rules).unwrap();
    assert!(w.wait_background().is_err(), "the growth did not fail");
    assert!(testing::fired());
    testing::disarm();
    for b in 0..40 {
        let keys = batch(&format!("m{b}"), 1000);
        let rules: Vec<Rule> = keys
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, now))
            .collect();
        w.revoke_batch(&rules).unwrap();
        w.wait_background().unwrap();
    }
    // Grown again (or compacted into a new file): no record is left to the tails.
    let st = w.stats(now).unwrap();
    let reader = Ledger::open_reader(&path).unwrap().stats(now).unwrap();
    assert!(
        st.tail_bytes == 0 && reader.tail_bytes == 0,
        "40,000 records after the failed growth the index was not grown again: the \
         writer's tail holds {} B, a new reader's {} B",
        st.tail_bytes,
        reader.tail_bytes
    );
    assert_eq!(st.live_keys, 40_100);
}

/// A key raised while a compaction runs, while the index is full (a growth failed, so
/// the writer's tail holds what came after), is in the new file once: the compaction
/// copies the frames appended since it started, and lists a key only when the record
/// that decided its cutoff lies before them. The tail used to keep a key's first record
/// and its largest cutoff, so a raise past the start was listed and copied (14 of 20
/// compactions before the fix).
#[test]
fn keys_raised_while_an_overflowing_ledger_compacts_are_written_once() {
    use revledger::record::Record;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _one = INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch();
    let path = dir.path().join("l");
    let w = Ledger::open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            index_keys: 1,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    let hot: Vec<Vec<u8>> = (0..10).map(|j| format!("hot-{j}").into_bytes()).collect();
    let live: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("live-{i}").into_bytes())
        .collect();
    let mut first: Vec<Rule> = hot
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, now - 3000))
        .collect();
    first.extend(live.iter().map(|k| Rule::new(Scope::Subject, b"t", k, now)));
    w.revoke_batch(&first).unwrap();
    w.wait_background().unwrap();
    let hot_token = Token {
        tenant: b"t",
        subject: b"hot-0",
        roles: &[],
        client: b"",
        session: b"",
        token_id: b"",
        issued_at: now - 5000,
    };
    const ROUNDS: usize = 20;
    let compacting = AtomicBool::new(false);
    let met = std::sync::Barrier::new(2);
    let mut twice = Vec::new();
    std::thread::scope(|s| {
        // Raises the hot keys while each compaction runs (up to 1,000 times), checking on
        // the writer handle after each, which brings its tail up to the log's end.
        s.spawn(|| {
            let mut i: i64 = 0;
            for _ in 0..ROUNDS {
                met.wait();
                for _ in 0..1000 {
                    if !compacting.load(Ordering::Acquire) {
                        break;
                    }
                    i += 1;
                    let batch: Vec<Rule> = hot
                        .iter()
                        .map(|k| Rule::new(Scope::Subject, b"t", k, now - 3000 + i))
                        .collect();
                    w.revoke_batch(&batch).unwrap();
                    assert!(matches!(
                        w.check(&hot_token).unwrap(),
                        Verdict::Revoked { .. }
                    ));
                }
                met.wait();
            }
        });
        for round in 0..ROUNDS {
            // Expired keys (the compaction drops them) past the index's hard limit, with
            // its growth failing: it stays full, and the tail takes every later record.
            testing::fail_nth(&[Op::Create], 1, libc::EIO);
            let names: Vec<Vec<u8>> = (0..40_000)
                .map(|i| format!("f-{round}-{i}").into_bytes())
                .collect();
            let filler: Vec<Rule> = names
                .iter()
                .map(|k| Rule::new(Scope::Subject, b"t", k, now - 100_000))
                .collect();
            w.revoke_batch(&filler).unwrap();
            assert!(
                w.wait_background().is_err(),
                "round {round}: no growth failed"
            );
            testing::disarm();
            assert!(
                w.stats(now).unwrap().tail_bytes > 0,
                "round {round}: no overflow"
            );
            compacting.store(true, Ordering::Release);
            met.wait();
            w.compact(now).unwrap();
            compacting.store(false, Ordering::Release);
            met.wait();
            let mut seen = std::collections::HashSet::new();
            w.for_each_record(|off, r| {
                if let Record::Rule(r) = r {
                    let id = (r.scope, r.tenant.to_vec(), r.key.to_vec(), r.at);
                    if !seen.insert(id) {
                        twice.push(format!(
                            "compaction {round}: {:?} {} at {} again at {off}",
                            r.scope,
                            String::from_utf8_lossy(r.key),
                            r.at
                        ));
                    }
                }
            })
            .unwrap();
        }
    });
    assert!(
        twice.is_empty(),
        "{} records twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
}
