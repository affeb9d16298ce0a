//! `check_jwt` and `check_claims` on access tokens shaped like each identity provider's
//! documented examples (tests/claims/providers.json), signed at test time by PyJWT
//! (tests/claims/sign.py), so that nothing in this repository wrote both the token and
//! the code that reads it.

use revledger::claims::jwt_payload;
use revledger::{ClaimMapping, Ledger, Rule, Scope, Verdict, WriterOptions};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn signed_tokens() -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/claims/sign.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--format", "json"])
        .output()
        .expect("python3 runs (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "{} failed (scripts/install-deps installs PyJWT and cryptography): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from sign.py");
    assert!(cases.len() >= 5, "sign.py gave {} tokens", cases.len());
    cases
}

struct Case {
    name: String,
    mapping: ClaimMapping,
    jwt: String,
    iat: i64,
    exp: i64,
    revoked_by: Vec<(Scope, Vec<u8>, Vec<u8>)>,
    not_revoked_by: Vec<(Scope, Vec<u8>, Vec<u8>)>,
}

fn rules(v: &Value) -> Vec<(Scope, Vec<u8>, Vec<u8>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().as_bytes().to_vec();
            (
                Scope::parse(r["scope"].as_str().unwrap()).unwrap(),
                s("tenant"),
                s("key"),
            )
        })
        .collect()
}

fn cases() -> Vec<Case> {
    signed_tokens()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            mapping: ClaimMapping::new(c["spec"].as_str().unwrap()).unwrap(),
            jwt: c["jwt"].as_str().unwrap().into(),
            iat: c["iat"].as_i64().unwrap(),
            exp: c["exp"].as_i64().unwrap(),
            revoked_by: rules(&c["revoked_by"]),
            not_revoked_by: rules(&c["not_revoked_by"]),
        })
        .collect()
}

fn rule<'a>(c: &Case, r: &'a (Scope, Vec<u8>, Vec<u8>), cutoff: i64) -> Rule<'a> {
    let at = if r.0 == Scope::Token { c.exp } else { cutoff };
    Rule::new(r.0, &r.1, &r.2, at)
}

/// A writer and a reader of a fresh ledger.
fn ledger(dir: &Path, name: &str) -> (Ledger, Ledger) {
    let path = dir.join(name);
    let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(7200)).unwrap();
    let r = Ledger::open_reader(&path).unwrap();
    (w, r)
}

#[test]
fn provider_tokens_are_revoked_by_exactly_the_rules_their_claims_fall_in() {
    let dir = tempfile::tempdir().unwrap();
    for c in cases() {
        let payload = jwt_payload(c.jwt.as_bytes()).unwrap();
        for (i, r) in c.revoked_by.iter().enumerate() {
            let (w, reader) = ledger(dir.path(), &format!("{}-{i}", c.name));
            assert_eq!(
                reader.check_jwt(&c.mapping, c.jwt.as_bytes()).unwrap(),
                Verdict::Valid
            );
            w.revoke(&rule(&c, r, c.iat + 1)).unwrap();
            let want = Verdict::Revoked {
                scope: r.0,
                cutoff: if r.0 == Scope::Token {
                    c.exp
                } else {
                    c.iat + 1
                },
            };
            let what = format!("{}: {:?}", c.name, rule(&c, r, c.iat + 1));
            assert_eq!(
                reader.check_jwt(&c.mapping, c.jwt.as_bytes()).unwrap(),
                want,
                "{what}"
            );
            assert_eq!(
                reader.check_claims(&c.mapping, &payload).unwrap(),
                want,
                "{what}"
            );
        }
        // Every near miss at once: still valid.
        let (w, reader) = ledger(dir.path(), &format!("{}-misses", c.name));
        let misses: Vec<Rule> = c
            .not_revoked_by
            .iter()
            .map(|r| rule(&c, r, c.iat + 1))
            .collect();
        w.revoke_batch(&misses).unwrap();
        assert_eq!(
            reader.check_jwt(&c.mapping, c.jwt.as_bytes()).unwrap(),
            Verdict::Valid,
            "{}: one of {misses:?} revoked it",
            c.name
        );
        // A cutoff at the token's own iat does not revoke it (strictly before).
        let at_iat: Vec<Rule> = c
            .revoked_by
            .iter()
            .filter(|r| r.0 != Scope::Token)
            .map(|r| rule(&c, r, c.iat))
            .collect();
        w.revoke_batch(&at_iat).unwrap();
        assert_eq!(
            reader.check_jwt(&c.mapping, c.jwt.as_bytes()).unwrap(),
            Verdict::Valid,
            "{}",
            c.name
        );
    }
}

/// The signature is not verified: a token whose signature was replaced reads the same.
/// This is what the documentation warns about, asserted so it stays true and known.
#[test]
fn the_signature_is_not_verified() {
    let dir = tempfile::tempdir().unwrap();
    let c = cases().into_iter().next().unwrap();
    let (w, reader) = ledger(dir.path(), "l");
    w.revoke(&rule(&c, &c.revoked_by[0], c.iat + 1)).unwrap();
    let (head_payload, _sig) = c.jwt.rsplit_once('.').unwrap();
    let forged = format!("{head_payload}.AAAA");
    assert!(reader
        .check_jwt(&c.mapping, forged.as_bytes())
        .unwrap()
        .is_revoked());
}

#[test]
fn unreadable_tokens_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let (_w, reader) = ledger(dir.path(), "l");
    let c = cases().into_iter().next().unwrap();
    let (header, rest) = c.jwt.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    for (jwt, needle) in [
        (format!("{header}.!!!.{sig}"), "not base64url"),
        (format!("{header}.{sig}"), "2 parts"),
        (format!("{header}.e30.{sig}"), "no \"iat\""),
        (String::new(), "empty"),
    ] {
        let e = reader.check_jwt(&c.mapping, jwt.as_bytes()).unwrap_err();
        assert!(matches!(e, revledger::Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains(needle), "{jwt}: {e}");
    }
}
