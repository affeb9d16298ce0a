//! The C ABI's panic boundary (DESIGN.md §4: no panic ever crosses it), provoked on
//! purpose with `revledger::testing::panic_in` (`revledger_testing_panic_in` from C;
//! tests/c/test_panic.c does the same from C): every export catches the panic; a call
//! that panicked returns `REVLEDGER_INTERNAL` saying so; the handle it was given is
//! poisoned — every later call on it returns `REVLEDGER_INTERNAL` saying why — and still
//! closes (a writer's lock is released, its records kept); other handles go on.
//!
//! Its own test binary, its tests one at a time: the hook is process-wide.

use ::revledger::ffi::*;
use ::revledger::testing;
use std::ffi::{CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::Mutex;

static HOOK: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    HOOK.lock().unwrap_or_else(|e| e.into_inner())
}

fn last_error() -> String {
    // SAFETY: revledger_last_error returns a NUL-terminated string valid until the next
    // call on this thread.
    unsafe { CStr::from_ptr(revledger_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

fn open(path: &Path, writer: bool) -> *mut revledger {
    let c = c_path(path);
    let mut h: *mut revledger = ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out-pointer.
    let s = unsafe {
        if writer {
            revledger_open_writer(c.as_ptr(), 3600, &mut h)
        } else {
            revledger_open_reader(c.as_ptr(), &mut h)
        }
    };
    assert_eq!(s, revledger_status::REVLEDGER_OK, "{}", last_error());
    h
}

fn bytes(b: &[u8]) -> revledger_bytes {
    revledger_bytes {
        ptr: b.as_ptr(),
        len: b.len(),
    }
}

fn token(subject: &[u8], iat: i64) -> revledger_token {
    revledger_token {
        tenant: bytes(b"acme"),
        subject: bytes(subject),
        client: bytes(b""),
        session: bytes(b""),
        token_id: bytes(b""),
        roles: ptr::null(),
        roles_len: 0,
        issued_at: iat,
    }
}

fn check(h: *const revledger, subject: &[u8]) -> Result<bool, revledger_status> {
    let t = token(subject, 5);
    let mut v = revledger_verdict {
        revoked: false,
        scope: revledger_scope::REVLEDGER_SCOPE_GLOBAL,
        cutoff: 0,
    };
    // SAFETY: a live handle, a valid token, a writable verdict.
    match unsafe { revledger_check(h, &t, &mut v) } {
        revledger_status::REVLEDGER_OK => Ok(v.revoked),
        s => Err(s),
    }
}

fn revoke(h: *mut revledger, subject: &[u8]) -> revledger_status {
    // SAFETY: a live handle and valid byte strings.
    unsafe {
        revledger_revoke(
            h,
            revledger_scope::REVLEDGER_SCOPE_SUBJECT as u32,
            bytes(b"acme"),
            bytes(subject),
            10,
        )
    }
}

/// Asserts that the last call failed as a poisoned handle does.
fn assert_poisoned(status: revledger_status, call: &str) {
    assert_eq!(status, revledger_status::REVLEDGER_INTERNAL, "{call}");
    let e = last_error();
    assert!(
        e.contains("poisoned") && e.contains("provoked by revledger_testing_panic_in"),
        "{call}: {e}"
    );
}

#[test]
fn a_panic_in_a_check_poisons_that_handle_only() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open(&path, true);
    let r = open(&path, false);
    let other = open(&path, false);
    assert_eq!(revoke(w, b"john"), revledger_status::REVLEDGER_OK);

    assert!(testing::panic_in(Some("revledger_check")));
    assert_eq!(check(r, b"john"), Err(revledger_status::REVLEDGER_INTERNAL));
    let e = last_error();
    assert!(
        e.contains("panic inside revledger_check") && e.contains("provoked"),
        "{e}"
    );
    // The panic fired once; the handle stays poisoned, for every call.
    assert_poisoned(check(r, b"john").unwrap_err(), "check");
    assert_poisoned(check(r, b"bruce").unwrap_err(), "check of another token");
    // SAFETY: a live (poisoned) handle.
    assert_poisoned(unsafe { revledger_refresh(r) }, "refresh");
    let mut st = revledger_statistics::default();
    // SAFETY: a live handle, a writable out-parameter.
    assert_poisoned(unsafe { revledger_stats(r, 0, &mut st) }, "stats");
    let mut heard = 0i64;
    // SAFETY: a live handle, writable out-parameters.
    assert_poisoned(
        unsafe { revledger_freshness(r, &mut heard, ptr::null_mut(), ptr::null_mut()) },
        "freshness",
    );
    // Other handles on the same ledger are unaffected.
    assert_eq!(check(other, b"john"), Ok(true));
    assert_eq!(check(w, b"john"), Ok(true));
    // SAFETY: live handles, closed once; a poisoned handle still closes.
    unsafe {
        revledger_close(r);
        revledger_close(other);
        revledger_close(w);
    }
}

#[test]
fn a_poisoned_writer_refuses_writes_and_still_closes_releasing_its_lock() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open(&path, true);
    assert_eq!(revoke(w, b"john"), revledger_status::REVLEDGER_OK);
    // SAFETY: a live handle.
    assert_eq!(unsafe { revledger_sync(w) }, revledger_status::REVLEDGER_OK);

    assert!(testing::panic_in(Some("revledger_revoke")));
    assert_eq!(
        revoke(w, b"mike"),
        revledger_status::REVLEDGER_INTERNAL,
        "{}",
        last_error()
    );
    assert_poisoned(revoke(w, b"mike"), "revoke");
    // SAFETY: a live (poisoned) handle.
    assert_poisoned(unsafe { revledger_sync(w) }, "sync");
    // SAFETY: as above.
    assert_poisoned(unsafe { revledger_compact(w, 0) }, "compact");
    // SAFETY: as above.
    assert_poisoned(unsafe { revledger_wait_background(w) }, "wait_background");
    // SAFETY: a live handle, closed once.
    unsafe { revledger_close(w) };

    // The lock is released and the ledger holds what was committed before the panic
    // (the provoked panic fired before the revoke did anything).
    let w = open(&path, true);
    assert_eq!(check(w, b"john"), Ok(true));
    assert_eq!(check(w, b"mike"), Ok(false));
    // SAFETY: a live handle, closed once.
    unsafe { revledger_close(w) };
}

#[test]
fn a_panic_in_close_still_frees_the_handle_and_releases_the_lock() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open(&path, true);
    assert_eq!(revoke(w, b"john"), revledger_status::REVLEDGER_OK);
    assert!(testing::panic_in(Some("revledger_close")));
    // SAFETY: a live handle, closed once.
    unsafe { revledger_close(w) };
    assert!(last_error().contains("panic inside revledger_close"));
    let w = open(&path, true); // not Locked: the handle was dropped while unwinding
    assert_eq!(check(w, b"john"), Ok(true));
    // SAFETY: a live handle, closed once.
    unsafe { revledger_close(w) };
}

