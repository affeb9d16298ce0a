//! Faults of the file system and of other processes (issue 6, docs/RELIABILITY.md §4–5):
//! disk full, read-only file system and directory, permission denied, the ledger file
//! deleted, replaced or truncated under a handle, file modes, and the rule that revledger
//! never truncates a ledger. Each fault gets a clear error, never a "valid" answer by
//! default, and loses no committed rule.
//!
//! Some faults need root (mounting a small tmpfs) or another user (permissions, since root
//! ignores them): as root, the test mounts or runs a child as `nobody`; otherwise it
//! uses an equivalent (a file size limit, `chmod` for the current user). Each variant
//! says which it ran.

use revledger::header::OFF_RETIRED;
use revledger::{Error, Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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
    // A copied executable can be "busy" for a moment: another test's fork, made while the
    // copy was open for writing, holds a writable descriptor until that child execs.
    for _ in 0..1000 {
        match c.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::yield_now(),
            other => return other.unwrap(),
        }
    }
    c.spawn().unwrap()
}

const CHILD_ENV: &str = "REVLEDGER_FAULT_CHILD";
const NOBODY: u32 = 65534;

fn writer(path: &Path) -> Ledger {
    open_writer(path, &WriterOptions::with_lifetime(3600)).unwrap()
}

fn subject(name: &[u8], iat: i64) -> Token<'_> {
    Token {
        tenant: b"t",
        subject: name,
        issued_at: iat,
        ..Token::default()
    }
}

fn revoked(l: &Ledger, name: &[u8]) -> bool {
    l.check(&subject(name, 0)).unwrap().is_revoked()
}

fn euid_is_root() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid() == 0
}

/// Every rule the ledger at `path` holds, as (scope, tenant, key) → cutoff.
fn contents(path: &Path) -> HashMap<(Scope, Vec<u8>, Vec<u8>), i64> {
    let l = Ledger::open_reader(path).unwrap();
    let mut m = HashMap::new();
    l.for_each_record(|_, r| {
        if let revledger::record::Record::Rule(r) = r {
            let e = m
                .entry((r.scope, r.tenant.to_vec(), r.key.to_vec()))
                .or_insert(i64::MIN);
            *e = (*e).max(r.at);
        }
    })
    .unwrap();
    m
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let mut c = Command::new("mount");
        c.args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(dir.path());
        run_quiet(&mut c).then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let mut c = Command::new("mount");
        c.args(["-o", &format!("remount,{opts}")]).arg(self.path());
        assert!(run_quiet(&mut c), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: detaches even while something still has a file open there.
        run_quiet(Command::new("umount").arg("-l").arg(self.dir.path()));
    }
}

/// Re-runs this test binary as a child executing `test` with `CHILD_ENV=role` and `arg`.
fn child(test: &str, role: &str, arg: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, role)
        .env("REVLEDGER_FAULT_ARG", arg);
    c
}

/// [`child`] run as `nobody`. The test binary may live where `nobody` cannot reach it (a
/// clone in a 0700 home directory): it is copied into a directory of its own that anyone
/// may enter, which the caller keeps until the child is done: a hard link when the
/// directory is on the same file system (no copy of a large binary), else a copy.
fn child_as_nobody(test: &str, role: &str, arg: &Path) -> (Command, tempfile::TempDir) {
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("faults-test");
    let me = std::env::current_exe().unwrap();
    if std::fs::hard_link(&me, &exe).is_err() {
        std::fs::copy(&me, &exe)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", me.display(), exe.display()));
    }
    // The test binary is 0755 already; a copy keeps its mode, a link shares it.
    let mode = std::fs::metadata(&exe).unwrap().permissions().mode();
    assert!(
        mode & 0o005 == 0o005,
        "{} is not executable by others ({mode:o})",
        exe.display()
    );
    let mut c = Command::new(&exe);
    c.args(["--exact", test, "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, role)
        .env("REVLEDGER_FAULT_ARG", arg)
        .uid(NOBODY)
        .gid(NOBODY);
    (c, exe_dir)
}

fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var(CHILD_ENV).ok()?;
    let arg = std::env::var_os("REVLEDGER_FAULT_ARG")?;
    Some((role, PathBuf::from(arg)))
}

/// Runs `c` to its end, output discarded; whether it succeeded.
fn run_quiet(c: &mut Command) -> bool {
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn()
        .and_then(|mut k| k.wait())
        .is_ok_and(|s| s.success())
}

fn run_ok(mut c: Command, what: &str) -> String {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = spawn(&mut c).wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "{what} ran no test (filtered out?):\n{text}"
    );
    text
}

