//! The ledger handle: one writer or any number of readers over a ledger file and its
//! shared index. This is where record → log → index → check meet.
//!
//! Visibility protocol. The writer copies frames past `committed_len`, inserts their rules
//! into the shared index (which every process maps), then publishes the new
//! `committed_len` (Release). A check therefore finds a rule in the shared index as soon
//! as it is committed, with no lock, no system call, and no per-process indexing: readers
//! open in constant time and share one copy of the index. A reader indexes privately
//! only its *tail*: what the shared index does not hold, which is the few records
//! committed between the writer's last index update and the reader's open, or — when the
//! index is full and a bigger one is being built (`overflow_from`), or when no index can
//! be trusted (after a power loss, until a writer rebuilds it) — what the writer appends
//! meanwhile. Only then does a check compare `committed_len` with what its tail has
//! seen, and take the catch-up lock (readers' own lock, never held by the writer's
//! append) to apply what is new.
//!
//! A check reads one cache line of the ledger header that the writer rarely stores to
//! (`retired`, `index_epoch`). When a compaction replaced the file (`retired`) a reader
//! opens the path again; when the writer published a bigger index (a new epoch) a reader
//! maps it; in both cases it swaps in a new [`Generation`] before it answers, so no
//! check answers from an index or a file the writer no longer maintains.

use crate::check::{self, Rules};
use crate::compact::{self, Jobs};
use crate::error::{Error, LeanResult, Result};
use crate::hash::Hasher;
use crate::header::{
    random_bytes, random_file_id, Header, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LIFETIME, HEADER_LEN,
};
use crate::index::{index_path, Filter, Found, Inserted, SharedIndex, Trust};
use crate::log::{next_valid_frame, scan, FileAccess, LogFile, Recovery};
use crate::map::HeaderWords;
use crate::notices;
use crate::position::{PositionCell, StreamPosition};
use crate::record::{
    decode_frame, encode_config, encode_position, encode_rule, rule_keys_at, Frame, Record,
    FRAME_HEADER_LEN,
};
use crate::rule::{now_cutoff, unix_now_floor, Rule, Scope, Token, Verdict};
use crate::tail::{KeySource, TailIndex};
use crate::watch::{self, LostFlag, PathState};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// When the writer compacts on its own, in the background (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionPolicy {
    /// Compact once the rule records appended since the last compaction exceed this
    /// fraction of the rules the file held after it (duplicates, superseded and expired
    /// rules are what accumulates among them). Default 0.75: the file stays under 2×
    /// what its live rules need.
    pub ratio: f64,
    /// ... and at least this many records (default [`AUTO_COMPACT_MIN_RECORDS`]).
    pub min_records: u64,
}

/// Fewest appended records after which automatic compaction may run (default policy).
pub const AUTO_COMPACT_MIN_RECORDS: u64 = 16_384;

impl Default for CompactionPolicy {
    fn default() -> CompactionPolicy {
        CompactionPolicy {
            ratio: 0.75,
            min_records: AUTO_COMPACT_MIN_RECORDS,
        }
    }
}

/// How a writer opens (and, if missing, creates) a ledger.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Longest lifetime of the tokens this ledger must cover, in seconds. On creation,
    /// 0 means one day ([`DEFAULT_MAX_TOKEN_LIFETIME`]). On reopening, 0 keeps the
    /// ledger's value, a larger value raises it (recorded in the log), a smaller one is
    /// refused with [`Error::InvalidArgument`].
    pub max_token_lifetime: i64,
    /// Clock-skew leeway in seconds, fixed at creation; `None` means
    /// [`DEFAULT_LEEWAY`] (300 s). Ignored when the ledger exists.
    pub leeway: Option<i64>,
    /// When the log is damaged in the middle, keep the valid prefix (reported in
    /// [`Stats::dropped_bytes`]) instead of failing with [`Error::Corrupt`].
    pub keep_valid_prefix: bool,
    /// Automatic compaction, in a background thread of the writer: on by default
    /// ([`CompactionPolicy::default`]); `None` turns it off (the shared index still grows
    /// as the ledger does; only dropping dead rules stops).
    pub compaction: Option<CompactionPolicy>,
    /// Permission bits of the files the writer creates (the ledger, its index, every
    /// compacted file): default 0600. Readers running as another user need at least
    /// 0640 and the right group. Refused: bits beyond 0o777, no owner read and write,
    /// and write access for every user (anyone could undo revocations).
    pub file_mode: u32,
    /// Group id the writer gives the files it creates (`None`: its own group). With
    /// `file_mode` 0640, members of this group (e.g. nginx workers' `www-data`) read.
    pub file_group: Option<u32>,
    /// Keys the shared index is sized for at least when the writer creates, rebuilds or
    /// grows it (default [`INDEX_MIN_KEYS`]): a smaller index costs less for small
    /// ledgers and grows sooner.
    pub index_keys: u64,
    /// The clock the writer's background compaction judges expiry by (Unix seconds);
    /// `None`: the system's. For simulations (benches/churn.rs), not for production.
    #[doc(hidden)]
    pub clock: Option<fn() -> i64>,
}

/// Default of [`WriterOptions::index_keys`].
pub const INDEX_MIN_KEYS: u64 = crate::index::INITIAL_KEYS;

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            max_token_lifetime: 0,
            leeway: None,
            keep_valid_prefix: false,
            compaction: Some(CompactionPolicy::default()),
            file_mode: 0o600,
            file_group: None,
            index_keys: INDEX_MIN_KEYS,
            clock: None,
        }
    }
}

impl WriterOptions {
    /// Options with this `max_token_lifetime` and defaults otherwise.
    pub fn with_lifetime(max_token_lifetime: i64) -> WriterOptions {
        WriterOptions {
            max_token_lifetime,
            ..WriterOptions::default()
        }
    }

    fn access(&self) -> FileAccess {
        FileAccess {
            mode: self.file_mode,
            group: self.file_group,
        }
    }
}

/// Figures about a ledger, from [`Ledger::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rule records stored: the rules the file started with plus every rule record
    /// appended since (duplicates included).
    pub rule_records: u64,
    /// Rules the file started with: written by the last compaction (0 if never).
    pub compacted_keys: u64,
    /// Distinct keys with a rule: what the index holds.
    pub live_keys: u64,
    /// Keys whose rule can no longer revoke an unexpired token (dropped by compaction).
    pub expired_keys: u64,
    /// Bytes of the log that hold committed records (header included).
    pub log_bytes: u64,
    /// Size of the file on disk (the log plus preallocated space).
    pub file_bytes: u64,
    /// Bytes of the shared index's table and filter (mapped by every process once).
    pub index_bytes: u64,
    /// Bytes of this process's own tail index (0 in the common case).
    pub tail_bytes: u64,
    /// Whether this handle uses the shared index (false: it indexes the log itself).
    pub shared_index: bool,
    /// Effective maximum token lifetime, in seconds.
    pub max_token_lifetime: i64,
    /// Clock-skew leeway, in seconds.
    pub leeway: i64,
    /// Compaction generation of the file.
    pub generation: u64,
    /// Epoch of the shared index (one more each time the writer grows or rebuilds it).
    pub index_epoch: u64,
    /// Whether this handle is the writer.
    pub writer: bool,
    /// Bytes cut off the end of the log when it was opened (torn tail or, when asked,
    /// damaged records).
    pub dropped_bytes: u64,
    /// Writer: the error of the last background compaction or index growth, if it
    /// failed (the writer retries later; answers are unaffected).
    pub background_error: Option<String>,
}

/// What compaction did, from [`Ledger::compact`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Rule records in the log before.
    pub records_before: u64,
    /// Rules written to the new file (one per live key).
    pub rules_kept: u64,
    /// Keys dropped because every token they could revoke has expired.
    pub keys_dropped: u64,
    /// Log bytes before.
    pub bytes_before: u64,
    /// Log bytes of the new file.
    pub bytes_after: u64,
}

pub(crate) struct CatchUp {
    /// End of the last record applied to the tail.
    pub(crate) applied: u64,
    /// Corruption found after open: every later check reports it (fail closed).
    failure: Option<(u64, String)>,
    /// Rule records applied to the tail.
    pub(crate) rule_records: u64,
    /// The `committed_len` at which the log was found to end in a torn tail (at
    /// `applied`): a crash left it, and the next writer cuts it off.
    torn: Option<u64>,
}

