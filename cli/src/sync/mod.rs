//! Fleet sync over Redis Streams (DESIGN.md §6, docs/SYNC.md): a permission system
//! publishes each rule as one stream entry ([`Publisher`], [`publish`], or a plain
//! `XADD`); on every host one sync process ([`Follower`], `revledger sync`) reads the
//! stream and appends the rules to the host's ledger together with the stream position
//! they bring it to, and the gateways on the host read the ledger.
//!
//! Because rules commute and are idempotent (DESIGN.md §2), reading an entry twice (after
//! a crash, a reconnection, a failover) changes no answer, so an at-least-once stream is
//! all it takes. It lives in the `revledger-cli` crate, beside the command line, so that
//! the library the gateways link (`librevledger`) carries no Redis client.
//!
//! ```no_run
//! use revledger_cli::sync::{Publisher, Trim};
//! use revledger::{now_cutoff, Rule, Scope};
//! // On the permission system: super_admin changed now.
//! let mut p = Publisher::connect("redis://127.0.0.1:6379/", "revocations", Trim::by_age(3600, 300))?;
//! let id = p.publish(&Rule::new(Scope::Role, b"acme", b"super_admin", now_cutoff()))?;
//! println!("published as entry {id}");
//! # Ok::<(), revledger_cli::sync::SyncError>(())
//! ```

mod connection;
mod follow;
pub mod message;
pub mod ops;
mod publish;
mod sign;

pub use connection::RedisConfig;
pub use follow::{Event, Follower, SyncOptions};
pub use message::Notes;
pub use publish::{publish, Publisher, Trim};
pub use sign::{signed_message, Scopes, Signer, TrustedKeys};

use std::fmt;

/// What can go wrong publishing to or following a stream.
#[derive(Debug)]
pub enum SyncError {
    /// Redis could not be reached, or refused or failed a command; or its URL is bad.
    Redis(redis::RedisError),
    /// The ledger failed, or refused an argument (a rule, a stream name).
    Ledger(revledger::Error),
    /// Redis answered something that is not what the command returns.
    Protocol(String),
    /// The entries were published, but fewer replicas than asked acknowledged them
    /// (`WAIT`): a failover could lose them. Publishing them again is harmless.
    NotReplicated {
        /// Id of the last entry published.
        last_id: revledger::StreamId,
        /// Replicas that acknowledged it.
        acked: usize,
        /// Replicas asked for.
        wanted: usize,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Redis(e) => write!(f, "redis: {e}"),
            SyncError::Ledger(e) => e.fmt(f),
            SyncError::Protocol(m) => write!(f, "unexpected answer from redis: {m}"),
            SyncError::NotReplicated {
                last_id,
                acked,
                wanted,
            } => write!(
                f,
                "entry {last_id} reached {acked} replica(s) of the {wanted} asked for in time: \
                 a failover could lose it; publish it again"
            ),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Redis(e) => Some(e),
            SyncError::Ledger(e) => Some(e),
            SyncError::Protocol(_) | SyncError::NotReplicated { .. } => None,
        }
    }
}

impl From<redis::RedisError> for SyncError {
    fn from(e: redis::RedisError) -> SyncError {
        SyncError::Redis(e)
    }
}

impl From<revledger::Error> for SyncError {
    fn from(e: revledger::Error) -> SyncError {
        SyncError::Ledger(e)
    }
}

/// `Result` with [`SyncError`].
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

/// The reasons a [`revledger::StreamPosition::degraded`] value names, in words.
pub fn degraded_reasons(bits: u8) -> Vec<&'static str> {
    use revledger::StreamPosition as P;
    [
        (P::SKIPPED, "entries that were not valid rules were skipped"),
        (P::REFUSED, "entries were refused for their signature"),
        (
            P::TRIMMED,
            "the stream was trimmed past the ledger's position",
        ),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, words)| words)
    .collect()
}

/// The URL with any password replaced by `***`, for logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!(
                "{}://{}{}***{}",
                &url[..scheme_end],
                user,
                if user.is_empty() { "" } else { ":" },
                &rest[at..]
            )
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://:s3cret@h:6379/"), "redis://***@h:6379/");
        assert_eq!(
            redact_url("rediss://app:s3cret@h:6379/"),
            "rediss://app:***@h:6379/"
        );
        assert!(!redact_url("redis://u:p@ss@h/").contains("p@ss"));
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
