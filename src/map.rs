//! Every memory mapping of revledger, and all the `unsafe` code that touches mapped bytes.
//!
//! Two kinds of file are mapped. A **ledger file** ([`FileMap`]) is an append-only log
//! after a header; its **shared index** ([`WordMap`], a sidecar file, docs/FORMAT.md §4)
//! is a table of 64-bit words that the one writer updates in place while every reader
//! process reads it.
//!
//! # Safety invariants
//!
//! 1. A [`FileMap`] reserves a range of address space larger than the file (`MAP_SHARED`,
//!    read-only for readers, read-write for the writer's header stores and appends).
//!    Pages past the end of the file are never touched: every slice handed out ends at or
//!    below `known_file_len`, a size observed through `fstat` (or made so by this
//!    process's own growth) *before* the slice is made. Files only grow: revledger never
//!    truncates a ledger file. Another process that truncates the file under a mapping
//!    breaks this invariant (SIGBUS); docs/FORMAT.md §7 states that rule.
//! 2. Bytes of the log below `committed_len` are never written again (append-only), and
//!    the writer only writes frames past it, before publishing them; so a shared slice
//!    over log bytes never aliases a concurrent write. Slices cover the log only
//!    ([`LogBytes`] starts at [`HEADER_LEN`]): the header's dynamic half is accessed only
//!    through atomics, by every process, and its static half is read with `pread`.
//! 3. When the file outgrows a reservation, a larger one is made and the old one is kept
//!    until the `FileMap` is dropped, so pointers and slices taken from an older region
//!    stay valid for the `FileMap`'s lifetime. Past the end of the file's data (see
//!    [`data_end`]) a writer reads nothing through the mapping: on tmpfs, a read fault on
//!    a hole allocates a page, SIGBUS when full.
//! 4. Atomics sit at multiples of 8 in page-aligned mappings, as `AtomicU64` requires.
//!    On a read-only mapping only `Relaxed` loads are made (the standard library's rule
//!    for atomics on read-only memory), followed by an `Acquire` fence where ordering is
//!    needed.
//! 5. The writer stores appended frames through the mapping only at or past
//!    `committed_len` (nobody reads there, invariant 2) and only over blocks that
//!    [`io::allocate`](crate::io::allocate) reserved on disk, so a store never faults on
//!    a full disk.
//! 6. A [`WordMap`] maps a whole sidecar file of fixed size (it never grows; a bigger
//!    index is a new file). Every access to its bytes, by every process, is an 8-byte
//!    atomic load or store: it is handed out only as `&[AtomicU64]`, never as bytes.
//!    The writer allocated its blocks before mapping it read-write.

use crate::error::{Error, Result};
use crate::header::{
    HEADER_LEN, OFF_COMMITTED_LEN, OFF_INDEX_EPOCH, OFF_RECOVERED_END, OFF_RECOVERIES, OFF_RETIRED,
    OFF_SYNCED_LEN,
};
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;
use std::fs::File;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

/// Smallest address range reserved for one ledger file.
const MIN_RESERVATION: u64 = 1 << 30;

struct Region {
    raw: MmapRaw,
    /// `raw.as_mut_ptr()`, kept: the check path reads the header through it.
    base: *mut u8,
}

impl Region {
    fn new(raw: MmapRaw) -> Box<Region> {
        let base = raw.as_mut_ptr();
        Box::new(Region { raw, base })
    }
}

// SAFETY: `base` points into the mapping `raw` owns, which is `Send` and `Sync`; what is
// read and written through it follows the invariants above, from any thread.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

/// A ledger file mapped for the lifetime of a handle, following the file as it grows.
pub(crate) struct FileMap {
    current: AtomicPtr<Region>,
    /// Every region ever made, newest last; owns them (invariant 3).
    #[allow(clippy::vec_box)] // boxed for stable addresses: `current` points into them
    regions: Mutex<Vec<Box<Region>>>,
    /// The largest file size observed; slices never reach past it (invariant 1).
    known_file_len: AtomicU64,
    writable: bool,
}