/// One ledger file with the index a handle reads it through. A compaction (a new file)
/// or a new index epoch makes a new generation.
pub(crate) struct Generation {
    /// The words of `log`'s header every check reads (valid while `log` lives).
    header: HeaderWords,
    pub(crate) log: Arc<LogFile>,
    pub(crate) hasher: Hasher,
    /// The shared index (readers: only when trusted).
    pub(crate) shared: Option<SharedIndex>,
    /// The ledger header's `index_epoch` this generation was made for.
    pub(crate) epoch: u64,
    /// The ledger header's `recoveries` when this generation was made.
    recoveries: u64,
    /// What the shared index does not hold (see the module docs).
    pub(crate) tail: TailIndex,
    /// Whether anything was applied to the tail (checks skip it otherwise).
    tail_used: AtomicBool,
    /// The `committed_len` the tail fully reflects.
    seen: AtomicU64,
    /// Bytes of the log the tail may point into (raised before records are applied).
    readable: AtomicU64,
    /// The newest `committed_len` this handle loaded: the view shared-index lookups read
    /// records through.
    committed_view: AtomicU64,
    pub(crate) catch_up: Mutex<CatchUp>,
    tail_lifetime: AtomicI64,
    pub(crate) recovery: Recovery,
    /// The newest stream position read (from the tail, or from the shared index's
    /// pointer to the last position record).
    position: PositionCell,
    /// Set once the file stopped being the ledger at the path (src/watch.rs).
    pub(crate) lost: Arc<LostFlag>,
}

impl KeySource for Generation {
    #[inline]
    fn keys_at(&self, payload_offset: u64) -> Option<(&[u8], &[u8])> {
        let log = self
            .log
            .map
            .log(self.readable.load(Ordering::Acquire))
            .ok()?;
        rule_keys_at(log.from(payload_offset)?)
    }
}

/// What one check reads: a generation, its shared index's filter, and whether the tail
/// holds anything.
struct Lookup<'a> {
    gen: &'a Generation,
    filter: Filter<'a>,
    tail: bool,
}

impl Rules for Lookup<'_> {
    #[inline(always)]
    fn hasher(&self) -> &Hasher {
        &self.gen.hasher
    }

    #[inline(always)]
    fn newest(&self) -> [i64; 7] {
        let mut n = match &self.gen.shared {
            Some(s) => s.newest_all(),
            None => [i64::MIN; 7],
        };
        if self.tail {
            for (s, v) in n.iter_mut().enumerate() {
                *v = (*v).max(self.gen.tail.newest(Scope::ALL[s]));
            }
        }
        n
    }

    #[inline(always)]
    fn has_token_rules(&self) -> bool {
        self.gen
            .shared
            .as_ref()
            .is_some_and(|s| s.keys(Scope::Token) != 0)
            || (self.tail && self.gen.tail.has_token_rules())
    }

    #[inline(always)]
    fn prefetch(&self, hash: u64) {
        self.filter.prefetch(hash);
    }

    #[inline(always)]
    fn may_hold(&self, hash: u64) -> bool {
        self.tail || self.filter.may_contain(hash)
    }

    #[inline(never)]
    fn get(&self, hash: u64, scope: Scope, tenant: &[u8], key: &[u8]) -> LeanResult<Option<i64>> {
        let mut best = None;
        if let Some(s) = &self.gen.shared {
            // Without a tail, `may_hold` was this very filter test: not asked twice.
            if !self.tail || self.filter.may_contain(hash) {
                best = self.gen.find_shared(s, hash, scope, tenant, key)?;
            }
        }
        if self.tail {
            best = best.max(
                self.gen
                    .tail
                    .get_hashed(scope, hash, tenant, key, self.gen)?,
            );
        }
        Ok(best)
    }
}

impl Generation {
    pub(crate) fn new(
        log: Arc<LogFile>,
        shared: Option<SharedIndex>,
        epoch: u64,
        tail_start: u64,
        recovery: Recovery,
        lost: Arc<LostFlag>,
    ) -> Result<Generation> {
        let hasher = Hasher::new(log.header.hash_seed);
        if hasher.check_value() != log.header.hash_check {
            return Err(Error::Incompatible(
                "the ledger's index hash differs from this build's (a different hash \
                 function or version): this build would miss every key. Use the revledger \
                 version that wrote it, or compact it with the writing version first"
                    .into(),
            ));
        }
        let lifetime = shared
            .as_ref()
            .map_or(log.header.max_token_lifetime, |s| s.max_token_lifetime())
            .max(log.header.max_token_lifetime);
        Ok(Generation {
            header: log.map.header_words(),
            recoveries: log.map.recoveries(),
            hasher,
            shared,
            epoch,
            tail: TailIndex::new(hasher),
            tail_used: AtomicBool::new(false),
            seen: AtomicU64::new(0),
            readable: AtomicU64::new(tail_start),
            committed_view: AtomicU64::new(tail_start),
            catch_up: Mutex::new(CatchUp {
                applied: tail_start,
                failure: None,
                rule_records: 0,
                torn: None,
            }),
            tail_lifetime: AtomicI64::new(lifetime),
            recovery,
            position: PositionCell::default(),
            lost,
            log,
        })
    }

    /// The writer's generation: its index, and a tail from `tail_start` (non-empty only
    /// when the index stopped taking records).
    pub(crate) fn new_writer(
        log: Arc<LogFile>,
        shared: Option<SharedIndex>,
        epoch: u64,
        tail_start: u64,
        recovery: Recovery,
        lost: Arc<LostFlag>,
    ) -> Result<Generation> {
        // An index that stopped taking records leaves the rest to the tail.
        let tail_start = match shared.as_ref().map(SharedIndex::overflow_from) {
            Some(o) if o != 0 => tail_start.min(o),
            _ => tail_start,
        };
        let gen = Generation::new(log, shared, epoch, tail_start, recovery, lost)?;
        gen.refresh(true)?;
        Ok(gen)
    }

    /// The newest stream position if its record lies before `end`: a compaction copies a
    /// later one with the frames appended since `end`, and would otherwise write it twice.
    pub(crate) fn position_before(&self, end: u64) -> Result<Option<StreamPosition>> {
        let cell = self.position()?;
        let before = cell.offset() < end;
        Ok(cell.get().filter(|_| before))
    }

    /// Looks `(scope, tenant, key)` up in the shared index; a record past this handle's
    /// view of the log makes it load `committed_len` again, once.
    #[inline]
    fn find_shared(
        &self,
        s: &SharedIndex,
        hash: u64,
        scope: Scope,
        tenant: &[u8],
        key: &[u8],
    ) -> LeanResult<Option<i64>> {
        let p = &s.layout().probe(hash);
        let view = self.committed_view.load(Ordering::Relaxed);
        match s.find(p, scope, tenant, key, self.log.map.log(view)?)? {
            Found::Cutoff(c) => Ok(Some(c)),
            Found::Absent => Ok(None),
            Found::Beyond => Ok(self.find_shared_beyond(s, p, scope, tenant, key)?),
        }
    }

    /// A slot with the key's tag points past this handle's view of the log: look again
    /// with the committed end as it is now. The writer inserts a record into the index
    /// just before it commits it (so that the index covers every committed record); when
    /// the key was already there, its slot no longer points at the older rule, so the
    /// key must not read as absent meanwhile: wait for the commit (nanoseconds, unless
    /// the writer is descheduled), and fail closed if it does not come (a writer that
    /// died between the two steps; the next writer's recovery rebuilds the index).
    #[cold]
    fn find_shared_beyond(
        &self,
        s: &SharedIndex,
        p: &crate::index::Probe,
        scope: Scope,
        tenant: &[u8],
        key: &[u8],
    ) -> Result<Option<i64>> {
        const PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);
        let mut started: Option<std::time::Instant> = None;
        let mut spins = 0u32;
        loop {
            let committed = self.advance_view()?;
            match s
                .find(p, scope, tenant, key, self.log.map.log(committed)?)
                .map_err(|e| *e)?
            {
                Found::Cutoff(c) => return Ok(Some(c)),
                Found::Absent => return Ok(None),
                Found::Beyond => {}
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let since = *started.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > PATIENCE {
                return Err(Error::Internal(format!(
                    "the shared index points past the committed log (at {committed}) for a \
                     key of this check, and the writer did not commit within {PATIENCE:?}: \
                     did it stop between writing and committing? (the next writer recovers)"
                )));
            }
            std::thread::yield_now();
        }
    }

