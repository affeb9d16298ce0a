//! `check_jwt` (DESIGN.md §5: a 1 KB token with 10 roles, decode + map + check, ≤ 1 µs)
//! beside the RS256 verification of the same token, in the same run.
//!
//! Criterion group `claims`, in the benchmark thread's CPU time (`common::ThreadCpu`: the
//! machine is shared), one thread. Two ledgers of about 10,000 live rules (9,901, plus the
//! entitlements' rules in the *found* one), with rules in every scope of the token's
//! tenants (subject, session, role, client and token id keys that are not the token's,
//! and a tenant rule on another tenant) whose cutoffs are after the token's `iat`, so that
//! every key of the token is probed:
//! - *absent* (`.absent`): the token's keys have no rule, the valid token of DESIGN §5's
//!   check targets (the common case: most roles did not change within a token's lifetime);
//! - *found* (`.found`): each entitlement of the token also has a rule with a cutoff before
//!   its `iat`, so that every role lookup finds its key and reads its record (the token is
//!   still valid): what a token costs right after each of its roles changed.
//!
//! Ids (`<row>.<ledger>`):
//! - `check.r10`: `Ledger::check` of the already-built token (the floor);
//! - `check_claims.keycloak.r10`: the JSON payload through the `keycloak` mapping + check;
//! - `check_jwt.{keycloak,keycloak_1k,generic}.r10`: the compact JWS (1.39 KB; 1,056
//!   bytes for `keycloak_1k`, which keeps only `exp` and the claims the mapping reads):
//!   find and base64url-decode the payload, read it through the mapping, check;
//! - `floor.base64_decode`, `floor.jiter_skip`: the crates' own cost on this token (the
//!   payload decoded; one pass of jiter over its JSON), the floor of `check_jwt`;
//! - `rs256_verify.ring`, `rs256_verify.rsa`: what authentication costs before it: the
//!   signature base64url-decoded and verified over `header.payload` (SHA-256 + RSA-2048
//!   PKCS#1 v1.5) by ring (BoringSSL's assembly) and by RustCrypto's `rsa`.
//!
//! At the end it prints the ratios to `rs256_verify.ring` from criterion's estimates, and
//! writes them to `claims.json` in `common::out_dir()`; benches/report.py puts the rows on
//! docs/PERFORMANCE.md.
//!
//! `cargo bench --bench claims` (`REVLEDGER_BENCH_QUICK=1` for a short run).

mod common;

use base64_simd::URL_SAFE_NO_PAD as B64;
use common::claims::{generic_payload, keycloak_payload, keycloak_payload_1k, write_ledger};
use common::ThreadCpu;
use criterion::Criterion;
use revledger::{unix_now_floor, ClaimMapping, Ledger, Scope, Token, Verdict};
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use std::hint::black_box;
use std::path::Path;

fn sign(payload: &str, key: &SigningKey<rsa::sha2::Sha256>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode_to_string(r#"{"alg":"RS256","typ":"JWT","kid":"bench-1"}"#),
        B64.encode_to_string(payload)
    );
    let sig = key.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", B64.encode_to_string(sig))
}

/// Whether the token's entitlements have rules (older than the token) in the ledger.
#[derive(Clone, Copy, PartialEq)]
enum Keys {
    Absent,
    Found,
}

impl Keys {
    fn suffix(self) -> &'static str {
        match self {
            Keys::Absent => "absent",
            Keys::Found => "found",
        }
    }
}

/// The ledger of [`write_ledger`] for `tenants`, opened for reading; with `Keys::Found`, it
/// also holds a rule older than `iat` for each of `roles` (else none of the tokens' keys
/// has a rule).
fn build_ledger(path: &Path, iat: i64, tenants: &[&[u8]], roles: &[&[u8]], keys: Keys) -> Ledger {
    let roles = if keys == Keys::Found { roles } else { &[] };
    write_ledger(path, iat, tenants, roles);
    Ledger::open_reader(path).unwrap()
}

