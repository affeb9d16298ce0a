//! The shared index: one hash table per ledger file, kept in a sidecar file by the writer
//! as it appends and mapped by every reader process, so that opening a reader costs the
//! same at ten thousand rules as at ten million, and N readers hold one copy of it.
//!
//! Layout (docs/FORMAT.md §4): a 4 KiB header of 64-bit words, a Bloom filter of one
//! 64-bit word per bucket, and buckets of eight 8-byte slots (one cache line each). A
//! slot packs a 24-bit tag of the key's hash with the 40-bit file offset of the rule's
//! payload in the ledger's log, whose key bytes decide equality exactly and whose cutoff
//! is the key's effective (maximum) cutoff: when a later record raises a key's cutoff,
//! the writer points the slot at it. The file is accessed only through 8-byte atomics,
//! by every process (src/map.rs, invariant 6); readers only load.
//!
//! The index is derived data, never trusted beyond what the log proves (§4.4): a reader
//! uses it only when its header says it belongs to this very ledger file (file id,
//! generation, device and inode), describes the current epoch, and was last validated
//! by a writer since the machine booted (after a power loss the page cache that held its
//! newest words is gone, so it is rebuilt from the log). Everything it points at is read
//! from the log with bounds checks: a damaged index can make an answer wrong only if the
//! damage is in memory, never make a read go out of bounds.

use crate::error::{Error, LeanResult, Result};

use crate::header::{Header, HEADER_LEN};
use crate::io;
use crate::log::FileAccess;
use crate::map::{prefetch, LogBytes, WordMap};
use crate::record::{rule_at, same_bytes, FRAME_HEADER_LEN};
use crate::rule::{Rule, Scope};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// First word of an index file: ASCII `RVINDEX2`.
pub const INDEX_MAGIC: [u8; 8] = *b"RVINDEX2";
/// Layout version of the index file.
pub const INDEX_LAYOUT: u64 = 1;
/// Bytes of the index header (the filter starts after it).
pub const INDEX_HEADER_LEN: u64 = 4096;
/// Slots per bucket: one 64-byte cache line.
pub const SLOTS_PER_BUCKET: usize = 8;
const BUCKET_WORDS: usize = SLOTS_PER_BUCKET;
/// Filter words (8 bytes each) above which lookups prefetch them: 512 KiB, about half a
/// core's L2 cache on the machines revledger is measured on.
const PREFETCH_ABOVE_WORDS: u64 = 64 << 10;
/// Keys an index of a new ledger is sized for.
pub const INITIAL_KEYS: u64 = 16_384;
/// Most keys an index is sized for: one per 32 bytes of the largest log (1 TiB).
const MAX_KEYS: u64 = 1 << 35;
const TAG_SHIFT: u32 = 40;
const OFFSET_MASK: u64 = (1 << TAG_SHIFT) - 1;

/// Header words (index = byte offset / 8). Static words 0–15, written before the index is
/// marked valid and covered by `static_crc`.
mod w {
    pub const MAGIC: usize = 0;
    pub const LAYOUT: usize = 1;
    pub const N_BUCKETS: usize = 2;
    pub const FILTER_WORDS: usize = 3;
    pub const FILTER_OFFSET: usize = 4;
    pub const BUCKETS_OFFSET: usize = 5;
    pub const FILE_LEN: usize = 6;
    pub const FILE_ID: usize = 7;
    pub const GENERATION: usize = 8;
    pub const EPOCH: usize = 9;
    pub const HASH_CHECK: usize = 10;
    pub const STATIC_CRC: usize = 15;
    pub const STATIC_WORDS: usize = 15;
    // Trust: rarely written (bytes 128–191).
    pub const STATE: usize = 16;
    pub const BOOT_LO: usize = 17;
    pub const BOOT_HI: usize = 18;
    pub const DEV: usize = 19;
    pub const INO: usize = 20;
    pub const INDEXED_LEN: usize = 21;
    pub const OVERFLOW_FROM: usize = 22;
    // Newest cutoff per scope (bytes 192–255).
    pub const NEWEST: usize = 24;
    // Keys per scope (bytes 256–311), rule records applied, rules the file started with.
    pub const KEYS: usize = 32;
    pub const RECORDS: usize = 39;
    pub const MAX_LIFETIME: usize = 40;
    pub const LAST_POSITION: usize = 41;
    pub const BASE_RECORDS: usize = 42;
    // Set by a writer that closed cleanly (0 while a writer runs): what the ledger and
    // index files looked like then.
    pub const CLOSED_CTIME: usize = 43;
    pub const CLOSED_CTIME_NS: usize = 44;
    pub const CLOSED_LEN: usize = 45;
    pub const CLOSED_INDEX_CTIME: usize = 46;
    pub const CLOSED_INDEX_CTIME_NS: usize = 47;
}

