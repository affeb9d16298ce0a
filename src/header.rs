//! The file header: what a ledger says about itself (docs/FORMAT.md §2). The static half
//! is written once when the file is created and checked by CRC32; the dynamic half holds
//! the atomics through which the writer publishes commits, compactions and index changes.

use crate::error::{Error, Result};

/// First eight bytes of every ledger file.
pub const MAGIC: [u8; 8] = *b"REVLEDGR";
/// Format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// The previous format version: a writer of this build upgrades such a file when it opens
/// it (docs/FORMAT.md §8); a reader refuses it (`Incompatible`) until then.
pub const FORMAT_VERSION_1: u32 = 1;
/// Bytes of the file header (the log's first frame follows).
pub const HEADER_LEN: usize = 256;
/// Bytes of the static half covered by `header_crc` (which sits right after them).
pub const STATIC_CRC_LEN: usize = 124;

/// Offset of `committed_len: u64`, the end of the committed log (an atomic).
pub const OFF_COMMITTED_LEN: usize = 128;
/// Offset of `synced_len: u64`, the end of the log known durable (an atomic).
pub const OFF_SYNCED_LEN: usize = 136;
/// Offset of `retired: u64`, non-zero once a compaction replaced this file (an atomic).
/// In its own cache line with `index_epoch`: words the writer rarely stores to, which
/// every check reads.
pub const OFF_RETIRED: usize = 192;
/// Offset of `index_epoch: u64`, the epoch of the shared index that is current (an
/// atomic; 0: none published yet).
pub const OFF_INDEX_EPOCH: usize = 200;
/// Offset of `recoveries: u64`, one more each time a writer's recovery changed the end
/// of the log (cut a torn tail): readers that judged the old end judge again (an
/// atomic).
pub const OFF_RECOVERIES: usize = 208;
/// Offset of `recovered_end: u64`, the end the last recovery cut the log to (0: none
/// recorded), stored before `recoveries` is counted: a reader that had read past it
/// answered from records that are gone, and fails closed (an atomic).
pub const OFF_RECOVERED_END: usize = 216;

/// Clock-skew leeway added to every expiry decision unless told otherwise, in seconds.
pub const DEFAULT_LEEWAY: i64 = 300;
/// `max_token_lifetime` of a ledger created with 0: one day.
pub const DEFAULT_MAX_TOKEN_LIFETIME: i64 = 86_400;

/// The static half of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-ledger random key of the index hash (kept by compaction).
    pub hash_seed: [u8; 16],
    /// Longest lifetime of a token this ledger must cover, at creation, in seconds.
    pub max_token_lifetime: i64,
    /// Clock-skew leeway, in seconds.
    pub leeway: i64,
    /// Unix time at which this file was written.
    pub created_at: i64,
    /// 0 for a new ledger; one more at each compaction.
    pub generation: u64,
    /// Offset of the first log frame ([`HEADER_LEN`]).
    pub log_start: u64,
    /// The keyed hash of a fixed test vector under `hash_seed` (see `Hasher::check_value`).
    pub hash_check: u64,
    /// Random identity of this very file (a compaction writes a new one); the shared
    /// index names it, so an index is never used with another file.
    pub file_id: u64,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// The format version a file claims: `None` when it is not a ledger (no magic, or too
/// short to say).
pub fn version_of(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= 12 && bytes[0..8] == MAGIC).then(|| u32_at(bytes, 8))
}

