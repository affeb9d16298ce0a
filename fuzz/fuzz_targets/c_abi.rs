//! The C ABI driven by arbitrary call sequences: NULL and non-NULL pointers, lengths that
//! lie about a NULL pointer, keys over the limit, too many roles, scope values as
//! arbitrary integers, handles opened, closed and mixed (writer and readers of one file).
//!
//! Oracles: no panic reaches the boundary (libfuzzer-sys aborts on any panic, caught or
//! not); every status is the one the contract (DESIGN.md §4, include/revledger.h)
//! predicts; every verdict equals the reference model; `revledger_last_error` and
//! `revledger_status_name` always return a C string.
#![no_main]

use ::revledger::ffi::*;
use ::revledger::{Rule, Scope, Token, MAX_KEY_LEN, MAX_ROLES};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use revledger_fuzz::Model;
use std::ffi::{CStr, CString};
use std::ptr;

use revledger_status::*;

/// A rule's scope, tenant and key, owned.
type OwnedKey = (Scope, Vec<u8>, Vec<u8>);

const SLOTS: usize = 4;
const LEEWAY: i64 = 300;

/// A byte-string argument.
#[derive(Arbitrary, Debug, Clone)]
enum Arg {
    /// `{NULL, 0}`: the empty string.
    Empty,
    /// `{NULL, len}` with `len > 0`: refused.
    NullWithLen(usize),
    /// Up to a few bytes from a three-letter alphabet, so that keys collide.
    Small(Vec<u8>),
    /// `MAX_KEY_LEN + n` bytes: one over the limit or more; refused.
    TooLong(u8),
    /// Exactly `MAX_KEY_LEN` bytes: accepted.
    Longest,
}

/// The argument as owned bytes (`None` when the call must be refused).
fn bytes_of(a: &Arg) -> (Option<Vec<u8>>, revledger_bytes, Vec<u8>) {
    let mut storage = Vec::new();
    let (want, ptr, len) = match a {
        Arg::Empty => (Some(Vec::new()), ptr::null(), 0),
        Arg::NullWithLen(n) => (None, ptr::null(), (*n).max(1)),
        Arg::Small(v) => {
            storage = v.iter().take(3).map(|b| b'a' + b % 3).collect();
            (Some(storage.clone()), storage.as_ptr(), storage.len())
        }
        Arg::TooLong(n) => {
            storage = vec![b'x'; MAX_KEY_LEN + 1 + *n as usize];
            (None, storage.as_ptr(), storage.len())
        }
        Arg::Longest => {
            storage = vec![b'y'; MAX_KEY_LEN];
            (Some(storage.clone()), storage.as_ptr(), storage.len())
        }
    };
    // `storage` is moved out with the pointer into it; a Vec's heap buffer does not move.
    (want, revledger_bytes { ptr, len }, storage)
}

#[derive(Arbitrary, Debug)]
enum Roles {
    List(Vec<Arg>),
    /// `roles == NULL` with `roles_len > 0`: refused.
    NullWithLen(u16),
    /// `MAX_ROLES + 1` empty roles, really allocated: refused.
    TooMany,
}

#[derive(Arbitrary, Debug)]
struct TokenArg {
    tenant: Arg,
    subject: Arg,
    client: Arg,
    session: Arg,
    token_id: Arg,
    roles: Roles,
    issued_at: i16,
}

#[derive(Arbitrary, Debug)]
struct RuleArg {
    scope: u32,
    tenant: Arg,
    key: Arg,
    at: i16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    OpenWriter {
        slot: u8,
        lifetime: i32,
    },
    OpenReader {
        slot: u8,
    },
    OpenWithNulls {
        writer: bool,
        null_path: bool,
    },
    Close {
        slot: u8,
    },
    Revoke {
        slot: u8,
        rule: RuleArg,
    },
    RevokeNow {
        slot: u8,
        rule: RuleArg,
        null_out: bool,
    },
    RevokeBatch {
        slot: u8,
        rules: Vec<RuleArg>,
        null_rules: bool,
    },
    Sync {
        slot: u8,
    },
    Check {
        slot: u8,
        token: TokenArg,
        null_token: bool,
        null_out: bool,
    },
    Refresh {
        slot: u8,
    },
    Compact {
        slot: u8,
        now: i16,
    },
    Stats {
        slot: u8,
        null_out: bool,
    },
    StatusName(u32),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Writer,
    Reader,
}

struct Harness {
    path: CString,
    handles: [Option<(*mut revledger, Kind)>; SLOTS],
    model: Model,
    /// Effective max token lifetime once the ledger exists.
    lifetime: Option<i64>,
}

