//! The simulated churn day (DESIGN §5, issue 10): rules of tokens that live one hour
//! arrive at [`RATE`] per second for a simulated day, into a writer with the default
//! background compaction policy whose clock is the simulation's (the hidden
//! `WriterOptions::clock`). The file must stay within 2× what its live rules need, and
//! a reader's memory must stay flat.
//!
//! Each simulated second appends that second's rules with one `revoke_batch` (scopes in
//! the workload's proportions; cutoff rules at the next second, token rules with an
//! `exp` up to an hour later; fresh random keys). Time stops while a background job
//! (compaction, index growth) runs: the simulation waits for it after each second, so
//! the arrivals of the few real seconds a job takes come right after it instead of
//! during it (either way the next file holds them; the job's real time is recorded).
//!
//! Every simulated minute: the ledger file's size, the index files' size, and the live
//! rules (by the simulation's own count of rules not yet expired: a cutoff rule expires
//! `max_token_lifetime + leeway` after its cutoff, a token rule `leeway` after its
//! `exp`), and what they need: live rules × the bytes per rule of a compacted file of
//! this workload (measured at the end by compacting). Every ten simulated minutes a
//! reader process checks 20,000 valid tokens and one revoked by the newest subject rule
//! (it must say revoked), and its RSS, PSS and anonymous memory are read. Every simulated hour,
//! `Ledger::stats` must agree with the simulation's live count.
//! The simulated length is `REVLEDGER_BENCH_CHURN_HOURS` (default 24; 3 in quick mode).
//! Writes `target/revledger-bench/churn.json`; report.py draws docs/perf-churn.svg.

mod common;

