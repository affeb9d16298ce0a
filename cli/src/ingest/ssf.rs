//! OpenID Shared Signals (SSF 1.0, CAEP 1.0, RISC 1.0) over push delivery (RFC 8935):
//! a transmitter POSTs one signed Security Event Token (RFC 8417) per request, as
//! `application/secevent+jwt`; the receiver answers `202`, or `400` with an RFC 8935
//! error code and applies nothing.
//!
//! [`check_request`] checks a push request (content type, optional `Authorization`),
//! [`verify_token`] the SET (`typ`, `alg`, the JWS signature); [`map_set`] checks the claims (`iss`, `aud`, `jti`, `iat`) and maps
//! each event to rules (DESIGN.md §9; the table in docs/INGEST.md):
//!
//! | event | rule |
//! |---|---|
//! | CAEP `session-revoked` | Session (the subject's session); Subject when none is named |
//! | CAEP `token-claims-change`, `credential-change`, `assurance-level-change` | Subject |
//! | RISC `account-disabled`, `account-purged`, `credential-compromise`, `account-credential-change-required`, `sessions-revoked` | Subject |
//! | any of these with a `jwt_id` subject | Token (that `jti`) |
//! | a complex subject naming only a tenant | Tenant, when `allow_tenant_rules` |
//! | SSF `verification`, `stream-updated`, other CAEP/RISC events, unknown types | none (`202`, counted as ignored) |
//!
//! Cutoff: the event's `event_timestamp`, else the SET's `iat`, rounded up to the next
//! whole second.

use super::config::{OpaqueSession, SsfConfig, USER_FORMATS};
use super::event::{cutoff_from_secs, json_secs, MappedEvent, OwnedRule, Refusal, RefusalKind};
use super::jwks::{KeyStore, Loaded};
use jsonwebtoken::{Algorithm, Validation};
use revledger::Scope;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Event type URI prefixes.
pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
/// RISC event types.
pub const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// SSF's own event types.
pub const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// Event types that revoke the subject's session (or, without one, the subject).
const SESSION_EVENTS: [&str; 1] = ["caep/event-type/session-revoked"];
/// Event types that revoke every token of the subject.
const SUBJECT_EVENTS: [&str; 8] = [
    "caep/event-type/token-claims-change",
    "caep/event-type/credential-change",
    "caep/event-type/assurance-level-change",
    "risc/event-type/account-disabled",
    "risc/event-type/account-purged",
    "risc/event-type/credential-compromise",
    "risc/event-type/account-credential-change-required",
    "risc/event-type/sessions-revoked",
];

/// The event types that map to rules, as full URIs (for documentation and tests).
pub fn revoking_event_types() -> Vec<String> {
    SESSION_EVENTS
        .iter()
        .chain(SUBJECT_EVENTS.iter())
        .map(|t| format!("https://schemas.openid.net/secevent/{t}"))
        .collect()
}

/// Where a rule's tenant comes from (see [`SsfConfig::tenant`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantSource {
    /// The complex subject's `tenant` member.
    SubjectTenant,
    /// The `iss` of an `iss_sub` or `jwt_id` subject.
    SubjectIss,
    /// The SET's `iss`.
    Iss,
    /// A fixed string.
    Fixed(String),
}

/// How a transmitter's SETs are checked and mapped (from its `[[ssf]]` table).
#[derive(Clone, Debug)]
pub struct SetPolicy {
    /// The `iss` accepted.
    pub issuer: String,
    /// The `aud` values accepted.
    pub audiences: Vec<String>,
    /// The JWS algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Tenant sources, first present wins.
    pub tenant: Vec<TenantSource>,
    /// Simple subject formats that name a user.
    pub subject_formats: HashSet<String>,
    /// What a bare `opaque` subject of `session-revoked` names.
    pub opaque_session: OpaqueSession,
    /// Whether a subject naming only a tenant gives a tenant rule.
    pub allow_tenant_rules: bool,
    /// Seconds added to now for a token rule's `exp` (a SET does not carry the token's
    /// `exp`; no token outlives `max_token_lifetime` + leeway).
    pub token_lifetime: i64,
}

