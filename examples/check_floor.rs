//! The floor of a valid check: what `examples/profile_check` (valid tokens, 3 roles, 10k
//! rules) costs without the ledger around it. Per token: the tenant's hash, the keyed
//! hashes of its seven keys (jti, sub, sid, client, three roles) and of the tenant-scope
//! key, and eight filter probes. The same hash (rapidhash V3 nano with secrets from a
//! seed, folded with the scope and the tenant's hash, as src/hash.rs does) and the same
//! filter (one word per 8-slot bucket of an index sized for the rules, three bits per
//! key, as src/index.rs lays it out), with nothing else: no thread view, no check that
//! the file is current, no newest cutoffs, no verdict. What the check costs above this is
//! the ledger's own work (benches/PERF-NOTES.md).
//!
//! `cargo build --release --example check_floor && valgrind --tool=callgrind
//! target/release/examples/check_floor 10000 100000`; arguments: rules, checks.
use rapidhash::v3::{rapidhash_v3_nano_inline, RapidSecrets};
use revledger::Scope;
use std::hint::black_box;

mod common;
use common::{arg, key, tenant, thread_cpu_ns, RULE_SCOPES, TENANTS};

/// Mixes the scope into a key's hash (src/hash.rs).
const SCOPE_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

struct Kernel {
    tenant: RapidSecrets,
    key: RapidSecrets,
    words: Vec<u64>,
}

impl Kernel {
    #[inline(always)]
    fn hash(&self, scope: Scope, tenant_hash: u64, key: &[u8]) -> u64 {
        let k = rapidhash_v3_nano_inline::<false, false>(key, &self.key);
        fold(
            k ^ (scope as u64 + 1).wrapping_mul(SCOPE_MIX),
            tenant_hash ^ self.key.seed,
        )
    }

    #[inline(always)]
    fn probe(&self, hash: u64) -> (usize, u64) {
        let word = ((u128::from(hash) * self.words.len() as u128) >> 64) as usize;
        let bits =
            (1u64 << (hash & 63)) | (1u64 << ((hash >> 6) & 63)) | (1u64 << ((hash >> 12) & 63));
        (word, bits)
    }

    #[inline(always)]
    fn may_hold(&self, hash: u64) -> bool {
        let (word, bits) = self.probe(hash);
        self.words.get(word).is_some_and(|w| w & bits == bits)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = arg(&mut args, 10_000);
    let checks: u64 = arg(&mut args, 100_000);
    let seed = revledger::unix_now_floor() as u64;
    let slots = (n.max(48) * 4).div_ceil(3);
    let mut k = Kernel {
        tenant: RapidSecrets::seed(seed),
        key: RapidSecrets::seed(seed.rotate_left(32) ^ 0x5EED),
        words: vec![0; slots.div_ceil(8) as usize],
    };
    // The rules of examples/profile_check (examples/common).
    for i in 0..n {
        let th = rapidhash_v3_nano_inline::<true, false>(&tenant(i % TENANTS), &k.tenant);
        let scope = RULE_SCOPES[i as usize % RULE_SCOPES.len()];
        let (word, bits) = k.probe(k.hash(scope, th, &key("key_", i)));
        k.words[word] |= bits;
    }
    // Its valid tokens: keys no rule has.
    let pool: Vec<(Vec<u8>, Vec<Vec<u8>>)> = (0..1024u64)
        .map(|i| {
            let keys = (0..8).map(|j| key("abs_", i * 16 + j)).collect();
            (tenant(i % TENANTS), keys)
        })
        .collect();
    let mut passed = 0u64;
    let started = thread_cpu_ns();
    for i in 0..checks {
        let (tenant, keys) = black_box(&pool[(i & 1023) as usize]);
        let th = rapidhash_v3_nano_inline::<true, false>(tenant, &k.tenant);
        let hashes = [
            k.hash(Scope::Token, th, &keys[3]),
            k.hash(Scope::Subject, th, &keys[0]),
            k.hash(Scope::Session, th, &keys[2]),
            k.hash(Scope::Client, th, &keys[1]),
            k.hash(Scope::Role, th, &keys[5]),
            k.hash(Scope::Role, th, &keys[6]),
            k.hash(Scope::Role, th, &keys[7]),
            k.hash(Scope::Tenant, th, b""),
        ];
        let through = hashes.iter().filter(|&&h| k.may_hold(h)).count();
        passed += black_box(through) as u64;
    }
    let spent = thread_cpu_ns() - started;
    eprintln!(
        "{:.1} ns per check's hashes and filter probes (thread CPU time; {:.2} % of probes \
         passed the filter)",
        spent as f64 / checks.max(1) as f64,
        100.0 * passed as f64 / (8 * checks.max(1)) as f64
    );
}
