//! The Python classes the extension hands back: the values (`Scope`, `Verdict`, `Stats`,
//! `Freshness`) and the errors (`RevledgerError` and its subclasses) are defined in
//! Python, in `revledger/_types.py`, and fetched once, on first use.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The classes and helpers of `revledger._types` (and a few builtins), fetched once.
pub struct Types {
    /// `Status` members, indexed by status code (0..=7).
    status: Vec<Py<PyAny>>,
    /// The exception class for each status code (index 0 is `RevledgerError`).
    errors: Vec<Py<PyAny>>,
    /// `LedgerClosed`.
    closed: Py<PyAny>,
    /// `Scope` members, indexed by discriminant (0..=6).
    scopes: Vec<Py<PyAny>>,
    /// `Verdict` and `Verdict.VALID`.
    verdict: Py<PyAny>,
    valid: Py<PyAny>,
    /// `Stats`, `Freshness`.
    pub stats: Py<PyAny>,
    pub freshness: Py<PyAny>,
    /// `object.__new__`, `object.__setattr__`: build a frozen `Verdict` without its
    /// dataclass `__init__` (several times slower).
    object_new: Py<PyAny>,
    object_setattr: Py<PyAny>,
    /// `os.fsencode`, `os.fsdecode`, `operator.index`.
    pub fsencode: Py<PyAny>,
    pub fsdecode: Py<PyAny>,
    pub index: Py<PyAny>,
}

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

/// The classes, fetched from `revledger._types` on first use.
pub fn get(py: Python<'_>) -> PyResult<&'static Types> {
    TYPES.get_or_try_init(py, || {
        let m = py.import("revledger._types")?;
        let status_cls = m.getattr("Status")?;
        let scope_cls = m.getattr("Scope")?;
        let errors_by_status = m.getattr("_ERRORS")?;
        let base_error = m.getattr("RevledgerError")?;
        let mut status = Vec::with_capacity(8);
        let mut errors = Vec::with_capacity(8);
        for code in 0..8u32 {
            let member = status_cls.call1((code,))?;
            let class = match errors_by_status.get_item(&member) {
                Ok(class) => class,
                Err(_) => base_error.clone(),
            };
            status.push(member.unbind());
            errors.push(class.unbind());
        }
        let scopes = (0..7u32)
            .map(|v| scope_cls.call1((v,)).map(Bound::unbind))
            .collect::<PyResult<Vec<_>>>()?;
        let verdict = m.getattr("Verdict")?;
        let object = py.get_type::<pyo3::types::PyAny>();
        let os = py.import("os")?;
        Ok(Types {
            status,
            errors,
            closed: m.getattr("LedgerClosed")?.unbind(),
            scopes,
            valid: verdict.getattr("VALID")?.unbind(),
            verdict: verdict.unbind(),
            stats: m.getattr("Stats")?.unbind(),
            freshness: m.getattr("Freshness")?.unbind(),
            object_new: object.getattr("__new__")?.unbind(),
            object_setattr: object.getattr("__setattr__")?.unbind(),
            fsencode: os.getattr("fsencode")?.unbind(),
            fsdecode: os.getattr("fsdecode")?.unbind(),
            index: py.import("operator")?.getattr("index")?.unbind(),
        })
    })
}

/// The status code of an error of the crate (the C ABI's `revledger_status`).
fn status_of(e: &revledger::Error) -> usize {
    use revledger::Error::*;
    match e {
        InvalidArgument(_) => 1,
        Io { .. } => 2,
        Corrupt { .. } => 3,
        Locked(_) => 4,
        ReadOnly => 5,
        Incompatible(_) => 6,
        Internal(_) => 7,
    }
}

/// The Python exception for status `code` with `message` (a `RevledgerError` subclass).
fn raise(py: Python<'_>, code: usize, message: String) -> PyErr {
    let made = get(py).and_then(|t| {
        t.errors[code]
            .bind(py)
            .call1((t.status[code].bind(py), message))
    });
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// The Python exception for an error of the crate; its message is the one
/// `revledger_last_error()` would give.
pub fn error(py: Python<'_>, e: revledger::Error) -> PyErr {
    raise(py, status_of(&e), e.to_string())
}

/// `InvalidArgument(Status.INVALID_ARGUMENT, message)`.
pub fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, 1, message.into())
}

/// `LedgerClosed(message)`.
pub fn closed(py: Python<'_>, message: &str) -> PyErr {
    match get(py).and_then(|t| t.closed.bind(py).call1((message,))) {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// The `Verdict` for an answer of `check`: the shared `Verdict.VALID`, or a new
/// `Verdict(True, scope, cutoff)`.
pub fn verdict(py: Python<'_>, v: revledger::Verdict) -> PyResult<Py<PyAny>> {
    let t = get(py)?;
    match v {
        revledger::Verdict::Valid => Ok(t.valid.clone_ref(py)),
        revledger::Verdict::Revoked { scope, cutoff } => {
            let made = t.object_new.bind(py).call1((t.verdict.bind(py),))?;
            let set = t.object_setattr.bind(py);
            set.call1((&made, intern!(py, "revoked"), true))?;
            set.call1((
                &made,
                intern!(py, "scope"),
                t.scopes[scope as usize].bind(py),
            ))?;
            set.call1((&made, intern!(py, "cutoff"), cutoff))?;
            Ok(made.unbind())
        }
    }
}