impl SetPolicy {
    /// The policy of a configured transmitter.
    pub fn from_config(c: &SsfConfig, token_lifetime: i64) -> SetPolicy {
        let algorithms = match &c.algorithms {
            Some(list) => list.iter().filter_map(|a| a.parse().ok()).collect(),
            None => super::config::ASYMMETRIC_ALGORITHMS
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
        };
        SetPolicy {
            issuer: c.issuer.clone(),
            audiences: c.audience.values(),
            algorithms,
            tenant: c
                .tenant
                .iter()
                .map(|t| match t.as_str() {
                    "subject.tenant" => TenantSource::SubjectTenant,
                    "subject.iss" => TenantSource::SubjectIss,
                    "iss" => TenantSource::Iss,
                    fixed => TenantSource::Fixed(fixed.trim_start_matches('=').to_string()),
                })
                .collect(),
            subject_formats: c.subject_formats.iter().cloned().collect(),
            opaque_session: c.session_revoked_opaque,
            allow_tenant_rules: c.allow_tenant_rules,
            token_lifetime,
        }
    }
}

/// What a SET said besides its rules, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetNotes {
    /// The `state` of a verification event, when the SET is one.
    pub verification: Option<String>,
}

/// Checks a push request (RFC 8935): content type `application/secevent+jwt`, and the
/// `Authorization` header when `expected_authorization` is configured.
pub fn check_request(
    content_type: Option<&str>,
    authorization: Option<&str>,
    expected_authorization: Option<&str>,
) -> Result<(), Refusal> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/secevent+jwt") {
        return Err(Refusal::invalid(format!(
            "Content-Type must be application/secevent+jwt, not {}",
            content_type.unwrap_or("(none)")
        )));
    }
    if let Some(expected) = expected_authorization {
        let ok = authorization.is_some_and(|a| super::secret_eq(a.as_bytes(), expected.as_bytes()));
        if !ok {
            return Err(Refusal::new(
                RefusalKind::AuthenticationFailed,
                "the Authorization header is missing or wrong",
            ));
        }
    }
    Ok(())
}

/// Verifies a SET (a compact JWS): the header (`typ` `secevent+jwt`, an accepted `alg`)
/// and the signature, with the transmitter's keys. Returns the claims.
pub async fn verify_token(
    body: &[u8],
    policy: &SetPolicy,
    keys: &KeyStore,
    on_load: &(dyn Fn(&Loaded) + Sync),
) -> Result<Value, Refusal> {
    let token = std::str::from_utf8(body)
        .map_err(|_| Refusal::invalid("the body is not a compact JWS (not UTF-8)"))?
        .trim();
    let header = jsonwebtoken::decode_header(token).map_err(|e| match header_alg(token) {
        // A readable JWS whose `alg` this receiver does not know (`none`, `ES256K`, …):
        // an unacceptable key/algorithm (RFC 8935 invalid_key, docs/INGEST.md §3), not an
        // unparsable request.
        Some(alg) => Refusal::new(
            RefusalKind::InvalidKey,
            format!("alg {alg:?} is not accepted from this transmitter"),
        ),
        None => Refusal::invalid(format!("the body is not a compact JWS: {e}")),
    })?;
    check_typ(header.typ.as_deref())?;
    if !policy.algorithms.contains(&header.alg) {
        return Err(Refusal::new(
            RefusalKind::InvalidKey,
            format!("alg {:?} is not accepted from this transmitter", header.alg),
        ));
    }
    let candidates = keys
        .candidates(header.kid.as_deref(), header.alg, on_load)
        .await?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut last = None;
    for key in &candidates {
        match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature
                    | K::InvalidEcdsaKey
                    | K::InvalidRsaKey(_)
                    | K::InvalidKeyFormat => last = Some(e),
                    _ => return Err(Refusal::invalid(format!("the SET cannot be read: {e}"))),
                }
            }
        }
    }
    Err(Refusal::new(
        RefusalKind::AuthenticationFailed,
        format!(
            "the signature does not verify with the transmitter's key{}{}",
            header
                .kid
                .as_deref()
                .map(|k| format!(" {k:?}"))
                .unwrap_or_default(),
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    ))
}

