//! `revledger.Ledger`: an open ledger, writer or reader, over the Rust crate.
//!
//! Every call runs under a shared lock on the handle's state and `close` takes it
//! exclusively: `close` waits for the calls in progress on other threads, and no call
//! ever runs on a freed handle. `check` keeps the GIL (it takes a fraction of what
//! releasing and retaking it would); calls that may do I/O or wait (open, revoke,
//! sync, compact, stats, close) release it.

use std::borrow::Cow;

use parking_lot::RwLock;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};
use smallvec::SmallVec;

use crate::claims::Claims;
use crate::convert::{self, key, opt_key};
use crate::{fork, types};

/// Roles kept on the stack up to this many (a token usually has a few).
const INLINE_ROLES: usize = 16;

/// An open ledger: a writer (one per ledger, can revoke) or a reader.
///
/// `check` is thread-safe and runs concurrently with other calls on the same handle:
/// share one handle among threads. `close` waits for the calls in progress on other
/// threads, then frees the handle; every later call raises `LedgerClosed`. Use it as a
/// `with` block. A handle inherited by a forked child is unusable there (it raises
/// `LedgerClosed`): open a new one in the child.
#[pyclass(module = "revledger", name = "Ledger", frozen)]
pub struct Ledger {
    /// The ledger, `None` once closed.
    inner: RwLock<Option<revledger::Ledger>>,
    /// The path it was opened at, as `os.fsdecode` gives it.
    path: Py<PyString>,
    writer: bool,
    /// The fork generation it was opened in (see `fork`), and by which process.
    generation: u64,
    opened_by: u32,
}

impl Ledger {
    fn new(ledger: revledger::Ledger, path: Py<PyString>) -> Ledger {
        Ledger {
            writer: ledger.is_writer(),
            inner: RwLock::new(Some(ledger)),
            path,
            generation: fork::generation(),
            opened_by: std::process::id(),
        }
    }

    fn forked(&self) -> bool {
        fork::generation() != self.generation
    }

    fn closed_error(&self, py: Python<'_>) -> PyErr {
        if self.forked() {
            types::closed(
                py,
                &format!(
                    "this handle was opened in process {} before a fork; \
                     open a new handle in the child",
                    self.opened_by
                ),
            )
        } else {
            types::closed(py, "the ledger handle is closed")
        }
    }

    /// Runs `f` on the open ledger, holding the GIL.
    fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&revledger::Ledger) -> revledger::Result<R>,
    ) -> PyResult<R> {
        if self.forked() {
            return Err(self.closed_error(py));
        }
        let result = match self.inner.read().as_ref() {
            Some(ledger) => f(ledger),
            None => return Err(self.closed_error(py)),
        };
        result.map_err(|e| types::error(py, e))
    }

    /// Runs `f` on the open ledger with the GIL released.
    fn detached<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&revledger::Ledger) -> revledger::Result<R> + Send,
    ) -> PyResult<R> {
        if self.forked() {
            return Err(self.closed_error(py));
        }
        match py.detach(|| self.inner.read().as_ref().map(f)) {
            Some(result) => result.map_err(|e| types::error(py, e)),
            None => Err(self.closed_error(py)),
        }
    }

    fn open(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        open: impl FnOnce(&std::path::Path) -> revledger::Result<revledger::Ledger> + Send,
    ) -> PyResult<Ledger> {
        let (path, text) = convert::path(path)?;
        let ledger = py.detach(|| open(&path)).map_err(|e| types::error(py, e))?;
        Ok(Ledger::new(ledger, text))
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if self.forked() {
            // The parent's handle, in a child: never flush, unlock or free it here.
            std::mem::forget(self.inner.get_mut().take());
        }
    }
}

