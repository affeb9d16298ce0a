//! The claim mappings against a reference model (tests/claims_model/model.rs). Random
//! payloads — the claim names the mappings read and others, values of every JSON type,
//! strings holding the bytes the Keycloak key form escapes, whitespace between tokens and
//! JSON escapes inside strings and member names — are read by
//! [`ClaimMapping::with_claims`] and by the model, written from the table and rules of
//! DESIGN.md §7 (the `claims` module docs) over serde_json's tree, with no code of the
//! reader's: [`expected`] for the four built-in mappings, [`expected_pointers`] for random
//! pointer specs (an RFC 6901 walk with `*` and array indices) with payloads shaped to
//! reach their pointers. Both must agree: the same token, or both refuse, the reader
//! naming a claim the model found wrong.

#[path = "claims_model/model.rs"]
mod model;

use model::{expected, expected_pointers, pointers_json, read, spec, Part, Pointers, Read};
use proptest::prelude::*;
use revledger::{ClaimMapping, Error};
use serde_json::{Map, Number, Value};

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
    value_named(NAMES)
}

/// Any JSON value, members named from `names`.
fn value_named(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => number(),
        3 => text().prop_map(Value::String),
        3 => strings(),
    ];
    leaf.prop_recursive(3, 32, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    proptest::sample::select(names).prop_map(str::to_owned),
                    inner
                ),
                0..4,
            )
            .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An array of up to three strings.
fn strings() -> impl Strategy<Value = Value> {
    proptest::collection::vec(text().prop_map(Value::String), 0..4).prop_map(Value::Array)
}

