//! The body of the `open_file` fuzz target: a ledger file and its index file made from
//! the fuzz input, opened by readers and writers, checked, appended to, compacted.
//! tests/faults.rs includes this file to replay tests/fuzz-regressions with the same
//! fix-ups and oracles.
//!
//! Input: a mode byte, a little-endian `u16` length L, L bytes of ledger file, and the
//! rest: bytes of its index file (format version 2, docs/FORMAT.md §4), XORed onto the
//! real index when the mode asks for one. The mode's bits apply fix-ups so that the
//! fuzzer reaches recovery, the index and checks instead of stopping at checksums:
//! [`FIX_HEADER`], [`FIX_CRCS`], [`COMMIT_ALL`], [`KEEP_PREFIX`], [`FIX_INDEX`],
//! [`V1`], [`REAL_INDEX`].
//!
//! Oracles: no panic, hang or out-of-bounds read on any content (any answer or a clear
//! error is fine for a crafted file); when no crafted index is trusted, every answer
//! equals the reference model built from the records the same handle reports; a reader's
//! records are a prefix of the writer's; a rule revoked after recovery is seen by the
//! writer and by a reader open since before; compaction that drops nothing changes no
//! answer.

use crate::model::{token_for, Model, OwnedRule};
use revledger::header::{
    FORMAT_VERSION, FORMAT_VERSION_1, HEADER_LEN, MAGIC, OFF_COMMITTED_LEN, OFF_INDEX_EPOCH,
    STATIC_CRC_LEN,
};
use revledger::record::{
    Record, FRAME_ALIGN, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN, PAYLOAD_HEADER_LEN,
};
use revledger::{Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::path::{Path, PathBuf};

/// Makes the static half of the ledger header valid: magic, version, length, flags,
/// `log_start`, `hash_check` (for the seed the input chose), CRC.
pub const FIX_HEADER: u8 = 1;
/// Rewrites the CRC of every frame whose length is in range.
pub const FIX_CRCS: u8 = 2;
/// `committed_len` = the file's length.
pub const COMMIT_ALL: u8 = 4;
/// Writers open with `keep_valid_prefix`.
pub const KEEP_PREFIX: u8 = 8;
/// Version 2: the index file's header is made one that readers trust (static words and
/// CRC, the ledger's file id, generation, hash check and epoch, state valid, this boot,
/// the ledger file's device and inode, `indexed_len` and `overflow_from` within the
/// committed log), keeping the rest (counters, filter, slots) as the input made them.
/// Version 1: the snapshot section's checksums are recomputed.
pub const FIX_INDEX: u8 = 16;
/// The ledger is a format version 1 file (a writer upgrades it; readers refuse it).
pub const V1: u8 = 32;
/// Version 2: a writer opens the file first and builds its real index; the input's index
/// bytes are then XORed onto it (a structure-aware mutation of a valid index).
pub const REAL_INDEX: u8 = 64;

/// Checks per handle, to bound the time one input takes.
const MAX_RULES_CHECKED: usize = 48;

/// An input, split.
pub struct Input<'a> {
    pub mode: u8,
    pub ledger: &'a [u8],
    pub index: &'a [u8],
}

impl Input<'_> {
    /// Splits a fuzz input (`None`: empty).
    pub fn parse(input: &[u8]) -> Option<Input<'_>> {
        let (&mode, rest) = input.split_first()?;
        let (ledger, index) = match rest {
            [a, b, rest @ ..] => {
                rest.split_at((u16::from_le_bytes([*a, *b]) as usize).min(rest.len()))
            }
            _ => (rest, &[][..]),
        };
        Some(Input {
            mode,
            ledger,
            index,
        })
    }

    /// The fuzz input that [`Input::parse`] splits into these parts (the ledger part is
    /// cut to 65,535 bytes).
    pub fn encode(mode: u8, ledger: &[u8], index: &[u8]) -> Vec<u8> {
        let ledger = &ledger[..ledger.len().min(u16::MAX as usize)];
        let mut v = vec![mode];
        v.extend_from_slice(&(ledger.len() as u16).to_le_bytes());
        v.extend_from_slice(ledger);
        v.extend_from_slice(index);
        v
    }
}

