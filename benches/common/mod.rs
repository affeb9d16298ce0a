//! What the benchmarks share: the run's settings (quick or full, sizes), a deterministic
//! workload (the rules of a ledger, and tokens to check against it), the baselines a
//! gateway author would otherwise reach for, and where extra results are written.
//!
//! Every benchmark builds the same ledger for a given size, so the figures of `check`,
//! `open` and the baselines describe the same data. Keys are realistic (~20 bytes, tenant
//! 13 bytes); cutoffs spread over one day; tokens checked as "valid" carry keys that are
//! not in the ledger and an `iat` before the newest cutoff of every scope, so every
//! table is really probed.

#![allow(dead_code)] // each bench binary uses part of this module

pub mod claims;
mod clock;

#[allow(unused_imports)] // as above: each bench binary uses part of this module
pub use clock::{monotonic_ns, thread_cpu_ns};

use revledger::{CompactionPolicy, Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Settings

/// `REVLEDGER_BENCH_QUICK=1`: every benchmark briefly, small sizes.
pub fn quick() -> bool {
    std::env::var("REVLEDGER_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Ledger sizes (live rules): `REVLEDGER_BENCH_SIZES=10k,1M` or the mode's default
/// (full: 10k, 1M, 10M; quick: 10k, 1M).
pub fn sizes() -> Vec<usize> {
    if let Ok(s) = std::env::var("REVLEDGER_BENCH_SIZES") {
        let parsed: Vec<usize> = s.split(',').filter_map(parse_size).collect();
        if !parsed.is_empty() {
            return parsed;
        }
        eprintln!("revledger-bench: REVLEDGER_BENCH_SIZES={s:?} not understood; using defaults");
    }
    if quick() {
        vec![10_000, 1_000_000]
    } else {
        vec![10_000, 1_000_000, 10_000_000]
    }
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1_000),
        'm' | 'M' => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

/// "10k", "1M", "10M": the label a size carries in benchmark ids and in the report.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// Criterion timing for micro-benchmarks (one check is nanoseconds to microseconds).
pub fn micro_times() -> (Duration, Duration, usize) {
    if quick() {
        (Duration::from_millis(200), Duration::from_millis(600), 10)
    } else {
        (Duration::from_secs(1), Duration::from_secs(3), 50)
    }
}

/// Where benchmarks write what criterion does not hold (percentiles, memory, sizes):
/// `$REVLEDGER_BENCH_OUT`, else `$CARGO_TARGET_DIR/revledger-bench`, else
/// `target/revledger-bench` in the package.
pub fn out_dir() -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("REVLEDGER_BENCH_OUT") {
        PathBuf::from(d)
    } else if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(t).join("revledger-bench")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/revledger-bench")
    };
    std::fs::create_dir_all(&dir).expect("creating the benchmark output directory");
    dir
}

/// A scratch directory for benchmark ledgers whose figures do not depend on the disk
/// (checks and opens read the page cache), removed when dropped: under
/// `$REVLEDGER_BENCH_SCRATCH` if set (scripts/bench may point it at a tmpfs when the
/// disk is short of space), else as [`scratch_on_disk`].
pub fn scratch() -> tempfile::TempDir {
    match std::env::var_os("REVLEDGER_BENCH_SCRATCH").filter(|d| !d.is_empty()) {
        Some(d) => scratch_in(PathBuf::from(d)),
        None => scratch_on_disk(),
    }
}

/// A scratch directory on the same file system as the build (not tmpfs, so that
/// fdatasync means what it means on a server), removed when dropped: for what syncs.
pub fn scratch_on_disk() -> tempfile::TempDir {
    scratch_in(out_dir().join("scratch"))
}

fn scratch_in(dir: PathBuf) -> tempfile::TempDir {
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    tempfile::TempDir::new_in(dir).expect("creating a scratch directory")
}

/// Writes `target/revledger-bench/<name>.json`.
pub fn write_json(name: &str, value: &serde_json::Value) {
    let path = out_dir().join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("serialising results");
    std::fs::write(&path, text).expect("writing results");
    eprintln!("revledger-bench: wrote {}", path.display());
}

/// A criterion measurement of the benchmark thread's CPU time instead of wall time.
///
/// This machine is shared (2 cores, other builds and tests running): wall time of a
/// single-threaded, in-process benchmark includes the time another process held the
/// core, and inflates with the load. The thread's CPU time does not. It is used for
/// what runs on one thread without waiting (check, open); anything that waits on
/// another process, the disk or a second thread is measured in wall time.
pub struct ThreadCpu {
    wall: criterion::measurement::WallTime,
}

impl Default for ThreadCpu {
    fn default() -> ThreadCpu {
        ThreadCpu {
            wall: criterion::measurement::WallTime,
        }
    }
}

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = i64;
    type Value = Duration;

    fn start(&self) -> i64 {
        thread_cpu_ns()
    }

    fn end(&self, start: i64) -> Duration {
        Duration::from_nanos((thread_cpu_ns() - start).max(0) as u64)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        self.wall.formatter()
    }
}

