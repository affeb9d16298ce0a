//! What the ledger holds (rules) and what it is asked about (tokens): the vocabulary of
//! DESIGN.md §2, with the limits that every entry point enforces.

use crate::error::{Error, Result};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest tenant, subject, role, client id, session id or token id accepted, in bytes.
/// Longer keys are refused with [`Error::InvalidArgument`] by `revoke` and `check` alike.
pub const MAX_KEY_LEN: usize = 4096;

/// Most roles a token given to `check` may carry.
pub const MAX_ROLES: usize = 4096;

/// The part of the token space a rule covers. The discriminants are the values stored in
/// the file and used by the C ABI (`revledger_scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Scope {
    /// Every token.
    Global = 0,
    /// Every token of one tenant.
    Tenant = 1,
    /// One user's tokens (`sub`).
    Subject = 2,
    /// Tokens carrying one role, group, permission or scope string.
    Role = 3,
    /// Tokens issued to one client application (`azp` / `client_id`).
    Client = 4,
    /// Tokens of one login session (`sid`).
    Session = 5,
    /// Exactly one token (`jti`), whatever its `iat`; the rule's time is the token's `exp`.
    Token = 6,
}

impl Scope {
    /// All scopes, in discriminant order.
    pub const ALL: [Scope; 7] = [
        Scope::Global,
        Scope::Tenant,
        Scope::Subject,
        Scope::Role,
        Scope::Client,
        Scope::Session,
        Scope::Token,
    ];

    /// The scope with this discriminant, if there is one.
    pub fn from_u8(v: u8) -> Option<Scope> {
        Scope::ALL.get(v as usize).copied()
    }

    /// Lower-case name, as the CLI and the documentation spell it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Tenant => "tenant",
            Scope::Subject => "subject",
            Scope::Role => "role",
            Scope::Client => "client",
            Scope::Session => "session",
            Scope::Token => "token",
        }
    }

    /// Parses a name as [`Scope::name`] spells it (also `sub`, `sid`, `jti`).
    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s.to_ascii_lowercase().as_str() {
            "global" => Scope::Global,
            "tenant" => Scope::Tenant,
            "subject" | "sub" | "user" => Scope::Subject,
            "role" => Scope::Role,
            "client" | "azp" | "client_id" => Scope::Client,
            "session" | "sid" => Scope::Session,
            "token" | "jti" => Scope::Token,
            _ => return None,
        })
    }

    /// Whether the rule's key part (besides the tenant) is required and non-empty.
    pub fn has_key(self) -> bool {
        !matches!(self, Scope::Global | Scope::Tenant)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One invalidation record: "scope S changed at time T".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule<'a> {
    /// Which part of the token space.
    pub scope: Scope,
    /// The tenant; empty for [`Scope::Global`] (and allowed empty for single-tenant use).
    pub tenant: &'a [u8],
    /// The subject, role, client id, session id or token id; empty for `Global` and
    /// `Tenant`.
    pub key: &'a [u8],
    /// The cutoff in Unix seconds (tokens with `iat < at` are revoked); for
    /// [`Scope::Token`] the revoked token's `exp`.
    pub at: i64,
}

impl<'a> Rule<'a> {
    /// A rule; check it with [`Rule::validate`] (every write path does).
    pub fn new(scope: Scope, tenant: &'a [u8], key: &'a [u8], at: i64) -> Rule<'a> {
        Rule {
            scope,
            tenant,
            key,
            at,
        }
    }

    /// Refuses a rule the ledger cannot hold: keys over [`MAX_KEY_LEN`], a key given to
    /// `Global`/`Tenant`, a tenant given to `Global`, an empty key for the other scopes.
    pub fn validate(&self) -> Result<()> {
        check_key_len("tenant", self.tenant)?;
        check_key_len(self.scope.name(), self.key)?;
        match self.scope {
            Scope::Global if !self.tenant.is_empty() || !self.key.is_empty() => {
                Err(Error::invalid("a global rule takes no tenant and no key"))
            }
            Scope::Tenant if !self.key.is_empty() => Err(Error::invalid(
                "a tenant rule takes no key besides the tenant",
            )),
            s if s.has_key() && self.key.is_empty() => Err(Error::invalid(format!(
                "a {s} rule needs a non-empty {} key",
                s.name()
            ))),
            _ => Ok(()),
        }
    }
}