// ---------------------------------------------------------------------------------------
// Disk full

/// Appends batches of large rules until the file system refuses, then checks that every
/// committed batch is there, the refused one is not (not even in part, not even after a
/// writer reopens the file and recovers), and that the ledger works again once space is
/// freed. Returns the number of rules committed.
fn fill_until_full(dir: &Path, free: Option<&dyn Fn()>) -> usize {
    let path = dir.join("l");
    let w = writer(&path);
    let r = Ledger::open_reader(&path).unwrap();
    let key = |i: usize| format!("{i:06}-{}", "k".repeat(4000)).into_bytes();
    let mut committed = 0;
    let mut failed_batch = None;
    for batch in 0..10_000 {
        let keys: Vec<Vec<u8>> = (0..16).map(|j| key(batch * 16 + j)).collect();
        let rules: Vec<Rule> = keys
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, 1000))
            .collect();
        match w.revoke_batch(&rules) {
            Ok(()) => committed += 16,
            Err(e) => {
                assert!(matches!(e, Error::Io { .. }), "not an I/O error: {e:?}");
                let msg = e.to_string();
                assert!(
                    msg.contains("appending to") || msg.contains("growing"),
                    "unclear error: {msg}"
                );
                failed_batch = Some(keys);
                break;
            }
        }
    }
    let failed = failed_batch.expect("the file system never filled up");
    assert!(committed > 0, "nothing fit at all");
    // A sync after the failure: nothing committed is lost.
    w.sync().unwrap();
    for i in (0..committed).step_by(7).chain([committed - 1]) {
        assert!(revoked(&w, &key(i)), "committed rule {i} lost (writer)");
        assert!(revoked(&r, &key(i)), "committed rule {i} lost (reader)");
    }
    for k in &failed {
        assert!(!revoked(&w, k), "a rule of the refused batch is visible");
        assert!(
            !revoked(&r, k),
            "a rule of the refused batch reached a reader"
        );
    }
    drop(w);
    // Recovery scans past the committed end: the refused batch must not come back.
    let w = writer(&path);
    let all = contents(&path);
    assert_eq!(all.len(), committed, "rules after reopening");
    for k in &failed {
        assert!(
            !revoked(&w, k),
            "a rule of the refused batch came back after reopening"
        );
    }
    // Space freed: the ledger takes revokes again, and compaction works.
    let Some(free) = free else {
        return committed;
    };
    free();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"after", 1000))
        .unwrap();
    w.sync().unwrap();
    assert!(revoked(&r, b"after"));
    w.compact(0).unwrap();
    assert!(revoked(&r, b"after") && revoked(&r, &key(0)));
    committed
}

#[test]
fn disk_full_loses_no_committed_rule_and_refused_batches_never_come_back() {
    if let Some((role, dir)) = child_role() {
        if role == "fsize" {
            // Under RLIMIT_FSIZE (set by the parent, SIGXFSZ ignored): writes past the
            // limit fail with EFBIG, as a full disk fails with ENOSPC.
            let n = fill_until_full(&dir, None);
            println!("fsize limit: {n} rules committed before the limit");
        }
        return;
    }
    if euid_is_root() {
        if let Some(fs) = Tmpfs::mount("6m") {
            // A filler file takes 4 MiB; deleting it makes room for a compaction.
            let filler = fs.path().join("filler");
            std::fs::write(&filler, vec![1u8; 4 << 20]).unwrap();
            let free = || std::fs::remove_file(&filler).unwrap();
            let n = fill_until_full(fs.path(), Some(&free));
            println!("tmpfs (ENOSPC): {n} rules committed before the disk filled");
            return;
        }
    }
    // Not root, or no mount allowed: the same scenario under a file size limit.
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            "disk_full_loses_no_committed_rule_and_refused_batches_never_come_back",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "fsize")
        .env("REVLEDGER_FAULT_ARG", dir.path());
    let text = run_ok(c, "disk-full child under a file size limit");
    assert!(text.contains("rules committed before the limit"), "{text}");
    println!("no tmpfs mount (not root): ran under RLIMIT_FSIZE instead");
}