#[test]
fn a_panic_in_check_jwt_poisons_the_ledger_and_the_mapping() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let w = open(&path, true);
    let mut claims: *mut revledger_claims = ptr::null_mut();
    let mut fresh: *mut revledger_claims = ptr::null_mut();
    // SAFETY: NUL-terminated specs, writable out-pointers.
    unsafe {
        assert_eq!(
            revledger_claims_new(c"generic".as_ptr(), &mut claims),
            revledger_status::REVLEDGER_OK
        );
        assert_eq!(
            revledger_claims_new(c"generic".as_ptr(), &mut fresh),
            revledger_status::REVLEDGER_OK
        );
    }
    let json = br#"{"sub":"john","iat":5}"#;
    let mut v = revledger_verdict {
        revoked: true,
        scope: revledger_scope::REVLEDGER_SCOPE_TOKEN,
        cutoff: 9,
    };
    assert!(testing::panic_in(Some("revledger_check_claims")));
    // SAFETY: live handles, a valid byte string, a writable verdict (all calls below).
    unsafe {
        assert_eq!(
            revledger_check_claims(w, claims, bytes(json), &mut v),
            revledger_status::REVLEDGER_INTERNAL
        );
        assert_eq!(v.cutoff, 9, "the out-parameter was written");
        assert_poisoned(
            revledger_check_claims(w, fresh, bytes(json), &mut v),
            "check_claims with a fresh mapping on the poisoned ledger",
        );
        let w2 = open(&path, false);
        assert_poisoned(
            revledger_check_claims(w2, claims, bytes(json), &mut v),
            "check_claims with the poisoned mapping on a fresh ledger",
        );
        assert_eq!(
            revledger_check_claims(w2, fresh, bytes(json), &mut v),
            revledger_status::REVLEDGER_OK
        );
        revledger_claims_free(claims);
        revledger_claims_free(fresh);
        revledger_close(w2);
        revledger_close(w);
    }
}

#[test]
fn exports_without_a_status_catch_their_panics() {
    let _one = one_at_a_time();
    assert!(testing::panic_in(Some("revledger_last_error")));
    let e = last_error();
    assert!(e.contains("revledger_last_error failed"), "{e}");
    // Once: the next call answers normally (the message of that panic, recorded when the
    // thread-local could still be written).
    assert!(last_error().contains("panic inside revledger_last_error"));

    assert!(testing::panic_in(Some("revledger_status_name")));
    // SAFETY: a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(revledger_status_name(0)) };
    assert_eq!(name.to_str().unwrap(), "unknown status");
    // SAFETY: as above.
    let name = unsafe { CStr::from_ptr(revledger_status_name(0)) };
    assert_eq!(name.to_str().unwrap(), "REVLEDGER_OK");

    assert!(testing::panic_in(Some("revledger_version")));
    // SAFETY: a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(revledger_version()) };
    assert_eq!(v.to_str().unwrap(), ::revledger::VERSION);

    assert!(testing::panic_in(Some("revledger_writer_options_init")));
    // SAFETY: zeroes are a valid bit pattern for this plain C struct.
    let mut o: revledger_writer_options = unsafe { std::mem::zeroed() };
    // SAFETY: a writable struct.
    unsafe { revledger_writer_options_init(&mut o) };
    assert_eq!(o.struct_size, 0, "options written by a call that panicked");
    assert!(last_error().contains("panic inside revledger_writer_options_init"));
    // SAFETY: as above.
    unsafe { revledger_writer_options_init(&mut o) };
    assert_ne!(o.struct_size, 0);

    assert!(testing::panic_in(Some("revledger_open_reader")));
    let mut h: *mut revledger = ptr::null_mut();
    // SAFETY: a NUL-terminated path and a writable out-pointer.
    let s = unsafe { revledger_open_reader(c"/nonexistent".as_ptr(), &mut h) };
    assert_eq!(s, revledger_status::REVLEDGER_INTERNAL);
    assert!(h.is_null());

    assert!(!testing::panic_in(Some("revledger_no_such_function")));
    // SAFETY: a NUL-terminated name.
    let s = unsafe { revledger_testing_panic_in(c"no_such_function".as_ptr()) };
    assert_eq!(s, revledger_status::REVLEDGER_INVALID_ARGUMENT);
    // Disarming works: armed, then disarmed, nothing panics.
    assert!(testing::panic_in(Some("revledger_version")));
    assert!(testing::panic_in(None));
    assert!(last_error().contains("no_such_function"));
}
