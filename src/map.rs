//! Every memory mapping of revledger, and all the `unsafe` code that touches mapped bytes.
//!
//! # Safety invariants
//!
//! 1. A [`FileMap`] reserves a range of address space larger than the file (`MAP_SHARED`,
//!    read-only for readers, read-write for the writer's header stores and appends). Pages past the
//!    end of the file are never touched: every slice handed out covers `[0, len)` with
//!    `len <= known_file_len`, a size observed through `fstat` (or set by this process's
//!    own `set_len`) *before* the slice is made. Files only grow: revledger never
//!    truncates a ledger file. Another process that truncates the file under a mapping
//!    breaks this invariant (SIGBUS); docs/FORMAT.md §7 states that rule.
//! 2. Bytes below `committed_len` are never written again by a writer (append-only), so
//!    a shared slice over them does not alias a concurrent write. Bytes of the header's
//!    dynamic half are only accessed through `AtomicU64`s, never through slices.
//!    Slices handed out therefore end at a committed length, and the static header.
//! 3. When the file outgrows a reservation, a larger one is made and the old one is kept
//!    until the `FileMap` is dropped, so pointers and slices taken from an older region
//!    stay valid for the `FileMap`'s lifetime.
//!    Past the end of the file's data (see [`data_end`]) a writer reads nothing through
//!    the mapping: on tmpfs, a read fault on a hole allocates a page, SIGBUS when full.
//! 4. The header is 8-byte aligned (offset 0 of a page-aligned mapping) and its atomics
//!    sit at multiples of 8, as `AtomicU64` requires.
//! 5. The writer stores appended frames through the mapping only at or past
//!    `committed_len` (nobody reads there, invariant 2) and only over blocks that
//!    [`allocate`] reserved on disk, so a store never faults on a full disk.

use crate::error::{Error, Result};
use crate::header::{HEADER_LEN, OFF_COMMITTED_LEN, OFF_RETIRED, OFF_SYNCED_LEN};
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;
use std::fs::File;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Smallest address range reserved for one file.
const MIN_RESERVATION: u64 = 1 << 30;

struct Region {
    raw: MmapRaw,
}

/// A file mapped for the lifetime of a handle, following the file as it grows.
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

fn map_region(file: &File, len: u64, writable: bool) -> Result<Box<Region>> {
    let len = usize::try_from(len)
        .map_err(|_| Error::invalid("ledger file too large for this address space"))?;
    let mut opts = MmapOptions::new();
    opts.len(len);
    let raw = if writable {
        opts.map_raw(file)
    } else {
        opts.map_raw_read_only(file)
    }
    .map_err(|e| Error::io("mapping the ledger file", e))?;
    Ok(Box::new(Region { raw }))
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
        let region = map_region(file, reservation_for(file_len), writable)?;
        let ptr = &*region as *const Region as *mut Region;
        Ok(FileMap {
            current: AtomicPtr::new(ptr),
            regions: Mutex::new(vec![region]),
            known_file_len: AtomicU64::new(file_len),
            writable,
        })
    }

    fn region(&self) -> &Region {
        // SAFETY: `current` always points into a `Box<Region>` owned by `self.regions`,
        // which only grows and is dropped with `self` (invariant 3).
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Largest file size observed so far.
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
            let region = map_region(file, reservation_for(file_len), self.writable)?;
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

    /// The first `len` bytes of the file. Fails when `len` exceeds the file size
    /// observed so far.
    pub(crate) fn bytes(&self, len: u64) -> Result<&[u8]> {
        if len > self.known_file_len() {
            return Err(Error::corrupt(
                self.known_file_len(),
                format!(
                    "ledger claims {len} bytes but the file has {}",
                    self.known_file_len()
                ),
            ));
        }
        let region = self.region();
        debug_assert!(len <= region.raw.len() as u64);
        // SAFETY: `len <= known_file_len <= reservation` (grow_to maps a region covering
        // every size it records), so the range is mapped and inside the file (invariant 1).
        // Callers only ask for committed bytes or the static header, which no one writes
        // while the slice lives (invariant 2). The region outlives `&self` (invariant 3).
        Ok(unsafe { std::slice::from_raw_parts(region.raw.as_ptr(), len as usize) })
    }

    fn atomic(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= HEADER_LEN);
        let region = self.region();
        // SAFETY: `offset + 8 <= HEADER_LEN <= file length` (checked in `new`), so the
        // word is mapped and inside the file; it is 8-aligned (invariant 4). The dynamic
        // header words are only ever accessed atomically (invariant 2), by this and by
        // other processes. An atomic load from a read-only mapping is allowed for
        // `AtomicU64` with Acquire/Relaxed ordering (std::sync::atomic, "read-only memory").
        unsafe { &*(region.raw.as_ptr().add(offset) as *const AtomicU64) }
    }

    /// `committed_len` from the header.
    pub(crate) fn committed_len(&self) -> u64 {
        self.atomic(OFF_COMMITTED_LEN).load(Ordering::Acquire)
    }

    /// `synced_len` from the header.
    pub(crate) fn synced_len(&self) -> u64 {
        self.atomic(OFF_SYNCED_LEN).load(Ordering::Acquire)
    }

    /// Whether a compaction has replaced this file.
    #[inline]
    pub(crate) fn retired(&self) -> bool {
        self.atomic(OFF_RETIRED).load(Ordering::Acquire) != 0
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
    /// (see [`allocate`]); the caller publishes the new end afterwards.
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
        // lock, touches these bytes. Its blocks were allocated by `allocate`, so the store
        // cannot fault on a full disk. `bytes` is a separate heap buffer: no overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                region.raw.as_mut_ptr().add(offset as usize),
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

/// Hints the CPU to start loading the cache line of `bytes[offset]`; nothing when the
/// offset is out of range or the target has no prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], offset: usize) {
    if let Some(b) = bytes.get(offset) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint; it never faults and reads nothing into the program.
        // The pointer is in bounds of a live slice anyway. SSE is baseline on x86_64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                b as *const u8 as *const i8,
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = b;
    }
}

/// Reserves disk blocks for `file[offset..offset + len]`, extending the file if needed
/// (`fallocate`), so that stores through a shared mapping there cannot hit a hole on a
/// full disk (SIGBUS): the disk-full error comes from this call instead.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: a plain system call on a file descriptor this `File` owns and keeps open
        // for the call; it touches no memory of this process.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
