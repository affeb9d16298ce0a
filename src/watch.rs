//! How a handle notices that its file is no longer the ledger at its path (DESIGN.md §3,
//! fail closed): the file was deleted, replaced by another file, or truncated by another
//! process.
//!
//! The check is a `stat` of the path and an `fstat` of the open file, compared by device
//! and inode. It costs two system calls, so it never runs on every check: a reader runs
//! it when the kernel notices a change at its path (src/notices.rs), on
//! [`Ledger::refresh`](crate::Ledger::refresh) and on one check in every [`CHECK_EVERY`]
//! made by a thread (a thread-local countdown: no clock read and no shared write on the
//! check path); a writer runs it before every `sync` and every compaction. What it finds:
//!
//! - the same file: nothing to do, unless the file shrank (another process truncated it,
//!   which revledger never does): the handle is lost (`Corrupt`);
//! - no file: the handle is lost (`Io`, not found);
//! - another file that is this ledger compacted (same hash seed, later generation): a
//!   reader follows it, as it does when it sees the `retired` mark;
//! - any other file: the handle is lost (`Io`).
//!
//! A writer whose `fdatasync` failed is lost too (`Io`): a later `fdatasync` could
//! return success for pages the kernel already dropped, so it stops vouching.
//!
//! A lost handle answers every later call with the error (fail closed) until it is
//! closed; open the ledger again to use the file now at the path.

use crate::error::{Error, Result};
use crate::header::{Header, HEADER_LEN};
use crate::log::LogFile;
use parking_lot::Mutex;
use std::cell::Cell;
use std::fs::{File, Metadata};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// A thread verifies its handle's file on one check in this many. Prime, so that a
/// thread cycling through several handles still verifies each of them in turn.
pub const CHECK_EVERY: u32 = 4093;

thread_local! {
    static COUNTDOWN: Cell<u32> = const { Cell::new(CHECK_EVERY) };
}

/// Whether this check is the one in [`CHECK_EVERY`] that verifies the file.
#[inline]
pub(crate) fn due() -> bool {
    COUNTDOWN.with(|c| {
        let n = c.get();
        if n == 0 {
            c.set(CHECK_EVERY);
            true
        } else {
            c.set(n - 1);
            false
        }
    })
}

fn id(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// `path` made absolute against the current directory (symbolic links are kept, not
/// resolved): a handle keeps naming the same file when its process changes directory, as
/// daemons do after opening their files.
pub(crate) fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| Error::io_path("resolving", path, e))
}

/// Whether `file` is the file `path` names now.
pub(crate) fn is_at_path(file: &File, path: &Path) -> Result<bool> {
    let ours = file
        .metadata()
        .map_err(|e| Error::io_path("reading metadata of", path, e))?;
    match std::fs::metadata(path) {
        Ok(m) => Ok(id(&m) == id(&ours)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io_path("reading metadata of", path, e)),
    }
}

/// Whether two open files are the same file.
pub(crate) fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => id(&a) == id(&b),
        _ => false,
    }
}

/// Where a handle's file stands with respect to its path.
pub(crate) enum PathState {
    /// The file is the one at the path, whole.
    Current,
    /// A compaction of this ledger replaced it: a reader opens the path again.
    Compacted,
    /// The handle can no longer answer for the ledger at the path.
    Lost(Lost),
}

/// Why a handle stopped answering. Kept by the handle and turned into an [`Error`] at
/// each call (an `io::Error` cannot be cloned).
#[derive(Clone, Debug)]
pub(crate) enum Lost {
    Deleted(String),
    Replaced(String),
    Truncated {
        offset: u64,
        why: String,
    },
    /// A writer's recovery (`keep_valid_prefix`) cut the log below what this reader had
    /// read: it answered from records that are gone.
    Cut {
        offset: u64,
        why: String,
    },
    /// A writer's fdatasync failed: what it committed may not be durable, and a later
    /// fdatasync cannot tell (the kernel may have dropped the pages).
    SyncFailed(String),
}

impl Lost {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Lost::Deleted(m) => Error::io(m.clone(), io::Error::from(ErrorKind::NotFound)),
            Lost::Replaced(m) => Error::io(m.clone(), io::Error::other("file replaced")),
            Lost::Truncated { offset, why } | Lost::Cut { offset, why } => {
                Error::corrupt(*offset, why.clone())
            }
            Lost::SyncFailed(m) => Error::io(
                format!(
                    "an earlier sync failed ({m}); records since the last successful sync \
                     may not be durable. Close and reopen the ledger"
                ),
                io::Error::other("sync failed earlier"),
            ),
        }
    }
}

impl LogFile {
    /// Compares the file at the path with this open file (two system calls; a header read
    /// when they differ).
    pub(crate) fn path_state(&self) -> Result<PathState> {
        let path = &self.path;
        let ours = self
            .file
            .metadata()
            .map_err(|e| Error::io_path("reading metadata of", path, e))?;
        let there = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(PathState::Lost(Lost::Deleted(format!(
                    "the ledger file {} was deleted; reopen the ledger once it exists again",
                    path.display()
                ))))
            }
            Err(e) => return Err(Error::io_path("reading metadata of", path, e)),
        };
        if id(&there) == id(&ours) {
            let mapped = self.map.known_file_len();
            if ours.len() < mapped {
                return Ok(PathState::Lost(Lost::Truncated {
                    offset: ours.len(),
                    why: format!(
                        "the ledger file {} was truncated by another process from {mapped} to \
                         {} bytes; revledger never truncates a ledger (docs/FORMAT.md §7)",
                        path.display(),
                        ours.len()
                    ),
                }));
            }
            return Ok(PathState::Current);
        }
        if self.is_compacted_into(path) {
            return Ok(PathState::Compacted);
        }
        Ok(PathState::Lost(Lost::Replaced(format!(
            "the ledger file {} was replaced by another file (not by a compaction of this \
             ledger); reopen the ledger",
            path.display()
        ))))
    }

    /// Whether the file at `path` is this ledger after a compaction: a valid header with
    /// the same hash seed and a later generation.
    fn is_compacted_into(&self, path: &Path) -> bool {
        let mut head = [0u8; HEADER_LEN];
        // Without blocking (a FIFO put at the path); not through `io`, whose calls are
        // the ledger's own: this runs on the notices' thread too.
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .and_then(|mut f| f.read_exact(&mut head));
        match read.ok().and_then(|()| Header::decode(&head).ok()) {
            Some(h) => {
                h.hash_seed == self.header.hash_seed && h.generation > self.header.generation
            }
            None => false,
        }
    }
}

/// A handle's lost state: set once, read on every slow path.
#[derive(Default)]
pub(crate) struct LostFlag {
    set: AtomicBool,
    why: Mutex<Option<Lost>>,
}

impl LostFlag {
    /// Whether the handle is lost (one relaxed load: the check path's cost).
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Marks the handle lost and returns the error to report.
    pub(crate) fn set(&self, why: Lost) -> Error {
        let e = why.to_error();
        let mut slot = self.why.lock();
        if slot.is_none() {
            *slot = Some(why);
        }
        self.set.store(true, Ordering::Release);
        e
    }

    /// The error of a lost handle, `Ok` otherwise.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.is_set() {
            return Ok(());
        }
        match &*self.why.lock() {
            Some(why) => Err(why.to_error()),
            None => Ok(()),
        }
    }
}