    /// Moves this handle's view of the log up to the committed end as it is now (within
    /// the file's length, re-read when the end is past what is mapped); returns that end.
    fn advance_view(&self) -> Result<u64> {
        let mut committed = self.log.map.committed_len();
        if committed > self.log.map.known_file_len() {
            committed = committed.min(self.log.map.refresh_len(&self.log.file)?);
        }
        self.committed_view.fetch_max(committed, Ordering::Relaxed);
        Ok(committed)
    }

    /// Whether the tail must follow the log: there is no shared index, or it stopped
    /// taking records (full, a bigger one being built).
    #[inline(always)]
    fn follows_log(&self) -> bool {
        match &self.shared {
            None => true,
            Some(s) => s.overflow_from() != 0,
        }
    }

    /// A writer's recovery changed the end of the log since this generation was made.
    /// When it cut the log below what this generation had read (`keep_valid_prefix`
    /// dropping damaged records, with every one after them), checks answered from
    /// records that are gone: the handle fails closed (`Corrupt`) instead of going on
    /// without them. A torn tail past the committed end changes nothing that was read.
    fn judge_recovery(&self) -> Result<()> {
        let cut = self.log.map.recovered_end();
        // What checks could answer from: records applied, never a torn tail past them.
        let read = self.committed_view.load(Ordering::Acquire);
        if cut != 0 && cut < read {
            return Err(self.lost.set(watch::Lost::Cut {
                offset: cut,
                why: format!(
                    "a writer cut the ledger {} at offset {cut} (keep_valid_prefix: damaged \
                     records and every one after them dropped), below the {read} bytes this \
                     reader had read and answered from; reopen the ledger",
                    self.log.path.display()
                ),
            }));
        }
        Ok(())
    }

    /// Whether a check may answer from this generation as it is: the file was not
    /// replaced, the index epoch is current, and the tail has caught up when it must.
    #[inline(always)]
    fn fresh(&self) -> bool {
        // SAFETY: `self.header` came from `self.log`'s map, which `self` keeps alive.
        let (retired, epoch, recoveries) = unsafe { self.header.retired_epoch_recoveries() };
        if retired != 0
            || epoch != self.epoch
            || recoveries != self.recoveries
            || self.lost.is_set()
        {
            return false;
        }
        // SAFETY: as above.
        !self.follows_log()
            || unsafe { self.header.committed_len() } == self.seen.load(Ordering::Acquire)
    }

