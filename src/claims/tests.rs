//! What each mapping reads from a payload, and what it refuses.

use super::*;
use crate::rule::{MAX_KEY_LEN, MAX_ROLES};

/// The token a mapping reads, owned, roles as strings in the order read.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    tenant: String,
    subject: String,
    roles: Vec<String>,
    client: String,
    session: String,
    token_id: String,
    iat: i64,
}

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

fn read(spec: &str, json: &str) -> Read {
    try_read(spec, json).unwrap_or_else(|e| panic!("{spec} {json}: {e}"))
}

fn try_read(spec: &str, json: &str) -> Result<Read> {
    ClaimMapping::new(spec)?.with_claims(json.as_bytes(), |t| Read {
        tenant: s(t.tenant),
        subject: s(t.subject),
        roles: t.roles.iter().map(|r| s(r)).collect(),
        client: s(t.client),
        session: s(t.session),
        token_id: s(t.token_id),
        iat: t.issued_at,
    })
}

fn error(spec: &str, json: &str) -> String {
    match try_read(spec, json) {
        Ok(r) => panic!("{spec} {json}: read {r:?}, expected an error"),
        Err(e) => {
            assert!(matches!(e, crate::Error::InvalidArgument(_)), "{e:?}");
            e.to_string()
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn generic_reads_every_source_first_present_wins_roles_union() {
    let r = read(
        "generic",
        r#"{"tid":"t2","org_id":"t3","sub":"john","roles":["admin"],"groups":["ops"],
            "permissions":["read:x"],"scope":"openid  email","scp":"User.Read",
            "client_id":"c2","appid":"c3","sid":"s1","uti":"u1","iat":1700000000}"#,
    );
    assert_eq!(r.tenant, "t2");
    assert_eq!(r.subject, "john");
    assert_eq!(
        sorted(r.roles),
        ["User.Read", "admin", "email", "openid", "ops", "read:x"]
    );
    assert_eq!((r.client.as_str(), r.session.as_str()), ("c2", "s1"));
    assert_eq!(r.token_id, "u1");
    assert_eq!(r.iat, 1_700_000_000);
    // The first source wins whatever the order of the members in the payload.
    let r = read(
        "generic",
        r#"{"appid":"c3","org_id":"t3","uti":"u1","tenant":"t1","jti":"j1","azp":"c1","iat":1}"#,
    );
    assert_eq!(
        (r.tenant.as_str(), r.client.as_str(), r.token_id.as_str()),
        ("t1", "c1", "j1")
    );
}

#[test]
fn auth0_reads_permissions_namespaced_roles_and_org() {
    let r = read(
        "auth0",
        r#"{"iss":"https://acme.eu.auth0.com/","sub":"auth0|123","aud":["https://api"],
            "iat":1700000000,"exp":1700086400,"azp":"spa-client","scope":"openid read:orders",
            "org_id":"org_abc","permissions":["read:orders","delete:orders"],
            "https://acme.example.com/roles":["admin","support"],
            "https://acme.example.com/email":"j@x","roles":["not-auth0"],"sid":"s","jti":"j"}"#,
    );
    assert_eq!(r.tenant, "org_abc");
    assert_eq!(r.subject, "auth0|123");
    assert_eq!(
        sorted(r.roles),
        [
            "admin",
            "delete:orders",
            "openid",
            "read:orders",
            "read:orders",
            "support"
        ]
    );
    assert_eq!(r.client, "spa-client");
}

#[test]
fn keycloak_keys_client_roles_with_their_client_and_escapes() {
    let r = read(
        "keycloak",
        r#"{"iss":"https://sso.example.com/realms/acme","sub":"f:1","typ":"Bearer",
            "azp":"web","sid":"sess","jti":"jt","iat":1700000000,
            "realm_access":{"roles":["offline_access","a:b","50%"]},
            "resource_access":{"account":{"roles":["manage-account"]},
                               "a":{"roles":["b"]},"x:y":{"roles":["z%"]},"empty":{}},
            "groups":["/admins"],"scope":"openid profile"}"#,
    );
    assert_eq!(r.tenant, "https://sso.example.com/realms/acme");
    assert_eq!(r.subject, "f:1");
    assert_eq!(
        sorted(r.roles),
        [
            "/admins",
            "50%25",
            "a%3Ab",
            "a:b",
            "account:manage-account",
            "offline_access",
            "openid",
            "profile",
            "x%3Ay:z%25"
        ]
    );
    assert_eq!(keycloak_role_key(None, b"a:b"), b"a%3Ab");
    assert_eq!(keycloak_role_key(Some(b"a"), b"b"), b"a:b");
    assert_eq!(keycloak_role_key(Some(b"x:y"), b"z%"), b"x%3Ay:z%25");
    assert!(matches!(keycloak_escape(b"plain"), Cow::Borrowed(_)));
}

