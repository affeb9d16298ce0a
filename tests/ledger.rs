//! The ledger against its contract: semantics against a reference model, files, locks,
//! recovery, corruption, compaction, and a writer in another process.

use proptest::prelude::*;
use revledger::{Error, Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use std::path::{Path, PathBuf};

fn writer(path: &Path) -> Ledger {
    open_writer(path, &WriterOptions::with_lifetime(3600)).unwrap()
}

/// [`writer`] with background compaction off.
fn writer_without_compaction(path: &Path) -> Ledger {
    open_writer(
        path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap()
}

/// `Ledger::open_writer`, retried while it says `Locked`: other tests of this binary
/// start child processes, and a child holds a copy of every open file (and so of a
/// writer's flock) from its fork until its exec, a few microseconds. Reopening a ledger
/// whose writer was just dropped can land in that window (RELIABILITY.md, fork and flock).
fn open_writer(path: &Path, options: &WriterOptions) -> revledger::Result<Ledger> {
    for _ in 0..10_000 {
        match Ledger::open_writer(path, options) {
            Err(Error::Locked(_)) => std::thread::yield_now(),
            other => return other,
        }
    }
    Ledger::open_writer(path, options)
}

fn token<'a>(tenant: &'a [u8], sub: &'a [u8], roles: &'a [&'a [u8]], iat: i64) -> Token<'a> {
    Token {
        tenant,
        subject: sub,
        roles,
        issued_at: iat,
        ..Token::default()
    }
}

/// The plain reference model of DESIGN.md §2 and an owned rule: the fuzz targets' own
/// (fuzz/src/model.rs), so that one model judges both.
#[path = "../fuzz/src/model.rs"]
#[allow(dead_code)]
mod model;
use model::{Model, OwnedRule};

#[derive(Debug, Clone)]
struct OwnedToken {
    tenant: Vec<u8>,
    sub: Vec<u8>,
    roles: Vec<Vec<u8>>,
    client: Vec<u8>,
    session: Vec<u8>,
    jti: Vec<u8>,
    iat: i64,
}

fn small_bytes() -> impl Strategy<Value = Vec<u8>> {
    // A tiny alphabet so that rules and tokens collide often.
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0u8, 0xff]), 0..3)
}

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', 0u8, 0xff]), 1..3)
}

fn rule_strategy() -> impl Strategy<Value = OwnedRule> {
    (0u8..7, small_bytes(), key_bytes(), -5i64..40).prop_map(|(s, tenant, key, at)| {
        let scope = Scope::from_u8(s).unwrap();
        let (tenant, key) = match scope {
            Scope::Global => (Vec::new(), Vec::new()),
            Scope::Tenant => (tenant, Vec::new()),
            _ => (tenant, key),
        };
        OwnedRule {
            scope,
            tenant,
            key,
            at,
        }
    })
}

fn token_strategy() -> impl Strategy<Value = OwnedToken> {
    (
        small_bytes(),
        small_bytes(),
        prop::collection::vec(small_bytes(), 0..4),
        small_bytes(),
        small_bytes(),
        small_bytes(),
        -5i64..40,
    )
        .prop_map(
            |(tenant, sub, roles, client, session, jti, iat)| OwnedToken {
                tenant,
                sub,
                roles,
                client,
                session,
                jti,
                iat,
            },
        )
}

fn check_owned(l: &Ledger, t: &OwnedToken) -> Verdict {
    let roles: Vec<&[u8]> = t.roles.iter().map(Vec::as_slice).collect();
    l.check(&Token {
        tenant: &t.tenant,
        subject: &t.sub,
        roles: &roles,
        client: &t.client,
        session: &t.session,
        token_id: &t.jti,
        issued_at: t.iat,
    })
    .unwrap()
}

fn model_check(m: &Model, t: &OwnedToken) -> Verdict {
    let roles: Vec<&[u8]> = t.roles.iter().map(Vec::as_slice).collect();
    m.check(&Token {
        tenant: &t.tenant,
        subject: &t.sub,
        roles: &roles,
        client: &t.client,
        session: &t.session,
        token_id: &t.jti,
        issued_at: t.iat,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Same answers as the model: live (writer and a reader opened first), after
    /// reopening, after replaying the records shuffled and twice, and after compaction
    /// at a time that drops nothing.
    #[test]
    fn ledger_agrees_with_the_reference_model(
        rules in prop::collection::vec(rule_strategy(), 0..40),
        tokens in prop::collection::vec(token_strategy(), 1..30),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let w = writer(&path);
        let early_reader = Ledger::open_reader(&path).unwrap();
        let mut model = Model::default();
        for (i, r) in rules.iter().enumerate() {
            w.revoke(&r.rule()).unwrap();
            model.apply(&r.rule());
            if i % 7 == 0 {
                for t in &tokens {
                    prop_assert_eq!(check_owned(&early_reader, t), model_check(&model, t));
                }
            }
        }
        for t in &tokens {
            let want = model_check(&model, t);
            prop_assert_eq!(check_owned(&w, t), want);
            prop_assert_eq!(check_owned(&early_reader, t), want);
        }
        drop(w);
        let reopened = Ledger::open_reader(&path).unwrap();
        for t in &tokens {
            prop_assert_eq!(check_owned(&reopened, t), model_check(&model, t));
        }

        // Replay shuffled and twice into another ledger: records commute and are idempotent.
        let mut shuffled: Vec<&OwnedRule> = rules.iter().chain(rules.iter()).collect();
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let path2 = dir.path().join("replay");
        let w2 = writer(&path2);
        let batch: Vec<Rule> = shuffled.iter().map(|r| r.rule()).collect();
        w2.revoke_batch(&batch).unwrap();
        for t in &tokens {
            prop_assert_eq!(check_owned(&w2, t), model_check(&model, t));
        }

        // Compaction at a time where nothing has expired keeps every answer, also for
        // rules added after it (snapshot plus log) and across a second compaction.
        let r2 = Ledger::open_reader(&path2).unwrap();
        let stats = w2.compact(0).unwrap();
        prop_assert_eq!(stats.keys_dropped, 0);
        for t in &tokens {
            let want = model_check(&model, t);
            prop_assert_eq!(check_owned(&w2, t), want);
            prop_assert_eq!(check_owned(&r2, t), want);
        }
        for r in rules.iter().rev().take(rules.len() / 2) {
            let later = OwnedRule { at: r.at + 3, ..r.clone() };
            w2.revoke(&later.rule()).unwrap();
            model.apply(&later.rule());
        }
        let check_all = |l: &Ledger, model: &Model| -> Result<(), TestCaseError> {
            for t in &tokens {
                prop_assert_eq!(check_owned(l, t), model_check(model, t));
            }
            Ok(())
        };
        check_all(&w2, &model)?;
        check_all(&r2, &model)?;
        check_all(&Ledger::open_reader(&path2).unwrap(), &model)?;
        w2.compact(0).unwrap();
        check_all(&w2, &model)?;
        check_all(&r2, &model)?;
        drop(w2);
        check_all(&Ledger::open_reader(&path2).unwrap(), &model)?;
    }
}

#[test]
fn reader_sees_each_commit_on_its_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let r = Ledger::open_reader(&path).unwrap();
    let roles: &[&[u8]] = &[b"super_admin"];
    let john = token(b"acme", b"john", roles, 100);
    assert_eq!(r.check(&john).unwrap(), Verdict::Valid);
    w.revoke(&Rule::new(Scope::Role, b"acme", b"super_admin", 200))
        .unwrap();
    assert_eq!(
        r.check(&john).unwrap(),
        Verdict::Revoked {
            scope: Scope::Role,
            cutoff: 200
        }
    );
}

#[test]
fn reader_follows_the_file_as_it_grows_past_its_first_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    // Rules from 1970: background compaction would rightly drop them; off here.
    let w = writer_without_compaction(&path);
    let r = Ledger::open_reader(&path).unwrap();
    let names: Vec<Vec<u8>> = (0..60_000)
        .map(|i| format!("user-{i:06}").into_bytes())
        .collect();
    let rules: Vec<Rule> = names
        .iter()
        .map(|n| Rule::new(Scope::Subject, b"t", n, 50))
        .collect();
    for chunk in rules.chunks(5000) {
        w.revoke_batch(chunk).unwrap();
    }
    let stats = w.stats(0).unwrap();
    assert!(stats.file_bytes > 1 << 20, "file did not grow: {stats:?}");
    for n in names.iter().step_by(997).chain(names.last()) {
        assert!(r.check(&token(b"t", n, &[], 10)).unwrap().is_revoked());
    }
    assert_eq!(r.stats(0).unwrap().live_keys, 60_000);
}