/// `state` of an index being built: never used by a reader.
const STATE_BUILDING: u64 = 0;
/// `state` of an index a writer validated (see [`SharedIndex::trust`]).
const STATE_VALID: u64 = 1;
/// `state` of an index a newer epoch replaced.
const STATE_REPLACED: u64 = 2;

/// The value of one word of the index.
#[inline(always)]
fn load(word: &AtomicU64) -> u64 {
    // Relaxed: allowed on a read-only mapping (src/map.rs invariant 4); the words are
    // stored little-endian.
    u64::from_le(word.load(Ordering::Relaxed))
}

/// Word `i` of the index; 0 (an empty word) outside it.
#[inline(always)]
fn get(words: &[AtomicU64], i: usize) -> u64 {
    words.get(i).map_or(0, load)
}

#[inline(always)]
fn set(words: &[AtomicU64], i: usize, v: u64) {
    if let Some(x) = words.get(i) {
        x.store(v.to_le(), Ordering::Release);
    }
}

/// The sidecar file of a ledger's index, for the ledger generation `generation`:
/// `.<ledger name>.g<generation>.index` beside the ledger.
pub(crate) fn index_path(ledger: &Path, generation: u64) -> PathBuf {
    crate::log::sibling(ledger, &format!("g{generation}.index"))
}

/// This boot of the machine: the kernel's boot id (a random UUID drawn at boot). Page
/// cache contents survive a process's death but not a reboot; an index last validated in
/// another boot may have lost writes that the log kept, so it is not trusted.
pub(crate) fn boot_id() -> (u64, u64) {
    static BOOT: OnceLock<(u64, u64)> = OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let lo = u64::from_str_radix(hex.get(..16).unwrap_or(""), 16).unwrap_or(0);
        let hi = u64::from_str_radix(hex.get(16..32).unwrap_or(""), 16).unwrap_or(0);
        if lo == 0 && hi == 0 {
            // No boot id (not Linux, or /proc hidden): fall back to the boot time, which
            // also changes at every boot.
            (boot_time(), 0x6274_696d_6500_0001)
        } else {
            (lo, hi)
        }
    })
}

fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(1)
}

/// A file's change time and size: any write, truncation or metadata change moves them.
fn file_change(file: &File) -> Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = file
        .metadata()
        .map_err(|e| Error::io("reading a ledger file's metadata", e))?;
    Ok((m.ctime() as u64, m.ctime_nsec() as u64 | 1 << 40, m.len()))
}

fn file_identity(file: &File) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = file
        .metadata()
        .map_err(|e| Error::io("reading the ledger file's metadata", e))?;
    Ok((m.dev(), m.ino()))
}

/// Where the table's parts lie, in words from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    n_buckets: u64,
    filter_words: u64,
    filter_at: usize,
    buckets_at: usize,
    file_len: u64,
}

impl Layout {
    /// The layout of an index that holds `keys` keys at 3/4 of its slots.
    pub(crate) fn for_keys(keys: u64) -> Layout {
        // Clamped: the counts come from a shared file (and a file offset has 40 bits).
        let slots = (keys.clamp(48, MAX_KEYS) * 4).div_ceil(3);
        let n_buckets = slots.div_ceil(SLOTS_PER_BUCKET as u64);
        let filter_words = n_buckets;
        let filter_bytes = (filter_words * 8).next_multiple_of(64);
        let buckets_offset = INDEX_HEADER_LEN + filter_bytes;
        Layout {
            n_buckets,
            filter_words,
            filter_at: (INDEX_HEADER_LEN / 8) as usize,
            buckets_at: (buckets_offset / 8) as usize,
            file_len: buckets_offset + n_buckets * 64,
        }
    }

    fn slots(&self) -> u64 {
        self.n_buckets * SLOTS_PER_BUCKET as u64
    }

    /// Keys at which the index is due to grow: 3/4 of its slots.
    pub(crate) fn grow_at(&self) -> u64 {
        self.slots() * 3 / 4
    }

    /// Keys past which nothing more is inserted: 7/8 of its slots (probes stay short and
    /// every probe sequence meets an empty slot).
    pub(crate) fn hard_limit(&self) -> u64 {
        self.slots() * 7 / 8
    }