    /// The view one check reads through.
    #[inline(always)]
    fn lookup(&self) -> Lookup<'_> {
        Lookup {
            gen: self,
            filter: self.shared.as_ref().map_or(Filter::EMPTY, |s| s.filter()),
            tail: self.tail_used.load(Ordering::Relaxed),
        }
    }

    /// Applies every record committed since the tail was last brought up to date, when
    /// the tail follows the log (or `force`: at open, for what the index may miss).
    pub(crate) fn refresh(&self, force: bool) -> Result<()> {
        if !force && !self.follows_log() {
            return self.advance_view().map(|_| ());
        }
        let mut cu = self.catch_up.lock();
        if let Some((offset, why)) = &cu.failure {
            return Err(Error::corrupt(*offset, why.clone()));
        }
        let committed = self.log.map.committed_len();
        if committed == self.seen.load(Ordering::Acquire) && !force {
            return Ok(());
        }
        let start = self.log.header.log_start;
        if committed < start {
            let why = format!("header says the log ends at {committed}, before it starts");
            cu.failure = Some((0, why.clone()));
            return Err(Error::corrupt(0, why));
        }
        if committed < cu.applied {
            // The log was cut below what this tail holds (a writer recovered with
            // keep_valid_prefix, or the bytes changed): the tail can no longer follow it.
            let why = format!(
                "the log was cut to {committed} bytes, below the {} this reader had read; \
                 reopen the ledger",
                cu.applied
            );
            cu.failure = Some((committed, why.clone()));
            return Err(Error::corrupt(committed, why));
        }
        let mut limit = committed;
        if limit > self.log.map.known_file_len() {
            // A file shorter than its header claims: read only what exists.
            limit = limit.min(self.log.map.refresh_len(&self.log.file)?);
        }
        if cu.torn == Some(committed) {
            // One decision per committed end: the log still ends in the torn tail found at
            // this same `committed_len`. (A writer that cuts the tail and appends up to the
            // same length again stores the length after its frames: the frame at
            // `applied` is then valid.)
            let log = self.log.map.log(limit)?;
            if !matches!(
                decode_frame(log.range(cu.applied, limit)),
                Frame::Valid { .. }
            ) {
                return Ok(());
            }
        }
        if cu.applied < limit {
            self.readable.fetch_max(limit, Ordering::AcqRel);
            let log = self.log.map.log(limit)?;
            let mut rules = 0;
            let mut failed = None;
            let (end, stop) = scan(log, cu.applied, limit, |record, payload_offset| {
                if failed.is_some() {
                    return;
                }
                match record {
                    Record::Rule(r) => {
                        rules += 1;
                        self.tail_used.store(true, Ordering::Release);
                        if let Err(e) =
                            self.tail
                                .apply(r.scope, r.tenant, r.key, r.at, payload_offset, self)
                        {
                            failed = Some(e);
                        }
                    }
                    Record::Config { max_token_lifetime } => {
                        self.tail_lifetime
                            .fetch_max(max_token_lifetime, Ordering::AcqRel);
                    }
                    Record::Position {
                        stream,
                        last_id,
                        last_heard,
                        degraded,
                    } => self
                        .position
                        .set(payload_offset, stream, last_id, last_heard, degraded),
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            cu.applied = end;
            cu.rule_records += rules;
            if let Some(why) = stop {
                // As the writer's recovery judges it (docs/FORMAT.md §5): below the synced
                // end, damage; past it, what a crash leaves (a torn tail, or frames a
                // reordering disk kept after a lost one), which the next writer cuts off.
                let synced = self.log.map.synced_len();
                let damage =
                    (end < synced.min(limit)).then(|| match next_valid_frame(log, end, limit) {
                        Some(next) => format!("{why}, followed by a valid record at offset {next}"),
                        None => format!("{why}, below the synced end of the log ({synced})"),
                    });
                if let Some(why) = damage {
                    cu.failure = Some((end, why.clone()));
                    return Err(Error::corrupt(end, why));
                }
            }
        }
        // Past a torn tail the decision is made once for this `committed_len`: `seen`
        // takes it, so that checks stay on the fast path. A writer that cuts the tail and
        // appends until `committed_len` comes back to the same value also counts a
        // recovery (`recoveries`), which sends every check to the slow path first.
        let torn = cu.applied < limit;
        cu.torn = torn.then_some(committed);
        self.committed_view
            .fetch_max(cu.applied.min(committed), Ordering::Relaxed);
        self.seen.store(committed, Ordering::Release);
        Ok(())
    }

    pub(crate) fn max_token_lifetime(&self) -> i64 {
        let shared = self
            .shared
            .as_ref()
            .map_or(i64::MIN, |s| s.max_token_lifetime());
        shared.max(self.tail_lifetime.load(Ordering::Acquire))
    }

    pub(crate) fn is_expired(&self, scope: Scope, at: i64, now: i64) -> bool {
        let leeway = self.log.header.leeway;
        match scope {
            Scope::Token => at.saturating_add(leeway) < now,
            _ => {
                at.saturating_add(self.max_token_lifetime())
                    .saturating_add(leeway)
                    < now
            }
        }
    }

    /// The newest stream position: the shared index points at the last position record;
    /// the tail may hold a later one.
    fn position(&self) -> Result<&PositionCell> {
        if let Some(s) = &self.shared {
            let off = s.last_position();
            if off > self.position.offset() {
                let committed = self.log.map.committed_len();
                let log = self
                    .log
                    .map
                    .log(committed.min(self.log.map.known_file_len()))?;
                let frame = log
                    .from(off.saturating_sub(FRAME_HEADER_LEN as u64))
                    .map(decode_frame);
                match frame {
                    Some(Frame::Valid {
                        record:
                            Record::Position {
                                stream,
                                last_id,
                                last_heard,
                                degraded,
                            },
                        ..
                    }) => self
                        .position
                        .set(off, stream, last_id, last_heard, degraded),
                    _ => {
                        return Err(Error::corrupt(
                            off,
                            "the shared index points at a stream position record that is not there",
                        ))
                    }
                }
            }
        }
        Ok(&self.position)
    }

    /// Every live key with its effective cutoff, from the shared index and the tail
    /// (a key in both is visited once, with the larger cutoff). With `upto`, `(end,
    /// global)`: keys whose deciding record (the newest with the key's largest cutoff)
    /// starts at or past `end` are left out, and the shared index's global cutoff is
    /// `global`, as the writer's lock saw it at `end` (a compaction copies the frames from
    /// `end` on as they are, and would otherwise write those rules twice). Returns the
    /// offsets and tags of the shared index's slots that point past the log's end (an
    /// append between indexing and committing, or a damaged slot: a compaction checks
    /// them). A slot pointing at no rule is `Corrupt`, and so, with `upto`, is one pointing
    /// at another key's rule.
    pub(crate) fn live_rules<'a>(
        &'a self,
        upto: Option<(u64, i64)>,
        mut f: impl FnMut(Scope, &'a [u8], &'a [u8], i64, u64),
    ) -> Result<Vec<(u64, u64)>> {
        let below = upto.map_or(u64::MAX, |(end, _)| end);
        let committed = self
            .log
            .map
            .committed_len()
            .min(self.log.map.known_file_len());
        let log = self.log.map.log(
            committed
                .max(self.readable.load(Ordering::Acquire))
                .min(self.log.map.known_file_len())
                .min(below),
        )?;
        let tail_on = self.tail_used.load(Ordering::Acquire);
        let h = &self.hasher;
        // A key's cutoff in the tail, unless the record that decided it lies at or past
        // `below` and is at least `at` (the shared index's): then the compaction copies
        // that record, and listing the key would write it twice.
        let merged = |at: i64, tail: Option<(i64, u64)>| match tail {
            Some((t, off)) if off >= below => (t < at).then_some(at),
            Some((t, _)) => Some(t.max(at)),
            None => Some(at),
        };
        // The shared index's global cutoff, also what the tail's is compared with below.
        let mut beyond = Vec::new();
        let shared_global = self.shared.as_ref().map_or(i64::MIN, |s| {
            upto.map_or_else(|| s.newest(Scope::Global), |(_, g)| g)
        });
        if let Some(s) = &self.shared {
            let g = shared_global;
            if g != i64::MIN {
                let tail_g = if tail_on {
                    self.tail.global_deciding()
                } else {
                    None
                };
                if let Some(at) = merged(g, tail_g) {
                    f(Scope::Global, &[], &[], at, 0);
                }
            }
            s.for_each_slot(|off, tag| {
                let Some(r) = log.from(off).and_then(crate::record::rule_at) else {
                    if off >= log.end() {
                        beyond.push((off, tag));
                        return Ok(());
                    }
                    return Err(Error::corrupt(
                        off,
                        "the shared index points at a byte range that holds no rule record",
                    ));
                };
                // Hashed only where needed: a listing for a count (`stats`) neither looks
                // at the tail nor writes the keys anywhere (1M keys: 10 → 17 ms with it).
                let hash = if tail_on || upto.is_some() {
                    h.full(r.scope, r.tenant, r.key)
                } else {
                    0
                };
                if upto.is_some() && crate::index::tag_of(hash) != tag {
                    // A compaction would leave out the key whose slot this is.
                    return Err(Error::corrupt(
                        off,
                        "a slot of the shared index points at another key's rule record",
                    ));
                }
                let tail = if tail_on {
                    self.tail.deciding(r.scope, hash, r.tenant, r.key, self)?
                } else {
                    None
                };
                if let Some(at) = merged(r.at, tail) {
                    f(r.scope, r.tenant, r.key, at, off);
                }
                Ok(())
            })?;
        }
        if !tail_on {
            return Ok(beyond);
        }
        let mut result = Ok(());
        self.tail.for_each(|scope, at, offset| {
            if result.is_err() {
                return;
            }
            if offset >= below {
                return; // copied by the compaction
            }
            let (tenant, key) = if scope == Scope::Global {
                (&[][..], &[][..])
            } else {
                match self.keys_at(offset) {
                    Some(k) => k,
                    None => {
                        result = Err(Error::Internal(format!(
                            "the tail index points at offset {offset} where no rule can be read"
                        )));
                        return;
                    }
                }
            };
            if let Some(s) = &self.shared {
                let in_shared = match scope {
                    Scope::Global => Ok(shared_global != i64::MIN),
                    _ => {
                        let p = s.layout().probe(h.full(scope, tenant, key));
                        s.find(&p, scope, tenant, key, log)
                            .map(|f| matches!(f, Found::Cutoff(_)))
                            .map_err(|e| *e)
                    }
                };
                match in_shared {
                    Ok(true) => return, // visited above, with the max
                    Ok(false) => {}
                    Err(e) => {
                        result = Err(e);
                        return;
                    }
                }
            }
            f(scope, tenant, key, at, offset);
        });
        result.map(|()| beyond)
    }
}

/// The writer's side of a handle.
pub(crate) struct WriterState {
    /// End of the log (committed).
    pub(crate) end: u64,
    buf: Vec<u8>,
    /// Payload offsets (relative to `buf`) of the records of the append being made.
    records: Vec<(usize, u8)>,
}

pub(crate) struct Writer {
    pub(crate) state: Mutex<WriterState>,
    /// Held by `sync` and by the part of a compaction that makes a rename durable.
    pub(crate) sync_lock: Mutex<()>,
    pub(crate) jobs: Jobs,
    pub(crate) options: WriterOptions,
}

/// What a handle shares with its background jobs.
pub(crate) struct Inner {
    /// Unique among the handles of this process (the key of the threads' view caches).
    id: u64,
    /// One more at each swap of `gen` (what a thread's cached view is compared with).
    version: AtomicU64,
    pub(crate) path: PathBuf,
    /// The clock-skew leeway (fixed when the ledger was created; compactions keep it).
    leeway: i64,
    pub(crate) gen: ArcSwap<Generation>,
    /// Serialises opening a new generation (readers).
    follow: Mutex<()>,
    pub(crate) writer: Option<Writer>,
    /// Readers: the kernel's notices of changes at the path (src/notices.rs).
    notices: Option<notices::Registration>,
}

/// An open ledger: a writer (exclusive, can revoke) or a reader. `check` is `&self`,
/// thread-safe and lock-free in the common case; share one handle among threads.
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.inner.path)
            .field("writer", &self.inner.writer.is_some())
            .finish_non_exhaustive()
    }
}

/// A check's answer as a thread's view hands it back to [`Ledger::check_valid`]: two words,
/// so that it comes back in registers. As `Option<LeanResult<Verdict>>` it came back
/// through memory, written a byte at a time (tag, scope) and read back in wider loads:
/// store-to-load forwarding failed on every check (about 13 ns of 57 for a valid token at
/// 10k rules, with the same instructions).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ViewAnswer {
    /// 0: valid; 1 + the scope's number: revoked by a rule of that scope; or one of
    /// [`ViewAnswer::STALE`] and [`ViewAnswer::FAILED`].
    code: u64,
    /// The deciding rule's cutoff when revoked.
    cutoff: i64,
}

impl ViewAnswer {
    /// The view was not current (or a path check is due): the check goes the slow way.
    const STALE: ViewAnswer = ViewAnswer { code: 8, cutoff: 0 };
    /// The check failed; the caller holds the error.
    const FAILED: ViewAnswer = ViewAnswer { code: 9, cutoff: 0 };

    #[inline(always)]
    fn of(verdict: Verdict) -> ViewAnswer {
        match verdict {
            Verdict::Valid => ViewAnswer { code: 0, cutoff: 0 },
            Verdict::Revoked { scope, cutoff } => ViewAnswer {
                code: 1 + scope as u64,
                cutoff,
            },
        }
    }

    /// The verdict, or `None` for [`ViewAnswer::STALE`] and [`ViewAnswer::FAILED`].
    #[inline(always)]
    fn verdict(self) -> Option<Verdict> {
        match self.code {
            0 => Some(Verdict::Valid),
            c => Scope::ALL
                .get(c.wrapping_sub(1) as usize)
                .map(|&scope| Verdict::Revoked {
                    scope,
                    cutoff: self.cutoff,
                }),
        }
    }
}

/// A token `iat` this far past the host's clock, plus the leeway, cannot be judged.
static CLOCK_HINT: AtomicI64 = AtomicI64::new(i64::MIN);