/// A connection to the Redis at `REVLEDGER_BENCH_REDIS`, or `None` after printing why
/// the Redis baseline of `what` is skipped.
pub fn redis_connection(what: &str) -> Option<redis::Connection> {
    let url = match std::env::var("REVLEDGER_BENCH_REDIS") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!(
                "revledger-bench: Redis baseline of {what} SKIPPED: set \
                 REVLEDGER_BENCH_REDIS=redis://127.0.0.1:PORT to measure it"
            );
            return None;
        }
    };
    match redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
        Ok(con) => Some(con),
        Err(e) => {
            eprintln!(
                "revledger-bench: Redis baseline of {what} SKIPPED: cannot connect to \
                 REVLEDGER_BENCH_REDIS={url}: {e}"
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// The workload

/// SplitMix64: a fast, deterministic source of keys.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A well-mixed 64-bit value for `v` (keys numbered in order, stored in random order).
pub fn scramble(v: u64) -> u64 {
    Rng::new(v).next()
}

/// Cutoffs fall in `[BASE, BASE + DAY)`; `Token` rules carry an `exp` just after.
pub const BASE: i64 = 1_700_000_000;
pub const DAY: i64 = 86_400;
/// Tenants of the workload; tokens use the first [`TOKEN_TENANTS`], tenant rules
/// (offboarded tenants) the rest.
pub const TENANTS: u64 = 1_000;
pub const TOKEN_TENANTS: u64 = 900;
/// Tenant rules in a ledger of any size.
pub const TENANT_RULES: usize = 100;
/// `iat` of the valid and revoked-by-key tokens: before the newest cutoff of every
/// scope, so that every scope's table is probed.
pub const VALID_IAT: i64 = BASE + DAY / 2;
/// `iat` of the "fresh" token: after every cutoff.
pub const FRESH_IAT: i64 = BASE + DAY + 7_200;

pub type TenantName = [u8; 13];
pub type Key = [u8; 20];

/// `tenant-000042`: 13 bytes.
pub fn tenant_name(i: u64) -> TenantName {
    let mut out = *b"tenant-000000";
    write_decimal(&mut out[7..], i);
    out
}

fn write_decimal(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// `usr_` + 16 hex digits: 20 bytes, like most subject, session and jti identifiers.
pub fn key(prefix: &[u8; 4], v: u64) -> Key {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 20];
    out[..4].copy_from_slice(prefix);
    for (i, b) in out[4..].iter_mut().enumerate() {
        *b = HEX[((v >> (60 - 4 * i)) & 0xF) as usize];
    }
    out
}

fn prefix_of(scope: Scope) -> &'static [u8; 4] {
    match scope {
        Scope::Subject => b"usr_",
        Scope::Session => b"sid_",
        Scope::Client => b"app_",
        Scope::Role => b"rol_",
        Scope::Token => b"jti_",
        Scope::Global | Scope::Tenant => b"____",
    }
}

/// One rule of the workload, owning its bytes.
#[derive(Clone, Copy, Debug)]
pub struct OwnedRule {
    pub scope: Scope,
    pub tenant: TenantName,
    pub key: Key,
    pub at: i64,
}

impl OwnedRule {
    pub fn key_bytes(&self) -> &[u8] {
        if self.scope.has_key() {
            &self.key
        } else {
            &[]
        }
    }

    pub fn as_rule(&self) -> Rule<'_> {
        Rule::new(self.scope, &self.tenant, self.key_bytes(), self.at)
    }
}

