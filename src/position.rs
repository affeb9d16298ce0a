//! Where a ledger stands in the stream that feeds it (DESIGN.md §6): the stream's name,
//! the id of the last entry applied, and when the ledger last heard from the stream.
//! Written by the one sync process as a record of kind 3 (docs/FORMAT.md §3.4), in the
//! same write as the rules it covers; read by every handle to tell how fresh it is.

use crate::error::{Error, Result};
use crate::rule::MAX_KEY_LEN;
use std::fmt;
use std::str::FromStr;

/// A Redis stream entry id, `<milliseconds>-<sequence>`. Ids order as the stream does:
/// by milliseconds, then by sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    /// Unix time in milliseconds at which Redis added the entry (its clock).
    pub ms: u64,
    /// Sequence number among the entries of the same millisecond.
    pub seq: u64,
}

impl StreamId {
    /// `0-0`: before every entry. A ledger that has applied nothing reads from here.
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };

    /// The id `ms-seq`.
    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// Parses `<ms>-<seq>` (or a bare `<ms>`, meaning sequence 0) as Redis prints ids.
    /// `None` for anything else; never panics.
    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (text, "0"),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = Error;

    fn from_str(s: &str) -> Result<StreamId> {
        StreamId::parse(s.as_bytes()).ok_or_else(|| {
            Error::invalid(format!(
                "{s:?} is not a stream entry id (`<ms>-<seq>`, e.g. 1700000000000-0)"
            ))
        })
    }
}

/// How far into a stream a ledger has applied, and when it last heard from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPosition {
    /// Name of the stream (a Redis key: any bytes, 1 to [`MAX_KEY_LEN`] of them).
    pub stream: Vec<u8>,
    /// Id of the last entry applied; every entry up to it is in the ledger.
    pub last_id: StreamId,
    /// Unix seconds at which the sync process last got an answer from the stream (new
    /// entries or none). A gateway compares it with its clock to judge freshness.
    pub last_heard: i64,
    /// Why the ledger may lack rules its stream carried: 0 when it holds every one; else
    /// bits [`StreamPosition::SKIPPED`], [`StreamPosition::REFUSED`],
    /// [`StreamPosition::TRIMMED`]. Kept by every later position until an operator
    /// resolves it (docs/SYNC.md §5); a gateway treats a degraded ledger as stale.
    pub degraded: u8,
}

impl StreamPosition {
    /// [`StreamPosition::degraded`] bit: entries that were not valid rules were skipped.
    pub const SKIPPED: u8 = 1;
    /// [`StreamPosition::degraded`] bit: entries were refused for their signature.
    pub const REFUSED: u8 = 2;
    /// [`StreamPosition::degraded`] bit: the stream was trimmed past the position, so
    /// entries never read are gone.
    pub const TRIMMED: u8 = 4;
    /// Every bit [`StreamPosition::degraded`] may hold.
    pub const DEGRADED_BITS: u8 = 7;

    /// A position, not degraded.
    pub fn new(stream: impl Into<Vec<u8>>, last_id: StreamId, last_heard: i64) -> StreamPosition {
        StreamPosition {
            stream: stream.into(),
            last_id,
            last_heard,
            degraded: 0,
        }
    }

    /// Refuses a position the ledger cannot hold: an empty stream name or one longer
    /// than [`MAX_KEY_LEN`] bytes, or unknown degraded bits.
    pub fn validate(&self) -> Result<()> {
        if self.degraded & !Self::DEGRADED_BITS != 0 {
            return Err(Error::invalid(format!(
                "degraded bits {:#x} beyond the known ones {:#x}",
                self.degraded,
                Self::DEGRADED_BITS
            )));
        }
        if self.stream.is_empty() {
            return Err(Error::invalid("a stream position needs a stream name"));
        }
        if self.stream.len() > MAX_KEY_LEN {
            return Err(Error::invalid(format!(
                "stream name is {} bytes long; the limit is {MAX_KEY_LEN}",
                self.stream.len()
            )));
        }
        Ok(())
    }

    /// Seconds since the ledger last heard from its stream, as of `now` (Unix seconds);
    /// never negative.
    pub fn age(&self, now: i64) -> i64 {
        now.saturating_sub(self.last_heard).max(0)
    }
}

