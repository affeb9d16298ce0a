//! The built-in claim mappings against a reference model. Random payloads — the claim
//! names the mappings read and others, values of every JSON type, strings holding the
//! bytes the Keycloak key form escapes, whitespace between tokens and JSON escapes inside
//! strings and member names — are read by [`ClaimMapping::with_claims`] and by
//! [`expected`], written from the table and rules of DESIGN.md §7 (the `claims` module
//! docs) over serde_json's tree, with no code of the reader's. Both must agree: the same
//! token, or both refuse, the reader naming a claim the model found wrong.

use proptest::prelude::*;
use revledger::{ClaimMapping, Error};
use serde_json::{Map, Number, Value};

/// A token as read, roles sorted (their order in a token is not part of the contract).
#[derive(Debug, PartialEq, Eq)]
struct Read {
    tenant: Vec<u8>,
    subject: Vec<u8>,
    client: Vec<u8>,
    session: Vec<u8>,
    token_id: Vec<u8>,
    roles: Vec<Vec<u8>>,
    iat: i64,
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
struct Spec {
    tenant: &'static [&'static str],
    subject: &'static [&'static str],
    client: &'static [&'static str],
    session: &'static [&'static str],
    token_id: &'static [&'static str],
    roles: &'static [Roles],
    /// Keycloak's key form for entitlements (`%` → `%25`, `:` → `%3A`).
    escaped: bool,
}

