//! The ledger handle: one writer or any number of readers over a log file, each with an
//! index that follows the log. This is where record → log → index → check meet.
//!
//! Visibility protocol. The writer appends frames past `committed_len`, then publishes
//! the new `committed_len` in the shared header (Release). A `check` loads it (Acquire)
//! and compares it with `seen`, the committed length its index reflects: when they are
//! equal (the common case) it answers from the index without a lock or a system call.
//! Otherwise it takes the catch-up lock (readers' own lock, never held by the writer's
//! append), applies the new records, and publishes `seen`. Revokes therefore never wait
//! for checks and checks never wait for revokes.
//!
//! Compaction writes the live rules to a new file, renames it over the old one, and sets
//! `retired` in the old file's header (same cache line as `committed_len`). A check that
//! sees `retired` opens the path again and swaps in the new [`Generation`] before it
//! answers, so no check answers from a file the writer no longer appends to.

use crate::check::{self, Rules};
use crate::error::{Error, Result};
use crate::header::{
    random_seed, Header, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LIFETIME, HEADER_LEN, SNAPSHOT_OFFSET,
};
use crate::index::{Hasher, Index, KeySource};
use crate::log::{next_valid_frame, parent_dir, scan, sync_dir, LogFile, Recovery};
use crate::position::{PositionCell, StreamPosition};
use crate::record::{
    decode_frame, encode_config, encode_position, encode_rule, rule_keys_at, Frame, Record,
};
use crate::rule::{now_cutoff, unix_now_floor, Rule, Scope, Token, Verdict};
use crate::snapshot::{self, LiveRule, Snapshot};
use crate::watch::{self, LostFlag, PathState};
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// How a writer opens (and, if missing, creates) a ledger.
#[derive(Clone, Debug, Default)]
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
    /// Opt-in automatic compaction. With `Some(f)`, an append compacts the ledger (as
    /// [`Ledger::compact`] at the current time) once the log written since the last
    /// compaction holds more rule records than `f` times the keys of the snapshot, and
    /// at least [`AUTO_COMPACT_MIN_RECORDS`]. Those records are the only place duplicate
    /// (dead) rules accumulate, and the only part of the file a reader reads at open, so
    /// this bounds both. The append that triggers it takes as long as the compaction.
    pub auto_compact: Option<f64>,
}

/// Fewest log records after which automatic compaction may run.
pub const AUTO_COMPACT_MIN_RECORDS: u64 = 10_000;

impl WriterOptions {
    /// Options with this `max_token_lifetime` and defaults otherwise.
    pub fn with_lifetime(max_token_lifetime: i64) -> WriterOptions {
        WriterOptions {
            max_token_lifetime,
            ..WriterOptions::default()
        }
    }
}

/// Figures about a ledger, from [`Ledger::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Rules stored: the snapshot's keys plus every rule record of the log after it
    /// (duplicates included).
    pub rule_records: u64,
    /// Keys held by the snapshot (the index written by the last compaction).
    pub snapshot_keys: u64,
    /// Distinct keys with a rule: what the index holds.
    pub live_keys: u64,
    /// Keys whose rule can no longer revoke an unexpired token (dropped by compaction).
    pub expired_keys: u64,
    /// Bytes of the log that hold committed records (header included).
    pub log_bytes: u64,
    /// Size of the file on disk (the log plus preallocated space).
    pub file_bytes: u64,
    /// Bytes of memory held by the index.
    pub index_bytes: u64,
    /// Effective maximum token lifetime, in seconds.
    pub max_token_lifetime: i64,
    /// Clock-skew leeway, in seconds.
    pub leeway: i64,
    /// Compaction generation of the file.
    pub generation: u64,
    /// Whether this handle is the writer.
    pub writer: bool,
    /// Bytes cut off the end of the log when it was opened (torn tail or, when asked,
    /// damaged records).
    pub dropped_bytes: u64,
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
    /// Log bytes before and after.
    pub bytes_before: u64,
    /// Log bytes of the new file.
    pub bytes_after: u64,
}

struct CatchUp {
    /// End of the last record applied to the index.
    applied: u64,
    /// Corruption found after open: every later check reports it (fail closed).
    failure: Option<(u64, String)>,
    rule_records: u64,
    /// The `committed_len` at which the log was found to end in a torn tail (at
    /// `applied`): a crash left it, and the next writer cuts it off.
    torn: Option<u64>,
}