#[test]
fn second_writer_is_locked_out_and_reader_cannot_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    assert!(matches!(
        Ledger::open_writer(&path, &WriterOptions::default()),
        Err(Error::Locked(_))
    ));
    // Another path to the same file (a symlink and a hard link) is locked too.
    let link = dir.path().join("symlink");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(matches!(
        Ledger::open_writer(&link, &WriterOptions::default()),
        Err(Error::Locked(_))
    ));
    let hard = dir.path().join("hardlink");
    std::fs::hard_link(&path, &hard).unwrap();
    assert!(matches!(
        Ledger::open_writer(&hard, &WriterOptions::default()),
        Err(Error::Locked(_))
    ));
    let r = Ledger::open_reader(&path).unwrap();
    assert!(matches!(
        r.revoke(&Rule::new(Scope::Subject, b"t", b"x", 1)),
        Err(Error::ReadOnly)
    ));
    assert!(matches!(r.sync(), Err(Error::ReadOnly)));
    assert!(matches!(r.compact(0), Err(Error::ReadOnly)));
    drop(w);
    // The lock goes with the writer.
    writer(&path);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let before = std::fs::read(&path).unwrap();
    let long = vec![b'k'; revledger::MAX_KEY_LEN + 1];
    for bad in [
        Rule::new(Scope::Subject, b"t", &long, 1),
        Rule::new(Scope::Subject, &long, b"k", 1),
        Rule::new(Scope::Subject, b"t", b"", 1),
        Rule::new(Scope::Token, b"t", b"", 1),
        Rule::new(Scope::Global, b"t", b"", 1),
    ] {
        assert!(matches!(w.revoke(&bad), Err(Error::InvalidArgument(_))));
    }
    let good = Rule::new(Scope::Subject, b"t", b"ok", 1);
    assert!(matches!(
        w.revoke_batch(&[good, Rule::new(Scope::Role, b"t", b"", 1)]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        w.revoke_now(Scope::Token, b"t", b"jti"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before, "file changed");
    assert!(matches!(
        w.check(&token(b"t", &long, &[], 1)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn files_that_are_not_ledgers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text");
    std::fs::write(&text, b"hello, this is not a ledger at all").unwrap();
    assert!(matches!(
        Ledger::open_reader(&text),
        Err(Error::Incompatible(_))
    ));
    assert!(matches!(
        Ledger::open_writer(&text, &WriterOptions::default()),
        Err(Error::Incompatible(_))
    ));
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"hello, this is not a ledger at all"
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        Ledger::open_reader(&empty),
        Err(Error::Incompatible(_))
    ));
    assert!(matches!(
        Ledger::open_reader(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        Ledger::open_writer(dir.path().join("no/such/dir/l"), &WriterOptions::default()),
        Err(Error::Io { .. })
    ));
    assert!(Ledger::open_reader(dir.path()).is_err());
}

#[test]
fn max_token_lifetime_is_kept_raised_never_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    drop(writer(&path));
    let w = open_writer(&path, &WriterOptions::default()).unwrap();
    assert_eq!(w.max_token_lifetime(), 3600);
    drop(w);
    assert!(matches!(
        open_writer(&path, &WriterOptions::with_lifetime(60)),
        Err(Error::InvalidArgument(_))
    ));
    let w = open_writer(&path, &WriterOptions::with_lifetime(7200)).unwrap();
    assert_eq!(w.max_token_lifetime(), 7200);
    drop(w);
    assert_eq!(
        Ledger::open_reader(&path).unwrap().max_token_lifetime(),
        7200
    );
    assert!(matches!(
        open_writer(&path, &WriterOptions::with_lifetime(-1)),
        Err(Error::InvalidArgument(_))
    ));
    let fresh = dir.path().join("fresh");
    let w = Ledger::open_writer(&fresh, &WriterOptions::default()).unwrap();
    assert_eq!(w.max_token_lifetime(), 86_400);
    assert_eq!(w.leeway(), 300);
}

/// Writes `n` subject rules, closes, and returns the path, the frame offsets and the end.
fn ledger_with(dir: &Path, n: usize) -> (PathBuf, Vec<u64>, u64) {
    let path = dir.join("l");
    let w = writer(&path);
    for i in 0..n {
        w.revoke(&Rule::new(
            Scope::Subject,
            b"t",
            format!("user-{i}").as_bytes(),
            1000 + i as i64,
        ))
        .unwrap();
    }
    let mut offsets = Vec::new();
    w.for_each_record(|off, _| offsets.push(off)).unwrap();
    let end = w.stats(0).unwrap().log_bytes;
    drop(w);
    (path, offsets, end)
}

/// A writer that keeps the valid prefix of a log damaged in the middle.
fn keep_prefix_writer(path: &Path) -> Ledger {
    open_writer(
        path,
        &WriterOptions {
            keep_valid_prefix: true,
            ..WriterOptions::default()
        },
    )
    .unwrap()
}

fn subject_revoked(l: &Ledger, i: usize) -> bool {
    l.check(&token(b"t", format!("user-{i}").as_bytes(), &[], 0))
        .unwrap()
        .is_revoked()
}

#[test]
fn torn_tail_is_cut_at_every_byte_of_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, end) = ledger_with(dir.path(), 5);
    let bytes = std::fs::read(&path).unwrap();
    let last = *offsets.last().unwrap();
    // Cuts that lose a byte of the frame (its zero padding is rebuilt by the zero fill).
    let payload_len =
        u32::from_le_bytes(bytes[last as usize..last as usize + 4].try_into().unwrap());
    let content_end = last + 8 + u64::from(payload_len);
    assert!(content_end <= end);
    for cut in last..content_end {
        for writer_opens_first in [false, true] {
            // The file as a crash inside the last append could leave it: the last frame
            // cut at `cut`, nothing after it, the header still claiming the full length
            // (nothing synced it) — or the rest of the frame overwritten with garbage.
            for garbage in [false, true] {
                let torn = dir.path().join("torn");
                let mut b = bytes[..cut as usize].to_vec();
                if garbage {
                    b.extend((cut..end).map(|i| (i as u8).wrapping_mul(31) | 1));
                }
                b.resize(bytes.len(), 0);
                // Not synced: the header's synced_len must not vouch for the lost record.
                b[136..144].copy_from_slice(&last.to_le_bytes());
                std::fs::write(&torn, &b).unwrap();
                let l = if writer_opens_first {
                    let w = open_writer(&torn, &WriterOptions::default()).unwrap();
                    assert_eq!(w.stats(0).unwrap().dropped_bytes > 0, garbage || cut > last);
                    w
                } else {
                    Ledger::open_reader(&torn).unwrap()
                };
                for i in 0..4 {
                    assert!(subject_revoked(&l, i), "cut {cut}: record {i} lost");
                }
                assert!(!subject_revoked(&l, 4), "cut {cut}: torn record read");
                assert_eq!(l.stats(0).unwrap().live_keys, 4);
                if writer_opens_first {
                    // The writer cut the tail: appending again gives a clean log.
                    l.revoke(&Rule::new(Scope::Subject, b"t", b"after", 1))
                        .unwrap();
                    drop(l);
                    let again = Ledger::open_reader(&torn).unwrap();
                    assert_eq!(again.stats(0).unwrap().live_keys, 5);
                    assert_eq!(again.stats(0).unwrap().dropped_bytes, 0);
                }
            }
        }
    }
}

#[test]
fn corrupt_byte_in_the_middle_is_reported_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets, end) = ledger_with(dir.path(), 6);
    let clean = std::fs::read(&path).unwrap();
    let victim = offsets[2];
    for at in victim..offsets[3] {
        let mut b = clean.clone();
        b[at as usize] ^= 0x40;
        std::fs::write(&path, &b).unwrap();
        for open in [
            Ledger::open_reader(&path).map(|_| ()),
            open_writer(&path, &WriterOptions::default()).map(|_| ()),
        ] {
            match open {
                Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, victim, "flip at {at}"),
                other => panic!("flip at {at}: expected Corrupt, got {other:?}"),
            }
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b,
            "a failed open changed the file"
        );
    }
    // Damage in the last record, which sync covered, is corruption too, not a torn tail.
    let mut b = clean.clone();
    b[*offsets.last().unwrap() as usize + 12] ^= 1;
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(
        Ledger::open_reader(&path),
        Err(Error::Corrupt { .. })
    ));
    // Asked to, the writer keeps the valid prefix and says how much it dropped.
    let mut b = clean.clone();
    b[victim as usize + 12] ^= 1;
    std::fs::write(&path, &b).unwrap();
    let w = keep_prefix_writer(&path);
    let s = w.stats(0).unwrap();
    assert_eq!(s.live_keys, 2);
    assert_eq!(s.dropped_bytes, end - victim);
    // A damaged header is corruption at offset 0.
    let mut b = clean;
    drop(w);
    b[30] ^= 1;
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(
        Ledger::open_reader(&path),
        Err(Error::Corrupt { offset: 0, .. })
    ));
}

