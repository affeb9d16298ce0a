//! Following a stream into a ledger: the loop of `revledger sync` (docs/SYNC.md §3).
//!
//! One step reads a batch with `XREAD COUNT n BLOCK t` from the ledger's recorded
//! position, turns each entry into a rule (a malformed entry is reported and skipped),
//! appends the rules and the new position in one write (committed: every reader sees
//! them), and syncs. [`Follower::step`] syncs before it returns; [`Follower::run`] hands
//! the fdatasync to a thread of its own, so that reading the next batch does not wait
//! for the disk: each fdatasync covers every batch committed before it (group commit).
//! Either way a crash leaves a prefix of the log whose last position covers every rule
//! before it, and the stream still holds whatever the crash lost. A read that times out with nothing new is a heartbeat: the
//! position is written again with a newer "last heard", at most once per second. When
//! Redis cannot be reached, steps report it and ask the caller to wait, with exponential
//! backoff; the ledger keeps answering and its "last heard" stays put.

use super::message::{parse_entry, Entry};
use super::TrustedKeys;
use super::{RedisConfig, Result, SyncError};
use parking_lot::{Condvar, Mutex};
use redis::Value;
use revledger::{unix_now_floor, Rule};
use revledger::{CompactStats, Ledger};
use revledger::{StreamId, StreamPosition};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a [`Follower`] reads its stream.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Where Redis is and how to reach it (TLS, ACL user, Sentinel, timeouts: its read
    /// timeout is allowed beyond `block` for each reply).
    pub redis: RedisConfig,
    /// Name of the stream (a Redis key).
    pub stream: Vec<u8>,
    /// Most entries read (and applied in one write and one sync) at a time.
    pub batch: usize,
    /// How long one read waits for new entries; also the heartbeat cadence.
    pub block: Duration,
    /// On every (re)connection, read again the entries of this many seconds before the
    /// position (by entry id). After a failover the new primary may hold entries with
    /// ids just below an entry this process read from the old one (written there after
    /// the promotion, never replicated); reading back a little catches them. Reading an
    /// entry twice changes nothing.
    pub rewind: Duration,
    /// First wait after Redis failed; doubled at each further failure...
    pub backoff_min: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// Also compact the ledger this often, in the sync loop; `None` (the default): never
    /// here — the writer compacts in the background on its own policy
    /// ([`revledger::WriterOptions::compaction`]), without stalling the loop.
    pub compact_every: Option<Duration>,
    /// Apply only entries signed by one of these keys, for the scopes it may publish
    /// (docs/SYNC.md §5); others are refused. `None`: signatures are not looked at.
    pub trusted: Option<std::sync::Arc<TrustedKeys>>,
}

impl SyncOptions {
    /// Options for following `stream` on the Redis at `redis_url`, with the defaults:
    /// batches of 10,000 entries, 1 s blocking reads, 5 s timeouts, backoff from 100 ms
    /// to 5 s, a rewind of 60 s on reconnection, compaction left to the writer's
    /// background policy.
    pub fn new(redis_url: impl Into<String>, stream: impl Into<Vec<u8>>) -> SyncOptions {
        SyncOptions::with_redis(RedisConfig::new(redis_url), stream)
    }

    /// The same defaults, for the Redis `redis` describes.
    pub fn with_redis(redis: RedisConfig, stream: impl Into<Vec<u8>>) -> SyncOptions {
        SyncOptions {
            redis,
            stream: stream.into(),
            batch: 10_000,
            block: Duration::from_secs(1),
            rewind: Duration::from_secs(60),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            compact_every: None,
            trusted: None,
        }
    }
}