fn reservation_for(file_len: u64) -> u64 {
    file_len.saturating_mul(4).max(MIN_RESERVATION)
}

fn map_raw(file: &File, len: u64, writable: bool) -> Result<MmapRaw> {
    let len = usize::try_from(len)
        .map_err(|_| Error::invalid("file too large for this address space"))?;
    let mut opts = MmapOptions::new();
    opts.len(len);
    if writable {
        opts.map_raw(file)
    } else {
        opts.map_raw_read_only(file)
    }
    .map_err(|e| Error::io("mapping a ledger file", e))
}

/// The committed log of a ledger file: the mapped bytes from [`HEADER_LEN`] to an end,
/// addressed by file offsets.
#[derive(Clone, Copy)]
pub(crate) struct LogBytes<'a> {
    /// `bytes[i]` is the byte at file offset `HEADER_LEN + i`.
    bytes: &'a [u8],
}

impl<'a> LogBytes<'a> {
    /// Log bytes held in memory (tests, and frames before they are written).
    #[cfg(test)]
    pub(crate) fn from_slice(bytes: &'a [u8]) -> LogBytes<'a> {
        LogBytes { bytes }
    }

    /// File offset just past the last byte.
    #[inline]
    pub(crate) fn end(&self) -> u64 {
        (HEADER_LEN + self.bytes.len()) as u64
    }

    /// The bytes from file offset `offset` to the end; `None` outside the log.
    #[inline]
    pub(crate) fn from(&self, offset: u64) -> Option<&'a [u8]> {
        let i = usize::try_from(offset).ok()?.checked_sub(HEADER_LEN)?;
        self.bytes.get(i..)
    }

    /// The bytes `[from, to)` (file offsets), clamped to the log.
    pub(crate) fn range(&self, from: u64, to: u64) -> &'a [u8] {
        let lo = (from as usize)
            .saturating_sub(HEADER_LEN)
            .min(self.bytes.len());
        let hi = (to as usize)
            .saturating_sub(HEADER_LEN)
            .min(self.bytes.len());
        &self.bytes[lo..hi.max(lo)]
    }
}