/// The `alg` of a compact JWS's readable protected header, when it is one no key here
/// can verify (`none`, `ES256K`, …).
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let (head, rest) = token.split_once('.')?;
    if rest.split('.').count() != 2 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let alg = v.get("alg")?.as_str()?;
    // Only an alg the JWS library cannot name; other header errors stay invalid_request.
    alg.parse::<Algorithm>().is_err().then(|| alg.to_string())
}

/// RFC 8417 §2.3 and SSF: `typ` is `secevent+jwt` (or its full media type).
pub fn check_typ(typ: Option<&str>) -> Result<(), Refusal> {
    match typ.map(str::to_ascii_lowercase).as_deref() {
        Some("secevent+jwt") | Some("application/secevent+jwt") => Ok(()),
        other => Err(Refusal::invalid(format!(
            "the JWS header's typ must be secevent+jwt, not {}",
            other.unwrap_or("(none)")
        ))),
    }
}

/// Checks a verified SET's claims against the policy and maps its events to rules
/// (module doc). All or nothing: an event that cannot be mapped refuses the SET.
pub fn map_set(
    claims: &Value,
    policy: &SetPolicy,
    now: i64,
) -> Result<(Vec<MappedEvent>, SetNotes), Refusal> {
    let obj = claims
        .as_object()
        .ok_or_else(|| Refusal::invalid("the SET's payload is not a JSON object"))?;
    let iss = string(obj, "iss")?.ok_or_else(|| Refusal::invalid("the SET has no iss"))?;
    if iss != policy.issuer {
        return Err(Refusal::new(
            RefusalKind::InvalidIssuer,
            format!("iss {iss:?} is not this stream's transmitter"),
        ));
    }
    let aud_ok = match obj.get("aud") {
        Some(Value::String(a)) => policy.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| policy.audiences.iter().any(|x| x == a))
        }),
        _ => false,
    };
    if !aud_ok {
        return Err(Refusal::new(
            RefusalKind::InvalidAudience,
            format!(
                "aud {} does not name this receiver",
                obj.get("aud").unwrap_or(&Value::Null)
            ),
        ));
    }
    let jti = string(obj, "jti")?.ok_or_else(|| Refusal::invalid("the SET has no jti"))?;
    let iat = obj
        .get("iat")
        .ok_or_else(|| Refusal::invalid("the SET has no iat"))
        .and_then(|v| json_secs(v, "iat"))?;
    if let Some(exp) = obj.get("exp") {
        let exp = json_secs(exp, "exp")?;
        if exp < now as f64 - 60.0 {
            return Err(Refusal::invalid(format!("the SET expired (exp {exp})")));
        }
    }
    let events = match obj.get("events") {
        Some(Value::Object(e)) if !e.is_empty() => e,
        _ => return Err(Refusal::invalid("the SET has no events object")),
    };
    let top_subject = obj.get("sub_id");
    let mut mapped = Vec::with_capacity(events.len());
    let mut notes = SetNotes::default();
    for (uri, payload) in events {
        let payload = payload.as_object().ok_or_else(|| {
            Refusal::invalid(format!("event {uri}: its payload is not an object"))
        })?;
        let id = Some(if events.len() == 1 {
            jti.to_string()
        } else {
            format!("{jti} {uri}")
        });
        let short = uri.strip_prefix("https://schemas.openid.net/secevent/");
        let session = short.is_some_and(|s| SESSION_EVENTS.contains(&s));
        let subject = short.is_some_and(|s| SUBJECT_EVENTS.contains(&s));
        if !session && !subject {
            if uri == &format!("{SSF}verification") {
                notes.verification = Some(
                    payload
                        .get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                );
            }
            mapped.push(MappedEvent::ignored(id, uri.clone()));
            continue;
        }
        let at = match payload.get("event_timestamp") {
            Some(ts) => event_time(json_secs(ts, "event_timestamp")?)?,
            None => cutoff_from_secs(iat)?,
        };
        let subject_value = payload
            .get("subject")
            .or(top_subject)
            .ok_or_else(|| Refusal::invalid(format!("event {uri}: the SET has no sub_id")))?;
        let subj = Subject::parse(subject_value)
            .map_err(|e| Refusal::invalid(format!("event {uri}: {e}")))?;
        let ctx = RuleContext {
            policy,
            iss,
            at,
            now,
        };
        let rules = ctx.rules(&subj, session).map_err(|mut r| {
            r.reason = format!("event {uri}: {}", r.reason);
            r
        })?;
        mapped.push(MappedEvent {
            id,
            kind: uri.clone(),
            rules,
        });
    }
    Ok((mapped, notes))
}

