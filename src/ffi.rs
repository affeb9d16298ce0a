//! The C ABI (DESIGN.md §4), exported from the `cdylib` and `staticlib`; cbindgen turns
//! this file into `include/revledger.h`.
//!
//! Conventions, as in rustls-ffi: every function returns a [`revledger_status`] (except
//! `close`, `last_error`, `version`); outputs come last as out-parameters and are written
//! only on success; a `const revledger *` first parameter means no mutation; byte strings
//! are `(ptr, len)` pairs where `{NULL, 0}` is the empty string; enum values coming from
//! C are taken as integers and checked. Every export runs inside a panic boundary, so no
//! unwind ever crosses into C; a handle (ledger or claim mapping) whose call panicked is
//! poisoned: a panic may have left it half-updated, so every later call on it fails with
//! `REVLEDGER_INTERNAL` (only `close`/`free` still work). On failure,
//! `revledger_last_error()` describes the error.
#![allow(non_camel_case_types)]

use crate::claims::ClaimMapping;
use crate::error::Error;
use crate::ledger::{Ledger, WriterOptions};
use crate::rule::{Rule, Scope, Token, Verdict, MAX_KEY_LEN, MAX_ROLES};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// An open ledger handle (writer or reader). Opaque; free it with `revledger_close`.
/// Thread safety: `revledger_check` and `revledger_refresh` may run on one handle from
/// many threads at once, concurrently with `revledger_revoke`/`revledger_sync` on it;
/// `revledger_close` must not race with any other call on the same handle.
pub struct revledger {
    ledger: Ledger,
    /// Set when a call on this handle panicked: what panicked.
    poisoned: OnceLock<String>,
}

/// A compiled claim mapping (DESIGN.md §7): where the tenant, subject, roles, client,
/// session, token id and `iat` are found in a JWT payload. Opaque; made by
/// `revledger_claims_new`, freed by `revledger_claims_free`. Immutable: one mapping may
/// serve any number of threads and ledgers at once.
pub struct revledger_claims {
    mapping: ClaimMapping,
    /// Set when a call using this mapping panicked: what panicked.
    poisoned: OnceLock<String>,
}

/// A byte string: `len` bytes at `ptr`. `{NULL, 0}` is the empty string; `ptr == NULL`
/// with `len > 0` is `REVLEDGER_INVALID_ARGUMENT`. Bytes are borrowed for the call only.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct revledger_bytes {
    /// First byte, or NULL when `len` is 0.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

/// Status of a call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum revledger_status {
    /// Success.
    REVLEDGER_OK = 0,
    /// A null pointer, a bad length, an out-of-range enum value, a key over its limit,
    /// or a value the ledger refuses (e.g. a smaller max token lifetime). Nothing changed.
    REVLEDGER_INVALID_ARGUMENT,
    /// The operating system refused an operation (file missing, permission, disk full).
    REVLEDGER_IO,
    /// The file is damaged; the message names the byte offset.
    REVLEDGER_CORRUPT,
    /// Another writer holds the ledger.
    REVLEDGER_LOCKED,
    /// A write on a handle opened with `revledger_open_reader`.
    REVLEDGER_READ_ONLY,
    /// Not a revledger file, or one of an unknown format version.
    REVLEDGER_INCOMPATIBLE,
    /// A bug in revledger (including a caught panic); the message says what.
    REVLEDGER_INTERNAL,
}

/// Scope of a rule. Values are checked: anything outside 0..=6 given to a function is
/// `REVLEDGER_INVALID_ARGUMENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum revledger_scope {
    /// Every token.
    REVLEDGER_SCOPE_GLOBAL = 0,
    /// Every token of a tenant (key empty).
    REVLEDGER_SCOPE_TENANT,
    /// A user's tokens; key = `sub`.
    REVLEDGER_SCOPE_SUBJECT,
    /// Tokens carrying a role/group/permission; key = the entitlement string.
    REVLEDGER_SCOPE_ROLE,
    /// Tokens issued to a client app; key = `azp`/`client_id`.
    REVLEDGER_SCOPE_CLIENT,
    /// Tokens of a login session; key = `sid`.
    REVLEDGER_SCOPE_SESSION,
    /// One token; key = `jti`, time = the token's `exp`.
    REVLEDGER_SCOPE_TOKEN,
}

/// A scope value as received from C: an integer, checked before use. In the header it
/// is spelled `revledger_scope` (see cbindgen.toml).
pub type revledger_scope_value = u32;

/// The claims of a token to check. A `len == 0` byte string means "absent".
#[repr(C)]
pub struct revledger_token {
    /// Tenant (may be empty).
    pub tenant: revledger_bytes,
    /// `sub`.
    pub subject: revledger_bytes,
    /// `azp` / `client_id`, or empty.
    pub client: revledger_bytes,
    /// `sid`, or empty.
    pub session: revledger_bytes,
    /// `jti`, or empty.
    pub token_id: revledger_bytes,
    /// `roles_len` entitlement strings; may be NULL when `roles_len` is 0.
    pub roles: *const revledger_bytes,
    /// Number of roles (at most 4096).
    pub roles_len: usize,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

/// The answer of `revledger_check`. When `revoked` is false, `scope` is
/// `REVLEDGER_SCOPE_GLOBAL` and `cutoff` 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct revledger_verdict {
    /// Whether the token is revoked.
    pub revoked: bool,
    /// Scope of the deciding rule.
    pub scope: revledger_scope,
    /// Cutoff of the deciding rule (Unix seconds); for `REVLEDGER_SCOPE_TOKEN`, the `exp`
    /// the rule was recorded with.
    pub cutoff: i64,
}

/// One rule for `revledger_revoke_batch`.
#[repr(C)]
pub struct revledger_rule {
    /// Scope (checked, 0..=6).
    pub scope: revledger_scope_value,
    /// Tenant.
    pub tenant: revledger_bytes,
    /// Key (empty for global and tenant rules).
    pub key: revledger_bytes,
    /// Cutoff, or the token's `exp` for `REVLEDGER_SCOPE_TOKEN`.
    pub at: i64,
}