impl FileMap {
    /// Maps `file`, which must be at least [`HEADER_LEN`] bytes long.
    pub(crate) fn new(file: &File, writable: bool) -> Result<FileMap> {
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("reading the ledger file's size", e))?
            .len();
        if file_len < HEADER_LEN as u64 {
            return Err(Error::Incompatible(format!(
                "file is {file_len} bytes long, shorter than a ledger header"
            )));
        }
        let region = Region::new(map_raw(file, reservation_for(file_len), writable)?);
        let ptr = &*region as *const Region as *mut Region;
        Ok(FileMap {
            current: AtomicPtr::new(ptr),
            regions: Mutex::new(vec![region]),
            known_file_len: AtomicU64::new(file_len),
            writable,
        })
    }

    #[inline]
    fn region(&self) -> &Region {
        // SAFETY: `current` always points into a `Box<Region>` owned by `self.regions`,
        // which only grows and is dropped with `self` (invariant 3).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Largest file size observed so far.
    #[inline]
    pub(crate) fn known_file_len(&self) -> u64 {
        self.known_file_len.load(Ordering::Acquire)
    }

    /// Records that the file is now at least `file_len` bytes long (observed by `fstat`,
    /// or made so by this process), mapping a larger region if needed.
    pub(crate) fn grow_to(&self, file: &File, file_len: u64) -> Result<()> {
        if file_len <= self.known_file_len() {
            return Ok(());
        }
        let mut regions = self.regions.lock();
        let reserved = regions.last().map_or(0, |r| r.raw.len() as u64);
        if file_len > reserved {
            let region = Region::new(map_raw(file, reservation_for(file_len), self.writable)?);
            let ptr = &*region as *const Region as *mut Region;
            regions.push(region);
            self.current.store(ptr, Ordering::Release);
        }
        self.known_file_len.fetch_max(file_len, Ordering::AcqRel);
        Ok(())
    }

    /// Asks the file system for the file's size and follows it. Returns the new size.
    pub(crate) fn refresh_len(&self, file: &File) -> Result<u64> {
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading the ledger file's size", e))?
            .len();
        self.grow_to(file, len)?;
        Ok(self.known_file_len())
    }

    /// The log up to file offset `end`. Fails when `end` exceeds the file size observed
    /// so far. Callers ask only for committed bytes (invariant 2).
    #[inline]
    pub(crate) fn log(&self, end: u64) -> Result<LogBytes<'_>> {
        let known = self.known_file_len();
        if end > known {
            return Err(Error::corrupt(
                known,
                format!("ledger claims {end} bytes but the file has {known}"),
            ));
        }
        let len = (end as usize).saturating_sub(HEADER_LEN);
        let region = self.region();
        debug_assert!(end <= region.raw.len() as u64);
        // SAFETY: `HEADER_LEN + len <= end <= known_file_len <= reservation` (grow_to maps
        // a region covering every size it records; `new` checked the file holds a header),
        // so the range is mapped and inside the file (invariant 1). It starts after the
        // header, and callers only ask for committed bytes, which no one writes while the
        // slice lives (invariant 2). The region outlives `&self` (invariant 3).
        let bytes = unsafe { std::slice::from_raw_parts(region.base.add(HEADER_LEN), len) };
        Ok(LogBytes { bytes })
    }

    #[inline]
    fn atomic(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset >= 128 && offset + 8 <= HEADER_LEN);
        let region = self.region();
        // SAFETY: `offset + 8 <= HEADER_LEN <= file length` (checked in `new`), so the
        // word is mapped and inside the file; it is 8-aligned in a page-aligned mapping
        // (invariant 4). The dynamic header words are only ever accessed atomically, by
        // this and by other processes (invariant 2).
        unsafe { &*(region.base.add(offset) as *const AtomicU64) }
    }

    /// Loads a header word: a relaxed load (allowed on a read-only mapping) then an
    /// acquire fence (invariant 4).
    #[inline]
    fn load(&self, offset: usize) -> u64 {
        let v = self.atomic(offset).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }

    /// `committed_len` from the header.
    #[inline]
    pub(crate) fn committed_len(&self) -> u64 {
        self.load(OFF_COMMITTED_LEN)
    }

    /// `synced_len` from the header.
    pub(crate) fn synced_len(&self) -> u64 {
        self.load(OFF_SYNCED_LEN)
    }

    /// Whether a compaction has replaced this file.
    #[inline]
    pub(crate) fn retired(&self) -> bool {
        self.load(OFF_RETIRED) != 0
    }

    /// The epoch of the current shared index (0: none published).
    #[inline]
    pub(crate) fn index_epoch(&self) -> u64 {
        self.load(OFF_INDEX_EPOCH)
    }

    /// The words every check reads, from their one cache line: `retired`, `index_epoch`
    /// and `recoveries`.
    #[inline(always)]
    pub(crate) fn retired_and_epoch(&self) -> (u64, u64, u64) {
        let r = self.atomic(OFF_RETIRED).load(Ordering::Relaxed);
        let e = self.atomic(OFF_INDEX_EPOCH).load(Ordering::Relaxed);
        let c = self.atomic(OFF_RECOVERIES).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (r, e, c)
    }

    /// `recoveries` from the header.
    pub(crate) fn recoveries(&self) -> u64 {
        self.load(OFF_RECOVERIES)
    }

    /// Counts a recovery that changed the end of the log to `end` (writer only): `end`
    /// first, so that a reader that sees the new count sees where the log was cut.
    pub(crate) fn publish_recovery(&self, end: u64) -> Result<()> {
        self.store(OFF_RECOVERED_END, end)?;
        let n = self.recoveries();
        self.store(OFF_RECOVERIES, n.wrapping_add(1))
    }

    /// `recovered_end` from the header: where the last recovery cut the log (0: none
    /// recorded, as in a file no recovery of this version cut).
    pub(crate) fn recovered_end(&self) -> u64 {
        self.load(OFF_RECOVERED_END)
    }

    fn store(&self, offset: usize, value: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.atomic(offset).store(value, Ordering::Release);
        Ok(())
    }

    /// Copies `bytes` into the file at `offset` through the mapping (writer only).
    /// `offset` must be at or past `committed_len` and the range's blocks allocated
    /// (see [`io::allocate`](crate::io::allocate)); the caller publishes the new end.
    pub(crate) fn write_past_committed(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let end = offset
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= self.known_file_len())
            .ok_or_else(|| Error::Internal("append past the end of the mapped file".into()))?;
        if offset < self.committed_len() || offset < HEADER_LEN as u64 {
            return Err(Error::Internal("append below the committed end".into()));
        }
        let region = self.region();
        debug_assert!(end <= region.raw.len() as u64);
        // SAFETY: `[offset, end)` is inside the file (`end <= known_file_len`) and so inside
        // the writable region (invariant 1). It lies at or past `committed_len`, which no
        // reader reads and no slice covers (invariant 2): only this writer, under its append
        // lock, touches these bytes. Its blocks were allocated, so the store cannot fault
        // on a full disk (invariant 5). `bytes` is a separate heap buffer: no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                region.base.add(offset as usize),
                bytes.len(),
            )
        };
        Ok(())
    }

    /// Publishes a new end of the committed log (writer only).
    pub(crate) fn publish_committed(&self, len: u64) -> Result<()> {
        self.store(OFF_COMMITTED_LEN, len)
    }

    /// Records that the log is durable up to `len` (writer only).
    pub(crate) fn publish_synced(&self, len: u64) -> Result<()> {
        self.store(OFF_SYNCED_LEN, len)
    }

    /// Marks this file as replaced by a compaction (writer only).
    pub(crate) fn publish_retired(&self) -> Result<()> {
        self.store(OFF_RETIRED, 1)
    }

    /// Removes a stale `retired` mark from a file that is at its path (writer only).
    pub(crate) fn clear_retired(&self) -> Result<()> {
        self.store(OFF_RETIRED, 0)
    }

    /// Marks a format version 1 file as replaced (its `retired` word, at offset 144), after
    /// a writer upgraded it (writer only).
    pub(crate) fn publish_v1_retired(&self) {
        if self.writable {
            self.atomic(144).store(1, Ordering::Release);
        }
    }

    /// Publishes the epoch of the shared index that is now current (writer only).
    pub(crate) fn publish_index_epoch(&self, epoch: u64) -> Result<()> {
        self.store(OFF_INDEX_EPOCH, epoch)
    }
}