/// The cutoff of an `event_timestamp`: seconds, or milliseconds for values of 10^11 and
/// more (CAEP drafts before 1.0 wrote milliseconds; 10^11 s is the year 5138).
fn event_time(ts: f64) -> Result<i64, Refusal> {
    if ts.abs() >= 1e11 {
        cutoff_from_secs(ts / 1000.0)
    } else {
        cutoff_from_secs(ts)
    }
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Refusal> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Refusal::invalid(format!(
            "{name} must be a string, found {other}"
        ))),
    }
}

/// A simple subject identifier (RFC 9493 and SSF formats): its format, its value (the
/// identifier itself) and, for `iss_sub` and `jwt_id`, its issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SimpleId {
    format: String,
    value: String,
    iss: Option<String>,
}

/// A parsed `sub_id` (or RISC's in-event `subject`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subject {
    Simple(SimpleId),
    /// `aliases`: several identifiers of one subject.
    Aliases(Vec<SimpleId>),
    Complex {
        user: Option<Vec<SimpleId>>,
        session: Option<SimpleId>,
        tenant: Option<SimpleId>,
        /// Members naming something tokens do not carry (device, application, ...).
        others: Vec<String>,
    },
}

/// Most identifiers an `aliases` subject may list.
const MAX_ALIASES: usize = 64;

impl Subject {
    fn parse(v: &Value) -> Result<Subject, String> {
        let obj = v.as_object().ok_or("the subject is not a JSON object")?;
        let format = format_of(obj)?;
        match format.as_str() {
            "complex" => {
                let mut user = None;
                let mut session = None;
                let mut tenant = None;
                let mut others = Vec::new();
                for (member, value) in obj {
                    if member == "format" {
                        continue;
                    }
                    let id = || match Subject::parse(value)? {
                        Subject::Simple(s) => Ok(vec![s]),
                        Subject::Aliases(list) => Ok(list),
                        Subject::Complex { .. } => {
                            Err(format!("complex subject member {member} is itself complex"))
                        }
                    };
                    match member.as_str() {
                        "user" => user = Some(id()?),
                        "session" => session = id()?.into_iter().next(),
                        "tenant" => tenant = id()?.into_iter().next(),
                        _ => others.push(member.clone()),
                    }
                }
                Ok(Subject::Complex {
                    user,
                    session,
                    tenant,
                    others,
                })
            }
            "aliases" => {
                let list = obj
                    .get("identifiers")
                    .and_then(Value::as_array)
                    .ok_or("an aliases subject needs an identifiers array")?;
                if list.is_empty() || list.len() > MAX_ALIASES {
                    return Err(format!(
                        "an aliases subject needs 1 to {MAX_ALIASES} identifiers"
                    ));
                }
                let mut ids = Vec::with_capacity(list.len());
                for item in list {
                    match Subject::parse(item)? {
                        Subject::Simple(s) => ids.push(s),
                        _ => return Err("aliases may only list simple identifiers".into()),
                    }
                }
                Ok(Subject::Aliases(ids))
            }
            _ => simple(obj, format).map(Subject::Simple),
        }
    }
}

/// The format of an identifier: `format` (RFC 9493), or RISC's legacy `subject_type`.
fn format_of(obj: &Map<String, Value>) -> Result<String, String> {
    match (obj.get("format"), obj.get("subject_type")) {
        (Some(Value::String(f)), _) => Ok(f.clone()),
        (None, Some(Value::String(t))) => Ok(match t.as_str() {
            "phone" => "phone_number".to_string(),
            t => t.replace('-', "_"),
        }),
        _ => Err("the subject identifier has no format".into()),
    }
}