    /// Bytes of the table and filter (what the index costs in memory).
    pub(crate) fn table_bytes(&self) -> u64 {
        self.file_len - INDEX_HEADER_LEN
    }
}

/// Where a key's hash leads in the filter: its word and bits.
#[derive(Clone, Copy, Default)]
pub(crate) struct FilterProbe {
    word: usize,
    bits: u64,
}

/// An index's filter, borrowed for the lookups of one check: every key a token probes is
/// tested here first, and only a key the filter lets through is looked up in the table.
/// It selects the same word and bits as [`Layout::filter_probe`] (what the writer sets).
#[derive(Clone, Copy)]
pub(crate) struct Filter<'a> {
    /// The filter's words (empty: no shared index, nothing may be contained).
    words: &'a [AtomicU64],
    /// Whether to prefetch words: when the filter is larger than a core's L2 cache, so
    /// that a token's misses overlap (below, a prefetch costs instructions and saves
    /// nothing).
    prefetch: bool,
}

impl<'a> Filter<'a> {
    /// The filter of no index: it contains nothing.
    pub(crate) const EMPTY: Filter<'static> = Filter {
        words: &[],
        prefetch: false,
    };

    #[inline(always)]
    fn word(&self, hash: u64) -> Option<&'a AtomicU64> {
        self.words
            .get(mul_shift(hash, self.words.len() as u64) as usize)
    }

    /// Starts loading the word of `hash` when the filter is large enough to gain.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        if self.prefetch {
            if let Some(w) = self.word(hash) {
                prefetch(w);
            }
        }
    }

    /// Whether the key whose hash is `hash` may be in the table (false: certainly not).
    #[inline(always)]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        let bits = filter_bits(hash);
        self.word(hash).is_some_and(|w| load(w) & bits == bits)
    }
}

/// The three filter bits of `hash` (bits 0–17 choose them).
#[inline(always)]
fn filter_bits(hash: u64) -> u64 {
    (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63)) | (1u64 << ((hash >> 12) & 63))
}

/// Where a key's hash leads in the table: its home bucket and its tag.
#[derive(Clone, Copy)]
pub(crate) struct Probe {
    home: u64,
    tag: u64,
}

#[inline(always)]
fn mul_shift(h: u64, n: u64) -> u64 {
    ((u128::from(h) * u128::from(n)) >> 64) as u64
}

impl Layout {
    /// The filter probe of `hash`: the high bits choose the word, bits 0–17 the three bits.
    #[inline(always)]
    pub(crate) fn filter_probe(&self, hash: u64) -> FilterProbe {
        FilterProbe {
            word: self.filter_at + mul_shift(hash, self.filter_words) as usize,
            bits: filter_bits(hash),
        }
    }

    /// The table probe of `hash`: the hash rotated by 32 bits chooses the home bucket,
    /// bits 18–41 the tag (read only past the filter).
    #[inline(always)]
    pub(crate) fn probe(&self, hash: u64) -> Probe {
        Probe {
            home: mul_shift(hash.rotate_left(32), self.n_buckets),
            tag: tag_of(hash),
        }
    }
}

/// The tag bits of a slot holding a key of hash `hash`.
#[inline(always)]
pub(crate) fn tag_of(hash: u64) -> u64 {
    (((hash >> 18) & 0xFF_FFFF) | 1) << TAG_SHIFT
}

/// What [`SharedIndex::trust`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The index holds every rule record of the log in `[log_start, indexed_len)`; from
    /// `overflow_from` (when not 0) on, records are not inserted any more.
    Trusted {
        indexed_len: u64,
        overflow_from: u64,
    },
    /// Not usable; the reason.
    Untrusted(&'static str),
}

/// What [`SharedIndex::find`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// The cutoff of the key's record: the key's effective cutoff.
    Cutoff(i64),
    /// The key is not in the table.
    Absent,
    /// Not in the caller's view of the log; a slot with the key's tag points past it.
    Beyond,
}

/// Whether `bytes` start with a rule payload header whose key bytes run past `bytes`.
fn rule_header_fits(bytes: &[u8]) -> bool {
    use crate::record::PAYLOAD_HEADER_LEN;
    if bytes.len() < PAYLOAD_HEADER_LEN || bytes[0] != crate::record::KIND_RULE {
        return false;
    }
    let len = |at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    };
    let (t, k) = (len(4), len(8));
    t <= crate::rule::MAX_KEY_LEN
        && k <= crate::rule::MAX_KEY_LEN
        && PAYLOAD_HEADER_LEN + t + k > bytes.len()
}