/// Figures about a ledger, from `revledger_stats`. (Named apart from the function: in C
/// a typedef and a function cannot share a name.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct revledger_statistics {
    /// Rule records in the log, duplicates included.
    pub rule_records: u64,
    /// Distinct keys with a rule.
    pub live_keys: u64,
    /// Keys whose rule can no longer revoke an unexpired token.
    pub expired_keys: u64,
    /// Bytes of committed log, header included.
    pub log_bytes: u64,
    /// Size of the file.
    pub file_bytes: u64,
    /// Bytes of memory held by this handle's index.
    pub index_bytes: u64,
    /// Effective maximum token lifetime, seconds.
    pub max_token_lifetime: i64,
    /// Clock-skew leeway, seconds.
    pub leeway: i64,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn fail(status: revledger_status, msg: impl AsRef<str>) -> revledger_status {
    set_last_error(msg.as_ref());
    status
}

fn status_of(e: &Error) -> revledger_status {
    use revledger_status::*;
    match e {
        Error::InvalidArgument(_) => REVLEDGER_INVALID_ARGUMENT,
        Error::Io { .. } => REVLEDGER_IO,
        Error::Corrupt { .. } => REVLEDGER_CORRUPT,
        Error::Locked(_) => REVLEDGER_LOCKED,
        Error::ReadOnly => REVLEDGER_READ_ONLY,
        Error::Incompatible(_) => REVLEDGER_INCOMPATIBLE,
        Error::Internal(_) => REVLEDGER_INTERNAL,
    }
}

fn from_error(e: Error) -> revledger_status {
    fail(status_of(&e), e.to_string())
}

type FfiResult<T> = Result<T, revledger_status>;

fn invalid(msg: impl AsRef<str>) -> revledger_status {
    fail(revledger_status::REVLEDGER_INVALID_ARGUMENT, msg)
}

/// Names the rule of a batch that the last error (invalid argument) is about.
#[cold]
fn in_rule(i: usize) -> revledger_status {
    let msg = LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned());
    invalid(format!("rule {i}: {msg}"))
}

/// What a caught panic says.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs the body of the export `name` so that no panic unwinds into C.
fn boundary(name: &'static str, body: impl FnOnce() -> FfiResult<()>) -> revledger_status {
    catch(name, || {
        test_panic(name);
        body()
    })
}

/// [`boundary`] for an export whose body works on a handle through [`poisoning`] (where
/// a test's provoked panic fires, to poison it).
fn catch(name: &'static str, body: impl FnOnce() -> FfiResult<()>) -> revledger_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => revledger_status::REVLEDGER_OK,
        Ok(Err(status)) => status,
        Err(panic) => fail(
            revledger_status::REVLEDGER_INTERNAL,
            format!(
                "panic inside {name} (a bug; please report it): {}",
                panic_message(&*panic)
            ),
        ),
    }
}

/// Runs the body of an export that returns no status: a panic gives `fallback` (and sets
/// the last error when it can).
fn guard<T>(name: &'static str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(|| {
        test_panic(name);
        body()
    })) {
        Ok(v) => v,
        Err(panic) => {
            let msg = format!(
                "panic inside {name} (a bug; please report it): {}",
                panic_message(&*panic)
            );
            let _ = catch_unwind(AssertUnwindSafe(|| set_last_error(&msg)));
            fallback
        }
    }
}

/// The error of a call on a poisoned handle.
fn poisoned_error(what: &str, why: &str) -> revledger_status {
    fail(
        revledger_status::REVLEDGER_INTERNAL,
        format!(
            "this {what} is poisoned: an earlier call on it panicked ({why}), which may have \
             left it half-updated; every call on it fails. Close it and open a new one"
        ),
    )
}

/// Runs `body` of the export `name` on the ledger of the handle `h` (from [`handle`]: not
/// poisoned), and poisons the handle if `body` panics.
fn poisoning(
    h: &revledger,
    name: &'static str,
    body: impl FnOnce(&Ledger) -> FfiResult<()>,
) -> FfiResult<()> {
    match catch_unwind(AssertUnwindSafe(|| {
        test_panic(name);
        body(&h.ledger)
    })) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic_message(&*panic);
            let _ = h.poisoned.set(why);
            std::panic::resume_unwind(panic) // reported by the export's boundary
        }
    }
}

/// The names of the exports, for `revledger_testing_panic_in`.
const EXPORTS: &[&str] = &[
    "revledger_open_writer",
    "revledger_open_reader",
    "revledger_writer_options_init",
    "revledger_open_writer_with",
    "revledger_wait_background",
    "revledger_close",
    "revledger_revoke",
    "revledger_revoke_now",
    "revledger_revoke_batch",
    "revledger_sync",
    "revledger_check",
    "revledger_claims_new",
    "revledger_claims_free",
    "revledger_check_claims",
    "revledger_check_jwt",
    "revledger_check_jwt_ptr",
    "revledger_refresh",
    "revledger_compact",
    "revledger_stats",
    "revledger_dropped_bytes",
    "revledger_freshness",
    "revledger_freshness_state",
    "revledger_last_error",
    "revledger_status_name",
    "revledger_version",
];

/// Whether a test armed a panic (one relaxed load per call otherwise).
static PANIC_ARMED: AtomicBool = AtomicBool::new(false);
/// The export whose next call panics (tests of the panic boundary).
static PANIC_IN: Mutex<Option<&'static str>> = Mutex::new(None);

/// Panics if a test asked the next call of `name` to.
#[inline(always)]
fn test_panic(name: &'static str) {
    if PANIC_ARMED.load(Ordering::Relaxed) {
        test_panic_slow(name);
    }
}

#[cold]
fn test_panic_slow(name: &'static str) {
    let mut armed = PANIC_IN.lock().unwrap_or_else(|e| e.into_inner());
    if *armed == Some(name) {
        *armed = None;
        PANIC_ARMED.store(false, Ordering::Relaxed);
        drop(armed);
        panic!("provoked by revledger_testing_panic_in(\"{name}\")");
    }
}

/// Makes the next call of the export `name` panic inside revledger (`None` disarms);
/// `false` when no export has that name. See `revledger_testing_panic_in`.
pub(crate) fn arm_test_panic(name: Option<&str>) -> bool {
    let found = match name {
        None => None,
        Some(n) => match EXPORTS.iter().find(|e| **e == n) {
            Some(e) => Some(*e),
            None => return false,
        },
    };
    let mut armed = PANIC_IN.lock().unwrap_or_else(|e| e.into_inner());
    *armed = found;
    PANIC_ARMED.store(found.is_some(), Ordering::Relaxed);
    true
}

