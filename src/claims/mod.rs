//! Claim mappings (DESIGN.md §7): from a JWT's payload to the [`Token`] to check.
//!
//! Gateways hold a verified JWT, not a [`Token`]. A [`ClaimMapping`] says where each part
//! of the token to check is found in the payload; [`Ledger::check_claims`] reads a
//! payload through it and [`Ledger::check_jwt`] first decodes the payload of a compact
//! JWS.
//!
//! **`check_jwt` does not verify the signature.** It base64url-decodes the payload and
//! reads it; the header and the signature are not looked at. It is a deny layer that
//! runs *after* authentication (the JWT library, gateway module or identity proxy that
//! verified the signature, `exp` and `aud`), never instead of it: a forged token is
//! "valid" to revledger as long as no rule revokes what it claims.
//!
//! # Built-in mappings
//!
//! Sources in order; for tenant, subject, client, session and token id the first present
//! wins; roles are the union of every source.
//!
//! | spec | tenant | subject | roles | client | session | token id |
//! |---|---|---|---|---|---|---|
//! | `generic` | `tenant`, `tid`, `org_id` | `sub` | `roles`, `groups`, `permissions`, `scope`, `scp` | `azp`, `client_id`, `appid` | `sid` | `jti`, `uti` |
//! | `auth0` | `org_id` | `sub` | `permissions`, every top-level claim whose name ends in `/roles`, `scope` | `azp` | `sid` | `jti` |
//! | `keycloak` | `iss` | `sub` | `realm_access.roles`, every `resource_access.<client>.roles`, `groups`, `scope` (key forms below) | `azp` | `sid` | `jti` |
//! | `entra` | `tid` | `oid` | `roles`, `groups`, `wids`, `scp` | `azp`, `appid` | `sid` | `uti` |
//!
//! `iat` is always required. Every mapping reads it from `iat` (a pointer spec may name
//! other places).
//!
//! # Pointer specs
//!
//! Any other spec is a JSON object naming, for each part, a list of JSON Pointers
//! (RFC 6901) into the payload, first present wins:
//!
//! ```json
//! {"tenant": ["/tid", "/org/id"], "subject": ["/sub"],
//!  "roles": ["/realm_access/roles", "/resource_access/*/roles", "/scope"],
//!  "client": ["/azp"], "session": ["/sid"], "token_id": ["/jti"], "iat": ["/iat"]}
//! ```
//!
//! Fields: `tenant`, `subject` (or `sub`), `roles`, `client` (or `azp`, `client_id`),
//! `session` (or `sid`), `token_id` (or `jti`), `iat` (or `issued_at`; default
//! `["/iat"]`). An omitted part is never read. A field may be a single pointer instead
//! of a list, never an empty list, and a spec names at least one part besides `iat`
//! (either would read nothing, and let every token its rules name pass as valid). A reference token that is exactly `*` matches every member of an object
//! or every element of an array (one `*` per pointer; a member literally named `*`
//! cannot be addressed). A pointer must not end where another one goes on (`/a` with
//! `/a/b`). Pointer specs take entitlement strings as they are (no Keycloak key forms).
//! Limits: [`MAX_POINTERS_PER_PART`] pointers per part, [`MAX_POINTER_DEPTH`] tokens per
//! pointer, [`MAX_SPEC_LEN`] bytes of spec.
//!
//! # Reading a payload
//!
//! - Tenant, subject, client, session and token id must be strings; roles sources an
//!   array of strings or a string. A string at `scope` or `scp` (for a pointer spec: a
//!   pointer whose last token is `scope` or `scp`) is split on spaces (any ASCII
//!   whitespace); any other string is one entitlement. `iat` must be a JSON number of
//!   Unix seconds (a fraction is rounded down: the token counts as older, fail closed).
//! - A claim set to `null` is absent. A claim of the wrong type, a payload that is not a
//!   JSON object (or not valid JSON, or with bytes after it), no `iat`, a single-valued
//!   claim (tenant, subject, client, session, token id, `iat`) found twice at the source
//!   that wins (a duplicate member name, or a pointer's `*` matching twice, in any order
//!   of the members; a source that does not win may repeat; roles sources just add up)
//!   are [`Error::InvalidArgument`](crate::Error::InvalidArgument) with a message that names
//!   the claim, e.g. `claim "realm_access/roles" must be an array of strings or a string,
//!   found a number`: a gateway fails closed (401) on it.
//! - Limits: [`MAX_CLAIMS_LEN`] bytes of JSON ([`MAX_JWT_LEN`] bytes of JWT), at most
//!   [`MAX_ROLES`](crate::MAX_ROLES) entitlements (duplicates included), every key at
//!   most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes, nesting at most 200 levels.
//!
//! # Key forms
//!
//! Whoever publishes rules (by hand, `revledger ingest`, an identity provider's events)
//! must use the keys the mapping produces:
//!
//! - Every key is the claim's string as it is (UTF-8 bytes after JSON unescaping), except
//!   in the `keycloak` mapping's roles.
//! - `keycloak`: every entitlement string (realm role, group, scope) is escaped, `%` →
//!   `%25` and `:` → `%3A` ([`keycloak_escape`]); a client role of
//!   `resource_access.<client>.roles` is keyed `esc(client) ":" esc(role)`
//!   ([`keycloak_role_key`]). A realm role never holds a raw `:` and a client role
//!   exactly one, so `{"realm_access":{"roles":["a:b"]}}` (key `a%3Ab`) and the role `b`
//!   of client `a` (key `a:b`) never meet. The tenant is the `iss` string as it appears
//!   in the token (e.g. `https://sso.example.com/realms/acme`).
//!
//! # Why jiter
//!
//! The payload is read by [jiter](https://docs.rs/jiter) (pydantic's JSON parser), used
//! as a pull parser: one pass over the bytes, claims the mapping does not name are
//! skipped without being decoded, and the strings it reads come back as ranges of the
//! payload, so a check allocates nothing (strings with JSON escapes and Keycloak key
//! forms go to a small stack buffer). serde_json would build a map or need a visitor per
//! shape; simd-json builds a tape. The payload is decoded by
//! [base64-simd](https://docs.rs/base64-simd) (the AWS SDK's base64; SSSE3/AVX2 chosen at
//! run time), about 4× the `base64` crate on a 1 KB token, into a stack buffer for
//! payloads up to 2 KiB: DESIGN §5 gives decode + map + check 1 µs.