fn simple(obj: &Map<String, Value>, format: String) -> Result<SimpleId, String> {
    let field = |name: &str| -> Result<String, String> {
        match obj.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!(
                "a {format} subject needs a non-empty string {name}"
            )),
        }
    };
    let (value, iss) = match format.as_str() {
        "iss_sub" => (field("sub")?, Some(field("iss")?)),
        "jwt_id" => (field("jti")?, Some(field("iss")?)),
        "opaque" => (field("id")?, None),
        "email" => (field("email")?, None),
        "phone_number" => (field("phone_number")?, None),
        "account" | "uri" => (field("uri")?, None),
        "did" => (field("url")?, None),
        "saml_assertion_id" => (field("assertion_id")?, Some(field("issuer")?)),
        other => return Err(format!("subject format {other:?} is not known")),
    };
    Ok(SimpleId { format, value, iss })
}

struct RuleContext<'a> {
    policy: &'a SetPolicy,
    iss: &'a str,
    at: i64,
    now: i64,
}

impl RuleContext<'_> {
    /// The tenant for a rule about `named` (the identifier whose `iss` `subject.iss`
    /// reads), with `complex_tenant` the complex subject's tenant member.
    fn tenant(
        &self,
        named: Option<&SimpleId>,
        complex_tenant: Option<&SimpleId>,
    ) -> Option<Vec<u8>> {
        for source in &self.policy.tenant {
            let found = match source {
                TenantSource::SubjectTenant => complex_tenant.map(|t| t.value.clone()),
                TenantSource::SubjectIss => named.and_then(|n| n.iss.clone()),
                TenantSource::Iss => Some(self.iss.to_string()),
                TenantSource::Fixed(s) => Some(s.clone()),
            };
            if let Some(t) = found {
                return Some(t.into_bytes());
            }
        }
        None
    }

    fn rule(
        &self,
        scope: Scope,
        key: &SimpleId,
        named: Option<&SimpleId>,
        complex_tenant: Option<&SimpleId>,
    ) -> Result<OwnedRule, Refusal> {
        let tenant = self.tenant(named, complex_tenant).ok_or_else(|| {
            Refusal::invalid("no tenant: none of the configured tenant sources is present")
        })?;
        let at = if scope == Scope::Token {
            self.now.saturating_add(self.policy.token_lifetime)
        } else {
            self.at
        };
        Ok(OwnedRule {
            scope,
            tenant,
            key: key.value.clone().into_bytes(),
            at,
        })
    }

    /// Rules naming a user by one identifier: a Token rule for `jwt_id`, a Subject rule
    /// for an accepted user format.
    fn user(&self, id: &SimpleId, complex_tenant: Option<&SimpleId>) -> Result<OwnedRule, Refusal> {
        if id.format == "jwt_id" {
            return self.rule(Scope::Token, id, Some(id), complex_tenant);
        }
        if !USER_FORMATS.contains(&id.format.as_str())
            || !self.policy.subject_formats.contains(&id.format)
        {
            return Err(Refusal::invalid(format!(
                "a {} subject does not name a user of this receiver's tokens (subject_formats)",
                id.format
            )));
        }
        self.rule(Scope::Subject, id, Some(id), complex_tenant)
    }

    fn rules(&self, subject: &Subject, session_event: bool) -> Result<Vec<OwnedRule>, Refusal> {
        match subject {
            Subject::Simple(id) if session_event && id.format == "opaque" => {
                let mut rules = Vec::new();
                let mode = self.policy.opaque_session;
                if mode != OpaqueSession::Subject {
                    rules.push(self.rule(Scope::Session, id, None, None)?);
                }
                if mode != OpaqueSession::Session && self.policy.subject_formats.contains("opaque")
                {
                    rules.push(self.rule(Scope::Subject, id, Some(id), None)?);
                }
                Ok(rules)
            }
            Subject::Simple(id) => Ok(vec![self.user(id, None)?]),
            Subject::Aliases(ids) => {
                let usable: Vec<&SimpleId> = ids
                    .iter()
                    .filter(|i| {
                        i.format == "jwt_id" || self.policy.subject_formats.contains(&i.format)
                    })
                    .collect();
                if usable.is_empty() {
                    return Err(Refusal::invalid(
                        "none of the aliases names a user of this receiver's tokens (subject_formats)",
                    ));
                }
                usable.into_iter().map(|i| self.user(i, None)).collect()
            }
            Subject::Complex {
                user,
                session,
                tenant,
                others,
            } => {
                let t = tenant.as_ref();
                if let (true, Some(sid)) = (session_event, session) {
                    let named = user.as_ref().and_then(|u| u.first());
                    return Ok(vec![self.rule(Scope::Session, sid, named, t)?]);
                }
                if let Some(ids) = user {
                    let usable: Vec<&SimpleId> = ids
                        .iter()
                        .filter(|i| {
                            i.format == "jwt_id" || self.policy.subject_formats.contains(&i.format)
                        })
                        .collect();
                    if usable.is_empty() {
                        return Err(Refusal::invalid(
                            "the complex subject's user is in no format of subject_formats",
                        ));
                    }
                    return usable.into_iter().map(|i| self.user(i, t)).collect();
                }
                if let Some(sid) = session {
                    return Ok(vec![self.rule(Scope::Session, sid, None, t)?]);
                }
                match (tenant, others.is_empty()) {
                    (Some(tid), true) => {
                        if !self.policy.allow_tenant_rules {
                            return Err(Refusal::new(
                                RefusalKind::AccessDenied,
                                format!(
                                    "the subject names only tenant {:?}: a tenant-wide rule, \
                                     which this transmitter may not ask for (allow_tenant_rules)",
                                    tid.value
                                ),
                            ));
                        }
                        Ok(vec![OwnedRule {
                            scope: Scope::Tenant,
                            tenant: tid.value.clone().into_bytes(),
                            key: Vec::new(),
                            at: self.at,
                        }])
                    }
                    _ => Err(Refusal::invalid(format!(
                        "the complex subject names no user, session or tenant that tokens \
                         carry (members: {})",
                        if others.is_empty() {
                            "none".to_string()
                        } else {
                            others.join(", ")
                        }
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> SetPolicy {
        SetPolicy {
            issuer: "https://idp.example.com/123456789/".into(),
            audiences: vec!["https://sp.example.com/caep".into()],
            algorithms: vec![Algorithm::ES256, Algorithm::RS256],
            tenant: vec![
                TenantSource::SubjectTenant,
                TenantSource::Fixed(String::new()),
            ],
            subject_formats: ["iss_sub", "opaque", "email"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            opaque_session: OpaqueSession::SessionAndSubject,
            allow_tenant_rules: false,
            token_lifetime: 3900,
        }
    }

    const NOW: i64 = 1_615_305_200;

    fn set(sub_id: Value, event: &str, payload: Value) -> Value {
        json!({
            "iss": "https://idp.example.com/123456789/",
            "jti": "24c63fb56e5a2d77a6b512616ca9fa24",
            "iat": 1615305159,
            "aud": "https://sp.example.com/caep",
            "txn": "8675309",
            "sub_id": sub_id,
            "events": { format!("{CAEP}{event}"): payload }
        })
    }

    fn rules(v: &Value) -> Vec<OwnedRule> {
        let (events, _) = map_set(v, &policy(), NOW).unwrap();
        events.into_iter().flat_map(|e| e.rules).collect()
    }

    fn refusal(v: &Value, p: &SetPolicy) -> Refusal {
        map_set(v, p, NOW).unwrap_err()
    }

    #[test]
    fn caep_session_revoked_examples() {
        // Simple opaque subject: a session id or a user id; both rules, either revokes.
        let s = set(
            json!({"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"}),
            "session-revoked",
            json!({"event_timestamp": 1615304991}),
        );
        assert_eq!(
            rules(&s),
            [
                OwnedRule::new(
                    Scope::Session,
                    b"",
                    b"dMTlD|1600802906337.16|16008.16",
                    1615304992
                ),
                OwnedRule::new(
                    Scope::Subject,
                    b"",
                    b"dMTlD|1600802906337.16|16008.16",
                    1615304992
                ),
            ]
        );
        let mut p = policy();
        p.opaque_session = OpaqueSession::Session;
        assert_eq!(map_set(&s, &p, NOW).unwrap().0[0].rules.len(), 1);
        // Complex: session + user + tenant → the session, in the tenant.
        let s = set(
            json!({"format": "complex",
                   "session": {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"},
                   "user": {"format": "iss_sub", "iss": "https://idp.example.com/123456789/",
                            "sub": "99beb27c-c1c2-4955-882a-e0dc4996fcbc"},
                   "tenant": {"format": "opaque", "id": "123456789"}}),
            "session-revoked",
            json!({"initiating_entity": "policy", "event_timestamp": 1615304991}),
        );
        assert_eq!(
            rules(&s),
            [OwnedRule::new(
                Scope::Session,
                b"123456789",
                b"dMTlD|1600802906337.16|16008.16",
                1615304992
            )]
        );
        // Complex: user + device + tenant, no session → the user.
        let s = set(
            json!({"format": "complex",
                   "user": {"format": "iss_sub", "iss": "https://idp.example.com/123456789/",
                            "sub": "jane.smith@example.com"},
                   "device": {"format": "iss_sub", "iss": "https://idp.example.com/123456789/",
                              "sub": "e9297990-14d2-42ec-a4a9-4036db86509a"},
                   "tenant": {"format": "opaque", "id": "123456789"}}),
            "session-revoked",
            json!({"event_timestamp": 1615304991}),
        );
        assert_eq!(
            rules(&s),
            [OwnedRule::new(
                Scope::Subject,
                b"123456789",
                b"jane.smith@example.com",
                1615304992
            )]
        );
    }

    #[test]
    fn subject_events_and_jwt_id() {
        let s = set(
            json!({"format": "iss_sub", "iss": "https://idp.example.com/3456789/", "sub": "jane.smith@example.com"}),
            "credential-change",
            json!({"credential_type": "fido2-roaming", "change_type": "create", "event_timestamp": 1615304991.5}),
        );
        assert_eq!(
            rules(&s),
            [OwnedRule::new(
                Scope::Subject,
                b"",
                b"jane.smith@example.com",
                1615304992
            )]
        );
        let s = set(
            json!({"format": "jwt_id", "iss": "https://idp.example.com/987654321/",
                   "jti": "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7"}),
            "token-claims-change",
            json!({"event_timestamp": 1615304991, "claims": {"role": "ro-admin"}}),
        );
        assert_eq!(
            rules(&s),
            [OwnedRule::new(
                Scope::Token,
                b"",
                b"f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7",
                NOW + 3900
            )]
        );
        // Tenant from the subject's iss (the keycloak mapping's tenant).
        let mut p = policy();
        p.tenant = vec![TenantSource::SubjectIss, TenantSource::Iss];
        let (e, _) = map_set(&s, &p, NOW).unwrap();
        assert_eq!(e[0].rules[0].tenant, b"https://idp.example.com/987654321/");
        // No event_timestamp: the SET's iat.
        let s = set(
            json!({"format": "email", "email": "a@b.c"}),
            "assurance-level-change",
            json!({}),
        );
        assert_eq!(rules(&s)[0].at, 1615305160);
    }

    #[test]
    fn risc_events_with_legacy_in_event_subjects() {
        let mut s = set(json!(null), "x", json!({}));
        s["events"] = json!({
            format!("{RISC}account-disabled"): {
                "subject": {"subject_type": "iss-sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
                "reason": "hijacking"
            }
        });
        s.as_object_mut().unwrap().remove("sub_id");
        assert_eq!(
            rules(&s),
            [OwnedRule::new(
                Scope::Subject,
                b"",
                b"7375626A656374",
                1615305160
            )]
        );
    }

    #[test]
    fn ignored_events_and_verification() {
        let mut s = set(
            json!({"format": "opaque", "id": "f67e39a0a4d34d56b3aa1bc4cff0069f"}),
            "x",
            json!({}),
        );
        s["events"] = json!({ format!("{SSF}verification"): {"state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="} });
        let (events, notes) = map_set(&s, &policy(), NOW).unwrap();
        assert!(events[0].rules.is_empty());
        assert_eq!(
            notes.verification.as_deref(),
            Some("VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo=")
        );
        let s = set(
            json!({"format": "opaque", "id": "x"}),
            "session-established",
            json!({}),
        );
        assert!(rules(&s).is_empty());
    }

    #[test]
    fn claims_are_checked_with_the_rfc_codes() {
        let good = set(
            json!({"format": "opaque", "id": "x"}),
            "credential-change",
            json!({}),
        );
        let p = policy();
        let mut bad = good.clone();
        bad["iss"] = json!("https://evil.example.com/");
        assert_eq!(refusal(&bad, &p).kind, RefusalKind::InvalidIssuer);
        let mut bad = good.clone();
        bad["aud"] = json!(["https://other.example.com/"]);
        assert_eq!(refusal(&bad, &p).kind, RefusalKind::InvalidAudience);
        let mut ok = good.clone();
        ok["aud"] = json!(["https://other.example.com/", "https://sp.example.com/caep"]);
        assert!(map_set(&ok, &p, NOW).is_ok());
        for field in ["jti", "iat", "events", "iss"] {
            let mut bad = good.clone();
            bad.as_object_mut().unwrap().remove(field);
            let r = refusal(&bad, &p);
            assert!(matches!(r.kind, RefusalKind::Invalid), "{field}: {r}");
        }
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("sub_id");
        assert!(refusal(&bad, &p).reason.contains("sub_id"));
        let mut bad = good.clone();
        bad["exp"] = json!(NOW - 3600);
        assert!(refusal(&bad, &p).reason.contains("expired"));
    }

    #[test]
    fn subjects_that_cannot_be_mapped_refuse_the_set() {
        let p = policy();
        let s = set(
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            "credential-change",
            json!({}),
        );
        assert!(refusal(&s, &p).reason.contains("subject_formats"));
        let s = set(
            json!({"format": "complex", "device": {"format": "opaque", "id": "d"}}),
            "credential-change",
            json!({}),
        );
        assert!(refusal(&s, &p).reason.contains("device"));
        let s = set(
            json!({"format": "complex", "tenant": {"format": "opaque", "id": "t"}}),
            "session-revoked",
            json!({}),
        );
        assert_eq!(refusal(&s, &p).kind, RefusalKind::AccessDenied);
        let mut open = policy();
        open.allow_tenant_rules = true;
        let (e, _) = map_set(&s, &open, NOW).unwrap();
        assert_eq!(
            e[0].rules,
            [OwnedRule::new(Scope::Tenant, b"t", b"", 1615305160)]
        );
        let s = set(
            json!({"format": "iss_sub", "iss": "x"}),
            "credential-change",
            json!({}),
        );
        assert!(refusal(&s, &p).reason.contains("sub"));
        let s = set(json!("jane"), "credential-change", json!({}));
        assert_eq!(refusal(&s, &p).kind, RefusalKind::Invalid);
        // Two events, one unmappable: nothing of the SET is applied.
        let mut s = set(
            json!({"format": "opaque", "id": "x"}),
            "credential-change",
            json!({}),
        );
        s["events"][format!("{CAEP}session-revoked")] = json!({"subject": {"format": "bogus"}});
        assert!(map_set(&s, &p, NOW).is_err());
    }

    #[test]
    fn aliases_revoke_every_accepted_identifier() {
        let s = set(
            json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "jane@example.com"},
                {"format": "phone_number", "phone_number": "+1"},
                {"format": "iss_sub", "iss": "https://idp/", "sub": "u-1"}]}),
            "credential-change",
            json!({}),
        );
        let keys: Vec<Vec<u8>> = rules(&s).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, [b"jane@example.com".to_vec(), b"u-1".to_vec()]);
    }

    #[test]
    fn millisecond_timestamps_of_the_drafts_are_read_as_such() {
        let s = set(
            json!({"format": "opaque", "id": "x"}),
            "credential-change",
            json!({"event_timestamp": 1615304991643u64}),
        );
        assert_eq!(rules(&s)[0].at, 1615304992);
    }

    #[test]
    fn typ_must_be_secevent() {
        assert!(check_typ(Some("secevent+jwt")).is_ok());
        assert!(check_typ(Some("application/secevent+JWT")).is_ok());
        assert!(check_typ(Some("JWT")).is_err());
        assert!(check_typ(None).is_err());
    }
}
