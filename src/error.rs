//! The one error type of the crate. Every variant maps to one C status code.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in revledger. No function of the crate panics on bad
/// input; it returns one of these instead.
#[derive(Debug)]
pub enum Error {
    /// An argument is out of its documented range (key too long, empty key where one is
    /// required, a lifetime smaller than the ledger's, ...). Nothing was changed.
    InvalidArgument(String),
    /// The operating system refused an operation on the ledger file.
    Io {
        /// What revledger was doing.
        context: String,
        /// The error the operating system gave.
        source: io::Error,
    },
    /// The file holds bytes that cannot be a ledger written by revledger: a record whose
    /// CRC fails and that is followed by valid records, a header whose checksum fails.
    Corrupt {
        /// Byte offset in the file of the first bad byte range.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Another writer holds the ledger's exclusive lock.
    Locked(PathBuf),
    /// A write was asked of a handle opened read-only.
    ReadOnly,
    /// The file is not a revledger ledger, or one of a version this build cannot read.
    Incompatible(String),
    /// A bug in revledger (a caught panic at the C boundary, an invariant that broke).
    Internal(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Result` with a boxed [`Error`], for the check's hot path: a `Verdict` or an
/// `Option<i64>` and the error fit in 16 bytes, where a `Result<Verdict>` takes 40 and
/// was copied through the stack at every step (the error is rare).
pub(crate) type LeanResult<T> = std::result::Result<T, Box<Error>>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io_path(what: &str, path: &Path, source: io::Error) -> Error {
        Error::io(format!("{what} {}", path.display()), source)
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn corrupt(offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Io { context, source } => write!(f, "I/O error: {context}: {source}"),
            Error::Corrupt { offset, reason } => {
                write!(f, "ledger corrupt at byte offset {offset}: {reason}")
            }
            Error::Locked(p) => write!(
                f,
                "ledger {} is locked by another writer (one writer per ledger)",
                p.display()
            ),
            Error::ReadOnly => write!(
                f,
                "this handle was opened read-only; open a writer to revoke"
            ),
            Error::Incompatible(m) => write!(f, "incompatible file: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Verdict;

    #[test]
    fn the_check_results_are_16_bytes() {
        assert_eq!(std::mem::size_of::<LeanResult<Verdict>>(), 16);
        assert_eq!(std::mem::size_of::<LeanResult<Option<i64>>>(), 16);
    }
}
