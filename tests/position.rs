//! The stream position record (docs/FORMAT.md §3.4): written with the rules it covers in
//! one write, read by every handle, kept across reopening and compaction, never ahead of
//! its rules after a crash; exposed through the C ABI as `revledger_freshness`.

use revledger::ffi::{revledger_close, revledger_freshness, revledger_open_reader};
use revledger::{
    Error, Ledger, Rule, Scope, StreamId, StreamPosition, Token, Verdict, WriterOptions,
};
use std::ffi::CString;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn writer(path: &Path) -> Ledger {
    Ledger::open_writer(path, &WriterOptions::with_lifetime(3600)).unwrap()
}

fn pos(ms: u64, heard: i64) -> StreamPosition {
    StreamPosition::new("revocations", StreamId::new(ms, 0), heard)
}

fn subject_cutoff(l: &Ledger, sub: &[u8]) -> Option<i64> {
    let t = Token {
        tenant: b"acme",
        subject: sub,
        issued_at: i64::MIN,
        ..Token::default()
    };
    match l.check(&t).unwrap() {
        Verdict::Revoked { cutoff, .. } => Some(cutoff),
        Verdict::Valid => None,
    }
}

#[test]
fn a_batch_and_its_position_are_seen_together_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let r = Ledger::open_reader(&path).unwrap();
    assert_eq!(r.stream_position().unwrap(), None);
    assert_eq!(r.last_heard().unwrap(), None);

    let rules = [
        Rule::new(Scope::Subject, b"acme", b"john", 100),
        Rule::new(Scope::Subject, b"acme", b"mike", 200),
    ];
    w.revoke_batch_at_position(&rules, &pos(1_000, 50)).unwrap();
    assert_eq!(subject_cutoff(&r, b"john"), Some(100));
    assert_eq!(subject_cutoff(&r, b"mike"), Some(200));
    assert_eq!(r.stream_position().unwrap(), Some(pos(1_000, 50)));
    assert_eq!(r.last_heard().unwrap(), Some(50));
    assert_eq!(w.stream_position().unwrap(), Some(pos(1_000, 50)));

    // A heartbeat: no rules, same id, newer time.
    w.revoke_batch_at_position(&[], &pos(1_000, 51)).unwrap();
    assert_eq!(r.last_heard().unwrap(), Some(51));
    assert_eq!(r.stream_position().unwrap().unwrap().last_id.ms, 1_000);
}

#[test]
fn a_bad_rule_or_position_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let good = Rule::new(Scope::Subject, b"acme", b"john", 100);
    let bad = Rule::new(Scope::Subject, b"acme", b"", 100);
    assert!(w
        .revoke_batch_at_position(&[good, bad], &pos(1, 1))
        .is_err());
    let nameless = StreamPosition::new("", StreamId::new(1, 0), 1);
    assert!(w.revoke_batch_at_position(&[good], &nameless).is_err());
    assert_eq!(subject_cutoff(&w, b"john"), None);
    assert_eq!(w.stream_position().unwrap(), None);
    let r = Ledger::open_reader(&path).unwrap();
    assert!(matches!(
        r.revoke_batch_at_position(&[good], &pos(1, 1)),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn the_last_position_wins_and_survives_reopening_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    {
        let w = writer(&path);
        for i in 0..10u64 {
            let rule = Rule::new(Scope::Role, b"acme", b"admin", 100 + i as i64);
            w.revoke_batch_at_position(&[rule], &pos(1_000 + i, 500 + i as i64))
                .unwrap();
        }
        w.sync().unwrap();
    }
    let w = writer(&path);
    assert_eq!(w.stream_position().unwrap(), Some(pos(1_009, 509)));
    let r = Ledger::open_reader(&path).unwrap();
    w.compact(1_000).unwrap();
    // The reader follows the new file, which carries the position.
    assert_eq!(r.stream_position().unwrap(), Some(pos(1_009, 509)));
    assert_eq!(w.stream_position().unwrap(), Some(pos(1_009, 509)));
    // After a compaction the next batch's position still replaces it.
    w.revoke_batch_at_position(&[], &pos(1_010, 600)).unwrap();
    drop(w);
    let again = Ledger::open_reader(&path).unwrap();
    assert_eq!(again.stream_position().unwrap(), Some(pos(1_010, 600)));
    let w = writer(&path);
    w.compact(1_000).unwrap();
    assert_eq!(w.stream_position().unwrap(), Some(pos(1_010, 600)));
    assert!(w.stats(1_000).unwrap().generation >= 2);
}

#[test]
fn a_ledger_without_a_position_compacts_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke(&Rule::new(Scope::Subject, b"acme", b"john", 100))
        .unwrap();
    w.compact(200).unwrap();
    assert_eq!(w.stream_position().unwrap(), None);
    assert_eq!(subject_cutoff(&w, b"john"), Some(100));
}

/// Offset of the last frame the ledger holds.
fn last_frame_offset(l: &Ledger) -> u64 {
    let mut last = 0;
    l.for_each_record(|offset, _| last = offset).unwrap();
    last
}

