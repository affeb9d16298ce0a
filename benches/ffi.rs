//! The C ABI beside the Rust call: `revledger_check` called from C (benches/c/check_loop.c,
//! linked against target/release/librevledger.a) and `Ledger::check` called from Rust,
//! over the same tokens, against the same ledger file, timed the same way (the calling
//! thread's CPU time around rounds of checks, a token per check cycled from the pool),
//! alternating Rust and C phases so that both see the same machine. DESIGN §5: the C
//! ABI within 5 ns of the Rust call.
//!
//! The C program is built by scripts/bench and found through
//! `REVLEDGER_BENCH_C_CHECK=/path/to/check_loop`; without it this bench says it is
//! skipped. Sizes up to 1M rules (the ABI's cost does not depend on the size); compacted
//! ledgers; valid, revoked and fresh tokens with 3 roles. Writes
//! `target/revledger-bench/ffi.json`.

mod common;

use common::*;
use revledger::{Ledger, Token, Verdict};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;

/// Phases of each language, alternating, and rounds per phase.
const PHASES: usize = 3;

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(c_check) = std::env::var_os("REVLEDGER_BENCH_C_CHECK").filter(|p| !p.is_empty())
    else {
        eprintln!(
            "revledger-bench: the C ABI bench is SKIPPED: set REVLEDGER_BENCH_C_CHECK to the \
             check_loop program (scripts/bench builds it from benches/c/check_loop.c)"
        );
        write_json(
            "ffi",
            &serde_json::json!({ "skipped": "REVLEDGER_BENCH_C_CHECK unset" }),
        );
        return;
    };
    let (rounds, per_round) = if quick() { (5, 50_000) } else { (11, 200_000) };
    let mut results = Vec::new();
    for n in sizes().into_iter().filter(|&n| n <= 1_000_000) {
        let label = size_label(n);
        eprintln!("revledger-bench: ffi: building the {label} ledger");
        let dir = scratch();
        let path = dir.path().join("bench.ledger");
        build_ledger(&path, n, State::Compacted);
        let reader = Ledger::open_reader(&path).expect("opening the benchmark ledger");
        for kind in [Kind::Valid, Kind::Revoked, Kind::Fresh] {
            let pool = tokens(n, kind, 3, pool_size(n));
            let tokens_path = dir.path().join(format!("{}.tokens", kind.name()));
            write_tokens(&tokens_path, &pool);
            let (mut rust, mut c) = (Vec::new(), Vec::new());
            with_tokens(&pool, |toks| {
                verify(&reader, toks, &pool);
                for _ in 0..PHASES {
                    rust.extend(rust_rounds(&reader, toks, rounds, per_round));
                    c.extend(c_rounds(
                        Path::new(&c_check),
                        &path,
                        &tokens_path,
                        rounds,
                        per_round,
                    ));
                }
            });
            let (r, cm) = (median(&rust), median(&c));
            eprintln!(
                "revledger-bench: ffi {label} {}: Rust {r:.1} ns, C {cm:.1} ns per check",
                kind.name()
            );
            results.push(serde_json::json!({
                "rules": n,
                "label": label,
                "kind": kind.name(),
                "roles": 3,
                "pool_tokens": pool.len(),
                "checks_per_round": per_round,
                "rust_ns": r,
                "c_ns": cm,
                "c_minus_rust_ns": cm - r,
                "rust_rounds_ns": rust,
                "c_rounds_ns": c,
            }));
        }
    }
    write_json(
        "ffi",
        &serde_json::json!({ "quick": quick(), "results": results }),
    );
}

/// `rounds` rounds of `per_round` checks through `Ledger::check`: ns per check of each,
/// timed in batches of [`BATCH`] whose tokens were [`touch`]ed just before (as the C loop
/// does).
fn rust_rounds(reader: &Ledger, toks: &[Token], rounds: usize, per_round: usize) -> Vec<f64> {
    let mask = toks.len() - 1;
    assert!(toks.len().is_power_of_two());
    let batches = per_round.div_ceil(BATCH);
    let mut at = 0usize;
    (0..rounds)
        .map(|_| {
            let mut spent = 0;
            for _ in 0..batches {
                for j in 1..=BATCH {
                    black_box(touch(&toks[(at + j) & mask]));
                }
                let start = thread_cpu_ns();
                for _ in 0..BATCH {
                    at = (at + 1) & mask;
                    black_box(reader.check(black_box(&toks[at])).expect("check"));
                }
                spent += thread_cpu_ns() - start;
            }
            spent as f64 / (batches * BATCH) as f64
        })
        .collect()
}

/// The same rounds through the C program.
fn c_rounds(exe: &Path, ledger: &Path, tokens: &Path, rounds: usize, per_round: usize) -> Vec<f64> {
    let out = std::process::Command::new(exe)
        .arg(ledger)
        .arg(tokens)
        .arg(rounds.to_string())
        .arg(per_round.to_string())
        .output()
        .expect("running the C check loop");
    assert!(
        out.status.success(),
        "the C check loop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the C check loop's JSON");
    v["ns_per_check"]
        .as_array()
        .expect("ns_per_check")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Writes the pool in the format benches/c/check_loop.c reads.
fn write_tokens(path: &Path, pool: &[OwnedToken]) {
    let mut out = Vec::new();
    out.extend_from_slice(b"RLTOKEN1");
    out.extend_from_slice(&(pool.len() as u64).to_le_bytes());
    for t in pool {
        out.extend_from_slice(&t.issued_at.to_le_bytes());
        out.extend_from_slice(&(t.roles.len() as u32).to_le_bytes());
        out.push(u8::from(t.expect != Verdict::Valid));
        let parts: [&[u8]; 5] = [&t.tenant, &t.subject, &t.client, &t.session, &t.token_id];
        for b in parts.into_iter().chain(t.roles.iter().map(|r| &r[..])) {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
    }
    let mut f = std::fs::File::create(path).expect("creating the tokens file");
    f.write_all(&out).expect("writing the tokens file");
}
