//! The log file: creating it, locking it for the one writer, finding where its valid
//! records end (recovery), appending frames and making them durable.

use crate::error::{Error, Result};
use crate::header::{Header, HEADER_LEN, OFF_COMMITTED_LEN, OFF_SYNCED_LEN};
use crate::map::FileMap;
use crate::record::{decode_frame, Frame, Record, FRAME_ALIGN, FRAME_HEADER_LEN};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Size a new ledger file is created with (zeros after the header).
const INITIAL_FILE_LEN: u64 = 1 << 20;
/// Growth step bounds: the file grows by a quarter of its size, within these.
const MIN_GROWTH: u64 = 1 << 20;
const MAX_GROWTH: u64 = 64 << 20;

/// How the end of the valid log was found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// End of the last valid record.
    pub end: u64,
    /// Bytes after `end` that held an incomplete or damaged record and were cut off.
    pub dropped_bytes: u64,
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

/// Visits every valid frame in `bytes[from..to]` and tells where and why it stopped.
/// `to` must be a frame boundary or the end of the written log.
pub(crate) fn scan<'a>(
    bytes: &'a [u8],
    from: u64,
    to: u64,
    mut visit: impl FnMut(Record<'a>, u64),
) -> (u64, Option<&'static str>) {
    let to = (to as usize).min(bytes.len());
    let mut at = from as usize;
    while at < to {
        match decode_frame(&bytes[at..to]) {
            Frame::Valid {
                record,
                next,
                payload_at,
            } => {
                visit(record, (at + payload_at) as u64);
                at += next;
            }
            Frame::End => return (at as u64, Some("zero bytes where a record should be")),
            Frame::Invalid(why) => return (at as u64, Some(why)),
        }
    }
    (at as u64, None)
}

/// Offset of the first valid frame strictly after `after` and before `to`, if any: the
/// test that tells a torn tail (nothing valid follows) from corruption (something does).
pub(crate) fn next_valid_frame(bytes: &[u8], after: u64, to: u64) -> Option<u64> {
    let to = (to as usize).min(bytes.len());
    let mut at = (after as usize + FRAME_ALIGN).next_multiple_of(FRAME_ALIGN);
    while at + FRAME_HEADER_LEN <= to {
        if bytes[at..at + FRAME_HEADER_LEN].iter().any(|&b| b != 0)
            && matches!(decode_frame(&bytes[at..to]), Frame::Valid { .. })
        {
            return Some(at as u64);
        }
        at += FRAME_ALIGN;
    }
    None
}