mod jwt;
mod read;
mod spec;

use crate::error::Result;
use crate::ledger::Ledger;
use crate::rule::{Token, Verdict};
use std::borrow::Cow;

pub use spec::{BUILTIN_SPECS, MAX_POINTERS_PER_PART, MAX_POINTER_DEPTH, MAX_SPEC_LEN};

/// Longest JWT payload (decoded JSON) accepted, in bytes.
pub const MAX_CLAIMS_LEN: usize = 64 * 1024;

/// Longest compact JWS accepted by `check_jwt`, in bytes.
pub const MAX_JWT_LEN: usize = 128 * 1024;

/// A compiled claim mapping: where each part of the token to check is found in a JWT
/// payload. Immutable; share one between threads.
#[derive(Debug)]
pub struct ClaimMapping {
    compiled: spec::Compiled,
}

impl ClaimMapping {
    /// Compiles `spec`: a built-in name (`generic`, `auth0`, `keycloak`, `entra`) or the
    /// JSON text of a pointer spec (see the [module docs](self)). An unknown name or a
    /// misshapen spec is [`Error::InvalidArgument`](crate::Error::InvalidArgument) saying
    /// what is wrong.
    pub fn new(spec: &str) -> Result<ClaimMapping> {
        Ok(ClaimMapping {
            compiled: spec::compile(spec)?,
        })
    }

    /// The built-in name, or `custom` for a pointer spec.
    pub fn name(&self) -> &str {
        &self.compiled.name
    }

