//! Append rates (not the benchmark suite): single revokes without sync, one sync per
//! 1000, one sync per record, and batches. `cargo run --release --example append`
use revledger::{Ledger, Rule, Scope, WriterOptions};
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("revledger-append-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys: Vec<Vec<u8>> = (0..200_000)
        .map(|i| format!("user-{i:012}-abcdefg").into_bytes())
        .collect();
    let rate = |name: &str, n: usize, f: &mut dyn FnMut(&Ledger)| {
        let path = dir.join(name.replace(' ', "-"));
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        let t = Instant::now();
        f(&w);
        let s = t.elapsed().as_secs_f64();
        println!("{name:<28} {:>12.0} records/s", n as f64 / s);
    };
    rate("revoke, no sync", 200_000, &mut |w| {
        for k in &keys {
            w.revoke(&Rule::new(Scope::Subject, b"tenant-0001", k, 1))
                .unwrap();
        }
    });
    rate("revoke, sync per 1000", 200_000, &mut |w| {
        for (i, k) in keys.iter().enumerate() {
            w.revoke(&Rule::new(Scope::Subject, b"tenant-0001", k, 1))
                .unwrap();
            if i % 1000 == 999 {
                w.sync().unwrap();
            }
        }
        w.sync().unwrap();
    });
    rate("revoke, sync per record", 2_000, &mut |w| {
        for k in &keys[..2000] {
            w.revoke(&Rule::new(Scope::Subject, b"tenant-0001", k, 1))
                .unwrap();
            w.sync().unwrap();
        }
    });
    rate("revoke_batch of 1000", 200_000, &mut |w| {
        for c in keys.chunks(1000) {
            let rules: Vec<Rule> = c
                .iter()
                .map(|k| Rule::new(Scope::Subject, b"tenant-0001", k, 1))
                .collect();
            w.revoke_batch(&rules).unwrap();
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}
