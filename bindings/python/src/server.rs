//! `Server`: a real Tessera server (both QUIC endpoints, the engine, the store) running inside
//! this process on ephemeral loopback ports, with its own runtime, until `stop()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tessera_server::server::ManualClock;
use tessera_server::ServerConfig;
use zeroize::Zeroizing;

use crate::errors;

struct Running {
    // Field order: the server is dropped before the runtime that drives it.
    server: tessera_server::Server,
    rt: tokio::runtime::Runtime,
}

impl Running {
    fn stop(self, grace: Duration) {
        let Running { server, rt } = self;
        rt.block_on(server.shutdown(grace));
        rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// A running server. Stopped by `stop()`, by leaving its `with` block, or when collected.
#[pyclass(frozen, module = "tessera._native")]
pub(crate) struct Server {
    running: Mutex<Option<Running>>,
    device_addr: SocketAddr,
    admin_addr: SocketAddr,
    ca_pem: String,
    ca_path: PathBuf,
    ca_fingerprint: String,
    admin_token: Zeroizing<String>,
    data_dir: PathBuf,
    clock: Option<Arc<ManualClock>>,
    temp: Mutex<Option<tempfile::TempDir>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("device_addr", &self.device_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    fn take(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Apply `overrides` (a dict of `[engine]` settings, docs/operations.md) to `cfg`.
fn apply_engine_settings(
    py: Python<'_>,
    cfg: &mut ServerConfig,
    overrides: &Bound<'_, PyDict>,
) -> PyResult<()> {
    let mut v = serde_json::to_value(&cfg.engine)
        .map_err(|e| errors::config(py, format!("engine settings: {e}")))?;
    let text: String = py
        .import("json")?
        .call_method1("dumps", (overrides,))?
        .extract()?;
    let o: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| errors::config(py, format!("engine settings: {e}")))?;
    if let Some(m) = v.as_object_mut() {
        m.extend(o);
    }
    cfg.engine = serde_json::from_value(v)
        .map_err(|e| errors::config(py, format!("engine settings: {e}")))?;
    Ok(())
}

#[pymethods]
impl Server {
    /// Start a server with its data in `data_dir` (or a temporary directory removed at stop).
    ///
    /// Defaults differ from `tessera serve` where tests need it: every endpoint on
    /// 127.0.0.1 with ephemeral ports, no metrics listener, and per-source limits raised (a
    /// simulated fleet all comes from 127.0.0.1). `engine` overrides `[engine]` settings;
    /// `manual_clock=True` freezes the server's clock until `advance_clock` moves it.
    #[new]
    #[pyo3(signature = (data_dir=None, *, manual_clock=false, engine=None,
                        max_connections_per_source=100_000, request_deadline_ms=None))]
    fn new(
        py: Python<'_>,
        data_dir: Option<PathBuf>,
        manual_clock: bool,
        engine: Option<Bound<'_, PyDict>>,
        max_connections_per_source: usize,
        request_deadline_ms: Option<u64>,
    ) -> PyResult<Self> {
        let (temp, dir) = crate::data_dir_or_temp(py, data_dir, "tessera-server-")?;
        let mut cfg = ServerConfig::ephemeral(dir.clone());
        cfg.max_connections_per_source = max_connections_per_source;
        cfg.engine.source_burst = 1_000_000;
        cfg.engine.source_per_minute = 1_000_000;
        // A simulated fleet and its harness all talk from 127.0.0.1 with one admin token, and
        // tests poll: the per-source and per-token limits would throttle the harness, not an
        // attacker. (Pass engine={...} settings to test the engine's own limits.)
        cfg.wait_burst = 1_000_000;
        cfg.wait_per_minute = 1_000_000;
        cfg.introspect_burst = 1_000_000;
        cfg.introspect_per_minute = 1_000_000;
        cfg.admin_burst = 1_000_000;
        cfg.admin_per_minute = 1_000_000;
        cfg.engine.fleet_pt_burst = 1_000_000;
        cfg.engine.fleet_pt_per_minute = 1_000_000;
        if let Some(d) = request_deadline_ms {
            cfg.request_deadline_ms = d;
        }
        if let Some(o) = &engine {
            apply_engine_settings(py, &mut cfg, o)?;
        }
        let clock = manual_clock.then(ManualClock::new);
        let started = py.detach(|| -> Result<Running, String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("tessera-server")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let server = rt
                .block_on(async {
                    match &clock {
                        Some(c) => tessera_server::Server::start_with_clock(cfg, c.clone()).await,
                        None => tessera_server::Server::start(cfg).await,
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(Running { server, rt })
        });
        let running = started.map_err(|e| errors::config(py, format!("server: {e}")))?;
        let s = &running.server;
        let ca_path = s.ca_cert_path();
        let ca_pem = std::fs::read_to_string(&ca_path)
            .map_err(|e| errors::config(py, format!("{}: {e}", ca_path.display())))?;
        let Some(admin_token) = s
            .first_admin_token()
            .map(|t| Zeroizing::new(t.expose().to_owned()))
        else {
            py.detach(|| running.stop(Duration::ZERO));
            return Err(errors::config(
                py,
                "the data directory already has admin tokens; start from an empty one",
            ));
        };
        Ok(Self {
            device_addr: s.device_addr(),
            admin_addr: s.admin_addr(),
            ca_fingerprint: s.ca_fingerprint().to_owned(),
            ca_pem,
            ca_path,
            admin_token,
            data_dir: dir,
            clock,
            running: Mutex::new(Some(running)),
            temp: Mutex::new(temp),
        })
    }

    /// The device endpoint, `"127.0.0.1:port"`.
    #[getter]
    fn device_address(&self) -> String {
        self.device_addr.to_string()
    }

    /// The device endpoint's UDP port.
    #[getter]
    fn device_port(&self) -> u16 {
        self.device_addr.port()
    }

    /// The admin endpoint, `"127.0.0.1:port"`.
    #[getter]
    fn admin_address(&self) -> String {
        self.admin_addr.to_string()
    }

    /// The admin endpoint's UDP port.
    #[getter]
    fn admin_port(&self) -> u16 {
        self.admin_addr.port()
    }

    /// The CA certificate devices trust, PEM.
    #[getter]
    fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate is stored.
    #[getter]
    fn ca_path(&self) -> PathBuf {
        self.ca_path.clone()
    }

    /// The CA's SHA-256 fingerprint (hex) that devices may pin instead of the PEM.
    #[getter]
    fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The first admin token (`tsat_…`, role admin). A secret: do not log it.
    #[getter]
    fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Whether the server is still running.
    #[getter]
    fn running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Move the server's clock forward (only with `manual_clock=True`), then run the server's
    /// housekeeping at the new time at once (as its periodic sweep would on a real clock):
    /// operations past their expiry are marked expired everywhere, lists and counts included.
    fn advance_clock(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        let c = self.clock.as_ref().ok_or_else(|| {
            PyRuntimeError::new_err("advance_clock needs a server started with manual_clock=True")
        })?;
        let d = Duration::try_from_secs_f64(seconds)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("seconds must be >= 0"))?;
        c.advance(d);
        let engine = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|r| r.server.engine().clone());
        if let Some(engine) = engine {
            let now = tessera_server::server::Clock::now(&**c);
            py.detach(|| engine.prune(now))
                .map_err(|e| errors::engine(py, &e))?;
        }
        Ok(())
    }

    /// Drain requests in flight for up to `grace` seconds, close both endpoints, stop the
    /// runtime, and remove a temporary data directory. Idempotent.
    #[pyo3(signature = (grace=1.0))]
    fn stop(&self, py: Python<'_>, grace: f64) {
        if let Some(r) = self.take() {
            let g = Duration::try_from_secs_f64(grace).unwrap_or(Duration::ZERO);
            py.detach(|| r.stop(g));
        }
        drop(
            self.temp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.stop(py, 1.0);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "Server(device_address='{}', admin_address='{}', running={})",
            self.device_addr,
            self.admin_addr,
            if self.running() { "True" } else { "False" }
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(r) = self.take() {
            r.stop(Duration::ZERO);
        }
    }
}