/// The dynamic words of a ledger header at a stable address (invariant 3: a region is
/// never unmapped while its `FileMap` lives). Taken once, so that a check reaches the
/// words in one load instead of following the map's current region.
#[derive(Clone, Copy)]
pub(crate) struct HeaderWords(*const AtomicU64);

// SAFETY: a pointer to atomics in a shared mapping; whoever holds one keeps the mapping
// alive (see `HeaderWords::load`), and atomics may be accessed from any thread.
unsafe impl Send for HeaderWords {}
// SAFETY: as above.
unsafe impl Sync for HeaderWords {}

impl HeaderWords {
    /// The word at byte `offset` of the header (128..256, a multiple of 8): a relaxed load
    /// (invariant 4).
    ///
    /// # Safety
    /// The `FileMap` this came from is alive.
    #[inline(always)]
    unsafe fn load(self, offset: usize) -> u64 {
        debug_assert!(offset.is_multiple_of(8) && (128..HEADER_LEN).contains(&offset));
        // SAFETY: the pointer is the header's word at offset 128 in a live region (caller
        // contract, invariant 3), and `offset` stays inside the 256-byte header, which
        // every ledger file holds (checked in `FileMap::new`); these words are only ever
        // accessed atomically (invariant 2) and 8-aligned (invariant 4).
        unsafe { (*self.0.add((offset - 128) / 8)).load(Ordering::Relaxed) }
    }

