//! Every file-system call revledger makes on a ledger, its index and their temporary
//! files, behind one small interface, so that a test can make any one of them fail (with
//! EIO, ENOSPC, ...) and check that nothing acknowledged is lost and nothing reads as
//! "valid" that should not (the model: redb's `StorageBackend` with a failing backend).
//!
//! Outside tests this is a thin layer over `std::fs` and `libc`: each call first reads one
//! relaxed atomic (is a fault armed?), which costs nothing next to a system call. Stores
//! into a shared mapping are not system calls and are not routed here; the blocks they
//! land on were reserved by [`allocate`], which is.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

/// The kinds of calls, for counting and for aiming a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// Opening an existing file.
    Open = 0,
    /// Creating a file (`O_CREAT | O_EXCL`).
    Create,
    /// Taking the writer's exclusive lock.
    Lock,
    /// A positioned write.
    Write,
    /// Reserving disk blocks (`fallocate`).
    Allocate,
    /// Changing a file's length (only ever to grow it).
    SetLen,
    /// `fdatasync`.
    SyncData,
    /// `fsync`.
    SyncAll,
    /// Renaming a file over another.
    Rename,
    /// `fsync` of a directory.
    SyncDir,
    /// A hard link (creation publishes a new ledger with one).
    Link,
    /// Changing a file's mode or group.
    Chmod,
    /// A positioned read (headers are read with `pread`; the log through the mapping).
    Read,
}

/// Number of [`Op`] kinds.
const OPS: usize = 13;

static CALLS: AtomicU64 = AtomicU64::new(0);
/// Number of the call (1-based, counting every call) that fails; 0: none.
static FAIL_AT: AtomicU64 = AtomicU64::new(0);
/// Bit set of the [`Op`]s a fault may hit (when FAIL_AT counts only those).
static FAIL_OPS: AtomicU64 = AtomicU64::new(0);
static FAIL_ERRNO: AtomicI32 = AtomicI32::new(0);
/// Whether every aimed call from FAIL_AT on fails (a disk that stopped working), not only
/// that one.
static FAIL_ON: AtomicBool = AtomicBool::new(false);
/// Calls of the aimed kinds so far (the counter FAIL_AT is compared with).
static AIMED_CALLS: AtomicU64 = AtomicU64::new(0);
static PER_OP: [AtomicU64; OPS] = [const { AtomicU64::new(0) }; OPS];
/// Largest length [`allocate`] was asked for (a file's words must never size one).
static LARGEST_ALLOCATION: AtomicU64 = AtomicU64::new(0);

#[inline]
fn enter(op: Op) -> io::Result<()> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    PER_OP[op as usize].fetch_add(1, Ordering::Relaxed);
    if FAIL_AT.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    enter_armed(op)
}

#[cold]
fn enter_armed(op: Op) -> io::Result<()> {
    if FAIL_OPS.load(Ordering::Relaxed) & (1 << op as u32) == 0 {
        return Ok(());
    }
    let n = AIMED_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let at = FAIL_AT.load(Ordering::Relaxed);
    if n == at || (n > at && FAIL_ON.load(Ordering::Relaxed)) {
        return Err(io::Error::from_raw_os_error(
            FAIL_ERRNO.load(Ordering::Relaxed),
        ));
    }
    Ok(())
}

/// Fault injection for tests (not part of the supported API).
#[doc(hidden)]
pub mod testing {
    use super::*;

    pub use super::Op;

    /// Makes the `n`-th call (1-based) among those of a kind in `ops`, counted from now,
    /// fail with `errno`; every other call succeeds. Process-wide: tests that use it run
    /// one at a time.
    pub fn fail_nth(ops: &[Op], n: u64, errno: i32) {
        arm(ops, n, errno, false);
    }

    /// Makes the `n`-th call (1-based) among those of a kind in `ops`, counted from now,
    /// and every later one of those kinds fail with `errno`: a disk that stopped working.
    pub fn fail_from(ops: &[Op], n: u64, errno: i32) {
        arm(ops, n, errno, true);
    }

    fn arm(ops: &[Op], n: u64, errno: i32, on: bool) {
        let mask = ops.iter().fold(0u64, |m, op| m | 1 << *op as u32);
        FAIL_OPS.store(mask, Ordering::Relaxed);
        FAIL_ERRNO.store(errno, Ordering::Relaxed);
        FAIL_ON.store(on, Ordering::Relaxed);
        AIMED_CALLS.store(0, Ordering::Relaxed);
        FAIL_AT.store(n, Ordering::SeqCst);
    }

