//! `AdminClient` and `DeviceClient`: the Rust QUIC clients, driven from Python threads on the
//! shared client runtime with the GIL released while they wait.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tessera_client::{ClientError, DeviceConfig, Trust};
use tessera_client::{DeviceFaults, DeviceHooks};
use tessera_proto::{AdminToken, ProvisioningToken};

use crate::errors;
use crate::runtime;
use crate::tokens::token_bytes;
use crate::types::Registration;

fn resolve(py: Python<'_>, address: &str) -> PyResult<SocketAddr> {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| errors::config(py, format!("cannot resolve {address:?} (want host:port)")))
}

fn trust(
    py: Python<'_>,
    ca_pem: Option<&Bound<'_, PyAny>>,
    pin: Option<&Bound<'_, PyAny>>,
) -> PyResult<Trust> {
    match (ca_pem, pin) {
        (Some(p), None) => Ok(Trust::CaPem(token_bytes(p, "ca_pem")?.to_vec())),
        // One fingerprint, or several (a CA rollover) as a list or comma-separated.
        (None, Some(p)) => {
            let pins: Vec<String> = match p.extract::<String>() {
                Ok(one) => vec![one],
                Err(_) => p.extract().map_err(|_| {
                    errors::config(py, "pin must be a str or a list of str (SHA-256, hex)")
                })?,
            };
            Ok(Trust::Pin(pins.join(",")))
        }
        _ => Err(errors::config(
            py,
            "give exactly one of ca_pem (the CA certificate, PEM) or pin (its SHA-256 fingerprint)",
        )),
    }
}

fn secs(py: Python<'_>, s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        errors::config(
            py,
            format!("{what} must be a non-negative number of seconds"),
        )
    })
}

/// An operator's connection to the admin endpoint. The Python class `tessera.AdminClient`
/// wraps it with one method per request.
#[pyclass(frozen, module = "tessera._native")]
#[derive(Debug)]
pub(crate) struct AdminClient {
    inner: Arc<tessera_client::AdminClient>,
}

#[pymethods]
impl AdminClient {
    /// Connect (lazily, on the first request) to the admin endpoint at `address`.
    #[new]
    #[pyo3(signature = (address, token, *, server_name="localhost", ca_pem=None, pin=None))]
    fn new(
        py: Python<'_>,
        address: &str,
        token: &str,
        server_name: &str,
        ca_pem: Option<Bound<'_, PyAny>>,
        pin: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let addr = resolve(py, address)?;
        let trust = trust(py, ca_pem.as_ref(), pin.as_ref())?;
        let rt = runtime::clients()?;
        let _g = rt.enter();
        tessera_client::AdminClient::new(
            addr,
            server_name,
            &trust,
            AdminToken::new(token.to_owned()),
        )
        .map(|c| Self { inner: Arc::new(c) })
        .map_err(|e| errors::client(py, &e))
    }

    /// Make the admin request `kind` (docs/protocol.md) with JSON arguments; returns the JSON
    /// answer.
    fn call(&self, py: Python<'_>, kind: u8, args_json: &str) -> PyResult<String> {
        let args: serde_json::Value =
            serde_json::from_str(args_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let c = self.inner.clone();
        let rt = runtime::clients()?;
        let r: Result<serde_json::Value, ClientError> =
            py.detach(|| rt.block_on(async move { c.call(kind, args).await }));
        r.map(|v| v.to_string()).map_err(|e| errors::client(py, &e))
    }

    /// PT_BATCH: returns the final JSON answer and the `pt_id\ttoken` lines.
    fn create_pt_batch(&self, py: Python<'_>, args_json: &str) -> PyResult<(String, Vec<String>)> {
        let args: tessera_proto::admin::requests::PtBatch =
            serde_json::from_str(args_json).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let c = self.inner.clone();
        let rt = runtime::clients()?;
        let r = py.detach(|| {
            rt.block_on(async move {
                let mut buf = Vec::new();
                let v = c
                    .create_pt_batch(&args, |chunk| buf.extend_from_slice(chunk))
                    .await?;
                Ok::<_, ClientError>((v, buf))
            })
        });
        let (v, buf) = r.map_err(|e| errors::client(py, &e))?;
        let lines = String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let v = serde_json::to_string(&v).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((v, lines))
    }

    /// Close the connection. Returns once the close is sent; the shared client runtime lets the
    /// connection drain in the background, so closing costs no round trip.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        let rt = runtime::clients()?;
        py.detach(|| rt.block_on(async move { c.close_now().await }));
        Ok(())
    }
}