/// The `i`-th.. rules of a ledger of `n` live rules, deterministic: the first
/// [`TENANT_RULES`] are tenant rules (offboarded tenants); then 40 % subject, 30 %
/// session, 20 % token (single-token logouts), 5 % role, 5 % client. Random 64-bit key
/// values make every key distinct, so `n` rules are `n` live keys.
pub fn rules(n: usize) -> impl Iterator<Item = OwnedRule> {
    let mut rng = Rng::new(0x5EED_0000 ^ n as u64);
    (0..n).map(move |i| {
        if i < TENANT_RULES.min(n) {
            return OwnedRule {
                scope: Scope::Tenant,
                tenant: tenant_name(TOKEN_TENANTS + i as u64 % (TENANTS - TOKEN_TENANTS)),
                key: [0; 20],
                at: BASE + rng.below(DAY as u64) as i64,
            };
        }
        let scope = match rng.below(100) {
            0..40 => Scope::Subject,
            40..70 => Scope::Session,
            70..90 => Scope::Token,
            90..95 => Scope::Role,
            _ => Scope::Client,
        };
        let tenant = tenant_name(rng.below(TOKEN_TENANTS));
        let key = key(prefix_of(scope), rng.next());
        let at = match scope {
            Scope::Token => BASE + DAY + rng.below(3_600) as i64,
            _ => BASE + rng.below(DAY as u64) as i64,
        };
        OwnedRule {
            scope,
            tenant,
            key,
            at,
        }
    })
}

/// Bytes of tenant and key in the `n` rules (what the file must hold besides framing).
pub fn key_bytes(n: usize) -> u64 {
    rules(n)
        .map(|r| (r.tenant.len() + r.key_bytes().len()) as u64)
        .sum()
}

/// When compaction of a benchmark ledger runs: after every cutoff and token `exp` of the
/// workload, and before any of them expires, so it keeps every rule.
pub const COMPACT_AT: i64 = BASE + DAY;

/// The state a benchmark ledger is left in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Compacted: every rule rewritten into a fresh file with its shared index (the
    /// steady state of a long-lived ledger).
    Compacted,
    /// Every rule appended, never compacted (`WriterOptions::compaction: None`): the
    /// writer's shared index grew with the appends and readers map it, but the file is
    /// the log as written.
    Log,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Compacted => "compacted",
            State::Log => "log",
        }
    }
}

/// Times of building a benchmark ledger.
#[derive(Clone, Copy, Debug)]
pub struct Built {
    /// Appending the rules with `revoke_batch` and syncing.
    pub append: Duration,
    /// Compacting them (when asked).
    pub compact: Option<Duration>,
}

/// The writer options of the benchmark ledgers: tokens live up to two days, and no
/// background compaction. The workload's cutoffs are in 2023: a writer compacting on its
/// own by the host's clock would drop every rule, so the benches decide when a ledger is
/// compacted (at [`COMPACT_AT`]), and a "never compacted" ledger stays so.
pub fn bench_writer_options() -> WriterOptions {
    WriterOptions {
        compaction: None,
        ..WriterOptions::with_lifetime(2 * DAY)
    }
}

/// The clock of benchmark writers that compact in the background: the workload's
/// [`COMPACT_AT`], so that their compactions keep every rule, as a live ledger's do.
pub fn workload_clock() -> i64 {
    COMPACT_AT
}

/// Writer options with the default background compaction policy, judged by
/// [`workload_clock`].
pub fn compacting_writer_options() -> WriterOptions {
    WriterOptions {
        compaction: Some(CompactionPolicy::default()),
        clock: Some(workload_clock),
        ..WriterOptions::with_lifetime(2 * DAY)
    }
}

/// Appends the `n` rules of the workload to `writer` with `revoke_batch` in chunks of
/// 10,000.
pub fn append_rules(writer: &Ledger, n: usize) {
    let mut chunk: Vec<OwnedRule> = Vec::with_capacity(10_000);
    let flush = |chunk: &mut Vec<OwnedRule>| {
        let batch: Vec<Rule> = chunk.iter().map(OwnedRule::as_rule).collect();
        writer.revoke_batch(&batch).expect("appending rules");
        chunk.clear();
    };
    for r in rules(n) {
        chunk.push(r);
        if chunk.len() == chunk.capacity() {
            flush(&mut chunk);
        }
    }
    flush(&mut chunk);
}