#[test]
fn entra_reads_tid_oid_uti_and_every_entitlement() {
    let r = read(
        "entra",
        r#"{"aud":"api://x","iss":"https://login.microsoftonline.com/tid-1/v2.0",
            "iat":1700000000,"nbf":1700000000,"exp":1700003600,"azp":"app-1","azpacr":"0",
            "name":"J","oid":"oid-1","preferred_username":"j@x","rh":"0.A",
            "roles":["Orders.Admin"],"groups":["g-1"],"wids":["w-1"],"scp":"User.Read Mail.Send",
            "sub":"pairwise","tid":"tid-1","uti":"uti-1","ver":"2.0","sid":"s-1"}"#,
    );
    assert_eq!(
        (r.tenant.as_str(), r.subject.as_str(), r.token_id.as_str()),
        ("tid-1", "oid-1", "uti-1")
    );
    assert_eq!(
        sorted(r.roles),
        ["Mail.Send", "Orders.Admin", "User.Read", "g-1", "w-1"]
    );
    assert_eq!((r.client.as_str(), r.session.as_str()), ("app-1", "s-1"));
}

#[test]
fn pointer_specs_follow_pointers_and_wildcards() {
    let spec = r#"{"tenant":["/org/id","/tid"],"subject":"/user/sub",
                   "roles":["/realm_access/roles","/resource_access/*/roles","/perms/0","/a~1b/scope"],
                   "client":["/azp"],"session":["/sid"],"token_id":["/jti"],"iat":["/times/issued"]}"#;
    let r = read(
        spec,
        r#"{"tid":"t","user":{"sub":"u"},"realm_access":{"roles":["r1"]},
            "resource_access":{"c1":{"roles":["x"]},"c2":{"roles":["y"]}},
            "perms":["p0","p1"],"a/b":{"scope":"s1 s2"},"times":{"issued":42},"iat":1}"#,
    );
    assert_eq!(r.tenant, "t");
    assert_eq!(r.subject, "u");
    assert_eq!(sorted(r.roles), ["p0", "r1", "s1", "s2", "x", "y"]);
    assert_eq!(r.iat, 42);
    // An exact name and `*` both matching one member: each reads it.
    let r = read(
        r#"{"roles":["/ra/*/roles","/ra/a/roles"]}"#,
        r#"{"ra":{"a":{"roles":["k"]}},"iat":1}"#,
    );
    assert_eq!(r.roles, ["k", "k"]);
    // `*` over an array.
    let r = read(
        r#"{"roles":["/groups/*/name"]}"#,
        r#"{"groups":[{"name":"g1"},{"id":2},{"name":"g2"}],"iat":1}"#,
    );
    assert_eq!(r.roles, ["g1", "g2"]);
    // An omitted part is not read; iat defaults to /iat.
    let r = read(
        r#"{"subject":["/sub"]}"#,
        r#"{"sub":"u","tid":"t","iat":7}"#,
    );
    assert_eq!((r.tenant.as_str(), r.iat), ("", 7));
}

#[test]
fn json_escapes_are_decoded_and_keys_compared_decoded() {
    let r = read(
        "generic",
        r#"{"s\u0075b":"j\u00f6rg","roles":["a\/b","caf\u00e9"],"iat":1}"#,
    );
    assert_eq!(r.subject, "jörg");
    assert_eq!(r.roles, ["a/b", "café"]);
    let r = read(
        "auth0",
        r#"{"https:\/\/x.com\/roles":["r\u003a1"],"iat":1}"#,
    );
    assert_eq!(r.roles, ["r:1"]);
    let r = read(
        "keycloak",
        r#"{"resource_access":{"c\u003a1":{"roles":["r\u00e9"]}},"iat":1}"#,
    );
    assert_eq!(r.roles, ["c%3A1:ré"]);
    // A claim the mapping reads, spelled with an escape in its name, is still read; and
    // one backslash anywhere in the payload does not change how plain strings read.
    let r = read(
        "generic",
        r#"{"ia\u0074":5,"sub":"u","note":"a\"b","roles":["r"],"tid":"t"}"#,
    );
    assert_eq!(
        (r.iat, r.subject.as_str(), r.tenant.as_str(), r.roles.len()),
        (5, "u", "t", 1)
    );
}