    /// Reads `json`, a JWT payload, and calls `f` with the token to check (its byte
    /// strings borrow from `json` or from the stack). Errors as described in the
    /// [module docs](self); `f` is not called then.
    pub fn with_claims<R>(&self, json: &[u8], f: impl FnOnce(&Token<'_>) -> R) -> Result<R> {
        read::with_token(&self.compiled, json, f)
    }

    /// Decodes the payload of `jwt`, a compact JWS `header.payload.signature`, and calls
    /// `f` with the token to check. **The signature is not verified** (nor is the header
    /// read): call this only on a token that was authenticated before.
    pub fn with_jwt<R>(&self, jwt: &[u8], f: impl FnOnce(&Token<'_>) -> R) -> Result<R> {
        jwt::with_payload(jwt, |json| self.with_claims(json, f))
    }
}

impl std::fmt::Display for ClaimMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ClaimMapping {
    type Err = crate::Error;
    fn from_str(spec: &str) -> Result<ClaimMapping> {
        ClaimMapping::new(spec)
    }
}

impl Ledger {
    /// Is the token whose JWT payload is `json` revoked? Reads the payload through
    /// `mapping` and checks the token. A payload the mapping cannot read (not a JSON
    /// object, no `iat`, a claim of the wrong type, over a limit) is
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the claim.
    pub fn check_claims(&self, mapping: &ClaimMapping, json: &[u8]) -> Result<Verdict> {
        mapping.with_claims(json, |token| self.check(token))?
    }

    /// Is the token `jwt` (a compact JWS `header.payload.signature`) revoked? Decodes the
    /// payload (base64url) and does [`check_claims`](Ledger::check_claims).
    ///
    /// **The signature is NOT verified.** This is a deny layer after authentication,
    /// never instead of it: verify the token first (signature, `exp`, `aud`), then ask
    /// whether it was revoked.
    pub fn check_jwt(&self, mapping: &ClaimMapping, jwt: &[u8]) -> Result<Verdict> {
        mapping.with_jwt(jwt, |token| self.check(token))?
    }
}

/// The decoded payload (JSON bytes) of a compact JWS, without verifying anything.
pub fn jwt_payload(jwt: &[u8]) -> Result<Vec<u8>> {
    jwt::payload(jwt)
}

/// The Keycloak escape of one byte, if it has one.
#[inline]
pub(crate) fn escaped(c: u8) -> Option<&'static [u8]> {
    match c {
        b'%' => Some(b"%25"),
        b':' => Some(b"%3A"),
        _ => None,
    }
}

/// An entitlement string (realm role, group, scope) as the `keycloak` mapping keys it:
/// `%` → `%25`, `:` → `%3A`. Borrowed when there is nothing to escape.
pub fn keycloak_escape(entitlement: &[u8]) -> Cow<'_, [u8]> {
    if !entitlement.iter().any(|&c| escaped(c).is_some()) {
        return Cow::Borrowed(entitlement);
    }
    let mut out = Vec::with_capacity(entitlement.len() + 8);
    for &c in entitlement {
        match escaped(c) {
            Some(e) => out.extend_from_slice(e),
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The Role key of a Keycloak role as the `keycloak` mapping produces it: a realm role
/// (`client == None`) is `esc(role)`, a client role `esc(client) ":" esc(role)`, where
/// `esc` is [`keycloak_escape`]. Groups and scopes are keyed like realm roles.
///
/// ```
/// use revledger::claims::keycloak_role_key;
/// assert_eq!(keycloak_role_key(None, b"admin"), b"admin");
/// assert_eq!(keycloak_role_key(None, b"a:b"), b"a%3Ab");
/// assert_eq!(keycloak_role_key(Some(b"billing-api"), b"refund"), b"billing-api:refund");
/// assert_eq!(keycloak_role_key(Some(b"a:b"), b"50%"), b"a%3Ab:50%25");
/// ```
pub fn keycloak_role_key(client: Option<&[u8]>, role: &[u8]) -> Vec<u8> {
    let mut key = Vec::new();
    if let Some(client) = client {
        key.extend_from_slice(&keycloak_escape(client));
        key.push(b':');
    }
    key.extend_from_slice(&keycloak_escape(role));
    key
}

#[cfg(test)]
mod tests;