fn main() {
    let (warm_up, measure, _) = common::micro_times();
    let mut c = Criterion::default()
        .with_measurement(ThreadCpu::default())
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .configure_from_args();
    let iat = unix_now_floor() - 60;
    let mut rng = rsa::rand_core::OsRng;
    let private = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key");
    let signing = SigningKey::<rsa::sha2::Sha256>::new(private.clone());
    let verifying = VerifyingKey::<rsa::sha2::Sha256>::new(private.to_public_key());
    let ring_key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        private
            .to_public_key()
            .to_pkcs1_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    );

    let kc_payload = keycloak_payload(iat);
    let kc_jwt = sign(&kc_payload, &signing);
    let kc_jwt_1k = sign(&keycloak_payload_1k(iat), &signing);
    assert!(kc_jwt_1k.len() < 1100, "{} bytes", kc_jwt_1k.len());
    let gen_jwt = sign(&generic_payload(iat), &signing);
    let keycloak = ClaimMapping::new("keycloak").unwrap();
    let generic = ClaimMapping::new("generic").unwrap();

    // The token as the keycloak mapping reads it, for the floor and the ledger's rules.
    let (tenant, roles) = keycloak
        .with_claims(kc_payload.as_bytes(), |t| {
            (
                t.tenant.to_vec(),
                t.roles.iter().map(|r| r.to_vec()).collect::<Vec<_>>(),
            )
        })
        .unwrap();
    assert_eq!(
        roles.len(),
        10,
        "the keycloak token carries 10 entitlements"
    );
    let gen_roles = generic
        .with_jwt(gen_jwt.as_bytes(), |t| t.roles.len())
        .unwrap();
    assert_eq!(gen_roles, 10, "the generic token carries 10 entitlements");
    let mut all_roles: Vec<&[u8]> = roles.iter().map(Vec::as_slice).collect();
    let gen_role_keys = generic
        .with_jwt(gen_jwt.as_bytes(), |t| {
            t.roles.iter().map(|r| r.to_vec()).collect::<Vec<_>>()
        })
        .unwrap();
    all_roles.extend(gen_role_keys.iter().map(Vec::as_slice));

    let dir = tempfile::tempdir().unwrap();
    let ledgers: Vec<(Keys, Ledger)> = [Keys::Absent, Keys::Found]
        .into_iter()
        .map(|keys| {
            let path = dir.path().join(format!("claims-{}.ledger", keys.suffix()));
            let ledger = build_ledger(&path, iat, &[&tenant, b"acme"], &all_roles, keys);
            (keys, ledger)
        })
        .collect();
    let role_refs: Vec<&[u8]> = roles.iter().map(Vec::as_slice).collect();
    let token = keycloak
        .with_claims(kc_payload.as_bytes(), |t| {
            (
                t.subject.to_vec(),
                t.client.to_vec(),
                t.session.to_vec(),
                t.token_id.to_vec(),
            )
        })
        .unwrap();
    let floor = Token {
        tenant: &tenant,
        subject: &token.0,
        roles: &role_refs,
        client: &token.1,
        session: &token.2,
        token_id: &token.3,
        issued_at: iat,
    };
    for (keys, ledger) in &ledgers {
        for (mapping, jwt) in [
            (&keycloak, &kc_jwt),
            (&generic, &gen_jwt),
            (&keycloak, &kc_jwt_1k),
        ] {
            assert!(!ledger
                .check_jwt(mapping, jwt.as_bytes())
                .unwrap()
                .is_revoked());
        }
        assert!(!ledger.check(&floor).unwrap().is_revoked());
        // The same token issued before the entitlements' rules: revoked by a role exactly
        // when the ledger holds them (so the found rows do find every role's key).
        let earlier = Token {
            issued_at: iat - 200,
            ..floor
        };
        let verdict = ledger.check(&earlier).unwrap();
        match keys {
            Keys::Found => assert!(
                matches!(
                    verdict,
                    Verdict::Revoked {
                        scope: Scope::Role,
                        ..
                    }
                ),
                "{verdict:?}"
            ),
            Keys::Absent => assert!(!verdict.is_revoked(), "{verdict:?}"),
        }
    }
    assert_eq!(
        keycloak
            .with_jwt(kc_jwt_1k.as_bytes(), |t| t.roles.len())
            .unwrap(),
        10
    );
    println!(
        "tokens: keycloak {} bytes (payload {} bytes of JSON), keycloak_1k {} bytes, \
         generic {} bytes; 10 roles each",
        kc_jwt.len(),
        kc_payload.len(),
        kc_jwt_1k.len(),
        gen_jwt.len()
    );

    let verify_ring = |jwt: &str| {
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = B64.decode_to_vec(sig).unwrap();
        ring_key.verify(input.as_bytes(), &sig).is_ok()
    };
    let verify_rsa = |jwt: &str| {
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let sig = Signature::try_from(B64.decode_to_vec(sig).unwrap().as_slice()).unwrap();
        verifying.verify(input.as_bytes(), &sig).is_ok()
    };
    assert!(verify_ring(&kc_jwt) && verify_rsa(&kc_jwt));

    let mut g = c.benchmark_group("claims");
    for (keys, ledger) in &ledgers {
        let k = keys.suffix();
        g.bench_function(format!("check.r10.{k}"), |b| {
            b.iter(|| ledger.check(black_box(&floor)).unwrap())
        });
        g.bench_function(format!("check_claims.keycloak.r10.{k}"), |b| {
            b.iter(|| {
                ledger
                    .check_claims(&keycloak, black_box(kc_payload.as_bytes()))
                    .unwrap()
            })
        });
        for (name, mapping, jwt) in [
            ("keycloak", &keycloak, &kc_jwt),
            ("keycloak_1k", &keycloak, &kc_jwt_1k),
            ("generic", &generic, &gen_jwt),
        ] {
            g.bench_function(format!("check_jwt.{name}.r10.{k}"), |b| {
                b.iter(|| {
                    ledger
                        .check_jwt(mapping, black_box(jwt.as_bytes()))
                        .unwrap()
                })
            });
        }
    }
    // The floor of the crates used: decoding the payload, and one pass over its JSON.
    let kc_segment = kc_jwt.split('.').nth(1).unwrap().to_owned();
    g.bench_function("floor.base64_decode", |b| {
        let mut buf = [0u8; 2048];
        b.iter(|| {
            let out = base64_simd::Out::from_slice(&mut buf);
            B64.decode(black_box(kc_segment.as_bytes()), out)
                .unwrap()
                .len()
        })
    });
    g.bench_function("floor.jiter_skip", |b| {
        b.iter(|| {
            jiter::Jiter::new(black_box(kc_payload.as_bytes()))
                .next_skip()
                .unwrap()
        })
    });
    g.bench_function("rs256_verify.ring", |b| {
        b.iter(|| assert!(verify_ring(black_box(&kc_jwt))))
    });
    g.bench_function("rs256_verify.rsa", |b| {
        b.iter(|| assert!(verify_rsa(black_box(&kc_jwt))))
    });
    g.finish();
    c.final_summary();
    report();
}