/// Refuses a token issued after the host's clock plus the leeway (DESIGN.md §3, Time
/// sanity) when no rule revokes it. One comparison with a clock reading shared by the
/// process; the clock is read again only for a token that looks issued in the future.
#[inline(always)]
fn check_issued_at(iat: i64, leeway: i64) -> Result<()> {
    if iat <= CLOCK_HINT.load(Ordering::Relaxed).saturating_add(leeway) {
        return Ok(());
    }
    future_iat(iat, leeway)
}

#[cold]
#[inline(never)]
fn future_iat(iat: i64, leeway: i64) -> Result<()> {
    let now = unix_now_floor();
    CLOCK_HINT.fetch_max(now, Ordering::Relaxed);
    if iat > now.saturating_add(leeway) {
        return Err(Error::invalid(format!(
            "token issued in the future: iat {iat} is more than the leeway ({leeway} s) after \
             this host's clock ({now}); it cannot be judged (check the clocks)"
        )));
    }
    Ok(())
}

impl Ledger {
    /// Opens the ledger at `path` for writing, creating it if missing. Holds an exclusive
    /// lock on the file until dropped; a second writer anywhere gets [`Error::Locked`].
    ///
    /// A ledger written in format version 1 is upgraded in place (rewritten as a version
    /// 2 file and renamed over the old one). A ledger whose shared index cannot be
    /// trusted (after a power loss, or missing) has it rebuilt from the log first: that
    /// open takes time linear in the log.
    pub fn open_writer(path: impl AsRef<Path>, options: &WriterOptions) -> Result<Ledger> {
        let path = &watch::absolute(path.as_ref())?;
        if options.max_token_lifetime < 0 {
            return Err(Error::invalid("max_token_lifetime must not be negative"));
        }
        let leeway = options.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway < 0 {
            return Err(Error::invalid("leeway must not be negative"));
        }
        if options.file_mode & !0o777 != 0 || options.file_mode & 0o600 != 0o600 {
            return Err(Error::invalid(format!(
                "file_mode {:o} must give the owner read and write and hold only permission \
                 bits (0o777 at most: no setuid, setgid or sticky bit)",
                options.file_mode
            )));
        }
        if options.file_mode & 0o002 != 0 {
            return Err(Error::invalid(format!(
                "file_mode {:o} lets every user write the ledger, and so undo revocations: \
                 give readers read access through a group (0640 and file_group)",
                options.file_mode
            )));
        }
        if options.file_group == Some(u32::MAX) {
            return Err(Error::invalid(
                "file_group 4294967295 is (gid_t)-1, which chown(2) takes as \"leave the group\": \
                 not a group id (None keeps the writer's group)",
            ));
        }
        if let Some(p) = options.compaction {
            if !(p.ratio.is_finite() && p.ratio > 0.0) {
                return Err(Error::invalid(
                    "the compaction ratio must be a positive number",
                ));
            }
        }
        let access = options.access();
        let log = LogFile::open_writer(
            path,
            || {
                let seed = random_bytes()?;
                Ok(Header {
                    hash_seed: seed,
                    max_token_lifetime: if options.max_token_lifetime == 0 {
                        DEFAULT_MAX_TOKEN_LIFETIME
                    } else {
                        options.max_token_lifetime
                    },
                    leeway,
                    created_at: unix_now_floor(),
                    generation: 0,
                    log_start: HEADER_LEN as u64,
                    hash_check: Hasher::new(seed).check_value(),
                    file_id: random_file_id()?,
                })
            },
            access,
            |file| compact::upgrade_v1_if_needed(path, file),
        )?;
        crate::log::remove_stale_creations(path);
        compact::remove_stale_files(path, log.header.generation);
        let recovery = log.recover(options.keep_valid_prefix)?;
        let end = recovery.end;
        let log = Arc::new(log);
        let lost = Arc::new(LostFlag::default());
        let (gen, index_error) =
            compact::open_writer_index(log, recovery, lost, access, options.index_keys.max(1))?;
        let current = gen.max_token_lifetime();
        let leeway = gen.log.header.leeway;
        let writer = Writer {
            state: Mutex::new(WriterState {
                end,
                buf: Vec::with_capacity(4096),
                records: Vec::new(),
            }),
            sync_lock: Mutex::new(()),
            jobs: Jobs::with_error(index_error),
            options: options.clone(),
        };
        let ledger = Ledger {
            inner: Arc::new(Inner::new(path.to_path_buf(), leeway, gen, Some(writer))),
        };
        let wanted = options.max_token_lifetime;
        if wanted != 0 && wanted < current {
            return Err(Error::invalid(format!(
                "max_token_lifetime {wanted} s is smaller than the ledger's {current} s; \
                 lowering it would let compaction drop rules that issued tokens still need"
            )));
        }
        if wanted > current {
            ledger.append(|buf, records| {
                records.push((buf.len() + FRAME_HEADER_LEN, crate::record::KIND_CONFIG));
                encode_config(buf, wanted)
            })?;
        }
        Ok(ledger)
    }

