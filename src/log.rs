//! The ledger file: creating it, locking it for the one writer, finding where its valid
//! records end (recovery), appending frames and making them durable.

use crate::error::{Error, Result};
use crate::header::{Header, HEADER_LEN};
use crate::io;
use crate::map::{FileMap, LogBytes};
use crate::record::{decode_frame, Frame, Record, FRAME_ALIGN, FRAME_HEADER_LEN};
use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Size a new ledger file is created with (zeros after the header).
const INITIAL_FILE_LEN: u64 = 1 << 20;
/// Growth step bounds: the file grows by a quarter of its size, within these.
const MIN_GROWTH: u64 = 1 << 20;
const MAX_GROWTH: u64 = 64 << 20;
/// Largest file offset the index can hold (1 TiB): the ledger refuses to grow past it.
pub const MAX_LOG_LEN: u64 = (1 << 40) - 1;

/// How the end of the valid log was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// End of the last valid record.
    pub end: u64,
    /// Bytes after `end` that held an incomplete or damaged record and were cut off.
    pub dropped_bytes: u64,
}

/// The mode and group of the files a writer creates (the ledger, its index, the files a
/// compaction writes). Every rewrite keeps them (DESIGN.md §3, Files and users).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileAccess {
    pub(crate) mode: u32,
    /// `None`: the creating process's group.
    pub(crate) group: Option<u32>,
}

impl FileAccess {
    /// The mode and group of an existing file.
    pub(crate) fn of(file: &File) -> std::io::Result<FileAccess> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(FileAccess {
            mode: m.mode() & 0o7777,
            group: Some(m.gid()),
        })
    }

    /// Gives `file` this mode and group.
    pub(crate) fn apply(&self, file: &File) -> std::io::Result<()> {
        io::set_mode_and_group(file, self.mode, self.group)
    }
}

/// An open ledger file and its mapping.
pub(crate) struct LogFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) map: FileMap,
    pub(crate) header: Header,
    /// Writer: the file's blocks are allocated (fallocate) below this offset, so frames
    /// below it are copied straight into the mapping; 0 until the first append.
    allocated: AtomicU64,
    /// Writer: false once the file system refused fallocate; appends then use pwrite.
    mapped_writes: AtomicBool,
}

/// Visits every valid frame in `log` between the file offsets `from` and `to`, and tells
/// where and why it stopped. `to` must be a frame boundary or the end of the written log.
pub(crate) fn scan<'a>(
    log: LogBytes<'a>,
    from: u64,
    to: u64,
    mut visit: impl FnMut(Record<'a>, u64),
) -> (u64, Option<&'static str>) {
    let to = to.min(log.end());
    let mut at = from;
    while at < to {
        let frame = log.range(at, to);
        match decode_frame(frame) {
            Frame::Valid {
                record,
                next,
                payload_at,
            } => {
                visit(record, at + payload_at as u64);
                at += next as u64;
            }
            Frame::End => return (at, Some("zero bytes where a record should be")),
            Frame::Invalid(why) => return (at, Some(why)),
        }
    }
    (at, None)
}

/// Offset of the first valid frame strictly after `after` and before `to`, if any: the
/// test that tells a torn tail (nothing valid follows) from corruption (something does).
pub(crate) fn next_valid_frame(log: LogBytes<'_>, after: u64, to: u64) -> Option<u64> {
    let to = to.min(log.end());
    let mut at = (after + FRAME_ALIGN as u64).next_multiple_of(FRAME_ALIGN as u64);
    while at + FRAME_HEADER_LEN as u64 <= to {
        let b = log.range(at, to);
        if b[..FRAME_HEADER_LEN].iter().any(|&x| x != 0)
            && matches!(decode_frame(b), Frame::Valid { .. })
        {
            return Some(at);
        }
        at += FRAME_ALIGN as u64;
    }
    None
}

fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    match io::try_lock(file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Locked(path.to_path_buf())),
        Err(e) => Err(Error::io_path("locking", path, e)),
    }
}

