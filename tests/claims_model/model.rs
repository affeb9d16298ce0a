//! The reference model of the claim mappings, built-in ([`expected`]) and pointer specs
//! ([`expected_pointers`]): DESIGN.md §7's table and rules (the `claims` module docs)
//! over serde_json's tree, with no code of the reader's. Used by tests/claims_model.rs
//! and by the `claims` fuzz target (fuzz/fuzz_targets/claims.rs includes this file).

use revledger::{ClaimMapping, Error, MAX_KEY_LEN, MAX_ROLES};
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
                Some(Value::String(s)) if s.len() <= MAX_KEY_LEN => {
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
    // Entitlement keys, each with the claim it came from.
    let mut roles: Vec<(Vec<u8>, String)> = Vec::new();
    let mut entitlements = |wrong: &mut Vec<String>,
                            name: &str,
                            v: Option<&Value>,
                            split: bool,
                            form: &dyn Fn(&str) -> Vec<u8>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            read_entitlements(v, name, split, form, &mut roles, wrong);
        }
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
    let roles = limited(roles, &mut wrong);

    let iat = match top.get("iat") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let iat = unix_seconds(n);
            if iat.is_none() {
                wrong.push("iat".into());
            }
            iat
        }
        Some(_) => {
            wrong.push("iat".into());
            None
        }
    };
    outcome(wrong, iat, |iat| Read {
        tenant,
        subject,
        client,
        session,
        token_id,
        roles,
        iat,
    })
}

/// An entitlements value (not null) at the claim `name`: a string (split on ASCII
/// whitespace when `split`) or an array of strings; `form` makes each one's key.
fn read_entitlements(
    v: &Value,
    name: &str,
    split: bool,
    form: &dyn Fn(&str) -> Vec<u8>,
    roles: &mut Vec<(Vec<u8>, String)>,
    wrong: &mut Vec<String>,
) {
    match v {
        Value::String(s) if split => roles.extend(
            s.split(|c: char| c.is_ascii_whitespace())
                .map(|w| (form(w), name.to_string())),
        ),
        Value::String(s) => roles.push((form(s), name.to_string())),
        Value::Array(a) => {
            for e in a {
                match e {
                    Value::String(s) => roles.push((form(s), name.to_string())),
                    _ => wrong.push(name.to_string()),
                }
            }
        }
        _ => wrong.push(name.to_string()),
    }
}

/// `iat` as Unix seconds: an integer, or a float rounded down, within ±9e18; `None` out
/// of range (an integer beyond `i64` included).
fn unix_seconds(n: &serde_json::Number) -> Option<i64> {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Some(i),
        (None, Some(f)) if !n.is_u64() && f.is_finite() && f.abs() < 9.0e18 => {
            Some(f.floor() as i64)
        }
        _ => None,
    }
}

/// The model's answer once every claim is read: the claims found wrong, else no `iat`,
/// else the token.
fn outcome(
    wrong: Vec<String>,
    iat: Option<i64>,
    token: impl FnOnce(i64) -> Read,
) -> Result<Read, Vec<String>> {
    if !wrong.is_empty() {
        return Err(wrong);
    }
    iat.map(token).ok_or_else(|| vec!["iat".into()])
}

/// The entitlements kept, sorted: the non-empty keys. A key over [`MAX_KEY_LEN`] bytes, or
/// more than [`MAX_ROLES`] keys, makes the claims they came from wrong.
fn limited(roles: Vec<(Vec<u8>, String)>, wrong: &mut Vec<String>) -> Vec<Vec<u8>> {
    let mut kept: Vec<(Vec<u8>, String)> =
        roles.into_iter().filter(|(k, _)| !k.is_empty()).collect();
    for (key, name) in &kept {
        if key.len() > MAX_KEY_LEN {
            wrong.push(name.clone());
        }
    }
    if kept.len() > MAX_ROLES {
        wrong.extend(kept.iter().map(|(_, name)| name.clone()));
    }
    let mut keys: Vec<Vec<u8>> = kept.drain(..).map(|(k, _)| k).collect();
    keys.sort();
    keys
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

/// A part of the token, as a pointer spec's field names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Tenant,
    Subject,
    Client,
    Session,
    TokenId,
    Iat,
    Roles,
}

impl Part {
    /// Every part, in the order of a pointer spec's fields.
    pub const ALL: [Part; 7] = [
        Part::Tenant,
        Part::Subject,
        Part::Client,
        Part::Session,
        Part::TokenId,
        Part::Iat,
        Part::Roles,
    ];

    /// The field that names the part in a pointer spec.
    pub fn field(self) -> &'static str {
        match self {
            Part::Tenant => "tenant",
            Part::Subject => "subject",
            Part::Client => "client",
            Part::Session => "session",
            Part::TokenId => "token_id",
            Part::Iat => "iat",
            Part::Roles => "roles",
        }
    }
}

/// A pointer spec: for each part named, its pointers in order (reference tokens, `*`
/// for every member of an object or element of an array). `iat` defaults to `/iat`.
pub type Pointers = Vec<(Part, Vec<Vec<String>>)>;

