//! The tokens and the ledger of benches/claims.rs, shared with examples/profile_jwt.rs
//! (which includes this file) so that the profile counts the benchmark's own work.

use revledger::{Ledger, Rule, Scope, WriterOptions};
use std::path::Path;

/// The Keycloak realm: the tokens' `iss`, their tenant under the `keycloak` mapping.
pub const ISS: &str = "https://sso.example.com/realms/acme";

/// A Keycloak access token's payload with exactly 10 entitlements (4 realm roles, 4
/// client roles, 1 group, 1 scope) and the usual claims, padded so that the signed
/// token is about 1 KB.
pub fn keycloak_payload(iat: i64) -> String {
    format!(
        r#"{{"exp":{exp},"iat":{iat},"auth_time":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","aud":["billing-api","account"],"sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","typ":"Bearer","azp":"web-app","session_state":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","acr":"1","allowed-origins":["https://app.example.com"],"realm_access":{{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]}},"resource_access":{{"billing-api":{{"roles":["refund","view"]}},"account":{{"roles":["manage-account","view-profile"]}}}},"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"],"email_verified":true,"name":"John Doe","preferred_username":"john"}}"#,
        exp = iat + 3600
    )
}

/// The same entitlements and the claims the `keycloak` mapping reads, without the others:
/// about 1 KB signed (1,056 bytes; DESIGN §5's size; a Keycloak "lightweight" access
/// token looks like this).
pub fn keycloak_payload_1k(iat: i64) -> String {
    format!(
        r#"{{"exp":{exp},"iat":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","azp":"web-app","realm_access":{{"roles":["offline_access","uma_authorization","default-roles-acme","billing-admin"]}},"resource_access":{{"billing-api":{{"roles":["refund","view"]}},"account":{{"roles":["manage-account","view-profile"]}}}},"scope":"openid","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","groups":["/acme/admins"]}}"#,
        exp = iat + 3600
    )
}

/// The same size and entitlements in the `generic` mapping's claims.
pub fn generic_payload(iat: i64) -> String {
    format!(
        r#"{{"exp":{exp},"iat":{iat},"nbf":{iat},"jti":"5e2a8b3c-0f7d-4c1e-9b1a-2d3e4f5a6b7c","iss":"{ISS}","aud":["billing-api","account"],"sub":"f1b5b1c0-1234-4e6f-9a0b-c1d2e3f4a5b6","tenant":"acme","azp":"web-app","sid":"0a6c2f1e-aaaa-bbbb-cccc-1234567890ab","roles":["offline_access","uma_authorization","default-roles-acme","billing-admin","billing-api.refund","billing-api.view","account.manage","account.view","/acme/admins"],"scope":"openid","email_verified":true,"name":"John Doe","preferred_username":"john","email":"john.doe@example.com","locale":"en","zoneinfo":"Europe/Paris"}}"#,
        exp = iat + 3600
    )
}

/// Writes the ledger at `path` (synced, its writer closed): 9,900 rules in `tenants`, in
/// every scope a token is probed in, with cutoffs after `iat` (so every key of a token
/// issued at `iat` is looked up) on keys that are not the token's, and a tenant rule on
/// another tenant; then one rule per tenant and entry of `roles` with a cutoff before
/// `iat` (each such role's lookup finds its key; the token stays valid).
pub fn write_ledger(path: &Path, iat: i64, tenants: &[&[u8]], roles: &[&[u8]]) {
    let scopes = [
        Scope::Subject,
        Scope::Role,
        Scope::Session,
        Scope::Client,
        Scope::Token,
    ];
    let mut owned: Vec<(Scope, Vec<u8>, Vec<u8>, i64)> = (0..9_900usize)
        .map(|i| {
            let scope = scopes[i % scopes.len()];
            // A token rule's `at` is the revoked token's `exp`.
            let at = if scope == Scope::Token {
                iat + 3_700
            } else {
                iat + 100
            };
            let tenant = tenants[i % tenants.len()].to_vec();
            (scope, tenant, format!("other-{i}").into_bytes(), at)
        })
        .collect();
    // Makes the tenant scope's newest cutoff later than `iat` without revoking the token.
    owned.push((
        Scope::Tenant,
        b"another-tenant".to_vec(),
        Vec::new(),
        iat + 100,
    ));
    for t in tenants {
        for r in roles {
            owned.push((Scope::Role, t.to_vec(), r.to_vec(), iat - 100));
        }
    }
    let rules: Vec<Rule> = owned
        .iter()
        .map(|(s, t, k, at)| Rule::new(*s, t, k, *at))
        .collect();
    let w = Ledger::open_writer(path, &WriterOptions::with_lifetime(7200)).unwrap();
    w.revoke_batch(&rules).unwrap();
    w.sync().unwrap();
}