    /// Disarms fault injection.
    pub fn disarm() {
        FAIL_AT.store(0, Ordering::SeqCst);
    }

    /// Whether the armed fault has fired (the aimed calls reached its number).
    pub fn fired() -> bool {
        let at = FAIL_AT.load(Ordering::SeqCst);
        at != 0 && AIMED_CALLS.load(Ordering::SeqCst) >= at
    }

    /// Largest number of bytes one `fallocate` was asked for so far, in this process.
    pub fn largest_allocation() -> u64 {
        LARGEST_ALLOCATION.load(Ordering::SeqCst)
    }

    /// Calls made so far of the kinds in `ops` (every kind when empty).
    pub fn calls(ops: &[Op]) -> u64 {
        if ops.is_empty() {
            return CALLS.load(Ordering::SeqCst);
        }
        ops.iter()
            .map(|op| PER_OP[*op as usize].load(Ordering::SeqCst))
            .sum()
    }
}

/// Opens an existing file, read-only or read-write. Without blocking: a FIFO at the path
/// would block `open(2)` until a writer came (the caller then refuses anything but a
/// regular file; the flag changes nothing for one).
pub(crate) fn open(path: &Path, write: bool) -> io::Result<File> {
    enter(Op::Open)?;
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Creates a new file (failing if it exists) with `mode`, opened read-write.
pub(crate) fn create(path: &Path, mode: u32) -> io::Result<File> {
    enter(Op::Create)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Takes an exclusive lock without waiting: `Ok(false)` when another holds it.
pub(crate) fn try_lock(file: &File) -> io::Result<bool> {
    enter(Op::Lock)?;
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    enter(Op::Write)?;
    file.write_all_at(buf, offset)
}

/// Grows the file to `len` bytes (never shrinks it: revledger never truncates a file
/// another process may have mapped).
pub(crate) fn set_len(file: &File, len: u64) -> io::Result<()> {
    enter(Op::SetLen)?;
    let now = file.metadata()?.len();
    if len < now {
        return Err(io::Error::other(format!(
            "refusing to shrink a file from {now} to {len} bytes"
        )));
    }
    file.set_len(len)
}

/// `fdatasync`.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    enter(Op::SyncData)?;
    file.sync_data()
}

/// `fsync`.
pub(crate) fn sync_all(file: &File) -> io::Result<()> {
    enter(Op::SyncAll)?;
    file.sync_all()
}

/// Renames `from` over `to` (atomic on POSIX file systems).
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    enter(Op::Rename)?;
    std::fs::rename(from, to)
}

/// `fsync` of the directory `dir`, so that a rename or link in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    enter(Op::SyncDir)?;
    File::open(dir).and_then(|d| d.sync_all())
}

/// Creates the hard link `to` of `from`; fails if `to` exists.
pub(crate) fn hard_link(from: &Path, to: &Path) -> io::Result<()> {
    enter(Op::Link)?;
    std::fs::hard_link(from, to)
}

/// Sets `file`'s mode and, if given, its group (`fchmod`, `fchown`).
pub(crate) fn set_mode_and_group(file: &File, mode: u32, group: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    enter(Op::Chmod)?;
    if let Some(gid) = group {
        // SAFETY: a plain system call on a descriptor this `File` owns and keeps open for
        // the call; -1 leaves the owner unchanged.
        let r = unsafe { libc::fchown(file.as_raw_fd(), u32::MAX, gid) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // After fchown, which may clear set-id bits.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Reserves disk blocks for `file[offset..offset + len]`, extending the file if needed
/// (`fallocate`), so that stores through a shared mapping there cannot hit a hole on a
/// full disk (SIGBUS): the disk-full error comes from this call instead.
pub(crate) fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    enter(Op::Allocate)?;
    LARGEST_ALLOCATION.fetch_max(len, Ordering::Relaxed);
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: a plain system call on a file descriptor this `File` owns and keeps open
        // for the call; it touches no memory of this process.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads up to `buf.len()` bytes from offset 0 (fewer at the end of the file).
pub(crate) fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    enter(Op::Read)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes zeros over `file[from..to]`.
pub(crate) fn zero_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(zeros.len());
        write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