fn spec(name: &str) -> Spec {
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
fn expected(spec: &Spec, payload: &Value) -> Result<Read, Vec<String>> {
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

fn read(mapping: &ClaimMapping, json: &[u8]) -> Result<Read, Error> {
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

/// Claim names the built-in mappings read, names they do not, and names of clients and
/// nested members.
const NAMES: &[&str] = &[
    "iss",
    "sub",
    "oid",
    "tid",
    "org_id",
    "tenant",
    "azp",
    "client_id",
    "appid",
    "sid",
    "jti",
    "uti",
    "iat",
    "roles",
    "groups",
    "permissions",
    "scope",
    "scp",
    "wids",
    "realm_access",
    "resource_access",
    "https://ns.example/roles",
    "/roles",
    "roles/x",
    "email",
    "exp",
    "",
    "billing-api",
    "a:b",
    "50%",
];

fn name() -> impl Strategy<Value = String> {
    proptest::sample::select(NAMES).prop_map(str::to_owned)
}

/// Short strings with what matters: the escaped bytes, whitespace (scope splitting),
/// quotes, backslashes, control and non-ASCII characters (JSON escapes, UTF-8).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ab:% \t\n/\"\\\\\u{1}é€]{0,6}",
        "([a:%é]{0,3}[ \t\n\r\u{b}\u{c}]{0,2}){0,3}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (1_600_000_000i64..1_900_000_000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        proptest::sample::select(
            &[
                0.5,
                -0.5,
                -1.5,
                1.7e9 + 0.75,
                8.9e18,
                9.1e18,
                -9.1e18,
                1e300,
                -0.0
            ][..]
        )
        .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => number(),
        3 => text().prop_map(Value::String),
        3 => proptest::collection::vec(text().prop_map(Value::String), 0..4).prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((name(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn strings() -> impl Strategy<Value = Value> {
    proptest::collection::vec(text().prop_map(Value::String), 0..4).prop_map(Value::Array)
}

/// A value for the member `name`: mostly of the type a mapping that reads it wants (so
/// that most payloads are readable and the tokens are compared), sometimes anything.
fn member(claim: String) -> BoxedStrategy<(String, Value)> {
    let anything = value().boxed();
    let shaped = match claim.as_str() {
        "iss" | "sub" | "oid" | "tid" | "org_id" | "tenant" | "azp" | "client_id" | "appid"
        | "sid" | "jti" | "uti" => text().prop_map(Value::String).boxed(),
        "realm_access" => (strings(), proptest::option::of(value()))
            .prop_map(|(roles, other)| {
                let mut o = Map::new();
                o.insert("roles".into(), roles);
                if let Some(v) = other {
                    o.insert("other".into(), v);
                }
                Value::Object(o)
            })
            .boxed(),
        "resource_access" => proptest::collection::vec(
            (
                prop_oneof![name(), text()],
                prop_oneof![strings(), text().prop_map(Value::String)],
            ),
            0..4,
        )
        .prop_map(|clients| {
            let clients = clients.into_iter().map(|(client, roles)| {
                let mut o = Map::new();
                o.insert("roles".into(), roles);
                (client, Value::Object(o))
            });
            Value::Object(clients.collect())
        })
        .boxed(),
        n if n.ends_with("roles")
            || ["groups", "permissions", "scope", "scp", "wids"].contains(&n) =>
        {
            prop_oneof![strings(), text().prop_map(Value::String)].boxed()
        }
        _ => anything.clone(),
    };
    prop_oneof![8 => shaped, 1 => Just(Value::Null), 1 => anything]
        .prop_map(move |v| (claim.clone(), v))
        .boxed()
}

fn payload() -> impl Strategy<Value = Value> {
    let iat = prop_oneof![
        6 => (1_600_000_000i64..1_900_000_000).prop_map(|i| Some(Value::from(i))),
        1 => Just(None),
        2 => number().prop_map(Some),
        1 => value().prop_map(Some),
    ];
    let object = (
        proptest::collection::vec(name().prop_flat_map(member), 0..12),
        iat,
    )
        .prop_map(|(members, iat)| {
            let mut top: Map<String, Value> = members.into_iter().collect();
            if let Some(iat) = iat {
                top.insert("iat".into(), iat);
            }
            Value::Object(top)
        });
    prop_oneof![9 => object, 1 => value()]
}

/// `value` as JSON text: compact or pretty, and with the ASCII letters and digits of its
/// strings and member names written as `\u00XX` where `escapes` says so (the same value).
fn json_text(value: &Value, pretty: bool, escapes: &[bool]) -> Vec<u8> {
    let plain = if pretty {
        serde_json::to_string_pretty(value).unwrap()
    } else {
        serde_json::to_string(value).unwrap()
    };
    let mut out = String::with_capacity(plain.len() * 2);
    let (mut in_string, mut after_backslash, mut n) = (false, false, 0usize);
    // Hex digits of a `\uXXXX` escape still to come (left as they are).
    let mut hex_left = 0;
    for c in plain.chars() {
        if hex_left > 0 {
            hex_left -= 1;
            out.push(c);
            continue;
        }
        if in_string && !after_backslash && c.is_ascii_alphanumeric() {
            n += 1;
            if escapes.get(n % escapes.len().max(1)) == Some(&true) {
                out.push_str(&format!("\\u{:04x}", c as u32));
                continue;
            }
        }
        out.push(c);
        if after_backslash {
            after_backslash = false;
            if c == 'u' {
                hex_left = 4;
            }
        } else if in_string && c == '\\' {
            after_backslash = true;
        } else if c == '"' {
            in_string = !in_string;
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        *value,
        "escaping changed the value"
    );
    out.into_bytes()
}

fn agree(spec_name: &str, payload: &Value, json: &[u8]) -> Result<(), TestCaseError> {
    let mapping = ClaimMapping::new(spec_name).unwrap();
    let want = expected(&spec(spec_name), payload);
    let got = read(&mapping, json);
    let text = String::from_utf8_lossy(json);
    match (want, got) {
        (Ok(want), Ok(got)) => prop_assert_eq!(got, want, "{} reading {}", spec_name, text),
        (Err(claims), Err(Error::InvalidArgument(message))) => prop_assert!(
            claims.iter().any(|c| message.contains(c.as_str())),
            "{spec_name} reading {text}: the reader's error {message:?} names none of {claims:?}"
        ),
        (Err(claims), Ok(got)) => prop_assert!(
            false,
            "{spec_name} reading {text}: read {got:?}, but {claims:?} should refuse it"
        ),
        (Ok(want), Err(e)) => prop_assert!(
            false,
            "{spec_name} reading {text}: refused ({e}), expected {want:?}"
        ),
        (Err(_), Err(e)) => prop_assert!(false, "{spec_name}: not InvalidArgument: {e:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn every_builtin_mapping_reads_what_the_table_says(
        payload in payload(),
        pretty in any::<bool>(),
        escapes in proptest::collection::vec(proptest::bool::weighted(0.2), 0..8),
    ) {
        let json = json_text(&payload, pretty, &escapes);
        for spec_name in ["generic", "auth0", "keycloak", "entra"] {
            agree(spec_name, &payload, &json)?;
        }
    }
}

/// The model itself, on one payload of each provider: what it expects is what the
/// tables say (so that an agreement above is not two copies of one mistake).
#[test]
fn the_model_reads_a_keycloak_token_as_documented() {
    let payload: Value = serde_json::from_str(
        r#"{"iss":"https://sso/realms/a","sub":"u","azp":"web","sid":"s","jti":"j","iat":1.7e9,
            "realm_access":{"roles":["admin","a:b"]},
            "resource_access":{"billing:x":{"roles":["50%"]},"account":null},
            "groups":["/g"],"scope":"openid  email","tid":"ignored"}"#,
    )
    .unwrap();
    let want = Read {
        tenant: b"https://sso/realms/a".to_vec(),
        subject: b"u".to_vec(),
        client: b"web".to_vec(),
        session: b"s".to_vec(),
        token_id: b"j".to_vec(),
        roles: {
            let mut r: Vec<Vec<u8>> = [
                "/g",
                "a%3Ab",
                "admin",
                "billing%3Ax:50%25",
                "email",
                "openid",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
            r.sort();
            r
        },
        iat: 1_700_000_000,
    };
    assert_eq!(expected(&spec("keycloak"), &payload), Ok(want));
    let mapping = ClaimMapping::new("keycloak").unwrap();
    assert_eq!(
        read(
            &mapping,
            serde_json::to_string(&payload).unwrap().as_bytes()
        )
        .unwrap(),
        expected(&spec("keycloak"), &payload).unwrap()
    );
    assert_eq!(
        expected(&spec("generic"), &json_value(r#"{"iat":1,"scope":7}"#)),
        Err(vec!["scope".to_string()])
    );
}

fn json_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}
