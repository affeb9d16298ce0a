//! `revledger ingest`, OpenID SSF: arbitrary bytes as the claims of a verified Security
//! Event Token (mapped to rules) and as a compact JWS (header, `typ`, a verification
//! attempt). Never a panic; a SET that maps gives one mapped event per event, every rule
//! valid or refused by the checks that run before writing, and the same answer twice.
#![no_main]

use jsonwebtoken::{DecodingKey, Validation};
use libfuzzer_sys::fuzz_target;
use revledger_cli::ingest::config::OpaqueSession;
use revledger_cli::ingest::event::check_rules;
use revledger_cli::ingest::ssf::{check_typ, map_set, SetPolicy, TenantSource};
use serde_json::Value;
use std::sync::OnceLock;

const NOW: i64 = 1_700_000_000;

fn policy(i: u8) -> SetPolicy {
    SetPolicy {
        issuer: "https://idp.example.com/".into(),
        audiences: vec!["https://rp.example.com/".into()],
        algorithms: vec![jsonwebtoken::Algorithm::ES256],
        tenant: match i % 3 {
            0 => vec![
                TenantSource::SubjectTenant,
                TenantSource::Fixed(String::new()),
            ],
            1 => vec![TenantSource::SubjectIss, TenantSource::Iss],
            _ => vec![TenantSource::SubjectTenant],
        },
        subject_formats: ["iss_sub", "opaque", "email", "phone_number"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        opaque_session: [
            OpaqueSession::Session,
            OpaqueSession::Subject,
            OpaqueSession::SessionAndSubject,
        ][usize::from(i % 3)],
        allow_tenant_rules: i & 4 != 0,
        token_lifetime: 3900,
    }
}

/// A P-256 public key (RFC 7515 A.3), for verification attempts.
fn key() -> &'static DecodingKey {
    static K: OnceLock<DecodingKey> = OnceLock::new();
    K.get_or_init(|| {
        DecodingKey::from_ec_components(
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        )
        .expect("a valid key")
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    if let Ok(claims) = serde_json::from_slice::<Value>(data) {
        let p = policy(mode);
        let first = map_set(&claims, &p, NOW);
        assert_eq!(first, map_set(&claims, &p, NOW), "mapping is deterministic");
        if let Ok((events, _)) = first {
            let n = claims["events"].as_object().map_or(0, |e| e.len());
            assert_eq!(events.len(), n, "one mapped event per event");
            let rules: Vec<_> = events
                .iter()
                .flat_map(|e| e.rules.iter().cloned())
                .collect();
            if check_rules(&rules, NOW, 300).is_ok() {
                for r in &rules {
                    r.as_rule().validate().expect("checked rules are valid");
                }
            }
        }
    }
    if let Ok(token) = std::str::from_utf8(data) {
        if let Ok(header) = jsonwebtoken::decode_header(token) {
            let _ = check_typ(header.typ.as_deref());
            let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
            v.validate_exp = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            let _ = jsonwebtoken::decode::<Value>(token, key(), &v);
        }
    }
});