pub(crate) fn check_key_len(what: &str, key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// The claims of one access token that `check` looks at. Empty optional keys mean
/// "absent".
#[derive(Clone, Copy, Debug, Default)]
pub struct Token<'a> {
    /// Tenant (may be empty for single-tenant use).
    pub tenant: &'a [u8],
    /// `sub`.
    pub subject: &'a [u8],
    /// Roles, groups, permissions, scopes: every entitlement string the token carries.
    pub roles: &'a [&'a [u8]],
    /// `azp` / `client_id`; empty when absent.
    pub client: &'a [u8],
    /// `sid`; empty when absent.
    pub session: &'a [u8],
    /// `jti`; empty when absent.
    pub token_id: &'a [u8],
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

impl Token<'_> {
    /// Refuses a token whose keys exceed [`MAX_KEY_LEN`] or that has over [`MAX_ROLES`] roles.
    #[inline]
    pub fn validate(&self) -> Result<()> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(self.refusal())
        }
    }

    /// Whether [`Token::validate`] accepts the token (no error built).
    #[inline(always)]
    pub(crate) fn is_valid(&self) -> bool {
        let longest = self
            .tenant
            .len()
            .max(self.subject.len())
            .max(self.client.len())
            .max(self.session.len())
            .max(self.token_id.len());
        longest <= MAX_KEY_LEN
            && self.roles.len() <= MAX_ROLES
            && self.roles.iter().all(|r| r.len() <= MAX_KEY_LEN)
    }

    /// The error that names what is wrong with a token [`Token::is_valid`] refused.
    #[cold]
    #[inline(never)]
    pub(crate) fn refusal(&self) -> Error {
        match self.refuse() {
            Err(e) => e,
            Ok(()) => Error::Internal("a token was refused for no reason found".into()),
        }
    }

    fn refuse(&self) -> Result<()> {
        check_key_len("tenant", self.tenant)?;
        check_key_len("subject", self.subject)?;
        check_key_len("client", self.client)?;
        check_key_len("session", self.session)?;
        check_key_len("token id", self.token_id)?;
        if self.roles.len() > MAX_ROLES {
            return Err(Error::invalid(format!(
                "token has {} roles; the limit is {MAX_ROLES}",
                self.roles.len()
            )));
        }
        for r in self.roles {
            check_key_len("role", r)?;
        }
        Ok(())
    }
}

/// The answer of `check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule revokes the token.
    Valid,
    /// The token is revoked; this names the deciding rule.
    Revoked {
        /// The rule's scope.
        scope: Scope,
        /// The rule's cutoff (for [`Scope::Token`], the `exp` it was recorded with).
        cutoff: i64,
    },
}

impl Verdict {
    /// Whether the token is revoked.
    pub fn is_revoked(&self) -> bool {
        matches!(self, Verdict::Revoked { .. })
    }

    /// A text for `WWW-Authenticate: Bearer error="invalid_token", error_description=...`.
    pub fn description(&self) -> String {
        match self {
            Verdict::Valid => "token is valid".to_string(),
            Verdict::Revoked {
                scope: Scope::Token,
                ..
            } => "token revoked".to_string(),
            Verdict::Revoked { scope, cutoff } => {
                format!("token revoked: {scope} permissions changed at {cutoff}")
            }
        }
    }
}

/// "Revoke now": the current Unix time rounded up to the next whole second, so that a
/// token issued in the same second as the change counts as issued before it.
pub fn now_cutoff() -> i64 {
    unix_now_floor() + 1
}

/// The current Unix time in whole seconds, rounded down.
pub fn unix_now_floor() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_round_trips_and_rejects_out_of_range() {
        for s in Scope::ALL {
            assert_eq!(Scope::from_u8(s as u8), Some(s));
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
        assert_eq!(Scope::from_u8(7), None);
        assert_eq!(Scope::parse("nope"), None);
    }

    #[test]
    fn validate_refuses_misshapen_rules() {
        let long = vec![b'x'; MAX_KEY_LEN + 1];
        assert!(Rule::new(Scope::Subject, b"t", &long, 1)
            .validate()
            .is_err());
        assert!(Rule::new(Scope::Subject, &long, b"k", 1)
            .validate()
            .is_err());
        assert!(Rule::new(Scope::Subject, b"t", b"", 1).validate().is_err());
        assert!(Rule::new(Scope::Global, b"t", b"", 1).validate().is_err());
        assert!(Rule::new(Scope::Tenant, b"t", b"k", 1).validate().is_err());
        assert!(Rule::new(Scope::Tenant, b"", b"", 1).validate().is_ok());
        let max = vec![b'x'; MAX_KEY_LEN];
        assert!(Rule::new(Scope::Role, &max, &max, 1).validate().is_ok());
    }

    #[test]
    fn now_cutoff_is_strictly_after_the_current_second() {
        let before = unix_now_floor();
        let c = now_cutoff();
        assert!(c > before);
        assert!(c <= unix_now_floor() + 1);
    }
}