/// The name of a temporary file beside `path`: `.<name>.<what>`.
pub(crate) fn sibling(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map_or("ledger".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(path).join(format!(".{name}.{what}"))
}

/// Creates the ledger file at `path` with `header`, atomically: the file is written and
/// made durable under a temporary name, then linked into place, so no process ever sees
/// a half-written header. Returns `false` when a file already exists at `path`.
fn create_file(path: &Path, header: &Header, access: FileAccess) -> Result<bool> {
    let dir = parent_dir(path);
    let tmp = sibling(path, &format!("creating.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let f = io::create(&tmp, 0o600).map_err(|e| Error::io_path("creating", &tmp, e))?;
    let result = (|| {
        access
            .apply(&f)
            .map_err(|e| Error::io_path("setting the mode and group of", &tmp, e))?;
        io::write_all_at(&f, &header.encode(header.log_start), 0)
            .map_err(|e| Error::io_path("writing the header of", &tmp, e))?;
        io::set_len(&f, INITIAL_FILE_LEN).map_err(|e| Error::io_path("sizing", &tmp, e))?;
        io::sync_all(&f).map_err(|e| Error::io_path("syncing", &tmp, e))?;
        match io::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io_path("creating", path, e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    let created = result?;
    if created {
        sync_dir(&dir)?;
    }
    Ok(created)
}

/// Removes the `.<name>.creating.<pid>` files that crashed creations left behind (the
/// creating process is gone; a live one's file is never removed).
pub(crate) fn remove_stale_creations(path: &Path) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.creating.");
    let Ok(entries) = std::fs::read_dir(parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid
            .parse::<i32>()
            .is_ok_and(|pid| pid == std::process::id() as i32 || process_alive(pid));
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync of a directory, so that a rename or link in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    io::sync_dir(dir).map_err(|e| Error::io_path("syncing directory", dir, e))
}

/// Refuses anything but a regular file at a ledger's path (a directory, a FIFO, a device)
/// before a byte of it is read: an `Io` error, as the writer's `open(2)` of a directory
/// gives, since what is wrong is the file.
fn regular_file(file: &File, path: &Path) -> Result<()> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io_path("reading metadata of", path, e))?;
    if !meta.is_file() {
        return Err(Error::io_path(
            "opening",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    Ok(())
}

impl LogFile {
    /// Opens an existing ledger read-only.
    pub(crate) fn open_reader(path: &Path) -> Result<LogFile> {
        let file = io::open(path, false).map_err(|e| Error::io_path("opening", path, e))?;
        regular_file(&file, path)?;
        LogFile::from_file(path, file, false)
    }

    /// Opens (creating it with `new_header` and `access` if missing) and locks a ledger
    /// for writing. `existing` sees the file before it is read as a ledger: the writer
    /// upgrades a file of an older format there.
    ///
    /// The file locked must still be the one at the path: a writer that compacts renames
    /// a new file over the path, and one that exits releases its lock, between our open
    /// and our lock. Then the locked file is a retired one: open the path again.
    pub(crate) fn open_writer(
        path: &Path,
        new_header: impl Fn() -> Result<Header>,
        access: FileAccess,
        mut existing: impl FnMut(&File) -> Result<bool>,
    ) -> Result<LogFile> {
        for _attempt in 0..16 {
            if !path.exists() {
                create_file(path, &new_header()?, access)?;
            }
            let file = io::open(path, true).map_err(|e| Error::io_path("opening", path, e))?;
            regular_file(&file, path)?;
            lock_exclusive(&file, path)?;
            if !crate::watch::is_at_path(&file, path)? {
                continue;
            }
            if existing(&file)? {
                continue; // replaced (upgraded) under our lock: open the new file
            }
            let log = LogFile::from_file(path, file, true)?;
            if log.map.retired() {
                // At its path, so current by definition: a copy of a retired file was put
                // back. Readers that saw the mark report an error until it is cleared.
                log.map.clear_retired()?;
            }
            return Ok(log);
        }
        Err(Error::io_path(
            "locking",
            path,
            std::io::Error::other("the file at the path keeps being replaced"),
        ))
    }

    /// `file` is a regular file (both openers make sure before anything else).
    fn from_file(path: &Path, file: File, writable: bool) -> Result<LogFile> {
        let mut head = [0u8; HEADER_LEN];
        let n =
            io::read_prefix(&file, &mut head).map_err(|e| Error::io_path("reading", path, e))?;
        let header = Header::decode(&head[..n])?;
        let map = FileMap::new(&file, writable)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            map,
            header,
            allocated: AtomicU64::new(0),
            mapped_writes: AtomicBool::new(true),
        })
    }

    /// Creates the file `tmp` for a compaction of the ledger at `path`: locked, with
    /// `header`, `access`, and `frames` as the start of its log, written but not yet
    /// synced (the caller syncs once it has appended what it catches up).
    pub(crate) fn create_compacted(
        tmp: &Path,
        path: &Path,
        header: &Header,
        frames: &[u8],
        access: FileAccess,
    ) -> Result<LogFile> {
        let _ = std::fs::remove_file(tmp);
        let file = io::create(tmp, 0o600).map_err(|e| Error::io_path("creating", tmp, e))?;
        let result = (|| {
            lock_exclusive(&file, tmp)?;
            access
                .apply(&file)
                .map_err(|e| Error::io_path("setting the mode and group of", tmp, e))?;
            let end = header.log_start + frames.len() as u64;
            let len = (end + MIN_GROWTH).next_multiple_of(MIN_GROWTH);
            io::set_len(&file, len)
                .and_then(|()| io::write_all_at(&file, &header.encode(end), 0))
                .and_then(|()| io::write_all_at(&file, frames, header.log_start))
                .map_err(|e| Error::io_path("writing", tmp, e))?;
            let map = FileMap::new(&file, true)?;
            Ok(LogFile {
                path: path.to_path_buf(),
                file,
                map,
                header: header.clone(),
                allocated: AtomicU64::new(0),
                mapped_writes: AtomicBool::new(true),
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        result
    }

    /// Writer only: finds the end of the valid log, cuts off a torn tail (zeroing it, so
    /// that no stale frame can reappear behind new ones), and publishes that end.
    /// With `keep_valid_prefix`, corruption is cut off like a torn tail instead of failing.
    pub(crate) fn recover(&self, keep_valid_prefix: bool) -> Result<Recovery> {
        let file_len = self.map.refresh_len(&self.file)?;
        // Only the written part of the file is read through the mapping: past it are holes
        // (preallocated space), all zeros, and on tmpfs a read fault on a hole allocates a
        // page, which on a full tmpfs is SIGBUS. Nothing past the written part can hold a
        // frame, so the result is the same.
        let written = crate::map::data_end(&self.file, file_len).max(self.header.log_start);
        let log = self.map.log(written.min(file_len))?;
        let (end, stop) = scan(log, self.header.log_start, file_len, |_, _| {});
        let synced = self.map.synced_len();
        let committed = self.map.committed_len();
        let mut garbage_end = end;
        if let Some(why) = stop {
            garbage_end = last_nonzero_end(log, end);
            // Damage below the synced end is corruption: those records were durable.
            // Past it, it is what a crash leaves, even when valid frames follow (a disk
            // that reorders writes may keep a later unsynced frame and lose an earlier
            // one): the log is the prefix before it (DESIGN.md §3), as for a torn tail.
            if !keep_valid_prefix && end < synced {
                let why = match next_valid_frame(log, end, garbage_end) {
                    Some(next) => format!("{why}, followed by a valid record at offset {next}"),
                    None => format!("{why}, below the synced end of the log ({synced})"),
                };
                return Err(Error::corrupt(end, why));
            }
        }
        if garbage_end > end || committed != end || synced > end {
            // Publish the shorter end first: a reader must stop reading records before
            // they are erased, never read bytes that are being zeroed. Readers that
            // judged the old end (a torn tail) judge again.
            self.map.publish_committed(end)?;
            self.map.publish_recovery(end)?;
            self.map.publish_synced(end.min(synced))?;
            if garbage_end > end {
                io::zero_range(&self.file, end, garbage_end)
                    .map_err(|e| Error::io_path("cutting the torn tail of", &self.path, e))?;
            }
            self.sync_data()?;
            self.map.publish_synced(end)?;
            self.sync_data()?;
        }
        Ok(Recovery {
            end,
            dropped_bytes: garbage_end - end,
        })
    }

    /// Writes `frames` at `at` (the committed end), growing the file first if needed.
    /// Does not publish: the caller does, once the bytes are in place.
    ///
    /// Frames are copied into the shared mapping (no system call per append) over blocks
    /// that `fallocate` reserved when the file grew, so a full disk is an error at growth,
    /// never a SIGBUS at the copy. Where the file system has no fallocate, `pwrite`.
    pub(crate) fn write_at(&self, at: u64, frames: &[u8]) -> Result<()> {
        let need = at + frames.len() as u64;
        if need > MAX_LOG_LEN {
            return Err(Error::invalid(
                "ledger file reached its 1 TiB limit; compact it",
            ));
        }
        if self.mapped_writes.load(Ordering::Relaxed)
            && need > self.allocated.load(Ordering::Relaxed)
        {
            let file_len = self.map.known_file_len();
            let target = if need > file_len {
                grown_len(file_len, need)
            } else {
                file_len
            };
            match io::allocate(&self.file, at, target - at) {
                Ok(()) => {
                    self.map.grow_to(&self.file, target)?;
                    self.allocated.store(target, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                    ) =>
                {
                    self.mapped_writes.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(Error::io_path("growing", &self.path, e)),
            }
        }
        if self.mapped_writes.load(Ordering::Relaxed) {
            return self.map.write_past_committed(at, frames);
        }
        let file_len = self.map.known_file_len();
        if need > file_len {
            let new_len = grown_len(file_len, need);
            io::set_len(&self.file, new_len)
                .map_err(|e| Error::io_path("growing", &self.path, e))?;
            self.map.grow_to(&self.file, new_len)?;
        }
        io::write_all_at(&self.file, frames, at).map_err(|e| {
            // A write that failed part way (disk full, file size limit) may have left
            // whole frames past the committed end. Nothing was published, but recovery
            // scans past `committed_len` and would take them for records appended just
            // before a crash: a failed batch would come back in part. Zero what was
            // written; blocks it allocated can be overwritten without new space.
            let _ = io::zero_range(&self.file, at, at + frames.len() as u64);
            Error::io_path("appending to", &self.path, e)
        })
    }

    /// fdatasync of the file.
    pub(crate) fn sync_data(&self) -> Result<()> {
        io::sync_data(&self.file).map_err(|e| Error::io_path("syncing", &self.path, e))
    }
}

/// The size a file of `file_len` bytes grows to when `need` bytes must fit: a quarter
/// more, between 1 MiB and 64 MiB, in whole MiB.
fn grown_len(file_len: u64, need: u64) -> u64 {
    let grow = (file_len / 4).clamp(MIN_GROWTH, MAX_GROWTH);
    need.max(file_len + grow).next_multiple_of(MIN_GROWTH)
}

/// End of the last non-zero 8-byte word at or after `from`.
fn last_nonzero_end(log: LogBytes<'_>, from: u64) -> u64 {
    let tail = log.range(from, log.end());
    match tail.iter().rposition(|&b| b != 0) {
        Some(p) => (from + p as u64 + 1)
            .next_multiple_of(FRAME_ALIGN as u64)
            .min(log.end()),
        None => from,
    }
}