/// A reader that answered from records a `keep_valid_prefix` writer then cut (damage in
/// the middle: the damaged record and every one after it are dropped) fails closed, with
/// the shared index and without it, even once the writer appended past the old end again;
/// a reader opened after the cut answers from the prefix.
#[test]
fn a_reader_that_read_past_a_keep_valid_prefix_cut_fails_closed() {
    use std::os::unix::fs::FileExt;
    for without_index in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets, _) = ledger_with(dir.path(), 6);
        if without_index {
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let p = e.unwrap().path();
                if p != path {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        let before = Ledger::open_reader(&path).unwrap();
        assert!((0..6).all(|i| subject_revoked(&before, i)));
        // Damage user-2's record in place (the same inode the reader maps).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let at = offsets[2] + 12;
        let mut byte = [0u8];
        file.read_at(&mut byte, at).unwrap();
        file.write_at(&[byte[0] ^ 1], at).unwrap();
        let w = keep_prefix_writer(&path);
        // Appended past the old end again: the end alone cannot tell.
        for i in 10..30 {
            w.revoke(&Rule::new(
                Scope::Subject,
                b"t",
                format!("user-{i}").as_bytes(),
                1,
            ))
            .unwrap();
        }
        for i in [0, 2, 5] {
            match before.check(&token(b"t", format!("user-{i}").as_bytes(), &[], 0)) {
                Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, offsets[2]),
                other => panic!("index removed: {without_index}, user-{i}: {other:?}"),
            }
        }
        assert!(before.refresh().is_err(), "the handle stays lost");
        let after = Ledger::open_reader(&path).unwrap();
        assert!(subject_revoked(&after, 1));
        assert!(!subject_revoked(&after, 2), "user-2's record was cut");
    }
}

/// A shared index whose slots point into the ledger's header (docs/FORMAT.md §4.2: a
/// slot's low 40 bits are a payload offset) is corruption, and every check that meets it
/// says so: the first check of a thread (which looks at the file's path first) and the
/// checks after it, which answer through the thread's view of the ledger.
#[test]
fn a_slot_pointing_into_the_ledger_header_fails_every_check_as_corrupt() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer_without_compaction(&path);
    let at = revledger::unix_now_floor() - 100;
    w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", at))
        .unwrap();
    let index = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".index"))
        .expect("the writer's shared index");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&index)
        .unwrap();
    let word = |at: u64| {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, at).unwrap();
        u64::from_le_bytes(b)
    };
    let (n_buckets, buckets_offset) = (word(16), word(40));
    let mut damaged = 0;
    for slot in 0..n_buckets * 8 {
        let at = buckets_offset + slot * 8;
        let slot_word = word(at);
        if slot_word != 0 {
            let into_header = (slot_word & !((1u64 << 40) - 1)) | 8;
            f.write_all_at(&into_header.to_le_bytes(), at).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 1, "one rule, one slot");
    let r = Ledger::open_reader(&path).unwrap();
    for _ in 0..3 {
        match r.check(&token(b"t", b"victim", &[], at - 1)) {
            Err(Error::Corrupt { reason, .. }) => {
                assert!(reason.contains("shared index"), "{reason}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // Another key does not meet the damaged slot (a different tag, or a filter miss).
    assert_eq!(
        r.check(&token(b"t", b"someone else", &[], at - 1)).unwrap(),
        Verdict::Valid
    );
}

#[test]
fn header_claiming_more_than_the_file_holds_is_not_read_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, end) = ledger_with(dir.path(), 3);
    let mut b = std::fs::read(&path).unwrap();
    b.truncate(end as usize);
    b[128..136].copy_from_slice(&(1u64 << 40).to_le_bytes());
    b[136..144].copy_from_slice(&256u64.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let r = Ledger::open_reader(&path).unwrap();
    assert!(subject_revoked(&r, 2));
}

#[test]
fn compaction_drops_expired_rules_and_readers_follow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path); // lifetime 3600, leeway 300
    let r = Ledger::open_reader(&path).unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"old", 1000))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"new", 9000))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"new", 8000))
        .unwrap();
    w.revoke(&Rule::new(Scope::Token, b"t", b"jti-old", 2000))
        .unwrap();
    w.revoke(&Rule::new(Scope::Token, b"t", b"jti-new", 9000))
        .unwrap();
    let now = 1000 + 3600 + 300 + 1; // "old" just expired; jti-old expired
    let s = w.compact(now).unwrap();
    assert_eq!(s.records_before, 5);
    assert_eq!(s.rules_kept, 2);
    assert_eq!(s.keys_dropped, 2);
    let stats = w.stats(now).unwrap();
    assert_eq!(stats.rule_records, 2);
    assert_eq!(stats.generation, 1);
    // Answers for unexpired tokens are unchanged; the reader follows without reopening.
    for l in [&w, &r] {
        assert_eq!(
            l.check(&token(b"t", b"new", &[], 8500)).unwrap(),
            Verdict::Revoked {
                scope: Scope::Subject,
                cutoff: 9000
            }
        );
        let jti = Token {
            tenant: b"t",
            token_id: b"jti-new",
            issued_at: 1,
            ..Token::default()
        };
        assert!(l.check(&jti).unwrap().is_revoked());
    }
    assert_eq!(r.stats(now).unwrap().generation, 1);
    // Revokes after compaction reach the reader too.
    w.revoke(&Rule::new(Scope::Subject, b"t", b"later", 9500))
        .unwrap();
    assert!(r
        .check(&token(b"t", b"later", &[], 9400))
        .unwrap()
        .is_revoked());
    drop(w);
    let again = Ledger::open_reader(&path).unwrap();
    assert_eq!(again.stats(now).unwrap().live_keys, 3);
    assert!(!dir.path().join(".l.compacting").exists());
}

/// Runs as the child process of `writer_in_another_process_is_seen_without_reopening`.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os("REVLEDGER_TEST_CHILD_LEDGER") else {
        return;
    };
    let w = Ledger::open_writer(PathBuf::from(path), &WriterOptions::default()).unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"acme", b"john", 5000))
        .unwrap();
}

#[test]
fn writer_in_another_process_is_seen_without_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    drop(writer(&path));
    let r = Ledger::open_reader(&path).unwrap();
    let john = token(b"acme", b"john", &[], 4000);
    assert_eq!(r.check(&john).unwrap(), Verdict::Valid);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--test-threads=1"])
        .env("REVLEDGER_TEST_CHILD_LEDGER", &path)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        r.check(&john).unwrap(),
        Verdict::Revoked {
            scope: Scope::Subject,
            cutoff: 5000
        }
    );
}

#[test]
fn checks_on_many_threads_while_the_writer_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let r = Ledger::open_reader(&path).unwrap();
    let n = 2000;
    std::thread::scope(|s| {
        for l in [&w, &r, &r] {
            s.spawn(move || {
                // Once seen revoked, a subject stays revoked (no torn reads of the index).
                let mut seen = vec![false; n];
                for _round in 0..20 {
                    for (i, was) in seen.iter_mut().enumerate() {
                        let revoked = subject_revoked(l, i);
                        assert!(revoked || !*was, "user-{i} came back");
                        *was = revoked;
                    }
                }
            });
        }
        for i in 0..n {
            w.revoke(&Rule::new(
                Scope::Subject,
                b"t",
                format!("user-{i}").as_bytes(),
                10,
            ))
            .unwrap();
        }
    });
    for i in 0..n {
        assert!(subject_revoked(&r, i));
    }
}