/// One of a token's or a rule's keys: [`bytes_within`] no longer than [`MAX_KEY_LEN`], so
/// that the token needs no other check of its lengths.
///
/// # Safety
/// As [`bytes_within`].
#[inline(always)]
unsafe fn key_bytes<'a>(b: revledger_bytes, what: &str) -> FfiResult<&'a [u8]> {
    // SAFETY: forwarded caller contract.
    unsafe { bytes_within(b, what, MAX_KEY_LEN) }
}

/// Borrows a byte string for the duration of the call, refusing a length over `limit`
/// (at most `isize::MAX`: the most the argument may hold) before a slice is made of it, so
/// that an absurd length never becomes a slice, even one that is not read. Inlined: a
/// check borrows up to 21 byte strings (the profile showed the call itself costing more
/// than the checks); the error paths stay out of line.
///
/// # Safety
/// As [`bytes_within`].
#[inline(always)]
unsafe fn bytes_within<'a>(b: revledger_bytes, what: &str, limit: usize) -> FfiResult<&'a [u8]> {
    if b.len == 0 {
        return Ok(&[]);
    }
    if b.ptr.is_null() || b.len > limit {
        return Err(bad_bytes(b, what, limit));
    }
    // SAFETY: non-null, len within `limit` ≤ isize::MAX, readable for the call (caller
    // contract).
    Ok(unsafe { std::slice::from_raw_parts(b.ptr, b.len) })
}

/// The error of [`bytes_within`]: a NULL pointer with a length, a length past
/// `isize::MAX`, or else a key over [`MAX_KEY_LEN`].
#[cold]
#[inline(never)]
fn bad_bytes(b: revledger_bytes, what: &str, limit: usize) -> revledger_status {
    if b.ptr.is_null() {
        invalid(format!("{what}: ptr is NULL but len is {}", b.len))
    } else if b.len > isize::MAX as usize {
        invalid(format!("{what}: len {} is not a valid length", b.len))
    } else {
        invalid(format!(
            "{what} is {} bytes long; the limit is {limit}",
            b.len
        ))
    }
}

/// The scope, tenant and key of a rule given as separate arguments.
///
/// # Safety
/// As [`bytes_within`], for `tenant` and `key`.
unsafe fn scoped_key<'a>(
    scope: revledger_scope_value,
    tenant: revledger_bytes,
    key: revledger_bytes,
) -> FfiResult<(Scope, &'a [u8], &'a [u8])> {
    let scope = scope_of(scope)?;
    // SAFETY: forwarded caller contract.
    let tenant = unsafe { key_bytes(tenant, "tenant")? };
    // SAFETY: forwarded caller contract.
    let key = unsafe { key_bytes(key, "key")? };
    Ok((scope, tenant, key))
}

/// The handle, unless it is NULL or poisoned.
///
/// # Safety
/// `ptr` is NULL or a handle returned by an open function and not yet closed.
#[inline(always)]
unsafe fn handle<'a>(ptr: *const revledger) -> FfiResult<&'a revledger> {
    // SAFETY: caller contract: NULL (refused here) or a live Box<revledger> pointer.
    match unsafe { ptr.as_ref() } {
        Some(h) => match h.poisoned.get() {
            Some(why) => Err(poisoned_error("ledger handle", why)),
            None => Ok(h),
        },
        None => Err(invalid("ledger handle is NULL")),
    }
}

fn scope_of(value: u32) -> FfiResult<Scope> {
    u8::try_from(value)
        .ok()
        .and_then(Scope::from_u8)
        .ok_or_else(|| invalid(format!("scope {value} is not a revledger_scope (0..=6)")))
}

fn c_scope(s: Scope) -> revledger_scope {
    use revledger_scope::*;
    match s {
        Scope::Global => REVLEDGER_SCOPE_GLOBAL,
        Scope::Tenant => REVLEDGER_SCOPE_TENANT,
        Scope::Subject => REVLEDGER_SCOPE_SUBJECT,
        Scope::Role => REVLEDGER_SCOPE_ROLE,
        Scope::Client => REVLEDGER_SCOPE_CLIENT,
        Scope::Session => REVLEDGER_SCOPE_SESSION,
        Scope::Token => REVLEDGER_SCOPE_TOKEN,
    }
}

fn c_verdict(v: Verdict) -> revledger_verdict {
    match v {
        Verdict::Valid => revledger_verdict {
            revoked: false,
            scope: revledger_scope::REVLEDGER_SCOPE_GLOBAL,
            cutoff: 0,
        },
        Verdict::Revoked { scope, cutoff } => revledger_verdict {
            revoked: true,
            scope: c_scope(scope),
            cutoff,
        },
    }
}

/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn path_arg<'a>(path: *const c_char) -> FfiResult<&'a std::path::Path> {
    if path.is_null() {
        return Err(invalid("path is NULL"));
    }
    // SAFETY: non-null and NUL-terminated (caller contract).
    let c = unsafe { CStr::from_ptr(path) };
    use std::os::unix::ffi::OsStrExt;
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(
        c.to_bytes(),
    )))
}

/// # Safety
/// `out` is NULL or valid for a write of a handle pointer.
unsafe fn open_into(
    out: *mut *mut revledger,
    open: impl FnOnce() -> crate::Result<Ledger>,
) -> FfiResult<()> {
    if out.is_null() {
        return Err(invalid("out is NULL"));
    }
    let ledger = open().map_err(from_error)?;
    let raw = Box::into_raw(Box::new(revledger {
        ledger,
        poisoned: OnceLock::new(),
    }));
    // SAFETY: `out` is non-null and writable (caller contract).
    unsafe { out.write(raw) };
    Ok(())
}

/// Opens (creating it if missing) the ledger at `path` for writing and takes its
/// exclusive lock, held until `revledger_close`.
///
/// `max_token_lifetime_s`: on creation, the longest lifetime of the tokens to cover
/// (0 = one day); on reopening, 0 keeps the ledger's value, a larger value raises it, a
/// smaller one is `REVLEDGER_INVALID_ARGUMENT`. Another writer: `REVLEDGER_LOCKED`.
/// On success `*out` receives a handle to free with `revledger_close`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_open_writer(
    path: *const c_char,
    max_token_lifetime_s: i64,
    out: *mut *mut revledger,
) -> revledger_status {
    boundary("revledger_open_writer", || {
        // SAFETY: forwarded caller contract.
        let path = unsafe { path_arg(path)? };
        // SAFETY: forwarded caller contract.
        unsafe {
            open_into(out, || {
                Ledger::open_writer(path, &WriterOptions::with_lifetime(max_token_lifetime_s))
            })
        }
    })
}

