//! Crash safety (DESIGN.md §3): after a crash at any point, opening the file gives exactly
//! a prefix of what was appended, including everything whose `sync` returned.
//!
//! 1. `kill_9_*`: a writer in a child process appends (single revokes and batches),
//!    syncs and compacts, reporting over a pipe which calls returned; the parent kills it
//!    with SIGKILL at a random point, reopens, and checks. 200 rounds by default (a few
//!    seconds), `REVLEDGER_CRASH_ROUNDS=N` for more; `REVLEDGER_CRASH_SEED` replays.
//! 2. `power_loss_*`: the writes a ledger makes are recorded (the file's bytes after each
//!    call, diffed, and the protocol's durability points: creation, `sync`, close,
//!    compaction), and every file a power loss could leave is built: writes since the last
//!    `fdatasync` dropped, applied in order up to any 512-byte sector, or applied in any
//!    order (any subset of sectors). Each must open to a prefix holding every synced
//!    record; a state that opens as `Corrupt` must be one where a sector was lost before
//!    a later one reached the disk, and `keep_valid_prefix` must recover it to such a
//!    prefix. The counts of each are printed (docs/RELIABILITY.md);
//!    `REVLEDGER_CRASH_SAMPLES=N` draws more random states where there are too many.

use revledger::record::Record;
use revledger::{Error, Ledger, Rule, Scope, WriterOptions};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Spawning a process clones the file descriptor table, and the child holds a copy of
/// every open file description until it execs, a writer's `flock` included; the kernel
/// lets the parent go on (and closes those copies) a moment later. So a writer closed
/// while another test of this binary spawns a process stays locked for that moment, and
/// reopening it at once can get `Locked`. Tests here run in parallel and spawn: opening
/// a writer they expect to get retries `Locked` a bounded number of times. (The tests
/// that expect `Locked` call `Ledger::open_writer` directly.)
fn open_writer(path: impl AsRef<Path>, options: &WriterOptions) -> revledger::Result<Ledger> {
    for _ in 0..100_000 {
        match Ledger::open_writer(path.as_ref(), options) {
            Err(Error::Locked(_)) => std::thread::yield_now(),
            other => return other,
        }
    }
    Ledger::open_writer(path, options)
}

fn spawn(c: &mut Command) -> std::process::Child {
    c.spawn().unwrap()
}

const CHILD_ENV: &str = "REVLEDGER_CRASH_CHILD";
const MAX_BATCH: u64 = 8;
/// A child stops on its own after this many calls, should its parent be gone.
const CHILD_MAX_OPS: u64 = 20_000;
/// Rounds on one ledger file before the next starts afresh.
const EPOCH: u64 = 200;

/// xorshift64*: small, seedable, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed_from_env() -> u64 {
    match std::env::var("REVLEDGER_CRASH_SEED") {
        Ok(s) => s.parse().expect("REVLEDGER_CRASH_SEED is a number"),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            (t.as_nanos() as u64) | 1
        }
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("p{i}").into_bytes()
}

/// Cutoffs far in the future: no rule ever expires, so the writer's background
/// compaction (on, with a small threshold) keeps every one of them.
fn cutoff(i: u64) -> i64 {
    4_000_000_000 + i as i64
}

/// The rules a ledger holds, if they are exactly rules 0..n of the sequence (each with
/// its own cutoff); otherwise a description of what is wrong.
fn prefix_len(l: &Ledger) -> Result<u64, String> {
    let mut seen = BTreeMap::new();
    let mut err = None;
    l.for_each_record(|off, r| match r {
        Record::Rule(r) => {
            // Keys are `p{i}`, or `p{i}` followed by filler bytes for large ones.
            let digits: Vec<u8> = r.key[1.min(r.key.len())..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            let i = match std::str::from_utf8(&digits)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(i) if r.key.first() == Some(&b'p') => i,
                _ => {
                    err = Some(format!("unknown key at {off}"));
                    return;
                }
            };
            if r.scope != Scope::Subject || r.tenant != b"t" || r.at != cutoff(i) {
                err = Some(format!("rule {i} altered: {r:?}"));
            }
            if seen.insert(i, off).is_some() {
                // The sequence never repeats a key: a duplicate is a replayed record.
                err = Some(format!("rule {i} twice"));
            }
        }
        Record::Config { .. } | Record::Position { .. } => {}
    })
    .map_err(|e| format!("listing records: {e}"))?;
    if let Some(e) = err {
        return Err(e);
    }
    let n = seen.len() as u64;
    match seen.keys().enumerate().find(|(pos, i)| *pos as u64 != **i) {
        Some((pos, i)) => Err(format!("not a prefix: rule {pos} missing, {i} present")),
        None => Ok(n),
    }
}