/// Creates a ledger of `n` live rules at `path` ([`bench_writer_options`]) with
/// `revoke_batch` in chunks, waits for the writer's background index growth, then
/// compacts it at [`COMPACT_AT`] if `state` asks.
pub fn build_ledger(path: &Path, n: usize, state: State) -> Built {
    let start = Instant::now();
    let writer =
        Ledger::open_writer(path, &bench_writer_options()).expect("creating the benchmark ledger");
    append_rules(&writer, n);
    writer.sync().expect("syncing the benchmark ledger");
    writer
        .wait_background()
        .expect("the writer's background index growth");
    let append = start.elapsed();
    let compact = (state == State::Compacted).then(|| {
        let start = Instant::now();
        let stats = writer
            .compact(COMPACT_AT)
            .expect("compacting the benchmark ledger");
        assert_eq!(stats.keys_dropped, 0, "compaction dropped workload rules");
        start.elapsed()
    });
    drop(writer);
    Built { append, compact }
}

/// One token to check, owning its bytes.
#[derive(Clone, Debug)]
pub struct OwnedToken {
    pub tenant: TenantName,
    pub subject: Key,
    pub client: Key,
    pub session: Key,
    pub token_id: Key,
    pub roles: Vec<Key>,
    pub issued_at: i64,
    /// What `check` must answer.
    pub expect: Verdict,
}

/// What a pool of tokens is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Keys not in the ledger, `iat` before the newest cutoffs: every table probed.
    Valid,
    /// One key is a ledger rule's key and `iat` is before that rule's cutoff.
    Revoked,
    /// Keys not in the ledger, `iat` after every cutoff.
    Fresh,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Revoked => "revoked",
            Kind::Fresh => "fresh",
        }
    }
}

/// How many distinct tokens a benchmark cycles through: enough that the index lines
/// they touch do not stay in the caches between two visits (at 1M and 10M rules),
/// and the whole ledger's worth at 10k.
pub fn pool_size(n: usize) -> usize {
    if n <= 100_000 {
        1 << 10
    } else {
        1 << 17
    }
}

/// A pool of `count` tokens with `roles` roles each against a ledger of `n` rules.
/// Revoked tokens are revoked by a rule sampled across the whole ledger, of every keyed
/// scope the token can carry (subject, session, client, token id, and role when it has
/// roles), in turn.
pub fn tokens(n: usize, kind: Kind, roles: usize, count: usize) -> Vec<OwnedToken> {
    let mut rng = Rng::new(0x70CE_0000 ^ ((n as u64) << 8) ^ ((roles as u64) << 4) ^ kind as u64);
    let fresh_token = |rng: &mut Rng, iat: i64| OwnedToken {
        tenant: tenant_name(rng.below(TOKEN_TENANTS)),
        subject: key(b"usr_", rng.next()),
        client: key(b"app_", rng.next()),
        session: key(b"sid_", rng.next()),
        token_id: key(b"jti_", rng.next()),
        roles: (0..roles).map(|_| key(b"rol_", rng.next())).collect(),
        issued_at: iat,
        expect: Verdict::Valid,
    };
    match kind {
        Kind::Valid => (0..count)
            .map(|_| fresh_token(&mut rng, VALID_IAT))
            .collect(),
        Kind::Fresh => (0..count)
            .map(|_| fresh_token(&mut rng, FRESH_IAT))
            .collect(),
        Kind::Revoked => {
            let keyed = n.saturating_sub(TENANT_RULES).max(1);
            let stride = (keyed / count).max(1);
            let mut out = Vec::with_capacity(count);
            for (i, r) in rules(n).enumerate().skip(TENANT_RULES) {
                if out.len() == count {
                    break;
                }
                if !(i - TENANT_RULES).is_multiple_of(stride)
                    || (r.scope == Scope::Role && roles == 0)
                {
                    continue;
                }
                let mut t = fresh_token(&mut rng, r.at - 1);
                t.tenant = r.tenant;
                match r.scope {
                    Scope::Subject => t.subject = r.key,
                    Scope::Session => t.session = r.key,
                    Scope::Client => t.client = r.key,
                    Scope::Role => {
                        let at = rng.below(roles as u64) as usize;
                        t.roles[at] = r.key;
                    }
                    Scope::Token => t.issued_at = VALID_IAT,
                    Scope::Global | Scope::Tenant => unreachable!("keyed scopes only"),
                }
                if r.scope == Scope::Token {
                    t.token_id = r.key;
                }
                t.expect = Verdict::Revoked {
                    scope: r.scope,
                    cutoff: r.at,
                };
                out.push(t);
            }
            // The victims were taken in the order the rules were appended; in that
            // order, a never-compacted ledger's records would be read almost
            // sequentially (a few hundred bytes apart) and its found keys would look
            // far cheaper than a compacted ledger's. Shuffled, every state reads the
            // records of its found keys at random, as a gateway's traffic does.
            for i in (1..out.len()).rev() {
                out.swap(i, rng.below(i as u64 + 1) as usize);
            }
            // A small ledger has fewer victims than the pool: cycle them.
            let have = out.len();
            for i in 0..count.saturating_sub(have) {
                let t = out[i % have].clone();
                out.push(t);
            }
            out
        }
    }
}