// ---------------------------------------------------------------------------------------
// Read-only file system, read-only directory, permission denied

#[test]
fn read_only_file_system_refuses_the_writer_and_keeps_answering_readers() {
    let Some(fs) = euid_is_root().then(|| Tmpfs::mount("8m")).flatten() else {
        println!("SKIPPED read-only mount: needs root to mount a tmpfs (the read-only directory and permission tests cover the rest)");
        return;
    };
    let path = fs.path().join("l");
    {
        let w = writer(&path);
        w.revoke(&Rule::new(Scope::Subject, b"t", b"kept", 1000))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    fs.remount("ro");
    let r = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&r, b"kept"));
    match open_writer(&path, &WriterOptions::default()).map(|_| ()) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(30), "EROFS expected: {source}")
        }
        other => panic!("writer on a read-only file system: {other:?}"),
    }
    match open_writer(fs.path().join("new"), &WriterOptions::default()).map(|_| ()) {
        Err(Error::Io { .. }) => {}
        other => panic!("creating on a read-only file system: {other:?}"),
    }
    assert!(revoked(&r, b"kept"));
    drop(r);
    fs.remount("rw");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
}

/// Runs as `nobody` (or as the current non-root user): a writer in a directory it cannot
/// write. Appends work (the file is writable), compaction and creation fail clearly.
fn read_only_dir_scenario(dir: &Path) {
    let path = dir.join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"during", 1000))
        .unwrap();
    w.sync().unwrap();
    match w.compact(0) {
        Err(Error::Io { context, source }) => {
            assert!(context.contains("compacting"), "unclear: {context}");
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
        }
        other => panic!("compaction in a read-only directory: {other:?}"),
    }
    assert!(revoked(&w, b"during") && revoked(&w, b"before"));
    w.revoke(&Rule::new(
        Scope::Subject,
        b"t",
        b"after-failed-compaction",
        1000,
    ))
    .unwrap();
    match open_writer(dir.join("new"), &WriterOptions::default()).map(|_| ()) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied)
        }
        other => panic!("creating in a read-only directory: {other:?}"),
    }
}

/// Runs as `nobody` (or a non-root user): a ledger it has no permission on.
fn permission_denied_scenario(path: &Path) {
    for open in [
        Ledger::open_reader(path).map(|_| ()),
        open_writer(path, &WriterOptions::default()).map(|_| ()),
    ] {
        match open {
            Err(Error::Io { source, context }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
                assert!(context.contains(&path.display().to_string()), "{context}");
            }
            other => panic!("open without permission: {other:?}"),
        }
    }
}

