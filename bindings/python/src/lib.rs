//! `revledger._revledger`: the extension module behind the Python package `revledger`.
//!
//! The Python package (bindings/python/revledger/) defines the values and errors in
//! Python (`Scope`, `Verdict`, `RevledgerError`, ...; `_types.py`) and re-exports
//! [`ledger::Ledger`] from here, a class whose methods call the Rust crate directly: no
//! C ABI, no ctypes structures, no separately built library to find at run time.
//!
//! One module, one idea: `ledger` (the handle and its methods), `claims` (claim
//! mappings), `convert` (Python
//! arguments to byte strings, times and scopes, with the C ABI's checks and messages),
//! `types` (the Python classes the extension hands back), `fork` (handles inherited by a
//! forked child). New features (claim mappings, publishing, freshness) add a module
//! and register their classes in [`_revledger`].

mod claims;
mod convert;
mod fork;
mod ledger;
mod types;

use pyo3::prelude::*;

/// The version of the revledger library compiled into this module.
#[pyfunction]
fn version() -> &'static str {
    revledger::VERSION
}

/// The extension module. Thread-safe throughout (every handle's state sits behind a
/// lock or is immutable), so it declares support for free-threaded Python.
#[pymodule]
fn _revledger(m: &Bound<'_, PyModule>) -> PyResult<()> {
    fork::install_handler();
    m.add_class::<ledger::Ledger>()?;
    m.add_class::<claims::Claims>()?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add("MAX_KEY_LEN", revledger::MAX_KEY_LEN)?;
    m.add("MAX_ROLES", revledger::MAX_ROLES)?;
    Ok(())
}
