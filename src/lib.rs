//! revledger: instant revocation of JWT access tokens.
//!
//! The permission system records "scope S changed at time T" ([`Rule`]); every gateway
//! process asks "is this token revoked?" ([`Ledger::check`]) and gets an answer from a
//! memory-mapped, append-only ledger file in nanoseconds, as soon as the writer commits.
//!
//! ```
//! use revledger::{Ledger, WriterOptions, Rule, Scope, Token, Verdict};
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("revocations.ledger");
//! let writer = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600))?;
//! let reader = Ledger::open_reader(&path)?;
//!
//! // super_admin's permissions changed at t=1000: tokens carrying it issued before go.
//! writer.revoke(&Rule::new(Scope::Role, b"acme", b"super_admin", 1000))?;
//!
//! let roles: &[&[u8]] = &[b"super_admin", b"billing"];
//! let john = Token { tenant: b"acme", subject: b"john", roles, issued_at: 900, ..Token::default() };
//! assert_eq!(reader.check(&john)?, Verdict::Revoked { scope: Scope::Role, cutoff: 1000 });
//! let bruce = Token { tenant: b"acme", subject: b"bruce", issued_at: 900, ..Token::default() };
//! assert_eq!(reader.check(&bruce)?, Verdict::Valid);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The data path reads top to bottom: [`record`] (bytes of one rule) → `log` (the file,
//! recovery, appends) → `index` (the shared index the writer keeps and every process
//! maps) and `tail` (a process's own index of what the shared one does not hold yet) →
//! `check` (the verdict), tied together by [`Ledger`]; `compact` is what the writer does
//! in the background (index growth, compaction). All `unsafe` mapping code lives in
//! `map`; every file-system call goes through `io`.

mod check;
pub mod claims;
mod compact;
mod error;
pub mod ffi;
mod hash;
pub mod header;
mod index;
mod io;
mod ledger;
mod log;
mod map;
mod notices;
mod position;
pub mod record;
mod rule;
mod tail;
mod v1;
mod watch;

pub use claims::ClaimMapping;
pub use error::{Error, Result};
pub use ledger::{
    CompactStats, CompactionPolicy, Ledger, Stats, WriterOptions, AUTO_COMPACT_MIN_RECORDS,
    INDEX_MIN_KEYS,
};
pub use log::Recovery;
pub use position::{StreamId, StreamPosition};
pub use rule::{now_cutoff, unix_now_floor, Rule, Scope, Token, Verdict, MAX_KEY_LEN, MAX_ROLES};
pub use watch::CHECK_EVERY as PATH_CHECK_EVERY;

/// Fault injection at every file-system call, for tests (not part of the supported API).
#[doc(hidden)]
pub mod testing {
    pub use crate::io::testing::*;

    /// Makes the next call of the C export `function` (e.g. `"revledger_check"`) panic
    /// inside its panic boundary, once (`None` disarms); `false` for an unknown name. The
    /// same as `revledger_testing_panic_in` from C.
    pub fn panic_in(function: Option<&str>) -> bool {
        crate::ffi::arm_test_panic(function)
    }

    /// The ledger header's `hash_check` for `hash_seed` (docs/FORMAT.md §2.1): what a
    /// fuzzer writes into a crafted header so that this build accepts it.
    pub fn hash_check(hash_seed: [u8; 16]) -> u64 {
        crate::hash::Hasher::new(hash_seed).check_value()
    }

    /// This boot's id as the index file stores it (`boot_id`, docs/FORMAT.md §4.1): what
    /// a fuzzer writes into a crafted index so that readers trust it.
    pub fn boot_id() -> (u64, u64) {
        crate::index::boot_id()
    }
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The crate version, as `revledger_version()` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
