//! What the writer does beside its appends, in a background thread: grow the shared
//! index when it fills, and compact the ledger when dead rules accumulate (DESIGN.md §3,
//! "Compaction runs by default, in the background"). Also what a writer does once at
//! open: rebuild an index it cannot trust, and upgrade a version 1 file.
//!
//! Both jobs follow the same protocol, so that revokes never wait for them except during
//! a short final step:
//! 1. note the log's end and build the new structure (a bigger index; or a new file with
//!    one record per live key and its index) from the current one, without any lock;
//! 2. catch up, in rounds, with what the writer appended meanwhile (read from the log);
//! 3. under the writer's append lock, catch up the last few records and swap the new
//!    structure in (for a compaction: fsync, rename the index and the file into place,
//!    mark the old file retired); then, holding only the sync lock, fsync the directory.
//!
//! A job that fails leaves everything as it was (the temporary files are removed) and
//! is retried later; its error is kept for [`Stats::background_error`](crate::Stats).

use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::header::{random_file_id, Header};
use crate::index::{index_path, tag_of, SharedIndex, Trust, INITIAL_KEYS};
use crate::io;
use crate::ledger::{CompactStats, Generation, Inner, Writer, WriterOptions};
use crate::log::{parent_dir, scan, sibling, sync_dir, FileAccess, LogFile, Recovery};
use crate::map::LogBytes;
use crate::record::{encode_position, encode_rule, Record, FRAME_HEADER_LEN};
use crate::rule::{unix_now_floor, Rule, Scope};
use crate::watch::{self, LostFlag};
use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Catch-up rounds stop when fewer bytes than this were appended during the last one:
/// the rest is copied under the append lock.
const FINAL_CATCH_UP_BYTES: u64 = 256 << 10;
/// Most catch-up rounds before the final one (appends faster than a round).
const MAX_ROUNDS: usize = 16;
/// Bytes of frames written to a new file at once.
const CHUNK: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Grow,
    Compact,
}

struct Running {
    kind: Kind,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<Result<()>>,
}

#[derive(Default)]
struct JobsState {
    running: Option<Running>,
    /// A job was taken out of `running` to be waited for and has not been joined yet:
    /// it may still run, so no other job starts (two compactions at once each swap in a
    /// file without the other's records, and share the temporary file).
    joining: bool,
    /// A compaction asked for by the caller is running on its thread: no background job
    /// starts until it ends (two compactions at once would each swap in a file without
    /// the other's changes, losing rules).
    caller_compacting: bool,
    last_error: Option<String>,
    /// After a failure, no new job before the log reaches this many bytes. Bytes, not the
    /// index's record count: a full index stops counting, and a growth that failed then
    /// would never be tried again.
    retry_at_len: u64,
}

/// The writer's background job (at most one at a time, and none while the caller
/// compacts).
#[derive(Default)]
pub(crate) struct Jobs {
    state: Mutex<JobsState>,
    /// Told when a job taken out to be waited for has been joined.
    joined: Condvar,
    /// Held by a compaction asked for by the caller, for its whole run: such compactions
    /// take turns.
    caller: Mutex<()>,
}

impl Jobs {
    /// Jobs whose last error (of the writer's open) is `error`.
    pub(crate) fn with_error(error: Option<String>) -> Jobs {
        Jobs {
            state: Mutex::new(JobsState {
                last_error: error,
                ..JobsState::default()
            }),
            joined: Condvar::new(),
            caller: Mutex::new(()),
        }
    }

    /// Waits until no job runs, and returns the result of the one it waited for (when
    /// another thread was already waiting for it: that job's error, if it failed).
    pub(crate) fn wait(&self) -> Result<()> {
        let mut st = self.state.lock();
        let mut waited = false;
        loop {
            if let Some(r) = Self::take(&mut st) {
                drop(st);
                return self.finish(r);
            }
            if !st.joining {
                return match (&st.last_error, waited) {
                    (Some(e), true) => {
                        Err(Error::Internal(format!("the background job failed: {e}")))
                    }
                    _ => Ok(()),
                };
            }
            self.joined.wait(&mut st);
            waited = true;
        }
    }

    /// Takes the running job out to be joined ([`Jobs::finish`]); until then no job
    /// starts.
    fn take(st: &mut JobsState) -> Option<Running> {
        let r = st.running.take()?;
        st.joining = true;
        Some(r)
    }