/// Opens the ledger at `path` read-only. Readers see every record the writer commits on
/// their next check. On success `*out` receives a handle to free with `revledger_close`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_open_reader(
    path: *const c_char,
    out: *mut *mut revledger,
) -> revledger_status {
    boundary("revledger_open_reader", || {
        // SAFETY: forwarded caller contract.
        let path = unsafe { path_arg(path)? };
        // SAFETY: forwarded caller contract.
        unsafe { open_into(out, || Ledger::open_reader(path)) }
    })
}

/// When a writer compacts on its own (`revledger_writer_options.compaction`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum revledger_compaction {
    /// In a background thread of the writer, on the policy of `compact_ratio` and
    /// `compact_min_records` (the default).
    REVLEDGER_COMPACTION_BACKGROUND = 0,
    /// Never on its own (the shared index still grows with the ledger); only
    /// `revledger_compact` drops rules.
    REVLEDGER_COMPACTION_OFF = 1,
}

/// How `revledger_open_writer_with` opens (and, if missing, creates) a ledger. Fill it
/// with `revledger_writer_options_init`, then change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct revledger_writer_options {
    /// `sizeof(revledger_writer_options)`, set by `revledger_writer_options_init`: a struct
    /// not initialized by it is refused.
    pub struct_size: usize,
    /// Longest lifetime of the tokens to cover, seconds: on creation 0 means one day; on
    /// reopening 0 keeps the ledger's, larger raises it, smaller is refused.
    pub max_token_lifetime_s: i64,
    /// Clock-skew leeway of a new ledger, seconds; -1: the default (300).
    pub leeway_s: i64,
    /// 1: keep the valid prefix of a log damaged in the middle instead of failing with
    /// `REVLEDGER_CORRUPT` (`revledger_dropped_bytes` says how many bytes were cut); 0:
    /// fail.
    /// A byte, not a C `bool`: any other value is refused, never read as a Rust `bool`.
    pub keep_valid_prefix: u8,
    /// A `revledger_compaction` value.
    pub compaction: u32,
    /// Background compaction runs once the records appended since the last compaction that
    /// added no key exceed this fraction of the rules the file started with (default 0.75).
    pub compact_ratio: f64,
    /// ... and at least this many records (default 16384).
    pub compact_min_records: u64,
    /// Permission bits of the files the writer creates (ledger, index, compacted files),
    /// e.g. 0640 for readers in the file's group (default 0600). Compactions keep them.
    /// Refused: bits beyond 0777, no owner read and write, write for every user.
    pub file_mode: u32,
    /// Group id of the files the writer creates; -1: the process's group.
    pub file_group: i64,
}

/// Fills `*options` with the defaults (see each field).
///
/// # Safety
/// `options` is NULL (a no-op) or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_writer_options_init(options: *mut revledger_writer_options) {
    guard("revledger_writer_options_init", (), || {
        // SAFETY: forwarded caller contract.
        unsafe { writer_options_init(options) }
    })
}

/// # Safety
/// As `revledger_writer_options_init`.
unsafe fn writer_options_init(options: *mut revledger_writer_options) {
    if options.is_null() {
        return;
    }
    let d = WriterOptions::default();
    let policy = d.compaction.unwrap_or_default();
    let o = revledger_writer_options {
        struct_size: std::mem::size_of::<revledger_writer_options>(),
        max_token_lifetime_s: 0,
        leeway_s: -1,
        keep_valid_prefix: 0,
        compaction: revledger_compaction::REVLEDGER_COMPACTION_BACKGROUND as u32,
        compact_ratio: policy.ratio,
        compact_min_records: policy.min_records,
        file_mode: d.file_mode,
        file_group: -1,
    };
    // SAFETY: non-null and writable (caller contract).
    unsafe { options.write(o) };
}

fn writer_options(o: &revledger_writer_options) -> FfiResult<WriterOptions> {
    if o.struct_size != std::mem::size_of::<revledger_writer_options>() {
        return Err(invalid(format!(
            "options.struct_size is {}, not sizeof(revledger_writer_options) = {}: fill the \
             options with revledger_writer_options_init first",
            o.struct_size,
            std::mem::size_of::<revledger_writer_options>()
        )));
    }
    let compaction = match o.compaction {
        0 => Some(crate::CompactionPolicy {
            ratio: o.compact_ratio,
            min_records: o.compact_min_records,
        }),
        1 => None,
        v => {
            return Err(invalid(format!(
                "options.compaction {v} is not a revledger_compaction (0 or 1)"
            )))
        }
    };
    let keep_valid_prefix = match o.keep_valid_prefix {
        0 => false,
        1 => true,
        v => {
            return Err(invalid(format!(
                "options.keep_valid_prefix {v} is not 0 or 1"
            )))
        }
    };
    let leeway = match o.leeway_s {
        -1 => None,
        l if l < 0 => return Err(invalid("options.leeway_s must be -1 (default) or >= 0")),
        l => Some(l),
    };
    let file_group =
        match o.file_group {
            -1 => None,
            g => Some(u32::try_from(g).map_err(|_| {
                invalid(format!("options.file_group {g} is not a group id (or -1)"))
            })?),
        };
    Ok(WriterOptions {
        max_token_lifetime: o.max_token_lifetime_s,
        leeway,
        keep_valid_prefix,
        compaction,
        file_mode: o.file_mode,
        file_group,
        ..WriterOptions::default()
    })
}

/// Opens (creating it if missing) the ledger at `path` for writing with `options` (NULL:
/// the defaults of `revledger_writer_options_init`), and takes its exclusive lock, held
/// until `revledger_close`. The writer compacts in a background thread by default.
/// On success `*out` receives a handle to free with `revledger_close`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `options` is NULL or points to options
/// filled by `revledger_writer_options_init`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_open_writer_with(
    path: *const c_char,
    options: *const revledger_writer_options,
    out: *mut *mut revledger,
) -> revledger_status {
    boundary("revledger_open_writer_with", || {
        // SAFETY: forwarded caller contract.
        let path = unsafe { path_arg(path)? };
        // SAFETY: NULL or valid options (caller contract).
        let options = match unsafe { options.as_ref() } {
            Some(o) => writer_options(o)?,
            None => WriterOptions::default(),
        };
        // SAFETY: forwarded caller contract.
        unsafe { open_into(out, || Ledger::open_writer(path, &options)) }
    })
}