use common::*;
use revledger::{unix_now_floor, Ledger, Rule, Scope, Token, WriterOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Rules per simulated second.
const RATE: usize = 1_000;
/// Token lifetime (the ledger's `max_token_lifetime`).
const LIFETIME: i64 = 3_600;
/// The ledger's leeway (the default).
const LEEWAY: i64 = 300;
/// Simulated seconds between samples of the files; between reader samples; between
/// `stats` checks.
const SAMPLE_EVERY: i64 = 60;
const READER_EVERY: i64 = 600;
const STATS_EVERY: i64 = 3_600;

/// The simulation's clock, read by the writer through `WriterOptions::clock`.
static NOW: AtomicI64 = AtomicI64::new(0);

fn sim_clock() -> i64 {
    NOW.load(Ordering::Relaxed)
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if role == "churn-reader" {
            reader_child();
        }
        return;
    }
    let hours = churn_hours();
    let seconds = hours * 3_600;
    // A simulated day that ended before the host's clock: no time-sanity check fires.
    let start = (unix_now_floor() - seconds - 2 * 86_400) / 3_600 * 3_600;
    NOW.store(start, Ordering::Relaxed);
    let dir = scratch_on_disk();
    let path = dir.path().join("churn.ledger");
    let options = WriterOptions {
        max_token_lifetime: LIFETIME,
        leeway: Some(LEEWAY),
        clock: Some(sim_clock),
        ..WriterOptions::default()
    };
    assert!(options.compaction.is_some(), "compaction is on by default");
    let writer = Ledger::open_writer(&path, &options).expect("open_writer");
    let mut reader = spawn_child("churn-reader", &[path.to_str().expect("UTF-8 path")]);
    let mut from_reader = BufReader::new(reader.stdout.take().expect("reader stdout"));
    let mut to_reader = reader.stdin.take().expect("reader stdin");

    // Live rules by expiry second (offset from `start`): the simulation's own count.
    let mut expiring = vec![0u64; (seconds + LIFETIME + LEEWAY + 2) as usize];
    let (mut appended, mut expired) = (0u64, 0u64);
    let mut rng = Rng::new(0xC4_0A11);
    let mut owned: Vec<OwnedRule> = Vec::with_capacity(RATE);
    let (mut samples, mut readers, mut jobs) = (Vec::new(), Vec::new(), Vec::new());
    let mut inode = std::fs::metadata(&path).expect("metadata").ino();
    let mut compactions = 0u32;
    let started = Instant::now();
    for s in 0..seconds {
        let now = start + s;
        NOW.store(now, Ordering::Relaxed);
        expired += expiring[s as usize];
        owned.clear();
        for i in 0..RATE {
            let scope = if i == 0 {
                Scope::Subject // the rule the reader is asked about
            } else {
                match rng.below(100) {
                    0..40 => Scope::Subject,
                    40..70 => Scope::Session,
                    70..90 => Scope::Token,
                    90..95 => Scope::Role,
                    _ => Scope::Client,
                }
            };
            let (at, expires) = if scope == Scope::Token {
                let exp = now + 1 + rng.below(LIFETIME as u64) as i64;
                (exp, exp + LEEWAY)
            } else {
                (now + 1, now + 1 + LIFETIME + LEEWAY)
            };
            // Live while now ≤ expires; expired from the next second on.
            expiring[(expires + 1 - start) as usize] += 1;
            owned.push(OwnedRule {
                scope,
                tenant: tenant_name(rng.below(TENANTS)),
                key: key(b"key_", rng.next()),
                at,
            });
        }
        let batch: Vec<Rule> = owned.iter().map(OwnedRule::as_rule).collect();
        writer.revoke_batch(&batch).expect("revoke_batch");
        appended += RATE as u64;
        let t = Instant::now();
        writer.wait_background().expect("a background job");
        let waited = t.elapsed();
        let now_inode = std::fs::metadata(&path).expect("metadata").ino();
        if waited > Duration::from_millis(1) || now_inode != inode {
            let compacted = now_inode != inode;
            compactions += u32::from(compacted);
            jobs.push(serde_json::json!({
                "at_h": s as f64 / 3_600.0,
                "kind": if compacted { "compaction" } else { "index growth" },
                "real_s": waited.as_secs_f64(),
            }));
            inode = now_inode;
        }
        let live = appended - expired;
        if (s + 1) % SAMPLE_EVERY == 0 {
            let (index, other) = sidecars(dir.path(), &path);
            let file = std::fs::metadata(&path).expect("metadata");
            samples.push(serde_json::json!({
                "at_h": (s + 1) as f64 / 3_600.0,
                "live_rules": live,
                "file_bytes": file.len(),
                "file_disk_bytes": file.blocks() * 512,
                "index_bytes": index,
                "other_bytes": other,
            }));
        }
        if (s + 1) % READER_EVERY == 0 {
            let r = &owned[0];
            writeln!(
                to_reader,
                "{} {} {} {}",
                now,
                String::from_utf8_lossy(&r.tenant),
                String::from_utf8_lossy(&r.key),
                r.at
            )
            .and_then(|()| to_reader.flush())
            .expect("asking the reader");
            let mut line = String::new();
            from_reader
                .read_line(&mut line)
                .expect("the reader's answer");
            assert_eq!(line.trim(), "ok", "the reader process failed: {line:?}");
            let (rss, pss) = rss_pss(reader.id());
            readers.push(serde_json::json!({
                "at_h": (s + 1) as f64 / 3_600.0, "rss": rss, "pss": pss,
                "anonymous": anonymous_bytes(reader.id()),
            }));
        }
        if (s + 1) % STATS_EVERY == 0 {
            let st = writer.stats(now).expect("stats");
            let unexpired = st.live_keys - st.expired_keys;
            eprintln!(
                "revledger-bench: churn hour {}: {} live rules, file {} MiB, {} compactions, \
                 {:.0} s",
                (s + 1) / 3_600,
                live,
                st.file_bytes >> 20,
                compactions,
                started.elapsed().as_secs_f64()
            );
            assert_eq!(
                unexpired, live,
                "Ledger::stats and the simulation disagree on the live rules"
            );
        }
    }
    let run_s = started.elapsed().as_secs_f64();
    // What live rules need: compact now, and measure the bytes per rule of the result.
    let final_live = appended - expired;
    let c = writer
        .compact(sim_clock())
        .expect("compacting at the end of the day");
    assert_eq!(
        c.rules_kept, final_live,
        "compaction kept the live rules only"
    );
    let per_rule = c.bytes_after as f64 / c.rules_kept.max(1) as f64;
    let (index_after, _) = sidecars(dir.path(), &path);
    drop(writer);
    drop(to_reader);
    let _ = reader.wait();

    let mut max_ratio = (0.0f64, 0.0f64);
    let mut max_index = 0.0f64;
    for s in &samples {
        let live = s["live_rules"].as_u64().unwrap_or(0) as f64;
        if live < 1.0 {
            continue;
        }
        // Only once a full lifetime of rules is live: the first hour fills the ledger.
        if s["at_h"].as_f64().unwrap_or(0.0) * 3_600.0 < (LIFETIME + LEEWAY) as f64 {
            continue;
        }
        let r = s["file_bytes"].as_u64().unwrap_or(0) as f64 / (live * per_rule);
        if r > max_ratio.0 {
            max_ratio = (r, s["at_h"].as_f64().unwrap_or(0.0));
        }
        max_index = max_index.max(s["index_bytes"].as_u64().unwrap_or(0) as f64 / live);
    }
    let rss: Vec<u64> = readers.iter().filter_map(|r| r["rss"].as_u64()).collect();
    let json = serde_json::json!({
        "quick": quick(),
        "hours": hours,
        "rate_per_s": RATE,
        "lifetime_s": LIFETIME,
        "leeway_s": LEEWAY,
        "rules_appended": appended,
        "file_system": file_system_of(dir.path()),
        "run_s": run_s,
        "compactions": compactions,
        "bytes_per_live_rule": per_rule,
        "final_live_rules": final_live,
        "final_compacted_bytes": c.bytes_after,
        "final_index_bytes": index_after,
        "max_file_ratio": max_ratio.0,
        "max_file_ratio_at_h": max_ratio.1,
        "max_index_bytes_per_live_rule": max_index,
        "reader_rss_min": rss.iter().min(),
        "reader_rss_max": rss.iter().max(),
        "samples": samples,
        "reader": readers,
        "jobs": jobs,
    });
    eprintln!(
        "revledger-bench: churn: {hours} h simulated in {run_s:.0} s, {compactions} compactions, \
         file at most {:.2}× what its live rules need, reader RSS {:?}..{:?}",
        max_ratio.0,
        rss.iter().min(),
        rss.iter().max()
    );
    write_json("churn", &json);
}

