//! `revledger demo`: DESIGN.md §1 played on a fresh temporary ledger, then a timing of
//! checks. Its output is meant for a gateway engineer reading it once.

use super::claims::Claims;
use super::commands::deciding_key;
use super::{CliError, CliResult, DemoArgs};
use revledger::{unix_now_floor, Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A ledger file in the temporary directory, removed when dropped.
struct TempLedger(PathBuf);

impl TempLedger {
    fn new(tag: &str) -> TempLedger {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        TempLedger(std::env::temp_dir().join(format!(
            "revledger-demo-{}-{nanos}-{tag}.ledger",
            std::process::id()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempLedger {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One token of the story, with the name the table shows.
struct Held {
    name: &'static str,
    claims: Claims,
}

fn held(name: &'static str, sub: &str, roles: &[&str], iat: i64) -> Held {
    Held {
        name,
        claims: Claims {
            tenant: b"acme".to_vec(),
            subject: sub.as_bytes().to_vec(),
            roles: roles.iter().map(|r| r.as_bytes().to_vec()).collect(),
            token_id: name.as_bytes().to_vec(),
            issued_at: iat,
            ..Claims::default()
        },
    }
}

/// `revoked by role super_admin at 1700000061`, `valid`.
fn verdict_text(gateway: &Ledger, c: &Claims) -> CliResult<(Verdict, String)> {
    let verdict = c.with_token(|t| gateway.check(t))?;
    let key = deciding_key(gateway, c, verdict)?;
    let text = match verdict {
        Verdict::Valid => "valid".to_string(),
        Verdict::Revoked {
            scope: Scope::Token,
            cutoff,
        } => format!(
            "revoked by token {} (logout; rule kept until exp {cutoff})",
            String::from_utf8_lossy(&key)
        ),
        Verdict::Revoked { scope, cutoff } => format!(
            "revoked by {scope} {} at {cutoff}",
            String::from_utf8_lossy(&key)
        ),
    };
    Ok((verdict, text))
}

fn table(gateway: &Ledger, tokens: &[&Held]) -> CliResult<Vec<Verdict>> {
    println!(
        "    {:<9} {:<6} {:<22} {:<11} verdict",
        "jti", "sub", "roles", "iat"
    );
    let mut verdicts = Vec::new();
    for h in tokens {
        let roles: Vec<String> = h
            .claims
            .roles
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect();
        let (verdict, text) = verdict_text(gateway, &h.claims)?;
        println!(
            "    {:<9} {:<6} {:<22} {:<11} {text}",
            h.name,
            String::from_utf8_lossy(&h.claims.subject),
            roles.join(", "),
            h.claims.issued_at
        );
        verdicts.push(verdict);
    }
    println!();
    Ok(verdicts)
}

/// Fails the demo when the library does not give the answer the story needs.
fn expect(what: &str, got: Verdict, want: Verdict) -> CliResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "demo: {what}: expected {want:?}, got {got:?} (a bug in revledger)"
        )))
    }
}

pub fn run(a: &DemoArgs) -> CliResult {
    let file = TempLedger::new("story");
    story(file.path())?;
    let timing_file = TempLedger::new("timing");
    timing(timing_file.path(), a)?;
    Ok(ExitCode::SUCCESS)
}

fn story(path: &Path) -> CliResult<()> {
    let writer = Ledger::open_writer(path, &WriterOptions::with_lifetime(3600))?;
    let gateway = Ledger::open_reader(path)?;
    let t0 = unix_now_floor() - 600;
    println!("revledger demo: DESIGN.md §1 on a fresh ledger");
    println!("  ledger {} (removed at the end)", path.display());
    println!(
        "  the permission system writes (one writer); a gateway reads (its own read-only handle)"
    );
    println!();
    println!("1. Tenant \"acme\". Three users hold access tokens issued at T0 = {t0}:");
    let john = held("john-1", "john", &["super_admin", "billing"], t0);
    let mike = held("mike-1", "mike", &["super_admin"], t0);
    let bruce = held("bruce-1", "bruce", &["billing"], t0);
    let v = table(&gateway, &[&john, &mike, &bruce])?;
    for (who, got) in ["john", "mike", "bruce"].iter().zip(v) {
        expect(&format!("{who} before the change"), got, Verdict::Valid)?;
    }

    println!("2. \"super_admin changed\": the permission system records it as of now.");
    let cutoff = writer.revoke_now(Scope::Role, b"acme", b"super_admin")?;
    println!(
        "    revoke_now(role, \"acme\", \"super_admin\") -> cutoff {cutoff} (now, rounded up to the next second)"
    );
    println!();
    println!("   The gateway's next check sees it (no restart, no polling):");
    let v = table(&gateway, &[&john, &mike, &bruce])?;
    let by_role = Verdict::Revoked {
        scope: Scope::Role,
        cutoff,
    };
    expect("john after the change", v[0], by_role)?;
    expect("mike after the change", v[1], by_role)?;
    expect("bruce after the change", v[2], Verdict::Valid)?;

    println!("   John's and Mike's clients get 401, refresh silently, and get new tokens:");
    let john2 = held("john-2", "john", &["super_admin", "billing"], cutoff);
    let mike2 = held("mike-2", "mike", &["super_admin"], cutoff);
    let v = table(&gateway, &[&john2, &mike2])?;
    expect("john's refreshed token", v[0], Verdict::Valid)?;
    expect("mike's refreshed token", v[1], Verdict::Valid)?;

    println!("3. Bruce's own permissions change (a subject rule); Mike logs out (a token rule");
    println!("   on his jti, kept until the token's exp):");
    let bruce_cutoff = writer.revoke_now(Scope::Subject, b"acme", b"bruce")?;
    let exp = mike2.claims.issued_at + 3600;
    writer.revoke(&Rule::new(Scope::Token, b"acme", b"mike-2", exp))?;
    writer.sync()?;
    println!("    revoke_now(subject, \"acme\", \"bruce\") -> cutoff {bruce_cutoff}");
    println!("    revoke(token, \"acme\", \"mike-2\", exp {exp}); sync()");
    println!();
    let v = table(&gateway, &[&john2, &mike2, &bruce])?;
    expect("john's refreshed token after", v[0], Verdict::Valid)?;
    expect(
        "mike's logged-out token",
        v[1],
        Verdict::Revoked {
            scope: Scope::Token,
            cutoff: exp,
        },
    )?;
    expect(
        "bruce after the subject rule",
        v[2],
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: bruce_cutoff,
        },
    )?;
    Ok(())
}

/// The tokens and rules of the timing: `rules` rules over 20 tenants, and pools of
/// 4096 tokens (3 roles, client, session, jti) that no rule revokes, or that one does.
struct Workload {
    rules: Vec<(Scope, Vec<u8>, Vec<u8>, i64)>,
    older: Vec<Claims>,
    fresh: Vec<Claims>,
    revoked: Vec<Claims>,
}

const POOL: usize = 4096;
const TENANTS: u32 = 20;
const ROLES: u32 = 50;

fn workload(now: i64, rules: u32) -> Workload {
    let mut r = Vec::with_capacity(rules as usize);
    let tenant = |i: u32| format!("tenant-{}", i % TENANTS).into_bytes();
    for i in 0..rules {
        // Cutoffs over the last hour; the newest is a second ago.
        let recent = now - 1 - i64::from(i % 3600);
        let (scope, key, at) = match i % 20 {
            0..=11 => (Scope::Subject, format!("gone-user-{i}"), recent),
            12..=14 => (Scope::Session, format!("gone-sid-{i}"), recent),
            15..=16 => (Scope::Token, format!("gone-jti-{i}"), now + 3600),
            // Roles the tokens carry, changed two hours ago: found, yet not revoking.
            17 => (
                Scope::Role,
                format!("role-{}", (i / 400) % ROLES),
                now - 7200,
            ),
            // Roles no token of the pool carries, changed recently.
            18 => (Scope::Role, format!("other-role-{i}"), recent),
            _ => (Scope::Client, format!("gone-client-{i}"), recent),
        };
        // Role rules: one per (tenant, role) pair, so that every rule is a live key.
        let t = if i % 20 == 17 { (i / 20) % TENANTS } else { i };
        r.push((scope, tenant(t), key.into_bytes(), at));
    }
    let token = |j: usize, iat: i64| {
        let j32 = j as u32;
        Claims {
            tenant: tenant(j32),
            subject: format!("user-{j}").into_bytes(),
            roles: (0..3)
                .map(|k| format!("role-{}", (j32 * 7 + k * 13) % ROLES).into_bytes())
                .collect(),
            client: format!("client-{}", j % 30).into_bytes(),
            session: format!("sid-{j}").into_bytes(),
            token_id: format!("jti-{j}").into_bytes(),
            issued_at: iat,
        }
    };
    let older = (0..POOL)
        .map(|j| token(j, now - 3000 + (j % 2900) as i64))
        .collect();
    let fresh = (0..POOL).map(|j| token(j, now + 1)).collect();
    // Users whose subject rule was written in the last hour, with tokens older than it.
    let subject_rules: Vec<usize> = (0..r.len()).filter(|&i| r[i].0 == Scope::Subject).collect();
    let revoked = if subject_rules.is_empty() {
        Vec::new()
    } else {
        (0..POOL)
            .map(|j| {
                let (_, tenant, key, at) = &r[subject_rules[j % subject_rules.len()]];
                Claims {
                    tenant: tenant.clone(),
                    subject: key.clone(),
                    issued_at: at - 60,
                    ..token(j, 0)
                }
            })
            .collect()
    };
    Workload {
        rules: r,
        older,
        fresh,
        revoked,
    }
}

/// Borrowed [`Token`]s over a pool of [`Claims`].
fn tokens_of<'a>(pool: &'a [Claims], roles: &'a [Vec<&'a [u8]>]) -> Vec<Token<'a>> {
    pool.iter()
        .zip(roles)
        .map(|(c, r)| Token {
            tenant: &c.tenant,
            subject: &c.subject,
            roles: r,
            client: &c.client,
            session: &c.session,
            token_id: &c.token_id,
            issued_at: c.issued_at,
        })
        .collect()
}