#[test]
fn sync_and_close_make_the_synced_end_cover_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"t", b"a", 10))
        .unwrap();
    w.sync().unwrap();
    let b = std::fs::read(&path).unwrap();
    let synced = u64::from_le_bytes(b[136..144].try_into().unwrap());
    let committed = u64::from_le_bytes(b[128..136].try_into().unwrap());
    assert_eq!(synced, committed);
    assert!(committed > 256);
}

/// The sidecar index of a ledger at `path` (docs/FORMAT.md §4).
fn index_file(path: &Path, generation: u64) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    path.with_file_name(format!(".{name}.g{generation}.index"))
}

#[test]
fn damaged_or_missing_index_never_gives_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    // Rules from 1970: compaction at the real time would drop them all (rightly: every
    // token they could revoke expired long ago); this test compacts at `now = 0`.
    let w = writer_without_compaction(&path);
    let names: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("user-{i}").into_bytes())
        .collect();
    let rules: Vec<Rule> = names
        .iter()
        .map(|n| Rule::new(Scope::Subject, b"t", n, 50))
        .collect();
    w.revoke_batch(&rules).unwrap();
    w.compact(0).unwrap();
    let generation = w.stats(0).unwrap().generation;
    drop(w);
    let index = index_file(&path, generation);
    let clean = std::fs::read(&index).unwrap();
    assert!(clean.len() > 200_000, "index of {} bytes", clean.len());
    let every_answer = |what: &str| {
        // Refused, or every answer right: never "valid" for a revoked token.
        let outcome = Ledger::open_reader(&path).and_then(|r| {
            for n in names.iter().step_by(7) {
                let v = r.check(&token(b"t", n, &[], 10))?;
                assert!(
                    v.is_revoked(),
                    "{what}: {} answered {v:?}",
                    String::from_utf8_lossy(n)
                );
            }
            r.stats(0)
        });
        if let Ok(s) = &outcome {
            assert_eq!(s.live_keys, 20_000, "{what}");
        }
    };
    every_answer("clean");
    for at in [
        0,
        9,
        130,
        200,
        4096,
        4096 + 800,
        clean.len() / 3,
        clean.len() - 3,
    ] {
        let mut b = clean.clone();
        b[at] ^= 0x20;
        std::fs::write(&index, &b).unwrap();
        every_answer(&format!("flip at {at}"));
    }
    let mut zeroed = clean.clone();
    zeroed[4096..].fill(0);
    std::fs::write(&index, &zeroed).unwrap();
    every_answer("filter and table zeroed");
    std::fs::write(&index, &clean[..clean.len() / 2]).unwrap();
    every_answer("cut in half");
    std::fs::remove_file(&index).unwrap();
    every_answer("missing");
    // The next writer rebuilds it; readers then map it again.
    drop(writer(&path));
    let r = Ledger::open_reader(&path).unwrap();
    let s = r.stats(0).unwrap();
    assert!(s.shared_index && s.tail_bytes == 0, "{s:?}");
    every_answer("rebuilt");
}

#[test]
fn background_compaction_is_on_by_default_and_the_index_grows_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<Vec<u8>> = (0..25_000).map(|i| format!("u{i}").into_bytes()).collect();
    let rules = |at: i64| -> Vec<Rule> {
        names
            .iter()
            .map(|n| Rule::new(Scope::Subject, b"t", n, at))
            .collect()
    };
    // Off: no rule is ever dropped, but the shared index still grows with the ledger,
    // and readers that opened before and after find every key through it.
    let plain_path = dir.path().join("plain");
    let plain = Ledger::open_writer(
        &plain_path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let early = Ledger::open_reader(&plain_path).unwrap();
    for chunk in rules(i64::MAX / 2).chunks(1000) {
        plain.revoke_batch(chunk).unwrap();
    }
    plain.wait_background().unwrap();
    let s = plain.stats(0).unwrap();
    assert_eq!(s.generation, 0);
    assert!(s.index_epoch >= 2, "the index never grew: {s:?}");
    assert_eq!(s.live_keys, 25_000);
    let late = Ledger::open_reader(&plain_path).unwrap();
    let ls = late.stats(0).unwrap();
    assert!(ls.shared_index && ls.tail_bytes == 0, "{ls:?}");
    for n in names.iter().step_by(97) {
        assert!(early.check(&token(b"t", n, &[], 5)).unwrap().is_revoked());
        assert!(late.check(&token(b"t", n, &[], 5)).unwrap().is_revoked());
    }
    // On (the default policy, with a small threshold): rules revoked again and again
    // are compacted away in the background; answers stay right throughout.
    let auto_path = dir.path().join("auto");
    let auto = Ledger::open_writer(
        &auto_path,
        &WriterOptions {
            compaction: Some(revledger::CompactionPolicy {
                ratio: 0.5,
                min_records: 1000,
            }),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    let reader = Ledger::open_reader(&auto_path).unwrap();
    let now = revledger::unix_now_floor();
    for round in 0..4 {
        for chunk in rules(now + round).chunks(1000) {
            auto.revoke_batch(chunk).unwrap();
            for n in chunk.iter().step_by(199) {
                let v = reader.check(&token(b"t", n.key, &[], 5)).unwrap();
                assert!(v.is_revoked(), "round {round}: {v:?}");
            }
        }
    }
    auto.wait_background().unwrap();
    let s = auto.stats(0).unwrap();
    assert!(s.generation >= 1, "never compacted: {s:?}");
    assert!(s.compacted_keys >= 10_000, "{s:?}");
    assert_eq!(s.live_keys, 25_000);
    assert!(s.background_error.is_none(), "{s:?}");
    for n in names.iter().step_by(101) {
        let v = reader.check(&token(b"t", n, &[], 5)).unwrap();
        assert_eq!(
            v,
            Verdict::Revoked {
                scope: Scope::Subject,
                cutoff: now + 3
            }
        );
    }
}

/// A burst of appends that fills the index while it is being grown: once the writer's
/// background work is done, the index holds the whole log again (readers keep no private
/// tail), and is not oversized.
#[test]
fn an_index_outgrown_during_its_growth_grows_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            index_keys: 1024,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    let keys: Vec<Vec<u8>> = (0..200_000)
        .map(|i| format!("user-{i:08}").into_bytes())
        .collect();
    for chunk in keys.chunks(20_000) {
        let rules: Vec<Rule> = chunk
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, now))
            .collect();
        w.revoke_batch(&rules).unwrap();
    }
    w.wait_background().unwrap();
    let s = w.stats(0).unwrap();
    assert!(s.background_error.is_none(), "{s:?}");
    let r = Ledger::open_reader(&path).unwrap();
    let rs = r.stats(0).unwrap();
    assert!(
        rs.shared_index && rs.tail_bytes == 0,
        "a private tail: {rs:?}"
    );
    assert_eq!(rs.live_keys, 200_000);
    let per_key = rs.index_bytes as f64 / 200_000.0;
    assert!(per_key <= 24.0, "{per_key:.1} bytes per key: {rs:?}");
    for k in keys.iter().step_by(997) {
        assert!(r.check(&token(b"t", k, &[], now - 1)).unwrap().is_revoked());
    }
}

/// A compaction sizes the new index as a growth would (7/4 of the live keys, at least
/// `index_keys`): 10,000 live rules take at most 24 bytes of index each, where a table
/// with room for 16,384 more keys took 31.7.
#[test]
fn a_compacted_index_is_sized_for_its_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer_without_compaction(&path);
    let now = revledger::unix_now_floor();
    let keys: Vec<Vec<u8>> = (0..15_000)
        .map(|i| format!("user-{i:08}").into_bytes())
        .collect();
    let rules = |range: std::ops::Range<usize>| -> Vec<Rule> {
        keys[range]
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, now))
            .collect()
    };
    w.revoke_batch(&rules(0..10_000)).unwrap();
    w.compact(now).unwrap();
    let s = w.stats(now).unwrap();
    assert_eq!(s.live_keys, 10_000);
    let per_key = s.index_bytes as f64 / 10_000.0;
    assert!(per_key <= 24.0, "{per_key:.1} bytes per key: {s:?}");
    // Room is still there: 5,000 new keys go in without a growth (3/4 of 7/4 × 10,000).
    w.revoke_batch(&rules(10_000..15_000)).unwrap();
    w.wait_background().unwrap();
    assert_eq!(w.stats(now).unwrap().index_bytes, s.index_bytes);
    let r = Ledger::open_reader(&path).unwrap();
    for k in keys.iter().step_by(499) {
        assert!(r.check(&token(b"t", k, &[], now - 1)).unwrap().is_revoked());
    }
}

