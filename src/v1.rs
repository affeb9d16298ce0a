//! Format version 1, read once: a writer of this build that opens a version 1 ledger
//! upgrades it (docs/FORMAT.md §8), and this module is how it reads the old file — the
//! version 1 header and the snapshot section a version 1 compaction wrote (its log
//! frames are the same as version 2's).
//!
//! The snapshot layout (FORMAT.md of version 1, §4): a 512-byte header, one table per
//! keyed scope, a key heap, and one CRC-32 per 4 KiB block. Tables are arrays of 64-byte
//! buckets of four 16-byte slots `(tag:24 | heap offset:40, cutoff)`. Nothing is trusted
//! before it is checked: the header by its CRC, every block by its CRC before it is
//! read, every offset and length against its bounds.

use crate::error::{Error, Result};
#[cfg(test)]
use crate::hash::Hasher;
use crate::map::FileMap;
use crate::record::Record;
use crate::rule::{Rule, Scope};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// First bytes of a snapshot section.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RVSNAP01";
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 512;
/// Granularity of the lazily checked block CRCs.
pub const BLOCK_LEN: usize = 4096;
/// Slots per bucket (one 64-byte cache line).
pub const SLOTS_PER_BUCKET: usize = 4;
const BUCKET_LEN: usize = 64;
const SLOT_LEN: usize = 16;
/// Filter bits per key, at least (the word count is rounded up to a power of two).
#[cfg(test)]
const FILTER_BITS_PER_KEY: usize = 8;
/// Highest fill of a table: 3/4 of its slots (21.3 bytes of table per key).
#[cfg(test)]
const FILL_NUM: usize = 3;
#[cfg(test)]
const FILL_DEN: usize = 4;
#[cfg(test)]
const TAG_SHIFT: u32 = 40;
#[cfg(test)]
const TAG_MASK: u64 = !((1 << TAG_SHIFT) - 1);
/// Bit 39 of a bucket's first slot: some key whose home is this bucket lives further on.
/// When it is clear, a key not found in its full home bucket is not in the table.
const OVERFLOW: u64 = 1 << 39;
const OFFSET_MASK: u64 = OVERFLOW - 1;
const KEYED: usize = 6;
/// Header offsets.
const H_BLOCKS: usize = 8;
const H_HEAP_OFF: usize = 16;
const H_HEAP_LEN: usize = 24;
const H_GLOBAL: usize = 32;
const H_CRCS_OFF: usize = 40;
const H_CRCS_CRC: usize = 48;
/// 6 × 40 bytes: table offset u64, n_buckets u32, max_probe u32, entries u64,
/// filter offset u64, filter words u32, reserved u32.
const H_TABLES: usize = 64;
const DESC_LEN: usize = 40;
const H_NEWEST: usize = 304; // 7 × i64
const H_CRC: usize = SNAPSHOT_HEADER_LEN - 4;

#[inline]
#[cfg(test)]
fn tag_of(hash: u64) -> u64 {
    ((hash >> 24) & 0xFF_FFFF) << TAG_SHIFT
}

#[inline]
#[cfg(test)]
fn home_bucket(hash: u64, n_buckets: u32) -> usize {
    ((u128::from(hash) * u128::from(n_buckets)) >> 64) as usize
}

/// Distance between the buckets a key may overflow into (double hashing: the bucket
/// count is prime, so the sequence visits every bucket).
#[inline]
#[cfg(test)]
fn probe_step(hash: u64, n_buckets: u32) -> usize {
    if n_buckets <= 1 {
        1
    } else {
        1 + (hash & 0xFF_FFFF) as usize % (n_buckets as usize - 1)
    }
}

/// The smallest prime at or above `n` (trial division: tables have at most a few
/// million buckets).
#[cfg(test)]
fn prime_at_least(n: usize) -> usize {
    let is_prime = |p: usize| {
        p >= 2
            && (2..)
                .take_while(|d| d * d <= p)
                .all(|d| !p.is_multiple_of(d))
    };
    (n.max(2)..).find(|&p| is_prime(p)).unwrap_or(n)
}