    /// Opens the ledger at `path` read-only. Any number of readers, in any process, may
    /// have it open alongside its writer; they see each committed record on their next
    /// `check`. Constant time: the reader maps the writer's shared index.
    pub fn open_reader(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = &watch::absolute(path.as_ref())?;
        let gen = open_reader_generation(path, None)?;
        let leeway = gen.log.header.leeway;
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| {
            let mut inner = Inner::new(path.to_path_buf(), leeway, gen, None);
            let watched: Weak<dyn notices::Watched> = me.clone();
            inner.notices = notices::watch(path, watched);
            inner
        });
        Ok(Ledger { inner })
    }

    /// Whether the token is revoked, and by which rule. Lock-free and free of system
    /// calls in the common case. A token issued more than the leeway after this host's
    /// clock cannot be judged: [`Error::InvalidArgument`], never "valid".
    #[inline]
    pub fn check(&self, token: &Token) -> Result<Verdict> {
        self.check_lean(token).map_err(|e| *e)
    }

    /// [`Ledger::check`] with its error boxed: a 16-byte answer (see [`LeanResult`]).
    #[inline]
    pub(crate) fn check_lean(&self, token: &Token) -> LeanResult<Verdict> {
        if !token.is_valid() {
            return Err(Box::new(token.refusal()));
        }
        self.check_valid(token)
    }

    /// [`Ledger::check_lean`] for a token whose caller has already made sure that
    /// [`Token::is_valid`] holds (the C ABI checks each key's length as it takes it).
    #[inline]
    pub(crate) fn check_valid(&self, token: &Token) -> LeanResult<Verdict> {
        debug_assert!(token.is_valid());
        // The view's answer comes back in registers; an error, rare, beside it.
        let mut failure = None;
        let answer = self.inner.with_view(|gen| {
            if !gen.fresh() || watch::due() {
                return ViewAnswer::STALE;
            }
            match check::check(&gen.lookup(), token) {
                Ok(v) => ViewAnswer::of(v),
                Err(e) => {
                    failure = Some(e);
                    ViewAnswer::FAILED
                }
            }
        });
        let verdict = match answer.verdict() {
            Some(v) => v,
            None if answer == ViewAnswer::STALE => self.check_slow(token)?,
            None => {
                return Err(failure.unwrap_or_else(|| {
                    Box::new(Error::Internal("a check failed without its error".into()))
                }))
            }
        };
        if verdict == Verdict::Valid {
            // Never "valid" for a token issued in the future (a revoked verdict stands).
            check_issued_at(token.issued_at, self.inner.leeway)?;
        }
        Ok(verdict)
    }

    #[cold]
    #[inline(never)]
    fn check_slow(&self, token: &Token) -> LeanResult<Verdict> {
        let gen = self.inner.gen.load();
        if gen.fresh() {
            drop(gen);
            self.verify_path()?;
        }
        check::check(&self.current()?.lookup(), token)
    }

    /// The current generation, brought up to date with the log (following a compaction
    /// or a new index epoch if one happened).
    pub(crate) fn current(&self) -> Result<Arc<Generation>> {
        self.inner.current()
    }

    /// Checks that the handle's file is still the ledger at its path (src/watch.rs):
    /// follows a compaction a reader has not seen yet, and fails (for good) when the file
    /// was deleted, replaced or truncated.
    fn verify_path(&self) -> Result<()> {
        self.inner.verify_path()
    }

    /// Applies every record committed since this handle last looked, following a
    /// compaction or a new shared index if one happened. Checks do this on their own when
    /// needed. On a reader, also checks that the file is still the ledger at its path
    /// (deleted, replaced or truncated: an error, and every later call fails). A reader
    /// also does this when the kernel notices a change at its path (inotify) and on one
    /// check in [`PATH_CHECK_EVERY`](crate::PATH_CHECK_EVERY) per thread: call it from a
    /// timer to bound in time how long a reader may answer from a file that was removed
    /// where the kernel sends no notices (NFS, inotify's limits reached).
    pub fn refresh(&self) -> Result<()> {
        if self.inner.writer.is_none() {
            self.verify_path()?;
        }
        self.current().map(|_| ())
    }

    /// Records `rule`. Returns once it is committed: visible to every reader's next check.
    /// Not durable until [`Ledger::sync`].
    pub fn revoke(&self, rule: &Rule) -> Result<()> {
        rule.validate()?;
        self.append(|buf, records| {
            records.push((buf.len() + FRAME_HEADER_LEN, crate::record::KIND_RULE));
            encode_rule(buf, rule)
        })
    }

    /// Records every rule of `rules` in one write; all are validated first, so either
    /// all are committed or none is.
    pub fn revoke_batch(&self, rules: &[Rule]) -> Result<()> {
        for (i, r) in rules.iter().enumerate() {
            r.validate()
                .map_err(|e| Error::invalid(format!("rule {i} of the batch: {e}")))?;
        }
        self.append(|buf, records| {
            for r in rules {
                records.push((buf.len() + FRAME_HEADER_LEN, crate::record::KIND_RULE));
                encode_rule(buf, r);
            }
        })
    }

    /// Records every rule of `rules` and then `position` (how far into its stream the
    /// ledger now is, and when it last heard from it) in one write, so that no crash can
    /// leave the position without the rules it covers: after a crash the log holds a
    /// prefix of the write, and the position record comes last. All are validated first;
    /// either all are committed or none is. With no rules this is a heartbeat: it only
    /// moves "last heard". Not durable until [`Ledger::sync`].
    pub fn revoke_batch_at_position(
        &self,
        rules: &[Rule],
        position: &StreamPosition,
    ) -> Result<()> {
        for (i, r) in rules.iter().enumerate() {
            r.validate()
                .map_err(|e| Error::invalid(format!("rule {i} of the batch: {e}")))?;
        }
        position.validate()?;
        self.append(|buf, records| {
            for r in rules {
                records.push((buf.len() + FRAME_HEADER_LEN, crate::record::KIND_RULE));
                encode_rule(buf, r);
            }
            records.push((buf.len() + FRAME_HEADER_LEN, crate::record::KIND_POSITION));
            encode_position(buf, position);
        })
    }

    /// Where the ledger stands in the stream that feeds it: the last position record
    /// written by [`Ledger::revoke_batch_at_position`] (kept by compaction), or `None`
    /// when no sync process ever wrote one. Brings the handle up to date first.
    pub fn stream_position(&self) -> Result<Option<StreamPosition>> {
        Ok(self.current()?.position()?.get())
    }

    /// Unix seconds at which the ledger last heard from its stream (`None`: never). The
    /// part of [`Ledger::stream_position`] a gateway polls: lock-free and free of system
    /// calls unless the position changed since this handle last looked.
    #[inline]
    pub fn last_heard(&self) -> Result<Option<i64>> {
        let gen = self.inner.gen.load();
        if gen.fresh() {
            return Ok(gen.position()?.last_heard());
        }
        drop(gen);
        Ok(self.current()?.position()?.last_heard())
    }

    /// Why the ledger may lack rules its stream carried ([`StreamPosition::degraded`]: 0
    /// when it holds every one, or when no sync process ever wrote a position). Lock-free,
    /// like [`Ledger::last_heard`]: a gateway treats a non-zero answer as stale.
    #[inline]
    pub fn degraded(&self) -> Result<u8> {
        let gen = self.inner.gen.load();
        if gen.fresh() {
            return Ok(gen.position()?.degraded());
        }
        drop(gen);
        Ok(self.current()?.position()?.degraded())
    }

    /// Revokes `(scope, tenant, key)` as of now: the current time rounded up to the next
    /// second. Returns the cutoff written. Not for [`Scope::Token`], whose time is `exp`.
    pub fn revoke_now(&self, scope: Scope, tenant: &[u8], key: &[u8]) -> Result<i64> {
        if scope == Scope::Token {
            return Err(Error::invalid(
                "a token rule takes the token's exp, not the current time",
            ));
        }
        let at = now_cutoff();
        self.revoke(&Rule::new(scope, tenant, key, at))?;
        Ok(at)
    }

    /// Appends what `encode` writes (it also lists each record's payload offset in the
    /// buffer and kind), indexes it and publishes it.
    fn append(&self, encode: impl FnOnce(&mut Vec<u8>, &mut Vec<(usize, u8)>)) -> Result<()> {
        let writer = self.inner.writer.as_ref().ok_or(Error::ReadOnly)?;
        let mut w = writer.state.lock();
        let gen = self.inner.gen.load_full();
        gen.lost.check()?;
        let WriterState { end, buf, records } = &mut *w;
        buf.clear();
        records.clear();
        encode(buf, records);
        let at = *end;
        gen.log.write_at(at, buf)?;
        let new_end = at + buf.len() as u64;
        if let Err(e) = index_appended(&gen, at, buf, records) {
            // Left to the tails from that record on, and committed all the same: the
            // index may already point at the batch's first records, and a slot must never
            // point at bytes the next append overwrites (a raised key would lose the
            // committed cutoff it had).
            writer.jobs.report(format!(
                "the shared index refused a record; readers follow the log from there \
                 until it is rebuilt: {e}"
            ));
        }
        gen.log.map.publish_committed(new_end)?;
        *end = new_end;
        after_commit(&gen, at, new_end, buf, records);
        if buf.capacity() > 1 << 20 {
            *buf = Vec::with_capacity(4096);
        }
        drop(w);
        compact::maybe_start(&self.inner, &gen);
        Ok(())
    }

    /// Makes every committed record durable (fdatasync). Many revokes then one sync is
    /// group commit.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    /// Rewrites the ledger with one record per live key, dropping every rule that can no
    /// longer revoke an unexpired token at `now` (Unix seconds), and swaps the new file in
    /// atomically (write, fsync, rename, fsync the directory). Readers follow on their
    /// next check. Revokes go on while it runs (they wait only for the final swap). A
    /// crash at any point leaves the old or the new file, complete. `now` later than this
    /// host's clock plus the leeway is refused (a clock in milliseconds would drop every
    /// rule). Writers also compact on their own, in the background
    /// ([`WriterOptions::compaction`]).
    pub fn compact(&self, now: i64) -> Result<CompactStats> {
        let writer = self.inner.writer.as_ref().ok_or(Error::ReadOnly)?;
        let leeway = self.leeway();
        let clock = writer.now();
        if now > clock.saturating_add(leeway) {
            return Err(Error::invalid(format!(
                "compact(now = {now}) is more than the leeway ({leeway} s) after this host's \
                 clock ({clock}): refused, since it would drop rules that unexpired tokens \
                 need (is it in milliseconds?)"
            )));
        }
        let _ = writer;
        compact::compact_now(&self.inner, now)
    }

    /// Writer: waits for the background job (compaction or index growth) running now,
    /// if any, and returns its result.
    pub fn wait_background(&self) -> Result<()> {
        match &self.inner.writer {
            Some(w) => w.jobs.wait(),
            None => Err(Error::ReadOnly),
        }
    }

    /// Effective maximum token lifetime, in seconds.
    pub fn max_token_lifetime(&self) -> i64 {
        self.inner.gen.load().max_token_lifetime()
    }

    /// Clock-skew leeway, in seconds.
    pub fn leeway(&self) -> i64 {
        self.inner.leeway
    }

    /// Whether this handle is the writer.
    pub fn is_writer(&self) -> bool {
        self.inner.writer.is_some()
    }

    /// Path the ledger was opened at.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether a rule of `scope` with cutoff (or, for tokens, exp) `at` can be dropped at
    /// time `now`: every token it could revoke has expired.
    pub fn is_expired(&self, scope: Scope, at: i64, now: i64) -> bool {
        self.inner.gen.load().is_expired(scope, at, now)
    }

    /// Bytes of a damaged log that opening this writer cut off because it was asked to
    /// keep the valid prefix ([`WriterOptions::keep_valid_prefix`]); 0 when nothing was
    /// cut, and for a reader. [`Stats::dropped_bytes`] without visiting the keys.
    pub fn dropped_bytes(&self) -> u64 {
        self.inner.gen.load().recovery.dropped_bytes
    }

    /// Figures about the ledger as of `now` (Unix seconds; used for `expired_keys`).
    /// Visits every live key: linear in the size of the ledger.
    pub fn stats(&self, now: i64) -> Result<Stats> {
        let gen = self.current()?;
        let (mut live, mut expired) = (0, 0);
        gen.live_rules(None, |scope, _, _, at, _| {
            live += 1;
            expired += u64::from(gen.is_expired(scope, at, now));
        })?;
        let cu = gen.catch_up.lock();
        let (records, base) = gen.shared.as_ref().map_or((0, 0), |s| s.records());
        Ok(Stats {
            rule_records: records.max(base).saturating_add(if gen.shared.is_none() {
                cu.rule_records
            } else {
                0
            }),
            compacted_keys: base,
            live_keys: live,
            expired_keys: expired,
            log_bytes: gen.log.map.committed_len(),
            file_bytes: gen.log.map.refresh_len(&gen.log.file)?,
            index_bytes: gen.shared.as_ref().map_or(0, |s| s.layout().table_bytes()),
            tail_bytes: if gen.tail_used.load(Ordering::Acquire) {
                gen.tail.memory_bytes() as u64
            } else {
                0
            },
            shared_index: gen.shared.is_some(),
            max_token_lifetime: gen.max_token_lifetime(),
            leeway: gen.log.header.leeway,
            generation: gen.log.header.generation,
            index_epoch: gen.epoch,
            writer: self.is_writer(),
            dropped_bytes: gen.recovery.dropped_bytes,
            background_error: self.inner.writer.as_ref().and_then(|w| w.jobs.last_error()),
        })
    }

    /// Visits every record of the ledger file's log, in file order, with the file
    /// offset of its frame.
    pub fn for_each_record(&self, mut visit: impl FnMut(u64, Record<'_>)) -> Result<()> {
        let gen = self.current()?;
        let start = gen.log.header.log_start;
        let end = gen
            .log
            .map
            .committed_len()
            .min(gen.log.map.known_file_len());
        let log = gen.log.map.log(end)?;
        let (_, stop) = scan(log, start, end, |record, payload_offset| {
            visit(payload_offset - FRAME_HEADER_LEN as u64, record)
        });
        match stop {
            Some(why) if gen.catch_up.lock().torn.is_none() && self.is_writer() => Err(
                Error::Internal(format!("the writer's own log stops early: {why}")),
            ),
            _ => Ok(()),
        }
    }
}

