//! `revledger ingest`, Keycloak webhook events: arbitrary bytes as a delivery and as its
//! `X-Keycloak-Signature`. Never a panic; the same answer twice; a signature over the
//! exact body verifies and one over any other body does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger_cli::ingest::keycloak::{map_body, verify_signature, Hmac, KeycloakPolicy};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let policy = KeycloakPolicy {
        issuer: (mode & 1 == 0).then(|| "https://sso.example.com/realms/{realm}".to_string()),
        realms: [(
            "acme".to_string(),
            "https://sso.example.com/realms/acme".to_string(),
        )]
        .into(),
        clients: [("6b1d".to_string(), "orders-api".to_string())].into(),
        allow_tenant_rules: mode & 2 != 0,
    };
    let first = map_body(body, &policy);
    assert_eq!(first, map_body(body, &policy), "mapping is deterministic");

    use aws_lc_rs::hmac;
    let tag = hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), body).as_ref());
    assert!(verify_signature(Some(&tag), body, b"k", Hmac::Sha256).is_ok());
    let mut other = body.to_vec();
    other.push(mode);
    assert!(verify_signature(Some(&tag), &other, b"k", Hmac::Sha256).is_err());
    let _ = verify_signature(std::str::from_utf8(body).ok(), body, b"k", Hmac::Sha1);
});
