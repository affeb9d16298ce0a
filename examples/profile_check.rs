//! A fixed loop of checks for a profiler (callgrind counts instructions per function):
//! a ledger of N live rules (subject, session, role, client, token, tenant keys in every
//! tenant), then `CHECKS` checks of valid tokens with 3 roles whose `iat` is before the
//! newest cutoff of every scope, so that every key is probed.
//!
//! `cargo build --release --example profile_check && valgrind --tool=callgrind
//! target/release/examples/profile_check 10000 100000`; arguments: rules, checks, roles
//! per token (3), then `fresh` (tokens issued after every cutoff) or `revoked` (each
//! token's subject has a rule).
use revledger::{Ledger, Rule, Scope, Token, WriterOptions};
use std::hint::black_box;

mod common;
use common::{arg, key, tenant, thread_cpu_ns, RULE_SCOPES, TENANTS};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = arg(&mut args, 10_000);
    let checks: u64 = arg(&mut args, 100_000);
    let roles_per_token: usize = arg(&mut args, 3);
    // "fresh": tokens issued after every cutoff (only the jti is probed); "revoked":
    // each token's subject has a rule (its lookup finds the key and reads its record).
    let mode = args.next().unwrap_or_default();
    let (fresh, revoked_mode) = (mode == "fresh", mode == "revoked");
    let dir = std::env::temp_dir().join(format!("revledger-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l");
    let base = revledger::unix_now_floor() - 10_000;
    {
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(86_400)).unwrap();
        let tenants: Vec<Vec<u8>> = (0..TENANTS).map(tenant).collect();
        let keys: Vec<Vec<u8>> = (0..n).map(|i| key("key_", i)).collect();
        let rules: Vec<Rule> = (0..n as usize)
            .map(|i| {
                let scope = RULE_SCOPES[i % RULE_SCOPES.len()];
                let at = if scope == Scope::Token {
                    base + 20_000
                } else {
                    base + 5_000
                };
                Rule::new(scope, &tenants[i % tenants.len()], &keys[i], at)
            })
            .collect();
        for c in rules.chunks(10_000) {
            w.revoke_batch(c).unwrap();
        }
        w.revoke(&Rule::new(
            Scope::Tenant,
            b"tenant-999999",
            b"",
            base + 5_000,
        ))
        .unwrap();
    }
    let r = Ledger::open_reader(&path).unwrap();
    let pool: Vec<(Vec<u8>, Vec<Vec<u8>>)> = (0..1024u64)
        .map(|i| {
            let mut keys: Vec<Vec<u8>> = (0..5 + roles_per_token as u64)
                .map(|j| key("abs_", i * 16 + j))
                .collect();
            // Rule r has scope r mod 5 (Subject first), tenant r mod 100, key r.
            let r = (5 * i) % n.max(5);
            if revoked_mode {
                keys[0] = key("key_", r);
            }
            let t = if revoked_mode { r } else { i };
            (tenant(t % TENANTS), keys)
        })
        .collect();
    let toks: Vec<(Token, Vec<&[u8]>)> = pool
        .iter()
        .map(|(t, k)| {
            let roles: Vec<&[u8]> = k[5..].iter().map(|r| r.as_slice()).collect();
            (
                Token {
                    tenant: t,
                    subject: &k[0],
                    client: &k[1],
                    session: &k[2],
                    token_id: &k[3],
                    roles: &[],
                    issued_at: if fresh { base + 6_000 } else { base },
                },
                roles,
            )
        })
        .collect();
    let toks: Vec<Token> = toks
        .iter()
        .map(|(t, roles)| Token { roles, ..*t })
        .collect();
    let mut revoked = 0u64;
    let started = thread_cpu_ns();
    for i in 0..checks {
        let t = &toks[(i & 1023) as usize];
        revoked += u64::from(black_box(r.check(black_box(t))).unwrap().is_revoked());
    }
    let spent = thread_cpu_ns() - started;
    assert_eq!(revoked, if revoked_mode { checks } else { 0 });
    eprintln!(
        "{:.1} ns per check (thread CPU time)",
        spent as f64 / checks.max(1) as f64
    );
    drop(r);
    let _ = std::fs::remove_dir_all(&dir);
}