/// What a [`Follower`] reports as it goes (the log of `revledger sync`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Connected to Redis; reading entries after `from`.
    Connected {
        /// The Redis URL, password hidden.
        redis: String,
        /// Id after which entries are read.
        from: StreamId,
    },
    /// The ledger's position is for another stream: this one is read from its beginning.
    NewStream {
        /// The stream the ledger was fed from before.
        previous: Vec<u8>,
    },
    /// The stream does not exist (a Redis that lost its data, or nothing published yet):
    /// its entries are read from the beginning when it appears.
    StreamMissing {
        /// The ledger's position, now read again from `0-0`.
        position: StreamId,
    },
    /// The stream's newest id is older than the ledger's position: it was recreated.
    /// It is read again from the beginning (applying a rule twice changes nothing).
    StreamReset {
        /// The ledger's position.
        position: StreamId,
        /// The stream's `last-generated-id`.
        last_generated: StreamId,
    },
    /// Entries after the ledger's position were trimmed before it read them. When the
    /// newest of them is older than the ledger's max token lifetime + twice its leeway,
    /// every rule they carried has expired (publishers refuse cutoffs more than a leeway
    /// ahead, docs/SYNC.md §3): nothing is lost. Otherwise rules were lost and the ledger
    /// is marked degraded ([`revledger::StreamPosition::TRIMMED`]). Reading goes on after
    /// `max_deleted`.
    TrimmedPast {
        /// The ledger's position.
        position: StreamId,
        /// The stream's `max-deleted-entry-id`.
        max_deleted: StreamId,
        /// Whether rules that may still matter were lost.
        lost: bool,
    },
    /// The ledger is now marked degraded for these reasons
    /// ([`revledger::StreamPosition::degraded`] bits newly set): gateways that check
    /// freshness treat it as stale until an operator resolves it (docs/SYNC.md §5).
    Degraded {
        /// The bits newly set.
        bits: u8,
    },
    /// An operator resolved the degraded state (`revledger sync --resolve`).
    Resolved {
        /// The bits that were set.
        was: u8,
    },
    /// A batch was applied: committed, visible to every reader, synced right after.
    Applied {
        /// Rules appended.
        rules: usize,
        /// Malformed entries skipped (each also reported as [`Event::Skipped`]).
        skipped: usize,
        /// Entries refused for their signature (each also reported as [`Event::Refused`]).
        refused: usize,
        /// How far behind the stream's newest entry the ledger still is, in milliseconds
        /// of entry ids: 0 when the read returned less than a full batch (nothing newer
        /// was waiting), else the age of the last entry applied.
        lag_ms: u64,
        /// The ledger's position now.
        last_id: StreamId,
    },
    /// An entry that is not a valid rule was skipped; the entries after it are applied.
    Skipped {
        /// Its id.
        id: StreamId,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry whose signature is missing, bad, from an unknown key, or from a key not
    /// allowed its scope was refused; the entries after it are applied.
    Refused {
        /// Its id.
        id: StreamId,
        /// Why.
        reason: String,
    },
    /// Redis could not be reached, or failed; the next attempt is in `retry_in`.
    Unreachable {
        /// What failed.
        error: String,
        /// Wait before the next attempt.
        retry_in: Duration,
        /// Consecutive failures so far.
        attempt: u32,
    },
    /// Nothing new: "last heard" moved to this Unix second.
    Heartbeat {
        /// The new "last heard".
        last_heard: i64,
    },
    /// The ledger was compacted.
    Compacted {
        /// What compaction did.
        stats: CompactStats,
        /// How long it took, in microseconds.
        micros: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected { redis, from } => {
                write!(f, "connected to {redis}; reading entries after {from}")
            }
            Event::NewStream { previous } => write!(
                f,
                "the ledger was fed from stream {:?}; reading this one from its beginning",
                String::from_utf8_lossy(previous)
            ),
            Event::StreamMissing { position } => write!(
                f,
                "the stream does not exist (yet); its entries will be read from the \
                 beginning (the ledger was at {position})"
            ),
            Event::StreamReset {
                position,
                last_generated,
            } => write!(
                f,
                "the stream was recreated (its last id {last_generated} is before the \
                 ledger's position {position}); reading it again from the beginning"
            ),
            Event::TrimmedPast {
                position,
                max_deleted,
                lost: false,
            } => write!(
                f,
                "warning: entries up to {max_deleted} were trimmed from the stream before \
                 this ledger read them (it was at {position}); all are older than the max \
                 token lifetime + 2 x leeway, so every rule they carried has expired"
            ),
            Event::TrimmedPast {
                position,
                max_deleted,
                lost: true,
            } => write!(
                f,
                "error: entries up to {max_deleted} were trimmed from the stream before \
                 this ledger read them (it was at {position}): rules that may still matter \
                 are lost"
            ),
            Event::Degraded { bits } => write!(
                f,
                "error: the ledger is now marked DEGRADED ({}); gateways checking freshness \
                 treat it as stale until an operator resyncs it and runs `revledger sync \
                 --resolve` (docs/SYNC.md §5)",
                super::degraded_reasons(*bits).join("; ")
            ),
            Event::Resolved { was } => write!(
                f,
                "the degraded state ({}) was resolved by the operator",
                super::degraded_reasons(*was).join("; ")
            ),
            Event::Applied {
                rules,
                skipped,
                refused,
                last_id,
                ..
            } => write!(
                f,
                "applied {rules} rules ({skipped} skipped, {refused} refused) up to entry {last_id}"
            ),
            Event::Skipped { id, reason } => {
                write!(f, "skipped malformed entry {id}: {reason}")
            }
            Event::Refused { id, reason } => {
                write!(f, "refused entry {id}: {reason}")
            }
            Event::Unreachable {
                error,
                retry_in,
                attempt,
            } => write!(
                f,
                "redis unreachable ({error}); retrying in {} ms (attempt {attempt}); \
                 the ledger keeps answering from what it holds",
                retry_in.as_millis()
            ),
            Event::Heartbeat { last_heard } => write!(f, "heartbeat: last heard {last_heard}"),
            Event::Compacted { stats: s, .. } => write!(
                f,
                "compacted the ledger: {} rules kept, {} expired keys dropped, {} -> {} bytes",
                s.rules_kept, s.keys_dropped, s.bytes_before, s.bytes_after
            ),
        }
    }
}