/// Ratios from criterion's estimates of this run (medians).
fn report() {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let median = |id: &str| -> Option<f64> {
        let path = root
            .join("criterion/claims")
            .join(id)
            .join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let mut ids: Vec<String> = Vec::new();
    for k in [Keys::Absent, Keys::Found] {
        let k = k.suffix();
        ids.push(format!("check.r10.{k}"));
        ids.push(format!("check_claims.keycloak.r10.{k}"));
        for name in ["keycloak", "keycloak_1k", "generic"] {
            ids.push(format!("check_jwt.{name}.r10.{k}"));
        }
    }
    for id in [
        "floor.base64_decode",
        "floor.jiter_skip",
        "rs256_verify.ring",
        "rs256_verify.rsa",
    ] {
        ids.push(id.into());
    }
    let Some(verify) = median("rs256_verify.ring") else {
        return; // a filtered run
    };
    let mut out = serde_json::Map::new();
    println!("\nclaims: medians, and as a fraction of one RS256 verification (ring)");
    for id in &ids {
        if let Some(ns) = median(id) {
            println!("  {id:<34} {:>10.1} ns   {:>8.4}×", ns, ns / verify);
            out.insert(
                id.clone(),
                serde_json::json!({ "median_ns": ns, "of_rs256_ring": ns / verify }),
            );
        }
    }
    let dir = common::out_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("claims.json"),
        serde_json::to_vec_pretty(&out).unwrap(),
    );
}