fn last_error() -> String {
    // SAFETY: revledger_last_error returns a valid NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(revledger_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn expect(got: revledger_status, want: revledger_status, what: &dyn std::fmt::Debug) {
    assert_eq!(got, want, "{what:?}: {}", last_error());
    if got != REVLEDGER_OK {
        assert!(
            !last_error().is_empty(),
            "{what:?}: failure without a message"
        );
    }
}

fn scope_of(v: u32) -> Option<Scope> {
    u8::try_from(v).ok().and_then(Scope::from_u8)
}

impl Harness {
    /// The handle in `slot` (slot numbers past the table give NULL) and its kind.
    fn handle(&self, slot: u8) -> (*mut revledger, Option<Kind>) {
        match self.handles.get(slot as usize).copied().flatten() {
            Some((h, k)) => (h, Some(k)),
            None => (ptr::null_mut(), None),
        }
    }

    fn writer_open(&self) -> bool {
        self.handles
            .iter()
            .flatten()
            .any(|(_, k)| *k == Kind::Writer)
    }

    fn free_slot(&self, slot: u8) -> Option<usize> {
        let i = slot as usize % SLOTS;
        self.handles[i].is_none().then_some(i)
    }

    /// Status a rule argument must get on a handle of `kind`, and the rule if accepted.
    fn judge_rule(kind: Option<Kind>, r: &RuleArg) -> (revledger_status, Option<OwnedKey>) {
        let (tenant, _, _) = bytes_of(&r.tenant);
        let (key, _, _) = bytes_of(&r.key);
        let Some(kind) = kind else {
            return (REVLEDGER_INVALID_ARGUMENT, None);
        };
        let (Some(scope), Some(tenant), Some(key)) = (scope_of(r.scope), tenant, key) else {
            return (REVLEDGER_INVALID_ARGUMENT, None);
        };
        if Rule::new(scope, &tenant, &key, r.at.into())
            .validate()
            .is_err()
        {
            return (REVLEDGER_INVALID_ARGUMENT, None);
        }
        if kind == Kind::Reader {
            return (REVLEDGER_READ_ONLY, None);
        }
        (REVLEDGER_OK, Some((scope, tenant, key)))
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::OpenWriter { slot, lifetime } => {
                let Some(i) = self.free_slot(*slot) else {
                    return;
                };
                let lifetime = i64::from(*lifetime);
                let (want, effective) = if lifetime < 0 {
                    (REVLEDGER_INVALID_ARGUMENT, self.lifetime)
                } else if self.writer_open() {
                    (REVLEDGER_LOCKED, self.lifetime)
                } else {
                    match self.lifetime {
                        None => (
                            REVLEDGER_OK,
                            Some(if lifetime == 0 { 86_400 } else { lifetime }),
                        ),
                        Some(cur) if lifetime != 0 && lifetime < cur => {
                            (REVLEDGER_INVALID_ARGUMENT, Some(cur))
                        }
                        Some(cur) => (REVLEDGER_OK, Some(cur.max(lifetime))),
                    }
                };
                let mut out = ptr::null_mut();
                // SAFETY: a valid C string and a writable out-pointer.
                let got = unsafe { revledger_open_writer(self.path.as_ptr(), lifetime, &mut out) };
                expect(got, want, op);
                self.lifetime = effective;
                if got == REVLEDGER_OK {
                    assert!(!out.is_null());
                    self.handles[i] = Some((out, Kind::Writer));
                } else {
                    assert!(out.is_null(), "out written on failure");
                }
            }
            Op::OpenReader { slot } => {
                let Some(i) = self.free_slot(*slot) else {
                    return;
                };
                let want = if self.lifetime.is_some() {
                    REVLEDGER_OK
                } else {
                    REVLEDGER_IO
                };
                let mut out = ptr::null_mut();
                // SAFETY: a valid C string and a writable out-pointer.
                let got = unsafe { revledger_open_reader(self.path.as_ptr(), &mut out) };
                expect(got, want, op);
                if got == REVLEDGER_OK {
                    self.handles[i] = Some((out, Kind::Reader));
                }
            }
            Op::OpenWithNulls { writer, null_path } => {
                let path = if *null_path {
                    ptr::null()
                } else {
                    self.path.as_ptr()
                };
                let mut out: *mut revledger = ptr::null_mut();
                let out_ptr = if *null_path {
                    &mut out as *mut _
                } else {
                    ptr::null_mut()
                };
                // SAFETY: NULL or valid pointers, as the header allows.
                let got = unsafe {
                    if *writer {
                        revledger_open_writer(path, 0, out_ptr)
                    } else {
                        revledger_open_reader(path, out_ptr)
                    }
                };
                expect(got, REVLEDGER_INVALID_ARGUMENT, op);
                assert!(out.is_null());
            }
            Op::Close { slot } => {
                let i = *slot as usize % SLOTS;
                let h = self.handles[i].take().map_or(ptr::null_mut(), |(h, _)| h);
                // SAFETY: a live handle or NULL; it is not used again.
                unsafe { revledger_close(h) };
            }
            Op::Revoke { slot, rule } => {
                let (h, kind) = self.handle(*slot);
                let (want, accepted) = Harness::judge_rule(kind, rule);
                let (_, tenant, _t) = bytes_of(&rule.tenant);
                let (_, key, _k) = bytes_of(&rule.key);
                // SAFETY: a live handle or NULL; byte strings valid for their lengths or NULL.
                let got = unsafe { revledger_revoke(h, rule.scope, tenant, key, rule.at.into()) };
                expect(got, want, op);
                if let Some((scope, tenant, key)) = accepted {
                    self.model
                        .apply(&Rule::new(scope, &tenant, &key, rule.at.into()));
                }
            }
            Op::RevokeNow {
                slot,
                rule,
                null_out,
            } => {
                let (h, kind) = self.handle(*slot);
                let (mut want, mut accepted) = Harness::judge_rule(kind, rule);
                if scope_of(rule.scope) == Some(Scope::Token) && want != REVLEDGER_READ_ONLY {
                    (want, accepted) = (REVLEDGER_INVALID_ARGUMENT, None);
                }
                let (_, tenant, _t) = bytes_of(&rule.tenant);
                let (_, key, _k) = bytes_of(&rule.key);
                let mut cutoff = i64::MIN;
                let out = if *null_out {
                    ptr::null_mut()
                } else {
                    &mut cutoff as *mut i64
                };
                let before = ::revledger::now_cutoff();
                // SAFETY: as for revoke; `out` NULL or writable.
                let got = unsafe { revledger_revoke_now(h, rule.scope, tenant, key, out) };
                let after = ::revledger::now_cutoff();
                if want == REVLEDGER_READ_ONLY && scope_of(rule.scope) == Some(Scope::Token) {
                    // A reader refuses before or after looking at the scope.
                    assert!(
                        got == REVLEDGER_READ_ONLY || got == REVLEDGER_INVALID_ARGUMENT,
                        "{op:?}: {got:?}"
                    );
                    return;
                }
                expect(got, want, op);
                if let Some((scope, tenant, key)) = accepted {
                    if !*null_out {
                        assert!((before..=after).contains(&cutoff), "cutoff {cutoff}");
                        self.model.apply(&Rule::new(scope, &tenant, &key, cutoff));
                    } else if before == after {
                        self.model.apply(&Rule::new(scope, &tenant, &key, after));
                    } else {
                        // The second turned during the call: the cutoff written is
                        // `before` or `after`, unknown. Tokens here are issued long
                        // before either (iat is an i16) and compaction runs at times
                        // long before either, so only the exact cutoff is unknown:
                        // i64::MAX marks the key, and checks it decides compare
                        // revoked-ness only.
                        self.model.apply(&Rule::new(scope, &tenant, &key, i64::MAX));
                    }
                } else {
                    assert_eq!(cutoff, i64::MIN, "cutoff written on failure");
                }
            }
            Op::RevokeBatch {
                slot,
                rules,
                null_rules,
            } => {
                let (h, kind) = self.handle(*slot);
                let rules = &rules[..rules.len().min(16)];
                let mut keep = Vec::new();
                let mut raw = Vec::new();
                let mut want = REVLEDGER_OK;
                let mut accepted = Vec::new();
                for r in rules {
                    let (status, acc) = Harness::judge_rule(kind, r);
                    if status == REVLEDGER_INVALID_ARGUMENT {
                        want = REVLEDGER_INVALID_ARGUMENT;
                    } else if status == REVLEDGER_READ_ONLY && want == REVLEDGER_OK {
                        want = REVLEDGER_READ_ONLY;
                    }
                    accepted.extend(acc);
                    let (_, tenant, t) = bytes_of(&r.tenant);
                    let (_, key, k) = bytes_of(&r.key);
                    keep.push((t, k));
                    raw.push(revledger_rule {
                        scope: r.scope,
                        tenant,
                        key,
                        at: r.at.into(),
                    });
                }
                let ptr_arg = if *null_rules {
                    ptr::null()
                } else {
                    raw.as_ptr()
                };
                if kind.is_none() {
                    want = REVLEDGER_INVALID_ARGUMENT;
                } else if raw.is_empty() {
                    // An empty batch writes nothing, but a reader refuses any batch.
                    want = if kind == Some(Kind::Reader) {
                        REVLEDGER_READ_ONLY
                    } else {
                        REVLEDGER_OK
                    };
                } else if *null_rules {
                    want = REVLEDGER_INVALID_ARGUMENT;
                }
                // SAFETY: a live handle or NULL; `raw.len()` rules or NULL.
                let got = unsafe { revledger_revoke_batch(h, ptr_arg, raw.len()) };
                if want == REVLEDGER_READ_ONLY
                    || (kind == Some(Kind::Reader) && want != REVLEDGER_OK)
                {
                    assert!(
                        got == REVLEDGER_READ_ONLY || got == REVLEDGER_INVALID_ARGUMENT,
                        "{op:?}: {got:?}"
                    );
                    return;
                }
                expect(got, want, op);
                if got == REVLEDGER_OK {
                    for (i, (scope, tenant, key)) in accepted.iter().enumerate() {
                        self.model
                            .apply(&Rule::new(*scope, tenant, key, rules[i].at.into()));
                    }
                }
                drop(keep);
            }
            Op::Sync { slot } => {
                let (h, kind) = self.handle(*slot);
                // SAFETY: a live handle or NULL.
                let got = unsafe { revledger_sync(h) };
                let want = match kind {
                    None => REVLEDGER_INVALID_ARGUMENT,
                    Some(Kind::Reader) => REVLEDGER_READ_ONLY,
                    Some(Kind::Writer) => REVLEDGER_OK,
                };
                expect(got, want, op);
            }
            Op::Check {
                slot,
                token,
                null_token,
                null_out,
            } => self.check(*slot, token, *null_token, *null_out),
            Op::Refresh { slot } => {
                let (h, kind) = self.handle(*slot);
                // SAFETY: a live handle or NULL.
                let got = unsafe { revledger_refresh(h) };
                let want = if kind.is_some() {
                    REVLEDGER_OK
                } else {
                    REVLEDGER_INVALID_ARGUMENT
                };
                expect(got, want, op);
            }
            Op::Compact { slot, now } => {
                let (h, kind) = self.handle(*slot);
                let now = i64::from(*now);
                // SAFETY: a live handle or NULL.
                let got = unsafe { revledger_compact(h, now) };
                let want = match kind {
                    None => REVLEDGER_INVALID_ARGUMENT,
                    Some(Kind::Reader) => REVLEDGER_READ_ONLY,
                    Some(Kind::Writer) => REVLEDGER_OK,
                };
                expect(got, want, op);
                if got == REVLEDGER_OK {
                    let lifetime = self.lifetime.expect("a writer implies a ledger");
                    self.model.compact(now, lifetime, LEEWAY);
                }
            }
            Op::Stats { slot, null_out } => {
                let (h, kind) = self.handle(*slot);
                let mut s = revledger_statistics::default();
                let out = if *null_out {
                    ptr::null_mut()
                } else {
                    &mut s as *mut _
                };
                // SAFETY: a live handle or NULL; `out` NULL or writable.
                let got = unsafe { revledger_stats(h, 0, out) };
                let want = if kind.is_none() || *null_out {
                    REVLEDGER_INVALID_ARGUMENT
                } else {
                    REVLEDGER_OK
                };
                expect(got, want, op);
                if got == REVLEDGER_OK {
                    assert_eq!(s.live_keys, self.model.keys.len() as u64, "live keys");
                    assert_eq!(Some(s.max_token_lifetime), self.lifetime);
                    assert_eq!(s.leeway, LEEWAY);
                }
            }
            Op::StatusName(v) => {
                let p = revledger_status_name(*v);
                assert!(!p.is_null());
                // SAFETY: a static NUL-terminated string.
                let name = unsafe { CStr::from_ptr(p) }.to_str().expect("ASCII");
                assert_eq!(name.starts_with("REVLEDGER_"), *v <= 7, "{v}: {name}");
            }
        }
    }

    fn check(&mut self, slot: u8, token: &TokenArg, null_token: bool, null_out: bool) {
        let (h, kind) = self.handle(slot);
        let args = [
            &token.tenant,
            &token.subject,
            &token.client,
            &token.session,
            &token.token_id,
        ];
        let mut owned: Vec<Option<Vec<u8>>> = Vec::new();
        let mut raw = Vec::new();
        let mut keep = Vec::new();
        for a in args {
            let (w, b, s) = bytes_of(a);
            owned.push(w);
            raw.push(b);
            keep.push(s);
        }
        let mut want_ok = kind.is_some() && !null_token && !null_out;
        want_ok &= owned.iter().all(Option::is_some);
        let mut role_raw: Vec<revledger_bytes> = Vec::new();
        let mut role_owned: Vec<Vec<u8>> = Vec::new();
        let (roles_ptr, roles_len) = match &token.roles {
            Roles::List(list) => {
                for a in list.iter().take(8) {
                    let (w, b, s) = bytes_of(a);
                    match w {
                        Some(v) => role_owned.push(v),
                        None => want_ok = false,
                    }
                    role_raw.push(b);
                    keep.push(s);
                }
                let p = if role_raw.is_empty() {
                    ptr::null()
                } else {
                    role_raw.as_ptr()
                };
                (p, role_raw.len())
            }
            Roles::NullWithLen(n) => {
                want_ok = false;
                (ptr::null(), usize::from(*n).max(1))
            }
            Roles::TooMany => {
                want_ok = false;
                role_raw = vec![
                    revledger_bytes {
                        ptr: ptr::null(),
                        len: 0
                    };
                    MAX_ROLES + 1
                ];
                (role_raw.as_ptr(), role_raw.len())
            }
        };
        let t = revledger_token {
            tenant: raw[0],
            subject: raw[1],
            client: raw[2],
            session: raw[3],
            token_id: raw[4],
            roles: roles_ptr,
            roles_len,
            issued_at: token.issued_at.into(),
        };
        let mut v = revledger_verdict {
            revoked: true,
            scope: revledger_scope::REVLEDGER_SCOPE_TOKEN,
            cutoff: -7,
        };
        let tp = if null_token {
            ptr::null()
        } else {
            &t as *const _
        };
        let vp = if null_out {
            ptr::null_mut()
        } else {
            &mut v as *mut _
        };
        // SAFETY: a live handle or NULL; the token's pointers are valid for their
        // lengths or NULL; `vp` is NULL or writable.
        let got = unsafe { revledger_check(h, tp, vp) };
        if !want_ok {
            expect(
                got,
                REVLEDGER_INVALID_ARGUMENT,
                &"check with a bad argument",
            );
            assert!(v.revoked && v.cutoff == -7, "verdict written on failure");
            return;
        }
        expect(got, REVLEDGER_OK, &"check");
        let o: Vec<Vec<u8>> = owned.into_iter().map(|x| x.unwrap_or_default()).collect();
        let roles: Vec<&[u8]> = role_owned.iter().map(Vec::as_slice).collect();
        let tok = Token {
            tenant: &o[0],
            subject: &o[1],
            client: &o[2],
            session: &o[3],
            token_id: &o[4],
            roles: &roles,
            issued_at: token.issued_at.into(),
        };
        let model = self.model.check(&tok);
        match model {
            ::revledger::Verdict::Valid => {
                assert!(!v.revoked, "model says valid, revledger {v:?} for {tok:?}");
                assert_eq!(v.cutoff, 0);
            }
            ::revledger::Verdict::Revoked { cutoff, .. } if cutoff == i64::MAX => {
                // Depends on a revoke_now whose cutoff was not reported: only revoked-ness.
                assert!(v.revoked, "{tok:?}");
            }
            ::revledger::Verdict::Revoked { scope, cutoff } => {
                assert!(
                    v.revoked,
                    "model says {model:?}, revledger valid for {tok:?}"
                );
                assert_eq!(v.scope as u32, scope as u32, "{tok:?}");
                assert_eq!(v.cutoff, cutoff, "{tok:?}");
            }
        }
        drop(keep);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for h in self.handles.iter_mut() {
            if let Some((p, _)) = h.take() {
                // SAFETY: a live handle, closed once.
                unsafe { revledger_close(p) };
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let dir = revledger_fuzz::scratch_dir();
    let path = CString::new(dir.path().join("l").into_os_string().into_encoded_bytes())
        .expect("no NUL in a temp path");
    let mut h = Harness {
        path,
        handles: [None; SLOTS],
        model: Model::default(),
        lifetime: None,
    };
    for op in ops.iter().take(64) {
        h.run(op);
    }
    drop(h);
    drop(dir);
});