/// The position a ledger handle has read: the last position record of its log, if any.
/// `last_heard` is also kept apart in an atomic, so that a gateway asking "how fresh?"
/// on every request takes no lock.
/// The newest stream position a handle has read, shared by its threads, with `last_heard`
/// readable without a lock (gateways poll it on every request). Positions are kept by
/// the log offset of their record: a later record replaces an earlier one.
#[derive(Debug)]
pub(crate) struct PositionCell {
    position: parking_lot::Mutex<Option<StreamPosition>>,
    /// Payload offset of the record `position` came from (0: none yet).
    offset: std::sync::atomic::AtomicU64,
    last_heard: std::sync::atomic::AtomicI64,
    degraded: std::sync::atomic::AtomicU8,
}

impl Default for PositionCell {
    fn default() -> PositionCell {
        PositionCell {
            position: parking_lot::Mutex::new(None),
            offset: std::sync::atomic::AtomicU64::new(0),
            last_heard: std::sync::atomic::AtomicI64::new(i64::MIN),
            degraded: std::sync::atomic::AtomicU8::new(0),
        }
    }
}

impl PositionCell {
    /// Records the position read from the record whose payload is at `offset`, unless a
    /// later record's position is already held.
    pub(crate) fn set(
        &self,
        offset: u64,
        stream: &[u8],
        last_id: StreamId,
        last_heard: i64,
        degraded: u8,
    ) {
        use std::sync::atomic::Ordering;
        let mut p = self.position.lock();
        if offset < self.offset.load(Ordering::Acquire) {
            return;
        }
        match &mut *p {
            Some(old) => {
                if old.stream != stream {
                    old.stream.clear();
                    old.stream.extend_from_slice(stream);
                }
                old.last_id = last_id;
                old.last_heard = last_heard;
                old.degraded = degraded;
            }
            None => {
                let mut new = StreamPosition::new(stream, last_id, last_heard);
                new.degraded = degraded;
                *p = Some(new);
            }
        }
        self.degraded.store(degraded, Ordering::Release);
        self.last_heard.store(last_heard, Ordering::Release);
        self.offset.store(offset, Ordering::Release);
    }

    /// Payload offset of the record the held position came from (0: none).
    pub(crate) fn offset(&self) -> u64 {
        self.offset.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The position held.
    pub(crate) fn get(&self) -> Option<StreamPosition> {
        self.position.lock().clone()
    }

    /// `degraded` of the position held, without a lock.
    pub(crate) fn degraded(&self) -> u8 {
        self.degraded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `last_heard` of the position held, without a lock.
    pub(crate) fn last_heard(&self) -> Option<i64> {
        match self.last_heard.load(std::sync::atomic::Ordering::Acquire) {
            i64::MIN => None,
            t => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_print_and_order_like_redis() {
        let id = StreamId::parse(b"1700000000123-7").unwrap();
        assert_eq!(id, StreamId::new(1_700_000_000_123, 7));
        assert_eq!(id.to_string(), "1700000000123-7");
        assert_eq!(StreamId::parse(b"42"), Some(StreamId::new(42, 0)));
        assert_eq!(
            StreamId::parse(b"18446744073709551615-18446744073709551615"),
            Some(StreamId::new(u64::MAX, u64::MAX))
        );
        for bad in [
            &b""[..],
            b"-",
            b"1-",
            b"-1",
            b"1-2-3",
            b"+1-2",
            b"1 -2",
            b"18446744073709551616-0",
            b"\xff",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
        assert!(StreamId::new(5, 9) < StreamId::new(6, 0));
        assert!(StreamId::new(6, 0) < StreamId::new(6, 1));
        assert!("x".parse::<StreamId>().is_err());
    }

    #[test]
    fn positions_need_a_name_within_the_limit() {
        assert!(StreamPosition::new("", StreamId::ZERO, 0)
            .validate()
            .is_err());
        assert!(
            StreamPosition::new(vec![b's'; MAX_KEY_LEN + 1], StreamId::ZERO, 0)
                .validate()
                .is_err()
        );
        let mut p = StreamPosition::new("revocations", StreamId::new(1, 2), 100);
        assert!(p.validate().is_ok());
        p.degraded = StreamPosition::DEGRADED_BITS;
        assert!(p.validate().is_ok());
        p.degraded = 8;
        assert!(p.validate().is_err());
        assert_eq!(p.age(160), 60);
        assert_eq!(p.age(50), 0);
    }
}