/// Device hooks that call back into Python. A callback that raises is reported through
/// `sys.unraisablehook` and otherwise ignored (the device goes on, as firmware would).
struct PyHooks {
    on_code: Option<Py<PyAny>>,
    load: Option<Py<PyAny>>,
    save: Option<Py<PyAny>>,
    on_log: Option<Py<PyAny>>,
}

impl PyHooks {
    fn call(cb: &Option<Py<PyAny>>, arg: &str) -> Option<Py<PyAny>> {
        let cb = cb.as_ref()?;
        Python::attach(|py| match cb.call1(py, (arg,)) {
            Ok(v) => Some(v),
            Err(e) => {
                e.write_unraisable(py, None);
                None
            }
        })
    }
}

impl DeviceHooks for PyHooks {
    fn show_code(&self, code: &str) {
        Self::call(&self.on_code, code);
    }

    fn load(&self) -> Option<String> {
        let cb = self.load.as_ref()?;
        Python::attach(
            |py| match cb.call0(py).and_then(|v| v.extract::<Option<String>>(py)) {
                Ok(v) => v,
                Err(e) => {
                    e.write_unraisable(py, None);
                    None
                }
            },
        )
    }

    fn save(&self, stored: &str) {
        Self::call(&self.save, stored);
    }

    fn log(&self, line: &str) {
        Self::call(&self.on_log, line);
    }
}

/// A device: the Rust device client over QUIC (``tessera.DeviceClient``).
///
/// ``DeviceClient(address, pt, *, server_name="localhost", ca_pem=None, pin=None,
/// device_id=None, attributes=None, on_code=None, load=None, save=None, on_log=None,
/// request_timeout=10.0, wait_timeout=25.0, initial_backoff=1.0, max_backoff=300.0,
/// duplicate_begin=False, clock_skew=0.0)``
///
/// - ``address``: the device endpoint, ``"host:port"`` (a name is resolved when the client is
///   made). ``pt``: the provisioning token from the firmware image.
/// - ``server_name``: the name the server certificate must carry (``tessera serve`` prints the
///   certificate's names). Trust it through ``ca_pem`` (the CA certificate, ``str`` or
///   ``bytes`` of PEM, one or more certificates) or ``pin`` (64 hex digits, the CA certificate's
///   SHA-256; or a list of them, during a CA rollover): one is needed.
/// - ``device_id``: the device id to ask for; ``attributes``: a ``dict`` of ``str`` shown to
///   the technician (limits in docs/tokens.md).
/// - ``on_code(code: str)``: show the verification code, when the PT's policy uses one.
/// - ``save(document: str)``: store the device's state, a JSON document holding the RT, the
///   operation it waits on and its instance nonce (all secrets); called after BEGIN, after
///   registering and refreshing, and after the server refuses the registration (which clears
///   it). ``load() -> str | None``: return the last document ``save`` got (``None`` when there
///   is none). A document that is not one ``save`` produced is ignored (reported through
///   ``on_log``) and the device provisions again.
/// - ``on_log(line: str)``: log lines, never holding secrets.
/// - ``request_timeout``: seconds for one request (connecting included); ``wait_timeout``:
///   how long one long poll may be held; ``initial_backoff`` / ``max_backoff``: retry delays
///   after transient errors (doubling, with jitter, honouring the server's retry hints).
/// - ``duplicate_begin`` and ``clock_skew`` (seconds): fault injection for tests.
///
/// Methods: ``ensure_registered(timeout)``, ``refresh()``, ``close()``; properties
/// ``current``, ``next_refresh_at``, ``pending_operation_id``. A context manager. Safe to call
/// from several threads, but concurrent ``refresh()`` calls present the same RT (docs/python.md,
/// "Threads").
#[pyclass(frozen, module = "tessera._native")]
pub(crate) struct DeviceClient {
    inner: Arc<tessera_client::DeviceClient>,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl DeviceClient {
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(
                Arc<tessera_client::DeviceClient>,
            ) -> std::pin::Pin<
                Box<
                    dyn std::future::Future<Output = Result<T, tessera_client::DeviceError>> + Send,
                >,
            > + Send,
    ) -> PyResult<T> {
        let c = self.inner.clone();
        let rt = runtime::clients()?;
        let r = py.detach(|| rt.block_on(f(c)));
        r.map_err(|e| errors::device(py, &e, self.inner.pending_operation().is_some()))
    }
}

