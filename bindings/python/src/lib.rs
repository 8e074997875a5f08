//! `tessera._native`: the private native module under the `tessera` Python package.
//!
//! The Python package (bindings/python/python/tessera) is the public API; this module holds the
//! pieces that must be native: the engine, an in-process server, the QUIC clients and the token
//! helpers. Errors are raised as the exception classes defined in Python (`tessera.errors`),
//! looked up by their stable numeric code. Every network wait and every piece of heavy work runs
//! with the GIL released.

use pyo3::prelude::*;

mod clients;
mod engine;
mod errors;
mod runtime;
mod server;
mod tokens;
mod types;

/// The native half of the `tessera` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Every wire protocol error code and its name: what `tessera.errors.CODES` is checked
    // against.
    m.add("WIRE_CODES", tessera_proto::wire::code::ALL.to_vec())?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<clients::AdminClient>()?;
    m.add_class::<clients::DeviceClient>()?;
    m.add_class::<types::Claims>()?;
    m.add_class::<types::Registration>()?;
    m.add_class::<types::Operation>()?;
    m.add_function(wrap_pyfunction!(tokens::check_pt, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::inspect_rt, m)?)?;
    Ok(())
}

/// `dir`, or a new temporary directory named `prefix…` (returned too, so that it lives as long
/// as its user and is removed with it).
pub(crate) fn data_dir_or_temp(
    py: Python<'_>,
    dir: Option<std::path::PathBuf>,
    prefix: &str,
) -> PyResult<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    match dir {
        Some(d) => Ok((None, d)),
        None => {
            let t = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|e| errors::config(py, format!("temporary directory: {e}")))?;
            let p = t.path().to_owned();
            Ok((Some(t), p))
        }
    }
}