/// Checks on a writer's own handle while its background compactions swap files: the
/// periodic path check (src/watch.rs) can look between the rename and the swap of the
/// generation, and must then see this writer's own compaction, never "compacted by
/// another process" (found by the Go binding's close-while-checking test).
#[test]
fn checks_on_the_writer_handle_follow_its_own_background_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = std::sync::Arc::new(
        open_writer(
            &path,
            &WriterOptions {
                compaction: Some(revledger::CompactionPolicy {
                    ratio: 0.5,
                    min_records: 64,
                }),
                ..WriterOptions::with_lifetime(3600)
            },
        )
        .unwrap(),
    );
    let now = revledger::unix_now_floor();
    w.revoke(&Rule::new(Scope::Role, b"t", b"admin", now))
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (checks, wrong) = std::thread::scope(|s| {
        let checkers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let roles: &[&[u8]] = &[b"admin"];
                    let (mut checks, mut wrong) = (0u64, Vec::new());
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        checks += 1;
                        match w.check(&token(b"t", b"u", roles, now - 10)) {
                            Ok(v) if v.is_revoked() => {}
                            other => wrong.push(format!("{other:?}")),
                        }
                    }
                    (checks, wrong)
                })
            })
            .collect();
        // Until 50 compactions have happened (at most 5 million revokes: other tests of
        // this binary run beside it and can starve the background thread). Every revoke
        // raises a cutoff (a record each); most are expired at once, so every compaction
        // has work.
        let mut i = 0;
        while w.stats(0).unwrap().generation < 50 && i < 5_000_000 {
            for _ in 0..1000 {
                let key = format!("x{}", i % 50);
                let rule = Rule::new(Scope::Subject, b"t", key.as_bytes(), now - 1_000_000 + i);
                w.revoke(&rule).unwrap();
                i += 1;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        checkers.into_iter().map(|c| c.join().unwrap()).fold(
            (0, Vec::new()),
            |(n, mut all), (c, mut wrong)| {
                all.append(&mut wrong);
                (n + c, all)
            },
        )
    });
    w.wait_background().unwrap();
    let s = w.stats(0).unwrap();
    assert!(s.generation >= 50, "too few compactions to test: {s:?}");
    assert!(checks > 0);
    assert!(
        wrong.is_empty(),
        "{} of {checks} checks wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
}

/// Child of `readers_in_another_process_answer_right_through_compactions`: checks a fixed
/// set of tokens in a loop until its stdin closes, then prints `checks wrong`.
#[test]
fn child_compaction_reader() {
    let Some(path) = std::env::var_os("REVLEDGER_TEST_COMPACTION_READER") else {
        return;
    };
    use std::io::Read;
    let r = Ledger::open_reader(PathBuf::from(path)).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = done_tx.send(());
    });
    println!("\nREADY");
    let (mut checks, mut wrong) = (0u64, 0u64);
    let mut seen_later = false;
    loop {
        for i in 0..200 {
            // Subjects 0..200 were revoked at 1000 before this process started.
            let name = format!("stable-{i}");
            checks += 1;
            wrong += u64::from(!subject_revoked_at(&r, &name, 999));
            wrong += u64::from(subject_revoked_at(&r, &name, 1000));
            // Never revoked.
            let other = format!("never-{i}");
            wrong += u64::from(subject_revoked_at(&r, &other, 0));
        }
        // Revoked while we run: once seen, never unseen.
        let later = subject_revoked_at(&r, "later", 0);
        wrong += u64::from(seen_later && !later);
        seen_later |= later;
        if done_rx.try_recv().is_ok() {
            break;
        }
    }
    let generation = r.stats(0).unwrap().generation;
    println!("\nREPORT {checks} {wrong} {seen_later} {generation}");
}

fn subject_revoked_at(l: &Ledger, sub: &str, iat: i64) -> bool {
    l.check(&token(b"t", sub.as_bytes(), &[], iat))
        .unwrap()
        .is_revoked()
}

#[test]
fn readers_in_another_process_answer_right_through_compactions() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let stable: Vec<String> = (0..200).map(|i| format!("stable-{i}")).collect();
    let rules: Vec<Rule> = stable
        .iter()
        .map(|n| Rule::new(Scope::Subject, b"t", n.as_bytes(), 1000))
        .collect();
    w.revoke_batch(&rules).unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let mut c = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "child_compaction_reader",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("REVLEDGER_TEST_COMPACTION_READER", &path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(c.stdout.take().unwrap());
            let mut line = String::new();
            while !line.contains("READY") {
                line.clear();
                assert!(out.read_line(&mut line).unwrap() > 0, "child died");
            }
            (c, out)
        })
        .collect();
    // Compact over and over while the readers check, with revokes in between.
    for round in 0..30 {
        w.revoke(&Rule::new(
            Scope::Subject,
            b"t",
            format!("noise-{round}").as_bytes(),
            5,
        ))
        .unwrap();
        if round == 10 {
            w.revoke(&Rule::new(Scope::Subject, b"t", b"later", 50))
                .unwrap();
        }
        w.compact(0).unwrap();
    }
    assert_eq!(w.stats(0).unwrap().generation, 30);
    for (c, out) in &mut children {
        drop(c.stdin.take());
        let mut report = String::new();
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(r) = line.strip_prefix("REPORT ") {
                report = r.to_string();
            }
        }
        assert!(c.wait().unwrap().success());
        let f: Vec<&str> = report.split(' ').collect();
        assert_eq!(f.len(), 4, "no report from the reader: {report:?}");
        let checks: u64 = f[0].parse().unwrap();
        assert!(checks >= 200, "the reader barely ran: {report}");
        assert_eq!(f[1], "0", "wrong answers during compaction: {report}");
        assert_eq!(
            f[2], "true",
            "the reader never saw the rule added meanwhile"
        );
        assert_eq!(f[3], "30", "the reader did not follow every compaction");
    }
}

/// A ledger written by revledger format version 1 (tests/fixtures/format-v1.ledger: made
/// by the version 1 CLI — create, five rules, compact into a snapshot, three more rules):
/// a reader refuses it saying how to upgrade; a writer upgrades it in place, every rule
/// kept; then readers read it.
#[test]
fn a_format_1_ledger_is_upgraded_by_its_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.ledger");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1.ledger"),
        &path,
    )
    .unwrap();
    match Ledger::open_reader(&path) {
        Err(Error::Incompatible(m)) => {
            assert!(m.contains("version 1") && m.contains("upgrade"), "{m}")
        }
        other => panic!("a version 1 file opened as {other:?}"),
    }
    let w = open_writer(&path, &WriterOptions::default()).unwrap();
    let s = w.stats(0).unwrap();
    assert_eq!(s.generation, 2, "{s:?}");
    assert_eq!(s.live_keys, 7, "6 keys and the global rule: {s:?}");
    assert_eq!(w.max_token_lifetime(), 4_000_000_000);
    drop(w);
    let r = Ledger::open_reader(&path).unwrap();
    let t = |sub: &'static [u8], iat: i64| Token {
        tenant: b"acme",
        subject: sub,
        issued_at: iat,
        ..Token::default()
    };
    let subject = |cutoff| Verdict::Revoked {
        scope: Scope::Subject,
        cutoff,
    };
    assert_eq!(
        r.check(&t(b"alice", 1_700_000_000)).unwrap(),
        subject(1_700_000_500)
    );
    assert_eq!(
        r.check(&t(b"bob", 1_700_000_000)).unwrap(),
        subject(1_700_000_100)
    );
    assert_eq!(
        r.check(&t(b"carol", 1_700_000_100)).unwrap(),
        Verdict::Valid
    );
    let roles: &[&[u8]] = &[b"admin"];
    let admin = Token {
        roles,
        ..t(b"dave", 1_700_000_150)
    };
    assert_eq!(
        r.check(&admin).unwrap(),
        Verdict::Revoked {
            scope: Scope::Role,
            cutoff: 1_700_000_200
        }
    );
    let jti = Token {
        token_id: b"jti-1",
        ..t(b"erin", 1_800_000_000)
    };
    assert!(r.check(&jti).unwrap().is_revoked());
    let spa = Token {
        client: b"spa",
        ..t(b"erin", 1_700_000_550)
    };
    assert_eq!(
        r.check(&spa).unwrap(),
        Verdict::Revoked {
            scope: Scope::Client,
            cutoff: 1_700_000_600
        }
    );
    assert_eq!(
        r.check(&t(b"zed", 1_500_000_000)).unwrap(),
        Verdict::Revoked {
            scope: Scope::Global,
            cutoff: 1_600_000_000
        }
    );
    assert!(r.stats(0).unwrap().shared_index);
}