#[pymethods]
impl DeviceClient {
    /// A device that talks to the device endpoint at `address` with provisioning token `pt`.
    /// Nothing is sent until a method is called. Times are in seconds.
    ///
    /// `on_code(code)` shows the verification code; `load() -> str | None` and `save(str)`
    /// keep the stored registration (a JSON document holding the RT: a secret); `on_log(line)`
    /// receives log lines (never secrets). `duplicate_begin` and `clock_skew` inject faults.
    #[new]
    #[pyo3(signature = (address, pt, *, server_name="localhost", ca_pem=None, pin=None,
                        device_id=None, attributes=None, on_code=None, load=None, save=None,
                        on_log=None, request_timeout=10.0, wait_timeout=25.0,
                        initial_backoff=1.0, max_backoff=300.0, duplicate_begin=false,
                        clock_skew=0.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        address: &str,
        pt: &str,
        server_name: &str,
        ca_pem: Option<Bound<'_, PyAny>>,
        pin: Option<Bound<'_, PyAny>>,
        device_id: Option<String>,
        attributes: Option<BTreeMap<String, String>>,
        on_code: Option<Py<PyAny>>,
        load: Option<Py<PyAny>>,
        save: Option<Py<PyAny>>,
        on_log: Option<Py<PyAny>>,
        request_timeout: f64,
        wait_timeout: f64,
        initial_backoff: f64,
        max_backoff: f64,
        duplicate_begin: bool,
        clock_skew: f64,
    ) -> PyResult<Self> {
        for (name, cb) in [
            ("on_code", &on_code),
            ("load", &load),
            ("save", &save),
            ("on_log", &on_log),
        ] {
            if cb.as_ref().is_some_and(|c| !c.bind(py).is_callable()) {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{name} must be callable"
                )));
            }
        }
        if !clock_skew.is_finite() {
            return Err(errors::config(
                py,
                "clock_skew must be a finite number of seconds",
            ));
        }
        let mut cfg = DeviceConfig::new(
            resolve(py, address)?,
            server_name,
            trust(py, ca_pem.as_ref(), pin.as_ref())?,
            ProvisioningToken::new(pt.to_owned()),
        );
        cfg.device_id = device_id;
        cfg.attributes = attributes.unwrap_or_default();
        cfg.request_timeout = secs(py, request_timeout, "request_timeout")?;
        cfg.wait_timeout = secs(py, wait_timeout, "wait_timeout")?;
        cfg.initial_backoff = secs(py, initial_backoff, "initial_backoff")?;
        cfg.max_backoff = secs(py, max_backoff, "max_backoff")?;
        cfg.faults = DeviceFaults {
            duplicate_begin,
            clock_skew_ms: (clock_skew * 1000.0) as i64,
        };
        let hooks = PyHooks {
            on_code,
            load,
            save,
            on_log,
        };
        let rt = runtime::clients()?;
        let _g = rt.enter();
        tessera_client::DeviceClient::new(cfg, Box::new(hooks))
            .map(|c| Self { inner: Arc::new(c) })
            .map_err(|e| errors::client(py, &e))
    }

    /// Make sure the device holds a valid RT: reuse the stored one, refresh it when due, or
    /// provision (waiting for approval up to `timeout` seconds). Raises `PendingApproval` if
    /// the operation is still waiting when the time is up.
    #[pyo3(signature = (timeout=60.0))]
    fn ensure_registered(&self, py: Python<'_>, timeout: f64) -> PyResult<Registration> {
        let t = secs(py, timeout, "timeout")?;
        self.run(py, move |c| {
            Box::pin(async move { c.ensure_registered(t).await })
        })
        .map(|b| Registration::from_body(&b))
    }

    /// Refresh the RT now.
    fn refresh(&self, py: Python<'_>) -> PyResult<Registration> {
        self.run(py, |c| Box::pin(async move { c.refresh().await }))
            .map(|b| Registration::from_body(&b))
    }

    /// Fault injection: send a refresh and lose its answer; the device keeps its current RT.
    fn refresh_losing_response(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |c| {
            Box::pin(async move { c.refresh_losing_response().await })
        })
    }

    /// The current registration, if any.
    #[getter]
    fn current(&self) -> Option<Registration> {
        self.inner.current().map(|b| Registration::from_body(&b))
    }

    /// When the next refresh is due (device-local Unix seconds), if registered.
    #[getter]
    fn next_refresh_at(&self) -> Option<i64> {
        self.inner.next_refresh_at()
    }

    /// The provisioning operation this device waits on, if any.
    #[getter]
    fn pending_operation_id(&self) -> Option<String> {
        self.inner.pending_operation()
    }

    /// Close the connection. Returns once the close is sent; the shared client runtime lets the
    /// connection drain in the background, so closing costs no round trip.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.inner.clone();
        let rt = runtime::clients()?;
        py.detach(|| rt.block_on(async move { c.close_now().await }));
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

impl Drop for DeviceClient {
    fn drop(&mut self) {
        // Close in the background: dropping must not block a Python thread.
        if let Ok(rt) = runtime::clients() {
            let c = self.inner.clone();
            rt.spawn(async move { c.close().await });
        }
    }
}
