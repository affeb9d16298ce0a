//! The reference model of the built-in claim mappings: DESIGN.md §7's table and rules
//! (the `claims` module docs) over serde_json's tree, with no code of the reader's. Used
//! by tests/claims_model.rs and by the `claims` fuzz target (fuzz/fuzz_targets/claims.rs
//! includes this file).

use revledger::{ClaimMapping, Error};
use serde_json::Value;

/// A token as read, roles sorted (their order in a token is not part of the contract).
#[derive(Debug, PartialEq, Eq)]
pub struct Read {
    pub tenant: Vec<u8>,
    pub subject: Vec<u8>,
    pub client: Vec<u8>,
    pub session: Vec<u8>,
    pub token_id: Vec<u8>,
    pub roles: Vec<Vec<u8>>,
    pub iat: i64,
}

/// Where a mapping finds entitlements.
#[derive(Clone, Copy)]
enum Roles {
    /// A top-level claim: an array of strings, or a string (split on ASCII whitespace when
    /// `split`).
    Claim(&'static str, bool),
    /// Every top-level claim whose name ends with this (Auth0's namespaced roles).
    EndsWith(&'static str),
    /// `realm_access.roles`.
    RealmAccess,
    /// `resource_access.<client>.roles`, keyed `esc(client):esc(role)`.
    ResourceAccess,
}

/// A built-in mapping as DESIGN.md §7 tables it.
pub struct Spec {
    tenant: &'static [&'static str],
    subject: &'static [&'static str],
    client: &'static [&'static str],
    session: &'static [&'static str],
    token_id: &'static [&'static str],
    roles: &'static [Roles],
    /// Keycloak's key form for entitlements (`%` → `%25`, `:` → `%3A`).
    escaped: bool,
}

/// The built-in mapping `name` (`generic`, `auth0`, `keycloak`, `entra`).
pub fn spec(name: &str) -> Spec {
    use Roles::*;
    match name {
        "generic" => Spec {
            tenant: &["tenant", "tid", "org_id"],
            subject: &["sub"],
            client: &["azp", "client_id", "appid"],
            session: &["sid"],
            token_id: &["jti", "uti"],
            roles: &[
                Claim("roles", false),
                Claim("groups", false),
                Claim("permissions", false),
                Claim("scope", true),
                Claim("scp", true),
            ],
            escaped: false,
        },
        "auth0" => Spec {
            tenant: &["org_id"],
            subject: &["sub"],
            client: &["azp"],
            session: &["sid"],
            token_id: &["jti"],
            roles: &[
                Claim("permissions", false),
                EndsWith("/roles"),
                Claim("scope", true),
            ],
            escaped: false,
        },
        "keycloak" => Spec {
            tenant: &["iss"],
            subject: &["sub"],
            client: &["azp"],
            session: &["sid"],
            token_id: &["jti"],
            roles: &[
                RealmAccess,
                ResourceAccess,
                Claim("groups", false),
                Claim("scope", true),
            ],
            escaped: true,
        },
        "entra" => Spec {
            tenant: &["tid"],
            subject: &["oid"],
            client: &["azp", "appid"],
            session: &["sid"],
            token_id: &["uti"],
            roles: &[
                Claim("roles", false),
                Claim("groups", false),
                Claim("wids", false),
                Claim("scp", true),
            ],
            escaped: false,
        },
        _ => unreachable!(),
    }
}

fn esc(s: &str) -> Vec<u8> {
    s.replace('%', "%25").replace(':', "%3A").into_bytes()
}