/// The file records its keyed hash of a test vector (header bytes 80–87): a build whose
/// hash differs would miss every key of the index and answer "valid" for every token, so
/// it refuses the file (issue 11: the hash is checked, not trusted).
#[test]
fn a_ledger_whose_hash_check_differs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    drop(writer(&path));
    let mut b = std::fs::read(&path).unwrap();
    b[80] ^= 1;
    let crc = crc32fast::hash(&b[..124]);
    b[124..128].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    for open in [
        Ledger::open_reader(&path).map(|_| ()),
        open_writer(&path, &WriterOptions::default()).map(|_| ()),
    ] {
        match open {
            Err(Error::Incompatible(m)) => assert!(m.contains("hash"), "{m}"),
            other => panic!("a ledger with another hash opened: {other:?}"),
        }
    }
}

/// Opens `path` on another thread: `Some` with the result, `None` when it did not return
/// within 20 s (an `open(2)` blocked on a FIFO; the thread is left behind).
fn open_within(
    path: &Path,
    open: fn(&Path) -> revledger::Result<Ledger>,
) -> Option<revledger::Result<Ledger>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(open(&path));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
}

fn nix_mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A FIFO or a directory where a ledger or its index should be: a clear error for the
/// ledger, an index not used (the reader indexes the log itself, the writer goes on) for
/// the index; never a blocked `open(2)`.
#[test]
fn a_fifo_or_a_directory_in_place_of_a_file_never_blocks_and_never_misleads() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    nix_mkfifo(&fifo);
    let openers: [fn(&Path) -> revledger::Result<Ledger>; 2] = [reader_at, writer_at];
    for open in openers {
        match open_within(&fifo, open) {
            Some(Err(e @ Error::Io { .. })) => {
                assert!(e.to_string().contains("not a regular file"), "{e}")
            }
            Some(other) => panic!("a FIFO at the ledger path: {other:?}"),
            None => panic!("opening a FIFO at the ledger path blocked"),
        }
    }

    for make in ["fifo", "dir"] {
        std::fs::create_dir(dir.path().join(make)).unwrap();
        let (path, _, _) = ledger_with(&dir.path().join(make), 3);
        let index = dir.path().join(make).join(".l.g0.index");
        std::fs::remove_file(&index).unwrap();
        if make == "fifo" {
            nix_mkfifo(&index);
        } else {
            std::fs::create_dir(&index).unwrap();
        }
        let r = match open_within(&path, reader_at) {
            Some(r) => r.unwrap_or_else(|e| panic!("{make} at the index path: {e:?}")),
            None => panic!("a {make} at the index path blocked the reader"),
        };
        assert!((0..3).all(|i| subject_revoked(&r, i)));
        assert!(!subject_revoked(&r, 3));
        let w = match open_within(&path, writer_at) {
            Some(w) => w.unwrap_or_else(|e| panic!("{make} at the index path: {e:?}")),
            None => panic!("a {make} at the index path blocked the writer"),
        };
        w.revoke(&Rule::new(Scope::Subject, b"t", b"user-3", 1000))
            .unwrap();
        assert!((0..4).all(|i| subject_revoked(&w, i) && subject_revoked(&r, i)));
    }
}

fn reader_at(path: &Path) -> revledger::Result<Ledger> {
    Ledger::open_reader(path)
}

fn writer_at(path: &Path) -> revledger::Result<Ledger> {
    open_writer(path, &WriterOptions::with_lifetime(3600))
}

/// A compaction asked for while appends start background jobs: one compaction at a time,
/// so none swaps in a file without the other's records. Every revoke acknowledged before
/// or during the compactions is in the file a new reader opens, and every compaction
/// succeeds (two at once used to lose live rules, and failed one another).
#[test]
fn a_compaction_asked_for_while_background_jobs_run_loses_no_rule() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            // Background compactions as often as the appends allow.
            compaction: Some(revledger::CompactionPolicy {
                ratio: 0.01,
                min_records: 64,
            }),
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"live", now))
        .unwrap();
    const BATCHES: usize = 1500;
    let done = AtomicBool::new(false);
    let acknowledged = AtomicUsize::new(0);
    let refused = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..BATCHES {
                // Expired rules (dropped by every compaction) and a live one per batch.
                let dead: Vec<Vec<u8>> =
                    (0..50).map(|j| format!("dead-{j}").into_bytes()).collect();
                let mut batch: Vec<Rule> = dead
                    .iter()
                    .map(|k| Rule::new(Scope::Subject, b"t", k, now - 100_000))
                    .collect();
                let key = format!("kept-{i}").into_bytes();
                batch.push(Rule::new(Scope::Subject, b"t", &key, now));
                if let Err(e) = w.revoke_batch(&batch) {
                    *refused.lock().unwrap() = Some(e);
                    break;
                }
                acknowledged.store(i + 1, Ordering::Release);
            }
            done.store(true, Ordering::Release);
        });
        // Compactions one after another for as long as the appends go on.
        let mut round = 0;
        while !done.load(Ordering::Acquire) || round < 5 {
            let c = w.compact(now);
            assert!(c.is_ok(), "compaction {round}: {c:?}");
            // Rules appended while it ran are copied from the old file once, not also
            // written among the live rules it listed.
            let mut seen = std::collections::HashSet::new();
            let mut twice = Vec::new();
            w.for_each_record(|off, r| {
                if let revledger::record::Record::Rule(r) = r {
                    if r.key.starts_with(b"kept-") && !seen.insert(r.key.to_vec()) {
                        twice.push((off, String::from_utf8_lossy(r.key).into_owned()));
                    }
                }
            })
            .unwrap();
            assert!(twice.is_empty(), "after compaction {round}: {twice:?}");
            round += 1;
        }
    });
    assert!(
        refused.lock().unwrap().is_none(),
        "a revoke failed: {refused:?}"
    );
    w.wait_background().unwrap();
    let kept = acknowledged.load(Ordering::Acquire);
    assert_eq!(kept, BATCHES);
    let r = Ledger::open_reader(&path).unwrap();
    for reader in [&r, &w] {
        assert!(reader
            .check(&token(b"t", b"live", &[], now - 10))
            .unwrap()
            .is_revoked());
        let lost: Vec<usize> = (0..kept)
            .filter(|i| {
                let key = format!("kept-{i}").into_bytes();
                !reader
                    .check(&token(b"t", &key, &[], now - 10))
                    .unwrap()
                    .is_revoked()
            })
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {kept} acknowledged rules lost: {lost:?}",
            lost.len()
        );
    }
}

/// File modes and groups that cannot be what the caller means are refused before any
/// file is made: special bits, a ledger every user may write, `(gid_t)-1`.
#[test]
fn writer_options_refuse_modes_and_groups_that_would_surprise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let with = |mode: u32, group: Option<u32>| WriterOptions {
        file_mode: mode,
        file_group: group,
        ..WriterOptions::with_lifetime(3600)
    };
    for (options, needle) in [
        (with(0o4755, None), "setuid"),
        (with(0o2640, None), "setuid"),
        (with(0o1600, None), "setuid"),
        (with(0o666, None), "every user write"),
        (with(0o777, None), "every user write"),
        (with(0o400, None), "owner read and write"),
        (with(0o640, Some(u32::MAX)), "(gid_t)-1"),
    ] {
        match Ledger::open_writer(&path, &options) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("mode {:o}: {other:?}", options.file_mode),
        }
        assert!(!path.exists(), "a refused writer made the file");
    }
    for mode in [0o600, 0o640, 0o644, 0o660] {
        let w = Ledger::open_writer(&path, &with(mode, None)).unwrap();
        drop(w);
        std::fs::remove_file(&path).unwrap();
    }
}