fn le(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap()))
}

fn put(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Makes the static half of the header valid for format `version`, keeping every other
/// byte the fuzzer chose. `file` must be at least `HEADER_LEN` long.
pub fn fix_header(file: &mut [u8], version: u32) {
    file[0..8].copy_from_slice(&MAGIC);
    file[8..12].copy_from_slice(&version.to_le_bytes());
    file[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    file[16..20].copy_from_slice(&0u32.to_le_bytes());
    if version == FORMAT_VERSION {
        put(file, 72, HEADER_LEN as u64); // log_start
        let seed: [u8; 16] = file[24..40].try_into().unwrap();
        put(file, 80, revledger::testing::hash_check(seed));
    }
    let crc = crc32fast::hash(&file[..STATIC_CRC_LEN]);
    file[STATIC_CRC_LEN..STATIC_CRC_LEN + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the CRC of every frame whose length field is in range, walking the log as a
/// reader would (and skipping 8 bytes where no frame fits), so that the fuzzer reaches
/// payload decoding and the index instead of stopping at checksums.
pub fn fix_frame_crcs(file: &mut [u8], from: usize) {
    let mut at = from;
    while at + FRAME_HEADER_LEN <= file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        let total = (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN);
        if (PAYLOAD_HEADER_LEN..=MAX_PAYLOAD_LEN).contains(&len) && at + total <= file.len() {
            let mut h = crc32fast::Hasher::new();
            h.update(&file[at..at + 4]);
            h.update(&file[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len]);
            file[at + 4..at + 8].copy_from_slice(&h.finalize().to_le_bytes());
            at += total;
        } else {
            at += FRAME_ALIGN;
        }
    }
}

/// Version 1: where the log starts according to the (possibly hostile) header.
pub fn v1_log_start(file: &[u8]) -> usize {
    let v = le(file, 88);
    if v >= HEADER_LEN as u64 && v <= file.len() as u64 {
        v as usize
    } else {
        HEADER_LEN
    }
}

/// Version 1: recomputes the checksums of the snapshot section (version 1's FORMAT.md §4)
/// that the header points to, when its own bounds are consistent: the block CRCs, the
/// CRC of CRCs, the snapshot header's CRC, then block 0's (which covers that header).
/// Lets the fuzzer reach the snapshot's bounds checks with hostile tables and offsets.
pub fn fix_snapshot_crcs(file: &mut [u8]) {
    const BLOCK: usize = 4096;
    const H_BLOCKS: usize = 8;
    const H_CRCS_OFF: usize = 40;
    const H_CRCS_CRC: usize = 48;
    const H_CRC: usize = 508;
    if file.len() < HEADER_LEN {
        return;
    }
    let (off, len) = (le(file, 72) as usize, le(file, 80) as usize);
    let Some(s) = off.checked_add(len).and_then(|end| file.get_mut(off..end)) else {
        return;
    };
    if s.len() < 512 {
        return;
    }
    let n_blocks = u32::from_le_bytes(s[H_BLOCKS..H_BLOCKS + 4].try_into().unwrap()) as usize;
    let crcs_off = le(s, H_CRCS_OFF) as usize;
    if crcs_off < 512
        || !crcs_off.is_multiple_of(4)
        || n_blocks != crcs_off.div_ceil(BLOCK)
        || crcs_off.checked_add(n_blocks * 4) != Some(s.len())
    {
        return;
    }
    let mut crcs = vec![0u32; n_blocks];
    for (i, c) in crcs.iter_mut().enumerate().skip(1) {
        *c = crc32fast::hash(&s[i * BLOCK..((i + 1) * BLOCK).min(crcs_off)]);
    }
    let mut h = crc32fast::Hasher::new();
    for c in &crcs[1..] {
        h.update(&c.to_le_bytes());
    }
    s[H_CRCS_CRC..H_CRCS_CRC + 4].copy_from_slice(&h.finalize().to_le_bytes());
    let hcrc = crc32fast::hash(&s[..H_CRC]);
    s[H_CRC..H_CRC + 4].copy_from_slice(&hcrc.to_le_bytes());
    crcs[0] = crc32fast::hash(&s[..BLOCK.min(crcs_off)]);
    for (i, c) in crcs.iter().enumerate() {
        s[crcs_off + i * 4..crcs_off + i * 4 + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Index header words (docs/FORMAT.md §4.1), as byte offsets.
mod iw {
    pub const MAGIC: usize = 0;
    pub const LAYOUT: usize = 8;
    pub const N_BUCKETS: usize = 16;
    pub const FILTER_WORDS: usize = 24;
    pub const FILTER_OFFSET: usize = 32;
    pub const BUCKETS_OFFSET: usize = 40;
    pub const FILE_LEN: usize = 48;
    pub const FILE_ID: usize = 56;
    pub const GENERATION: usize = 64;
    pub const EPOCH: usize = 72;
    pub const HASH_CHECK: usize = 80;
    pub const STATIC_CRC: usize = 120;
    pub const STATE: usize = 128;
    pub const BOOT: usize = 136;
    pub const DEV: usize = 152;
    pub const INO: usize = 160;
    pub const INDEXED_LEN: usize = 168;
    pub const OVERFLOW_FROM: usize = 176;
    pub const CLOSED_CTIME_NS: usize = 352;
    pub const HEADER_LEN: usize = 4096;
}

/// Makes `index` an index that readers of the ledger file at `ledger_path` trust
/// ([`FIX_INDEX`]): a valid layout for its (clamped) bucket count, the ledger's identity,
/// this boot, and `indexed_len`/`overflow_from` within the ledger's committed log.
pub fn fix_index(index: &mut Vec<u8>, ledger_path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(ledger), Ok(meta)) = (std::fs::read(ledger_path), std::fs::metadata(ledger_path))
    else {
        return;
    };
    if ledger.len() < HEADER_LEN {
        return;
    }
    if index.len() < iw::HEADER_LEN {
        index.resize(iw::HEADER_LEN, 0);
    }
    let mut n = le(index, iw::N_BUCKETS);
    if !(1..=4096).contains(&n) {
        n = 1 + n % 256;
    }
    let buckets_offset = iw::HEADER_LEN as u64 + (n * 8).next_multiple_of(64);
    let file_len = buckets_offset + n * 64;
    if (index.len() as u64) < file_len {
        index.resize(file_len as usize, 0);
    }
    put(index, iw::MAGIC, u64::from_le_bytes(*b"RVINDEX2"));
    put(index, iw::LAYOUT, 1);
    put(index, iw::N_BUCKETS, n);
    put(index, iw::FILTER_WORDS, n);
    put(index, iw::FILTER_OFFSET, iw::HEADER_LEN as u64);
    put(index, iw::BUCKETS_OFFSET, buckets_offset);
    put(index, iw::FILE_LEN, file_len);
    put(index, iw::FILE_ID, le(&ledger, 88));
    put(index, iw::GENERATION, le(&ledger, 64));
    put(index, iw::EPOCH, le(&ledger, OFF_INDEX_EPOCH));
    put(index, iw::HASH_CHECK, le(&ledger, 80));
    let crc = crc32fast::hash(&index[..iw::STATIC_CRC]);
    put(index, iw::STATIC_CRC, u64::from(crc));
    put(index, iw::STATE, 1);
    let (lo, hi) = revledger::testing::boot_id();
    put(index, iw::BOOT, lo);
    put(index, iw::BOOT + 8, hi);
    put(index, iw::DEV, meta.dev());
    put(index, iw::INO, meta.ino());
    let start = HEADER_LEN as u64;
    let committed = le(&ledger, OFF_COMMITTED_LEN).max(start);
    let indexed = start + le(index, iw::INDEXED_LEN) % (committed - start + 1);
    put(index, iw::INDEXED_LEN, indexed);
    let o = le(index, iw::OVERFLOW_FROM);
    let overflow = if o.is_multiple_of(2) {
        0
    } else {
        indexed + (o / 2) % (committed - indexed + 1)
    };
    put(index, iw::OVERFLOW_FROM, overflow);
    put(index, iw::CLOSED_CTIME_NS, 0); // as a running writer leaves it
}

/// Writes the files an input describes into `dir` (fresh) and returns the ledger's path
/// and whether answers must match the records (no crafted index may be trusted).
pub fn prepare(input: &Input, dir: &Path) -> (PathBuf, bool) {
    let mode = input.mode;
    let v1 = mode & V1 != 0;
    let path = dir.join("l");
    let mut file = input.ledger.to_vec();
    if mode & (FIX_HEADER | FIX_CRCS | COMMIT_ALL | FIX_INDEX) != 0 && file.len() < HEADER_LEN {
        file.resize(HEADER_LEN, 0);
    }
    if mode & FIX_CRCS != 0 {
        let start = if v1 { v1_log_start(&file) } else { HEADER_LEN };
        fix_frame_crcs(&mut file, start);
    }
    if v1 && mode & FIX_INDEX != 0 {
        fix_snapshot_crcs(&mut file);
    }
    if mode & COMMIT_ALL != 0 {
        let len = file.len() as u64;
        put(&mut file, OFF_COMMITTED_LEN, len);
    }
    if mode & FIX_HEADER != 0 {
        fix_header(
            &mut file,
            if v1 { FORMAT_VERSION_1 } else { FORMAT_VERSION },
        );
    }
    std::fs::write(&path, &file).expect("write the input's ledger file");
    if v1 {
        // A version 1 ledger has no index file; its upgrade writes a version 2 one.
        return (path, true);
    }
    let index_path = dir.join(format!(".l.g{}.index", le(&file, 64)));
    let mut index = Vec::new();
    if mode & REAL_INDEX != 0 {
        let options = WriterOptions {
            keep_valid_prefix: mode & KEEP_PREFIX != 0,
            index_keys: 64,
            compaction: None,
            ..WriterOptions::default()
        };
        if let Ok(w) = Ledger::open_writer(&path, &options) {
            drop(w);
            index = std::fs::read(&index_path).unwrap_or_default();
        }
    }
    if index.len() < input.index.len() {
        index.resize(input.index.len(), 0);
    }
    for (i, b) in input.index.iter().enumerate() {
        index[i] ^= b;
    }
    if mode & FIX_INDEX != 0 {
        fix_index(&mut index, &path);
    }
    if !input.index.is_empty() || mode & FIX_INDEX != 0 {
        std::fs::write(&index_path, &index).expect("write the input's index file");
    }
    (path, mode & FIX_INDEX == 0)
}

fn records(l: &Ledger) -> revledger::Result<Vec<OwnedRule>> {
    let mut out = Vec::new();
    l.for_each_record(|_, r| {
        if let Record::Rule(r) = r {
            out.push(OwnedRule::of(&r));
        }
    })?;
    Ok(out)
}

/// Every answer of `l` about the keys of `rules` (and a stranger) matches the model when
/// `strict`. An error is allowed (a handle that found damage fails closed), a wrong
/// verdict is not.
fn agree(l: &Ledger, rules: &[OwnedRule], model: &Model, strict: bool) {
    for r in rules.iter().take(MAX_RULES_CHECKED) {
        let roles: [&[u8]; 2] = [&r.key, b"stranger-role"];
        for iat in [r.at.saturating_sub(1), r.at, i64::MIN, i64::MAX] {
            let t = token_for(r, &roles, iat);
            if let Ok(v) = l.check(&t) {
                if strict {
                    assert_eq!(v, model.check(&t), "rule {r:?}, iat {iat}");
                }
            }
        }
    }
    let stranger = Token {
        tenant: b"no such tenant",
        subject: b"nobody",
        issued_at: 1,
        ..Token::default()
    };
    if let Ok(v) = l.check(&stranger) {
        if strict {
            assert_eq!(v, model.check(&stranger));
        }
    }
}

fn model_of(rules: &[OwnedRule]) -> Model {
    let mut m = Model::default();
    for r in rules {
        m.apply(&r.rule());
    }
    m
}

/// Runs an input in `dir` (fresh, on tmpfs ideally): panics when an oracle fails.
pub fn run(input: &[u8], dir: &Path) {
    let Some(input) = Input::parse(input) else {
        return;
    };
    let mode = input.mode;
    let (path, strict) = prepare(&input, dir);

    // A reader on the files as they are (a version 1 file: refused).
    let reader = Ledger::open_reader(&path).ok();
    if mode & V1 != 0 && mode & FIX_HEADER != 0 {
        assert!(reader.is_none(), "a reader opened a version 1 file");
    }
    let mut read_rules = None;
    if let Some(r) = &reader {
        let _ = r.stats(0);
        let _ = r.stream_position();
        if let Ok(rules) = records(r) {
            agree(r, &rules, &model_of(&rules), strict);
            read_rules = Some(rules);
        }
    }

    // A writer: recovery (or the upgrade of a version 1 file), the index trusted, caught
    // up or rebuilt, then appends, compaction and a reopening.
    let options = WriterOptions {
        keep_valid_prefix: mode & KEEP_PREFIX != 0,
        index_keys: 64,
        ..WriterOptions::default()
    };
    let Ok(writer) = Ledger::open_writer(&path, &options) else {
        return;
    };
    let rules = match records(&writer) {
        Ok(rules) => rules,
        Err(e) => panic!("a writer that opened cannot list its records: {e}"),
    };
    if let Some(read) = &read_rules {
        if !options.keep_valid_prefix {
            assert!(
                rules.len() >= read.len() && rules[..read.len()] == read[..],
                "the reader's records are not a prefix of the writer's"
            );
        }
    }
    let mut model = model_of(&rules);
    agree(&writer, &rules, &model, strict);
    let _ = writer.stats(0);

    let fresh = OwnedRule {
        scope: Scope::Subject,
        tenant: b"fuzz-tenant".to_vec(),
        key: b"fuzz-subject".to_vec(),
        at: 1_000,
    };
    if writer.revoke(&fresh.rule()).is_ok() {
        model.apply(&fresh.rule());
        let t = token_for(&fresh, &[], 999);
        let v = writer.check(&t);
        if strict {
            assert_eq!(v.expect("writer check"), model.check(&t));
        }
        if let Some(r) = &reader {
            if let Ok(v) = r.check(&t) {
                assert!(!strict || v.is_revoked(), "reader missed a commit: {v:?}");
            }
        }
    }
    let _ = writer.sync();

    // Compaction at the dawn of time drops nothing and changes no answer.
    let mut all = rules;
    all.push(fresh);
    if writer.compact(i64::MIN).is_ok() {
        agree(&writer, &all, &model, strict);
        if let Some(r) = &reader {
            agree(r, &all, &model, strict);
        }
    }
    let _ = writer.revoke(&Rule::new(Scope::Global, b"", b"", 5));
    model.apply(&Rule::new(Scope::Global, b"", b"", 5));
    let _ = writer.wait_background();
    drop(writer);
    if let Ok(again) = Ledger::open_reader(&path) {
        let t = Token {
            issued_at: 4,
            ..Token::default()
        };
        if let Ok(v) = again.check(&t) {
            if strict {
                assert_eq!(v, model.check(&t));
                assert_ne!(v, Verdict::Valid);
            }
        }
        agree(&again, &all, &model, strict);
    }
    // Files of at most 64 KiB never need a large file: a large `fallocate` means a size
    // was taken from a crafted word (it once asked for 384 GiB, filling the disk).
    let largest = revledger::testing::largest_allocation();
    assert!(largest <= 64 << 20, "fallocate of {largest} bytes");
}