#[inline(always)]
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The filter word and the two bits of `hash` in a filter of `words` 64-bit words (a
/// power of two). Both bits sit in one word: one memory access per test.
#[inline]
#[cfg(test)]
fn filter_probe(hash: u64, words: u32) -> (usize, u64) {
    let f = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let word = (f >> 40) as usize & (words as usize - 1);
    (word, (1u64 << (f & 63)) | (1u64 << ((f >> 6) & 63)))
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// One live rule to put in a snapshot.
#[cfg(test)]
pub(crate) struct LiveRule<'a> {
    pub scope: Scope,
    pub tenant: &'a [u8],
    pub key: &'a [u8],
    pub at: i64,
}

/// Builds the bytes of a snapshot holding `rules` (one per key; global rules fold into
/// one cutoff).
/// The caller keeps the result under [`MAX_SNAPSHOT_LEN`] bytes.
#[cfg(test)]
pub(crate) fn build(hasher: &Hasher, rules: &[LiveRule]) -> Vec<u8> {
    let mut per_scope: [Vec<usize>; KEYED] = Default::default();
    let mut global = i64::MIN;
    let mut newest = [i64::MIN; 7];
    for (i, r) in rules.iter().enumerate() {
        newest[r.scope as usize] = newest[r.scope as usize].max(r.at);
        match r.scope {
            Scope::Global => global = global.max(r.at),
            s => per_scope[s as usize - 1].push(i),
        }
    }
    // Tables first (cache-line aligned), then the filters, the heap, the block CRCs.
    let mut table_off = [0usize; KEYED];
    let mut n_buckets = [0u32; KEYED];
    let mut filter_off = [0usize; KEYED];
    let mut filter_words = [0u32; KEYED];
    let mut at = SNAPSHOT_HEADER_LEN;
    for s in 0..KEYED {
        let n = per_scope[s].len();
        let buckets = if n == 0 {
            0
        } else {
            prime_at_least((n * FILL_DEN).div_ceil(FILL_NUM * SLOTS_PER_BUCKET))
        };
        n_buckets[s] = buckets as u32;
        table_off[s] = at;
        at += buckets * BUCKET_LEN;
    }
    for s in 0..KEYED {
        let n = per_scope[s].len();
        let words = if n == 0 {
            0
        } else {
            (n * FILTER_BITS_PER_KEY).div_ceil(64).next_power_of_two()
        };
        filter_words[s] = words as u32;
        filter_off[s] = at;
        at = (at + words * 8).next_multiple_of(BUCKET_LEN);
    }
    let heap_off = at;
    let mut out = vec![0u8; heap_off];
    let mut max_probe = [0u32; KEYED];
    for s in 0..KEYED {
        let scope = Scope::ALL[s + 1];
        for &i in &per_scope[s] {
            let r = &rules[i];
            let entry = out.len() as u64;
            out.extend_from_slice(&(r.tenant.len() as u16).to_le_bytes());
            out.extend_from_slice(&(r.key.len() as u16).to_le_bytes());
            out.extend_from_slice(r.tenant);
            out.extend_from_slice(r.key);
            let hash = hasher.key(scope, hasher.tenant(r.tenant), r.key);
            let (word, bits) = filter_probe(hash, filter_words[s]);
            let w = filter_off[s] + word * 8;
            let v = le_u64(&out, w) | bits;
            out[w..w + 8].copy_from_slice(&v.to_le_bytes());
            let nb = n_buckets[s] as usize;
            let mut b = home_bucket(hash, n_buckets[s]);
            let step = probe_step(hash, n_buckets[s]);
            let mut probes = 1u32;
            'place: loop {
                for slot in 0..SLOTS_PER_BUCKET {
                    let o = table_off[s] + b * BUCKET_LEN + slot * SLOT_LEN;
                    if le_u64(&out, o) == 0 {
                        out[o..o + 8].copy_from_slice(&(tag_of(hash) | entry).to_le_bytes());
                        out[o + 8..o + 16].copy_from_slice(&r.at.to_le_bytes());
                        break 'place;
                    }
                }
                if probes == 1 {
                    let first = table_off[s] + b * BUCKET_LEN;
                    let w = le_u64(&out, first) | OVERFLOW;
                    out[first..first + 8].copy_from_slice(&w.to_le_bytes());
                }
                b = (b + step) % nb;
                probes += 1;
            }
            max_probe[s] = max_probe[s].max(probes);
        }
    }
    let heap_len = out.len() - heap_off;
    out.resize(out.len().next_multiple_of(4), 0);
    let crcs_off = out.len();
    let n_blocks = crcs_off.div_ceil(BLOCK_LEN);
    // Header fields before the block CRCs (block 0 covers the header too).
    out[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    out[H_BLOCKS..H_BLOCKS + 4].copy_from_slice(&(n_blocks as u32).to_le_bytes());
    out[H_HEAP_OFF..H_HEAP_OFF + 8].copy_from_slice(&(heap_off as u64).to_le_bytes());
    out[H_HEAP_LEN..H_HEAP_LEN + 8].copy_from_slice(&(heap_len as u64).to_le_bytes());
    out[H_GLOBAL..H_GLOBAL + 8].copy_from_slice(&global.to_le_bytes());
    out[H_CRCS_OFF..H_CRCS_OFF + 8].copy_from_slice(&(crcs_off as u64).to_le_bytes());
    for s in 0..KEYED {
        let d = H_TABLES + s * DESC_LEN;
        out[d..d + 8].copy_from_slice(&(table_off[s] as u64).to_le_bytes());
        out[d + 8..d + 12].copy_from_slice(&n_buckets[s].to_le_bytes());
        out[d + 12..d + 16].copy_from_slice(&max_probe[s].to_le_bytes());
        out[d + 16..d + 24].copy_from_slice(&(per_scope[s].len() as u64).to_le_bytes());
        out[d + 24..d + 32].copy_from_slice(&(filter_off[s] as u64).to_le_bytes());
        out[d + 32..d + 36].copy_from_slice(&filter_words[s].to_le_bytes());
    }
    for (s, n) in newest.iter().enumerate() {
        let d = H_NEWEST + s * 8;
        out[d..d + 8].copy_from_slice(&n.to_le_bytes());
    }
    // The header's own CRC is computed with the CRC-of-CRCs field filled, below; block 0
    // is hashed last since it contains the header.
    let mut crcs = vec![0u32; n_blocks];
    for (i, c) in crcs.iter_mut().enumerate().skip(1) {
        *c = crc32fast::hash(&out[i * BLOCK_LEN..((i + 1) * BLOCK_LEN).min(crcs_off)]);
    }
    let crcs_crc = {
        let mut h = crc32fast::Hasher::new();
        for c in &crcs[1..] {
            h.update(&c.to_le_bytes());
        }
        h.finalize()
    };
    out[H_CRCS_CRC..H_CRCS_CRC + 4].copy_from_slice(&crcs_crc.to_le_bytes());
    let hcrc = crc32fast::hash(&out[..H_CRC]);
    out[H_CRC..H_CRC + 4].copy_from_slice(&hcrc.to_le_bytes());
    crcs[0] = crc32fast::hash(&out[..BLOCK_LEN.min(crcs_off)]);
    for c in crcs {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Table {
    offset: usize,
    n_buckets: u32,
    max_probe: u32,
    entries: u64,
    filter_offset: usize,
    filter_words: u32,
}

/// A snapshot section, checked at open, read in place.
pub(crate) struct Snapshot {
    /// Offset of the section in the file.
    base: usize,
    /// Length of the section.
    len: usize,
    tables: [Table; KEYED],
    heap: std::ops::Range<usize>,
    crcs_off: usize,
    global: Option<i64>,
    #[cfg_attr(not(test), allow(dead_code))]
    newest: [i64; 7],
    /// One bit per block: set once this process has checked the block's CRC.
    checked: Box<[AtomicU64]>,
    /// Blocks whose bit is set, and the total.
    checked_count: AtomicUsize,
    n_blocks: usize,
    /// Every block has been checked: lookups skip the bitmap.
    all_checked: AtomicBool,
}

impl Snapshot {
    /// Checks the header of the snapshot at `file[base..base + len]` and the CRC of its
    /// block CRCs. Constant time in the number of keys (one bit per 4 KiB to allocate).
    pub(crate) fn open(file: &[u8], base: usize, len: usize) -> Result<Snapshot> {
        let corrupt =
            |at: usize, why: &str| Error::corrupt((base + at) as u64, format!("snapshot: {why}"));
        let s = file
            .get(
                base..base
                    .checked_add(len)
                    .ok_or_else(|| corrupt(0, "length overflows"))?,
            )
            .ok_or_else(|| corrupt(0, "extends past the end of the file"))?;
        if s.len() < SNAPSHOT_HEADER_LEN || s[0..8] != SNAPSHOT_MAGIC {
            return Err(corrupt(0, "magic bytes missing"));
        }
        if crc32fast::hash(&s[..H_CRC]) != le_u32(s, H_CRC) {
            return Err(corrupt(0, "header checksum mismatch"));
        }
        let n_blocks = le_u32(s, H_BLOCKS) as usize;
        let heap_off = le_u64(s, H_HEAP_OFF) as usize;
        let heap_len = le_u64(s, H_HEAP_LEN) as usize;
        let crcs_off = le_u64(s, H_CRCS_OFF) as usize;
        let heap_end = heap_off
            .checked_add(heap_len)
            .ok_or_else(|| corrupt(0, "bad heap"))?;
        if !crcs_off.is_multiple_of(4)
            || heap_off < SNAPSHOT_HEADER_LEN
            || heap_end > crcs_off
            || n_blocks != crcs_off.div_ceil(BLOCK_LEN)
            || crcs_off.checked_add(n_blocks * 4) != Some(s.len())
        {
            return Err(corrupt(0, "section bounds disagree"));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&s[crcs_off + 4..]);
        if h.finalize() != le_u32(s, H_CRCS_CRC) {
            return Err(corrupt(crcs_off, "block checksums damaged"));
        }
        let mut tables = [Table::default(); KEYED];
        for (i, t) in tables.iter_mut().enumerate() {
            let d = H_TABLES + i * DESC_LEN;
            *t = Table {
                offset: le_u64(s, d) as usize,
                n_buckets: le_u32(s, d + 8),
                max_probe: le_u32(s, d + 12),
                entries: le_u64(s, d + 16),
                filter_offset: le_u64(s, d + 24) as usize,
                filter_words: le_u32(s, d + 32),
            };
            let end = (t.n_buckets as usize)
                .checked_mul(BUCKET_LEN)
                .and_then(|l| l.checked_add(t.offset));
            let filter_end = (t.filter_words as usize)
                .checked_mul(8)
                .and_then(|l| l.checked_add(t.filter_offset));
            let filter_ok = if t.entries == 0 {
                t.filter_words == 0
            } else {
                t.filter_words.is_power_of_two()
                    && t.filter_offset >= SNAPSHOT_HEADER_LEN
                    && t.filter_offset % 8 == 0
                    && filter_end.is_some_and(|e| e <= heap_off)
            };
            if t.offset < SNAPSHOT_HEADER_LEN
                || !filter_ok
                || end.is_none_or(|e| e > heap_off)
                || t.max_probe > t.n_buckets
                || t.entries > u64::from(t.n_buckets) * SLOTS_PER_BUCKET as u64
            {
                return Err(corrupt(d, "table bounds disagree"));
            }
        }
        let global = le_u64(s, H_GLOBAL) as i64;
        let mut newest = [i64::MIN; 7];
        for (i, n) in newest.iter_mut().enumerate() {
            *n = le_u64(s, H_NEWEST + i * 8) as i64;
        }
        let snap = Snapshot {
            base,
            len,
            tables,
            heap: heap_off..heap_end,
            crcs_off,
            global: (global != i64::MIN).then_some(global),
            newest,
            checked: (0..n_blocks.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            checked_count: AtomicUsize::new(0),
            n_blocks,
            all_checked: AtomicBool::new(false),
        };
        // Block 0 holds the header just read: check it now.
        snap.ensure(s, 0, SNAPSHOT_HEADER_LEN.min(crcs_off))?;
        Ok(snap)
    }

    /// The snapshot's bytes within the file's bytes (checked to fit at open).
    #[inline]
    pub(crate) fn section<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        &file[self.base..self.base + self.len]
    }

    /// Checks the CRC of every block overlapping `s[from..to]` not checked before.
    #[inline]
    fn ensure(&self, s: &[u8], from: usize, to: usize) -> Result<()> {
        if self.all_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.ensure_slow(s, from, to)
    }

    /// [`Snapshot::ensure`] for a bucket: 64-byte aligned, so within one block.
    #[inline]
    #[cfg(test)]
    fn ensure_bucket(&self, s: &[u8], at: usize) -> Result<()> {
        let b = at / BLOCK_LEN;
        if self.checked[b / 64].load(Ordering::Relaxed) & (1 << (b % 64)) != 0 {
            return Ok(());
        }
        self.ensure_slow(s, at, at + BUCKET_LEN)
    }

    /// [`Snapshot::ensure`] for an 8-byte aligned word, also within one block.
    #[inline]
    #[cfg(test)]
    fn ensure_word(&self, s: &[u8], at: usize) -> Result<()> {
        let b = at / BLOCK_LEN;
        if self.checked[b / 64].load(Ordering::Relaxed) & (1 << (b % 64)) != 0 {
            return Ok(());
        }
        self.ensure_slow(s, at, at + 8)
    }

    #[cold]
    fn ensure_slow(&self, s: &[u8], from: usize, to: usize) -> Result<()> {
        let (first, last) = (from / BLOCK_LEN, (to.max(from + 1) - 1) / BLOCK_LEN);
        for b in first..=last {
            let (word, bit) = (b / 64, 1u64 << (b % 64));
            if self.checked[word].load(Ordering::Relaxed) & bit != 0 {
                continue;
            }
            let end = ((b + 1) * BLOCK_LEN).min(self.crcs_off);
            let stored = le_u32(s, self.crcs_off + b * 4);
            if crc32fast::hash(&s[b * BLOCK_LEN..end]) != stored {
                return Err(Error::corrupt(
                    (self.base + b * BLOCK_LEN) as u64,
                    "snapshot block checksum mismatch",
                ));
            }
            // Count a block once, by the thread that set its bit.
            if self.checked[word].fetch_or(bit, Ordering::Relaxed) & bit == 0
                && self.checked_count.fetch_add(1, Ordering::Relaxed) + 1 == self.n_blocks
            {
                self.all_checked.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Tenant and key of the heap entry at `off`, bounds-checked.
    fn entry<'a>(&self, s: &'a [u8], off: usize) -> Result<(&'a [u8], &'a [u8])> {
        let bad = || Error::corrupt((self.base + off) as u64, "snapshot entry out of bounds");
        if off < self.heap.start || off + 4 > self.heap.end {
            return Err(bad());
        }
        self.ensure(s, off, off + 4)?;
        let (tl, kl) = (le_u16(s, off) as usize, le_u16(s, off + 2) as usize);
        let end = off + 4 + tl + kl;
        if end > self.heap.end {
            return Err(bad());
        }
        self.ensure(s, off, end)?;
        Ok((&s[off + 4..off + 4 + tl], &s[off + 4 + tl..end]))
    }

    /// Effective cutoff of `(scope, tenant, key)` (`hash` from [`Hasher::key`]).
    #[inline]
    /// `s` is [`Snapshot::section`] of the file.
    #[cfg(test)]
    pub(crate) fn get(
        &self,
        s: &[u8],
        scope: Scope,
        hash: u64,
        tenant: &[u8],
        key: &[u8],
    ) -> Result<Option<i64>> {
        let t = self.tables[scope as usize - 1];
        if t.n_buckets == 0 {
            return Ok(None);
        }
        // The filter answers most misses from one word that tends to stay in cache.
        let (word, bits) = filter_probe(hash, t.filter_words);
        let w = t.filter_offset + word * 8;
        self.ensure_word(s, w)?;
        if le_u64(s, w) & bits != bits {
            return Ok(None);
        }
        let tag = tag_of(hash);
        let mut b = home_bucket(hash, t.n_buckets);
        let mut step = 0;
        for probe in 0..t.max_probe {
            let at = t.offset + b * BUCKET_LEN;
            self.ensure_bucket(s, at)?;
            let Some(bucket) = s.get(at..at + BUCKET_LEN) else {
                return Err(Error::corrupt(
                    (self.base + at) as u64,
                    "snapshot bucket out of bounds",
                ));
            };
            let bucket: &[u8; BUCKET_LEN] = bucket
                .try_into()
                .map_err(|_| Error::Internal("bucket".into()))?;
            let word = |slot: usize| le_u64(bucket, slot * SLOT_LEN);
            for slot in 0..SLOTS_PER_BUCKET {
                let w = word(slot);
                if w == 0 {
                    return Ok(None);
                }
                if w & TAG_MASK == tag {
                    let (tn, k) = self.entry(s, (w & OFFSET_MASK) as usize)?;
                    if tn == tenant && k == key {
                        return Ok(Some(le_u64(bucket, slot * SLOT_LEN + 8) as i64));
                    }
                }
            }
            if probe == 0 {
                if word(0) & OVERFLOW == 0 {
                    return Ok(None);
                }
                step = probe_step(hash, t.n_buckets);
            }
            b += step;
            if b >= t.n_buckets as usize {
                b -= t.n_buckets as usize;
            }
        }
        Ok(None)
    }

    /// Largest cutoff of `scope` in the snapshot (`i64::MIN` when none).
    #[inline]
    #[cfg(test)]
    pub(crate) fn newest(&self, scope: Scope) -> i64 {
        self.newest[scope as usize]
    }

    /// The global cutoff, if any.
    #[cfg(test)]
    pub(crate) fn global(&self) -> Option<i64> {
        self.global
    }

    /// Number of keys held (the global rule counts as one).
    #[cfg(test)]
    pub(crate) fn keys(&self) -> u64 {
        self.tables.iter().map(|t| t.entries).sum::<u64>() + u64::from(self.global.is_some())
    }

    /// Bytes of the hash tables and filters (what the index costs; the heap holds the
    /// key bytes).
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| u64::from(t.n_buckets) * BUCKET_LEN as u64 + u64::from(t.filter_words) * 8)
            .sum()
    }

    /// Visits every rule: scope, tenant, key, cutoff. Checks every block it reads, and
    /// that each table holds as many keys as its descriptor says (a crafted descriptor
    /// with valid checksums is `Corrupt`, issue 12).
    pub(crate) fn for_each<'a>(
        &self,
        file: &'a [u8],
        mut f: impl FnMut(Scope, &'a [u8], &'a [u8], i64),
    ) -> Result<()> {
        if let Some(g) = self.global {
            f(Scope::Global, &[], &[], g);
        }
        let s = self.section(file);
        for (i, t) in self.tables.iter().enumerate() {
            let scope = Scope::ALL[i + 1];
            let end = t.offset + t.n_buckets as usize * BUCKET_LEN;
            self.ensure(s, t.offset, end)?;
            let mut keys = 0u64;
            for o in (t.offset..end).step_by(SLOT_LEN) {
                let word = le_u64(s, o);
                if word != 0 {
                    keys += 1;
                    let (tn, k) = self.entry(s, (word & OFFSET_MASK) as usize)?;
                    f(scope, tn, k, le_u64(s, o + 8) as i64);
                }
            }
            if keys != t.entries {
                return Err(Error::corrupt(
                    (self.base + H_TABLES + i * DESC_LEN) as u64,
                    format!(
                        "snapshot: the {scope:?} table holds {keys} keys, its descriptor says {}",
                        t.entries
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The static header of a version 1 file (FORMAT.md of version 1, §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1Header {
    pub(crate) hash_seed: [u8; 16],
    pub(crate) max_token_lifetime: i64,
    pub(crate) leeway: i64,
    pub(crate) generation: u64,
    snapshot_offset: u64,
    snapshot_len: u64,
    log_start: u64,
}

/// Reads and checks a version 1 header.
pub(crate) fn decode_header(b: &[u8]) -> Result<V1Header> {
    if b.len() < 256 || crate::header::version_of(b) != Some(crate::header::FORMAT_VERSION_1) {
        return Err(Error::Incompatible("not a version 1 ledger".into()));
    }
    if crc32fast::hash(&b[..124]) != le_u32(b, 124) {
        return Err(Error::corrupt(0, "version 1 header checksum mismatch"));
    }
    if le_u32(b, 12) != 256 || le_u32(b, 16) != 0 {
        return Err(Error::Incompatible(
            "version 1 header length or flags unknown to this build".into(),
        ));
    }
    let h = V1Header {
        hash_seed: b[24..40].try_into().unwrap_or([0; 16]),
        max_token_lifetime: le_u64(b, 40) as i64,
        leeway: le_u64(b, 48) as i64,
        generation: le_u64(b, 64),
        snapshot_offset: le_u64(b, 72),
        snapshot_len: le_u64(b, 80),
        log_start: le_u64(b, 88),
    };
    let snapshot_ok = if h.snapshot_len == 0 {
        h.snapshot_offset == 0 && h.log_start == 256
    } else {
        h.snapshot_offset >= 256
            && h.snapshot_offset
                .checked_add(h.snapshot_len)
                .is_some_and(|end| end <= h.log_start)
    };
    if h.max_token_lifetime < 0 || h.leeway < 0 || !snapshot_ok || !h.log_start.is_multiple_of(8) {
        return Err(Error::corrupt(40, "version 1 header fields disagree"));
    }
    Ok(h)
}

/// Visits every record a version 1 file holds: its snapshot's rules (one per key), then
/// its log's records, in order. A torn tail ends the log (as version 1 recovery did);
/// damage followed by valid records is `Corrupt`.
pub(crate) fn for_each_record(
    file: &std::fs::File,
    header: &V1Header,
    mut visit: impl FnMut(Record<'_>),
) -> Result<()> {
    let map = FileMap::new(file, false)?;
    let file_len = map.refresh_len(file)?;
    let written = crate::map::data_end(file, file_len).max(header.log_start);
    let log = map.log(written.min(file_len))?;
    if header.snapshot_len > 0 {
        let section = log.range(
            header.snapshot_offset,
            header.snapshot_offset + header.snapshot_len,
        );
        let snap = Snapshot::open(section, 0, section.len())
            .map_err(|e| Error::corrupt(header.snapshot_offset, format!("version 1 {e}")))?;
        snap.for_each(section, |scope, tenant, key, at| {
            visit(Record::Rule(Rule::new(scope, tenant, key, at)))
        })?;
    }
    let (end, stop) = crate::log::scan(log, header.log_start, log.end(), |r, _| visit(r));
    if let Some(why) = stop {
        if let Some(next) = crate::log::next_valid_frame(log, end, log.end()) {
            return Err(Error::corrupt(
                end,
                format!("{why}, followed by a valid record at offset {next}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type OwnedRule = (Scope, Vec<u8>, Vec<u8>, i64);

    fn sample() -> (Hasher, Vec<OwnedRule>) {
        let mut rules = vec![(Scope::Global, vec![], vec![], 77)];
        for i in 0..3000 {
            rules.push((
                Scope::Subject,
                b"acme".to_vec(),
                format!("user-{i}").into_bytes(),
                i,
            ));
        }
        rules.push((Scope::Role, b"acme".to_vec(), b"admin".to_vec(), 5));
        rules.push((Scope::Token, b"a".to_vec(), b"bc".to_vec(), 9));
        (Hasher::new([9; 16]), rules)
    }

    fn bytes_of(h: &Hasher, rules: &[OwnedRule]) -> Vec<u8> {
        let live: Vec<LiveRule> = rules
            .iter()
            .map(|(s, t, k, at)| LiveRule {
                scope: *s,
                tenant: t,
                key: k,
                at: *at,
            })
            .collect();
        build(h, &live)
    }

    #[test]
    fn every_key_is_found_and_absent_keys_are_not() {
        let (h, rules) = sample();
        let b = bytes_of(&h, &rules);
        let snap = Snapshot::open(&b, 0, b.len()).unwrap();
        for (s, t, k, at) in &rules[1..] {
            let hash = h.key(*s, h.tenant(t), k);
            assert_eq!(snap.get(&b, *s, hash, t, k).unwrap(), Some(*at));
        }
        let hash = h.key(Scope::Token, h.tenant(b"ab"), b"c");
        assert_eq!(snap.get(&b, Scope::Token, hash, b"ab", b"c").unwrap(), None);
        assert_eq!(snap.global(), Some(77));
        assert_eq!(snap.keys(), rules.len() as u64);
        assert_eq!(snap.newest(Scope::Subject), 2999);
        assert!(snap.table_bytes() <= 3002 * 24);
        let mut n = 0;
        snap.for_each(&b, |_, _, _, _| n += 1).unwrap();
        assert_eq!(n, rules.len());
    }

    /// Recomputes every checksum of a snapshot built by `build` (as a forger would).
    fn fix_checksums(b: &mut [u8]) {
        let crcs_off = le_u64(b, H_CRCS_OFF) as usize;
        let n_blocks = crcs_off.div_ceil(BLOCK_LEN);
        let block_crc = |b: &[u8], i: usize| {
            crc32fast::hash(&b[i * BLOCK_LEN..((i + 1) * BLOCK_LEN).min(crcs_off)])
        };
        let mut h = crc32fast::Hasher::new();
        for i in 1..n_blocks {
            let c = block_crc(b, i);
            b[crcs_off + i * 4..crcs_off + i * 4 + 4].copy_from_slice(&c.to_le_bytes());
            h.update(&c.to_le_bytes());
        }
        b[H_CRCS_CRC..H_CRCS_CRC + 4].copy_from_slice(&h.finalize().to_le_bytes());
        let hcrc = crc32fast::hash(&b[..H_CRC]);
        b[H_CRC..H_CRC + 4].copy_from_slice(&hcrc.to_le_bytes());
        let c = block_crc(b, 0);
        b[crcs_off..crcs_off + 4].copy_from_slice(&c.to_le_bytes());
    }

    /// Issue 12: a keyed table's descriptor with its buckets kept but `entries = 0` and
    /// `filter_words = 0`, every checksum fixed up, made `revledger check` panic. It is
    /// `Corrupt` now, for every keyed scope.
    #[test]
    fn a_descriptor_that_disowns_its_keys_is_corrupt() {
        let (h, rules) = sample();
        let clean = bytes_of(&h, &rules);
        for scope in 0..KEYED {
            let d = H_TABLES + scope * DESC_LEN;
            if le_u32(&clean, d + 8) == 0 {
                continue; // no table for this scope in the sample
            }
            let mut b = clean.clone();
            b[d + 16..d + 24].copy_from_slice(&0u64.to_le_bytes());
            b[d + 32..d + 36].copy_from_slice(&0u32.to_le_bytes());
            fix_checksums(&mut b);
            let snap = Snapshot::open(&b, 0, b.len()).expect("checksums fixed: opens");
            let e = snap.for_each(&b, |_, _, _, _| {}).unwrap_err();
            assert!(
                matches!(e, Error::Corrupt { ref reason, .. } if reason.contains("descriptor says 0")),
                "{e:?}"
            );
        }
        let mut b = clean.clone();
        fix_checksums(&mut b);
        assert_eq!(b, clean, "fix_checksums changed a valid snapshot");
    }

    #[test]
    fn every_flipped_byte_is_refused_at_open_or_on_first_use() {
        let (h, rules) = sample();
        let clean = bytes_of(&h, &rules[..40]);
        for i in 0..clean.len() {
            let mut b = clean.clone();
            b[i] ^= 0x01;
            let Ok(snap) = Snapshot::open(&b, 0, b.len()) else {
                continue;
            };
            let mut failed = snap.for_each(&b, |_, _, _, _| {}).is_err();
            for (s, t, k, _) in &rules[1..40] {
                let hash = h.key(*s, h.tenant(t), k);
                failed |= snap.get(&b, *s, hash, t, k).is_err();
            }
            assert!(failed, "flip at {i} went unnoticed");
        }
        for cut in [0, 1, 511, clean.len() / 2, clean.len() - 1] {
            assert!(
                Snapshot::open(&clean[..cut], 0, cut).is_err(),
                "cut at {cut}"
            );
        }
    }
}