#[test]
fn read_only_directory_and_permission_denied() {
    if let Some((role, arg)) = child_role() {
        match role.as_str() {
            "ro-dir" => read_only_dir_scenario(&arg),
            "denied" => permission_denied_scenario(&arg),
            _ => {}
        }
        return;
    }
    let root = euid_is_root();
    // Read-only directory holding a ledger its writer may write.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("l");
    {
        let w = writer(&path);
        w.revoke(&Rule::new(Scope::Subject, b"t", b"before", 1000))
            .unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    if root {
        // Root ignores permissions: the scenario runs as nobody, who owns the file.
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        let (c, _exe) = child_as_nobody(
            "read_only_directory_and_permission_denied",
            "ro-dir",
            dir.path(),
        );
        run_ok(c, "read-only directory scenario as nobody");
    } else {
        read_only_dir_scenario(dir.path());
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let all = contents(&path);
    for k in ["before", "during", "after-failed-compaction"] {
        assert!(
            all.contains_key(&(Scope::Subject, b"t".to_vec(), k.as_bytes().to_vec())),
            "{k} lost"
        );
    }
    assert!(!dir.path().join(".l.compacting").exists());

    // Permission denied: a ledger owned by someone else, mode 0600.
    let before = std::fs::read(&path).unwrap();
    if root {
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        let (c, _exe) =
            child_as_nobody("read_only_directory_and_permission_denied", "denied", &path);
        run_ok(c, "permission denied scenario as nobody");
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        permission_denied_scenario(&path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refused open changed the file"
    );
}

// ---------------------------------------------------------------------------------------
// The file deleted, replaced or truncated under a handle

/// Checks `l` about `name` until an error comes, at most `limit` times, waiting `pause`
/// after each check; then checks that every later check fails too. Returns the number of
/// checks and the error. Never a verdict that says "valid" for a token the ledger
/// revoked.
fn checks_until_error(
    l: &Ledger,
    name: &[u8],
    limit: usize,
    pause: std::time::Duration,
) -> (usize, Error) {
    for n in 1..=limit {
        match l.check(&subject(name, 0)) {
            Ok(v) => assert!(v.is_revoked(), "valid for a revoked token: {v:?}"),
            Err(e) => {
                for _ in 0..10 {
                    assert!(l.check(&subject(name, 0)).is_err(), "error not sticky");
                }
                return (n, e);
            }
        }
        std::thread::sleep(pause);
    }
    panic!("no error in {limit} checks, {pause:?} apart");
}

/// Checks `name` (revoked) once a millisecond until `l` fails: far fewer checks than the
/// countdown's [`revledger::PATH_CHECK_EVERY`] prove that the kernel's notice, not the
/// countdown, told the reader.
fn checks_until_notice(l: &Ledger, name: &[u8]) -> (usize, Error) {
    let limit = revledger::PATH_CHECK_EVERY as usize / 2;
    checks_until_error(l, name, limit, std::time::Duration::from_millis(1))
}

#[test]
fn readers_learn_of_a_deleted_or_replaced_ledger_from_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    let deleted = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&deleted, b"x"));
    std::fs::remove_file(&path).unwrap();
    let (n, e) = checks_until_notice(&deleted, b"x");
    assert!(matches!(e, Error::Io { .. }), "after {n} checks: {e:?}");
    drop(w);

    // Replaced: another ledger renamed over the path.
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    let replaced = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&replaced, b"x"));
    let other = dir.path().join("other");
    writer(&other)
        .revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    std::fs::rename(&other, &path).unwrap();
    let (n, e) = checks_until_notice(&replaced, b"x");
    assert!(matches!(e, Error::Io { .. }), "after {n} checks: {e:?}");
}

#[test]
fn a_compaction_s_rename_is_followed_not_taken_for_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    let r = Ledger::open_reader(&path).unwrap();
    for round in 0..20 {
        w.compact(0).unwrap();
        assert!(revoked(&r, b"x"), "round {round}");
        r.refresh().unwrap();
    }
}

#[test]
fn deleted_ledger_fails_closed_in_readers_and_the_writer_learns_at_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    let r1 = Ledger::open_reader(&path).unwrap();
    let r2 = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&r1, b"x") && revoked(&r2, b"x"));
    std::fs::remove_file(&path).unwrap();

    // Explicit refresh notices at once.
    match r1.refresh() {
        Err(Error::Io { source, context }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(context.contains("deleted"), "{context}");
        }
        other => panic!("refresh after deletion: {other:?}"),
    }
    assert!(r1.check(&subject(b"x", 0)).is_err());
    // Checks alone notice within one period of the thread's countdown.
    let (_, e) = checks_until_error(
        &r2,
        b"x",
        revledger::PATH_CHECK_EVERY as usize + 1,
        std::time::Duration::ZERO,
    );
    assert!(matches!(e, Error::Io { .. }), "{e:?}");

    // The writer: its sync fails, and so does everything after.
    assert!(matches!(w.sync(), Err(Error::Io { .. })));
    assert!(w
        .revoke(&Rule::new(Scope::Subject, b"t", b"y", 1000))
        .is_err());
    // A new writer may create a new ledger at the path: old readers never answer from it.
    drop(w);
    let w2 = writer(&path);
    w2.revoke(&Rule::new(Scope::Subject, b"t", b"new", 1000))
        .unwrap();
    assert!(r1.check(&subject(b"new", 0)).is_err());
    let r3 = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&r3, b"new"));
}