/// What inserting one rule did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// A new key.
    New,
    /// An existing key whose cutoff the rule raised or repeated: its slot now points at
    /// the rule.
    Raised,
    /// An existing key whose cutoff is already larger than the rule's.
    Kept,
    /// The table is at its hard limit: not inserted.
    Full,
}

/// One index file, mapped: read-only for readers, read-write for the writer.
pub(crate) struct SharedIndex {
    /// Kept open for the mapping's sake (and its lock-free identity).
    _file: File,
    map: WordMap,
    layout: Layout,
    /// Where the file is now (a temporary name until it is renamed into place).
    path: PathBuf,
}

impl SharedIndex {
    /// Creates the index file `tmp` for `ledger` (its header), sized for `keys`, in state
    /// "building", mapped read-write. The caller inserts, then [`SharedIndex::validate`]
    /// and [`SharedIndex::rename_into`].
    pub(crate) fn create(
        tmp: &Path,
        ledger: &Header,
        epoch: u64,
        keys: u64,
        access: FileAccess,
    ) -> Result<SharedIndex> {
        let layout = Layout::for_keys(keys);
        let _ = std::fs::remove_file(tmp);
        let file = io::create(tmp, 0o600).map_err(|e| Error::io_path("creating", tmp, e))?;
        let made = (|| {
            access
                .apply(&file)
                .map_err(|e| Error::io_path("setting the mode and group of", tmp, e))?;
            // Blocks reserved before anything is stored through the mapping, so a full
            // disk fails here and never as SIGBUS at a store (src/map.rs invariant 6).
            io::allocate(&file, 0, layout.file_len)
                .map_err(|e| Error::io_path("sizing", tmp, e))?;
            let map = WordMap::new(&file, layout.file_len, true)?;
            let w = map.words();
            set(w, w::MAGIC, u64::from_le_bytes(INDEX_MAGIC));
            set(w, w::LAYOUT, INDEX_LAYOUT);
            set(w, w::N_BUCKETS, layout.n_buckets);
            set(w, w::FILTER_WORDS, layout.filter_words);
            set(w, w::FILTER_OFFSET, layout.filter_at as u64 * 8);
            set(w, w::BUCKETS_OFFSET, layout.buckets_at as u64 * 8);
            set(w, w::FILE_LEN, layout.file_len);
            set(w, w::FILE_ID, ledger.file_id);
            set(w, w::GENERATION, ledger.generation);
            set(w, w::EPOCH, epoch);
            set(w, w::HASH_CHECK, ledger.hash_check);
            set(w, w::STATIC_CRC, u64::from(static_crc(w)));
            set(w, w::STATE, STATE_BUILDING);
            for s in 0..7 {
                set(w, w::NEWEST + s, i64::MIN as u64);
            }
            set(w, w::MAX_LIFETIME, ledger.max_token_lifetime as u64);
            Ok(map)
        })();
        match made {
            Ok(map) => Ok(SharedIndex {
                _file: file,
                map,
                layout,
                path: tmp.to_path_buf(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                Err(e)
            }
        }
    }

    /// Opens the index file at `path` for `ledger` and checks its static header: `None`
    /// when there is no such file, or it belongs to another ledger file or epoch (a
    /// compaction or growth replaced it meanwhile). Errors are I/O errors only: a
    /// damaged index is simply not used.
    pub(crate) fn open(
        path: &Path,
        ledger: &Header,
        epoch: u64,
        writable: bool,
    ) -> Result<Option<SharedIndex>> {
        let file = match io::open(path, writable) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => return Ok(None),
            Err(e) => return Err(Error::io_path("opening", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io_path("reading metadata of", path, e))?;
        // Anything but a regular file (a directory, a FIFO, a device) is no index.
        if !meta.is_file() || meta.len() < INDEX_HEADER_LEN {
            return Ok(None);
        }
        let size = meta.len();
        let head = WordMap::new(&file, INDEX_HEADER_LEN, false)?;
        let hw = head.words();
        let layout = Layout {
            n_buckets: get(hw, w::N_BUCKETS),
            filter_words: get(hw, w::FILTER_WORDS),
            filter_at: (get(hw, w::FILTER_OFFSET) / 8) as usize,
            buckets_at: (get(hw, w::BUCKETS_OFFSET) / 8) as usize,
            file_len: get(hw, w::FILE_LEN),
        };
        let sound = get(hw, w::MAGIC) == u64::from_le_bytes(INDEX_MAGIC)
            && get(hw, w::LAYOUT) == INDEX_LAYOUT
            && u64::from(static_crc(hw)) == get(hw, w::STATIC_CRC)
            && layout == Layout::for_buckets(layout.n_buckets)
            && layout.file_len <= size
            && get(hw, w::FILE_ID) == ledger.file_id
            && get(hw, w::GENERATION) == ledger.generation
            && get(hw, w::HASH_CHECK) == ledger.hash_check
            && get(hw, w::EPOCH) == epoch;
        drop(head);
        if !sound {
            return Ok(None);
        }
        let map = WordMap::new(&file, layout.file_len, writable)?;
        Ok(Some(SharedIndex {
            _file: file,
            map,
            layout,
            path: path.to_path_buf(),
        }))
    }

    #[inline(always)]
    fn words(&self) -> &[AtomicU64] {
        self.map.words()
    }

    /// The layout.
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether readers may use this index for the ledger whose file is `ledger` and whose
    /// log is committed up to `committed` (the conditions of docs/FORMAT.md §4.4).
    pub(crate) fn trust(&self, ledger: &File, committed: u64) -> Result<Trust> {
        let w = self.words();
        if get(w, w::STATE) != STATE_VALID {
            return Ok(Trust::Untrusted("the index was not validated by a writer"));
        }
        let (lo, hi) = boot_id();
        if get(w, w::BOOT_LO) != lo || get(w, w::BOOT_HI) != hi {
            return Ok(Trust::Untrusted(
                "the index was last validated before the machine booted",
            ));
        }
        let (dev, ino) = file_identity(ledger)?;
        if get(w, w::DEV) != dev || get(w, w::INO) != ino {
            return Ok(Trust::Untrusted(
                "the index belongs to another copy of the file",
            ));
        }
        if get(w, w::CLOSED_CTIME_NS) != 0 {
            // Its writer closed it: both files must be as it left them (a file rewritten
            // in place since is read again from the log, where its CRCs are checked).
            let (sec, ns, len) = file_change(ledger)?;
            let (isec, ins, _) = file_change(&self._file)?;
            if get(w, w::CLOSED_CTIME) != sec
                || get(w, w::CLOSED_CTIME_NS) != ns
                || get(w, w::CLOSED_LEN) != len
                || get(w, w::CLOSED_INDEX_CTIME) != isec
                || get(w, w::CLOSED_INDEX_CTIME_NS) != ins
            {
                return Ok(Trust::Untrusted(
                    "the ledger or its index changed since its writer closed it",
                ));
            }
        }
        let indexed_len = get(w, w::INDEXED_LEN);
        let overflow_from = get(w, w::OVERFLOW_FROM);
        if indexed_len < HEADER_LEN as u64
            || indexed_len > committed
            || (overflow_from != 0 && (overflow_from < indexed_len || overflow_from > committed))
        {
            return Ok(Trust::Untrusted(
                "the index covers more of the log than it holds",
            ));
        }
        Ok(Trust::Trusted {
            indexed_len,
            overflow_from,
        })
    }

    /// Writer: records that the index is valid for the ledger file `ledger` in this boot,
    /// holding every rule record below `indexed_len` (or below `overflow_from`, when it
    /// stopped taking records before).
    pub(crate) fn validate(&self, ledger: &File, indexed_len: u64) -> Result<()> {
        let w = self.words();
        let (lo, hi) = boot_id();
        let (dev, ino) = file_identity(ledger)?;
        let overflow = self.overflow_from();
        let indexed_len = if overflow != 0 {
            indexed_len.min(overflow)
        } else {
            indexed_len
        };
        set(w, w::BOOT_LO, lo);
        set(w, w::BOOT_HI, hi);
        set(w, w::DEV, dev);
        set(w, w::INO, ino);
        set(w, w::INDEXED_LEN, indexed_len);
        set(w, w::CLOSED_CTIME_NS, 0);
        set(w, w::STATE, STATE_VALID);
        Ok(())
    }

    /// Writer, closing (after its last sync): records how the ledger and the index files
    /// look now, so that a reader can tell whether either changed since.
    pub(crate) fn mark_closed(&self, ledger: &File) -> Result<()> {
        let w = self.words();
        let (sec, ns, len) = file_change(ledger)?;
        for _ in 0..4 {
            // The first store may move the index file's ctime (its page turned dirty);
            // later ones do not while the page stays dirty: store until it holds still.
            let before = file_change(&self._file)?;
            set(w, w::CLOSED_CTIME, sec);
            set(w, w::CLOSED_LEN, len);
            set(w, w::CLOSED_INDEX_CTIME, before.0);
            set(w, w::CLOSED_INDEX_CTIME_NS, before.1);
            set(w, w::CLOSED_CTIME_NS, ns);
            if file_change(&self._file)? == before {
                return Ok(());
            }
        }
        set(w, w::CLOSED_CTIME_NS, 0);
        Ok(())
    }

    /// Writer: renames a freshly built index into place at `path` (its final name).
    pub(crate) fn rename_into(&mut self, path: &Path) -> Result<()> {
        io::rename(&self.path, path)
            .map_err(|e| Error::io_path("renaming the index onto", path, e))?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Writer: marks this index as replaced by a newer epoch.
    pub(crate) fn mark_replaced(&self) {
        set(self.words(), w::STATE, STATE_REPLACED);
    }

    // ---- counters -----------------------------------------------------------------

    /// Largest cutoff of any rule of `scope` (`i64::MIN` when none).
    #[inline(always)]
    pub(crate) fn newest(&self, scope: Scope) -> i64 {
        get(self.words(), w::NEWEST + scope as usize) as i64
    }

    /// All seven newest cutoffs, in scope order.
    #[inline(always)]
    pub(crate) fn newest_all(&self) -> [i64; 7] {
        // One bounds check for the seven words (a validated index always has them; a
        // missing word would read as "probe every scope").
        match self.words().get(w::NEWEST..w::NEWEST + 7) {
            Some(n) => std::array::from_fn(|s| load(&n[s]) as i64),
            None => [i64::MAX; 7],
        }
    }

    /// Keys of `scope` in the table.
    #[inline(always)]
    pub(crate) fn keys(&self, scope: Scope) -> u64 {
        get(self.words(), w::KEYS + scope as usize)
    }

    /// Keys of every scope, at most what the table can hold: the counters are words of a
    /// shared file (summed saturating), and a new table is sized from this sum.
    pub(crate) fn total_keys(&self) -> u64 {
        Scope::ALL[1..]
            .iter()
            .fold(0u64, |n, s| n.saturating_add(self.keys(*s)))
            .min(self.layout.hard_limit())
    }

    /// Rule records inserted (duplicates included), and how many of them the file started
    /// with (the rules a compaction wrote).
    pub(crate) fn records(&self) -> (u64, u64) {
        let w = self.words();
        (get(w, w::RECORDS), get(w, w::BASE_RECORDS))
    }

    /// Writer: sets the rule records inserted and how many the file started with.
    pub(crate) fn set_records(&self, records: u64, base: u64) {
        set(self.words(), w::RECORDS, records);
        set(self.words(), w::BASE_RECORDS, base);
    }

    /// The ledger's effective maximum token lifetime (header and config records).
    pub(crate) fn max_token_lifetime(&self) -> i64 {
        get(self.words(), w::MAX_LIFETIME) as i64
    }

    /// Payload offset of the last stream position record (0: none).
    pub(crate) fn last_position(&self) -> u64 {
        get(self.words(), w::LAST_POSITION)
    }

    /// Log offset from which records are no longer inserted (0: none).
    #[inline(always)]
    pub(crate) fn overflow_from(&self) -> u64 {
        get(self.words(), w::OVERFLOW_FROM)
    }

    /// Writer: the index holds every record below `end`.
    pub(crate) fn set_indexed_len(&self, end: u64) {
        set(self.words(), w::INDEXED_LEN, end);
    }

    /// Writer: from `offset` on, records are not inserted (the table is full).
    pub(crate) fn set_overflow(&self, offset: u64) {
        set(self.words(), w::OVERFLOW_FROM, offset);
    }

    /// Writer: applies a configuration record.
    pub(crate) fn raise_max_token_lifetime(&self, lifetime: i64) {
        if lifetime > self.max_token_lifetime() {
            set(self.words(), w::MAX_LIFETIME, lifetime as u64);
        }
    }

    /// Writer: a stream position record at `payload_offset` is now the last one.
    pub(crate) fn set_last_position(&self, payload_offset: u64) {
        set(self.words(), w::LAST_POSITION, payload_offset);
    }

    fn raise_newest(&self, scope: Scope, at: i64) {
        if at > self.newest(scope) {
            set(self.words(), w::NEWEST + scope as usize, at as u64);
        }
    }

    /// Keys at which this index is due to grow, and whether it has reached them.
    pub(crate) fn due_to_grow(&self) -> bool {
        self.total_keys() >= self.layout.grow_at()
    }

    // ---- the table ----------------------------------------------------------------

    /// The filter, for the lookups of one check.
    #[inline(always)]
    pub(crate) fn filter(&self) -> Filter<'_> {
        let at = self.layout.filter_at;
        let words = self
            .words()
            .get(at..at + self.layout.filter_words as usize)
            .unwrap_or(&[]);
        Filter {
            words,
            prefetch: self.layout.filter_words > PREFETCH_ABOVE_WORDS,
        }
    }

    /// The cutoff of the record the table holds for `(scope, tenant, key)` (whose probe
    /// is `probe`), read from `log`, the caller's view of the committed log.
    /// [`Found::Beyond`] when a slot with the key's tag points past that view: the caller
    /// looks again with a newer view (the writer inserts a record just before it commits
    /// it).
    #[inline(always)]
    pub(crate) fn find(
        &self,
        probe: &Probe,
        scope: Scope,
        tenant: &[u8],
        key: &[u8],
        log: LogBytes<'_>,
    ) -> LeanResult<Found> {
        let w = self.words();
        let mut b = probe.home;
        let mut beyond = false;
        for _ in 0..self.layout.n_buckets {
            let at = self.layout.buckets_at + b as usize * BUCKET_WORDS;
            // One bounds check per bucket (the layout keeps every bucket inside the map;
            // one outside reads as empty, as a word outside does for `get`).
            let Some(bucket) = w.get(at..at + BUCKET_WORDS) else {
                break;
            };
            for slot in bucket {
                let word = load(slot);
                if word == 0 {
                    return Ok(if beyond { Found::Beyond } else { Found::Absent });
                }
                if word & !OFFSET_MASK != probe.tag {
                    continue;
                }
                let offset = word & OFFSET_MASK;
                // Ordered after the slot load: the record was written before the slot.
                std::sync::atomic::fence(Ordering::Acquire);
                if offset.saturating_add(crate::record::PAYLOAD_HEADER_LEN as u64) > log.end() {
                    if offset < HEADER_LEN as u64 {
                        return Err(Box::new(damaged(offset)));
                    }
                    beyond = true; // appended after the caller's view of the log
                    continue;
                }
                let bytes = log.from(offset).ok_or_else(|| Box::new(damaged(offset)))?;
                let Some(rule) = rule_at(bytes) else {
                    if rule_header_fits(bytes) {
                        beyond = true; // its key bytes lie past the view
                        continue;
                    }
                    return Err(Box::new(damaged(offset)));
                };
                if rule.scope == scope
                    && same_bytes(rule.tenant, tenant)
                    && same_bytes(rule.key, key)
                {
                    return Ok(Found::Cutoff(rule.at));
                }
            }
            b += 1;
            if b == self.layout.n_buckets {
                b = 0;
            }
        }
        Ok(if beyond { Found::Beyond } else { Found::Absent })
    }

    /// Writer: inserts the rule `rule` whose payload is at `payload_offset` in `log` (the
    /// writer's own view, which reaches it), with hash `hash`. Global rules only raise the
    /// global cutoff. The order of the stores is what readers rely on: counters and the
    /// filter before the slot, so that a reader that finds the slot also gets past the
    /// filter and the "newest cutoff" shortcut.
    pub(crate) fn insert(
        &self,
        hash: u64,
        rule: &Rule,
        payload_offset: u64,
        log: LogBytes<'_>,
    ) -> Result<Inserted> {
        let w = self.words();
        if rule.scope == Scope::Global {
            self.raise_newest(Scope::Global, rule.at);
            self.count_record();
            return Ok(Inserted::New);
        }
        if payload_offset > OFFSET_MASK {
            return Err(Error::invalid(
                "ledger file past the 1 TiB the index can address",
            ));
        }
        let p = self.layout.probe(hash);
        let f = self.layout.filter_probe(hash);
        let mut b = p.home;
        for _ in 0..self.layout.n_buckets {
            let at = self.layout.buckets_at + b as usize * BUCKET_WORDS;
            for slot in 0..SLOTS_PER_BUCKET {
                let word = get(w, at + slot);
                if word == 0 {
                    if self.total_keys() >= self.layout.hard_limit() {
                        return Ok(Inserted::Full);
                    }
                    let keys = self.keys(rule.scope).saturating_add(1);
                    set(w, w::KEYS + rule.scope as usize, keys);
                    self.raise_newest(rule.scope, rule.at);
                    set(w, f.word, get(w, f.word) | f.bits);
                    set(w, at + slot, p.tag | payload_offset);
                    self.count_record();
                    return Ok(Inserted::New);
                }
                if word & !OFFSET_MASK != p.tag {
                    continue;
                }
                let offset = word & OFFSET_MASK;
                let old = log
                    .from(offset)
                    .and_then(rule_at)
                    .ok_or_else(|| damaged(offset))?;
                if old.scope == rule.scope
                    && same_bytes(old.tenant, rule.tenant)
                    && same_bytes(old.key, rule.key)
                {
                    self.count_record();
                    // A repeat of the cutoff moves the slot too: the slot points at the
                    // newest record that decides the key (a compaction that copies the
                    // frames from some offset on leaves out the keys decided there).
                    if rule.at >= old.at {
                        self.raise_newest(rule.scope, rule.at);
                        set(w, at + slot, p.tag | payload_offset);
                        return Ok(Inserted::Raised);
                    }
                    return Ok(Inserted::Kept);
                }
            }
            b += 1;
            if b == self.layout.n_buckets {
                b = 0;
            }
        }
        Ok(Inserted::Full)
    }

    fn count_record(&self) {
        let (n, _) = self.records();
        set(self.words(), w::RECORDS, n.saturating_add(1));
    }

    /// Visits every key in the table (growth, compaction, stats): its record's payload
    /// offset and the slot's tag bits (as [`tag_of`] gives them).
    pub(crate) fn for_each_slot(&self, mut f: impl FnMut(u64, u64) -> Result<()>) -> Result<()> {
        let w = self.words();
        let start = self.layout.buckets_at;
        let end = start + self.layout.n_buckets as usize * BUCKET_WORDS;
        for i in start..end {
            let word = get(w, i);
            if word != 0 {
                f(word & OFFSET_MASK, word & !OFFSET_MASK)?;
            }
        }
        Ok(())
    }
}

impl Layout {
    /// The layout [`Layout::for_keys`] gives for `n_buckets` buckets (what a valid header
    /// must describe exactly).
    fn for_buckets(n_buckets: u64) -> Layout {
        if n_buckets == 0 || n_buckets > (1 << 40) {
            return Layout {
                n_buckets: 0,
                filter_words: 0,
                filter_at: 0,
                buckets_at: 0,
                file_len: u64::MAX,
            };
        }
        let filter_bytes = (n_buckets * 8).next_multiple_of(64);
        let buckets_offset = INDEX_HEADER_LEN + filter_bytes;
        Layout {
            n_buckets,
            filter_words: n_buckets,
            filter_at: (INDEX_HEADER_LEN / 8) as usize,
            buckets_at: (buckets_offset / 8) as usize,
            file_len: buckets_offset + n_buckets * 64,
        }
    }
}

fn static_crc(words: &[AtomicU64]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for i in 0..w::STATIC_WORDS {
        h.update(&get(words, i).to_le_bytes());
    }
    h.finalize()
}

#[cold]
fn damaged(offset: u64) -> Error {
    Error::corrupt(
        offset.saturating_sub(FRAME_HEADER_LEN as u64),
        "the shared index points at a byte range that holds no rule record",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Hasher;

    #[test]
    fn layouts_hold_their_keys_under_three_quarters() {
        for keys in [0u64, 1, 100, 16_384, 1_000_000, 10_000_000] {
            let l = Layout::for_keys(keys);
            assert!(l.grow_at() >= keys, "{keys}: grows at {}", l.grow_at());
            assert!(l.hard_limit() > l.grow_at());
            assert_eq!(Layout::for_buckets(l.n_buckets), l);
            assert_eq!(l.file_len % 8, 0);
            if keys >= 1_000_000 {
                // 8-byte slots at 3/4, one filter byte per slot: about 11.8 bytes per key
                // when due to grow (and twice that right after a growth).
                let per_key = l.table_bytes() as f64 / keys as f64;
                assert!(per_key < 12.5, "{per_key}");
            }
        }
    }

    #[test]
    fn probes_spread_filter_bits_tags_and_homes() {
        let l = Layout::for_keys(1_000_000);
        let h = Hasher::new([5; 16]);
        let mut homes = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let hash = h.full(Scope::Subject, b"t", &i.to_le_bytes());
            let p = l.probe(hash);
            let f = l.filter_probe(hash);
            assert!(f.bits.count_ones() >= 1 && f.bits.count_ones() <= 3);
            assert_ne!(p.tag, 0);
            assert!(p.home < l.n_buckets);
            assert!(f.word >= l.filter_at && f.word < l.filter_at + l.filter_words as usize);
            homes.insert(p.home);
        }
        assert!(homes.len() > 990);
    }

    #[test]
    fn boot_id_is_stable_within_a_process() {
        assert_eq!(boot_id(), boot_id());
        assert_ne!(boot_id(), (0, 0));
    }
}
