//! `revledger ingest`: an HTTP receiver that turns identity providers' change events into
//! revocation rules (DESIGN.md §9), written into a local ledger or published to the Redis
//! stream that `revledger sync` follows (§6). docs/INGEST.md is the operator's guide.
//!
//! One module per source format, each a pure mapping from a delivery to rules (fuzzed in
//! fuzz/) behind the authentication the source uses:
//!
//! - [`ssf`]: OpenID Shared Signals (CAEP, RISC) pushed as signed SETs (RFC 8935), or
//!   polled (RFC 8936, `ssf_poll`), keys from [`jwks`];
//! - [`auth0`]: Auth0 Log Streams (custom webhook), authenticated by a bearer secret;
//! - [`keycloak`]: Keycloak events from the webhook extensions, HMAC-signed;
//!
//! and the parts they share: [`config`] (the TOML file), [`event`] (rules, cutoffs,
//! refusals), [`sink`] (the ledger or the stream, group commit, replay window),
//! [`metrics`] (Prometheus) and the server (HTTP/TLS, limits, graceful shutdown).
//!
//! Every delivery is all or nothing: its events are mapped first, and either every rule is
//! committed in one `revoke_batch` (or one pipeline) or the delivery is refused with
//! nothing applied. Rules are idempotent and commute (§2), so a replayed or reordered
//! event changes no answer; replays are also recognised by event id and not written again.

pub mod auth0;
pub mod config;
pub mod event;
pub mod jwks;
pub mod keycloak;
pub mod metrics;
mod server;
pub mod sink;
pub mod ssf;
mod ssf_poll;

pub use server::{check_config, run, IngestError};

use subtle::ConstantTimeEq;

/// Compares a presented secret with the expected one in constant time (both are hashed
/// first, so neither the content nor the length leaks through timing).
pub(crate) fn secret_eq(presented: &[u8], expected: &[u8]) -> bool {
    use aws_lc_rs::digest::{digest, SHA256};
    let a = digest(&SHA256, presented);
    let b = digest(&SHA256, expected);
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_exactly() {
        assert!(super::secret_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!super::secret_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!super::secret_eq(b"Bearer abc ", b"Bearer abc"));
        assert!(!super::secret_eq(b"", b"x"));
    }
}
