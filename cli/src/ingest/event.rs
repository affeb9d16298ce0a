//! What every source maps a delivery to: owned rules grouped by event, the cutoff
//! arithmetic of DESIGN.md §2 (Time), and the reasons a delivery is refused.

use revledger::{Rule, Scope};
use std::fmt;

/// A rule with owned keys, as an identity-provider event maps to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnedRule {
    /// Which part of the token space.
    pub scope: Scope,
    /// The tenant key, in the form the gateways' claim mapping reads it (DESIGN.md §7).
    pub tenant: Vec<u8>,
    /// The subject, role, client, session or token id.
    pub key: Vec<u8>,
    /// The cutoff (Unix seconds); for [`Scope::Token`] an upper bound of the token's `exp`.
    pub at: i64,
}

impl OwnedRule {
    /// A rule from borrowed parts.
    pub fn new(scope: Scope, tenant: &[u8], key: &[u8], at: i64) -> OwnedRule {
        OwnedRule {
            scope,
            tenant: tenant.to_vec(),
            key: key.to_vec(),
            at,
        }
    }

    /// The borrowed [`Rule`] the ledger and the publisher take.
    pub fn as_rule(&self) -> Rule<'_> {
        Rule::new(self.scope, &self.tenant, &self.key, self.at)
    }
}

impl fmt::Display for OwnedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tenant={:?} key={:?} at={}",
            self.scope,
            String::from_utf8_lossy(&self.tenant),
            String::from_utf8_lossy(&self.key),
            self.at
        )
    }
}

/// One event of a delivery and the rules it maps to (none: the event is known and
/// changes no token, e.g. a login, a verification event, an unrelated log entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedEvent {
    /// The event's own id (a SET's `jti`, an Auth0 `log_id`, a Keycloak event id), used
    /// to recognise a replay; `None` when the event carries none.
    pub id: Option<String>,
    /// What the event is, for logs (an event type URI, `sapi POST /api/v2/...`, ...).
    pub kind: String,
    /// The rules; empty when the event is ignored.
    pub rules: Vec<OwnedRule>,
}

impl MappedEvent {
    /// An event that changes no token.
    pub fn ignored(id: Option<String>, kind: impl Into<String>) -> MappedEvent {
        MappedEvent {
            id,
            kind: kind.into(),
            rules: Vec::new(),
        }
    }
}

/// Why a delivery was refused; nothing of it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The class of failure (decides the HTTP answer and the RFC 8935 error code).
    pub kind: RefusalKind,
    /// What is wrong, for the sender and the log.
    pub reason: String,
}

/// Classes of refusal. For an SSF transmitter each is one of RFC 8935's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// The body is not what the source sends, or an event in it cannot be mapped to rules
    /// (`invalid_request`).
    Invalid,
    /// A signing key is unknown or unacceptable (`invalid_key`).
    InvalidKey,
    /// The issuer is not the configured one (`invalid_issuer`).
    InvalidIssuer,
    /// The audience is not this receiver (`invalid_audience`).
    InvalidAudience,
    /// The sender could not be authenticated: a bad signature, secret or HMAC
    /// (`authentication_failed`).
    AuthenticationFailed,
    /// The sender may not ask for this (a tenant-wide rule not allowed by the
    /// configuration) (`access_denied`).
    AccessDenied,
}

impl RefusalKind {
    /// The RFC 8935 §2.4 error code.
    pub fn code(self) -> &'static str {
        match self {
            RefusalKind::Invalid => "invalid_request",
            RefusalKind::InvalidKey => "invalid_key",
            RefusalKind::InvalidIssuer => "invalid_issuer",
            RefusalKind::InvalidAudience => "invalid_audience",
            RefusalKind::AuthenticationFailed => "authentication_failed",
            RefusalKind::AccessDenied => "access_denied",
        }
    }
}

impl Refusal {
    /// A refusal of this kind.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
        }
    }

    /// An `invalid_request` refusal.
    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Invalid, reason)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.reason)
    }
}

impl std::error::Error for Refusal {}