/// Inserts the rules of an append (frames `buf` written at `at`) into the writer's shared
/// index, before they are committed. When the index is full, or refuses a record (an
/// error: a damaged slot), records from there on are left to the tails (`overflow_from`)
/// until a bigger index is published.
fn index_appended(gen: &Generation, at: u64, buf: &[u8], records: &[(usize, u8)]) -> Result<()> {
    let Some(s) = &gen.shared else {
        return Ok(());
    };
    if s.overflow_from() != 0 {
        return Ok(());
    }
    // The frame of the record being inserted, where the tails take over if it fails.
    let mut frame = at;
    let result = (|| {
        let log = gen.log.map.log(at + buf.len() as u64)?;
        for &(payload, kind) in records {
            if kind != crate::record::KIND_RULE {
                continue;
            }
            let offset = at + payload as u64;
            frame = offset - FRAME_HEADER_LEN as u64;
            let rule = log
                .from(offset)
                .and_then(crate::record::rule_at)
                .ok_or_else(|| Error::Internal("a frame just written does not read back".into()))?;
            let hash = if rule.scope == Scope::Global {
                0
            } else {
                gen.hasher.full(rule.scope, rule.tenant, rule.key)
            };
            if s.insert(hash, &rule, offset, log)? == Inserted::Full {
                s.set_overflow(frame);
                return Ok(());
            }
        }
        Ok(())
    })();
    if result.is_err() {
        s.set_overflow(frame);
    }
    result
}