/// Writer: waits for the background job running now (a compaction or the growth of the
/// shared index), if any, and returns its status; `REVLEDGER_OK` when none runs. A
/// failed job changes no answer; the writer retries it later.
///
/// # Safety
/// `ledger` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn revledger_wait_background(ledger: *mut revledger) -> revledger_status {
    catch("revledger_wait_background", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_wait_background", |ledger| {
            ledger.wait_background().map_err(from_error)
        })
    })
}

/// Closes a handle: a writer makes its records durable and releases its lock. NULL is a
/// no-op. The handle must not be used afterwards, nor be in use by another thread.
///
/// # Safety
/// `ledger` is NULL or a handle from an open function, not yet closed.
#[no_mangle]
pub unsafe extern "C" fn revledger_close(ledger: *mut revledger) {
    if ledger.is_null() {
        return;
    }
    // SAFETY: a live pointer from Box::into_raw in open_into (caller contract). Owned from
    // here: a panic below drops it while unwinding, so the handle is freed (and a writer's
    // lock released) whatever happens. A poisoned handle is freed too.
    let owned = unsafe { Box::from_raw(ledger) };
    guard("revledger_close", (), move || drop(owned));
}

/// Records "scope changed at `at`": tokens in scope issued before `at` are revoked.
/// For `REVLEDGER_SCOPE_TOKEN`, `key` is the jti and `at` the token's `exp`. The key must
/// be empty for GLOBAL and TENANT and non-empty otherwise; tenant and key are at most
/// 4096 bytes. Returns once the record is committed (visible to every reader's next
/// check); durable after `revledger_sync`. A reader handle: `REVLEDGER_READ_ONLY`.
///
/// # Safety
/// `ledger` is NULL or a live handle; `tenant` and `key` follow the `revledger_bytes`
/// rules.
#[no_mangle]
pub unsafe extern "C" fn revledger_revoke(
    ledger: *mut revledger,
    scope: revledger_scope_value,
    tenant: revledger_bytes,
    key: revledger_bytes,
    at: i64,
) -> revledger_status {
    catch("revledger_revoke", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_revoke", |ledger| {
            // SAFETY: forwarded caller contract.
            let (scope, tenant, key) = unsafe { scoped_key(scope, tenant, key)? };
            ledger
                .revoke(&Rule::new(scope, tenant, key, at))
                .map_err(from_error)
        })
    })
}

/// Revokes as of now: the current time rounded up to the next second (a token issued
/// in the same second counts as before). Not for `REVLEDGER_SCOPE_TOKEN`. On success
/// `*cutoff_out` (if not NULL) receives the cutoff written.
///
/// # Safety
/// As `revledger_revoke`; `cutoff_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_revoke_now(
    ledger: *mut revledger,
    scope: revledger_scope_value,
    tenant: revledger_bytes,
    key: revledger_bytes,
    cutoff_out: *mut i64,
) -> revledger_status {
    catch("revledger_revoke_now", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_revoke_now", |ledger| {
            // SAFETY: forwarded caller contract.
            let (scope, tenant, key) = unsafe { scoped_key(scope, tenant, key)? };
            let at = ledger.revoke_now(scope, tenant, key).map_err(from_error)?;
            if !cutoff_out.is_null() {
                // SAFETY: non-null and writable (caller contract).
                unsafe { cutoff_out.write(at) };
            }
            Ok(())
        })
    })
}

/// Records `rules_len` rules in one write: all are checked first, then all are
/// committed together, or none is. A reader handle: `REVLEDGER_READ_ONLY`, even for an
/// empty batch.
///
/// # Safety
/// `ledger` is NULL or a live handle; `rules` is NULL (only with `rules_len == 0`) or
/// points to `rules_len` rules whose byte strings follow the `revledger_bytes` rules.
#[no_mangle]
pub unsafe extern "C" fn revledger_revoke_batch(
    ledger: *mut revledger,
    rules: *const revledger_rule,
    rules_len: usize,
) -> revledger_status {
    catch("revledger_revoke_batch", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_revoke_batch", |ledger| {
            if rules_len == 0 {
                // Nothing to write; but a reader handle is refused as for any batch.
                return if ledger.is_writer() {
                    Ok(())
                } else {
                    Err(from_error(Error::ReadOnly))
                };
            }
            if rules.is_null() {
                return Err(invalid("rules is NULL but rules_len is not 0"));
            }
            if rules_len > isize::MAX as usize / std::mem::size_of::<revledger_rule>() {
                return Err(invalid("rules_len is not a valid length"));
            }
            // SAFETY: non-null, `rules_len` elements readable (caller contract).
            let raw = unsafe { std::slice::from_raw_parts(rules, rules_len) };
            let mut out = Vec::with_capacity(raw.len());
            for (i, r) in raw.iter().enumerate() {
                let scope = scope_of(r.scope).map_err(|_| {
                    invalid(format!(
                        "rule {i}: scope {} is not a revledger_scope",
                        r.scope
                    ))
                })?;
                // SAFETY: forwarded caller contract.
                let tenant = unsafe { key_bytes(r.tenant, "tenant") }.map_err(|_| in_rule(i))?;
                // SAFETY: forwarded caller contract.
                let key = unsafe { key_bytes(r.key, "key") }.map_err(|_| in_rule(i))?;
                out.push(Rule::new(scope, tenant, key, r.at));
            }
            ledger.revoke_batch(&out).map_err(from_error)
        })
    })
}

/// Makes every committed record durable (fdatasync). Many revokes, one sync: group commit.
///
/// # Safety
/// `ledger` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn revledger_sync(ledger: *mut revledger) -> revledger_status {
    catch("revledger_sync", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_sync", |ledger| {
            ledger.sync().map_err(from_error)
        })
    })
}