#[test]
fn a_torn_write_keeps_rules_without_their_position_never_the_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    w.revoke_batch_at_position(&[Rule::new(Scope::Subject, b"acme", b"a", 10)], &pos(1, 1))
        .unwrap();
    w.sync().unwrap();
    let synced_end = w.stats(0).unwrap().log_bytes;
    w.revoke_batch_at_position(
        &[
            Rule::new(Scope::Subject, b"acme", b"b", 20),
            Rule::new(Scope::Subject, b"acme", b"c", 30),
        ],
        &pos(2, 2),
    )
    .unwrap();
    let position_frame = last_frame_offset(&w);
    let end = w.stats(0).unwrap().log_bytes;
    drop(w); // syncs; below we make it look as if the crash tore the last frame instead
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&vec![0xA5; (end - position_frame) as usize], position_frame)
        .unwrap();
    f.write_all_at(&synced_end.to_le_bytes(), 136).unwrap(); // synced_len
    drop(f);

    let w = writer(&path);
    // The rules of the torn batch that made it are there; the position is the older one,
    // so a sync process reads those entries again (harmless: rules are idempotent).
    assert_eq!(subject_cutoff(&w, b"b"), Some(20));
    assert_eq!(subject_cutoff(&w, b"c"), Some(30));
    assert_eq!(w.stream_position().unwrap(), Some(pos(1, 1)));
    assert_eq!(w.stats(0).unwrap().dropped_bytes, end - position_frame);
}

#[test]
fn freshness_through_the_c_abi() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: valid C string and out pointer.
    let st = unsafe { revledger_open_reader(cpath.as_ptr(), &mut h) };
    assert_eq!(st as u32, 0);
    let (mut heard, mut ms, mut seq) = (-1i64, 7u64, 7u64);
    // SAFETY: live handle, writable outputs.
    let st = unsafe { revledger_freshness(h, &mut heard, &mut ms, &mut seq) };
    assert_eq!(st as u32, 0);
    assert_eq!((heard, ms, seq), (0, 0, 0), "never heard: zeros");

    w.revoke_batch_at_position(
        &[],
        &StreamPosition::new("s", StreamId::new(1_700_000_000_123, 9), 1_700_000_001),
    )
    .unwrap();
    // SAFETY: as above.
    let st = unsafe { revledger_freshness(h, &mut heard, &mut ms, &mut seq) };
    assert_eq!(st as u32, 0);
    assert_eq!((heard, ms, seq), (1_700_000_001, 1_700_000_000_123, 9));
    let mut heard_only = 0i64;
    // SAFETY: NULL id outputs are allowed.
    let st = unsafe {
        revledger_freshness(
            h,
            &mut heard_only,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st as u32, 0);
    assert_eq!(heard_only, 1_700_000_001);
    // SAFETY: NULL handle / NULL required output are refused, not dereferenced.
    unsafe {
        let st = revledger_freshness(std::ptr::null(), &mut heard, &mut ms, &mut seq);
        assert_eq!(st as u32, 1, "NULL handle is INVALID_ARGUMENT");
        let st = revledger_freshness(h, std::ptr::null_mut(), &mut ms, &mut seq);
        assert_eq!(st as u32, 1, "NULL last_heard_unix is INVALID_ARGUMENT");
        revledger_close(h);
    }
}

#[test]
fn a_degraded_position_is_seen_by_readers_kept_by_compaction_and_cleared_only_by_a_new_position() {
    use revledger::ffi::revledger_freshness_state;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = writer(&path);
    let r = Ledger::open_reader(&path).unwrap();
    assert_eq!(r.degraded().unwrap(), 0, "no position: not degraded");
    let mut p = pos(1_000, 50);
    p.degraded = StreamPosition::REFUSED | StreamPosition::TRIMMED;
    w.revoke_batch_at_position(&[Rule::new(Scope::Subject, b"acme", b"x", 5)], &p)
        .unwrap();
    assert_eq!(r.degraded().unwrap(), 6);
    assert_eq!(r.stream_position().unwrap().unwrap().degraded, 6);
    w.compact(revledger::unix_now_floor()).unwrap();
    w.sync().unwrap();
    drop(r);
    let r = Ledger::open_reader(&path).unwrap();
    assert_eq!(
        r.degraded().unwrap(),
        6,
        "compaction keeps the degraded bits"
    );

    // Through the C ABI, lock-free.
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut h = std::ptr::null_mut();
    // SAFETY: a valid C string and out-pointer.
    assert_eq!(
        unsafe { revledger_open_reader(c_path.as_ptr(), &mut h) } as i32,
        0
    );
    let (mut heard, mut bits) = (0i64, 0u32);
    // SAFETY: a live handle and writable out-pointers.
    let st = unsafe { revledger_freshness_state(h, &mut heard, &mut bits) };
    assert_eq!((st as i32, heard, bits), (0, 50, 6));
    // SAFETY: a live handle; NULL out-pointers are refused, not written.
    let st = unsafe { revledger_freshness_state(h, std::ptr::null_mut(), &mut bits) };
    assert_ne!(st as i32, 0);

    // A later position with no bit: resolved.
    w.revoke_batch_at_position(&[], &pos(1_000, 60)).unwrap();
    assert_eq!(r.degraded().unwrap(), 0);
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            revledger_freshness_state(h, &mut heard, &mut bits) as i32,
            0
        );
        revledger_close(h);
    }
    assert_eq!((heard, bits), (60, 0));
    let mut bad = pos(1_000, 70);
    bad.degraded = 8;
    assert!(matches!(
        w.revoke_batch_at_position(&[], &bad),
        Err(Error::InvalidArgument(_))
    ));
}