/// One ledger file and the index built from it. A compaction makes a new generation.
struct Generation {
    log: LogFile,
    /// The compacted rules, read in place from the file (None before the first compaction).
    snapshot: Option<Snapshot>,
    /// The rules of the log after the snapshot.
    index: Index,
    /// Bytes of the log the index may point into (raised before records are indexed).
    readable: AtomicU64,
    /// The `committed_len` the index fully reflects.
    seen: AtomicU64,
    catch_up: Mutex<CatchUp>,
    max_token_lifetime: AtomicI64,
    recovery: Recovery,
    /// The last stream position record of the log.
    position: PositionCell,
    /// Set once the file stopped being the ledger at the path (src/watch.rs).
    lost: LostFlag,
}

impl KeySource for Generation {
    #[inline]
    fn keys_at(&self, payload_offset: u64) -> Option<(&[u8], &[u8])> {
        let bytes = self
            .log
            .map
            .bytes(self.readable.load(Ordering::Acquire))
            .ok()?;
        rule_keys_at(bytes.get(payload_offset as usize..)?)
    }
}

/// What one check reads: a generation, with its snapshot's bytes looked up once.
struct Lookup<'a> {
    gen: &'a Generation,
    snapshot: Option<(&'a Snapshot, &'a [u8])>,
}

impl Rules for Lookup<'_> {
    #[inline]
    fn hasher(&self) -> &Hasher {
        self.gen.index.hasher()
    }

    #[inline]
    fn newest(&self, scope: Scope) -> i64 {
        let tail = self.gen.index.newest(scope);
        match self.snapshot {
            Some((s, _)) => tail.max(s.newest(scope)),
            None => tail,
        }
    }

    #[inline]
    fn has_token_rules(&self) -> bool {
        self.gen.index.has_token_rules() || self.snapshot.is_some_and(|(s, _)| s.has_token_rules())
    }

    #[inline]
    fn global(&self) -> Option<i64> {
        let tail = self.gen.index.global();
        match self.snapshot {
            Some((s, _)) => tail.max(s.global()),
            None => tail,
        }
    }

    #[inline]
    fn prefetch(&self, scope: Scope, hash: u64) {
        if let Some((s, bytes)) = self.snapshot {
            s.prefetch(bytes, scope, hash);
        }
    }

    #[inline]
    fn get(&self, scope: Scope, hash: u64, tenant: &[u8], key: &[u8]) -> Result<Option<i64>> {
        let tail = self
            .gen
            .index
            .get_hashed(scope, hash, tenant, key, self.gen);
        match self.snapshot {
            Some((s, bytes)) => Ok(tail.max(s.get(bytes, scope, hash, tenant, key)?)),
            None => Ok(tail),
        }
    }
}