fn lock_exclusive(file: &File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(Error::Locked(path.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(Error::io_path("locking", path, e)),
    }
}

/// Creates the ledger file at `path` with `header`, atomically: the file is written and
/// made durable under a temporary name, then linked into place, so no process ever sees
/// a half-written header. Returns `false` when a file already exists at `path`.
fn create_file(path: &Path, header: &Header) -> Result<bool> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.creating.{}",
        path.file_name()
            .map_or("ledger".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io_path("creating", &tmp, e))?;
    let result = (|| {
        f.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io_path("writing the header of", &tmp, e))?;
        f.set_len(INITIAL_FILE_LEN)
            .map_err(|e| Error::io_path("sizing", &tmp, e))?;
        f.sync_all()
            .map_err(|e| Error::io_path("syncing", &tmp, e))?;
        match std::fs::hard_link(&tmp, path) {
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

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync of a directory, so that a rename or link in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io_path("syncing directory", dir, e))
}

impl LogFile {
    /// Opens an existing ledger read-only.
    pub(crate) fn open_reader(path: &Path) -> Result<LogFile> {
        let file = File::open(path).map_err(|e| Error::io_path("opening", path, e))?;
        LogFile::from_file(path, file, false)
    }

    /// Opens (creating it with `new_header` if missing) and locks a ledger for writing.
    ///
    /// The file locked must still be the one at the path: a writer that compacts renames
    /// a new file over the path, and one that exits releases its lock, between our open
    /// and our lock. Then the locked file is a retired one: open the path again.
    pub(crate) fn open_writer(
        path: &Path,
        new_header: impl Fn() -> Result<Header>,
    ) -> Result<LogFile> {
        for _attempt in 0..16 {
            if !path.exists() {
                create_file(path, &new_header()?)?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| Error::io_path("opening", path, e))?;
            lock_exclusive(&file, path)?;
            if !crate::watch::is_at_path(&file, path)? {
                continue;
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

    fn from_file(path: &Path, file: File, writable: bool) -> Result<LogFile> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io_path("reading metadata of", path, e))?;
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mut head = [0u8; HEADER_LEN];
        let n = read_prefix(&file, &mut head).map_err(|e| Error::io_path("reading", path, e))?;
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

    /// Writes a complete ledger (header, `snapshot`, and `log_tail`: frames that start the
    /// new log) to `tmp`, durable and locked, ready to be renamed onto `path` by a
    /// compaction. The file takes `path`'s mode.
    pub(crate) fn create_compacted(
        tmp: &Path,
        path: &Path,
        header: &Header,
        snapshot: &[u8],
        log_tail: &[u8],
    ) -> Result<LogFile> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
        let _ = std::fs::remove_file(tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)
            .map_err(|e| Error::io_path("creating", tmp, e))?;
        let result = (|| {
            lock_exclusive(&file, tmp)?;
            let end = header.log_start + log_tail.len() as u64;
            let mut head = header.encode();
            head[OFF_COMMITTED_LEN..OFF_COMMITTED_LEN + 8].copy_from_slice(&end.to_le_bytes());
            head[OFF_SYNCED_LEN..OFF_SYNCED_LEN + 8].copy_from_slice(&end.to_le_bytes());
            let len = (end + MIN_GROWTH).next_multiple_of(MIN_GROWTH);
            file.set_len(len)
                .and_then(|()| file.write_all_at(&head, 0))
                .and_then(|()| file.write_all_at(snapshot, header.snapshot_offset))
                .and_then(|()| file.write_all_at(log_tail, header.log_start))
                .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
                .and_then(|()| file.sync_all())
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
        let bytes = self.map.bytes(written.min(file_len))?;
        let (end, stop) = scan(bytes, self.header.log_start, file_len, |_, _| {});
        let synced = self.map.synced_len();
        let committed = self.map.committed_len();
        let mut garbage_end = end;
        if let Some(why) = stop {
            garbage_end = last_nonzero_end(bytes, end);
            if !keep_valid_prefix {
                if let Some(next) = next_valid_frame(bytes, end, garbage_end) {
                    return Err(Error::corrupt(
                        end,
                        format!("{why}, followed by a valid record at offset {next}"),
                    ));
                }
                if end < synced {
                    return Err(Error::corrupt(
                        end,
                        format!("{why}, below the synced end of the log ({synced})"),
                    ));
                }
            }
        }
        if garbage_end > end {
            zero_range(&self.file, end, garbage_end)
                .map_err(|e| Error::io_path("cutting the torn tail of", &self.path, e))?;
        }
        if garbage_end > end || committed != end || synced > end {
            self.file
                .sync_data()
                .map_err(|e| Error::io_path("syncing", &self.path, e))?;
            self.map.publish_committed(end)?;
            self.map.publish_synced(end)?;
            self.file
                .sync_data()
                .map_err(|e| Error::io_path("syncing", &self.path, e))?;
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
        if need > crate::index::MAX_INDEXED_OFFSET {
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
            match crate::map::allocate(&self.file, at, target - at) {
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
            self.file
                .set_len(new_len)
                .map_err(|e| Error::io_path("growing", &self.path, e))?;
            self.map.grow_to(&self.file, new_len)?;
        }
        self.file.write_all_at(frames, at).map_err(|e| {
            // A write that failed part way (disk full, file size limit) may have left
            // whole frames past the committed end. Nothing was published, but recovery
            // scans past `committed_len` and would take them for records appended just
            // before a crash: a failed batch would come back in part. Zero what was
            // written; blocks it allocated can be overwritten without new space.
            let _ = zero_range(&self.file, at, at + frames.len() as u64);
            Error::io_path("appending to", &self.path, e)
        })
    }

    /// fdatasync of the file.
    pub(crate) fn sync_data(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io_path("syncing", &self.path, e))
    }
}

/// The size a file of `file_len` bytes grows to when `need` bytes must fit: a quarter
/// more, between 1 MiB and 64 MiB, in whole MiB.
fn grown_len(file_len: u64, need: u64) -> u64 {
    let grow = (file_len / 4).clamp(MIN_GROWTH, MAX_GROWTH);
    need.max(file_len + grow).next_multiple_of(MIN_GROWTH)
}

fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// End of the last non-zero 8-byte word at or after `from`.
fn last_nonzero_end(bytes: &[u8], from: u64) -> u64 {
    let from = from as usize;
    let tail = &bytes[from.min(bytes.len())..];
    match tail.iter().rposition(|&b| b != 0) {
        Some(p) => (from + p + 1)
            .next_multiple_of(FRAME_ALIGN)
            .min(bytes.len()) as u64,
        None => from as u64,
    }
}

fn zero_range(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 16];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}