/// After a commit: what readers find through the shared index's header (configuration
/// and stream positions, stored only once committed so that they point below
/// `committed_len`), and how far the index holds the log.
fn after_commit(gen: &Generation, at: u64, new_end: u64, buf: &[u8], records: &[(usize, u8)]) {
    let Some(s) = &gen.shared else {
        return;
    };
    for &(payload, kind) in records {
        match kind {
            crate::record::KIND_CONFIG => {
                let off = payload + 16;
                let v = buf
                    .get(off..off + 8)
                    .map_or(0, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                s.raise_max_token_lifetime(v);
            }
            crate::record::KIND_POSITION => s.set_last_position(at + payload as u64),
            _ => {}
        }
    }
    if s.overflow_from() == 0 {
        s.set_indexed_len(new_end);
    }
}

/// Source of [`Inner::id`].
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's view of one handle's generation: checks read it without touching the
/// handle's shared state (no reference count, no lock), and take a new one when the
/// handle's `version` moved.
struct ThreadView {
    id: u64,
    version: u64,
    gen: Option<Arc<Generation>>,
}

/// Views held per thread (the last handles it checked with).
const THREAD_VIEWS: usize = 4;

thread_local! {
    static VIEWS: RefCell<[ThreadView; THREAD_VIEWS]> = const {
        RefCell::new([const { ThreadView { id: 0, version: 0, gen: None } }; THREAD_VIEWS])
    };
}

impl Writer {
    /// The writer's clock (Unix seconds).
    pub(crate) fn now(&self) -> i64 {
        self.options.clock.map_or_else(unix_now_floor, |c| c())
    }
}

impl notices::Watched for Inner {
    /// A file deleted, replaced or truncated marks the handle lost now, so its next call
    /// fails. Nothing else is done on the notices' thread: a compaction is followed by the
    /// next check (the retired mark), and the thread makes no I/O call of the ledger's
    /// own (system calls to compare files only), so its failures cannot go unreported.
    fn path_changed(&self) {
        let gen = self.gen.load_full();
        if let Ok(PathState::Lost(why)) = gen.log.path_state() {
            gen.lost.set(why);
        }
    }
}

impl Inner {
    fn new(path: PathBuf, leeway: i64, gen: Generation, writer: Option<Writer>) -> Inner {
        Inner {
            id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
            version: AtomicU64::new(1),
            path,
            leeway,
            gen: ArcSwap::from_pointee(gen),
            follow: Mutex::new(()),
            writer,
            notices: None,
        }
    }

    /// Makes `gen` the current generation (readers and checks move to it).
    pub(crate) fn set_gen(&self, gen: Generation) {
        self.gen.store(Arc::new(gen));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs `f` with this thread's view of the current generation, taking a new view when
    /// the handle moved on since.
    #[inline(always)]
    fn with_view<R>(&self, f: impl FnOnce(&Generation) -> R) -> R {
        let version = self.version.load(Ordering::Acquire);
        VIEWS.with(|views| {
            let mut views = views.borrow_mut();
            let i = match views.iter().position(|v| v.id == self.id) {
                Some(i) if views[i].version == version => i,
                found => self.replace_view(&mut views, found, version),
            };
            match &views[i].gen {
                Some(g) => f(g),
                None => f(&self.gen.load()),
            }
        })
    }

    #[cold]
    fn replace_view(
        &self,
        views: &mut [ThreadView; THREAD_VIEWS],
        found: Option<usize>,
        version: u64,
    ) -> usize {
        let i = found.unwrap_or_else(|| {
            // Evict the view of the handle used least recently: views are kept in order
            // of use, the last one is the oldest.
            views.rotate_right(1);
            0
        });
        views[i] = ThreadView {
            id: self.id,
            version,
            gen: Some(self.gen.load_full()),
        };
        i
    }

    /// Drops this thread's view of this handle (the handle is closing).
    fn forget_view(&self) {
        let _ = VIEWS.try_with(|views| {
            if let Ok(mut views) = views.try_borrow_mut() {
                for v in views.iter_mut().filter(|v| v.id == self.id) {
                    *v = ThreadView {
                        id: 0,
                        version: 0,
                        gen: None,
                    };
                }
            }
        });
    }

    pub(crate) fn current(&self) -> Result<Arc<Generation>> {
        for _ in 0..64 {
            let gen = self.gen.load_full();
            gen.lost.check()?;
            if self.writer.is_some() {
                if gen.log.map.retired() {
                    // This writer's own compaction swaps the generation, then marks the
                    // old file retired (the mark is read with Acquire, so the swap is
                    // seen): a caller that loaded the old generation just before goes on
                    // with the new one.
                    if !Arc::ptr_eq(&gen, &self.gen.load_full()) {
                        continue;
                    }
                    // Still this handle's generation: another process compacted the file,
                    // never ours to follow.
                    return Err(Error::Internal("writer's ledger file was retired".into()));
                }
                gen.refresh(false)?;
                return Ok(gen);
            }
            let (retired, epoch, recoveries) = gen.log.map.retired_and_epoch();
            if retired != 0 {
                self.follow(&gen, false)?;
                continue;
            }
            if recoveries != gen.recoveries {
                gen.judge_recovery()?;
            }
            if epoch != gen.epoch || recoveries != gen.recoveries {
                self.follow(&gen, true)?;
                let now = self.gen.load();
                if Arc::ptr_eq(&now, &gen)
                    || (now.epoch == gen.epoch
                        && now.recoveries == gen.recoveries
                        && now.shared.is_none())
                {
                    // The new epoch's index could not be used: go on with the tail.
                    now.refresh(false)?;
                    return Ok(now.clone());
                }
                continue;
            }
            gen.refresh(false)?;
            return Ok(gen);
        }
        Err(Error::Internal(
            "the ledger kept changing while this reader followed it".into(),
        ))
    }

    /// A reader opens the path again (a compaction replaced its file), or maps the index
    /// of the new epoch (`same_file`).
    fn follow(&self, gen: &Arc<Generation>, same_file: bool) -> Result<()> {
        let _one = self.follow.lock();
        if !Arc::ptr_eq(gen, &self.gen.load()) {
            return Ok(()); // another thread did it
        }
        let reuse = same_file.then(|| (gen.log.clone(), gen.lost.clone()));
        let next = open_reader_generation(&self.path, reuse)?;
        if !same_file && watch::same_file(&next.log.file, &gen.log.file) {
            // Marked retired yet still at its path (a copy of an old file put back):
            // fail closed until a writer opens it, which clears the mark.
            return Err(Error::corrupt(
                crate::header::OFF_RETIRED as u64,
                "the file is marked as replaced by a compaction but is still at its path",
            ));
        }
        if same_file
            && next.epoch == gen.epoch
            && next.recoveries == gen.recoveries
            && next.shared.is_none()
            && gen.shared.is_none()
        {
            // Nothing usable yet: keep the generation (its tail) we have.
            return Ok(());
        }
        self.set_gen(next);
        Ok(())
    }

    fn verify_path(&self) -> Result<()> {
        let gen = self.gen.load_full();
        gen.lost.check()?;
        match gen.log.path_state()? {
            PathState::Current => Ok(()),
            PathState::Compacted if self.writer.is_none() => self.follow(&gen, false),
            PathState::Compacted => {
                // This writer's own compaction renames and swaps its generation under the
                // append lock: once that is free, a new generation means it was ours.
                let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
                drop(writer.state.lock());
                if !Arc::ptr_eq(&gen, &self.gen.load()) {
                    return self.verify_path();
                }
                Err(gen.lost.set(watch::Lost::Replaced(format!(
                    "the ledger file {} was compacted by another process while this writer \
                     held it",
                    self.path.display()
                ))))
            }
            PathState::Lost(why) => Err(gen.lost.set(why)),
        }
    }

    pub(crate) fn sync(&self) -> Result<()> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let _one_sync_at_a_time = writer.sync_lock.lock();
        self.verify_path()?;
        let (end, gen) = {
            let w = writer.state.lock();
            (w.end, self.gen.load_full())
        };
        if gen.log.map.synced_len() >= end {
            return Ok(());
        }
        if let Err(e) = gen.log.sync_data() {
            // After a failed fdatasync the kernel may have dropped the dirty pages, and a
            // retry may succeed without writing them: durability is unknown from here on.
            return Err(gen.lost.set(watch::Lost::SyncFailed(e.to_string())));
        }
        gen.log.map.publish_synced(end)
    }
}

/// Opens the ledger at `path` for reading (or, with `reuse`, makes a new view of the file
/// a handle already has): its shared index when it can be trusted, and a tail for what
/// the index does not hold.
pub(crate) fn open_reader_generation(
    path: &Path,
    reuse: Option<(Arc<LogFile>, Arc<LostFlag>)>,
) -> Result<Generation> {
    let (log, lost) = match reuse {
        Some(r) => r,
        None => (
            Arc::new(LogFile::open_reader(path)?),
            Arc::new(LostFlag::default()),
        ),
    };
    let ipath = index_path(path, log.header.generation);
    let mut chosen = None;
    for _attempt in 0..16 {
        let epoch = log.map.index_epoch();
        match SharedIndex::open(&ipath, &log.header, epoch, false)? {
            Some(index) => {
                chosen = Some((None, epoch, log.header.log_start));
                // The writer records a batch in the index just before it commits it, so
                // an index read while a writer appends may be ahead of the committed
                // length read before it, for nanoseconds: judged again while the
                // committed length moves, not given up for a private index of the log.
                for _ in 0..64 {
                    let committed = log.map.committed_len();
                    match index.trust(&log.file, committed)? {
                        Trust::Trusted { indexed_len, .. } => {
                            chosen = Some((Some(index), epoch, indexed_len));
                            break;
                        }
                        Trust::Untrusted(_) if log.map.committed_len() != committed => {
                            std::hint::spin_loop();
                        }
                        Trust::Untrusted(_) => break,
                    }
                }
                break;
            }
            // The writer may have published a newer index meanwhile: look again.
            None if log.map.index_epoch() != epoch => continue,
            None => {
                chosen = Some((None, epoch, log.header.log_start));
                break;
            }
        }
    }
    let (shared, epoch, tail_start) =
        chosen.unwrap_or((None, log.map.index_epoch(), log.header.log_start));
    let committed = log.map.committed_len();
    let gen = Generation::new(log, shared, epoch, tail_start, Recovery::default(), lost)?;
    gen.refresh(true)?;
    let applied = gen.catch_up.lock().applied;
    let mut gen = gen;
    gen.recovery = Recovery {
        end: applied,
        dropped_bytes: committed.saturating_sub(applied),
    };
    Ok(gen)
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.inner.forget_view();
        // A writer closing finishes (or cancels) its background job, leaves an index
        // that holds the whole log when it can, and makes its records durable, so that
        // the synced end in the header covers them. An error here has no one to report
        // to and loses nothing committed (the bytes are in the page cache).
        if self.inner.writer.is_some() {
            compact::on_close(&self.inner);
            if self.inner.sync().is_ok() {
                compact::mark_closed(&self.inner);
            }
            // Other threads may still hold a view of the file (until their next check
            // with another handle): the lock goes now, with the handle.
            let _ = self.inner.gen.load().log.file.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Ledger>();
    }

    #[test]
    fn future_iat_is_refused_and_the_clock_hint_moves() {
        let now = unix_now_floor();
        assert!(check_issued_at(now, 300).is_ok());
        assert!(check_issued_at(now + 299, 300).is_ok());
        let e = check_issued_at(now + 3 * 86_400, 300).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(ref m) if m.contains("future")),
            "{e}"
        );
        assert!(CLOCK_HINT.load(Ordering::Relaxed) >= now);
    }

    #[test]
    fn a_view_answer_carries_every_verdict_and_nothing_else() {
        for scope in Scope::ALL {
            for cutoff in [i64::MIN, -1, 0, 1_700_000_000, i64::MAX] {
                let v = Verdict::Revoked { scope, cutoff };
                assert_eq!(ViewAnswer::of(v).verdict(), Some(v));
            }
        }
        assert_eq!(
            ViewAnswer::of(Verdict::Valid).verdict(),
            Some(Verdict::Valid)
        );
        for not_a_verdict in [ViewAnswer::STALE, ViewAnswer::FAILED] {
            assert_eq!(not_a_verdict.verdict(), None);
            assert!(Scope::ALL
                .iter()
                .all(
                    |&scope| ViewAnswer::of(Verdict::Revoked { scope, cutoff: 0 }) != not_a_verdict
                ));
        }
    }

    #[test]
    fn log_bytes_from_is_bounded() {
        let bytes = [1u8; 16];
        let log = crate::map::LogBytes::from_slice(&bytes);
        assert_eq!(log.end(), HEADER_LEN as u64 + 16);
        assert!(log.from(0).is_none());
        assert_eq!(log.from(HEADER_LEN as u64 + 15).map(<[u8]>::len), Some(1));
        assert!(log.from(HEADER_LEN as u64 + 17).is_none());
    }
}
