//! Hash flooding: one million keys crafted so that an unkeyed hash (FxHash-style, the
//! kind of fast hash an index might use without a seed) gives every one of them the same
//! 64-bit value. Against a table keyed by that hash, each lookup then walks every
//! colliding key; revledger keys its hash with a per-ledger random seed, so the
//! crafted keys spread like any others.
//!
//! Groups (`cargo bench --bench flood`):
//! - `flood/revledger`: checks of revoked and of absent subjects, on a ledger of 1M random
//!   keys and on one of 1M crafted keys, in the log's index and after compaction (the
//!   snapshot table). The crafted columns must match the random ones.
//! - `flood/unkeyed`: the same crafted keys in a `HashMap` with the unkeyed hash, at
//!   20 thousand keys (a million would take hours to insert): the attack working, for
//!   scale.
//!
//! The setup asserts that the crafted keys do collide under the unkeyed hash, so the
//! comparison cannot silently turn into random keys against random keys.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use revledger::{Ledger, Rule, Scope, Token, WriterOptions};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::hint::black_box;

const KEYS: usize = 1_000_000;
const UNKEYED_KEYS: usize = 20_000;
const SAMPLE: usize = 1024;
const K: u64 = 0x517c_c1b7_2722_0a95;
const TARGET: u64 = 0xDEAD_BEEF_F00D_CAFE;

/// FxHash's word step, unkeyed: `h = (h.rotl(5) ^ word) * K`.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn fx(key: &Vec<u8>) -> u64 {
    let mut h = Fx::default();
    key.hash(&mut h); // as a HashMap<Vec<u8>, _> hashes it: length, then the bytes
    h.finish()
}

/// The `i`-th crafted key: 16 bytes `a ‖ b` where `b` cancels the state after `a`, so
/// that every key hashes to the same value: h = (rotl(s, 5) ^ b) * K with
/// b = rotl(s, 5) ^ TARGET gives h = TARGET * K whatever `a` was.
fn crafted(i: u64) -> Vec<u8> {
    let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
    let mut h = Fx::default();
    h.write_usize(16);
    h.add(a);
    let b = h.0.rotate_left(5) ^ TARGET;
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

fn random(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 32;
    let y = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    [x.to_le_bytes(), y.to_le_bytes()].concat()
}

fn ledger(keys: &[Vec<u8>], compact: bool) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let w = Ledger::open_writer(dir.path().join("l"), &WriterOptions::with_lifetime(3600)).unwrap();
    for chunk in keys.chunks(100_000) {
        let rules: Vec<Rule> = chunk
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, 1_000))
            .collect();
        w.revoke_batch(&rules).unwrap();
    }
    if compact {
        w.compact(0).unwrap();
    }
    (dir, w)
}

fn check(l: &Ledger, subject: &[u8]) -> bool {
    let t = Token {
        tenant: b"t",
        subject,
        issued_at: 500, // before the cutoff: the index is always probed
        ..Token::default()
    };
    l.check(&t).unwrap().is_revoked()
}

fn revledger_flood(c: &mut Criterion) {
    let crafted_keys: Vec<Vec<u8>> = (0..KEYS as u64).map(crafted).collect();
    let target = fx(&crafted_keys[0]);
    assert!(
        crafted_keys.iter().all(|k| fx(k) == target),
        "the crafted keys do not collide under the unkeyed hash"
    );
    let random_keys: Vec<Vec<u8>> = (0..KEYS as u64).map(random).collect();
    let absent: Vec<Vec<u8>> = (0..SAMPLE as u64)
        .map(|i| crafted(KEYS as u64 + i))
        .collect();
    let mut g = c.benchmark_group("flood/revledger");
    for (name, keys) in [("random", &random_keys), ("crafted", &crafted_keys)] {
        for compact in [false, true] {
            let (_dir, l) = ledger(keys, compact);
            let stage = if compact { "snapshot" } else { "log" };
            let sample: Vec<&Vec<u8>> = keys.iter().step_by(KEYS / SAMPLE).collect();
            for k in &sample {
                assert!(check(&l, k), "a key is missing");
            }
            let mut i = 0;
            g.bench_function(BenchmarkId::new(format!("{stage}/revoked"), name), |b| {
                b.iter(|| {
                    i = (i + 1) % sample.len();
                    black_box(check(&l, sample[i]))
                })
            });
            let mut j = 0;
            g.bench_function(BenchmarkId::new(format!("{stage}/absent"), name), |b| {
                b.iter(|| {
                    j = (j + 1) % absent.len();
                    black_box(check(&l, &absent[j]))
                })
            });
        }
    }
    g.finish();
}

fn unkeyed_flood(c: &mut Criterion) {
    type Unkeyed = HashMap<Vec<u8>, i64, BuildHasherDefault<Fx>>;
    let mut g = c.benchmark_group("flood/unkeyed");
    g.sample_size(10);
    for (name, make) in [
        ("random", random as fn(u64) -> Vec<u8>),
        ("crafted", crafted),
    ] {
        let keys: Vec<Vec<u8>> = (0..UNKEYED_KEYS as u64).map(make).collect();
        let mut m = Unkeyed::default();
        for k in &keys {
            m.insert(k.clone(), 1_000);
        }
        let sample: Vec<&Vec<u8>> = keys.iter().step_by(UNKEYED_KEYS / SAMPLE).collect();
        let mut i = 0;
        g.bench_function(BenchmarkId::new("lookup", name), |b| {
            b.iter(|| {
                i = (i + 1) % sample.len();
                black_box(m.get(sample[i]))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, revledger_flood, unkeyed_flood);
criterion_main!(benches);