/// The one process that feeds a ledger from a stream: reads from the ledger's recorded
/// position and appends each batch with its new position. Holds the ledger's writer
/// handle, so a second follower on the same ledger fails to open it with `Locked`.
pub struct Follower<'l> {
    ledger: &'l Ledger,
    redis_shown: String,
    opts: SyncOptions,
    conn: Option<redis::Connection>,
    /// The position written last (or, before anything is written, to write next).
    position: StreamPosition,
    /// The id after which the next read starts: the position, or before it after a
    /// rewind (entries up to the position are then applied again, the position kept).
    cursor: StreamId,
    failures: u32,
    /// An `XREAD` was sent whose answer the next step receives.
    read_ahead: bool,
    /// Degraded bits found outside a batch (a trimmed stream), for the next write.
    pending_degraded: u8,
    /// What this process has read, so that the rewind's second reading of an entry does
    /// not judge it twice.
    read_back: ReadBack,
    last_compaction: Instant,
    pending: Vec<Event>,
}

/// The thread that makes committed batches durable while the next one is read.
#[derive(Default)]
struct Syncer {
    state: Mutex<SyncerState>,
    wake: Condvar,
}

#[derive(Default)]
struct SyncerState {
    dirty: bool,
    stop: bool,
    error: Option<revledger::Error>,
}

impl Syncer {
    fn run(&self, ledger: &Ledger) {
        loop {
            {
                let mut st = self.state.lock();
                while !st.dirty && !st.stop {
                    self.wake.wait(&mut st);
                }
                if !st.dirty {
                    return; // stopping, nothing left to sync
                }
                st.dirty = false;
            }
            if let Err(e) = ledger.sync() {
                self.state.lock().error = Some(e);
                return;
            }
        }
    }

    fn mark_dirty(&self) {
        self.state.lock().dirty = true;
        self.wake.notify_one();
    }

    fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_one();
    }

    fn take_error(&self) -> Option<revledger::Error> {
        self.state.lock().error.take()
    }
}

/// Why a step lost its connection: Redis failed, or answered something unreadable.
enum Lost {
    Redis(redis::RedisError),
    Protocol(String),
}

impl From<redis::RedisError> for Lost {
    fn from(e: redis::RedisError) -> Lost {
        Lost::Redis(e)
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Redis(e) => e.fmt(f),
            Lost::Protocol(m) => write!(f, "unexpected answer: {m}"),
        }
    }
}