    /// Joins a job [`Jobs::take`] took out, and records its result.
    fn finish(&self, r: Running) -> Result<()> {
        let result = r
            .handle
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("a background job panicked".into())));
        let mut st = self.state.lock();
        st.joining = false;
        match &result {
            Ok(()) => st.last_error = None,
            Err(e) => st.last_error = Some(e.to_string()),
        }
        self.joined.notify_all();
        result
    }

    /// Records an error of the writer's own upkeep outside a job (the index refused a
    /// record of an append), shown as the last job's until a job succeeds.
    pub(crate) fn report(&self, error: String) {
        let mut st = self.state.lock();
        st.last_error = Some(error);
        // What the index needs now is a growth (which rebuilds it): not held back by the
        // wait after an earlier job's failure.
        st.retry_at_len = 0;
    }

    /// The error of the last job, if it failed.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.state.lock().last_error.clone()
    }
}

/// The policy, after an append: starts a job when one is due and none is running.
pub(crate) fn maybe_start(inner: &Arc<Inner>, gen: &Generation) {
    let Some(writer) = &inner.writer else {
        return;
    };
    let Some(s) = &gen.shared else {
        return;
    };
    let overflowed = s.overflow_from() != 0;
    let (records, base) = s.records();
    let compaction_due = writer.options.compaction.is_some_and(|p| {
        // Records appended since the file was written: superseded and repeated rules, and
        // rules that will expire, accumulate among them. Compacting once they reach a
        // fraction of what the file started with keeps the file within (1 + ratio) times
        // its live rules, and costs each record a bounded number of rewrites.
        let appended = records.saturating_sub(base);
        appended >= p.min_records && appended as f64 >= p.ratio * base.max(1) as f64
    });
    let grow_due = overflowed || s.due_to_grow();
    if !compaction_due && !grow_due {
        return;
    }
    let mut st = writer.jobs.state.lock();
    if st.caller_compacting || st.joining {
        return;
    }
    if let Some(r) = &st.running {
        if !r.handle.is_finished() {
            return;
        }
        if let Some(r) = Jobs::take(&mut st) {
            drop(st);
            let _ = writer.jobs.finish(r);
        }
        st = writer.jobs.state.lock();
        if st.caller_compacting || st.joining || st.running.is_some() {
            return;
        }
    }
    let log_len = gen.log.map.committed_len();
    if st.last_error.is_some() && log_len < st.retry_at_len {
        return;
    }
    let kind = if compaction_due {
        Kind::Compact
    } else {
        Kind::Grow
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let job_inner = inner.clone();
    let job_cancel = cancel.clone();
    let now = writer.now();
    let spawned = std::thread::Builder::new()
        .name(format!(
            "revledger-{}",
            if kind == Kind::Grow {
                "grow"
            } else {
                "compact"
            }
        ))
        .spawn(move || match kind {
            Kind::Grow => grow_while_due(&job_inner, &job_cancel),
            Kind::Compact => compact(&job_inner, now, &job_cancel).map(|_| ()),
        });
    match spawned {
        Ok(handle) => {
            st.retry_at_len = retry_after(log_len);
            st.running = Some(Running {
                kind,
                cancel,
                handle,
            });
        }
        Err(e) => {
            st.last_error = Some(format!("starting a background job: {e}"));
            st.retry_at_len = retry_after(log_len);
        }
    }
}

/// After a failed job, the log length before the next try: an eighth more, and at least
/// 64 KiB (about a thousand records) more.
fn retry_after(log_len: u64) -> u64 {
    log_len
        .saturating_add(log_len / 8)
        .saturating_add(64 * 1024)
}

/// A compaction asked for by the caller, run on the caller's thread: after any running
/// job, and with no other job or caller's compaction until it ends.
pub(crate) fn compact_now(inner: &Arc<Inner>, now: i64) -> Result<CompactStats> {
    let writer = inner.writer.as_ref().ok_or(Error::ReadOnly)?;
    let _turn = writer.jobs.caller.lock();
    // No job starts from here on; the one running (if any) is waited for. Cleared on the
    // way out, a panic included (the C ABI catches it and the handle lives on).
    struct CallerCompacting<'a>(&'a Jobs);
    impl Drop for CallerCompacting<'_> {
        fn drop(&mut self) {
            self.0.state.lock().caller_compacting = false;
        }
    }
    writer.jobs.state.lock().caller_compacting = true;
    let compacting = CallerCompacting(&writer.jobs);
    let _ = writer.jobs.wait();
    let result = compact(inner, now, &AtomicBool::new(false));
    drop(compacting);
    let mut st = writer.jobs.state.lock();
    match &result {
        Ok(_) => st.last_error = None,
        Err(e) => st.last_error = Some(e.to_string()),
    }
    result
}

