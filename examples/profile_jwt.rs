//! A fixed loop of `check_jwt` calls for a profiler (callgrind counts instructions per
//! function): a Keycloak-shaped token of about 1 KB with 10 entitlements (the payload of
//! benches/claims.rs), a ledger of 10,000 live rules holding one rule per entitlement
//! with a cutoff before the token's `iat` (every key probed; the token is valid).
//!
//! `cargo build --release --example profile_jwt && valgrind --tool=callgrind
//! target/release/examples/profile_jwt 100000`
use base64_simd::URL_SAFE_NO_PAD as B64;
use revledger::{ClaimMapping, Ledger, Rule, Scope, WriterOptions};
use std::hint::black_box;

const ISS: &str = "https://sso.example.com/realms/acme";

fn main() {
    let checks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let iat = revledger::unix_now_floor() - 60;
    let payload = format!(
        r#"{{"exp":{exp},"iat":{iat},"auth_time":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","aud":["billing-api","account"],"sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","typ":"Bearer","azp":"web-app","session_state":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","acr":"1","allowed-origins":["https://app.example.com"],"realm_access":{{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]}},"resource_access":{{"billing-api":{{"roles":["refund","view"]}},"account":{{"roles":["manage-account","view-profile"]}}}},"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"],"email_verified":true,"name":"John Doe","preferred_username":"john"}}"#,
        exp = iat + 3600
    );
    // The signature is not looked at: 256 bytes of RS256's size.
    let jwt = format!(
        "{}.{}.{}",
        B64.encode_to_string(r#"{"alg":"RS256","typ":"JWT","kid":"bench-1"}"#),
        B64.encode_to_string(&payload),
        B64.encode_to_string([7u8; 256])
    );
    let mapping = ClaimMapping::new("keycloak").unwrap();
    let roles: Vec<Vec<u8>> = mapping
        .with_jwt(jwt.as_bytes(), |t| {
            t.roles.iter().map(|r| r.to_vec()).collect()
        })
        .unwrap();
    assert_eq!(roles.len(), 10);

    let dir = std::env::temp_dir().join(format!("revledger-profile-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l");
    {
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(7200)).unwrap();
        let others: Vec<Vec<u8>> = (0..9_990)
            .map(|i| format!("other-{i}").into_bytes())
            .collect();
        let mut rules: Vec<Rule> = others
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Rule::new(
                    [Scope::Subject, Scope::Role, Scope::Session][i % 3],
                    ISS.as_bytes(),
                    k,
                    iat + 100,
                )
            })
            .collect();
        rules.extend(
            roles
                .iter()
                .map(|r| Rule::new(Scope::Role, ISS.as_bytes(), r, iat - 100)),
        );
        w.revoke_batch(&rules).unwrap();
    }
    let ledger = Ledger::open_reader(&path).unwrap();
    let mut revoked = 0u64;
    for _ in 0..checks {
        revoked += u64::from(
            ledger
                .check_jwt(&mapping, black_box(jwt.as_bytes()))
                .unwrap()
                .is_revoked(),
        );
    }
    assert_eq!(revoked, 0);
    println!("{} bytes of JWT, {checks} checks", jwt.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