fn role_refs(pool: &[Claims]) -> Vec<Vec<&[u8]>> {
    pool.iter()
        .map(|c| c.roles.iter().map(Vec::as_slice).collect())
        .collect()
}

/// Runs `n` checks over `tokens` in turn; returns the time taken and how many were
/// revoked.
fn run_checks(ledger: &Ledger, tokens: &[Token], n: u64) -> CliResult<(Duration, u64)> {
    let mut revoked = 0u64;
    let start = Instant::now();
    for i in 0..n {
        let t = &tokens[i as usize % tokens.len()];
        if ledger.check(black_box(t))?.is_revoked() {
            revoked += 1;
        }
    }
    Ok((start.elapsed(), black_box(revoked)))
}

fn ns_per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Timing rounds: each case runs its checks in this many rounds and reports the best,
/// which is what the code costs when the machine lets it run.
const ROUNDS: u64 = 10;

/// One timed case: `tokens` checked in turn on `threads` threads sharing `gateway`.
struct Case<'a> {
    label: &'a str,
    tokens: &'a [Token<'a>],
    threads: u64,
    revoked: bool,
}

/// Runs `case` for about `checks` checks per thread; returns the checks run and the best
/// round's wall time per check (all threads' checks over the round's wall time). Fails
/// when a verdict is not the one the case expects.
fn measure(gateway: &Ledger, case: &Case, checks: u64) -> CliResult<(u64, f64)> {
    let per_round = (checks / ROUNDS).max(1);
    run_checks(gateway, case.tokens, case.tokens.len() as u64)?; // warm up
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let (took, revoked) = if case.threads == 1 {
            run_checks(gateway, case.tokens, per_round)?
        } else {
            std::thread::scope(|s| {
                let start = Instant::now();
                let workers: Vec<_> = (0..case.threads)
                    .map(|_| s.spawn(|| run_checks(gateway, case.tokens, per_round)))
                    .collect();
                let mut revoked = 0;
                for w in workers {
                    let (_, r) = w
                        .join()
                        .map_err(|_| CliError::new("demo: a checking thread panicked"))??;
                    revoked += r;
                }
                Ok::<_, CliError>((start.elapsed(), revoked))
            })?
        };
        let total = per_round * case.threads;
        let expected = if case.revoked { total } else { 0 };
        if revoked != expected {
            return Err(CliError::new(format!(
                "demo: {}: {revoked} of {total} checks said revoked, expected {expected}",
                case.label
            )));
        }
        best = best.min(ns_per(took, total));
    }
    Ok((per_round * ROUNDS * case.threads, best))
}