/// What the reader must answer: the token, or the names of the claims that make the
/// payload unreadable (any of them may be the one the reader names first).
pub fn expected(spec: &Spec, payload: &Value) -> Result<Read, Vec<String>> {
    let Some(top) = payload.as_object() else {
        return Err(vec!["JSON object".into()]);
    };
    let mut wrong = Vec::new();
    // First present source wins; every present one must be a string.
    let mut single = |sources: &[&str]| -> Vec<u8> {
        let mut found = None;
        for name in sources {
            match top.get(*name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    found = found.or_else(|| Some(s.as_bytes().to_vec()));
                }
                Some(_) => wrong.push(name.to_string()),
            }
        }
        found.unwrap_or_default()
    };
    let tenant = single(spec.tenant);
    let subject = single(spec.subject);
    let client = single(spec.client);
    let session = single(spec.session);
    let token_id = single(spec.token_id);

    let key = |s: &str| {
        if spec.escaped {
            esc(s)
        } else {
            s.as_bytes().to_vec()
        }
    };
    let mut roles: Vec<Vec<u8>> = Vec::new();
    // An entitlements value at `name`; `form` makes the key of one entitlement.
    let mut entitlements = |wrong: &mut Vec<String>,
                            name: &str,
                            v: Option<&Value>,
                            split: bool,
                            form: &dyn Fn(&str) -> Vec<u8>| match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if split => {
            roles.extend(s.split(|c: char| c.is_ascii_whitespace()).map(form));
        }
        Some(Value::String(s)) => roles.push(form(s)),
        Some(Value::Array(a)) => {
            for e in a {
                match e {
                    Value::String(s) => roles.push(form(s)),
                    _ => wrong.push(name.to_string()),
                }
            }
        }
        Some(_) => wrong.push(name.to_string()),
    };
    for source in spec.roles {
        match *source {
            Roles::Claim(name, split) => entitlements(&mut wrong, name, top.get(name), split, &key),
            Roles::EndsWith(suffix) => {
                for (name, v) in top.iter().filter(|(n, _)| n.ends_with(suffix)) {
                    entitlements(&mut wrong, name, Some(v), false, &key);
                }
            }
            Roles::RealmAccess => match top.get("realm_access") {
                None | Some(Value::Null) | Some(Value::Array(_)) => {}
                Some(Value::Object(o)) => {
                    entitlements(&mut wrong, "realm_access", o.get("roles"), false, &key);
                }
                Some(_) => wrong.push("realm_access".into()),
            },
            Roles::ResourceAccess => {
                // `*` matches every member of an object, every element of an array (an
                // element has no name: its client is empty).
                let clients: Vec<(&str, &Value)> = match top.get("resource_access") {
                    None | Some(Value::Null) => vec![],
                    Some(Value::Object(o)) => o.iter().map(|(n, v)| (n.as_str(), v)).collect(),
                    Some(Value::Array(a)) => a.iter().map(|v| ("", v)).collect(),
                    Some(_) => {
                        wrong.push("resource_access".into());
                        vec![]
                    }
                };
                for (client, v) in clients {
                    let client_key = |role: &str| [esc(client), b":".to_vec(), esc(role)].concat();
                    match v {
                        Value::Null | Value::Array(_) => {}
                        Value::Object(o) => entitlements(
                            &mut wrong,
                            "resource_access",
                            o.get("roles"),
                            false,
                            &client_key,
                        ),
                        _ => wrong.push("resource_access".into()),
                    }
                }
            }
        }
    }
    roles.retain(|r| !r.is_empty());
    roles.sort();

    let iat = match top.get("iat") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            (None, Some(f)) if !n.is_u64() && f.is_finite() && f.abs() < 9.0e18 => {
                Some(f.floor() as i64)
            }
            _ => {
                wrong.push("iat".into());
                None
            }
        },
        Some(_) => {
            wrong.push("iat".into());
            None
        }
    };
    if !wrong.is_empty() {
        return Err(wrong);
    }
    let Some(iat) = iat else {
        return Err(vec!["iat".into()]);
    };
    Ok(Read {
        tenant,
        subject,
        client,
        session,
        token_id,
        roles,
        iat,
    })
}

/// What `mapping` reads from `json`, in the model's terms.
pub fn read(mapping: &ClaimMapping, json: &[u8]) -> Result<Read, Error> {
    mapping.with_claims(json, |t| {
        let mut roles: Vec<Vec<u8>> = t.roles.iter().map(|r| r.to_vec()).collect();
        roles.sort();
        Read {
            tenant: t.tenant.to_vec(),
            subject: t.subject.to_vec(),
            client: t.client.to_vec(),
            session: t.session.to_vec(),
            token_id: t.token_id.to_vec(),
            roles,
            iat: t.issued_at,
        }
    })
}
