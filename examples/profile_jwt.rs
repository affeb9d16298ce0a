//! A fixed loop of `check_jwt` calls for a profiler (callgrind counts instructions per
//! function): the Keycloak token of benches/claims.rs (10 entitlements) and the ledger of
//! its `.found` rows, both from benches/common/claims.rs: 9,900 rules in every scope,
//! after the token's `iat`, on keys that are not the token's (every key of the token is
//! probed), and one rule per entitlement with a cutoff before the token's `iat` (each role
//! lookup finds its key; the token is valid).
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
use revledger::{ClaimMapping, Ledger};
use std::hint::black_box;

#[allow(dead_code)] // the `generic` token is the benchmark's only
#[path = "../benches/common/claims.rs"]
mod fixture;

use fixture::{keycloak_payload, keycloak_payload_1k, write_ledger, ISS};

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
        keycloak_payload_1k(iat)
    } else {
        keycloak_payload(iat)
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
    let role_keys: Vec<&[u8]> = roles.iter().map(Vec::as_slice).collect();
    let found: &[&[u8]] = if absent { &[] } else { &role_keys };
    // The benchmark's tenants: this token's realm and the `generic` token's.
    write_ledger(&path, iat, &[ISS.as_bytes(), b"acme"], found);
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