/// The cutoff of a change that happened at `secs` (Unix seconds, possibly fractional):
/// the whole second after it, `floor(secs) + 1` — the ceiling of `T.x`, and `T + 1` for a
/// whole `T` — so that a token issued in the same second as the change counts as issued
/// before it (DESIGN.md §2 Time, as `revoke now` does). Senders truncate their clocks to
/// the second, so a whole `T` stands for some instant in `[T, T+1)`.
pub fn cutoff_from_secs(secs: f64) -> Result<i64, Refusal> {
    // Beyond ±2^53 an f64 no longer holds every whole second; no real clock is there.
    if !secs.is_finite() || secs.abs() >= 9.0e15 {
        return Err(Refusal::invalid(format!(
            "time {secs} is not a number of Unix seconds"
        )));
    }
    Ok(secs.floor() as i64 + 1)
}

/// [`cutoff_from_secs`] for a time in Unix milliseconds.
pub fn cutoff_from_millis(ms: i64) -> i64 {
    ms.div_euclid(1000) + 1
}

/// Reads a JSON number of Unix seconds (an integer or a fraction).
pub fn json_secs(value: &serde_json::Value, what: &str) -> Result<f64, Refusal> {
    match value {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| Refusal::invalid(format!("{what} {n} is out of range"))),
        other => Err(Refusal::invalid(format!(
            "{what} must be a number of Unix seconds, found {other}"
        ))),
    }
}

/// The checks every rule passes before it is written: the ledger's own limits
/// ([`Rule::validate`]) and a cutoff no further ahead of this host's clock than
/// `max_future` seconds (a sender's clock that runs ahead by more, or a forged far-future
/// time, would otherwise lock a user out until then).
pub fn check_rules(rules: &[OwnedRule], now: i64, max_future: i64) -> Result<(), Refusal> {
    for r in rules {
        r.as_rule()
            .validate()
            .map_err(|e| Refusal::invalid(format!("rule {r}: {e}")))?;
        if r.scope != Scope::Token && r.at > now.saturating_add(max_future) {
            return Err(Refusal::invalid(format!(
                "the event's time gives cutoff {} which is {} s ahead of this receiver's \
                 clock (at most {max_future} s are accepted)",
                r.at,
                r.at - now
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_round_up_to_the_next_whole_second() {
        assert_eq!(cutoff_from_secs(1_615_304_991.0).unwrap(), 1_615_304_992);
        assert_eq!(cutoff_from_secs(1_615_304_991.25).unwrap(), 1_615_304_992);
        assert_eq!(cutoff_from_secs(1_615_304_991.999).unwrap(), 1_615_304_992);
        assert_eq!(cutoff_from_secs(-0.5).unwrap(), 0);
        assert!(cutoff_from_secs(f64::NAN).is_err());
        assert!(cutoff_from_secs(1e300).is_err());
        assert_eq!(cutoff_from_millis(1_686_328_227_484), 1_686_328_228);
        assert_eq!(cutoff_from_millis(1_686_328_227_000), 1_686_328_228);
        assert_eq!(cutoff_from_millis(-1), 0);
    }

    #[test]
    fn far_future_cutoffs_and_bad_keys_are_refused() {
        let now = 1_700_000_000;
        let ok = OwnedRule::new(Scope::Subject, b"t", b"u", now + 300);
        assert!(check_rules(std::slice::from_ref(&ok), now, 300).is_ok());
        let ahead = OwnedRule::new(Scope::Subject, b"t", b"u", now + 301);
        let e = check_rules(&[ok.clone(), ahead], now, 300).unwrap_err();
        assert!(e.reason.contains("ahead"), "{e}");
        let token = OwnedRule::new(Scope::Token, b"t", b"j", now + 86_400);
        assert!(check_rules(&[token], now, 300).is_ok());
        let empty = OwnedRule::new(Scope::Subject, b"t", b"", now);
        assert_eq!(
            check_rules(&[empty], now, 300).unwrap_err().kind,
            RefusalKind::Invalid
        );
    }
}