/// The writer closes: a compaction running is cancelled (nothing depends on it), an
/// index growth is finished, and an index that stopped taking records is grown, so that
/// the next reader maps an index that holds the whole log.
pub(crate) fn on_close(inner: &Arc<Inner>) {
    let Some(writer) = &inner.writer else {
        return;
    };
    let running = Jobs::take(&mut writer.jobs.state.lock());
    if let Some(r) = running {
        if r.kind == Kind::Compact {
            r.cancel.store(true, Ordering::Relaxed);
        }
        let _ = writer.jobs.finish(r);
    }
    let gen = inner.gen.load_full();
    if gen.shared.as_ref().is_some_and(|s| s.overflow_from() != 0) && !gen.lost.is_set() {
        let _ = grow(inner, &AtomicBool::new(false));
    }
}

/// The writer's very last step, after its last sync: the index records that its writer
/// closed, and how both files look.
pub(crate) fn mark_closed(inner: &Inner) {
    let gen = inner.gen.load_full();
    if gen.lost.is_set() {
        return;
    }
    if let Some(s) = &gen.shared {
        let _ = s.mark_closed(&gen.log.file);
    }
}

fn cancelled(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(Error::Internal("cancelled".into()))
    } else {
        Ok(())
    }
}

/// Inserts into `index` what the log `log` holds between `from` and `to`.
fn index_log(
    index: &SharedIndex,
    hasher: &Hasher,
    log: LogBytes<'_>,
    from: u64,
    to: u64,
) -> Result<()> {
    let mut failed = None;
    let (end, stop) = scan(log, from, to, |record, payload| {
        if failed.is_some() {
            return;
        }
        let r = match record {
            Record::Rule(rule) => {
                let h = if rule.scope == Scope::Global {
                    0
                } else {
                    hasher.full(rule.scope, rule.tenant, rule.key)
                };
                if index.overflow_from() != 0 {
                    return; // full: the tails hold the rest
                }
                index.insert(h, &rule, payload, log).map(|i| {
                    if i == crate::index::Inserted::Full {
                        // Full while catching up with a flood of appends: like the
                        // writer's own index, it stops taking records here and readers'
                        // tails hold the rest until it grows.
                        index.set_overflow(payload - FRAME_HEADER_LEN as u64);
                    }
                })
            }
            Record::Config { max_token_lifetime } => {
                index.raise_max_token_lifetime(max_token_lifetime);
                Ok(())
            }
            Record::Position { .. } => {
                index.set_last_position(payload);
                Ok(())
            }
        };
        if let Err(e) = r {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if end < to {
        return Err(Error::corrupt(
            end,
            format!(
                "the committed log does not read back ({})",
                stop.unwrap_or("short")
            ),
        ));
    }
    Ok(())
}

/// The writer's log up to `end`, which it wrote.
fn writer_log(log: &LogFile, end: u64) -> Result<LogBytes<'_>> {
    if end > log.map.known_file_len() {
        log.map.refresh_len(&log.file)?;
    }
    log.map.log(end)
}

/// Opens (or builds) the shared index of a writer that just recovered the log. When no
/// index can be built (a read-only directory, a full disk), the writer goes on without
/// one — readers then index the log themselves — and says why in the second value.
pub(crate) fn open_writer_index(
    log: Arc<LogFile>,
    recovery: Recovery,
    lost: Arc<LostFlag>,
    access: FileAccess,
    min_keys: u64,
) -> Result<(Generation, Option<String>)> {
    let end = recovery.end;
    let epoch = log.map.index_epoch();
    let path = index_path(&log.path, log.header.generation);
    let hasher = Hasher::new(log.header.hash_seed);
    if let Some(index) = SharedIndex::open(&path, &log.header, epoch, true)? {
        if let Trust::Trusted {
            indexed_len,
            overflow_from,
        } = index.trust(&log.file, end)?
        {
            if overflow_from == 0 {
                // A writer that stopped (kill -9 included) in this boot: the index holds
                // every record below `indexed_len` and maybe more; add the rest.
                index_log(&index, &hasher, writer_log(&log, end)?, indexed_len, end)?;
                index.set_indexed_len(end);
            }
            let tail_start = if overflow_from == 0 {
                end
            } else {
                overflow_from
            };
            let gen = Generation::new_writer(log, Some(index), epoch, tail_start, recovery, lost)?;
            return Ok((gen, None));
        }
    }
    // No index this writer can trust: build one from the log.
    // Wrapping: the word is the file's, and a crafted maximum must not panic; a new
    // epoch only has to differ from the one readers hold.
    let epoch = epoch.wrapping_add(1);
    let mut records = 0u64;
    let wlog = writer_log(&log, end)?;
    scan(wlog, log.header.log_start, end, |r, _| {
        records += u64::from(matches!(r, Record::Rule(_)));
    });
    let tmp = sibling(
        &log.path,
        &format!("g{}.index.building", log.header.generation),
    );
    let access = FileAccess::of(&log.file).unwrap_or(access);
    let built = SharedIndex::create(&tmp, &log.header, epoch, records.max(min_keys), access)
        .and_then(|mut index| {
            index_log(&index, &hasher, wlog, log.header.log_start, end)?;
            index.validate(&log.file, end)?;
            index.rename_into(&path)?;
            Ok(index)
        });
    match built {
        Ok(index) => {
            log.map.publish_index_epoch(epoch)?;
            let gen = Generation::new_writer(log, Some(index), epoch, end, recovery, lost)?;
            Ok((gen, None))
        }
        Err(e @ Error::Io { .. }) => {
            let _ = std::fs::remove_file(&tmp);
            let why = format!("no shared index (readers index the log themselves): {e}");
            let gen = Generation::new_writer(
                log,
                None,
                epoch.wrapping_sub(1),
                HEADER_LEN_U64,
                recovery,
                lost,
            )?;
            Ok((gen, Some(why)))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

const HEADER_LEN_U64: u64 = crate::header::HEADER_LEN as u64;

/// Grows the index, again as long as the appends made meanwhile filled the new one past
/// its growth point: a burst of appends that ends while an index is built must not leave
/// readers a private tail until the next append. Bounded: the next append starts the
/// policy again.
fn grow_while_due(inner: &Arc<Inner>, cancel: &AtomicBool) -> Result<()> {
    for _ in 0..GROWTHS_PER_JOB {
        grow(inner, cancel)?;
        let gen = inner.gen.load_full();
        let due = gen
            .shared
            .as_ref()
            .is_some_and(|s| s.overflow_from() != 0 || s.due_to_grow());
        if !due || cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(())
}

/// Most growths one background job makes in a row.
const GROWTHS_PER_JOB: usize = 8;

/// Bytes of the smallest rule record (frame header and payload of an empty key), the
/// floor of the mean record size growth estimates with.
const GROWTH_MIN_RECORD: u64 = (FRAME_HEADER_LEN + crate::record::PAYLOAD_HEADER_LEN) as u64;

/// Keys a new table is sized for, holding `keys` now (a growth, a compaction): 7/4 of them,
/// at least the writer's `index_keys`. 7/4, not 2: a table grown when 3/4 full is then 3/7
/// full (21 B per key with its filter), and never under the 3/8 (24 B per key) that
/// doubling would leave.
fn table_keys(keys: u64, options: &WriterOptions) -> u64 {
    keys.saturating_mul(7)
        .div_ceil(4)
        .max(options.index_keys.max(1))
}

/// Grows the shared index: a table for 7/4 of the keys, built in the background.
fn grow(inner: &Arc<Inner>, cancel: &AtomicBool) -> Result<()> {
    let writer = inner.writer.as_ref().ok_or(Error::ReadOnly)?;
    let (gen, end0) = {
        let w = writer.state.lock();
        (inner.gen.load_full(), w.end)
    };
    gen.lost.check()?;
    let log = gen.log.clone();
    let Some(old) = &gen.shared else {
        return Err(Error::Internal(
            "the writer has no shared index to grow".into(),
        ));
    };
    // Records the old index did not take (appended after it filled), estimated at the
    // mean size of those it did: dividing by the smallest record size instead made the
    // table of a ledger appended in big batches up to 3x too large (39 B per key).
    let overflow = old.overflow_from();
    let pending = if overflow != 0 {
        let indexed = overflow.saturating_sub(HEADER_LEN_U64);
        let mean = (indexed / old.records().0.max(1)).max(GROWTH_MIN_RECORD);
        end0.saturating_sub(overflow) / mean
    } else {
        0
    };
    // The old table's key counters are words of a shared file: trusted no further than
    // its slots, nor than the log's rule records (at least 32 bytes each) could fill.
    let held = old.total_keys().min(end0 / GROWTH_MIN_RECORD);
    let keys = table_keys(held.saturating_add(pending), &writer.options);
    let epoch = gen.epoch.wrapping_add(1);
    let tmp = sibling(
        &log.path,
        &format!("g{}.index.building", log.header.generation),
    );
    let access = FileAccess::of(&log.file)
        .map_err(|e| Error::io_path("reading the mode of", &log.path, e))?;
    let mut index = SharedIndex::create(&tmp, &log.header, epoch, keys, access)?;
    let hasher = gen.hasher;
    let result = (|| {
        // 1. Everything the old index holds, then what it did not take; or, when a slot
        // of the old index points at no rule (a damaged file), everything the log holds.
        let view = writer_log(&log, end0)?;
        let copied = copy_index(old, &index, &hasher, view, overflow)
            .and_then(|beyond| appended_since(writer, &log, &hasher, &beyond));
        match copied {
            Err(Error::Corrupt { .. }) => {
                index = SharedIndex::create(&tmp, &log.header, epoch, keys, access)?;
                index_log(&index, &hasher, view, log.header.log_start, end0)?;
            }
            copied => copied?,
        }
        // 2. Rounds of catch-up without the lock.
        let mut from = end0;
        for _ in 0..MAX_ROUNDS {
            cancelled(cancel)?;
            let to = log.map.committed_len();
            if to.saturating_sub(from) < FINAL_CATCH_UP_BYTES {
                break;
            }
            index_log(&index, &hasher, writer_log(&log, to)?, from, to)?;
            from = to;
        }
        Ok(from)
    })();
    let from = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // 3. The last records and the swap, under the append lock.
    let mut w = writer.state.lock();
    let end = w.end;
    let swapped = (|| {
        if !Arc::ptr_eq(&inner.gen.load_full(), &gen) {
            return Err(Error::Internal(
                "the ledger changed while its index grew".into(),
            ));
        }
        index_log(&index, &hasher, writer_log(&log, end)?, from, end)?;
        let (records, base) = old.records();
        index.set_records(records.max(index.records().0), base);
        index.validate(&log.file, end)?;
        index.rename_into(&index_path(&log.path, log.header.generation))
    })();
    if let Err(e) = swapped {
        drop(w);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let next = Generation::new_writer(
        log.clone(),
        Some(index),
        epoch,
        end,
        gen.recovery,
        gen.lost.clone(),
    )?;
    inner.set_gen(next);
    log.map.publish_index_epoch(epoch)?;
    old.mark_replaced();
    w.end = end;
    drop(w);
    Ok(())
}

/// Copies what index `old` holds of the log up to `view.end()` into `index`, and the
/// records `old` left to the tails from `overflow` (when not 0). Returns the offsets and
/// tags of `old`'s slots at or past `view.end()`, left to the catch-up (see
/// [`appended_since`]). A slot pointing at no rule, or at another key's, is `Corrupt`.
fn copy_index(
    old: &SharedIndex,
    index: &SharedIndex,
    hasher: &Hasher,
    view: LogBytes<'_>,
    overflow: u64,
) -> Result<Vec<(u64, u64)>> {
    let mut beyond = Vec::new();
    old.for_each_slot(|off, tag| {
        let Some(rule) = view.from(off).and_then(crate::record::rule_at) else {
            if off >= view.end() {
                beyond.push((off, tag));
                return Ok(());
            }
            return Err(Error::corrupt(off, "the index points at no rule record"));
        };
        let h = hasher.full(rule.scope, rule.tenant, rule.key);
        if tag_of(h) != tag {
            // Its key's record is elsewhere, and no slot may point at it.
            return Err(Error::corrupt(
                off,
                "a slot of the index points at another key's rule record",
            ));
        }
        index.insert(h, &rule, off, view).map(|_| ())
    })?;
    let g = old.newest(Scope::Global);
    if g != i64::MIN {
        index.insert(0, &Rule::new(Scope::Global, &[], &[], g), 0, view)?;
    }
    index.raise_max_token_lifetime(old.max_token_lifetime());
    let lp = old.last_position();
    if lp != 0 && lp < view.end() {
        index.set_last_position(lp);
    }
    if overflow != 0 {
        index_log(index, hasher, view, overflow, view.end())?;
    }
    Ok(beyond)
}

/// Checks that slots which pointed past the end of the log as a listing read it (`beyond`:
/// offset and tag) point at rules appended since, of the slots' own keys, which the caller
/// takes from the log: an append indexes its records just before committing them.
/// Anything else (past the committed end once no append runs, no rule there, another
/// key's rule) is a damaged index, whose key would otherwise be left out: `Corrupt`.
fn appended_since(
    writer: &Writer,
    log: &LogFile,
    hasher: &Hasher,
    beyond: &[(u64, u64)],
) -> Result<()> {
    if beyond.is_empty() {
        return Ok(());
    }
    // Under the append lock, no append is between indexing and committing.
    let w = writer.state.lock();
    let view = writer_log(log, w.end)?;
    for &(off, tag) in beyond {
        let rule = view.from(off).and_then(crate::record::rule_at);
        if rule.is_none_or(|r| tag_of(hasher.full(r.scope, r.tenant, r.key)) != tag) {
            return Err(Error::corrupt(
                off,
                "a slot of the index points past the log's end, at no rule record of its key",
            ));
        }
    }
    Ok(())
}

/// Compacts the ledger as of `now`: a new file with one record per live key. When the
/// shared index is found damaged (`Corrupt`), a growth replaces it (rebuilding it from the
/// log) and the compaction runs once more: otherwise a due compaction would fail on it
/// again and again and keep the growth that repairs it from ever starting.
pub(crate) fn compact(inner: &Arc<Inner>, now: i64, cancel: &AtomicBool) -> Result<CompactStats> {
    match compact_once(inner, now, cancel) {
        Err(e @ Error::Corrupt { .. }) => match grow(inner, cancel) {
            Ok(()) => compact_once(inner, now, cancel),
            Err(_) => Err(e),
        },
        done => done,
    }
}

fn compact_once(inner: &Arc<Inner>, now: i64, cancel: &AtomicBool) -> Result<CompactStats> {
    let writer = inner.writer.as_ref().ok_or(Error::ReadOnly)?;
    // The shared index's global cutoff as of end0 (appends raise it under this lock).
    let (gen, end0, global0) = {
        let w = writer.state.lock();
        let gen = inner.gen.load_full();
        let global0 = gen
            .shared
            .as_ref()
            .map_or(i64::MIN, |s| s.newest(Scope::Global));
        (gen, w.end, global0)
    };
    gen.lost.check()?;
    let old_log = gen.log.clone();
    let generation = old_log.header.generation.checked_add(1).ok_or_else(|| {
        Error::corrupt(
            64,
            "the header's generation is at its maximum: cannot compact",
        )
    })?;
    let header = Header {
        max_token_lifetime: gen.max_token_lifetime(),
        generation,
        created_at: unix_now_floor(),
        file_id: random_file_id()?,
        ..old_log.header.clone()
    };
    let mut stats = CompactStats {
        records_before: gen.shared.as_ref().map_or(0, |s| s.records().0),
        bytes_before: end0,
        ..CompactStats::default()
    };
    let path = inner.path.clone();
    let tmp = sibling(&path, "compacting");
    let tmp_index = sibling(&path, &format!("g{generation}.index.building"));
    let access = FileAccess::of(&old_log.file)
        .map_err(|e| Error::io_path("reading the mode of", &path, e))?;
    let hasher = gen.hasher;
    let cleanup = || {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&tmp_index);
    };

    // 1. The live rules, written to a new file and indexed. The writer's own tail holds
    // what its index did not take (overflow): brought up to the log's end first.
    gen.refresh(false)?;
    let built = (|| {
        let mut live: Vec<Rule> = Vec::new();
        let beyond = gen.live_rules(Some((end0, global0)), |scope, tenant, key, at, _| {
            if gen.is_expired(scope, at, now) {
                stats.keys_dropped += 1;
            } else {
                live.push(Rule::new(scope, tenant, key, at));
            }
        })?;
        appended_since(writer, &old_log, &hasher, &beyond)?;
        stats.rules_kept = live.len() as u64;
        cancelled(cancel)?;
        let new_log = LogFile::create_compacted(&tmp, &path, &header, &[], access)?;
        // Sized as a growth sizes a table; new keys appended later grow it as they would
        // any table.
        let keys = table_keys(live.len() as u64, &writer.options);
        let index = SharedIndex::create(&tmp_index, &header, 1, keys, access)?;
        let mut end = header.log_start;
        let mut buf = Vec::with_capacity(CHUNK + 16_384);
        let mut offsets = Vec::new();
        let flush = |buf: &mut Vec<u8>, offsets: &mut Vec<u64>, end: &mut u64| -> Result<()> {
            new_log.write_at(*end, buf)?;
            let new_end = *end + buf.len() as u64;
            let view = writer_log(&new_log, new_end)?;
            for &off in offsets.iter() {
                let rule = view
                    .from(off)
                    .and_then(crate::record::rule_at)
                    .ok_or_else(|| {
                        Error::Internal("a compacted frame does not read back".into())
                    })?;
                let h = if rule.scope == Scope::Global {
                    0
                } else {
                    hasher.full(rule.scope, rule.tenant, rule.key)
                };
                index.insert(h, &rule, off, view)?;
            }
            *end = new_end;
            buf.clear();
            offsets.clear();
            Ok(())
        };
        for r in &live {
            offsets.push(end + buf.len() as u64 + FRAME_HEADER_LEN as u64);
            encode_rule(&mut buf, r);
            if buf.len() >= CHUNK {
                flush(&mut buf, &mut offsets, &mut end)?;
                cancelled(cancel)?;
            }
        }
        flush(&mut buf, &mut offsets, &mut end)?;
        index.set_records(stats.rules_kept, stats.rules_kept);
        if let Some(p) = gen.position_before(end0)? {
            encode_position(&mut buf, &p);
            let at = end;
            flush(&mut buf, &mut offsets, &mut end)?;
            index.set_last_position(at + FRAME_HEADER_LEN as u64);
        }
        drop(live);
        // 2. Rounds of catch-up: frames appended to the old file since end0 are copied.
        let mut from = end0;
        for _ in 0..MAX_ROUNDS {
            cancelled(cancel)?;
            let to = old_log.map.committed_len();
            if to.saturating_sub(from) < FINAL_CATCH_UP_BYTES {
                break;
            }
            end = copy_frames(&old_log, from, to, &new_log, end, &index, &hasher)?;
            from = to;
        }
        new_log.sync_data()?;
        Ok((new_log, index, from, end))
    })();
    let (new_log, mut index, from, mut end) = match built {
        Ok(b) => b,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };

    // 3. The last records and the swap, under the sync lock and the append lock.
    let sync_guard = writer.sync_lock.lock();
    let mut w = writer.state.lock();
    let prepared = (|| {
        if !Arc::ptr_eq(&inner.gen.load_full(), &gen) {
            return Err(Error::Internal(
                "the ledger changed while it was compacted".into(),
            ));
        }
        watch::is_at_path(&old_log.file, &path).and_then(|at_path| {
            if at_path {
                Ok(())
            } else {
                Err(Error::io_path(
                    "compacting",
                    &path,
                    std::io::Error::other("the ledger file is no longer at its path"),
                ))
            }
        })?;
        end = copy_frames(&old_log, from, w.end, &new_log, end, &index, &hasher)?;
        new_log.map.publish_committed(end)?;
        new_log.sync_data()?;
        new_log.map.publish_synced(end)?;
        index.validate(&new_log.file, end)?;
        new_log.map.publish_index_epoch(1)?;
        index.rename_into(&index_path(&path, generation))?;
        io::rename(&tmp, &path)
            .map_err(|e| Error::io_path("renaming the compacted ledger onto", &path, e))
    })();
    if let Err(e) = prepared {
        drop(w);
        drop(sync_guard);
        cleanup();
        let _ = std::fs::remove_file(index_path(&path, generation));
        return Err(e);
    }
    // Renamed: from here on the new file is the ledger, whatever fails next.
    let new_log = Arc::new(new_log);
    let lost = Arc::new(LostFlag::default());
    let next = Generation::new_writer(
        new_log,
        Some(index),
        1,
        end,
        Recovery {
            end,
            dropped_bytes: 0,
        },
        lost.clone(),
    );
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            // Cannot happen (the same header was checked at open); the old generation
            // must not go on as if it were the ledger.
            let why = format!("the compacted ledger could not be opened: {e}");
            let _ = gen.lost.set(watch::Lost::Replaced(why));
            return Err(e);
        }
    };
    inner.set_gen(next);
    w.end = end;
    let retired = old_log.map.publish_retired();
    drop(w);
    let dir = sync_dir(&parent_dir(&path));
    drop(sync_guard);
    let _ = std::fs::remove_file(index_path(&path, old_log.header.generation));
    stats.bytes_after = end;
    retired?;
    if let Err(e) = dir {
        // The rename may not be durable: a power loss could bring the old file back,
        // without what is appended to the new one. Stop vouching for durability.
        let why = format!("the directory fsync after a compaction failed ({e})");
        return Err(lost.set(watch::Lost::SyncFailed(why)));
    }
    Ok(stats)
}

/// Copies the frames of `old` in `[from, to)` to the end `end` of `new`, indexing them.
/// Returns the new end.
fn copy_frames(
    old: &LogFile,
    from: u64,
    to: u64,
    new: &LogFile,
    end: u64,
    index: &SharedIndex,
    hasher: &Hasher,
) -> Result<u64> {
    if to <= from {
        return Ok(end);
    }
    let src = writer_log(old, to)?;
    let bytes = src.range(from, to);
    new.write_at(end, bytes)?;
    let new_end = end + bytes.len() as u64;
    index_log(index, hasher, writer_log(new, new_end)?, end, new_end)?;
    Ok(new_end)
}

/// A writer opening a file of format version 1 (its lock held on `file`) rewrites it as
/// a version 2 file and renames that over it. Returns whether it did (then the caller
/// opens the path again).
pub(crate) fn upgrade_v1_if_needed(path: &Path, file: &std::fs::File) -> Result<bool> {
    let mut head = [0u8; crate::header::HEADER_LEN];
    let n = io::read_prefix(file, &mut head).map_err(|e| Error::io_path("reading", path, e))?;
    if crate::header::version_of(&head[..n]) != Some(crate::header::FORMAT_VERSION_1) {
        return Ok(false);
    }
    let v1 = crate::v1::decode_header(&head[..n])?;
    let hasher = Hasher::new(v1.hash_seed);
    let mut lifetime = v1.max_token_lifetime;
    let mut frames = Vec::new();
    let mut rules = 0u64;
    crate::v1::for_each_record(file, &v1, |record| match record {
        Record::Rule(r) => {
            rules += 1;
            encode_rule(&mut frames, &r)
        }
        Record::Config { max_token_lifetime } => {
            lifetime = lifetime.max(max_token_lifetime);
            crate::record::encode_config(&mut frames, max_token_lifetime)
        }
        Record::Position {
            stream,
            last_id,
            last_heard,
            degraded,
        } => {
            let mut p = crate::position::StreamPosition::new(stream, last_id, last_heard);
            p.degraded = degraded;
            encode_position(&mut frames, &p)
        }
    })?;
    let header = Header {
        hash_seed: v1.hash_seed,
        max_token_lifetime: lifetime,
        leeway: v1.leeway,
        created_at: unix_now_floor(),
        generation: v1.generation.checked_add(1).ok_or_else(|| {
            Error::corrupt(
                64,
                "the header's generation is at its maximum: cannot upgrade",
            )
        })?,
        log_start: crate::header::HEADER_LEN as u64,
        hash_check: hasher.check_value(),
        file_id: random_file_id()?,
    };
    let tmp = sibling(path, "upgrading");
    let tmp_index = sibling(path, &format!("g{}.index.building", header.generation));
    let access =
        FileAccess::of(file).map_err(|e| Error::io_path("reading the mode of", path, e))?;
    let done = (|| {
        let new_log = LogFile::create_compacted(&tmp, path, &header, &frames, access)?;
        let end = header.log_start + frames.len() as u64;
        let mut index =
            SharedIndex::create(&tmp_index, &header, 1, rules.max(INITIAL_KEYS), access)?;
        index_log(
            &index,
            &hasher,
            writer_log(&new_log, end)?,
            header.log_start,
            end,
        )?;
        index.set_records(rules, 0);
        new_log.sync_data()?;
        index.validate(&new_log.file, end)?;
        new_log.map.publish_index_epoch(1)?;
        index.rename_into(&index_path(path, header.generation))?;
        io::rename(&tmp, path)
            .map_err(|e| Error::io_path("renaming the upgraded ledger onto", path, e))?;
        sync_dir(&parent_dir(path))
    })();
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&tmp_index);
        return Err(e);
    }
    // Version 1 readers follow the mark to the new file (and, being older, refuse it).
    let map = crate::map::FileMap::new(file, true)?;
    map.publish_v1_retired();
    Ok(true)
}

/// Removes what crashed compactions, growths and upgrades left: temporary files, and
/// index files of other generations.
pub(crate) fn remove_stale_files(path: &Path, generation: u64) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let current = format!(".{name}.g{generation}.index");
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        let stale = f == format!(".{name}.compacting")
            || f == format!(".{name}.upgrading")
            || (f.starts_with(&format!(".{name}.g")) && f.ends_with(".index.building"))
            || (f.starts_with(&format!(".{name}.g")) && f.ends_with(".index") && f != current);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
