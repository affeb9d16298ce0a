//! A fixed loop of `check_jwt` calls for a profiler (callgrind counts instructions per
//! function): a Keycloak-shaped token of about 1 KB with 10 entitlements (the payload of
//! benches/claims.rs), a ledger of 10,000 live rules like the benchmark's: rules in every
//! scope, after the token's `iat`, on keys that are not the token's (every key of the
//! token is probed), and one rule per entitlement with a cutoff before the token's `iat`
//! (each role lookup finds its key; the token is valid).
//!
//! `cargo build --release --example profile_jwt && valgrind --tool=callgrind
//! target/release/examples/profile_jwt 100000 [1k] [absent] [read]`:
//! - `1k`: the 1,056-byte token of the benchmark's `check_jwt.keycloak_1k` rows (only the
//!   claims the mapping reads) instead of the 1.39 KB one;
//! - `absent`: no rule for the entitlements (the benchmark's `.absent` rows: a valid token
//!   as DESIGN §5's check targets define it, none of its keys in the ledger);
//! - `read`: only decode and read the token (`ClaimMapping::with_jwt`), without the check,
//!   whose instruction count varies with the ledger's random hash seed.
use base64_simd::URL_SAFE_NO_PAD as B64;
use revledger::{ClaimMapping, Ledger, Rule, Scope, WriterOptions};
use std::hint::black_box;

const ISS: &str = "https://sso.example.com/realms/acme";

fn main() {
    let checks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let flags: Vec<String> = std::env::args().skip(2).collect();
    let small = flags.iter().any(|f| f == "1k");
    let read_only = flags.iter().any(|f| f == "read");
    let absent = flags.iter().any(|f| f == "absent");
    let iat = revledger::unix_now_floor() - 60;
    let payload = if small {
        format!(
            r#"{{"exp":{exp},"iat":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","azp":"web-app","realm_access":{{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]}},"resource_access":{{"billing-api":{{"roles":["refund","view"]}},"account":{{"roles":["manage-account","view-profile"]}}}},"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"]}}"#,
            exp = iat + 3600
        )
    } else {
        format!(
            r#"{{"exp":{exp},"iat":{iat},"auth_time":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","aud":["billing-api","account"],"sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","typ":"Bearer","azp":"web-app","session_state":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","acr":"1","allowed-origins":["https://app.example.com"],"realm_access":{{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]}},"resource_access":{{"billing-api":{{"roles":["refund","view"]}},"account":{{"roles":["manage-account","view-profile"]}}}},"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"],"email_verified":true,"name":"John Doe","preferred_username":"john"}}"#,
            exp = iat + 3600
        )
    };
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
        let scopes = [
            Scope::Subject,
            Scope::Role,
            Scope::Session,
            Scope::Client,
            Scope::Token,
        ];
        let mut rules: Vec<Rule> = others
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let scope = scopes[i % scopes.len()];
                // A token rule's `at` is the revoked token's `exp`.
                let at = if scope == Scope::Token {
                    iat + 3_700
                } else {
                    iat + 100
                };
                Rule::new(scope, ISS.as_bytes(), k, at)
            })
            .collect();
        // The tenant scope's newest cutoff after `iat`, on another tenant.
        rules.push(Rule::new(Scope::Tenant, b"another-tenant", b"", iat + 100));
        if !absent {
            rules.extend(
                roles
                    .iter()
                    .map(|r| Rule::new(Scope::Role, ISS.as_bytes(), r, iat - 100)),
            );
        }
        w.revoke_batch(&rules).unwrap();
    }
    let ledger = Ledger::open_reader(&path).unwrap();
    let mut revoked = 0u64;
    for _ in 0..checks {
        if read_only {
            let iat = mapping.with_jwt(black_box(jwt.as_bytes()), |t| black_box(t).issued_at);
            revoked += u64::from(iat.unwrap() < 0);
            continue;
        }
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