/// Is the token revoked? Writes the verdict to `*out`. Thread-safe; lock-free and free of
/// system calls unless the writer committed since the last check. An error (for
/// instance `REVLEDGER_CORRUPT` when the ledger became unreadable) never means "valid":
/// the gateway decides what to do with a token it could not check.
///
/// # Safety
/// `ledger` is NULL or a live handle; `token` is NULL or a valid token whose byte strings
/// follow the `revledger_bytes` rules; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_check(
    ledger: *const revledger,
    token: *const revledger_token,
    out: *mut revledger_verdict,
) -> revledger_status {
    catch("revledger_check", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_check", |ledger| {
            // SAFETY: NULL or a valid token (caller contract).
            let Some(t) = (unsafe { token.as_ref() }) else {
                return Err(invalid("token is NULL"));
            };
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            if t.roles_len > MAX_ROLES {
                return Err(invalid(format!(
                    "token has {} roles; the limit is {MAX_ROLES}",
                    t.roles_len
                )));
            }
            if t.roles_len > 0 && t.roles.is_null() {
                return Err(invalid("roles is NULL but roles_len is not 0"));
            }
            let raw_roles: &[revledger_bytes] = if t.roles_len == 0 {
                &[]
            } else {
                // SAFETY: non-null, `roles_len` (≤ MAX_ROLES) elements readable (contract).
                unsafe { std::slice::from_raw_parts(t.roles, t.roles_len) }
            };
            // Up to 16 roles on the stack, written once each (no initialisation, no
            // length kept in memory: this loop is on every check's path); more on the heap.
            let mut stack = [MaybeUninit::<&[u8]>::uninit(); 16];
            let heap: Vec<&[u8]>;
            let roles: &[&[u8]] = if raw_roles.len() <= stack.len() {
                for (slot, r) in stack.iter_mut().zip(raw_roles) {
                    // SAFETY: forwarded caller contract.
                    slot.write(unsafe { key_bytes(*r, "role")? });
                }
                // SAFETY: the loop wrote the first `raw_roles.len()` slots (it returned
                // early otherwise), and `MaybeUninit<T>` has the layout of `T`.
                unsafe { std::slice::from_raw_parts(stack.as_ptr().cast(), raw_roles.len()) }
            } else {
                heap = raw_roles
                    .iter()
                    // SAFETY: forwarded caller contract.
                    .map(|r| unsafe { key_bytes(*r, "role") })
                    .collect::<FfiResult<_>>()?;
                &heap
            };
            // SAFETY (all five): forwarded caller contract.
            let token = Token {
                tenant: unsafe { key_bytes(t.tenant, "tenant")? },
                subject: unsafe { key_bytes(t.subject, "subject")? },
                roles,
                client: unsafe { key_bytes(t.client, "client")? },
                session: unsafe { key_bytes(t.session, "session")? },
                token_id: unsafe { key_bytes(t.token_id, "token_id")? },
                issued_at: t.issued_at,
            };
            // Every key was checked against MAX_KEY_LEN above, the roles' count too.
            let verdict = c_verdict(ledger.check_valid(&token).map_err(|e| from_error(*e))?);
            // SAFETY: non-null and writable (caller contract).
            unsafe { out.write(verdict) };
            Ok(())
        })
    })
}

/// Compiles a claim mapping. `spec` is a built-in name (`generic`, `auth0`, `keycloak`,
/// `entra`) or the JSON text of a pointer spec, e.g.
/// `{"tenant":["/tid"],"subject":["/sub"],"roles":["/realm_access/roles"]}` (the forms
/// and key conventions are in the README, "Claim mappings"). An unknown name or a
/// misshapen spec: `REVLEDGER_INVALID_ARGUMENT`, the message saying what is wrong. On
/// success `*out` receives a mapping to free with `revledger_claims_free`.
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_claims_new(
    spec: *const c_char,
    out: *mut *mut revledger_claims,
) -> revledger_status {
    boundary("revledger_claims_new", || {
        if spec.is_null() {
            return Err(invalid("spec is NULL"));
        }
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        // SAFETY: non-null and NUL-terminated (caller contract).
        let spec = unsafe { CStr::from_ptr(spec) };
        let spec = spec
            .to_str()
            .map_err(|_| invalid("spec is not valid UTF-8"))?;
        let mapping = ClaimMapping::new(spec).map_err(from_error)?;
        let raw = Box::into_raw(Box::new(revledger_claims {
            mapping,
            poisoned: OnceLock::new(),
        }));
        // SAFETY: non-null and writable (caller contract).
        unsafe { out.write(raw) };
        Ok(())
    })
}

/// Frees a mapping made by `revledger_claims_new`. NULL is a no-op. It must not be in
/// use by another thread.
///
/// # Safety
/// `claims` is NULL or a mapping from `revledger_claims_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn revledger_claims_free(claims: *mut revledger_claims) {
    if claims.is_null() {
        return;
    }
    // SAFETY: a live pointer from Box::into_raw in revledger_claims_new (contract). Owned
    // from here: freed even if something below panics (dropped while unwinding).
    let owned = unsafe { Box::from_raw(claims) };
    guard("revledger_claims_free", (), move || drop(owned));
}

/// The mapping, unless it is NULL or poisoned.
///
/// # Safety
/// `claims` is NULL or a live mapping.
unsafe fn claims_arg<'a>(claims: *const revledger_claims) -> FfiResult<&'a revledger_claims> {
    // SAFETY: caller contract: NULL (refused here) or a live Box<revledger_claims>.
    match unsafe { claims.as_ref() } {
        Some(c) => match c.poisoned.get() {
            Some(why) => Err(poisoned_error("claim mapping", why)),
            None => Ok(c),
        },
        None => Err(invalid("claims is NULL")),
    }
}

/// The checks behind `revledger_check_claims` and `revledger_check_jwt`.
///
/// # Safety
/// As theirs.
unsafe fn check_with(
    ledger: *const revledger,
    claims: *const revledger_claims,
    input: revledger_bytes,
    what: &str,
    out: *mut revledger_verdict,
    name: &'static str,
    check: impl FnOnce(&Ledger, &ClaimMapping, &[u8]) -> crate::Result<Verdict>,
) -> revledger_status {
    catch(name, || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        // SAFETY: forwarded caller contract.
        let c = unsafe { claims_arg(claims)? };
        // SAFETY: forwarded caller contract.
        let limit = if what == "jwt" {
            crate::claims::MAX_JWT_LEN
        } else {
            crate::claims::MAX_CLAIMS_LEN
        };
        // SAFETY: forwarded caller contract; the length is checked before a slice is made.
        let input = unsafe { bytes_within(input, what, limit)? };
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let checked = catch_unwind(AssertUnwindSafe(|| {
            test_panic(name);
            check(&h.ledger, &c.mapping, input)
        }));
        let verdict = match checked {
            Ok(v) => c_verdict(v.map_err(from_error)?),
            Err(panic) => {
                // Either may hold what the panic left half-done.
                let why = panic_message(&*panic);
                let _ = h.poisoned.set(why.clone());
                let _ = c.poisoned.set(why);
                std::panic::resume_unwind(panic)
            }
        };
        // SAFETY: non-null and writable (caller contract).
        unsafe { out.write(verdict) };
        Ok(())
    })
}