/// The roles of a token: any iterable of byte strings, or `None`.
fn role_objects<'py>(
    roles: Option<&Bound<'py, PyAny>>,
) -> PyResult<SmallVec<[Bound<'py, PyAny>; INLINE_ROLES]>> {
    let mut out = SmallVec::new();
    let Some(roles) = roles else { return Ok(out) };
    if roles.is_none() {
        return Ok(out);
    }
    if let Ok(list) = roles.cast::<PyList>() {
        out.extend(list.iter());
    } else if let Ok(tuple) = roles.cast::<PyTuple>() {
        out.extend(tuple.iter());
    } else if roles.is_instance_of::<PyString>()
        || roles.is_instance_of::<PyBytes>()
        || roles.is_instance_of::<PyByteArray>()
        || roles.is_instance_of::<PyMemoryView>()
    {
        return Err(PyTypeError::new_err(
            "roles must be a collection of strings, not a single string",
        ));
    } else {
        for role in roles.try_iter()? {
            out.push(role?);
        }
    }
    Ok(out)
}

/// The four parts of one rule given to `revoke_batch`: a `Rule` or any 4-item iterable.
fn rule_parts<'py>(rule: &Bound<'py, PyAny>, i: usize) -> PyResult<[Bound<'py, PyAny>; 4]> {
    let shape = || {
        PyTypeError::new_err(format!(
            "rule {i} must be a Rule or a (scope, tenant, key, at) tuple"
        ))
    };
    let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = rule.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        let iter = rule.try_iter().map_err(|_| shape())?;
        iter.collect::<PyResult<_>>().map_err(|_| shape())?
    };
    <[Bound<'py, PyAny>; 4]>::try_from(items).map_err(|_| shape())
}