/// What an entitlements claim holds: an array of strings or one string.
fn entitlements() -> impl Strategy<Value = Value> {
    prop_oneof![strings(), text().prop_map(Value::String)]
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
        "resource_access" => {
            proptest::collection::vec((prop_oneof![name(), text()], entitlements()), 0..4)
                .prop_map(|clients| {
                    let clients = clients.into_iter().map(|(client, roles)| {
                        let mut o = Map::new();
                        o.insert("roles".into(), roles);
                        (client, Value::Object(o))
                    });
                    Value::Object(clients.collect())
                })
                .boxed()
        }
        n if n.ends_with("roles")
            || ["groups", "permissions", "scope", "scp", "wids"].contains(&n) =>
        {
            entitlements().boxed()
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
    same_answer(spec_name, json, want, read(&mapping, json))
}

/// The model's answer `want` and the reader's `got` for `json` read through the mapping
/// `spec_name`: the same token, or both refuse with the reader naming a claim the model
/// found wrong.
fn same_answer(
    spec_name: &str,
    json: &[u8],
    want: Result<Read, Vec<String>>,
    got: Result<Read, Error>,
) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(json);
    match (want, got) {
        (Ok(want), Ok(got)) => prop_assert_eq!(got, want, "{} reading {}", spec_name, text),
        (Err(claims), Err(Error::InvalidArgument(message))) => prop_assert!(
            model::names_one_of(&message, &claims),
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

/// Member names and reference tokens of the pointer-spec payloads: few, so that pointers
/// and payloads meet; `0` and `1` are array indices too.
const POINTER_NAMES: &[&str] = &["a", "b", "0", "1", "scope"];

/// A pointer spec: some parts, each with one to three pointers, every pointer of one
/// length (so that none ends where another goes on, which the compiler refuses), at most
/// one `*` in each.
fn pointers() -> impl Strategy<Value = Pointers> {
    let token = prop_oneof![
        7 => proptest::sample::select(POINTER_NAMES).prop_map(str::to_owned),
        1 => Just("*".to_string()),
    ];
    (1usize..4).prop_flat_map(move |depth| {
        let pointer = proptest::collection::vec(token.clone(), depth).prop_map(|mut tokens| {
            let mut stars = 0;
            for t in tokens.iter_mut().filter(|t| *t == "*") {
                stars += 1;
                if stars > 1 {
                    *t = "a".into();
                }
            }
            tokens
        });
        let part = proptest::collection::vec(pointer, 1..4);
        proptest::collection::vec((proptest::bool::weighted(0.4), part), Part::ALL.len()).prop_map(
            |parts| {
                Part::ALL
                    .iter()
                    .zip(parts)
                    .filter(|(_, (named, _))| *named)
                    .map(|(&p, (_, list))| (p, list))
                    .collect::<Pointers>()
            },
        )
    })
}

/// A value a part wants: a string (or, for roles, also an array of strings), a number
/// for `iat`.
fn fitting(part: Part) -> BoxedStrategy<Value> {
    match part {
        Part::Iat => prop_oneof![
            4 => (1_600_000_000i64..1_900_000_000).prop_map(Value::from),
            1 => number(),
        ]
        .boxed(),
        Part::Roles => entitlements().boxed(),
        _ => text().prop_map(Value::String).boxed(),
    }
}

/// Puts `value` where `tokens` leads in `v`, making objects on the way (`*` becomes a
/// member `m`), unless something else is already there.
fn place(v: &mut Value, tokens: &[String], value: Value) {
    let Some((token, rest)) = tokens.split_first() else {
        if v.is_null() {
            *v = value;
        }
        return;
    };
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    let name = if token == "*" { "m" } else { token.as_str() };
    match v {
        Value::Object(o) => place(o.entry(name).or_insert(Value::Null), rest, value),
        Value::Array(a) => {
            let i = token.parse::<usize>().unwrap_or(0);
            if let Some(child) = a.get_mut(i) {
                place(child, rest, value);
            }
        }
        _ => {}
    }
}

/// A payload for `spec`: random members, and a fitting value placed at most pointers.
fn pointer_payload(spec: Pointers) -> impl Strategy<Value = (Pointers, Value)> {
    let fits: Vec<_> = spec
        .iter()
        .flat_map(|(part, list)| list.iter().map(|_| (any::<u8>(), fitting(*part))))
        .collect();
    (
        proptest::collection::vec(
            (
                proptest::sample::select(POINTER_NAMES).prop_map(str::to_owned),
                value_named(POINTER_NAMES),
            ),
            0..3,
        ),
        fits,
        fitting(Part::Iat),
    )
        .prop_map(move |(members, fits, iat)| {
            let mut top = Value::Object(members.into_iter().collect());
            let pointers = spec.iter().flat_map(|(_, list)| list);
            for (tokens, (dice, value)) in pointers.zip(fits) {
                if dice % 8 != 0 {
                    place(&mut top, tokens, value);
                }
            }
            place(&mut top, &["iat".to_string()], iat);
            (spec.clone(), top)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn pointer_specs_read_what_their_pointers_reach(
        (spec, payload) in pointers().prop_flat_map(pointer_payload),
        pretty in any::<bool>(),
        escapes in proptest::collection::vec(proptest::bool::weighted(0.2), 0..8),
    ) {
        let text = pointers_json(&spec);
        // Specs the compiler refuses (a pointer ending where another goes on) are skipped.
        let Ok(mapping) = ClaimMapping::new(&text) else {
            return Ok(());
        };
        let json = json_text(&payload, pretty, &escapes);
        let want = expected_pointers(&spec, &payload);
        same_answer(&text, &json, want, read(&mapping, &json))?;
    }

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

/// Found by the `claims` fuzz target: serde_json's default float parsing is not correctly
/// rounded (one unit in the last place off here), jiter's is; with `float_roundtrip` the
/// model agrees with the reader, both on the nearest double (…536.6 lies between …520
/// and …552, nearer the latter).
#[test]
fn the_model_parses_floats_as_the_reader_does() {
    let json = r#"{"a*d": "e75openid0}", "iat": 152877775555555536.64603600}"#;
    let want = expected(&spec("generic"), &json_value(json)).unwrap();
    assert_eq!(want.iat, 152_877_775_555_555_552);
    let mapping = ClaimMapping::new("generic").unwrap();
    assert_eq!(read(&mapping, json.as_bytes()).unwrap(), want);
}

/// Found by the `claims` fuzz target: the model knew no limits. Now both refuse an
/// entitlement or a claim over MAX_KEY_LEN bytes, naming its claim.
#[test]
fn the_model_and_the_reader_refuse_keys_over_the_limit() {
    let long = "x".repeat(revledger::MAX_KEY_LEN + 1);
    for (mapping, json, claim) in [
        (
            "keycloak",
            format!(r#"{{"iat":1,"realm_access":{{"roles":["{long}"]}}}}"#),
            "realm_access",
        ),
        (
            "generic",
            format!(r#"{{"iat":1,"scope":"a {long}"}}"#),
            "scope",
        ),
        ("entra", format!(r#"{{"iat":1,"oid":"{long}"}}"#), "oid"),
    ] {
        let want = expected(&spec(mapping), &json_value(&json));
        assert_eq!(want, Err(vec![claim.to_string()]), "{mapping}");
        let got = read(&ClaimMapping::new(mapping).unwrap(), json.as_bytes()).unwrap_err();
        assert!(got.to_string().contains(claim), "{mapping}: {got}");
    }
}

/// Found by the `claims` fuzz target: the reader writes claim names with `{:?}`, so a name
/// holding a backslash appears escaped in its message; the oracle reads it either way.
#[test]
fn claim_names_with_escaped_characters_are_named() {
    let json = r#"{"iat":1,"a\\b/roles":2}"#;
    let want = expected(&spec("auth0"), &json_value(json)).unwrap_err();
    assert_eq!(want, vec!["a\\b/roles".to_string()]);
    let got = read(&ClaimMapping::new("auth0").unwrap(), json.as_bytes()).unwrap_err();
    assert!(model::names_one_of(&got.to_string(), &want), "{got}");
}