#[test]
fn null_is_absent_and_iat_fractions_round_down() {
    let r = read(
        "generic",
        r#"{"tenant":null,"tid":"t","roles":null,"sub":"u","iat":99.9}"#,
    );
    assert_eq!((r.tenant.as_str(), r.iat), ("t", 99));
    assert!(r.roles.is_empty());
    assert_eq!(read("generic", r#"{"iat":-5.5}"#).iat, -6);
}

#[test]
fn bad_payloads_are_invalid_argument_naming_the_claim() {
    for (spec, json, needle) in [
        ("generic", "[1]", "must be a JSON object, found an array"),
        ("generic", "\"x\"", "must be a JSON object, found a string"),
        ("generic", "", "not valid JSON"),
        ("generic", "{", "not valid JSON"),
        ("generic", r#"{"iat":1} {}"#, "not valid JSON"),
        ("generic", r#"{"sub":"x"}"#, "no \"iat\""),
        (
            "generic",
            r#"{"iat":"1"}"#,
            "claim \"iat\" must be a number",
        ),
        (
            "generic",
            r#"{"iat":1e300}"#,
            "claim \"iat\" is out of range",
        ),
        (
            "generic",
            r#"{"iat":123456789012345678901234567890}"#,
            "claim \"iat\"",
        ),
        (
            "generic",
            r#"{"iat":1,"sub":5}"#,
            "claim \"sub\" must be a string, found a number",
        ),
        (
            "generic",
            r#"{"iat":1,"tid":{}}"#,
            "claim \"tid\" must be a string",
        ),
        (
            "generic",
            r#"{"iat":1,"roles":[1]}"#,
            "claim \"roles/0\" must be a string",
        ),
        (
            "generic",
            r#"{"iat":1,"roles":{}}"#,
            "claim \"roles\" must be an array of strings",
        ),
        ("generic", r#"{"iat":1,"scope":true}"#, "claim \"scope\""),
        (
            "generic",
            r#"{"iat":1,"sub":"a","sub":"b"}"#,
            "claim \"sub\" appears more than once",
        ),
        (
            "generic",
            r#"{"iat":1,"iat":2}"#,
            "claim \"iat\" appears more than once",
        ),
        // A duplicate at the source that wins, in any order of the members.
        (
            "generic",
            r#"{"iat":1,"tid":"a","org_id":"o","tid":"b"}"#,
            "claim \"tid\" appears more than once",
        ),
        (
            "generic",
            r#"{"iat":1,"org_id":"o","tid":"a","tid":"b"}"#,
            "claim \"tid\" appears more than once",
        ),
        (
            r#"{"tenant":["/org","/orgs/*/id"]}"#,
            r#"{"iat":1,"orgs":{"x":{"id":"a"},"y":{"id":"b"}}}"#,
            "claim \"orgs/y/id\" appears more than once",
        ),
        (
            "keycloak",
            r#"{"iat":1,"realm_access":"admin"}"#,
            "claim \"realm_access\" must be an object",
        ),
        (
            "keycloak",
            r#"{"iat":1,"realm_access":{"roles":5}}"#,
            "claim \"realm_access/roles\"",
        ),
        (
            "keycloak",
            r#"{"iat":1,"resource_access":{"api":{"roles":[true]}}}"#,
            "claim \"resource_access/api/roles/0\"",
        ),
        ("keycloak", r#"{"iat":1,"resource_access":{"api":[]}}"#, ""),
        ("entra", r#"{"iat":1,"wids":[null]}"#, "claim \"wids/0\""),
        (
            "auth0",
            r#"{"iat":1,"https://x/roles":"a","https://y/roles":7}"#,
            "claim \"https://y/roles\"",
        ),
        (
            "generic",
            r#"{"iat":1,"roles":["\ud800"]}"#,
            "claim \"roles\"",
        ),
    ] {
        if needle.is_empty() {
            // An array where an object is expected is walked as one (`*` matches its
            // elements): nothing to read in an empty one.
            assert!(try_read(spec, json).is_ok(), "{spec} {json}");
            continue;
        }
        let e = error(spec, json);
        assert!(e.contains(needle), "{spec} {json}: {e}");
    }
}

#[test]
fn a_source_that_does_not_win_may_repeat_in_any_order() {
    // `tenant` outranks `tid` in the generic mapping; `/org` outranks `/orgs/*/id`.
    for json in [
        r#"{"iat":1,"tenant":"t","tid":"a","tid":"b"}"#,
        r#"{"iat":1,"tid":"a","tid":"b","tenant":"t"}"#,
        r#"{"iat":1,"tid":"a","tenant":"t","tid":"b"}"#,
    ] {
        assert_eq!(read("generic", json).tenant, "t", "{json}");
    }
    let spec = r#"{"tenant":["/org","/orgs/*/id"]}"#;
    for json in [
        r#"{"iat":1,"org":"o","orgs":{"x":{"id":"a"},"y":{"id":"b"}}}"#,
        r#"{"iat":1,"orgs":{"x":{"id":"a"},"y":{"id":"b"}},"org":"o"}"#,
    ] {
        assert_eq!(read(spec, json).tenant, "o", "{json}");
    }
}

#[test]
fn limits_are_enforced_with_the_claim_named() {
    let long = "x".repeat(MAX_KEY_LEN + 1);
    let e = error("generic", &format!(r#"{{"iat":1,"sub":"{long}"}}"#));
    assert!(e.contains("claim \"sub\" is 4097 bytes long"), "{e}");
    let e = error("generic", &format!(r#"{{"iat":1,"roles":["{long}"]}}"#));
    assert!(e.contains("claim \"roles\"") && e.contains("limit"), "{e}");
    let max = "x".repeat(MAX_KEY_LEN);
    assert_eq!(
        read("generic", &format!(r#"{{"iat":1,"sub":"{max}"}}"#)).subject,
        max
    );

    let roles = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| format!("\"r{i}\"")).collect();
        format!(r#"{{"iat":1,"roles":[{}]}}"#, items.join(","))
    };
    assert_eq!(read("generic", &roles(MAX_ROLES)).roles.len(), MAX_ROLES);
    let e = error("generic", &roles(MAX_ROLES + 1));
    assert!(e.contains("over 4096 roles"), "{e}");
    // Empty strings are not roles and do not count, before or after the others.
    let with_empty = |json: &str, at_end: bool| {
        let json = json.replacen("\"roles\":[", "\"roles\":[\"\",", usize::from(!at_end));
        json.replacen("]}", ",\"\"]}", usize::from(at_end))
    };
    for at_end in [false, true] {
        let json = with_empty(&roles(MAX_ROLES), at_end);
        assert_eq!(
            read("generic", &json).roles.len(),
            MAX_ROLES,
            "at end {at_end}"
        );
    }

    let big = format!(r#"{{"iat":1,"pad":"{}"}}"#, "x".repeat(MAX_CLAIMS_LEN));
    assert!(error("generic", &big).contains("the limit is 65536"));
    let deep = format!("{{\"iat\":1,\"x\":{}{}}}", "[".repeat(300), "]".repeat(300));
    assert!(error("generic", &deep).contains("not valid JSON"));
}

#[test]
fn with_jwt_decodes_the_payload_and_leaves_the_signature_alone() {
    let b64 = |s: &str| base64_simd::URL_SAFE_NO_PAD.encode_to_string(s);
    let jwt = format!(
        "{}.{}.not-a-signature",
        b64(r#"{"alg":"RS256"}"#),
        b64(r#"{"sub":"john","iat":5}"#)
    );
    let m = ClaimMapping::new("generic").unwrap();
    let sub = m.with_jwt(jwt.as_bytes(), |t| s(t.subject)).unwrap();
    assert_eq!(sub, "john");
    assert_eq!(
        jwt_payload(jwt.as_bytes()).unwrap(),
        br#"{"sub":"john","iat":5}"#
    );
    let e = m.with_jwt(b"a.b!c.d", |_| ()).unwrap_err().to_string();
    assert!(e.contains("not base64url"), "{e}");
    let e = m
        .with_jwt(format!("h.{}.s", b64("[]")).as_bytes(), |_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("JSON object"), "{e}");
}

#[test]
fn checks_go_through_the_ledger() {
    use crate::{Rule, Scope, WriterOptions};
    let dir = tempfile::tempdir().unwrap();
    let ledger =
        Ledger::open_writer(dir.path().join("l"), &WriterOptions::with_lifetime(3600)).unwrap();
    let kc = ClaimMapping::new("keycloak").unwrap();
    let iss = b"https://sso/realms/acme";
    ledger
        .revoke(&Rule::new(
            Scope::Role,
            iss,
            &keycloak_role_key(Some(b"api"), b"admin"),
            100,
        ))
        .unwrap();
    let json = |iat: i64, client: &str| {
        format!(
            r#"{{"iss":"https://sso/realms/acme","sub":"u","iat":{iat},
                "resource_access":{{"{client}":{{"roles":["admin"]}}}}}}"#
        )
    };
    assert_eq!(
        ledger
            .check_claims(&kc, json(99, "api").as_bytes())
            .unwrap(),
        Verdict::Revoked {
            scope: Scope::Role,
            cutoff: 100
        }
    );
    assert_eq!(
        ledger
            .check_claims(&kc, json(100, "api").as_bytes())
            .unwrap(),
        Verdict::Valid
    );
    assert_eq!(
        ledger
            .check_claims(&kc, json(99, "web").as_bytes())
            .unwrap(),
        Verdict::Valid
    );
    assert!(ledger.check_claims(&kc, b"{}").is_err());
}

mod hostile {
    //! Arbitrary bytes, and valid payloads with bytes changed: every mapping answers or
    //! refuses with InvalidArgument, never panics.
    use super::*;
    use proptest::prelude::*;

    const PAYLOAD: &str = r#"{"iss":"https://sso/realms/a","sub":"u","tid":"t","oid":"o","iat":1700000000,
        "realm_access":{"roles":["a:b","c%"]},"resource_access":{"x:y":{"roles":["r"]},"z":{}},
        "groups":["/g"],"scope":"s t","scp":"u","wids":["w"],"https://n/roles":["n"],
        "permissions":["p"],"org_id":"o","azp":"c","sid":"s","jti":"j","uti":"k","x":[1,{"y":null}]}"#;

    fn mappings() -> Vec<ClaimMapping> {
        let mut m: Vec<ClaimMapping> = BUILTIN_SPECS
            .iter()
            .map(|s| ClaimMapping::new(s).unwrap())
            .collect();
        m.push(
            ClaimMapping::new(
                r#"{"tenant":["/x/1/y","/tid"],"roles":["/resource_access/*/roles","/groups/*"],"iat":["/iat"]}"#,
            )
            .unwrap(),
        );
        m
    }

    fn answers_or_refuses(m: &ClaimMapping, json: &[u8]) {
        let r = m.with_claims(json, |t| {
            assert!(t.roles.len() <= MAX_ROLES);
            t.roles
                .iter()
                .all(|r| !r.is_empty() && r.len() <= MAX_KEY_LEN)
        });
        match r {
            Ok(all_fine) => assert!(all_fine),
            Err(e) => assert!(matches!(e, crate::Error::InvalidArgument(_)), "{e:?}"),
        }
        let jwt = format!(
            "h.{}.s",
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(json)
        );
        if let Err(e) = m.with_jwt(jwt.as_bytes(), |_| ()) {
            assert!(matches!(e, crate::Error::InvalidArgument(_)), "{e:?}");
        }
        if let Err(e) = m.with_jwt(json, |_| ()) {
            assert!(matches!(e, crate::Error::InvalidArgument(_)), "{e:?}");
        }
    }

    #[test]
    fn the_unmodified_payload_reads_through_every_mapping() {
        for m in mappings() {
            assert!(m.with_claims(PAYLOAD.as_bytes(), |_| ()).is_ok(), "{m}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for m in mappings() {
                answers_or_refuses(&m, &bytes);
            }
        }

        #[test]
        fn payloads_with_bytes_changed(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let mut json = PAYLOAD.as_bytes().to_vec();
            for (at, byte) in edits {
                let i = at.index(json.len());
                json[i] = byte;
            }
            for m in mappings() {
                answers_or_refuses(&m, &json);
            }
        }
    }
}