/// The writer's own compaction swaps its generation and then marks the old file retired:
/// a call on the writer handle that loaded the old generation just before goes on with
/// the new one (it used to fail with "writer's ledger file was retired").
#[test]
fn calls_on_the_writer_during_its_own_compaction_do_not_fail() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    let rules: Vec<Vec<u8>> = (0..2000).map(|i| format!("k{i}").into_bytes()).collect();
    let rules: Vec<Rule> = rules
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, now))
        .collect();
    w.revoke_batch(&rules).unwrap();
    let stop = AtomicBool::new(false);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    if let Err(e) = w.refresh() {
                        errors.lock().unwrap().push(e.to_string());
                    }
                }
            });
        }
        for _ in 0..200 {
            w.compact(now).unwrap();
            if !errors.lock().unwrap().is_empty() {
                break;
            }
        }
        stop.store(true, Ordering::Release);
    });
    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} calls failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
}

/// A reader that opens while the writer appends maps the shared index: the index may be
/// ahead of the committed length the reader read a moment before (the writer indexes a
/// batch just before it commits it), which must not send the reader to index the whole
/// log privately.
#[test]
fn readers_opening_during_appends_use_the_shared_index() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    let keys: Vec<Vec<u8>> = (0..10_000).map(|i| format!("k{i}").into_bytes()).collect();
    let live: Vec<Rule> = keys
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, now))
        .collect();
    w.revoke_batch(&live).unwrap();
    let stop = AtomicBool::new(false);
    let (mut private, mut opened) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Bounded: the appends only need to overlap the opens.
            for i in 0..300_000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                w.revoke(&Rule::new(Scope::Subject, b"t", b"hot", now - 3000 + i))
                    .unwrap();
            }
        });
        for _ in 0..300 {
            let r = Ledger::open_reader(&path).unwrap();
            opened += 1;
            private += usize::from(!r.stats(now).unwrap().shared_index);
        }
        stop.store(true, Ordering::Release);
    });
    assert_eq!(
        private, 0,
        "{private} of {opened} readers opened without the shared index"
    );
}

/// Global rules and stream positions appended while a compaction runs are in the new
/// file once: copied with the frames appended since the compaction started, not also
/// listed among the live rules (the shared index's global cutoff and last position are
/// read as they were when it started).
#[test]
fn global_rules_and_positions_appended_during_compaction_are_written_once() {
    use revledger::record::Record;
    use revledger::{StreamId, StreamPosition};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let now = revledger::unix_now_floor();
    let keys: Vec<Vec<u8>> = (0..1000).map(|i| format!("k{i}").into_bytes()).collect();
    let live: Vec<Rule> = keys
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, now))
        .collect();
    w.revoke_batch(&live).unwrap();
    // Each round the appender appends while the compaction runs (up to 1,000 times),
    // then both meet before the file is read.
    let compacting = AtomicBool::new(false);
    let met = std::sync::Barrier::new(2);
    const ROUNDS: usize = 100;
    let mut twice = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i: i64 = 0;
            for _ in 0..ROUNDS {
                met.wait();
                for _ in 0..1000 {
                    if !compacting.load(Ordering::Acquire) {
                        break;
                    }
                    i += 1;
                    let at = now - 3000 + i;
                    w.revoke(&Rule::new(Scope::Global, b"", b"", at)).unwrap();
                    let p = StreamPosition::new(&b"st"[..], StreamId::new(i as u64, 0), now);
                    w.revoke_batch_at_position(&[Rule::new(Scope::Subject, b"t", b"hot", at)], &p)
                        .unwrap();
                }
                met.wait();
            }
        });
        for round in 0..ROUNDS {
            compacting.store(true, Ordering::Release);
            met.wait();
            w.compact(now).unwrap();
            compacting.store(false, Ordering::Release);
            met.wait();
            let mut seen = std::collections::HashSet::new();
            w.for_each_record(|off, r| {
                let id = match r {
                    Record::Rule(r) if r.scope == Scope::Global => format!("global {}", r.at),
                    Record::Position { last_id, .. } => format!("position {}", last_id.ms),
                    _ => return,
                };
                if !seen.insert(id.clone()) {
                    twice.push(format!("compaction {round}: {id} again at {off}"));
                }
            })
            .unwrap();
        }
    });
    assert!(
        twice.is_empty(),
        "{} records twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
}

/// An append whose rule the shared index refuses (here a slot damaged on disk, pointing
/// at no rule) is committed all the same, its records from the refused one on left to
/// the tails: the index has already taken the batch's first records, and a slot must
/// never point at bytes the next append overwrites. Before, the append failed after
/// moving the slot of a key it raised; the next append wrote another rule there, and the
/// key's committed cutoff was lost ("valid"). The growth that follows rebuilds the index
/// from the log, since it cannot copy the damaged one.
#[test]
fn a_record_the_index_refuses_loses_nothing_the_batch_raised() {
    use revledger::record::Record;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let t0 = revledger::unix_now_floor() - 1000;
    w.revoke(&Rule::new(Scope::Subject, b"t", b"damaged", t0))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"raised", t0))
        .unwrap();
    // Pointed at offset 8, inside the file header: no rule there.
    damage_slot(&path, &w, b"damaged", 8);
    // One batch: the first rule raises a key (its slot moves to the batch), the second
    // reaches the damaged slot.
    let batch = w.revoke_batch(&[
        Rule::new(Scope::Subject, b"t", b"raised", t0 + 100),
        Rule::new(Scope::Subject, b"t", b"damaged", t0 + 100),
    ]);
    // Then other rules, which land where the batch's frames are unless it was committed.
    w.revoke(&Rule::new(Scope::Subject, b"t", b"another-key", t0))
        .unwrap();
    let reader = Ledger::open_reader(&path).unwrap();
    for (who, l) in [("writer", &w), ("reader", &reader)] {
        for iat in [t0 - 1, t0 + 50] {
            let raised = l.check(&token(b"t", b"raised", &[], iat));
            assert!(
                matches!(raised, Ok(Verdict::Revoked { .. })),
                "{who}: a token of 'raised' issued at {iat} (the committed cutoff was {t0}, \
                 the batch raised it to {}) is {raised:?}",
                t0 + 100
            );
            // The damaged key fails closed: revoked, or an error, never valid.
            let d = l.check(&token(b"t", b"damaged", &[], iat));
            assert!(
                !matches!(d, Ok(Verdict::Valid)),
                "{who}: the damaged key is {d:?}"
            );
        }
    }
    batch.unwrap();
    let mut committed = 0;
    w.for_each_record(|_, r| {
        committed += usize::from(matches!(r, Record::Rule(r) if r.at == t0 + 100));
    })
    .unwrap();
    assert_eq!(committed, 2, "the batch is not in the log");
    // The index stopped taking records (the tails hold the rest), so it is due to grow;
    // the growth cannot copy the damaged index and builds the new one from the log.
    w.wait_background()
        .expect("the growth did not rebuild the damaged index");
    let reader = Ledger::open_reader(&path).unwrap();
    for (who, l) in [("writer", &w), ("reader", &reader)] {
        let st = l.stats(t0).unwrap();
        assert!(st.shared_index && st.tail_bytes == 0, "{who}: {st:?}");
        for key in [&b"raised"[..], b"damaged"] {
            let v = l.check(&token(b"t", key, &[], t0 + 50)).unwrap();
            assert!(
                matches!(v, Verdict::Revoked { cutoff, .. } if cutoff == t0 + 100),
                "{who}: {} after the growth: {v:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
    assert_eq!(w.stats(t0).unwrap().background_error, None);
}

/// Points the shared index's slot of `key` (the writer's current one) at `offset`: the
/// one word of the index's buckets whose low 40 bits are the offset of the key's rule,
/// under a non-zero tag (FORMAT §4.2), as damage to the file would.
fn damage_slot(path: &Path, w: &Ledger, key: &[u8], offset: u64) {
    use revledger::record::Record;
    use std::os::unix::fs::FileExt;
    let mut payload = None;
    w.for_each_record(|off, r| {
        if matches!(r, Record::Rule(r) if r.key == key) {
            payload = Some(off + 8); // the payload, as slots hold it
        }
    })
    .unwrap();
    let payload = payload.unwrap();
    // The current generation's index: the only one beside the ledger once no job runs.
    let name = path.file_name().unwrap().to_str().unwrap();
    let indexes: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_str().unwrap();
            f.starts_with(&format!(".{name}.g")) && f.ends_with(".index")
        })
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let ipath = &indexes[0];
    let bytes = std::fs::read(ipath).unwrap();
    // The buckets start at the header's `buckets_offset` (FORMAT §4.1).
    let buckets = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
    let slots: Vec<usize> = (buckets / 8..bytes.len() / 8)
        .map(|i| i * 8)
        .filter(|&at| {
            let word = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            word & ((1 << 40) - 1) == payload && word >> 40 != 0
        })
        .collect();
    assert_eq!(
        slots.len(),
        1,
        "the slot of the key to damage (payload offset {payload}): words at {slots:?} of \
         {} bytes of {}",
        bytes.len(),
        ipath.display()
    );
    let word = u64::from_le_bytes(bytes[slots[0]..slots[0] + 8].try_into().unwrap());
    let bad = (word & !((1 << 40) - 1)) | offset;
    std::fs::OpenOptions::new()
        .write(true)
        .open(ipath)
        .unwrap()
        .write_all_at(&bad.to_le_bytes(), slots[0] as u64)
        .unwrap();
}

