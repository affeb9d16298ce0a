//! `revledger.Claims`: a compiled claim mapping (DESIGN.md §7), for
//! `Ledger.check_claims` and `Ledger.check_jwt`.

use parking_lot::RwLock;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::types;

/// A compiled claim mapping: where the tenant, subject, roles, client, session, token id
/// and `iat` of the token to check are found in a JWT's payload.
///
/// `spec` is a built-in name, `"generic"`, `"auth0"`, `"keycloak"` or `"entra"`, or the
/// JSON text (or a `dict`) of a pointer spec such as
/// `{"tenant": ["/tid"], "subject": ["/sub"], "roles": ["/realm_access/roles"]}`. An
/// unknown name or a misshapen spec raises `InvalidArgument` saying what is wrong.
/// Immutable and thread-safe: share one among threads and ledgers. `close` waits for the
/// checks in progress; use it as a `with` block.
#[pyclass(module = "revledger", name = "Claims", frozen)]
pub struct Claims {
    /// The mapping, `None` once closed; checks hold the lock shared.
    mapping: RwLock<Option<revledger::ClaimMapping>>,
    spec: Py<PyString>,
}

impl Claims {
    /// Runs `f` with the open mapping; a closed one is `LedgerClosed`.
    pub fn with<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&revledger::ClaimMapping) -> PyResult<R>,
    ) -> PyResult<R> {
        match self.mapping.read().as_ref() {
            Some(mapping) => f(mapping),
            None => Err(types::closed(py, "the claim mapping is closed")),
        }
    }
}

#[pymethods]
impl Claims {
    /// The built-in mappings.
    #[classattr]
    const BUILTIN: (&'static str, &'static str, &'static str, &'static str) =
        ("generic", "auth0", "keycloak", "entra");

    #[new]
    #[pyo3(signature = (spec = None))]
    fn new(py: Python<'_>, spec: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let spec: Bound<'_, PyString> = match spec {
            None => PyString::new(py, "generic"),
            Some(s) if s.is_instance_of::<PyDict>() => py
                .import("json")?
                .getattr("dumps")?
                .call1((s,))?
                .cast_into::<PyString>()?,
            Some(s) => match s.cast::<PyString>() {
                Ok(s) => s.clone(),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "spec must be a str or a dict, not {}",
                        s.get_type().name()?
                    )))
                }
            },
        };
        let text = spec.to_str()?;
        if text.contains('\0') {
            return Err(types::invalid(
                py,
                "the claim mapping spec contains a NUL byte",
            ));
        }
        let mapping = revledger::ClaimMapping::new(text).map_err(|e| types::error(py, e))?;
        Ok(Claims {
            mapping: RwLock::new(Some(mapping)),
            spec: spec.unbind(),
        })
    }

    /// The spec the mapping was compiled from.
    #[getter]
    fn spec(&self, py: Python<'_>) -> Py<PyString> {
        self.spec.clone_ref(py)
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.mapping.read().is_none()
    }

    /// Frees the mapping once the checks in progress are done. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| drop(self.mapping.write().take()));
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        if slf.get().closed() {
            return Err(types::closed(slf.py(), "the claim mapping is closed"));
        }
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) {
        self.close(py);
    }

    /// Pickles as its spec (a mapping is compiled again where it is unpickled).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (Py<PyString>,))> {
        Ok((
            slf.get_type().into_any(),
            (slf.get().spec.clone_ref(slf.py()),),
        ))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let spec = self.spec.bind(py).to_str()?;
        let shown = if spec.chars().count() <= 60 {
            spec.to_owned()
        } else {
            spec.chars().take(57).collect::<String>() + "..."
        };
        let state = if self.closed() { "closed" } else { "open" };
        Ok(format!(
            "<revledger.Claims {} {state}>",
            PyString::new(py, &shown).repr()?
        ))
    }
}
