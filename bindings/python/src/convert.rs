//! Python arguments to what the crate takes, with the checks and messages of the C ABI
//! (and of the ctypes binding before this module): byte strings from `bytes` (borrowed,
//! no copy), `str` (its UTF-8, borrowed), `None` (empty), `bytearray`/`memoryview`
//! (copied); times as `int` within `i64`; scopes as a `Scope` or any integer a 32-bit C
//! enum holds, judged like the C side judges it.

use std::borrow::Cow;
use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyMemoryView, PyString};

use crate::types;

/// The name of `obj`'s type, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A byte string argument. Borrows the buffer of `bytes` and the UTF-8 of `str` (both
/// immutable, kept alive by `obj`), so it may be read with the GIL released.
pub fn key<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Borrowed(s.to_str()?.as_bytes()));
    }
    if obj.is_none() {
        return Ok(Cow::Borrowed(&[]));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let copy = obj.py().get_type::<PyBytes>().call1((obj,))?;
        return Ok(Cow::Owned(copy.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes or str, not {}",
        type_name(obj)
    )))
}

/// An optional byte string argument: absent is empty.
pub fn opt_key<'a>(obj: Option<&'a Bound<'_, PyAny>>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    match obj {
        None => Ok(Cow::Borrowed(&[])),
        Some(obj) => key(obj, what),
    }
}

/// An integer argument (an `int`, or anything with `__index__`; never a `float`), as an
/// unbounded Python `int`.
fn integer<'py>(obj: &Bound<'py, PyAny>, what: &str, kind: &str) -> PyResult<Bound<'py, PyInt>> {
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(i.clone());
    }
    let py = obj.py();
    match types::get(py)?.index.bind(py).call1((obj,)) {
        Ok(i) => Ok(i.cast_into::<PyInt>()?),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be {kind}, not {}",
            type_name(obj)
        ))),
    }
}

/// A time (Unix seconds) or other `i64` argument; outside `i64` is `InvalidArgument`,
/// never a wrapped value.
pub fn i64_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<i64> {
    if let Ok(i) = obj.cast_exact::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(v); // the common case, first
        }
    }
    let i = integer(obj, what, "an int (Unix seconds)")?;
    i.extract::<i64>().map_err(|_| {
        types::invalid(
            obj.py(),
            format!("{what} {i} does not fit in a signed 64-bit integer"),
        )
    })
}

/// A scope as the C ABI takes it: any integer a 32-bit C enum can hold goes through as
/// C would see it (-1 is 4294967295), so that [`scope_of`] judges it and names the very
/// value; an integer no C enum can hold is refused here rather than truncated into some
/// other, valid, scope.
pub fn scope_value(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let i = integer(obj, "scope", "a Scope or an int")?;
    match i.extract::<i64>() {
        Ok(v) if (-(1i64 << 31)..(1i64 << 32)).contains(&v) => Ok(v as u32),
        _ => Err(types::invalid(
            obj.py(),
            format!("scope {i} does not fit in a C enum (32 bits)"),
        )),
    }
}

/// The scope of a C enum value; anything outside 0..=6 is `InvalidArgument`, with the
/// C ABI's message.
pub fn scope_of(py: Python<'_>, value: u32) -> PyResult<revledger::Scope> {
    u8::try_from(value)
        .ok()
        .and_then(revledger::Scope::from_u8)
        .ok_or_else(|| {
            types::invalid(
                py,
                format!("scope {value} is not a revledger_scope (0..=6)"),
            )
        })
}

/// A path argument (`str`, `bytes` or `os.PathLike`): the file system path and its text
/// as `os.fsdecode` gives it. A NUL byte is `InvalidArgument`, never a shorter path.
pub fn path(obj: &Bound<'_, PyAny>) -> PyResult<(PathBuf, Py<PyString>)> {
    use std::os::unix::ffi::OsStrExt;
    let py = obj.py();
    let t = types::get(py)?;
    let raw = t.fsencode.bind(py).call1((obj,))?;
    let raw = raw.cast::<PyBytes>()?;
    if raw.as_bytes().contains(&0) {
        return Err(types::invalid(
            py,
            format!("path {} contains a NUL byte", obj.repr()?),
        ));
    }
    let text = t
        .fsdecode
        .bind(py)
        .call1((raw,))?
        .cast_into::<PyString>()?
        .unbind();
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(raw.as_bytes()));
    Ok((path, text))
}