    /// `retired`, `index_epoch` and `recoveries`, from their one cache line, then an
    /// acquire fence.
    ///
    /// # Safety
    /// The `FileMap` this came from is alive.
    #[inline(always)]
    pub(crate) unsafe fn retired_epoch_recoveries(self) -> (u64, u64, u64) {
        // SAFETY: forwarded caller contract.
        let v = unsafe {
            (
                self.load(OFF_RETIRED),
                self.load(OFF_INDEX_EPOCH),
                self.load(OFF_RECOVERIES),
            )
        };
        fence(Ordering::Acquire);
        v
    }

    /// `committed_len`, then an acquire fence.
    ///
    /// # Safety
    /// The `FileMap` this came from is alive.
    #[inline(always)]
    pub(crate) unsafe fn committed_len(self) -> u64 {
        // SAFETY: forwarded caller contract.
        let v = unsafe { self.load(OFF_COMMITTED_LEN) };
        fence(Ordering::Acquire);
        v
    }
}

impl FileMap {
    /// The header's dynamic words, at a stable address for this map's lifetime.
    pub(crate) fn header_words(&self) -> HeaderWords {
        HeaderWords(self.atomic(OFF_COMMITTED_LEN) as *const AtomicU64)
    }
}

/// A sidecar index file mapped whole, as 64-bit atomic words (invariant 6).
pub(crate) struct WordMap {
    /// Owns the mapping; `base` points into it.
    _raw: MmapRaw,
    base: *const AtomicU64,
    words: usize,
}

// SAFETY: `base` points into the mapping `_raw` owns, which is `Send` and `Sync`; the
// words are only accessed through atomics (invariant 6), from any thread.
unsafe impl Send for WordMap {}
// SAFETY: as above.
unsafe impl Sync for WordMap {}

impl WordMap {
    /// Maps the first `len` bytes of `file` (a multiple of 8, at most the file's size,
    /// checked here with `fstat`). A writable map must only be made over allocated blocks.
    pub(crate) fn new(file: &File, len: u64, writable: bool) -> Result<WordMap> {
        let size = file
            .metadata()
            .map_err(|e| Error::io("reading the index file's size", e))?
            .len();
        if len == 0 || !len.is_multiple_of(8) || len > size {
            return Err(Error::corrupt(
                0,
                format!("index file of {size} bytes cannot hold the {len} its header names"),
            ));
        }
        let raw = map_raw(file, len, writable)?;
        Ok(WordMap {
            base: raw.as_ptr() as *const AtomicU64,
            _raw: raw,
            words: (len / 8) as usize,
        })
    }

    /// Every word of the file. Readers only load them with `Relaxed` ordering (the map is
    /// read-only for them: invariant 4); the writer stores with `Release`.
    #[inline(always)]
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping covers `words * 8` bytes of the file (checked against its
        // size in `new`; the file never shrinks: invariant 1), is page-aligned, hence
        // 8-aligned (invariant 4), and lives as long as `&self`. Every access to these
        // bytes, in every process, is atomic (invariant 6), so a shared slice of atomics
        // does not race with the writer's stores.
        unsafe { std::slice::from_raw_parts(self.base, self.words) }
    }
}

/// End of the last data region of `file` (whose length is `len`): past it the file is
/// one hole, reading as zeros. `len` when the file system cannot tell (no `SEEK_DATA`).
pub(crate) fn data_end(file: &File, len: u64) -> u64 {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut end = 0u64;
    let mut pos: libc::off_t = 0;
    loop {
        // SAFETY: lseek on a file descriptor this `File` owns and keeps open for the
        // call; it only moves the descriptor's offset, which revledger never uses
        // (every read and write is positioned: pread/pwrite).
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) {
                end // no data at or after `pos`
            } else {
                len // SEEK_DATA unsupported: assume all of it is data
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return len;
        }
        end = hole as u64;
        if end >= len {
            return len;
        }
        pos = hole;
    }
}

/// Hints the CPU to start loading the cache line of `word`; nothing on targets without a
/// prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch(word: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing into the program.
    // The pointer comes from a live reference anyway. SSE is baseline on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            word as *const AtomicU64 as *const i8,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}