/// Checks timed together after their tokens were [`touch`]ed.
pub const BATCH: usize = 512;

/// Reads every byte of `t` that a check reads from the token itself (the `Token`, its
/// roles array and its byte strings), so that they are in the cache when a batch of
/// [`BATCH`] timed checks starts. A gateway checks a token whose bytes it has just parsed,
/// while the index lines a token leads to are as cold as a large pool makes them; without
/// this, each check at 1M and 10M rules would also wait for its own input from a pool of
/// about 50 MiB. Done outside the timed part, for every implementation alike (the C loop
/// of benches/c/check_loop.c has its copy).
pub fn touch(t: &Token) -> u8 {
    let xor = |b: &[u8]| b.iter().fold(0u8, |a, &x| a ^ x);
    let mut x = xor(t.tenant) ^ xor(t.subject) ^ xor(t.client) ^ xor(t.session);
    x ^= xor(t.token_id) ^ t.issued_at as u8;
    for r in t.roles {
        x ^= xor(r);
    }
    x
}

/// Borrowed [`Token`]s over a pool, for as long as `f` runs.
pub fn with_tokens<R>(pool: &[OwnedToken], f: impl FnOnce(&[Token<'_>]) -> R) -> R {
    let roles: Vec<Vec<&[u8]>> = pool
        .iter()
        .map(|t| t.roles.iter().map(|r| &r[..]).collect())
        .collect();
    let tokens: Vec<Token> = pool
        .iter()
        .zip(&roles)
        .map(|(t, r)| Token {
            tenant: &t.tenant,
            subject: &t.subject,
            roles: r,
            client: &t.client,
            session: &t.session,
            token_id: &t.token_id,
            issued_at: t.issued_at,
        })
        .collect();
    f(&tokens)
}

/// The keys of a token, in the order every implementation here probes them: token id,
/// subject, session, client, roles, tenant (empty key).
pub fn token_keys<'a>(t: &Token<'a>, mut f: impl FnMut(Scope, &'a [u8])) {
    f(Scope::Token, t.token_id);
    f(Scope::Subject, t.subject);
    f(Scope::Session, t.session);
    f(Scope::Client, t.client);
    for r in t.roles {
        f(Scope::Role, r);
    }
    f(Scope::Tenant, b"");
}

/// Chooses the verdict like revledger does, given the cutoffs found per probed key:
/// a token rule first, else the latest cutoff, ties to the most specific scope.
#[derive(Default)]
pub struct Decide {
    token: Option<i64>,
    best: Option<(Scope, i64)>,
}

impl Decide {
    #[inline]
    pub fn found(&mut self, scope: Scope, cutoff: i64, iat: i64) {
        if scope == Scope::Token {
            self.token = Some(cutoff);
        } else if iat < cutoff && self.best.is_none_or(|(_, b)| cutoff > b) {
            self.best = Some((scope, cutoff));
        }
    }

    #[inline]
    pub fn verdict(self) -> Verdict {
        match (self.token, self.best) {
            (Some(exp), _) => Verdict::Revoked {
                scope: Scope::Token,
                cutoff: exp,
            },
            (None, Some((scope, cutoff))) => Verdict::Revoked { scope, cutoff },
            (None, None) => Verdict::Valid,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Baseline: std HashMap<(Vec<u8>, Vec<u8>), i64>, default hasher (SipHash-1-3), looked up
// by borrowed (tenant, key) without allocating.

/// A `(tenant, key)` pair, owned or borrowed, hashed and compared the same way, so that
/// the map of owned `(Vec<u8>, Vec<u8>)` keys can be probed with two borrowed slices.
pub trait KeyPair {
    fn parts(&self) -> (&[u8], &[u8]);
}

impl KeyPair for (Vec<u8>, Vec<u8>) {
    fn parts(&self) -> (&[u8], &[u8]) {
        (&self.0, &self.1)
    }
}

impl KeyPair for (&[u8], &[u8]) {
    fn parts(&self) -> (&[u8], &[u8]) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn KeyPair + 'a> for (Vec<u8>, Vec<u8>) {
    fn borrow(&self) -> &(dyn KeyPair + 'a) {
        self
    }
}

impl Hash for dyn KeyPair + '_ {
    // The same bytes as the tuple's derived Hash: each part as a slice (length, bytes).
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.parts();
        a.hash(state);
        b.hash(state);
    }
}

impl PartialEq for dyn KeyPair + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyPair + '_ {}

/// The baseline's map: `(tenant, key)` → maximum cutoff.
pub type StdMap = HashMap<(Vec<u8>, Vec<u8>), i64>;

/// One [`StdMap`] per scope.
pub struct StdMaps {
    maps: Vec<StdMap>,
}

impl StdMaps {
    pub fn build(n: usize) -> StdMaps {
        let mut maps: Vec<StdMap> = (0..7).map(|_| HashMap::new()).collect();
        for r in rules(n) {
            let e = maps[r.scope as usize]
                .entry((r.tenant.to_vec(), r.key_bytes().to_vec()))
                .or_insert(i64::MIN);
            *e = (*e).max(r.at);
        }
        StdMaps { maps }
    }

    #[inline]
    pub fn get(&self, scope: Scope, tenant: &[u8], key: &[u8]) -> Option<i64> {
        self.maps[scope as usize]
            .get(&(tenant, key) as &dyn KeyPair)
            .copied()
    }

    /// The same per-scope lookups as revledger's check, one per key of the token.
    #[inline]
    pub fn check(&self, t: &Token) -> Verdict {
        let mut d = Decide::default();
        token_keys(t, |scope, key| {
            if let Some(c) = self.get(scope, t.tenant, key) {
                d.found(scope, c, t.issued_at);
            }
        });
        d.verdict()
    }
}

// ---------------------------------------------------------------------------------------
// Baseline: per-scope hashbrown tables with foldhash, written as well as we can: the
// tenant is hashed once per token, each key once, and the tables are probed with the
// combined hash and borrowed bytes (no allocation, no re-hashing).

/// One entry of a [`FoldMaps`] table.
struct FoldEntry {
    tenant: Box<[u8]>,
    key: Box<[u8]>,
    cutoff: i64,
}

/// The strongest in-process peer a competent engineer would write: per scope a
/// `hashbrown::HashTable` of `(tenant, key) → maximum cutoff`, hashed with `foldhash`
/// (fast variant, seeded), the tenant's hash computed once per token and folded into
/// each key's.
pub struct FoldMaps {
    tables: Vec<hashbrown::HashTable<FoldEntry>>,
    state: foldhash::fast::FixedState,
}

impl FoldMaps {
    pub fn build(n: usize) -> FoldMaps {
        let state = foldhash::fast::FixedState::with_seed(0x5EED_F01D);
        let mut m = FoldMaps {
            tables: (0..7).map(|_| hashbrown::HashTable::new()).collect(),
            state,
        };
        for r in rules(n) {
            let th = m.tenant_hash(&r.tenant);
            let h = m.key_hash(r.scope, th, r.key_bytes());
            let t = &mut m.tables[r.scope as usize];
            match t.find_mut(h, |e| *e.tenant == r.tenant[..] && *e.key == *r.key_bytes()) {
                Some(e) => e.cutoff = e.cutoff.max(r.at),
                None => {
                    let state = m.state.clone();
                    t.insert_unique(
                        h,
                        FoldEntry {
                            tenant: r.tenant.to_vec().into(),
                            key: r.key_bytes().to_vec().into(),
                            cutoff: r.at,
                        },
                        |e| {
                            let th = fold_hash(&state, 0, &e.tenant);
                            fold_hash(&state, th ^ (r.scope as u64 + 1), &e.key)
                        },
                    );
                }
            }
        }
        m
    }

    #[inline(always)]
    fn tenant_hash(&self, tenant: &[u8]) -> u64 {
        fold_hash(&self.state, 0, tenant)
    }

    #[inline(always)]
    fn key_hash(&self, scope: Scope, tenant_hash: u64, key: &[u8]) -> u64 {
        fold_hash(&self.state, tenant_hash ^ (scope as u64 + 1), key)
    }

    /// The same per-scope lookups as revledger's check, one per key of the token.
    #[inline]
    pub fn check(&self, t: &Token) -> Verdict {
        let mut d = Decide::default();
        let th = self.tenant_hash(t.tenant);
        token_keys(t, |scope, key| {
            let h = self.key_hash(scope, th, key);
            if let Some(e) =
                self.tables[scope as usize].find(h, |e| *e.tenant == *t.tenant && *e.key == *key)
            {
                d.found(scope, e.cutoff, t.issued_at);
            }
        });
        d.verdict()
    }
}

/// foldhash of `bytes` (length included) with `extra` folded in first.
#[inline(always)]
fn fold_hash(state: &foldhash::fast::FixedState, extra: u64, bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    let mut h = state.build_hasher();
    h.write_u64(extra);
    h.write(bytes);
    h.finish()
}

// ---------------------------------------------------------------------------------------
// Baseline: the physical cost of one cache miss.

/// A dependent random walk over `bytes` of memory: each 64-byte line holds the index of
/// the next, in one random cycle through every line (Sattolo's shuffle), so each step is
/// one load that cannot start before the previous one ends.
pub struct Chase {
    lines: Vec<[u64; 8]>,
    at: usize,
}

impl Chase {
    pub fn new(bytes: usize) -> Chase {
        let n = (bytes / 64).max(2);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(0xC4A5E);
        for i in (1..n).rev() {
            let j = rng.below(i as u64) as usize;
            order.swap(i, j);
        }
        let mut lines = vec![[0u64; 8]; n];
        for i in 0..n {
            lines[order[i]][0] = order[(i + 1) % n] as u64;
        }
        Chase { lines, at: 0 }
    }

    #[inline]
    pub fn step(&mut self) -> usize {
        self.at = self.lines[self.at][0] as usize;
        self.at
    }
}

// ---------------------------------------------------------------------------------------
// Baseline: redb, an embedded key-value store.

pub const REDB_TABLE: redb::TableDefinition<&[u8], i64> = redb::TableDefinition::new("rules");

/// `scope, tenant length, tenant, key`: one flat key per rule for a KV store.
#[inline]
pub fn kv_key<'b>(buf: &'b mut [u8; 64], scope: Scope, tenant: &[u8], key: &[u8]) -> &'b [u8] {
    let len = 2 + tenant.len() + key.len();
    buf[0] = scope as u8;
    buf[1] = tenant.len() as u8;
    buf[2..2 + tenant.len()].copy_from_slice(tenant);
    buf[2 + tenant.len()..len].copy_from_slice(key);
    &buf[..len]
}

/// A redb database holding the `n` rules, inserted in key order in a few transactions.
pub fn build_redb(path: &Path, n: usize) -> redb::Database {
    let db = redb::Database::create(path).expect("creating the redb baseline");
    let mut all: Vec<(Vec<u8>, i64)> = rules(n)
        .map(|r| {
            let mut buf = [0u8; 64];
            (
                kv_key(&mut buf, r.scope, &r.tenant, r.key_bytes()).to_vec(),
                r.at,
            )
        })
        .collect();
    all.sort_unstable();
    for chunk in all.chunks(1_000_000) {
        let txn = db.begin_write().expect("redb write transaction");
        {
            let mut table = txn.open_table(REDB_TABLE).expect("redb table");
            for (k, at) in chunk {
                table.insert(&k[..], at).expect("redb insert");
            }
        }
        txn.commit().expect("redb commit");
    }
    db
}

/// The token's keys looked up in one redb read transaction.
pub fn redb_check(db: &redb::Database, t: &Token) -> Verdict {
    use redb::ReadableDatabase;
    let txn = db.begin_read().expect("redb read transaction");
    let table = txn.open_table(REDB_TABLE).expect("redb table");
    let mut d = Decide::default();
    let mut buf = [0u8; 64];
    token_keys(t, |scope, key| {
        if let Some(v) = table
            .get(kv_key(&mut buf, scope, t.tenant, key))
            .expect("redb get")
        {
            d.found(scope, v.value(), t.issued_at);
        }
    });
    d.verdict()
}

// ---------------------------------------------------------------------------------------
// Baseline: Redis over loopback.

/// Loads the `n` rules into Redis (after `FLUSHDB`), pipelined.
pub fn load_redis(con: &mut redis::Connection, n: usize) {
    redis::cmd("FLUSHDB").exec(con).expect("redis FLUSHDB");
    let mut pipe = redis::pipe();
    let mut buf = [0u8; 64];
    for (i, r) in rules(n).enumerate() {
        pipe.cmd("SET")
            .arg(kv_key(&mut buf, r.scope, &r.tenant, r.key_bytes()))
            .arg(r.at)
            .ignore();
        if i % 10_000 == 9_999 {
            pipe.exec(con).expect("redis SET");
            pipe.clear();
        }
    }
    if !n.is_multiple_of(10_000) {
        pipe.exec(con).expect("redis SET");
    }
}

/// `EXISTS` of each of the token's keys, pipelined: one round trip per token. (It
/// answers less than a check: EXISTS says nothing of cutoffs; a GET would cost more.)
pub fn redis_exists(con: &mut redis::Connection, pipe: &mut redis::Pipeline, t: &Token) -> i64 {
    pipe.clear();
    let mut buf = [0u8; 64];
    token_keys(t, |scope, key| {
        pipe.cmd("EXISTS")
            .arg(kv_key(&mut buf, scope, t.tenant, key));
    });
    let found: Vec<i64> = pipe.query(con).expect("redis EXISTS");
    found.iter().sum()
}

// ---------------------------------------------------------------------------------------
// Child processes

/// Name of the environment variable that makes a bench binary act as a helper process.
pub const CHILD_ENV: &str = "REVLEDGER_BENCH_CHILD";

/// Starts this bench binary again as a helper `role`, with piped stdin and stdout.
pub fn spawn_child(role: &str, args: &[&str]) -> std::process::Child {
    let exe = std::env::current_exe().expect("finding the bench binary");
    std::process::Command::new(exe)
        .env(CHILD_ENV, role)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting a helper process")
}

/// `Rss` and `Pss` of a process, in bytes, from /proc/PID/smaps_rollup.
pub fn rss_pss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("Rss:"), field("Pss:"))
}

/// Checks that `check` answers what the workload says, before anything is timed.
pub fn verify(ledger: &Ledger, tokens: &[Token], pool: &[OwnedToken]) {
    for (t, o) in tokens.iter().zip(pool).take(2_000) {
        let v = ledger.check(t).expect("check");
        assert_eq!(v, o.expect, "workload and ledger disagree on {o:?}");
    }
}

/// Percentiles of latencies in nanoseconds (sorts `v`): count, p50, p90, p99, p99.9,
/// max, mean; `null` when empty.
pub fn latency_summary(v: &mut [i64]) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::Value::Null;
    }
    v.sort_unstable();
    let pct = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    serde_json::json!({
        "count": v.len(),
        "p50_ns": pct(0.50), "p90_ns": pct(0.90), "p99_ns": pct(0.99),
        "p999_ns": pct(0.999), "min_ns": v[0], "max_ns": v[v.len() - 1],
        "mean_ns": v.iter().sum::<i64>() as f64 / v.len() as f64,
    })
}

/// The file system `path` is on, from /proc/self/mounts (the longest mount point that
/// contains it): "ext4", "tmpfs", ...; the page says where the benchmark ledgers were.
pub fn file_system_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}