impl Header {
    /// The 256 header bytes of a fresh file whose committed log ends at `committed_len`.
    pub fn encode(&self, committed_len: u64) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[24..40].copy_from_slice(&self.hash_seed);
        b[40..48].copy_from_slice(&self.max_token_lifetime.to_le_bytes());
        b[48..56].copy_from_slice(&self.leeway.to_le_bytes());
        b[56..64].copy_from_slice(&self.created_at.to_le_bytes());
        b[64..72].copy_from_slice(&self.generation.to_le_bytes());
        b[72..80].copy_from_slice(&self.log_start.to_le_bytes());
        b[80..88].copy_from_slice(&self.hash_check.to_le_bytes());
        b[88..96].copy_from_slice(&self.file_id.to_le_bytes());
        let crc = crc32fast::hash(&b[..STATIC_CRC_LEN]);
        b[STATIC_CRC_LEN..STATIC_CRC_LEN + 4].copy_from_slice(&crc.to_le_bytes());
        b[OFF_COMMITTED_LEN..OFF_COMMITTED_LEN + 8].copy_from_slice(&committed_len.to_le_bytes());
        b[OFF_SYNCED_LEN..OFF_SYNCED_LEN + 8].copy_from_slice(&committed_len.to_le_bytes());
        b
    }

    /// Reads and checks the static half. `bytes` is whatever the file starts with.
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        let version = version_of(bytes).ok_or_else(|| {
            Error::Incompatible("not a revledger ledger (magic bytes missing)".into())
        })?;
        if version == FORMAT_VERSION_1 {
            return Err(Error::Incompatible(
                "ledger written in format version 1 by an older revledger; open it once with \
                 a writer of this version (e.g. `revledger compact <path>`), which upgrades \
                 it to format version 2 in place, then reopen"
                    .into(),
            ));
        }
        if version != FORMAT_VERSION {
            return Err(Error::Incompatible(format!(
                "ledger format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Incompatible(format!(
                "file is {} bytes long, shorter than a ledger header ({HEADER_LEN})",
                bytes.len()
            )));
        }
        if crc32fast::hash(&bytes[..STATIC_CRC_LEN]) != u32_at(bytes, STATIC_CRC_LEN) {
            return Err(Error::corrupt(0, "header checksum mismatch"));
        }
        if u32_at(bytes, 12) as usize != HEADER_LEN || u32_at(bytes, 16) != 0 {
            return Err(Error::Incompatible(
                "header length or flags unknown to this build".into(),
            ));
        }
        let h = Header {
            hash_seed: bytes[24..40].try_into().unwrap_or([0; 16]),
            max_token_lifetime: u64_at(bytes, 40) as i64,
            leeway: u64_at(bytes, 48) as i64,
            created_at: u64_at(bytes, 56) as i64,
            generation: u64_at(bytes, 64),
            log_start: u64_at(bytes, 72),
            hash_check: u64_at(bytes, 80),
            file_id: u64_at(bytes, 88),
        };
        if h.max_token_lifetime < 0 || h.leeway < 0 {
            return Err(Error::corrupt(40, "negative lifetime or leeway"));
        }
        if h.log_start != HEADER_LEN as u64 {
            return Err(Error::corrupt(
                72,
                "log start disagrees with the header length",
            ));
        }
        Ok(h)
    }
}

/// Sixteen fresh random bytes from the operating system.
pub fn random_bytes() -> Result<[u8; 16]> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| {
        Error::io(
            "reading random bytes from the operating system",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(s)
}

/// A fresh random file identity.
pub(crate) fn random_file_id() -> Result<u64> {
    let b = random_bytes()?;
    Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])) | 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            hash_seed: [7; 16],
            max_token_lifetime: 3600,
            leeway: 300,
            created_at: 1_700_000_000,
            generation: 2,
            log_start: HEADER_LEN as u64,
            hash_check: 0x1234_5678_9abc_def0,
            file_id: 99,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        let b = h.encode(4096);
        assert_eq!(Header::decode(&b).unwrap(), h);
        assert_eq!(u64_at(&b, OFF_COMMITTED_LEN), 4096);
    }

    #[test]
    fn header_refuses_bad_bytes() {
        let b = sample().encode(256);
        assert!(matches!(
            Header::decode(&b[..100]),
            Err(Error::Incompatible(_))
        ));
        assert!(matches!(
            Header::decode(b"hello"),
            Err(Error::Incompatible(_))
        ));
        let mut v = b;
        v[8] = 9;
        assert!(matches!(Header::decode(&v), Err(Error::Incompatible(_))));
        let mut v1 = b;
        v1[8] = 1;
        match Header::decode(&v1) {
            Err(Error::Incompatible(m)) => assert!(m.contains("upgrade"), "{m}"),
            other => panic!("{other:?}"),
        }
        for i in 24..STATIC_CRC_LEN {
            let mut v = b;
            v[i] ^= 0x10;
            assert!(
                matches!(Header::decode(&v), Err(Error::Corrupt { offset: 0, .. })),
                "flip at {i}"
            );
        }
    }
}