/// The values `tokens` reaches from `v`, with their paths (`a/0/b`); a scalar where the
/// pointer goes on is wrong (the reader reads claims inside objects and arrays only).
fn walk<'v>(
    v: &'v Value,
    tokens: &[String],
    path: &mut Vec<String>,
    found: &mut Vec<(String, &'v Value)>,
    wrong: &mut Vec<String>,
) {
    let Some((token, rest)) = tokens.split_first() else {
        if !v.is_null() {
            found.push((path.join("/"), v));
        }
        return;
    };
    let mut go = |name: String, child: &'v Value, found: &mut Vec<_>, wrong: &mut Vec<_>| {
        path.push(name);
        walk(child, rest, path, found, wrong);
        path.pop();
    };
    match v {
        Value::Null => {}
        Value::Object(o) if token == "*" => {
            for (name, child) in o {
                go(name.clone(), child, found, wrong);
            }
        }
        Value::Object(o) => {
            if let Some(child) = o.get(token) {
                go(token.clone(), child, found, wrong);
            }
        }
        Value::Array(a) => {
            // RFC 6901 array indices: `0` or digits without a leading zero.
            let index = (token == "0" || (!token.starts_with('0') && !token.is_empty()))
                .then(|| token.parse::<usize>().ok())
                .flatten();
            for (i, child) in a.iter().enumerate() {
                if token == "*" || index == Some(i) {
                    go(i.to_string(), child, found, wrong);
                }
            }
        }
        _ => wrong.push(path.join("/")),
    }
}

/// What a pointer spec reads from `payload` (no key forms; a string is split on ASCII
/// whitespace when the pointer's last reference token is `scope` or `scp`).
pub fn expected_pointers(spec: &Pointers, payload: &Value) -> Result<Read, Vec<String>> {
    let Some(_) = payload.as_object() else {
        return Err(vec!["JSON object".into()]);
    };
    let default_iat = vec![vec!["iat".to_string()]];
    let pointers = |part: Part| {
        spec.iter()
            .find(|(p, _)| *p == part)
            .map(|(_, list)| list)
            .or((part == Part::Iat).then_some(&default_iat))
    };
    let mut wrong = Vec::new();
    // Each pointer's values, by rank.
    let reached = |part: Part, wrong: &mut Vec<String>| -> Vec<Vec<(String, &Value)>> {
        let Some(list) = pointers(part) else {
            return Vec::new();
        };
        list.iter()
            .map(|tokens| {
                let mut found = Vec::new();
                walk(payload, tokens, &mut Vec::new(), &mut found, wrong);
                found
            })
            .collect()
    };
    // Single-valued parts: the lowest rank present wins; two values at that rank are
    // wrong (a rank that does not win may have several).
    let single = |part: Part, wrong: &mut Vec<String>| -> Option<Value> {
        let ranks = reached(part, wrong);
        let mut chosen = None;
        for found in ranks {
            // Two values at the winning rank (the first rank with any) are ambiguous.
            if chosen.is_none() && found.len() > 1 {
                wrong.extend(found.iter().map(|(path, _)| path.clone()));
            }
            for (path, v) in &found {
                // `iat`: a number of Unix seconds in range (every one read, not only the
                // chosen one).
                let ok = match (part, v) {
                    (_, Value::String(s)) if s.len() > MAX_KEY_LEN => false,
                    (Part::Iat, Value::Number(n)) => unix_seconds(n).is_some(),
                    (Part::Iat, _) => false,
                    (_, v) => v.is_string(),
                };
                if !ok {
                    wrong.push(path.clone());
                }
            }
            if chosen.is_none() {
                chosen = found.first().map(|(_, v)| (*v).clone());
            }
        }
        chosen
    };
    let string = |v: Option<Value>| match v {
        Some(Value::String(s)) => s.into_bytes(),
        _ => Vec::new(),
    };
    let tenant = string(single(Part::Tenant, &mut wrong));
    let subject = string(single(Part::Subject, &mut wrong));
    let client = string(single(Part::Client, &mut wrong));
    let session = string(single(Part::Session, &mut wrong));
    let token_id = string(single(Part::TokenId, &mut wrong));
    let iat = match single(Part::Iat, &mut wrong) {
        Some(Value::Number(n)) => unix_seconds(&n),
        _ => None,
    };

    let mut roles: Vec<(Vec<u8>, String)> = Vec::new();
    let roles_pointers = pointers(Part::Roles).cloned().unwrap_or_default();
    for (tokens, found) in roles_pointers.iter().zip(reached(Part::Roles, &mut wrong)) {
        let split = matches!(tokens.last().map(String::as_str), Some("scope" | "scp"));
        for (path, v) in found {
            let plain = |s: &str| s.as_bytes().to_vec();
            read_entitlements(v, &path, split, &plain, &mut roles, &mut wrong);
        }
    }
    let roles = limited(roles, &mut wrong);
    outcome(wrong, iat, |iat| Read {
        tenant,
        subject,
        client,
        session,
        token_id,
        roles,
        iat,
    })
}

/// The JSON text of a pointer spec.
pub fn pointers_json(spec: &Pointers) -> String {
    let escape = |t: &String| t.replace('~', "~0").replace('/', "~1");
    let fields: serde_json::Map<String, Value> = spec
        .iter()
        .map(|(part, list)| {
            let list = list
                .iter()
                .map(|tokens| {
                    Value::String(tokens.iter().map(|t| format!("/{}", escape(t))).collect())
                })
                .collect();
            (part.field().to_string(), Value::Array(list))
        })
        .collect();
    Value::Object(fields).to_string()
}

/// Whether the reader's error `message` names one of `claims`: as it is, or as Rust's
/// `{:?}` writes it inside the quotes of `claim "…"` (backslashes, quotes and control
/// characters escaped).
pub fn names_one_of(message: &str, claims: &[String]) -> bool {
    claims.iter().any(|c| {
        let quoted = format!("{c:?}");
        message.contains(c.as_str()) || message.contains(&quoted[1..quoted.len() - 1])
    })
}