#[test]
fn replaced_ledger_fails_closed_unless_it_is_the_same_ledger_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let other = dir.path().join("other");
    {
        let w = writer(&path);
        w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
            .unwrap();
        let o = writer(&other);
        o.revoke(&Rule::new(Scope::Subject, b"t", b"o", 1000))
            .unwrap();
    }
    // Replaced by another ledger (another seed).
    let r = Ledger::open_reader(&path).unwrap();
    std::fs::rename(&other, &path).unwrap();
    match r.refresh() {
        Err(Error::Io { context, .. }) => assert!(context.contains("replaced"), "{context}"),
        other => panic!("refresh after replacement: {other:?}"),
    }
    assert!(r.check(&subject(b"x", 0)).is_err());
    assert!(r.check(&subject(b"o", 0)).is_err());

    // Replaced by a copy of itself (same seed, same generation): a restore, not a
    // compaction: fail closed too.
    let r = Ledger::open_reader(&path).unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::rename(&copy, &path).unwrap();
    assert!(matches!(r.refresh(), Err(Error::Io { .. })));

    // Replaced by its own compaction before the writer marked the old file retired (the
    // window between rename and mark): the reader follows, no error, no wrong answer.
    let r = Ledger::open_reader(&path).unwrap();
    let old_name = dir.path().join("old");
    std::fs::hard_link(&path, &old_name).unwrap();
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"y", 1000))
        .unwrap();
    w.compact(0).unwrap();
    // Take the mark off the old file, as if the reader looked before the writer set it.
    let old = OpenOptions::new().write(true).open(&old_name).unwrap();
    old.write_all_at(&0u64.to_le_bytes(), OFF_RETIRED as u64)
        .unwrap();
    drop(old);
    r.refresh().unwrap();
    assert!(revoked(&r, b"o") && revoked(&r, b"y"));
    assert!(!revoked(&r, b"x"), "x was never in this ledger");
    assert_eq!(r.stats(0).unwrap().generation, 1);
}

#[test]
fn a_retired_mark_on_the_file_at_the_path_fails_closed_and_a_writer_clears_it() {
    // Found by fuzzing (open_file): a copy of a retired file put back at the path made a
    // reader reopen the same file forever and a writer fail with Internal.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    {
        let w = writer(&path);
        w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
            .unwrap();
    }
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&1u64.to_le_bytes(), OFF_RETIRED as u64)
        .unwrap();
    drop(f);
    let r = Ledger::open_reader(&path).unwrap();
    match r.check(&subject(b"x", 0)) {
        Err(Error::Corrupt { offset, .. }) if offset == OFF_RETIRED as u64 => {}
        other => panic!("check on a file marked retired at its path: {other:?}"),
    }
    let w = writer(&path);
    assert!(revoked(&w, b"x"));
    let mut n = 0;
    w.for_each_record(|_, _| n += 1).unwrap();
    assert_eq!(n, 1);
    // The mark is gone: the reader answers again.
    assert!(revoked(&r, b"x"));
}

/// The `open_file` fuzz target's body and its reference model (fuzz/src/), so that the
/// regressions replay with the fuzzer's own fix-ups and oracles.
#[path = "../fuzz/src/model.rs"]
#[allow(dead_code)]
mod model;
#[path = "../fuzz/src/open_file.rs"]
#[allow(dead_code)]
mod open_file;

#[test]
fn fuzz_regressions_open_without_panic() {
    // Every input kept in tests/fuzz-regressions/ (an `open_file` fuzz input: a mode
    // byte, the ledger file, its index file; fuzz/src/open_file.rs) runs through the fuzz
    // target's body: readers and writers open it to an answer or a clear error, answers
    // match the records when no crafted index is trusted, a revoke after recovery is
    // seen, compaction changes no answer.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let input = std::fs::read(entry.path()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let run = std::panic::catch_unwind(|| open_file::run(&input, tmp.path()));
        assert!(run.is_ok(), "{} failed", entry.path().display());
        n += 1;
    }
    assert!(n > 0, "no regression inputs found");
}

