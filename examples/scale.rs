//! Scale figures for docs and notes: open time at a given size and the memory that N
//! reader processes share. `cargo run --release --example scale -- 10000000 8`
//!
//! Builds a compacted ledger of N subject rules, then (1) times opening a reader and
//! answering a first check, (2) starts R reader processes that each open the ledger and
//! check every key once, and reads their RSS and PSS from /proc/<pid>/smaps_rollup.
use revledger::{Ledger, Rule, Scope, Token, WriterOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn key(i: usize) -> Vec<u8> {
    format!("user-{i:012}-abcdefg").into_bytes()
}

fn rollup(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn reader_child(path: &str, n: usize) {
    let r = Ledger::open_reader(path).unwrap();
    let mut revoked = 0;
    for i in 0..n {
        let k = key(i);
        let t = Token {
            tenant: b"t",
            subject: &k,
            issued_at: 1,
            ..Token::default()
        };
        revoked += usize::from(r.check(&t).unwrap().is_revoked());
    }
    println!("ready {revoked}");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink); // hold the mapping until told to exit
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--reader") {
        return reader_child(&args[2], args[3].parse().unwrap());
    }
    let n: usize = args.get(1).map_or(1_000_000, |a| a.parse().unwrap());
    let readers: usize = args.get(2).map_or(8, |a| a.parse().unwrap());
    let dir = std::env::temp_dir().join(format!("revledger-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l");
    {
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        let t = Instant::now();
        for start in (0..n).step_by(100_000) {
            let keys: Vec<Vec<u8>> = (start..(start + 100_000).min(n)).map(key).collect();
            let rules: Vec<Rule> = keys
                .iter()
                .map(|k| Rule::new(Scope::Subject, b"t", k, 1000))
                .collect();
            w.revoke_batch(&rules).unwrap();
        }
        println!("append {n}: {:.2?}", t.elapsed());
        let t = Instant::now();
        w.compact(0).unwrap();
        println!("compact: {:.2?}", t.elapsed());
        let s = w.stats(0).unwrap();
        println!(
            "live keys {}  index bytes/key {:.1}  file bytes/key {:.1} (keys are 24+1 bytes)",
            s.live_keys,
            s.index_bytes as f64 / s.live_keys as f64,
            s.log_bytes as f64 / s.live_keys as f64
        );
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let r = Ledger::open_reader(&path).unwrap();
        let k = key(n / 2);
        let tok = Token {
            tenant: b"t",
            subject: &k,
            issued_at: 1,
            ..Token::default()
        };
        assert!(r.check(&tok).unwrap().is_revoked());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("open + first check (best of 5): {:.1} µs", best * 1e6);
    if readers > 0 {
        let exe = std::env::current_exe().unwrap();
        let mut children = Vec::new();
        for _ in 0..readers {
            let mut c = Command::new(&exe)
                .args(["--reader", path.to_str().unwrap(), &n.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(c.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), format!("ready {n}"));
            children.push(c);
        }
        let mut total_pss = 0;
        let mut max_rss = 0;
        for c in &children {
            let (rss, pss) = rollup(c.id());
            println!("reader {}: RSS {} KiB, PSS {} KiB", c.id(), rss, pss);
            total_pss += pss;
            max_rss = max_rss.max(rss);
        }
        println!(
            "{readers} readers: total PSS {total_pss} KiB = {:.2}x one reader's RSS ({max_rss} KiB)",
            total_pss as f64 / max_rss as f64
        );
        for mut c in children {
            drop(c.stdin.take());
            c.wait().unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