/// The `claims` argument: a `revledger.Claims`.
fn claims_arg<'a, 'py>(claims: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, Claims>> {
    claims.cast::<Claims>().map_err(|_| {
        PyTypeError::new_err(format!(
            "claims must be a revledger.Claims, not {}",
            claims
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

#[pymethods]
impl Ledger {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Err(PyTypeError::new_err(
            "use Ledger.open_writer(path) or Ledger.open_reader(path)",
        ))
    }

    /// Opens (creating it if missing) the ledger at `path` for writing and takes its
    /// exclusive lock until `close`. Another writer, in any process: `Locked`.
    ///
    /// `max_token_lifetime`: on creation, the longest lifetime (seconds) of the tokens to
    /// cover (0 = one day); on reopening, 0 keeps the ledger's value, a larger value
    /// raises it, a smaller one is `InvalidArgument`.
    ///
    /// `file_mode` and `file_group` (a group id): of the files the writer creates, kept
    /// by every compaction (0o640 and the readers' group for readers running as another
    /// user). `compaction`: whether the writer compacts in the background (the default).
    #[staticmethod]
    #[pyo3(signature = (path, max_token_lifetime = None, *, file_mode = 0o600, file_group = None, compaction = true))]
    fn open_writer(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        max_token_lifetime: Option<&Bound<'_, PyAny>>,
        file_mode: u32,
        file_group: Option<u32>,
        compaction: bool,
    ) -> PyResult<Ledger> {
        let lifetime = match max_token_lifetime {
            None => 3600,
            Some(v) => convert::i64_arg(v, "max_token_lifetime")?,
        };
        let options = revledger::WriterOptions {
            file_mode,
            file_group,
            compaction: compaction.then(revledger::CompactionPolicy::default),
            ..revledger::WriterOptions::with_lifetime(lifetime)
        };
        Ledger::open(py, path, |p| revledger::Ledger::open_writer(p, &options))
    }

    /// Writer: waits for the background compaction or index growth running now, if any;
    /// raises its error if it failed (answers are unaffected either way).
    fn wait_background(&self, py: Python<'_>) -> PyResult<()> {
        self.detached(py, |l| l.wait_background())
    }

    /// Opens the ledger at `path` read-only. A reader sees every record the writer
    /// commits on its next check.
    #[staticmethod]
    fn open_reader(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Ledger> {
        #[allow(clippy::redundant_closure)] // a fn item is not general over the lifetime
        Ledger::open(py, path, |p| revledger::Ledger::open_reader(p))
    }

    /// Is the token revoked? `issued_at` is its `iat` (Unix seconds); `roles` every
    /// entitlement string it carries (or `None`); an absent `client`, `session` or
    /// `token_id` is `None` (or empty). Thread-safe. An error never means "valid": the
    /// caller decides what to do with a token it could not check.
    #[pyo3(signature = (tenant, subject, roles = None, client = None, session = None, token_id = None, *, issued_at))]
    #[allow(clippy::too_many_arguments)]
    fn check<'py>(
        &self,
        py: Python<'py>,
        tenant: &Bound<'py, PyAny>,
        subject: &Bound<'py, PyAny>,
        roles: Option<&Bound<'py, PyAny>>,
        client: Option<&Bound<'py, PyAny>>,
        session: Option<&Bound<'py, PyAny>>,
        token_id: Option<&Bound<'py, PyAny>>,
        issued_at: &Bound<'py, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let tenant = key(tenant, "tenant")?;
        let subject = key(subject, "subject")?;
        let client = opt_key(client, "client")?;
        let session = opt_key(session, "session")?;
        let token_id = opt_key(token_id, "token_id")?;
        let role_objects = role_objects(roles)?;
        if role_objects.len() > revledger::MAX_ROLES {
            return Err(types::invalid(
                py,
                format!(
                    "token has {} roles; the limit is {}",
                    role_objects.len(),
                    revledger::MAX_ROLES
                ),
            ));
        }
        let role_keys = role_objects
            .iter()
            .map(|r| key(r, "role"))
            .collect::<PyResult<SmallVec<[Cow<'_, [u8]>; INLINE_ROLES]>>>()?;
        let roles: SmallVec<[&[u8]; INLINE_ROLES]> = role_keys.iter().map(|r| &**r).collect();
        let token = revledger::Token {
            tenant: &tenant,
            subject: &subject,
            roles: &roles,
            client: &client,
            session: &session,
            token_id: &token_id,
            issued_at: convert::i64_arg(issued_at, "issued_at")?,
        };
        let verdict = self.with(py, |l| l.check(&token))?;
        types::verdict(py, verdict)
    }

    /// Is the token whose JWT payload is `payload` revoked? `payload` is the JSON object
    /// as `bytes`/`str`, or a `dict` of verified claims (as PyJWT's `jwt.decode` returns
    /// them), read through the mapping `claims`. A payload the mapping cannot read (not a
    /// JSON object, no `iat`, a claim of the wrong type, over a limit) raises
    /// `InvalidArgument` naming the claim: refuse the request (401). Thread-safe.
    fn check_claims(
        &self,
        py: Python<'_>,
        claims: &Bound<'_, PyAny>,
        payload: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let claims = claims_arg(claims)?;
        let dumped;
        let payload = if payload.is_instance_of::<PyDict>() {
            let kwargs = PyDict::new(py);
            kwargs.set_item("separators", (",", ":"))?;
            // A value JSON cannot hold (a datetime, a set) is a claim of the wrong type.
            dumped = py
                .import("json")?
                .getattr("dumps")?
                .call((payload,), Some(&kwargs))
                .map_err(|e| {
                    if e.is_instance_of::<PyTypeError>(py) || e.is_instance_of::<PyValueError>(py) {
                        types::invalid(py, format!("payload: the claims are not JSON: {e}"))
                    } else {
                        e
                    }
                })?;
            key(&dumped, "payload")?
        } else {
            key(payload, "payload")?
        };
        let verdict = claims.get().with(py, |mapping| {
            self.with(py, |l| l.check_claims(mapping, &payload))
        })?;
        types::verdict(py, verdict)
    }

    /// Is the token `jwt` (a compact JWS `header.payload.signature`, `str` or `bytes`)
    /// revoked? Its payload is base64url-decoded and read through the mapping `claims`.
    ///
    /// **The signature is NOT verified** (nor `exp`, `aud`, or the header): this is a deny
    /// layer after authentication, never instead of it. A token that is not three
    /// base64url parts, or whose payload the mapping cannot read, raises
    /// `InvalidArgument`. Thread-safe.
    fn check_jwt(
        &self,
        py: Python<'_>,
        claims: &Bound<'_, PyAny>,
        jwt: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let claims = claims_arg(claims)?;
        let jwt = key(jwt, "jwt")?;
        let verdict = claims
            .get()
            .with(py, |mapping| self.with(py, |l| l.check_jwt(mapping, &jwt)))?;
        types::verdict(py, verdict)
    }

    /// Records "`scope` changed at `at`": tokens in scope issued before `at` (Unix
    /// seconds) are revoked. For `Scope.TOKEN`, `key` is the jti and `at` the token's
    /// `exp`. `key` is empty (`b""`/`None`) for GLOBAL and TENANT, and GLOBAL takes no
    /// tenant. Returns once the record is committed (every reader's next check sees it);
    /// durable after `sync`.
    fn revoke(
        &self,
        py: Python<'_>,
        scope: &Bound<'_, PyAny>,
        tenant: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        at: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let scope = convert::scope_value(scope)?;
        let tenant = convert::key(tenant, "tenant")?;
        let key = convert::key(key, "key")?;
        let at = convert::i64_arg(at, "at")?;
        let scope = convert::scope_of(py, scope)?;
        let rule = revledger::Rule::new(scope, &tenant, &key, at);
        self.detached(py, |l| l.revoke(&rule))
    }

    /// Revokes as of now: the current time rounded up to the next second (a token issued
    /// in the same second counts as issued before). Returns the cutoff written. Not for
    /// `Scope.TOKEN` (whose time is the token's `exp`).
    #[pyo3(signature = (scope, tenant = None, key = None))]
    fn revoke_now(
        &self,
        py: Python<'_>,
        scope: &Bound<'_, PyAny>,
        tenant: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<i64> {
        let scope = convert::scope_value(scope)?;
        let tenant = opt_key(tenant, "tenant")?;
        let key = opt_key(key, "key")?;
        let scope = convert::scope_of(py, scope)?;
        self.detached(py, |l| l.revoke_now(scope, &tenant, &key))
    }

    /// Records every rule of `rules` (`Rule` or `(scope, tenant, key, at)` tuples) in one
    /// write: all are checked first, then all are committed, or none is. Returns how
    /// many were committed.
    fn revoke_batch(&self, py: Python<'_>, rules: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut parts = Vec::new();
        for (i, rule) in rules.try_iter()?.enumerate() {
            let [scope, tenant, key, at] = rule_parts(&rule?, i)?;
            let scope = convert::scope_value(&scope)?;
            let at = convert::i64_arg(&at, "at")?;
            parts.push((scope, tenant, key, at));
        }
        let keys = parts
            .iter()
            .map(|(_, t, k, _)| Ok((convert::key(t, "tenant")?, convert::key(k, "key")?)))
            .collect::<PyResult<Vec<_>>>()?;
        let mut batch = Vec::with_capacity(parts.len());
        for (i, ((scope, _, _, at), (tenant, key))) in parts.iter().zip(&keys).enumerate() {
            let scope = u8::try_from(*scope)
                .ok()
                .and_then(revledger::Scope::from_u8)
                .ok_or_else(|| {
                    types::invalid(
                        py,
                        format!("rule {i}: scope {scope} is not a revledger_scope"),
                    )
                })?;
            batch.push(revledger::Rule::new(scope, tenant, key, *at));
        }
        self.detached(py, |l| {
            if batch.is_empty() && !l.is_writer() {
                return Err(revledger::Error::ReadOnly);
            }
            l.revoke_batch(&batch)
        })?;
        Ok(batch.len())
    }

    /// Makes every committed record durable (fdatasync). Many revokes, then one sync, is
    /// group commit.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.detached(py, |l| l.sync())
    }

    /// Rewrites the ledger without the rules that can no longer revoke an unexpired
    /// token at `now` (Unix seconds) and swaps it in atomically; readers follow on their
    /// next check. Writer only.
    fn compact(&self, py: Python<'_>, now: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = convert::i64_arg(now, "now")?;
        self.detached(py, |l| l.compact(now).map(|_| ()))
    }

    /// Brings this handle's index up to date with the log now (checks do it on their
    /// own; this moves the work off a request's path), and makes sure that the file is
    /// still the ledger at its path: a file deleted, or replaced by another ledger (a
    /// compaction is followed), raises, as every later call on this handle does.
    fn refresh(&self, py: Python<'_>) -> PyResult<()> {
        self.detached(py, |l| l.refresh())
    }

    /// Figures about the ledger as of `now` (Unix seconds; default: the current time),
    /// which decides `expired_keys`.
    #[pyo3(signature = (now = None))]
    fn stats(&self, py: Python<'_>, now: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let now = match now {
            None => revledger::unix_now_floor(),
            Some(n) if n.is_none() => revledger::unix_now_floor(),
            Some(n) => convert::i64_arg(n, "now")?,
        };
        let s = self.detached(py, |l| l.stats(now))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("rule_records", s.rule_records)?;
        kwargs.set_item("live_keys", s.live_keys)?;
        kwargs.set_item("expired_keys", s.expired_keys)?;
        kwargs.set_item("log_bytes", s.log_bytes)?;
        kwargs.set_item("file_bytes", s.file_bytes)?;
        kwargs.set_item("index_bytes", s.index_bytes)?;
        kwargs.set_item("max_token_lifetime", s.max_token_lifetime)?;
        kwargs.set_item("leeway", s.leeway)?;
        Ok(types::get(py)?
            .stats
            .bind(py)
            .call((), Some(&kwargs))?
            .unbind())
    }

    /// When the ledger last heard from the stream that feeds it, and the last entry
    /// applied (see `Freshness`). A ledger written only through `revoke` never heard from
    /// a stream: `Freshness(None, None)`. For a check on every request, `last_heard`
    /// takes no lock.
    fn freshness(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let (position, degraded) = self.with(py, |l| Ok((l.stream_position()?, l.degraded()?)))?;
        let (heard, id) = match position {
            Some(p) => (p.last_heard, p.last_id),
            None => (0, revledger::StreamId::ZERO),
        };
        let heard = (heard != 0).then_some(heard);
        let id = (id != revledger::StreamId::ZERO).then(|| format!("{}-{}", id.ms, id.seq));
        Ok(types::get(py)?
            .freshness
            .bind(py)
            .call1((heard, id, degraded))?
            .unbind())
    }

    /// `Freshness.degraded` alone, lock-free: 0 when the ledger holds every rule its
    /// stream carried, else the bits `DEGRADED_SKIPPED`, `DEGRADED_REFUSED`,
    /// `DEGRADED_TRIMMED`.
    fn degraded(&self, py: Python<'_>) -> PyResult<u8> {
        self.with(py, |l| l.degraded())
    }

    /// `Freshness.last_heard` alone, without the lock that reading the entry id takes:
    /// cheap enough for every request.
    fn last_heard(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        let heard = self.with(py, |l| l.last_heard())?;
        Ok(heard.filter(|&h| h != 0))
    }

    /// Closes the handle: a writer makes its records durable and releases its lock.
    /// Waits for calls in progress on other threads (and for a close in progress on
    /// another thread), so that when it returns the handle is gone. Idempotent.
    fn close(&self, py: Python<'_>) {
        if self.forked() {
            return; // the parent's lock may be held by a parent thread: leave it be
        }
        py.detach(|| {
            let mut inner = self.inner.write();
            drop(inner.take()); // under the lock: a concurrent close returns after this
        });
    }

    /// The path the ledger was opened at.
    #[getter]
    fn path(&self, py: Python<'_>) -> Py<PyString> {
        self.path.clone_ref(py)
    }

    /// Whether this handle is the writer.
    #[getter]
    fn is_writer(&self) -> bool {
        self.writer
    }

    /// Whether `close` was called (or the handle was inherited across a fork).
    #[getter]
    fn closed(&self) -> bool {
        self.forked() || self.inner.read().is_none()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        let me = slf.get();
        if me.closed() {
            return Err(me.closed_error(slf.py()));
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "a Ledger handle cannot be pickled or copied; open the ledger where it is needed",
        ))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let kind = if self.writer { "writer" } else { "reader" };
        let state = if self.closed() { "closed" } else { "open" };
        Ok(format!(
            "<revledger.Ledger {kind} {} {state}>",
            self.path.bind(py).repr()?
        ))
    }
}