// ---------------------------------------------------------------------------------------
// kill -9

/// The child: appends, syncs and compacts until killed, printing `@c N` when rules up to
/// N are committed, `@s N` when a sync covering them returned, `@K`/`@k` around a
/// compaction and `@S` before a sync.
fn crash_child(path: &Path, start: u64, seed: u64) {
    // A small shared index and a low compaction threshold: the index grows and the
    // ledger compacts in the background often, so kills land inside those too.
    let options = WriterOptions {
        index_keys: 64,
        compaction: Some(revledger::CompactionPolicy {
            ratio: 0.5,
            min_records: 64,
        }),
        ..WriterOptions::with_lifetime(3600)
    };
    let w = open_writer(path, &options).unwrap();
    let mut rng = Rng(seed | 1);
    let mut next = start;
    println!("@open {next}");
    for _ in 0..CHILD_MAX_OPS {
        match rng.below(100) {
            0..=44 => {
                w.revoke(&Rule::new(Scope::Subject, b"t", &key(next), cutoff(next)))
                    .unwrap();
                println!("@c {next}");
                next += 1;
            }
            45..=79 => {
                let n = 2 + rng.below(MAX_BATCH - 1);
                let keys: Vec<Vec<u8>> = (next..next + n).map(key).collect();
                let rules: Vec<Rule> = keys
                    .iter()
                    .zip(next..)
                    .map(|(k, i)| Rule::new(Scope::Subject, b"t", k, cutoff(i)))
                    .collect();
                w.revoke_batch(&rules).unwrap();
                next += n;
                println!("@c {}", next - 1);
            }
            80..=94 => {
                println!("@S");
                w.sync().unwrap();
                if next > 0 {
                    println!("@s {}", next - 1);
                }
            }
            _ => {
                println!("@K");
                w.compact(0).unwrap();
                println!("@k");
            }
        }
    }
}

#[derive(Default)]
struct KillStats {
    rounds: u64,
    in_compaction: u64,
    in_sync: u64,
    in_append_or_open: u64,
    rules: u64,
    adopted: u64,
}