/// The files of the regression input `tests/fuzz-regressions/<name>`, as the fuzz target
/// prepares them, in a new temporary directory: the directory and the ledger's path.
fn regression_files(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let input = std::fs::read(dir.join(name)).unwrap();
    let input = open_file::Input::parse(&input).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = open_file::prepare(&input, tmp.path());
    (tmp, path)
}

/// A trusted index is a shared file: its key counters may say anything. Growing it once
/// sized the new table from them: a crafted count asked `fallocate` for 384 GiB, which
/// took every free block of the file system for a moment (other processes saw ENOSPC)
/// before it failed. The table cannot hold more keys than its slots, and growth sizes
/// from at most that.
#[test]
fn a_crafted_key_count_never_sizes_a_huge_index() {
    let (_tmp, path) = regression_files("open_file-v2-trusted-index-key-counts-overflow");
    let options = WriterOptions {
        index_keys: 64,
        ..WriterOptions::default()
    };
    let w = open_writer(&path, &options).unwrap();
    // The crafted counts say the table is past due: the revoke starts a growth. Its
    // slots do not hold their records' tags, so the growth builds the new index from the
    // log instead of copying them (until 476c3b5 it copied them and then failed closed
    // on the index's crafted stream position).
    let now = revledger::unix_now_floor();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"after", now))
        .unwrap();
    w.wait_background()
        .expect("the growth of the crafted index");
    let token = revledger::Token {
        tenant: b"t",
        subject: b"after",
        roles: &[],
        client: b"",
        session: b"",
        token_id: b"",
        issued_at: now - 1,
    };
    let verdict = w.check(&token);
    assert!(
        matches!(verdict, Ok(revledger::Verdict::Revoked { .. })),
        "{verdict:?}"
    );
    drop(w);
    // Other tests of this file allocate a few MiB at most.
    let largest = revledger::testing::largest_allocation();
    assert!(largest <= 64 << 20, "fallocate of {largest} bytes");
}