/// Is the token whose JWT payload is `json` (a JSON object) revoked? Reads the payload
/// through `claims` and checks the token, as `revledger_check` does. A payload the
/// mapping cannot read (not a JSON object, no `iat`, a claim of the wrong type, over a
/// limit): `REVLEDGER_INVALID_ARGUMENT`, the message naming the claim. Thread-safe.
///
/// # Safety
/// `ledger` is NULL or a live handle; `claims` is NULL or a live mapping; `json` follows
/// the `revledger_bytes` rules; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_check_claims(
    ledger: *const revledger,
    claims: *const revledger_claims,
    json: revledger_bytes,
    out: *mut revledger_verdict,
) -> revledger_status {
    // SAFETY: forwarded caller contract.
    unsafe {
        check_with(
            ledger,
            claims,
            json,
            "json",
            out,
            "revledger_check_claims",
            Ledger::check_claims,
        )
    }
}

/// Is the token `jwt`, a compact JWS `header.payload.signature`, revoked? The payload is
/// base64url-decoded and checked as `revledger_check_claims` does. **The signature is
/// NOT verified** (the header is not read either): a deny layer after authentication,
/// never instead of it. A token without three dot-separated parts, whose payload (the
/// part between the first and the last dot) is not base64url (trailing `=` tolerated),
/// or whose payload the mapping cannot read: `REVLEDGER_INVALID_ARGUMENT`. The header
/// and signature parts are not decoded, so bytes there that base64url does not allow
/// change nothing. Thread-safe.
///
/// # Safety
/// `ledger` is NULL or a live handle; `claims` is NULL or a live mapping; `jwt` follows
/// the `revledger_bytes` rules; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_check_jwt(
    ledger: *const revledger,
    claims: *const revledger_claims,
    jwt: revledger_bytes,
    out: *mut revledger_verdict,
) -> revledger_status {
    // SAFETY: forwarded caller contract.
    unsafe {
        check_with(
            ledger,
            claims,
            jwt,
            "jwt",
            out,
            "revledger_check_jwt",
            Ledger::check_jwt,
        )
    }
}

/// `revledger_check_jwt` with the token as a pointer and a length rather than a
/// `revledger_bytes` passed by value, for foreign-function interfaces that cannot pass
/// a struct by value at full speed: LuaJIT's compiler leaves any call with a struct
/// argument to its interpreter (bindings/lua calls this one). Same answers and errors.
///
/// # Safety
/// As `revledger_check_jwt`, with `jwt`/`jwt_len` following the `revledger_bytes` rules.
#[no_mangle]
pub unsafe extern "C" fn revledger_check_jwt_ptr(
    ledger: *const revledger,
    claims: *const revledger_claims,
    jwt: *const u8,
    jwt_len: usize,
    out: *mut revledger_verdict,
) -> revledger_status {
    let jwt = revledger_bytes {
        ptr: jwt,
        len: jwt_len,
    };
    // SAFETY: forwarded caller contract.
    unsafe {
        check_with(
            ledger,
            claims,
            jwt,
            "jwt",
            out,
            "revledger_check_jwt_ptr",
            Ledger::check_jwt,
        )
    }
}

/// Brings the handle's index up to date with the log now (checks do it on their own;
/// this moves the work off a request's path, e.g. from a timer).
///
/// # Safety
/// `ledger` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn revledger_refresh(ledger: *const revledger) -> revledger_status {
    catch("revledger_refresh", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_refresh", |ledger| {
            ledger.refresh().map_err(from_error)
        })
    })
}

/// Drops the rules that can no longer revoke an unexpired token as of `now` (Unix
/// seconds) by rewriting the ledger and swapping it in atomically; readers follow.
/// Writer only (`REVLEDGER_READ_ONLY` otherwise).
///
/// # Safety
/// `ledger` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn revledger_compact(ledger: *mut revledger, now: i64) -> revledger_status {
    catch("revledger_compact", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_compact", |ledger| {
            ledger.compact(now).map(|_| ()).map_err(from_error)
        })
    })
}

/// Writes figures about the ledger as of `now` (Unix seconds) to `*out`.
///
/// # Safety
/// `ledger` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_stats(
    ledger: *const revledger,
    now: i64,
    out: *mut revledger_statistics,
) -> revledger_status {
    catch("revledger_stats", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_stats", |ledger| {
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            let s = ledger.stats(now).map_err(from_error)?;
            let c = revledger_statistics {
                rule_records: s.rule_records,
                live_keys: s.live_keys,
                expired_keys: s.expired_keys,
                log_bytes: s.log_bytes,
                file_bytes: s.file_bytes,
                index_bytes: s.index_bytes,
                max_token_lifetime: s.max_token_lifetime,
                leeway: s.leeway,
            };
            // SAFETY: non-null and writable (caller contract).
            unsafe { out.write(c) };
            Ok(())
        })
    })
}

/// Writes to `*out` how many bytes of a damaged log opening this writer cut off because
/// its options asked to keep the valid prefix (`keep_valid_prefix`): 0 when nothing was
/// cut, and for a reader.
///
/// # Safety
/// `ledger` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_dropped_bytes(
    ledger: *const revledger,
    out: *mut u64,
) -> revledger_status {
    catch("revledger_dropped_bytes", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_dropped_bytes", |ledger| {
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            // SAFETY: non-null and writable (caller contract).
            unsafe { out.write(ledger.dropped_bytes()) };
            Ok(())
        })
    })
}