#[test]
fn kill_9_at_random_points_leaves_a_prefix_with_every_synced_rule() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let start = std::env::var("REVLEDGER_CRASH_START")
            .unwrap()
            .parse()
            .unwrap();
        let seed = std::env::var("REVLEDGER_CRASH_SEED")
            .unwrap()
            .parse()
            .unwrap();
        crash_child(Path::new(&path), start, seed);
        return;
    }
    let rounds: u64 = std::env::var("REVLEDGER_CRASH_ROUNDS")
        .map(|s| s.parse().expect("REVLEDGER_CRASH_ROUNDS is a number"))
        .unwrap_or(200);
    let seed = seed_from_env();
    println!("kill -9: {rounds} rounds, REVLEDGER_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut stats = KillStats::default();
    let mut path = dir.path().join("l");
    let mut have = 0u64; // rules 0..have are in the ledger
    for round in 0..rounds {
        if round > 0 && round % EPOCH == 0 {
            // A fresh ledger now and then: each round checks every rule, so a long run
            // on one file would be quadratic.
            stats.rules += have;
            path = dir.path().join(format!("l{round}"));
            have = 0;
        }
        let mut child = spawn(
            Command::new(&exe)
                .args([
                    "--exact",
                    "kill_9_at_random_points_leaves_a_prefix_with_every_synced_rule",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &path)
                .env("REVLEDGER_CRASH_START", have.to_string())
                .env("REVLEDGER_CRASH_SEED", rng.next().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        // Kill after a random number of reports (0: while it starts and recovers), after
        // a random extra spin, so that the kill lands anywhere in the child's work.
        let kill_after = match rng.below(10) {
            0 => 0,
            1..=5 => 1 + rng.below(30),
            _ => 1 + rng.below(250),
        };
        let mut line = String::new();
        while (lines.len() as u64) < kill_after {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            // The harness may print "test NAME ... " on the same line first.
            if let Some(at) = line.find('@') {
                lines.push(line.trim_end()[at + 1..].to_string());
            }
        }
        let spin = rng.below(200_000);
        let mut x = 0u64;
        for i in 0..spin {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child ended on its own"
        );
        // Everything it reported before dying is in the pipe.
        for l in out.lines() {
            let l = l.unwrap();
            if let Some(at) = l.find('@') {
                lines.push(l[at + 1..].to_string());
            }
        }
        let num = |p: &str| {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(p))
                .filter_map(|n| n.parse::<u64>().ok())
                .max()
        };
        let committed = num("c ").map_or(have, |n| n + 1).max(have);
        let synced = num("s ").map_or(0, |n| n + 1);
        match lines.last().map(String::as_str) {
            Some("K") => stats.in_compaction += 1,
            Some("S") => stats.in_sync += 1,
            _ => stats.in_append_or_open += 1,
        }
        if have == 0 && committed == 0 && !path.exists() {
            // Killed before it created the ledger: nothing was appended, nothing to find
            // (the creation's temporary file is all it may leave).
            stats.rounds += 1;
            continue;
        }
        // A reader first, as any gateway process would see the file right after the crash.
        let r = Ledger::open_reader(&path)
            .unwrap_or_else(|e| panic!("round {round}: reader after kill -9: {e}"));
        let n = prefix_len(&r).unwrap_or_else(|e| panic!("round {round}: reader: {e}"));
        // kill -9 loses no page: every committed rule is there, synced or not.
        assert!(
            n >= committed && n >= synced,
            "round {round}: reader sees {n} rules; {committed} were committed, {synced} synced"
        );
        assert!(
            n <= committed + MAX_BATCH,
            "round {round}: {n} rules, more than were ever appended ({committed} + a batch)"
        );
        drop(r);
        // Then the next writer: recovery may adopt frames written but not yet published.
        let w = open_writer(&path, &WriterOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: writer after kill -9: {e}"));
        let nw = prefix_len(&w).unwrap_or_else(|e| panic!("round {round}: writer: {e}"));
        assert!(
            nw >= n && nw <= committed + MAX_BATCH,
            "round {round}: writer sees {nw}, reader {n}, committed {committed}"
        );
        if nw > n {
            stats.adopted += 1;
        }
        let leftover = path.with_file_name(format!(
            ".{}.compacting",
            path.file_name().unwrap().to_string_lossy()
        ));
        assert!(
            !leftover.exists(),
            "round {round}: a crashed compaction's file was left behind"
        );
        drop(w);
        have = nw;
        stats.rounds += 1;
    }
    stats.rules += have;
    println!(
        "kill -9: {} rounds survived ({} during compaction, {} during sync, {} during appends \
         or recovery); {} rules appended, 0 lost; {} times the next writer adopted frames \
         written but not yet published",
        stats.rounds,
        stats.in_compaction,
        stats.in_sync,
        stats.in_append_or_open,
        stats.rules,
        stats.adopted
    );
    assert_eq!(stats.rounds, rounds);
    assert!(stats.rules > 0);
}

// ---------------------------------------------------------------------------------------
// Power loss

const SECTOR: usize = 512;

/// Random crash states drawn per crash point when there are too many to try them all
/// (`REVLEDGER_CRASH_SAMPLES`, default 64).
fn samples() -> u64 {
    std::env::var("REVLEDGER_CRASH_SAMPLES")
        .map(|s| s.parse().expect("REVLEDGER_CRASH_SAMPLES is a number"))
        .unwrap_or(64)
}

/// One write the disk may or may not have received: a sector's new content, or a new
/// file length.
#[derive(Clone, Debug)]
enum Pending {
    Sector { index: usize, bytes: Vec<u8> },
    Len(u64),
}

/// The file as the disk holds it (`durable`) and the writes since the last fdatasync, in
/// the order the ledger made them.
struct Disk {
    durable: Vec<u8>,
    pending: Vec<Pending>,
    /// The page-cache view after the last call (what `std::fs::read` returns).
    live: Vec<u8>,
}

impl Disk {
    fn new(image: Vec<u8>) -> Disk {
        Disk {
            durable: image.clone(),
            pending: Vec::new(),
            live: image,
        }
    }

    /// Everything written so far reached the disk.
    fn synced(&mut self, image: Vec<u8>) {
        self.durable = image.clone();
        self.pending.clear();
        self.live = image;
    }

    /// Records the writes that turned `live` into `image`, data before header words (the
    /// commit protocol: frames, then `committed_len`); checks that no published byte
    /// changed. `allowed` is the range of the file the call may write besides the header's
    /// dynamic words.
    fn wrote(&mut self, image: Vec<u8>, allowed: std::ops::Range<usize>, what: &str) {
        if image.len() != self.live.len() {
            assert!(image.len() > self.live.len(), "{what}: the file shrank");
            self.pending.push(Pending::Len(image.len() as u64));
        }
        let changed: Vec<usize> = (0..image.len())
            .filter(|&i| self.live.get(i).copied().unwrap_or(0) != image[i])
            .collect();
        for &i in &changed {
            let header_word = (128..152).contains(&i);
            assert!(
                header_word || allowed.contains(&i),
                "{what}: byte {i} changed outside {allowed:?} (published bytes are never \
                 overwritten)"
            );
        }
        let sectors = |header: bool| -> Vec<usize> {
            let mut s: Vec<usize> = changed
                .iter()
                .filter(|&&i| (128..152).contains(&i) == header)
                .map(|i| i / SECTOR)
                .collect();
            s.dedup();
            s
        };
        // Data sectors first, then the header sector (one sector may hold both: then it
        // appears twice, its data version without the new header word).
        let mut staged = self.live.clone();
        staged.resize(image.len(), 0);
        for s in sectors(false) {
            let r = s * SECTOR..((s + 1) * SECTOR).min(image.len());
            for i in r.clone() {
                if !(128..152).contains(&i) {
                    staged[i] = image[i];
                }
            }
            self.pending.push(Pending::Sector {
                index: s,
                bytes: staged[r].to_vec(),
            });
        }
        for s in sectors(true) {
            let r = s * SECTOR..((s + 1) * SECTOR).min(image.len());
            self.pending.push(Pending::Sector {
                index: s,
                bytes: image[r].to_vec(),
            });
        }
        self.live = image;
    }

    /// The file a crash leaves when exactly the pending writes in `chosen` reached the disk.
    fn state(&self, chosen: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut f = self.durable.clone();
        for (n, p) in self.pending.iter().enumerate() {
            if !chosen(n) {
                continue;
            }
            match p {
                Pending::Len(len) => f.resize(*len as usize, 0),
                Pending::Sector { index, bytes } => {
                    let at = index * SECTOR;
                    if f.len() < at + bytes.len() {
                        // Data past the durable length is readable only if the length
                        // reached the disk too; without it the write is lost.
                        continue;
                    }
                    f[at..at + bytes.len()].copy_from_slice(bytes);
                }
            }
        }
        f
    }
}

#[derive(Default, Debug)]
struct PowerStats {
    crash_points: u64,
    states: u64,
    in_order_prefix: u64,
    reordered_prefix: u64,
}

/// Writes `bytes` as a sparse file (zeros are holes, as preallocation leaves them).
fn materialize(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    f.write_all_at(&bytes[..end], 0).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
}

/// Opens one crash state every way and checks it. `synced`: rules whose sync returned
/// (durable), `appended`: rules appended so far. Returns whether it opened as Corrupt.
fn check_state(scratch: &Path, bytes: &[u8], synced: u64, appended: u64, what: &str) -> bool {
    let path = scratch.join("state");
    materialize(&path, bytes);
    let in_range = |n: u64, who: &str| {
        assert!(
            (synced..=appended).contains(&n),
            "{what}: {who} sees {n} rules; {synced} were synced, {appended} appended"
        )
    };
    let reader = Ledger::open_reader(&path);
    let reader_corrupt = match &reader {
        Ok(r) => {
            let n = prefix_len(r).unwrap_or_else(|e| panic!("{what}: reader: {e}"));
            in_range(n, "reader");
            false
        }
        Err(Error::Corrupt { .. }) => true,
        Err(e) => panic!("{what}: reader: {e}"),
    };
    drop(reader);
    match open_writer(&path, &WriterOptions::default()) {
        Ok(w) => {
            let n = prefix_len(&w).unwrap_or_else(|e| panic!("{what}: writer: {e}"));
            in_range(n, "writer");
            // Recovery leaves a clean log: one more append reads back after reopening.
            w.revoke(&Rule::new(Scope::Subject, b"t", &key(n), cutoff(n)))
                .unwrap();
            drop(w);
            let again = Ledger::open_reader(&path).unwrap();
            assert_eq!(
                prefix_len(&again),
                Ok(n + 1),
                "{what}: append after recovery"
            );
            assert!(
                !reader_corrupt,
                "{what}: the reader said Corrupt, the writer did not"
            );
            false
        }
        Err(Error::Corrupt { .. }) => {
            let keep = WriterOptions {
                keep_valid_prefix: true,
                ..WriterOptions::default()
            };
            let w = open_writer(&path, &keep)
                .unwrap_or_else(|e| panic!("{what}: keep_valid_prefix: {e}"));
            let n = prefix_len(&w).unwrap_or_else(|e| panic!("{what}: kept prefix: {e}"));
            in_range(n, "keep_valid_prefix");
            true
        }
        Err(e) => panic!("{what}: writer: {e}"),
    }
}

/// Every crash state at this point: in-order prefixes of the pending writes (each one
/// cut at every sector), and subsets in any order (all of them when few, else a sample).
fn check_crash_point(
    disk: &Disk,
    scratch: &Path,
    synced: u64,
    appended: u64,
    rng: &mut Rng,
    stats: &mut PowerStats,
    what: &str,
) {
    stats.crash_points += 1;
    let n = disk.pending.len();
    let cuts: Vec<usize> = if n <= 64 {
        (0..=n).collect()
    } else {
        let mut c: Vec<usize> = (0..samples())
            .map(|_| rng.below(n as u64) as usize)
            .collect();
        c.extend([0, n]);
        c
    };
    for m in cuts {
        let bytes = disk.state(|i| i < m);
        let corrupt = check_state(scratch, &bytes, synced, appended, what);
        assert!(
            !corrupt,
            "{what}: writes applied in order up to {m} of {n} opened as Corrupt"
        );
        stats.states += 1;
        stats.in_order_prefix += 1;
    }
    let subsets: Vec<u64> = if n <= 10 {
        (0..1u64 << n).collect()
    } else {
        (0..samples()).map(|_| rng.next()).collect()
    };
    for mask in subsets {
        let chosen = |i: usize| {
            if n <= 10 {
                mask >> i & 1 == 1
            } else {
                // A sample: each write kept with probability 1/2 (from the mask's bits,
                // reseeded per write).
                let mut r = Rng(mask ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
                r.next() & 1 == 1
            }
        };
        let bytes = disk.state(chosen);
        let corrupt = check_state(scratch, &bytes, synced, appended, what);
        stats.states += 1;
        // DESIGN.md §3: after any crash, a prefix with every synced rule, also when the
        // disk reordered the writes (never Corrupt until repaired).
        assert!(
            !corrupt,
            "{what}: writes applied out of order ({mask:#x}) opened as Corrupt"
        );
        stats.reordered_prefix += 1;
    }
}

#[test]
fn power_loss_states_open_to_a_prefix_with_every_synced_rule() {
    let seed = seed_from_env();
    println!("power loss: REVLEDGER_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let scratch_dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let scratch = scratch_dir.path();
    let read = || std::fs::read(&path).unwrap();
    let committed_len = |b: &[u8]| u64::from_le_bytes(b[128..136].try_into().unwrap()) as usize;
    let mut stats = PowerStats::default();

    // Creation is durable before the file appears (temporary file, fsync, link).
    let mut w = open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
    let mut disk = Disk::new(read());
    let (mut appended, mut synced) = (0u64, 0u64);
    let big = |i: u64| [key(i), vec![b'x'; 3000]].concat();
    #[derive(Debug)]
    enum Op {
        One,
        Batch(u64),
        Big(u64),
        Sync,
        Reopen,
        Compact,
    }
    let mut script = vec![
        Op::One,
        Op::One,
        Op::Batch(3),
        Op::Sync,
        Op::One,
        Op::Batch(5),
    ];
    script.extend([Op::Sync, Op::One, Op::Reopen, Op::Batch(2), Op::One]);
    // Past the first MiB: the file grows (a new length that may not reach the disk).
    script.extend([
        Op::Sync,
        Op::Big(200),
        Op::Big(200),
        Op::One,
        Op::Sync,
        Op::One,
    ]);
    script.extend([
        Op::Compact,
        Op::One,
        Op::Batch(4),
        Op::Sync,
        Op::One,
        Op::One,
    ]);
    for (step, op) in script.iter().enumerate() {
        let what = format!("step {step} ({op:?})");
        let before = read();
        let from = committed_len(&before);
        match op {
            Op::One => {
                w.revoke(&Rule::new(
                    Scope::Subject,
                    b"t",
                    &key(appended),
                    cutoff(appended),
                ))
                .unwrap();
                appended += 1;
            }
            Op::Batch(n) | Op::Big(n) => {
                let keys: Vec<Vec<u8>> = (appended..appended + n)
                    .map(|i| {
                        if matches!(op, Op::Big(_)) {
                            big(i)
                        } else {
                            key(i)
                        }
                    })
                    .collect();
                let rules: Vec<Rule> = keys
                    .iter()
                    .zip(appended..)
                    .map(|(k, i)| Rule::new(Scope::Subject, b"t", k, cutoff(i)))
                    .collect();
                w.revoke_batch(&rules).unwrap();
                appended += n;
            }
            Op::Sync => {
                w.sync().unwrap();
                // fdatasync made everything before it durable; the synced_len store
                // after it is pending until the next one.
                disk.synced(before.clone());
                synced = appended;
            }
            Op::Reopen => {
                drop(w);
                w = open_writer(&path, &WriterOptions::default()).unwrap();
                disk.synced(read());
                synced = appended;
            }
            Op::Compact => {
                // The new file is complete and durable before it is renamed into place:
                // a crash leaves the old file (checked at the step before) or this one.
                w.compact(0).unwrap();
                disk.synced(read());
                synced = appended;
            }
        }
        let after = read();
        if !matches!(op, Op::Reopen | Op::Compact) {
            let to = committed_len(&after).max(from);
            disk.wrote(after, from..to, &what);
        }
        // Big keys make the prefix check slow: check every state only at small steps.
        if !matches!(op, Op::Big(_)) {
            check_crash_point(
                &disk, scratch, synced, appended, &mut rng, &mut stats, &what,
            );
        }
    }
    // The model is the real file: its live image is what the ledger wrote.
    assert_eq!(
        disk.live,
        read(),
        "the recorded writes do not rebuild the file"
    );
    // In-order loss (what ordered write-back gives) and reordered loss (a hole before a
    // frame that reached the disk) both open to a prefix with every synced rule.
    println!(
        "power loss: {} crash points, {} states checked: {} in-order and {} reordered \
         states, every one opened to a prefix with every synced rule",
        stats.crash_points, stats.states, stats.in_order_prefix, stats.reordered_prefix,
    );
    assert!(stats.states > 100, "{stats:?}");
}

// ---------------------------------------------------------------------------------------
// Readers that stay open across a writer's recovery

fn subject_token(name: &[u8]) -> revledger::Token<'_> {
    revledger::Token {
        tenant: b"t",
        subject: name,
        issued_at: 0,
        ..revledger::Token::default()
    }
}

#[test]
fn a_reader_open_on_a_torn_tail_sees_what_the_recovered_writer_appends() {
    // Found by fuzzing (open_file): a reader that opened a file whose committed length
    // covered a torn record (as a power loss can leave it) took that length as seen; a
    // writer then cut the tail and appended records up to the same length, and the
    // reader's next checks answered "valid" for them.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let rule = |k: &'static [u8]| Rule::new(Scope::Subject, b"t", k, 1000);
    let torn_at = {
        let w = open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        w.revoke(&rule(b"a")).unwrap();
        w.sync().unwrap();
        let b = std::fs::read(&path).unwrap();
        let at = u64::from_le_bytes(b[128..136].try_into().unwrap());
        w.revoke(&rule(b"b")).unwrap();
        at
    };
    // The power loss: the second record's payload never reached the disk, the header did;
    // only the first record was synced.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0; 16], torn_at + 16).unwrap();
    f.write_all_at(&torn_at.to_le_bytes(), 136).unwrap();
    drop(f);
    let r = Ledger::open_reader(&path).unwrap();
    assert!(r.check(&subject_token(b"a")).unwrap().is_revoked());
    assert!(!r.check(&subject_token(b"b")).unwrap().is_revoked());
    // The writer cuts the torn record and appends one of the same size: the committed
    // length is back where the reader saw it.
    let w = open_writer(&path, &WriterOptions::default()).unwrap();
    assert!(w.stats(0).unwrap().dropped_bytes > 0);
    w.revoke(&rule(b"c")).unwrap();
    assert!(
        r.check(&subject_token(b"c")).unwrap().is_revoked(),
        "the reader missed a record appended after the writer's recovery"
    );
    assert!(!r.check(&subject_token(b"b")).unwrap().is_revoked());
}

#[test]
fn a_reader_fails_closed_when_the_log_is_cut_below_what_it_read() {
    // A writer that keeps the valid prefix cuts the log below records a running reader
    // already applied (they were damaged after the reader read them): that reader cannot
    // follow the new log, and says so instead of missing the writer's next records.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut frames = Vec::new();
    {
        let w = open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        for k in [&b"a"[..], b"b", b"c"] {
            w.revoke(&Rule::new(Scope::Subject, b"t", k, 1000)).unwrap();
        }
        w.for_each_record(|off, _| frames.push(off)).unwrap();
    }
    let r = Ledger::open_reader(&path).unwrap();
    assert!(r.check(&subject_token(b"c")).unwrap().is_revoked());
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xEE], frames[1] + 12).unwrap();
    drop(f);
    let keep = WriterOptions {
        keep_valid_prefix: true,
        ..WriterOptions::default()
    };
    let w = open_writer(&path, &keep).unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"new", 1000))
        .unwrap();
    // A reader on the shared index follows the writer's rebuilt index (the cut records
    // are gone from it); a reader on its own tail cannot follow and fails closed.
    match r.check(&subject_token(b"new")) {
        Err(Error::Corrupt { .. }) => {}
        Ok(v) => {
            assert!(v.is_revoked(), "a reader missed the writer's next record");
            assert!(!r.check(&subject_token(b"c")).unwrap().is_revoked());
        }
        other => panic!("a reader whose log was cut below its index answered {other:?}"),
    }
    let again = Ledger::open_reader(&path).unwrap();
    assert!(again.check(&subject_token(b"new")).unwrap().is_revoked());
    assert!(!again.check(&subject_token(b"c")).unwrap().is_revoked());
}