/// A slot damaged to point past the log's end (where an append's records are between
/// being indexed and committed) is not taken for such a record by a compaction: it finds
/// the damage, a growth rebuilds the index from the log, and the compaction runs again,
/// keeping the key's committed cutoff. Before, the compaction dropped the key, and its
/// tokens read "valid" (found by review).
#[test]
fn a_slot_past_the_logs_end_is_not_taken_for_an_append_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let t0 = revledger::unix_now_floor() - 1000;
    w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", t0 + 500))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"other", t0))
        .unwrap();
    damage_slot(&path, &w, b"victim", 1 << 39);
    let stats = w.compact(revledger::unix_now_floor()).unwrap();
    assert_eq!(stats.rules_kept, 2, "{stats:?}");
    assert_victim_revoked(&path, &w, t0 + 500, "after the compaction");
}

/// The victim of a damaged slot, checked on the writer and a new reader, through a
/// shared index that holds every record: revoked at `cutoff` for a token issued before.
fn assert_victim_revoked(path: &Path, w: &Ledger, cutoff: i64, when: &str) {
    let reader = Ledger::open_reader(path).unwrap();
    for (who, l) in [("writer", w), ("reader", &reader)] {
        let st = l.stats(cutoff).unwrap();
        assert!(
            st.shared_index && st.tail_bytes == 0,
            "{who} {when}: {st:?}"
        );
        let v = l.check(&token(b"t", b"victim", &[], cutoff - 1)).unwrap();
        assert!(
            matches!(v, Verdict::Revoked { cutoff: c, .. } if c == cutoff),
            "{who} {when}: a token of the victim issued at its cutoff - 1 is {v:?}"
        );
    }
}

/// A compaction that finds a slot pointing at another key's record (which it would
/// otherwise list twice, and its own key not at all) has a growth rebuild the index
/// first (found by review: the key was dropped from the file, for good).
#[test]
fn a_compaction_keeps_the_key_of_a_slot_that_points_at_another_key() {
    use revledger::record::Record;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let t0 = revledger::unix_now_floor() - 1000;
    w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", t0 + 500))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"other", t0))
        .unwrap();
    let mut other = None;
    w.for_each_record(|off, r| {
        if matches!(r, Record::Rule(r) if r.key == b"other") {
            other = Some(off + 8);
        }
    })
    .unwrap();
    damage_slot(&path, &w, b"victim", other.unwrap());
    w.compact(revledger::unix_now_floor()).unwrap();
    let mut keys = Vec::new();
    w.for_each_record(|_, r| {
        if let Record::Rule(r) = r {
            keys.push(String::from_utf8_lossy(r.key).into_owned());
        }
    })
    .unwrap();
    keys.sort();
    assert_eq!(keys, ["other", "victim"]);
    assert_victim_revoked(&path, &w, t0 + 500, "after the compaction");
}

/// A damaged index is rebuilt while compactions are due (each one used to fail on it
/// and start again in place of the growth that repairs it), and after a refused append
/// even when an earlier job ran (the refusal used to wait out that job's retry gap).
/// Found by review.
#[test]
fn a_damaged_index_is_rebuilt_while_compactions_are_due_or_after_earlier_jobs() {
    for compacting in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let w = open_writer(
            &path,
            &WriterOptions {
                compaction: compacting.then_some(revledger::CompactionPolicy {
                    ratio: 0.0001,
                    min_records: 1,
                }),
                index_keys: 1,
                ..WriterOptions::with_lifetime(3600)
            },
        )
        .unwrap();
        let t0 = revledger::unix_now_floor() - 1000;
        w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", t0 + 500))
            .unwrap();
        let keys: Vec<Vec<u8>> = (0..2000).map(|i| format!("k{i}").into_bytes()).collect();
        let rules: Vec<Rule> = keys
            .iter()
            .map(|k| Rule::new(Scope::Subject, b"t", k, t0))
            .collect();
        w.revoke_batch(&rules).unwrap();
        w.wait_background().unwrap(); // a job ran (a growth, or a compaction)
        damage_slot(&path, &w, b"victim", 8);
        // Refused by the damaged slot, committed all the same.
        w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", t0))
            .unwrap();
        w.wait_background().unwrap();
        assert_victim_revoked(
            &path,
            &w,
            t0 + 500,
            &format!("after the refused append (compacting: {compacting})"),
        );
    }
}

/// A slot damaged to point at another key's rule record cannot be told from a missing
/// key by a lookup, but a growth, which reads every slot's record, finds that the record
/// does not hash to the slot's tag and rebuilds the index from the log: the key is back
/// after the next growth. Before, the growth copied the other key and dropped this one.
#[test]
fn a_growth_rebuilds_an_index_whose_slot_points_at_another_key() {
    use revledger::record::Record;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open_writer(
        &path,
        &WriterOptions {
            compaction: None,
            index_keys: 1,
            ..WriterOptions::with_lifetime(3600)
        },
    )
    .unwrap();
    let t0 = revledger::unix_now_floor() - 1000;
    w.revoke(&Rule::new(Scope::Subject, b"t", b"victim", t0 + 500))
        .unwrap();
    w.revoke(&Rule::new(Scope::Subject, b"t", b"other", t0))
        .unwrap();
    w.wait_background().unwrap();
    let mut other = None;
    w.for_each_record(|off, r| {
        if matches!(r, Record::Rule(r) if r.key == b"other") {
            other = Some(off + 8);
        }
    })
    .unwrap();
    damage_slot(&path, &w, b"victim", other.unwrap());
    // Enough new keys for the index to grow (it holds a few dozen).
    let keys: Vec<Vec<u8>> = (0..2000).map(|i| format!("k{i}").into_bytes()).collect();
    let rules: Vec<Rule> = keys
        .iter()
        .map(|k| Rule::new(Scope::Subject, b"t", k, t0))
        .collect();
    w.revoke_batch(&rules).unwrap();
    w.wait_background().unwrap();
    let reader = Ledger::open_reader(&path).unwrap();
    for (who, l) in [("writer", &w), ("reader", &reader)] {
        let st = l.stats(t0).unwrap();
        assert!(
            st.shared_index && st.tail_bytes == 0,
            "{who}: not grown: {st:?}"
        );
        let v = l.check(&token(b"t", b"victim", &[], t0 + 100)).unwrap();
        assert!(
            matches!(v, Verdict::Revoked { cutoff, .. } if cutoff == t0 + 500),
            "{who}: the victim after the growth: {v:?}"
        );
        assert_eq!(st.live_keys, 2002, "{who}");
    }
}
