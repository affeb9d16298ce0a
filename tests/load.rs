//! Load: one writer process appending, syncing and compacting, and several reader
//! processes checking a known set of tokens against the verdict they must get, for a
//! bounded time. Reports checks per second; wrong answers and errors must be zero.
//!
//! `REVLEDGER_LOAD_SECS` sets the duration (default 3 s, so that `cargo test` stays
//! short; the README's test command runs it for 20 s in release mode:
//! `REVLEDGER_LOAD_SECS=20 cargo test --release --test load -- --nocapture`).
//! `REVLEDGER_LOAD_READERS` sets the number of reader processes (default 3).
//!
//! What the readers check, on every round:
//! - `pre-*` subjects, revoked before the readers started: always revoked, by exactly
//!   their rule (scope and cutoff), across every compaction;
//! - `never-*` subjects, which no rule names, issued after every cutoff: always valid;
//! - `w-*` subjects, revoked by the writer as the test runs: the writer publishes in a
//!   side file how many of them `revoke` has returned for; a reader reads that count, then
//!   checks the last one and a random earlier one: each must be revoked by exactly its
//!   rule or a later one of the same key (a commit is visible to every reader's next
//!   check, in any process). Compaction runs ten times per test.

use revledger::{Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "REVLEDGER_LOAD_ROLE";
const PRE: u64 = 2_000;
const NEVER: u64 = 2_000;
const TEST: &str = "one_writer_and_reader_processes_never_get_a_wrong_answer";
/// The writer's rule `i` revokes subject `w-{i % W_KEYS}`: keys are revoked again and
/// again with later cutoffs, so the ledger keeps a bounded number of live keys and
/// compaction (which keeps one rule per key) stays quick however long the test runs.
const W_KEYS: u64 = 50_000;

struct Setup {
    dir: PathBuf,
    secs: f64,
    /// Cutoffs are `base + ...`, in the past, under a lifetime so long that compaction
    /// keeps them (tokens are never issued in the future: those cannot be judged).
    base: i64,
}

impl Setup {
    fn ledger(&self) -> PathBuf {
        self.dir.join("l")
    }
    fn progress(&self) -> PathBuf {
        self.dir.join("progress")
    }
}

/// The ledger's max token lifetime: about 127 years, so that no rule at `base` expires.
const LIFETIME: i64 = 4_000_000_000;
/// Cutoff of the rules compaction must drop: expired even under `LIFETIME`.
const JUNK_CUTOFF: i64 = -5_000_000_000;

fn pre_cutoff(base: i64, i: u64) -> i64 {
    base + 1_000 + (i % 97) as i64
}

fn w_cutoff(base: i64, i: u64) -> i64 {
    base + 5_000 + i as i64
}

fn w_name(i: u64) -> Vec<u8> {
    format!("w-{}", i % W_KEYS).into_bytes()
}

fn subject(name: &[u8], iat: i64) -> Token<'_> {
    Token {
        tenant: b"acme",
        subject: name,
        issued_at: iat,
        ..Token::default()
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn writer_role(s: &Setup) {
    let w = Ledger::open_writer(s.ledger(), &WriterOptions::with_lifetime(LIFETIME)).unwrap();
    let progress = std::fs::OpenOptions::new()
        .write(true)
        .open(s.progress())
        .unwrap();
    let start = Instant::now();
    let end = Duration::from_secs_f64(s.secs);
    let compact_every = Duration::from_secs_f64(s.secs / 10.0);
    let mut next_compaction = compact_every;
    let (mut n, mut syncs, mut compactions, mut junk) = (0u64, 0u64, 0u64, 0u64);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    while start.elapsed() < end {
        let k = 1 + rng.below(16);
        let names: Vec<Vec<u8>> = (n..n + k).map(w_name).collect();
        let mut rules: Vec<Rule> = names
            .iter()
            .zip(n..)
            .map(|(name, i)| Rule::new(Scope::Subject, b"acme", name, w_cutoff(s.base, i)))
            .collect();
        // Expired rules too, for compaction to drop.
        let junk_name = format!("junk-{junk}").into_bytes();
        rules.push(Rule::new(Scope::Subject, b"acme", &junk_name, JUNK_CUTOFF));
        junk += 1;
        w.revoke_batch(&rules).unwrap();
        n += k;
        // Committed: readers must see rules 0..n from their next check on.
        progress.write_all_at(&n.to_le_bytes(), 0).unwrap();
        if n / 4_096 != (n - k) / 4_096 {
            w.sync().unwrap();
            syncs += 1;
        }
        if start.elapsed() >= next_compaction {
            w.compact(revledger::unix_now_floor()).unwrap();
            compactions += 1;
            next_compaction += compact_every;
        }
    }
    w.sync().unwrap();
    println!("@writer rules={n} syncs={syncs} compactions={compactions}");
}

fn reader_role(s: &Setup, id: u64) {
    let r = Ledger::open_reader(s.ledger()).unwrap();
    let progress = std::fs::File::open(s.progress()).unwrap();
    let pre: Vec<Vec<u8>> = (0..PRE).map(|i| format!("pre-{i}").into_bytes()).collect();
    let never: Vec<Vec<u8>> = (0..NEVER)
        .map(|i| format!("never-{i}").into_bytes())
        .collect();
    let late = revledger::unix_now_floor();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (id + 1));
    let (mut checks, mut wrong, mut errors, mut visibility) = (0u64, 0u64, 0u64, 0u64);
    let mut first_wrong = None;
    let mut judge = |got: revledger::Result<Verdict>, want: Verdict, what: &dyn Fn() -> String| {
        checks += 1;
        match got {
            Ok(v) if v == want => {}
            Ok(v) => {
                wrong += 1;
                first_wrong.get_or_insert_with(|| format!("{}: got {v:?}, want {want:?}", what()));
            }
            Err(e) => {
                errors += 1;
                first_wrong.get_or_insert_with(|| format!("{}: error {e}", what()));
            }
        }
    };
    let start = Instant::now();
    let end = Duration::from_secs_f64(s.secs);
    let mut buf = [0u8; 8];
    while start.elapsed() < end {
        for _ in 0..256 {
            let i = rng.below(PRE);
            let want = Verdict::Revoked {
                scope: Scope::Subject,
                cutoff: pre_cutoff(s.base, i),
            };
            judge(r.check(&subject(&pre[i as usize], s.base)), want, &|| {
                format!("pre-{i}")
            });
            let j = rng.below(NEVER) as usize;
            judge(r.check(&subject(&never[j], late)), Verdict::Valid, &|| {
                format!("never-{j}")
            });
        }
        progress.read_exact_at(&mut buf, 0).unwrap();
        let n = u64::from_le_bytes(buf);
        if n > 0 {
            for i in [n - 1, rng.below(n)] {
                // Rule i was committed before this check began; the writer may have
                // revoked the same key again since (a later cutoff, i + k * W_KEYS).
                let latest = i + (n - 1 - i) / W_KEYS * W_KEYS;
                let got = r.check(&subject(&w_name(i), s.base));
                let want = match got {
                    Ok(Verdict::Revoked {
                        scope: Scope::Subject,
                        cutoff,
                    }) if cutoff >= w_cutoff(s.base, latest)
                        && (cutoff - w_cutoff(s.base, 0)) as u64 % W_KEYS == i % W_KEYS =>
                    {
                        Verdict::Revoked {
                            scope: Scope::Subject,
                            cutoff,
                        }
                    }
                    _ => Verdict::Revoked {
                        scope: Scope::Subject,
                        cutoff: w_cutoff(s.base, latest),
                    },
                };
                judge(got, want, &|| format!("w-{i} (writer had committed {n})"));
                visibility += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "@reader id={id} checks={checks} wrong={wrong} errors={errors} visibility={visibility} \
         secs={secs:.3} first={}",
        first_wrong.unwrap_or_else(|| "-".into()).replace(' ', "_")
    );
}

fn setup_from_env() -> Option<(String, Setup)> {
    let role = std::env::var(ROLE).ok()?;
    let s = Setup {
        dir: PathBuf::from(std::env::var_os("REVLEDGER_LOAD_DIR")?),
        secs: std::env::var("REVLEDGER_LOAD_SECS_RESOLVED")
            .ok()?
            .parse()
            .ok()?,
        base: std::env::var("REVLEDGER_LOAD_BASE").ok()?.parse().ok()?,
    };
    Some((role, s))
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}")) as u64
}

fn spawn(role: &str, s: &Setup, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("REVLEDGER_LOAD_DIR", dir)
        .env("REVLEDGER_LOAD_SECS_RESOLVED", s.secs.to_string())
        .env("REVLEDGER_LOAD_BASE", s.base.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn report(child: std::process::Child, tag: &str) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{tag} process failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        // The harness may print "test NAME ... " on the same line first.
        .find_map(|l| l.find(tag).map(|at| l[at..].to_string()))
        .unwrap_or_else(|| panic!("no report from {tag}: {text}"))
}

#[test]
fn one_writer_and_reader_processes_never_get_a_wrong_answer() {
    if let Some((role, s)) = setup_from_env() {
        match role.strip_prefix("reader-") {
            Some(id) => reader_role(&s, id.parse().unwrap()),
            None => writer_role(&s),
        }
        return;
    }
    let secs: f64 = std::env::var("REVLEDGER_LOAD_SECS")
        .map(|v| v.parse().expect("REVLEDGER_LOAD_SECS is a number"))
        .unwrap_or(3.0);
    let readers: u64 = std::env::var("REVLEDGER_LOAD_READERS")
        .map(|v| v.parse().expect("REVLEDGER_LOAD_READERS is a number"))
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let s = Setup {
        dir: dir.path().to_path_buf(),
        secs,
        base: revledger::unix_now_floor() - 1_000_000_000,
    };
    {
        let w = Ledger::open_writer(s.ledger(), &WriterOptions::with_lifetime(LIFETIME)).unwrap();
        let names: Vec<Vec<u8>> = (0..PRE).map(|i| format!("pre-{i}").into_bytes()).collect();
        let rules: Vec<Rule> = names
            .iter()
            .zip(0..)
            .map(|(n, i)| Rule::new(Scope::Subject, b"acme", n, pre_cutoff(s.base, i)))
            .collect();
        w.revoke_batch(&rules).unwrap();
        w.sync().unwrap();
    }
    std::fs::write(s.progress(), 0u64.to_le_bytes()).unwrap();
    let kids: Vec<_> = (0..readers)
        .map(|i| spawn(&format!("reader-{i}"), &s, dir.path()))
        .collect();
    let writer = spawn("writer", &s, dir.path());
    let w = report(writer, "@writer");
    let (mut checks, mut wrong, mut errors, mut visibility, mut rate) = (0, 0, 0, 0, 0.0);
    for k in kids {
        let line = report(k, "@reader");
        println!("{line}");
        checks += field(&line, "checks");
        wrong += field(&line, "wrong");
        errors += field(&line, "errors");
        visibility += field(&line, "visibility");
        let secs: f64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("secs="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        rate += field(&line, "checks") as f64 / secs;
    }
    println!("{w}");
    println!(
        "load: {readers} reader processes, {secs} s: {checks} checks ({rate:.0} checks/s in \
         all), {visibility} of them right after a commit, {wrong} wrong answers, {errors} \
         errors; writer: {}",
        w.trim_start_matches("@writer ")
    );
    assert_eq!(wrong, 0, "wrong answers");
    assert_eq!(errors, 0, "errors");
    assert!(checks > 0 && visibility > 0, "the readers checked nothing");
    assert!(field(&w, "rules") > 0, "the writer appended nothing");
}
