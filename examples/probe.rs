//! Quick look at check latency and open time at one ledger size (not the benchmark
//! suite: `cargo bench` is). `cargo run --release --example probe -- 1000000`
use revledger::{Ledger, Rule, Scope, Token, WriterOptions};
use std::hint::black_box;
use std::time::Instant;

fn chase(bytes: usize, steps: usize) -> f64 {
    let n = bytes / 8;
    let mut next: Vec<usize> = (0..n).collect();
    let mut s = 0x9E37_79B9u64;
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        next.swap(i, (s % i as u64) as usize);
    }
    // Turn the permutation into one cycle.
    let mut cyc = vec![0usize; n];
    for i in 0..n {
        cyc[next[i]] = next[(i + 1) % n];
    }
    let mut p = 0;
    let t = Instant::now();
    for _ in 0..steps {
        p = cyc[p];
    }
    black_box(p);
    t.elapsed().as_nanos() as f64 / steps as f64
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l");
    let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
    let keys: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("user-{i:012}-abcdefg").into_bytes())
        .collect();
    let t = Instant::now();
    for (c, chunk) in keys.chunks(100_000).enumerate() {
        let rules: Vec<Rule> = chunk
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let scope = [Scope::Subject, Scope::Session, Scope::Client][(c + i) % 3];
                Rule::new(scope, b"tenant-0001", k, 1_000_000 + i as i64)
            })
            .collect();
        w.revoke_batch(&rules).unwrap();
    }
    for r in 0..50 {
        w.revoke(&Rule::new(
            Scope::Role,
            b"tenant-0001",
            format!("role-{r}").as_bytes(),
            1_000_000,
        ))
        .unwrap();
    }
    println!("append {n}: {:?}", t.elapsed());
    let t = Instant::now();
    w.compact(0).unwrap();
    println!("compact: {:?}", t.elapsed());
    let s = w.stats(0).unwrap();
    println!(
        "stats: {s:?}  index bytes/key {:.1}, file bytes/key {:.1}",
        s.index_bytes as f64 / s.live_keys as f64,
        s.log_bytes as f64 / s.live_keys as f64
    );
    drop(w);
    let t = Instant::now();
    let r = Ledger::open_reader(&path).unwrap();
    let roles: Vec<&[u8]> = vec![b"role-1", b"role-x", b"role-y"];
    let probe = Token {
        tenant: b"tenant-0001",
        subject: b"nobody-000000000000",
        roles: &roles,
        client: b"nope-client",
        session: b"nope-session-123",
        issued_at: 5,
        ..Token::default()
    };
    r.check(&probe).unwrap();
    println!("open + first check: {:?}", t.elapsed());
    let misses: Vec<Vec<u8>> = (0..4096)
        .map(|i| format!("miss-{i:012}-abcdefg").into_bytes())
        .collect();
    let iters: usize = std::env::var("PROBE_ITERS").map_or(2_000_000, |v| v.parse().unwrap());
    let t = Instant::now();
    let mut revoked = 0;
    for i in 0..iters {
        let k = &misses[i % misses.len()];
        let roles: [&[u8]; 3] = [b"role-zz", b"role-yy", b"role-xx"];
        let tok = Token {
            tenant: b"tenant-0001",
            subject: k,
            roles: &roles,
            client: k,
            session: k,
            issued_at: 5,
            ..Token::default()
        };
        revoked += r.check(black_box(&tok)).unwrap().is_revoked() as usize;
    }
    println!(
        "valid check (3 roles, miss): {:.1} ns ({revoked} revoked)",
        t.elapsed().as_nanos() as f64 / iters as f64
    );
    let t = Instant::now();
    let mut x = 0u64;
    let revoked_iters = if std::env::var_os("PROBE_VALID_ONLY").is_some() {
        0
    } else {
        iters
    };
    for i in 0..revoked_iters {
        let k = &keys[(i * 7919) % n];
        let roles: [&[u8]; 3] = [b"role-zz", b"role-yy", b"role-xx"];
        let tok = Token {
            tenant: b"tenant-0001",
            subject: k,
            roles: &roles,
            client: k,
            session: k,
            issued_at: 5,
            ..Token::default()
        };
        x += r.check(black_box(&tok)).unwrap().is_revoked() as u64;
    }
    println!(
        "revoked check: {:.1} ns ({x})",
        t.elapsed().as_nanos() as f64 / iters as f64
    );
    println!(
        "pointer chase over {} bytes: {:.1} ns",
        n * 24,
        chase((n * 24).max(4096), 5_000_000)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