/// One entry of an `XREAD` answer: its id and its field/value pairs (or why they are
/// unreadable).
type RawEntry<'a> = (StreamId, Result<Vec<(&'a [u8], &'a [u8])>, String>);

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The entries of an `XREAD` answer for `stream`. Never panics, whatever Redis sent.
fn xread_entries<'a>(reply: &'a Value, stream: &[u8]) -> Result<Vec<RawEntry<'a>>, String> {
    let per_stream: Vec<(&Value, &Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Ok((&pair[0], &pair[1])),
                other => Err(format!("stream item {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        other => return Err(format!("XREAD answered {other:?}")),
    };
    let Some((_, entries)) = per_stream
        .into_iter()
        .find(|(name, _)| bytes_of(name) == Some(stream))
    else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = entries else {
        return Err(format!("entries {entries:?}"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(parts) = e else {
            return Err(format!("entry {e:?}"));
        };
        let [id, fields] = &parts[..] else {
            return Err(format!("entry of {} parts", parts.len()));
        };
        let id = bytes_of(id)
            .and_then(StreamId::parse)
            .ok_or_else(|| format!("entry id {id:?}"))?;
        let pairs = match fields {
            Value::Array(flat) if flat.len() % 2 == 0 => flat
                .chunks_exact(2)
                .map(|kv| match (bytes_of(&kv[0]), bytes_of(&kv[1])) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err("a field name or value is not a string".to_string()),
                })
                .collect(),
            Value::Array(_) => Err("odd number of field names and values".to_string()),
            Value::Map(kvs) => kvs
                .iter()
                .map(|(k, v)| match (bytes_of(k), bytes_of(v)) {
                    (Some(k), Some(v)) => Ok((k, v)),
                    _ => Err("a field name or value is not a string".to_string()),
                })
                .collect(),
            _ => Err("the entry has no fields".to_string()),
        };
        out.push((id, pairs));
    }
    Ok(out)
}

/// A field of an `XINFO STREAM` answer (a flat list of names and values, or a map).
fn info_field<'a>(info: &'a Value, name: &[u8]) -> Option<&'a Value> {
    match info {
        Value::Array(flat) => flat
            .chunks_exact(2)
            .find(|kv| bytes_of(&kv[0]) == Some(name))
            .map(|kv| &kv[1]),
        Value::Map(kvs) => kvs
            .iter()
            .find(|(k, _)| bytes_of(k) == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn info_id(info: &Value, name: &[u8]) -> Option<StreamId> {
    info_field(info, name)
        .and_then(bytes_of)
        .and_then(StreamId::parse)
}

/// The newest id that may have held an entry after `position` which is no longer in the
/// stream, per `XINFO STREAM`: `max-deleted-entry-id` (`XDEL`) when after the position,
/// or the id just before the first entry when that entry is after the position (trimming
/// removes the oldest entries, and Redis does not count them). `None`: nothing after the
/// position can be gone (or the position is `0-0`: a new ledger reads what is there).
fn gone_after(info: &Value, position: StreamId) -> Option<StreamId> {
    if position == StreamId::ZERO {
        return None;
    }
    let deleted = info_id(info, b"max-deleted-entry-id").filter(|d| *d > position);
    let first = info_field(info, b"first-entry")
        .and_then(|e| match e {
            Value::Array(parts) => parts.first(),
            _ => None,
        })
        .and_then(bytes_of)
        .and_then(StreamId::parse)
        .or_else(|| info_id(info, b"recorded-first-entry-id"))
        .filter(|f| *f > position)
        .map(|f| match f.seq {
            0 => StreamId::new(f.ms - 1, u64::MAX),
            s => StreamId::new(f.ms, s - 1),
        })
        .filter(|before| *before > position);
    deleted.max(first)
}

/// Bad entries (refused or skipped) whose ids this process keeps, the newest: enough for
/// a rewind's worth of a stream that is mostly bad; past it, the oldest is forgotten, and
/// reading it again marks the ledger again (the cautious side).
const BAD_IDS_KEPT: usize = 65_536;

/// What one sync process has read of its stream. Every (re)connection reads again the
/// entries of the rewind before the position (`SyncOptions::rewind`). A bad entry at or
/// before the position was judged when it was first read: its degraded bit is in the
/// position, or an operator has since resolved it (`--resolve`), and reading it again
/// must not undo that. Only a bad entry read for the first time marks the ledger: one
/// after the position, or one at or before it that this process never received although
/// it read past its id (a failover's new primary holds entries the old one never had).
#[derive(Default)]
struct ReadBack {
    /// The newest id this process has received since the stream (re)started.
    through: StreamId,
    /// Ids of the bad entries this process has received (at most [`BAD_IDS_KEPT`]).
    bad: std::collections::BTreeSet<StreamId>,
}

impl ReadBack {
    /// Records the bad entry `id`; whether it is read for the first time (it marks the
    /// ledger, and is logged and counted), given the ledger's `position`.
    fn first_reading_of_bad(&mut self, id: StreamId, position: StreamId) -> bool {
        let first = id > position || (id <= self.through && !self.bad.contains(&id));
        self.bad.insert(id);
        if self.bad.len() > BAD_IDS_KEPT {
            self.bad.pop_first();
        }
        first
    }

    /// Every entry up to `id` was received; entries before `horizon` will not be read
    /// again (the next rewind starts at or after it).
    fn received_through(&mut self, id: StreamId, horizon: StreamId) {
        self.through = self.through.max(id);
        if self.bad.first().is_some_and(|b| *b < horizon) {
            self.bad = self.bad.split_off(&horizon);
        }
    }
}

impl<'l> Follower<'l> {
    /// A follower feeding `ledger` (a writer handle) from the stream of `options`,
    /// starting after the ledger's recorded position when it is for that stream, from the
    /// stream's beginning otherwise. Does not connect yet.
    pub fn new(ledger: &'l Ledger, options: SyncOptions) -> Result<Follower<'l>> {
        if !ledger.is_writer() {
            return Err(SyncError::Ledger(revledger::Error::ReadOnly));
        }
        let mut position = StreamPosition::new(options.stream.clone(), StreamId::ZERO, 0);
        position.validate()?;
        if options.batch == 0 || options.block.is_zero() {
            return Err(SyncError::Ledger(revledger::Error::InvalidArgument(
                "batch and block must be positive".into(),
            )));
        }
        options.redis.validate()?;
        let mut pending = Vec::new();
        match ledger.stream_position()? {
            Some(p) if p.stream == options.stream => position = p,
            Some(p) => pending.push(Event::NewStream { previous: p.stream }),
            None => {}
        }
        Ok(Follower {
            ledger,
            redis_shown: options.redis.describe(),
            opts: options,
            conn: None,
            cursor: position.last_id,
            position,
            failures: 0,
            read_ahead: false,
            pending_degraded: 0,
            read_back: ReadBack::default(),
            last_compaction: Instant::now(),
            pending,
        })
    }

    /// The ledger's position as this follower last wrote it (or found it).
    pub fn position(&self) -> &StreamPosition {
        &self.position
    }

    /// The operator's acknowledgement that the ledger was resynced (docs/SYNC.md §5):
    /// writes the position again with no degraded bit, and returns the bits that were set
    /// (0: it was not degraded, and nothing is written).
    pub fn resolve(&mut self, on: &mut dyn FnMut(&Event)) -> Result<u8> {
        let was = self.position.degraded;
        if was == 0 {
            return Ok(0);
        }
        let mut position = self.position.clone();
        position.degraded = 0;
        self.ledger.revoke_batch_at_position(&[], &position)?;
        self.ledger.sync()?;
        self.position = position;
        on(&Event::Resolved { was });
        Ok(was)
    }

    /// One step: connect if needed, read one batch (waiting up to `block`), apply it.
    /// `Ok(Some(wait))`: Redis failed (reported through `on`); wait that long before the
    /// next step. `Err`: the ledger failed; following cannot go on.
    pub fn step(&mut self, on: &mut dyn FnMut(&Event)) -> Result<Option<Duration>> {
        self.step_with(on, None)
    }

    fn step_with(
        &mut self,
        on: &mut dyn FnMut(&Event),
        syncer: Option<&Syncer>,
    ) -> Result<Option<Duration>> {
        if let Some(e) = syncer.and_then(Syncer::take_error) {
            return Err(e.into());
        }
        for e in self.pending.drain(..) {
            on(&e);
        }
        if self.conn.is_none() {
            match self.connect(on) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.read_ahead = false;
                }
                Err(lost) => return Ok(Some(self.unreachable(lost, on))),
            }
        }
        if !self.read_ahead {
            if let Err(e) = self.send_xread(self.cursor) {
                self.conn = None;
                return Ok(Some(self.unreachable(Lost::Redis(e), on)));
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let reply = conn.recv_response().and_then(Value::extract_error);
        self.read_ahead = false;
        let applied = match reply {
            Ok(v) => self.apply(&v, on, syncer)?,
            Err(e) => Err(Lost::Redis(e)),
        };
        if let Err(lost) = applied {
            self.conn = None;
            self.read_ahead = false;
            return Ok(Some(self.unreachable(lost, on)));
        }
        self.failures = 0;
        if let Some(every) = self.opts.compact_every {
            if self.last_compaction.elapsed() >= every {
                let started = Instant::now();
                let stats = self.ledger.compact(unix_now_floor())?;
                self.last_compaction = Instant::now();
                on(&Event::Compacted {
                    stats,
                    micros: started.elapsed().as_micros().min(u64::MAX as u128) as u64,
                });
            }
        }
        Ok(None)
    }

    /// Steps until `stop` is set (checked between steps and while waiting out a
    /// backoff) or the ledger fails, syncing on a thread of its own (group commit while
    /// the next batch is read). Everything committed is synced before it returns.
    pub fn run(&mut self, stop: &AtomicBool, on: &mut dyn FnMut(&Event)) -> Result<()> {
        let syncer = Syncer::default();
        let ledger = self.ledger;
        std::thread::scope(|scope| {
            scope.spawn(|| syncer.run(ledger));
            let result = self.run_with(stop, on, &syncer);
            syncer.stop();
            result
        })?;
        match syncer.take_error() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn run_with(
        &mut self,
        stop: &AtomicBool,
        on: &mut dyn FnMut(&Event),
        syncer: &Syncer,
    ) -> Result<()> {
        while !stop.load(Ordering::Acquire) {
            if let Some(wait) = self.step_with(on, Some(syncer))? {
                let until = Instant::now() + wait;
                while !stop.load(Ordering::Acquire) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        }
        Ok(())
    }

    /// Sends `XREAD` for the entries after `after` without waiting for the answer, which
    /// the next step receives: Redis prepares the next batch while this one is written.
    fn send_xread(&mut self, after: StreamId) -> redis::RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let cmd = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(self.opts.batch)
            .arg("BLOCK")
            .arg(self.opts.block.as_millis().clamp(1, u64::MAX as u128) as u64)
            .arg("STREAMS")
            .arg(&self.opts.stream[..])
            .arg(after.to_string())
            .get_packed_command();
        conn.send_packed_command(&cmd)?;
        self.read_ahead = true;
        Ok(())
    }

    /// Where a (re)connection at `position` starts reading: the rewind before it.
    fn rewound_from(&self, position: StreamId) -> StreamId {
        let rewind_ms = self.opts.rewind.as_millis().min(u64::MAX as u128) as u64;
        if rewind_ms > 0 && position != StreamId::ZERO {
            StreamId::new(position.ms.saturating_sub(rewind_ms), 0)
        } else {
            position
        }
    }

    fn unreachable(&mut self, lost: Lost, on: &mut dyn FnMut(&Event)) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << (self.failures - 1).min(16);
        let retry_in = self
            .opts
            .backoff_min
            .saturating_mul(factor)
            .min(self.opts.backoff_max);
        on(&Event::Unreachable {
            error: lost.to_string(),
            retry_in,
            attempt: self.failures,
        });
        retry_in
    }

    /// Connects and looks at the stream: a stream that is missing, or whose newest id is
    /// before the ledger's position, is read again from its beginning.
    fn connect(&mut self, on: &mut dyn FnMut(&Event)) -> Result<redis::Connection, Lost> {
        let (mut conn, reached) = self.opts.redis.connect().map_err(|e| match e {
            SyncError::Redis(e) => Lost::Redis(e),
            other => Lost::Protocol(other.to_string()),
        })?;
        conn.set_read_timeout(Some(self.opts.block + self.opts.redis.read_timeout))?;
        let position = self.position.last_id;
        let info = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.opts.stream[..])
            .query::<Value>(&mut conn);
        match info {
            Ok(info) => {
                let last = info_id(&info, b"last-generated-id").ok_or_else(|| {
                    Lost::Protocol(format!("XINFO STREAM without last-generated-id: {info:?}"))
                })?;
                if last < position {
                    on(&Event::StreamReset {
                        position,
                        last_generated: last,
                    });
                    self.position.last_id = StreamId::ZERO;
                } else if let Some(gone) = gone_after(&info, position) {
                    let horizon = self
                        .ledger
                        .max_token_lifetime()
                        .saturating_add(self.ledger.leeway().saturating_mul(2));
                    let newest_s = gone.ms.div_ceil(1000).min(i64::MAX as u64) as i64;
                    let lost = unix_now_floor().saturating_sub(newest_s) <= horizon;
                    on(&Event::TrimmedPast {
                        position,
                        max_deleted: gone,
                        lost,
                    });
                    if lost {
                        self.pending_degraded |= StreamPosition::TRIMMED;
                    }
                    // Entries up to it are gone: read on from there.
                    self.position.last_id = gone;
                }
            }
            Err(e) if !e.is_io_error() && e.to_string().to_lowercase().contains("no such key") => {
                if position != StreamId::ZERO {
                    on(&Event::StreamMissing { position });
                    self.position.last_id = StreamId::ZERO;
                }
            }
            Err(e) => return Err(Lost::Redis(e)),
        }
        if self.position.last_id == StreamId::ZERO {
            self.read_back = ReadBack::default(); // a new stream: ids start again
        }
        self.cursor = self.rewound_from(self.position.last_id);
        on(&Event::Connected {
            redis: format!("{} at {reached}", self.redis_shown),
            from: self.cursor,
        });
        Ok(conn)
    }

    /// Applies one `XREAD` answer. The outer error is the ledger's (fatal); the inner
    /// one an unreadable answer (drop the connection and try again).
    fn apply(
        &mut self,
        reply: &Value,
        on: &mut dyn FnMut(&Event),
        syncer: Option<&Syncer>,
    ) -> Result<Result<(), Lost>> {
        let now = unix_now_floor();
        let entries = match xread_entries(reply, &self.opts.stream) {
            Ok(e) => e,
            Err(why) => return Ok(Err(Lost::Protocol(why))),
        };
        let mut last = self.cursor;
        let mut parsed = Vec::with_capacity(entries.len());
        for (id, pairs) in &entries {
            if *id <= last {
                continue; // never apply out of place (XREAD only returns later ids)
            }
            last = *id;
            let entry = pairs
                .as_ref()
                .map_err(String::clone)
                .and_then(|p| parse_entry(p));
            parsed.push((*id, entry));
        }
        let refusals = match &self.opts.trusted {
            Some(keys) => verify_all(keys, &self.opts.stream, &parsed),
            None => vec![None; parsed.len()],
        };
        let mut rules: Vec<Rule<'_>> = Vec::with_capacity(parsed.len());
        let (mut skipped, mut refused) = (0, 0);
        for ((id, entry), refusal) in parsed.into_iter().zip(refusals) {
            let bad = match (entry, refusal) {
                (Ok(e), None) => {
                    rules.push(e.rule);
                    continue;
                }
                (Ok(_), Some(reason)) => Event::Refused { id, reason },
                (Err(reason), _) => Event::Skipped { id, reason },
            };
            if !self
                .read_back
                .first_reading_of_bad(id, self.position.last_id)
            {
                continue; // judged when first read
            }
            if matches!(bad, Event::Refused { .. }) {
                refused += 1;
            } else {
                skipped += 1;
            }
            on(&bad);
        }
        // Ask for the next batch now; write this one while Redis prepares it.
        let ahead = self.send_xread(last);
        let fresh = last != self.cursor;
        self.cursor = last;
        let last = last.max(self.position.last_id);
        self.read_back
            .received_through(self.cursor, self.rewound_from(last));
        // "Last heard" is the clock's word, even if the clock stepped back: a value from
        // the future would make a stale ledger look fresh.
        if !fresh && now == self.position.last_heard && self.pending_degraded == 0 {
            // Nothing new, and "last heard" already says this second.
            return Ok(ahead.map_err(Lost::Redis));
        }
        let mut degraded = self.position.degraded | self.pending_degraded;
        if skipped > 0 {
            degraded |= StreamPosition::SKIPPED;
        }
        if refused > 0 {
            degraded |= StreamPosition::REFUSED;
        }
        let newly = degraded & !self.position.degraded;
        let position = StreamPosition {
            stream: std::mem::take(&mut self.position.stream),
            last_id: last,
            last_heard: now,
            degraded,
        };
        let written = self
            .ledger
            .revoke_batch_at_position(&rules, &position)
            .and_then(|()| match syncer {
                Some(s) => {
                    s.mark_dirty();
                    Ok(())
                }
                None => self.ledger.sync(),
            });
        if let Err(e) = written {
            self.position.stream = position.stream;
            return Err(e.into());
        }
        self.position = position;
        self.pending_degraded = 0;
        if newly != 0 {
            on(&Event::Degraded { bits: newly });
        }
        if fresh {
            let lag_ms = if entries.len() >= self.opts.batch {
                now_ms().saturating_sub(last.ms)
            } else {
                0
            };
            on(&Event::Applied {
                rules: rules.len(),
                skipped,
                refused,
                lag_ms,
                last_id: last,
            });
        } else {
            on(&Event::Heartbeat {
                last_heard: self.position.last_heard,
            });
        }
        Ok(ahead.map_err(Lost::Redis))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why each entry is refused (`None`: its signature holds), verified on every core when
/// the batch is large (a host catching up verifies thousands at a time).
fn verify_all(
    keys: &TrustedKeys,
    stream: &[u8],
    parsed: &[(StreamId, Result<Entry<'_>, String>)],
) -> Vec<Option<String>> {
    let chunk_refusals = |c: &[(StreamId, Result<Entry<'_>, String>)]| -> Vec<Option<String>> {
        let signed: Vec<_> = c
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .map(|e| (e.rule, e.kid, e.sig))
            .collect();
        let mut verdicts = keys.verify_many(stream, &signed).into_iter();
        c.iter()
            .map(|(_, e)| match e {
                Ok(_) => verdicts.next().and_then(Result::err),
                Err(_) => None, // malformed: skipped, not refused
            })
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if parsed.len() < 256 || threads == 1 {
        return chunk_refusals(parsed);
    }
    let chunk = parsed.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = parsed
            .chunks(chunk)
            .map(|c| s.spawn(move || chunk_refusals(c)))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, fields: &[&[u8]]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn xread_answers_are_read_and_odd_ones_refused_without_panic() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"s"),
            Value::Array(vec![
                entry("1-0", &[b"scope", b"global", b"at", b"5"]),
                entry("1-1", &[b"scope"]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
            ]),
        ])]);
        let got = xread_entries(&reply, b"s").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, StreamId::new(1, 0));
        assert_eq!(
            got[0].1,
            Ok(vec![(&b"scope"[..], &b"global"[..]), (b"at", b"5")])
        );
        assert!(got[1].1.is_err());
        assert!(got[2].1.is_err());
        assert!(xread_entries(&Value::Nil, b"s").unwrap().is_empty());
        assert!(xread_entries(&reply, b"other").unwrap().is_empty());
        for bad in [
            Value::Int(3),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![bulk(b"s"), Value::Int(1)])]),
            Value::Array(vec![Value::Array(vec![
                bulk(b"s"),
                Value::Array(vec![entry("x-y", &[])]),
            ])]),
            Value::Array(vec![Value::Array(vec![
                bulk(b"s"),
                Value::Array(vec![Value::Array(vec![bulk(b"1-0")])]),
            ])]),
        ] {
            assert!(xread_entries(&bad, b"s").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xinfo_fields_are_found_in_flat_lists() {
        let info = Value::Array(vec![
            bulk(b"length"),
            Value::Int(2),
            bulk(b"last-generated-id"),
            bulk(b"5-1"),
            bulk(b"max-deleted-entry-id"),
            bulk(b"3-0"),
        ]);
        assert_eq!(
            info_id(&info, b"last-generated-id"),
            Some(StreamId::new(5, 1))
        );
        assert_eq!(
            info_id(&info, b"max-deleted-entry-id"),
            Some(StreamId::new(3, 0))
        );
        assert_eq!(info_id(&info, b"length"), None);
        assert_eq!(info_id(&Value::Nil, b"length"), None);
    }
}
