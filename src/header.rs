//! The file header: what a ledger says about itself (docs/FORMAT.md §2). The static half
//! is written once at creation and checked by CRC32; the dynamic half holds the atomics
//! the writer publishes commits through.

use crate::error::{Error, Result};

/// First eight bytes of every ledger file.
pub const MAGIC: [u8; 8] = *b"REVLEDGR";
/// Format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the file header (the first record frame follows, or the snapshot section).
pub const HEADER_LEN: usize = 256;
/// Offset of the snapshot section in a compacted file.
pub const SNAPSHOT_OFFSET: u64 = 4096;
/// Bytes of the static half covered by `header_crc` (which sits right after them).
pub const STATIC_CRC_LEN: usize = 124;

/// Offset of `committed_len: u64`, the end of the committed log (an atomic).
pub const OFF_COMMITTED_LEN: usize = 128;
/// Offset of `synced_len: u64`, the end of the log known durable (an atomic).
pub const OFF_SYNCED_LEN: usize = 136;
/// Offset of `retired: u64`, non-zero once a compaction replaced this file (an atomic).
pub const OFF_RETIRED: usize = 144;

/// Clock-skew leeway added to every expiry decision unless told otherwise, in seconds.
pub const DEFAULT_LEEWAY: i64 = 300;
/// `max_token_lifetime` of a ledger created with 0: one day.
pub const DEFAULT_MAX_TOKEN_LIFETIME: i64 = 86_400;

/// The static half of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Per-ledger random key of the index hash.
    pub hash_seed: [u8; 16],
    /// Longest lifetime of a token this ledger must cover, at creation, in seconds.
    pub max_token_lifetime: i64,
    /// Clock-skew leeway, in seconds.
    pub leeway: i64,
    /// Unix time of creation.
    pub created_at: i64,
    /// 0 for a new ledger; one more at each compaction.
    pub generation: u64,
    /// Offset of the snapshot section (0 when the file has none).
    pub snapshot_offset: u64,
    /// Length of the snapshot section (0 when the file has none).
    pub snapshot_len: u64,
    /// Offset of the first log frame: [`HEADER_LEN`], or the end of the snapshot.
    pub log_start: u64,
}

impl Header {
    /// The 256 header bytes of a fresh file (dynamic half: nothing committed yet).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[24..40].copy_from_slice(&self.hash_seed);
        b[40..48].copy_from_slice(&self.max_token_lifetime.to_le_bytes());
        b[48..56].copy_from_slice(&self.leeway.to_le_bytes());
        b[56..64].copy_from_slice(&self.created_at.to_le_bytes());
        b[64..72].copy_from_slice(&self.generation.to_le_bytes());
        b[72..80].copy_from_slice(&self.snapshot_offset.to_le_bytes());
        b[80..88].copy_from_slice(&self.snapshot_len.to_le_bytes());
        b[88..96].copy_from_slice(&self.log_start.to_le_bytes());
        let crc = crc32fast::hash(&b[..STATIC_CRC_LEN]);
        b[STATIC_CRC_LEN..STATIC_CRC_LEN + 4].copy_from_slice(&crc.to_le_bytes());
        let start = self.log_start;
        b[OFF_COMMITTED_LEN..OFF_COMMITTED_LEN + 8].copy_from_slice(&start.to_le_bytes());
        b[OFF_SYNCED_LEN..OFF_SYNCED_LEN + 8].copy_from_slice(&start.to_le_bytes());
        b
    }

    /// Reads and checks the static half. `bytes` is whatever the file starts with.
    pub fn decode(bytes: &[u8]) -> Result<Header> {
        if bytes.len() < 8 || bytes[0..8] != MAGIC {
            return Err(Error::Incompatible(
                "not a revledger ledger (magic bytes missing)".into(),
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(Error::Incompatible(format!(
                "file is {} bytes long, shorter than a ledger header ({HEADER_LEN})",
                bytes.len()
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap_or([0; 4]));
        let i64_at = |o: usize| i64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]));
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(Error::Incompatible(format!(
                "ledger format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let crc = crc32fast::hash(&bytes[..STATIC_CRC_LEN]);
        if crc != u32_at(STATIC_CRC_LEN) {
            return Err(Error::corrupt(0, "header checksum mismatch"));
        }
        if u32_at(12) as usize != HEADER_LEN || u32_at(16) != 0 {
            return Err(Error::Incompatible(
                "header length or flags unknown to this build".into(),
            ));
        }
        let h = Header {
            hash_seed: bytes[24..40].try_into().unwrap_or([0; 16]),
            max_token_lifetime: i64_at(40),
            leeway: i64_at(48),
            created_at: i64_at(56),
            generation: i64_at(64) as u64,
            snapshot_offset: i64_at(72) as u64,
            snapshot_len: i64_at(80) as u64,
            log_start: i64_at(88) as u64,
        };
        if h.max_token_lifetime < 0 || h.leeway < 0 {
            return Err(Error::corrupt(40, "negative lifetime or leeway"));
        }
        let snapshot_ok = if h.snapshot_len == 0 {
            h.snapshot_offset == 0 && h.log_start == HEADER_LEN as u64
        } else {
            h.snapshot_offset >= HEADER_LEN as u64
                && h.snapshot_offset
                    .checked_add(h.snapshot_len)
                    .is_some_and(|end| end <= h.log_start)
        };
        if !snapshot_ok || !h.log_start.is_multiple_of(8) {
            return Err(Error::corrupt(72, "snapshot or log bounds disagree"));
        }
        Ok(h)
    }
}

/// A fresh random hash seed from the operating system.
pub fn random_seed() -> Result<[u8; 16]> {
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| {
        Error::io(
            "reading random bytes for the hash seed",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(s)
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
            snapshot_offset: 4096,
            snapshot_len: 1000,
            log_start: 8192,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_refuses_bad_bytes() {
        let b = sample().encode();
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