impl Generation {
    /// The view one check reads through.
    #[inline]
    fn lookup(&self) -> Result<Lookup<'_>> {
        let snapshot = match &self.snapshot {
            Some(s) => Some((s, s.section(self.log.map.bytes(self.log.header.log_start)?))),
            None => None,
        };
        Ok(Lookup {
            gen: self,
            snapshot,
        })
    }

    fn new(log: LogFile, recovery: Recovery) -> Result<Generation> {
        let start = log.header.log_start;
        let snapshot = if log.header.snapshot_len > 0 {
            let file = log.map.bytes(start.min(log.map.known_file_len()))?;
            Some(Snapshot::open(
                file,
                log.header.snapshot_offset as usize,
                log.header.snapshot_len as usize,
            )?)
        } else {
            None
        };
        Ok(Generation {
            index: Index::new(Hasher::new(log.header.hash_seed)),
            snapshot,
            readable: AtomicU64::new(start),
            seen: AtomicU64::new(0),
            catch_up: Mutex::new(CatchUp {
                applied: start,
                failure: None,
                rule_records: 0,
                torn: None,
            }),
            max_token_lifetime: AtomicI64::new(log.header.max_token_lifetime),
            recovery,
            position: PositionCell::default(),
            lost: LostFlag::default(),
            log,
        })
    }

    /// Every live key with its effective cutoff: the snapshot's merged with the tail's.
    fn live_rules<'a>(&'a self, mut f: impl FnMut(Scope, &'a [u8], &'a [u8], i64)) -> Result<()> {
        let file = self.log.map.bytes(self.log.header.log_start)?;
        let h = self.index.hasher();
        if let Some(s) = &self.snapshot {
            s.for_each(file, |scope, tenant, key, at| {
                let tail = match scope {
                    Scope::Global => self.index.global(),
                    _ => self.index.get_hashed(
                        scope,
                        h.key(scope, h.tenant(tenant), key),
                        tenant,
                        key,
                        self,
                    ),
                };
                f(scope, tenant, key, tail.map_or(at, |t| t.max(at)));
            })?;
        }
        let mut result = Ok(());
        self.index.for_each(|scope, offset, at| {
            let (tenant, key) = match offset {
                None => (&[][..], &[][..]),
                Some(off) => match self.keys_at(off) {
                    Some(k) => k,
                    None => return,
                },
            };
            if let Some(s) = &self.snapshot {
                let in_snapshot = match scope {
                    Scope::Global => Ok(s.global()),
                    _ => s.get(
                        s.section(file),
                        scope,
                        h.key(scope, h.tenant(tenant), key),
                        tenant,
                        key,
                    ),
                };
                match in_snapshot {
                    Ok(Some(_)) => return, // visited above, with the max
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        return;
                    }
                }
            }
            f(scope, tenant, key, at);
        });
        result
    }

    /// Whether the index is behind the log or the file was replaced: the slow path.
    #[inline]
    fn stale(&self) -> bool {
        // `lost` first: a truncated file's header must not be read.
        self.lost.is_set()
            || self.log.map.committed_len() != self.seen.load(Ordering::Acquire)
            || self.log.map.retired()
    }

    /// Applies every record committed since the index was last brought up to date.
    fn refresh(&self) -> Result<()> {
        let mut cu = self.catch_up.lock();
        if let Some((offset, why)) = &cu.failure {
            return Err(Error::corrupt(*offset, why.clone()));
        }
        let committed = self.log.map.committed_len();
        if committed == self.seen.load(Ordering::Acquire) {
            return Ok(());
        }
        if committed < self.log.header.log_start {
            let why = format!("header says the log ends at {committed}, before it starts");
            cu.failure = Some((0, why.clone()));
            return Err(Error::corrupt(0, why));
        }
        if committed < cu.applied {
            // The log was cut below what this index holds (a writer recovered with
            // keep_valid_prefix, or the bytes changed): the index can no longer follow it.
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
        if cu.torn == Some(committed) && cu.applied < limit {
            // Still the torn tail, unless a writer has since cut it and appended until
            // `committed_len` came back to the same value: then a valid frame starts
            // where the log stopped.
            let bytes = self.log.map.bytes(limit)?;
            if !matches!(
                decode_frame(&bytes[cu.applied as usize..]),
                Frame::Valid { .. }
            ) {
                return Ok(());
            }
        }
        if cu.applied < limit {
            self.readable.fetch_max(limit, Ordering::AcqRel);
            let bytes = self.log.map.bytes(limit)?;
            let mut rules = 0;
            let (end, stop) = scan(
                bytes,
                cu.applied,
                limit,
                |record, payload_offset| match record {
                    Record::Rule(r) => {
                        rules += 1;
                        self.index
                            .apply(r.scope, r.tenant, r.key, r.at, payload_offset, self);
                    }
                    Record::Config { max_token_lifetime } => {
                        self.max_token_lifetime
                            .fetch_max(max_token_lifetime, Ordering::AcqRel);
                    }
                    Record::Position {
                        stream,
                        last_id,
                        last_heard,
                        degraded,
                    } => self.position.set(stream, last_id, last_heard, degraded),
                },
            );
            cu.applied = end;
            cu.rule_records += rules;
            if let Some(why) = stop {
                let synced = self.log.map.synced_len();
                let damage = match next_valid_frame(bytes, end, limit) {
                    Some(next) => Some(format!(
                        "{why}, followed by a valid record at offset {next}"
                    )),
                    None if end < synced.min(limit) => {
                        Some(format!("{why}, below the synced end of the log ({synced})"))
                    }
                    // A torn tail left by a crash: the next writer cuts it off.
                    None => None,
                };
                if let Some(why) = damage {
                    cu.failure = Some((end, why.clone()));
                    return Err(Error::corrupt(end, why));
                }
            }
        }
        // Past a torn tail, `seen` stays where the log stops, never equal to a
        // `committed_len` a writer could publish again after cutting the tail: otherwise
        // the records it appends up to that same length would go unseen.
        let torn = cu.applied < limit;
        cu.torn = torn.then_some(committed);
        self.seen
            .store(if torn { cu.applied } else { committed }, Ordering::Release);
        Ok(())
    }

    fn max_token_lifetime(&self) -> i64 {
        self.max_token_lifetime.load(Ordering::Acquire)
    }

    fn is_expired(&self, scope: Scope, at: i64, now: i64) -> bool {
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
}

struct WriterState {
    end: u64,
    buf: Vec<u8>,
    /// Rule records in the log after the snapshot (for the automatic compaction policy).
    tail_records: u64,
    auto_compact: Option<f64>,
}

/// An open ledger: a writer (exclusive, can revoke) or a reader. `check` is `&self`,
/// thread-safe and lock-free in the common case; share one handle among threads.
pub struct Ledger {
    path: PathBuf,
    gen: ArcSwap<Generation>,
    /// Serialises opening a new generation after a compaction (readers).
    follow: Mutex<()>,
    writer: Option<Mutex<WriterState>>,
    sync_lock: Mutex<()>,
}

impl Ledger {
    /// Opens the ledger at `path` for writing, creating it if missing. Holds an exclusive
    /// lock on the file until dropped; a second writer anywhere gets [`Error::Locked`].
    pub fn open_writer(path: impl AsRef<Path>, options: &WriterOptions) -> Result<Ledger> {
        let path = &watch::absolute(path.as_ref())?;
        if options.max_token_lifetime < 0 {
            return Err(Error::invalid("max_token_lifetime must not be negative"));
        }
        let leeway = options.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway < 0 {
            return Err(Error::invalid("leeway must not be negative"));
        }
        let log = LogFile::open_writer(path, || {
            Ok(Header {
                hash_seed: random_seed()?,
                max_token_lifetime: if options.max_token_lifetime == 0 {
                    DEFAULT_MAX_TOKEN_LIFETIME
                } else {
                    options.max_token_lifetime
                },
                leeway,
                created_at: unix_now_floor(),
                generation: 0,
                snapshot_offset: 0,
                snapshot_len: 0,
                log_start: HEADER_LEN as u64,
            })
        })?;
        remove_stale_compactions(path);
        let recovery = log.recover(options.keep_valid_prefix)?;
        let end = recovery.end;
        let gen = Generation::new(log, recovery)?;
        gen.refresh()?;
        let current = gen.max_token_lifetime();
        let tail_records = gen.catch_up.lock().rule_records;
        let ledger = Ledger {
            path: path.to_path_buf(),
            gen: ArcSwap::from_pointee(gen),
            follow: Mutex::new(()),
            writer: Some(Mutex::new(WriterState {
                end,
                buf: Vec::with_capacity(4096),
                tail_records,
                auto_compact: options.auto_compact,
            })),
            sync_lock: Mutex::new(()),
        };
        let wanted = options.max_token_lifetime;
        if wanted != 0 && wanted < current {
            return Err(Error::invalid(format!(
                "max_token_lifetime {wanted} s is smaller than the ledger's {current} s; \
                 lowering it would let compaction drop rules that issued tokens still need"
            )));
        }
        if wanted > current {
            ledger.append(0, |buf| encode_config(buf, wanted))?;
            ledger.refresh()?;
        }
        Ok(ledger)
    }

    /// Opens the ledger at `path` read-only. Any number of readers, in any process, may
    /// have it open alongside its writer; they see each committed record on their next
    /// `check`.
    pub fn open_reader(path: impl AsRef<Path>) -> Result<Ledger> {
        let path = &watch::absolute(path.as_ref())?;
        Ok(Ledger {
            path: path.to_path_buf(),
            gen: ArcSwap::from_pointee(open_reader_generation(path)?),
            follow: Mutex::new(()),
            writer: None,
            sync_lock: Mutex::new(()),
        })
    }

    /// Whether the token is revoked, and by which rule. Lock-free and free of system
    /// calls unless the writer committed since the last check on this handle.
    #[inline]
    pub fn check(&self, token: &Token) -> Result<Verdict> {
        token.validate()?;
        let gen = self.gen.load();
        if !gen.stale() {
            if !watch::due() {
                return check::check(&gen.lookup()?, token);
            }
            drop(gen);
            self.verify_path()?;
        } else {
            drop(gen);
        }
        check::check(&self.current()?.lookup()?, token)
    }

    /// The current generation, brought up to date with the log (following a compaction
    /// if one happened).
    fn current(&self) -> Result<Arc<Generation>> {
        loop {
            let gen = self.gen.load_full();
            gen.lost.check()?;
            if !gen.log.map.retired() {
                gen.refresh()?;
                return Ok(gen);
            }
            if self.writer.is_some() {
                // The writer swaps its own generation during compaction; a retired
                // file here means another process compacted it: never ours to follow.
                return Err(Error::Internal("writer's ledger file was retired".into()));
            }
            self.follow(&gen)?;
        }
    }

    /// A reader opens the path again after a compaction replaced its file.
    fn follow(&self, gen: &Arc<Generation>) -> Result<()> {
        let _one = self.follow.lock();
        if Arc::ptr_eq(gen, &self.gen.load()) {
            let next = open_reader_generation(&self.path)?;
            if watch::same_file(&next.log.file, &gen.log.file) {
                // Marked retired yet still at its path (a copy of an old file put back):
                // fail closed until a writer opens it, which clears the mark.
                return Err(Error::corrupt(
                    crate::header::OFF_RETIRED as u64,
                    "the file is marked as replaced by a compaction but is still at its path",
                ));
            }
            self.gen.store(Arc::new(next));
        }
        Ok(())
    }

    /// Checks that the handle's file is still the ledger at its path (src/watch.rs):
    /// follows a compaction a reader has not seen yet, and fails (for good) when the file
    /// was deleted, replaced or truncated.
    fn verify_path(&self) -> Result<()> {
        let gen = self.gen.load_full();
        gen.lost.check()?;
        match gen.log.path_state()? {
            PathState::Current => Ok(()),
            PathState::Compacted if self.writer.is_none() => self.follow(&gen),
            PathState::Compacted => Err(gen.lost.set(watch::Lost::Replaced(format!(
                "the ledger file {} was compacted by another process while this writer held it",
                self.path.display()
            )))),
            PathState::Lost(why) => Err(gen.lost.set(why)),
        }
    }

    /// Applies every record committed since this handle last looked, following a
    /// compaction if one happened. Checks do this on their own when needed. On a reader,
    /// also checks that the file is still the ledger at its path (deleted, replaced or
    /// truncated: an error, and every later call fails; checks do this once in
    /// [`PATH_CHECK_EVERY`](crate::PATH_CHECK_EVERY) per thread): call it from a timer to
    /// bound in time how long a reader may answer from a file that was removed.
    pub fn refresh(&self) -> Result<()> {
        if self.writer.is_none() {
            self.verify_path()?;
        }
        self.current().map(|_| ())
    }

    /// Records `rule`. Returns once it is committed: visible to every reader's next check.
    /// Not durable until [`Ledger::sync`].
    pub fn revoke(&self, rule: &Rule) -> Result<()> {
        rule.validate()?;
        self.append(1, |buf| encode_rule(buf, rule))
    }

    /// Records every rule of `rules` in one write; all are validated first, so either
    /// all are committed or none is.
    pub fn revoke_batch(&self, rules: &[Rule]) -> Result<()> {
        for (i, r) in rules.iter().enumerate() {
            r.validate()
                .map_err(|e| Error::invalid(format!("rule {i} of the batch: {e}")))?;
        }
        self.append(rules.len() as u64, |buf| {
            for r in rules {
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
        self.append(rules.len() as u64, |buf| {
            for r in rules {
                encode_rule(buf, r);
            }
            encode_position(buf, position);
        })
    }

    /// Where the ledger stands in the stream that feeds it: the last position record
    /// written by [`Ledger::revoke_batch_at_position`] (kept by compaction), or `None`
    /// when no sync process ever wrote one. Brings the handle up to date first.
    pub fn stream_position(&self) -> Result<Option<StreamPosition>> {
        Ok(self.current()?.position.get())
    }

    /// Unix seconds at which the ledger last heard from its stream (`None`: never). The
    /// part of [`Ledger::stream_position`] a gateway polls: lock-free and free of system
    /// calls unless the writer committed since this handle last looked.
    #[inline]
    pub fn last_heard(&self) -> Result<Option<i64>> {
        let gen = self.gen.load();
        if !gen.stale() {
            return Ok(gen.position.last_heard());
        }
        drop(gen);
        Ok(self.current()?.position.last_heard())
    }

    /// Why the ledger may lack rules its stream carried ([`StreamPosition::degraded`]: 0
    /// when it holds every one, or when no sync process ever wrote a position). Lock-free,
    /// like [`Ledger::last_heard`]: a gateway treats a non-zero answer as stale.
    #[inline]
    pub fn degraded(&self) -> Result<u8> {
        let gen = self.gen.load();
        if !gen.stale() {
            return Ok(gen.position.degraded());
        }
        drop(gen);
        Ok(self.current()?.position.degraded())
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

    /// Appends what `encode` writes (`rules` rule records) and publishes it.
    fn append(&self, rules: u64, encode: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let mut w = writer.lock();
        let gen = self.gen.load();
        gen.lost.check()?;
        let WriterState { end, buf, .. } = &mut *w;
        buf.clear();
        encode(buf);
        gen.log.write_at(*end, buf)?;
        *end += buf.len() as u64;
        gen.log.map.publish_committed(*end)?;
        if buf.capacity() > 1 << 20 {
            *buf = Vec::with_capacity(4096);
        }
        w.tail_records += rules;
        let due = w.auto_compact.is_some_and(|fraction| {
            let snapshot_keys = gen.snapshot.as_ref().map_or(0, Snapshot::keys);
            w.tail_records >= AUTO_COMPACT_MIN_RECORDS
                && w.tail_records as f64 > fraction * snapshot_keys as f64
        });
        drop(w);
        if due {
            self.compact(unix_now_floor())?;
        }
        Ok(())
    }

    /// Makes every committed record durable (fdatasync). Many revokes then one sync is
    /// group commit.
    pub fn sync(&self) -> Result<()> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let _one_sync_at_a_time = self.sync_lock.lock();
        self.verify_path()?;
        let (end, gen) = {
            let w = writer.lock();
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

    /// Rewrites the ledger with one record per live key, dropping every rule that can no
    /// longer revoke an unexpired token at `now` (Unix seconds), and swaps the new file in
    /// atomically (write, fsync, rename, fsync the directory). Readers follow on their
    /// next check. Revokes wait while it runs. A crash at any point leaves the old or
    /// the new file, complete.
    pub fn compact(&self, now: i64) -> Result<CompactStats> {
        let writer = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let mut w = writer.lock();
        self.verify_path()?;
        let old = self.gen.load_full();
        old.refresh()?;
        let generation = old.log.header.generation.checked_add(1).ok_or_else(|| {
            Error::corrupt(
                64,
                "the header's generation is at its maximum: cannot compact",
            )
        })?;
        let header = Header {
            max_token_lifetime: old.max_token_lifetime(),
            generation,
            created_at: unix_now_floor(),
            ..old.log.header.clone()
        };
        let mut stats = CompactStats {
            records_before: old.catch_up.lock().rule_records
                + old.snapshot.as_ref().map_or(0, Snapshot::keys),
            bytes_before: w.end,
            ..CompactStats::default()
        };
        let mut live: Vec<LiveRule> = Vec::new();
        old.live_rules(|scope, tenant, key, at| {
            if old.is_expired(scope, at, now) {
                stats.keys_dropped += 1;
            } else {
                live.push(LiveRule {
                    scope,
                    tenant,
                    key,
                    at,
                });
            }
        })?;
        stats.rules_kept = live.len() as u64;
        let snap = snapshot::build(old.index.hasher(), &live);
        drop(live);
        if snap.len() as u64 >= snapshot::MAX_SNAPSHOT_LEN {
            return Err(Error::invalid(
                "live rules exceed the 512 GiB snapshot limit",
            ));
        }
        let header = Header {
            snapshot_offset: SNAPSHOT_OFFSET,
            snapshot_len: snap.len() as u64,
            log_start: (SNAPSHOT_OFFSET + snap.len() as u64).next_multiple_of(8),
            ..header
        };
        let tmp = compaction_path(&self.path);
        let mut tail = Vec::new();
        if let Some(p) = old.position.get() {
            encode_position(&mut tail, &p); // the new file keeps the stream position
        }
        let log = LogFile::create_compacted(&tmp, &self.path, &header, &snap, &tail)?;
        drop(snap);
        let end = log.map.committed_len();
        // Open the new generation before it replaces the old one: if its snapshot did not
        // read back, the old file stays in place.
        let gen = Generation::new(
            log,
            Recovery {
                end,
                dropped_bytes: 0,
            },
        )
        .and_then(|gen| gen.refresh().map(|()| gen));
        let gen = match gen {
            Ok(gen) => gen,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io_path(
                "renaming the compacted ledger onto",
                &self.path,
                e,
            ));
        }
        sync_dir(&parent_dir(&self.path))?;
        self.gen.store(Arc::new(gen));
        w.end = end;
        w.tail_records = 0;
        old.log.map.publish_retired()?;
        stats.bytes_after = end;
        Ok(stats)
    }

    /// Effective maximum token lifetime, in seconds.
    pub fn max_token_lifetime(&self) -> i64 {
        self.gen.load().max_token_lifetime()
    }

    /// Clock-skew leeway, in seconds.
    pub fn leeway(&self) -> i64 {
        self.gen.load().log.header.leeway
    }

    /// Whether this handle is the writer.
    pub fn is_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Path the ledger was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a rule of `scope` with cutoff (or, for tokens, exp) `at` can be dropped at
    /// time `now`: every token it could revoke has expired.
    pub fn is_expired(&self, scope: Scope, at: i64, now: i64) -> bool {
        self.gen.load().is_expired(scope, at, now)
    }

    /// Figures about the ledger as of `now` (Unix seconds; used for `expired_keys`).
    /// Visits every live key: linear in the size of the ledger.
    pub fn stats(&self, now: i64) -> Result<Stats> {
        let gen = self.current()?;
        let (mut live, mut expired) = (0, 0);
        gen.live_rules(|scope, _, _, at| {
            live += 1;
            expired += u64::from(gen.is_expired(scope, at, now));
        })?;
        let cu = gen.catch_up.lock();
        let snapshot_keys = gen.snapshot.as_ref().map_or(0, Snapshot::keys);
        Ok(Stats {
            rule_records: cu.rule_records + snapshot_keys,
            snapshot_keys,
            live_keys: live,
            expired_keys: expired,
            log_bytes: cu.applied,
            file_bytes: gen.log.map.refresh_len(&gen.log.file)?,
            index_bytes: gen.index.memory_bytes() as u64
                + gen.snapshot.as_ref().map_or(0, Snapshot::table_bytes),
            max_token_lifetime: gen.max_token_lifetime(),
            leeway: gen.log.header.leeway,
            generation: gen.log.header.generation,
            writer: self.is_writer(),
            dropped_bytes: gen.recovery.dropped_bytes,
        })
    }

    /// Visits every rule the ledger holds, in file order, with the file offset it is
    /// stored at: first the snapshot's (one per key, at the snapshot's offset), then the
    /// log's records (at their frame offsets).
    pub fn for_each_record(&self, mut visit: impl FnMut(u64, Record<'_>)) -> Result<()> {
        let gen = self.current()?;
        let start = gen.log.header.log_start;
        if let Some(s) = &gen.snapshot {
            let file = gen.log.map.bytes(start)?;
            s.for_each(file, |scope, tenant, key, at| {
                visit(
                    gen.log.header.snapshot_offset,
                    Record::Rule(Rule::new(scope, tenant, key, at)),
                )
            })?;
        }
        let end = gen.catch_up.lock().applied;
        let bytes = gen.log.map.bytes(end)?;
        scan(bytes, start, end, |record, payload_offset| {
            visit(
                payload_offset - crate::record::FRAME_HEADER_LEN as u64,
                record,
            )
        });
        Ok(())
    }
}

fn open_reader_generation(path: &Path) -> Result<Generation> {
    let log = LogFile::open_reader(path)?;
    let committed = log.map.committed_len();
    let gen = Generation::new(log, Recovery::default())?;
    gen.refresh()?;
    let applied = gen.catch_up.lock().applied;
    let mut gen = gen;
    gen.recovery = Recovery {
        end: applied,
        dropped_bytes: committed.saturating_sub(applied),
    };
    Ok(gen)
}

fn compaction_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or("ledger".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(path).join(format!(".{name}.compacting"))
}

/// A compaction that crashed leaves its temporary file; the next writer removes it.
fn remove_stale_compactions(path: &Path) {
    let _ = std::fs::remove_file(compaction_path(path));
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // A writer closing makes its records durable, so that the synced end in the
        // header covers them; an error here has no one to report to and loses nothing
        // committed (the bytes are in the page cache).
        if self.writer.is_some() {
            let _ = self.sync();
        }
    }
}