/// The simulated length in hours: `REVLEDGER_BENCH_CHURN_HOURS`, else 24 (3 in quick
/// mode). A day of 86.4M rules takes a while on a shared 2-core machine; the page says
/// how many hours were simulated.
fn churn_hours() -> i64 {
    let default = if quick() { 3 } else { 24 };
    match std::env::var("REVLEDGER_BENCH_CHURN_HOURS") {
        Ok(v) => match v.trim().parse::<i64>() {
            Ok(h) if (1..=24 * 7).contains(&h) => h,
            _ => panic!("REVLEDGER_BENCH_CHURN_HOURS={v:?}: expected whole hours, 1 to 168"),
        },
        Err(_) => default,
    }
}

/// `Anonymous` memory of a process (its heap and stacks: what it holds privately, unlike
/// the ledger's file pages that RSS also counts), from /proc/PID/smaps_rollup.
fn anonymous_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Anonymous:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the ledger's index files, and of any other file beside it (a compaction's
/// temporary file).
fn sidecars(dir: &Path, ledger: &Path) -> (u64, u64) {
    let (mut index, mut other) = (0, 0);
    for e in std::fs::read_dir(dir)
        .expect("listing the scratch directory")
        .flatten()
    {
        if e.path() == ledger {
            continue;
        }
        let len = e.metadata().map_or(0, |m| m.len());
        if e.file_name().to_string_lossy().ends_with(".index") {
            index += len;
        } else {
            other += len;
        }
    }
    (index, other)
}

/// The reader process: for each line `now tenant key cutoff` from stdin, checks a token
/// revoked by that subject rule (it must be revoked) and 20,000 valid tokens issued half
/// an hour before `now`, then answers `ok`.
fn reader_child() {
    let path = std::env::args().nth(1).expect("ledger path");
    let reader = Ledger::open_reader(&path).expect("open_reader");
    let mut rng = Rng::new(0x2EAD);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let f: Vec<&str> = line.split_whitespace().collect();
        let (now, tenant, subject, cutoff) = (
            f[0].parse::<i64>().expect("now"),
            f[1].as_bytes(),
            f[2].as_bytes(),
            f[3].parse::<i64>().expect("cutoff"),
        );
        let revoked = Token {
            tenant,
            subject,
            roles: &[],
            client: b"",
            session: b"",
            token_id: b"",
            issued_at: cutoff - 1,
        };
        let v = reader.check(&revoked).expect("check");
        if !v.is_revoked() {
            writeln!(out, "not revoked: {line}").expect("stdout");
            return;
        }
        for _ in 0..20_000 {
            let t = tenant_name(rng.below(TENANTS));
            let (s, c, x, j) = (
                key(b"usr_", rng.next()),
                key(b"app_", rng.next()),
                key(b"sid_", rng.next()),
                key(b"jti_", rng.next()),
            );
            let r = [key(b"rol_", rng.next()); 3];
            let roles: [&[u8]; 3] = [&r[0], &r[1], &r[2]];
            let token = Token {
                tenant: &t,
                subject: &s,
                roles: &roles,
                client: &c,
                session: &x,
                token_id: &j,
                issued_at: now - 1_800,
            };
            assert!(!reader.check(&token).expect("check").is_revoked());
        }
        writeln!(out, "ok")
            .and_then(|()| out.flush())
            .expect("stdout");
    }
}