/// Issue 12: a version 1 snapshot whose descriptor for a keyed scope keeps its buckets
/// but says `entries = 0` and `filter_words = 0`, with every checksum fixed up, made
/// `revledger check` panic. A writer upgrading it gets `Corrupt`; readers refuse
/// version 1 files.
#[test]
fn a_crafted_version_1_snapshot_is_corrupt_never_a_panic() {
    let (_tmp, path) = regression_files("open_file-v1-snapshot-descriptor-disowns-its-keys");
    assert!(matches!(
        Ledger::open_reader(&path),
        Err(Error::Incompatible(_))
    ));
    match open_writer(&path, &WriterOptions::default()) {
        Err(Error::Corrupt { reason, .. }) => {
            assert!(reason.contains("descriptor says 0"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The file is left as it was: the upgrade did not happen.
    assert!(matches!(
        Ledger::open_reader(&path),
        Err(Error::Incompatible(_))
    ));
}

#[test]
fn truncated_under_a_reader_is_noticed_before_any_mapped_byte_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    for i in 0..100 {
        w.revoke(&Rule::new(
            Scope::Subject,
            b"t",
            format!("u{i}").as_bytes(),
            1000,
        ))
        .unwrap();
    }
    drop(w);
    let r = Ledger::open_reader(&path).unwrap();
    assert!(revoked(&r, b"u7"));
    // Another process (here: another open file description) truncates the file to less
    // than the header: reading the mapping now would be SIGBUS.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    match r.refresh() {
        Err(Error::Corrupt { reason, offset }) => {
            assert_eq!(offset, 100);
            assert!(reason.contains("truncated by another process"), "{reason}");
        }
        other => panic!("refresh after truncation: {other:?}"),
    }
    // Every later call fails without touching the mapping (a SIGBUS would kill the test).
    for _ in 0..5 {
        assert!(r.check(&subject(b"u7", 0)).is_err());
        assert!(r.stats(0).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// revledger never truncates a ledger, and creates its files 0600

/// Size of every inode seen at `path` so far; panics if one ever shrinks.
#[derive(Default)]
struct SizeWatch(HashMap<u64, u64>);

impl SizeWatch {
    fn look(&mut self, path: &Path, step: &str) {
        let m = std::fs::metadata(path).unwrap();
        let prev = self.0.entry(m.ino()).or_insert(0);
        assert!(
            m.len() >= *prev,
            "{step}: inode {} shrank from {prev} to {}",
            m.ino(),
            m.len()
        );
        *prev = m.len();
    }
}

#[test]
fn revledger_never_truncates_a_ledger_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let mut sizes = SizeWatch::default();
    let w = writer(&path);
    sizes.look(&path, "create");
    let big = vec![b'k'; 4000];
    for i in 0..400u32 {
        let key = [&i.to_le_bytes()[..], &big].concat();
        w.revoke(&Rule::new(Scope::Role, b"t", &key, 1000)).unwrap();
        sizes.look(&path, "append and grow");
    }
    w.sync().unwrap();
    drop(w);
    sizes.look(&path, "close");
    // A torn tail (garbage past the committed end): recovery zeroes it, never cuts it.
    let len = std::fs::metadata(&path).unwrap().len();
    let committed = {
        let b = std::fs::read(&path).unwrap();
        u64::from_le_bytes(b[128..136].try_into().unwrap())
    };
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xAB; 100], committed).unwrap();
    drop(f);
    let w = writer(&path);
    assert!(w.stats(0).unwrap().dropped_bytes > 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    sizes.look(&path, "torn tail recovery");
    // Damage in the middle, cut with keep_valid_prefix: zeroed, not truncated.
    drop(w);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xCD; 8], 256 + 8).unwrap();
    drop(f);
    let w = open_writer(
        &path,
        &WriterOptions {
            keep_valid_prefix: true,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    sizes.look(&path, "keep_valid_prefix");
    // Compaction: a new inode; the old one keeps its size (readers may map it).
    let old = Ledger::open_reader(&path).unwrap();
    let old_ino = std::fs::metadata(&path).unwrap().ino();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    w.compact(0).unwrap();
    sizes.look(&path, "compaction");
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_ino);
    assert!(revoked(&old, b"x"));
    for i in 0..100 {
        w.revoke(&Rule::new(
            Scope::Subject,
            b"t",
            format!("{i}").as_bytes(),
            1,
        ))
        .unwrap();
        sizes.look(&path, "append after compaction");
    }
    assert_eq!(sizes.0.len(), 2, "inodes seen");
}

#[test]
fn ledger_files_are_created_0600_and_compaction_keeps_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    w.compact(0).unwrap();
    assert_eq!(mode(&path), 0o600, "after compaction");
    // An operator who opens the file to a group keeps that choice across compactions.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    w.compact(0).unwrap();
    assert_eq!(mode(&path), 0o640, "an explicit mode survives compaction");
    // No other file is left in the directory but the ledger's index, which has the
    // ledger's mode.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec![".l.g2.index".to_string(), "l".to_string()]);
    assert_eq!(mode(&dir.path().join(".l.g2.index")), 0o640);
}

#[test]
fn the_lock_holds_across_processes_and_paths() {
    if let Some((role, path)) = child_role() {
        if role == "hold-lock" {
            // Holds the writer lock until its stdin closes.
            let w = writer(&path);
            w.revoke(&Rule::new(Scope::Subject, b"t", b"child", 1000))
                .unwrap();
            println!("LOCKED");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    drop(writer(&path));
    let link = dir.path().join("symlink");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let hard = dir.path().join("hardlink");
    std::fs::hard_link(&path, &hard).unwrap();
    let mut c = child(
        "the_lock_holds_across_processes_and_paths",
        "hold-lock",
        &link,
    );
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut kid = spawn(&mut c);
    let mut out = BufReader::new(kid.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("LOCKED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    for p in [&path, &link, &hard] {
        assert!(
            matches!(
                Ledger::open_writer(p, &WriterOptions::default()),
                Err(Error::Locked(_))
            ),
            "second writer through {} not locked out",
            p.display()
        );
    }
    // Readers are never blocked by the writer.
    let r = Ledger::open_reader(&hard).unwrap();
    assert!(revoked(&r, b"child"));
    kid.stdin.take().unwrap().write_all(b"done\n").unwrap();
    assert!(kid.wait().unwrap().success());
    writer(&path);
    assert_eq!(
        r.check(&subject(b"nobody", 0)).unwrap(),
        Verdict::Valid,
        "reader answers after the writer left"
    );
}

#[test]
fn a_handle_opened_by_a_relative_path_survives_a_change_of_directory() {
    if let Some((role, dir)) = child_role() {
        if role == "chdir" {
            // As a daemon does: open relative to the working directory, then leave it.
            std::env::set_current_dir(&dir).unwrap();
            let r = Ledger::open_reader("l").unwrap();
            let w = open_writer("l", &WriterOptions::default()).unwrap();
            std::env::set_current_dir("/").unwrap();
            r.refresh().unwrap();
            for _ in 0..=revledger::PATH_CHECK_EVERY {
                assert!(revoked(&r, b"x"));
            }
            w.revoke(&Rule::new(Scope::Subject, b"t", b"y", 1000))
                .unwrap();
            w.sync().unwrap();
            w.compact(0).unwrap();
            assert!(revoked(&r, b"y"), "the reader followed the compaction");
            println!("chdir scenario done");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    writer(&dir.path().join("l"))
        .revoke(&Rule::new(Scope::Subject, b"t", b"x", 1000))
        .unwrap();
    let text = run_ok(
        child(
            "a_handle_opened_by_a_relative_path_survives_a_change_of_directory",
            "chdir",
            dir.path(),
        ),
        "chdir scenario",
    );
    assert!(text.contains("chdir scenario done"), "{text}");
}

/// A crash while creating a ledger leaves `.<name>.creating.<pid>`; crashed compactions
/// and index builds leave `.<name>.compacting`, `.<name>.g<G>.index.building` and index
/// files of other generations. The next writer removes them (docs/FORMAT.md §1), whether
/// it creates the ledger or opens it, but never the file of a creation still running.
#[test]
fn the_next_writer_removes_what_crashed_creations_and_compactions_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    // A process that has exited: its pid names no creation in progress.
    let mut gone = spawn(&mut Command::new("true"));
    gone.wait().unwrap();
    let dead = dir.path().join(format!(".l.creating.{}", gone.id()));
    // What a creation killed after writing part of the header leaves.
    std::fs::write(&dead, b"REVLEDGR\x02\x00").unwrap();
    // A creation still running (its process is alive) keeps its file.
    let mut running = spawn(Command::new("sleep").arg("600"));
    let live = dir.path().join(format!(".l.creating.{}", running.id()));
    std::fs::write(&live, b"").unwrap();

    let w = writer(&path);
    assert!(!dead.exists(), "the stale creation file is still there");
    assert!(live.exists(), "a running creation's file was removed");
    w.revoke(&Rule::new(Scope::Subject, b"t", b"x", 10))
        .unwrap();
    drop(w);

    // Leftovers of a crashed compaction and index builds, and an old index.
    let leftovers = [
        ".l.compacting",
        ".l.g1.index.building",
        ".l.g0.index.building",
    ]
    .map(|n| dir.path().join(n));
    for f in &leftovers {
        std::fs::write(f, b"partial").unwrap();
    }
    let old_index = dir.path().join(".l.g5.index");
    std::fs::write(&old_index, b"old").unwrap();
    std::fs::write(&dead, b"").unwrap();
    let w = writer(&path);
    for f in leftovers.iter().chain([&old_index, &dead]) {
        assert!(!f.exists(), "{} was not removed", f.display());
    }
    assert!(live.exists());
    assert!(dir.path().join(".l.g0.index").exists(), "the current index");
    assert!(revoked(&w, b"x"));
    drop(w);
    running.kill().unwrap();
    running.wait().unwrap();
}