fn timing(path: &Path, a: &DemoArgs) -> CliResult<()> {
    let now = unix_now_floor();
    let w = workload(now, a.rules);
    // A day of token lifetime: compaction below keeps every rule.
    let writer = Ledger::open_writer(path, &WriterOptions::with_lifetime(86_400))?;
    let batch: Vec<Rule> = w
        .rules
        .iter()
        .map(|(s, t, k, at)| Rule::new(*s, t, k, *at))
        .collect();
    let start = Instant::now();
    writer.revoke_batch(&batch)?;
    let appended = start.elapsed();
    let gateway = Ledger::open_reader(path)?;
    let live = gateway.stats(now)?.live_keys;
    println!(
        "4. Timing: {} rules appended with one revoke_batch in {:.1} ms ({} live keys); a gateway",
        thousands(batch.len() as u64),
        appended.as_secs_f64() * 1e3,
        thousands(live)
    );
    println!(
        "   handle checks tokens in turn from a pool of {} (3 roles, client, sid, jti each),",
        thousands(POOL as u64)
    );
    println!("   {ROUNDS} rounds per case; the best round is shown.");
    println!();

    let older_roles = role_refs(&w.older);
    let fresh_roles = role_refs(&w.fresh);
    let revoked_roles = role_refs(&w.revoked);
    let older = tokens_of(&w.older, &older_roles);
    let fresh = tokens_of(&w.fresh, &fresh_roles);
    let revoked = tokens_of(&w.revoked, &revoked_roles);
    let case = |label, tokens, threads, revoked| Case {
        label,
        tokens,
        threads,
        revoked,
    };
    let probed = "valid, issued before the newest rules (every key probed)";
    let cases = [
        case(probed, &older[..], 1, false),
        case(
            "valid, issued after every rule (newest-cutoff fast path)",
            &fresh[..],
            1,
            false,
        ),
        case("revoked by a subject rule", &revoked[..], 1, true),
        case(
            "valid, every key probed, 2 threads sharing the handle",
            &older[..],
            2,
            false,
        ),
    ];
    println!("    {:<58} {:>12} {:>9}", "case", "checks", "ns/check");
    let mut one_thread = None;
    for c in cases.iter().filter(|c| !c.tokens.is_empty()) {
        let (n, ns) = measure(&gateway, c, a.checks)?;
        let note = match one_thread {
            Some(one) if c.threads > 1 => {
                format!("  ({:.2}x the throughput of one thread)", one / ns)
            }
            _ => String::new(),
        };
        if c.threads == 1 && c.label == probed {
            one_thread = Some(ns);
        }
        println!("    {:<58} {:>12} {ns:>9.1}{note}", c.label, thousands(n));
    }
    let compacted = writer.compact(now)?;
    let (n, ns) = measure(&gateway, &case(probed, &older[..], 1, false), a.checks)?;
    println!(
        "    {:<58} {:>12} {ns:>9.1}",
        format!(
            "the same, after compact (snapshot index, {} rules)",
            thousands(compacted.rules_kept)
        ),
        thousands(n)
    );
    println!();
    println!("   ns/check is wall time per check (2 threads: all checks over wall time). Timings");
    println!("   on a shared machine are noisy; `cargo bench` measures properly.");
    Ok(())
}
