//! Token helpers that need no key.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tessera_proto::token::{ParsedPt, UntrustedRt};

use crate::errors;
use crate::types::Claims;

/// The bytes of a token given as `str` or `bytes`.
pub(crate) fn token_bytes<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a [u8]> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes());
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes());
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        obj.get_type().name()?
    )))
}

/// Check a PT's format and checksum (no key needed) and return its public id (`pt_…`).
/// Raises `MalformedToken` (with `.detail`) if it is not a well-formed PT.
#[pyfunction]
pub(crate) fn check_pt(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<String> {
    let b = token_bytes(token, "token")?;
    ParsedPt::parse(b)
        .map(|p| p.untrusted_id().to_string())
        .map_err(|e| errors::token_format(py, e))
}

/// Parse an RT and return its claims **without authenticating it** (no key needed): for display
/// and debugging only. Use `Engine.validate` or introspection to trust an RT.
#[pyfunction]
pub(crate) fn inspect_rt(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<Claims> {
    let b = token_bytes(token, "token")?;
    UntrustedRt::parse(b)
        .map(|r| Claims::from(&r.untrusted_claims()))
        .map_err(|e| errors::token_format(py, e))
}