/// How fresh the ledger is, for a ledger fed from a stream by `revledger sync`.
/// `*last_heard_unix` receives the Unix second at which the sync process last heard from
/// the stream (a new entry or a heartbeat, at most a second or so apart while the stream
/// answers), or 0 when no sync process ever recorded a position: a gateway that wants
/// answers at most N seconds old fails closed when `now - *last_heard_unix > N`.
/// `last_id_ms` and `last_id_seq` (each may be NULL) receive the id of the last stream
/// entry applied (`<ms>-<seq>`; 0 and 0 when none). With both NULL the call takes no
/// lock: cheap enough for every request.
///
/// # Safety
/// `ledger` is NULL or a live handle; `last_heard_unix` is NULL or writable;
/// `last_id_ms` and `last_id_seq` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_freshness(
    ledger: *const revledger,
    last_heard_unix: *mut i64,
    last_id_ms: *mut u64,
    last_id_seq: *mut u64,
) -> revledger_status {
    catch("revledger_freshness", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_freshness", |ledger| {
            if last_heard_unix.is_null() {
                return Err(invalid("last_heard_unix is NULL"));
            }
            let (heard, id) = if last_id_ms.is_null() && last_id_seq.is_null() {
                let heard = ledger.last_heard().map_err(from_error)?;
                (heard.unwrap_or(0), crate::StreamId::ZERO)
            } else {
                match ledger.stream_position().map_err(from_error)? {
                    Some(p) => (p.last_heard, p.last_id),
                    None => (0, crate::StreamId::ZERO),
                }
            };
            // SAFETY (all three): non-null ones are writable (caller contract).
            unsafe {
                last_heard_unix.write(heard);
                if !last_id_ms.is_null() {
                    last_id_ms.write(id.ms);
                }
                if !last_id_seq.is_null() {
                    last_id_seq.write(id.seq);
                }
            }
            Ok(())
        })
    })
}

/// `revledger_freshness`'s `last_heard_unix`, with whether the ledger may lack rules its
/// stream carried: `*degraded` receives 0 when it holds every one (or when no sync
/// process ever wrote a position), else bits 1 (entries that were not valid rules were
/// skipped), 2 (entries were refused for their signature), 4 (the stream was trimmed
/// past the ledger's position). A degraded ledger stays so until an operator resolves it
/// (docs/SYNC.md §5); a gateway that checks freshness treats it as stale. Lock-free:
/// cheap enough for every request.
///
/// # Safety
/// `ledger` is NULL or a live handle; `last_heard_unix` and `degraded` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn revledger_freshness_state(
    ledger: *const revledger,
    last_heard_unix: *mut i64,
    degraded: *mut u32,
) -> revledger_status {
    catch("revledger_freshness_state", || {
        // SAFETY: forwarded caller contract.
        let h = unsafe { handle(ledger)? };
        poisoning(h, "revledger_freshness_state", |ledger| {
            if last_heard_unix.is_null() || degraded.is_null() {
                return Err(invalid("last_heard_unix or degraded is NULL"));
            }
            let heard = ledger.last_heard().map_err(from_error)?.unwrap_or(0);
            let flags = ledger.degraded().map_err(from_error)?;
            // SAFETY: both non-null and writable (caller contract).
            unsafe {
                last_heard_unix.write(heard);
                degraded.write(u32::from(flags));
            }
            Ok(())
        })
    })
}

/// The message of the last failed call on this thread ("" if none). Valid until the next
/// revledger call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn revledger_last_error() -> *const c_char {
    const FAILED: &CStr = c"revledger_last_error failed (a bug; please report it)";
    let fallback = FAILED.as_ptr();
    guard("revledger_last_error", fallback, || {
        // `try_with`: during thread exit the thread-local may be gone already.
        LAST_ERROR
            .try_with(|e| e.try_borrow().map_or(fallback, |m| m.as_ptr()))
            .unwrap_or(fallback)
    })
}

/// A static name for a status code, e.g. "REVLEDGER_CORRUPT"; "unknown status" for
/// values outside the enum.
#[no_mangle]
pub extern "C" fn revledger_status_name(status: u32) -> *const c_char {
    guard("revledger_status_name", c"unknown status".as_ptr(), || {
        status_name(status).as_ptr()
    })
}

fn status_name(status: u32) -> &'static CStr {
    match status {
        0 => c"REVLEDGER_OK",
        1 => c"REVLEDGER_INVALID_ARGUMENT",
        2 => c"REVLEDGER_IO",
        3 => c"REVLEDGER_CORRUPT",
        4 => c"REVLEDGER_LOCKED",
        5 => c"REVLEDGER_READ_ONLY",
        6 => c"REVLEDGER_INCOMPATIBLE",
        7 => c"REVLEDGER_INTERNAL",
        _ => c"unknown status",
    }
}

/// The library version, e.g. "0.1.0" (static; do not free).
#[no_mangle]
pub extern "C" fn revledger_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    let v = V.as_ptr() as *const c_char;
    guard("revledger_version", v, || v)
}

/// **For tests of the panic boundary only.** Makes the next call of the export named
/// `function` (e.g. `"revledger_check"`) panic inside revledger, once, so that a test can
/// see the panic caught: the call returns `REVLEDGER_INTERNAL` (or, for a function that
/// returns no status, its documented fallback) and the handle it was given is poisoned.
/// NULL disarms. An unknown name is `REVLEDGER_INVALID_ARGUMENT`. Process-wide; a
/// program that never calls it pays one relaxed atomic load per call.
///
/// # Safety
/// `function` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn revledger_testing_panic_in(function: *const c_char) -> revledger_status {
    boundary("revledger_testing_panic_in", || {
        let name = if function.is_null() {
            None
        } else {
            // SAFETY: non-null and NUL-terminated (caller contract).
            let c = unsafe { CStr::from_ptr(function) };
            Some(
                c.to_str()
                    .map_err(|_| invalid("function is not valid UTF-8"))?,
            )
        };
        if arm_test_panic(name) {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} is not a revledger function",
                name.unwrap_or_default()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::ptr;

    fn open(path: &std::path::Path, writer: bool) -> *mut revledger {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mut h: *mut revledger = ptr::null_mut();
        // SAFETY: a NUL-terminated path and a writable out-pointer.
        let s = unsafe {
            if writer {
                revledger_open_writer(c.as_ptr(), 3600, &mut h)
            } else {
                revledger_open_reader(c.as_ptr(), &mut h)
            }
        };
        assert_eq!(s, revledger_status::REVLEDGER_OK);
        h
    }

    /// A batch on a reader handle is READ_ONLY whatever its length, as `revoke_batch` of
    /// the Rust API is; an empty batch used to return OK there.
    #[test]
    fn empty_batch_on_a_reader_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let w = open(&path, true);
        let r = open(&path, false);
        // SAFETY: live handles; NULL rules with length 0 is allowed.
        unsafe {
            assert_eq!(
                revledger_revoke_batch(r, ptr::null(), 0),
                revledger_status::REVLEDGER_READ_ONLY
            );
            assert_eq!(
                revledger_revoke_batch(w, ptr::null(), 0),
                revledger_status::REVLEDGER_OK
            );
            revledger_close(r);
            revledger_close(w);
        }
    }
}
