//! `Engine`: a Tessera engine in this process, over a data directory (or a temporary one).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use tessera_engine::{
    Actor, Approval, Attributes, BeginRequest, DeviceId, EngineConfig, OperationId,
    OperationStatus, ProvisioningToken, PtId, RegistrationId, SoftwareKeeper, Timestamp,
};

use zeroize::Zeroizing;

use crate::errors;
use crate::tokens::token_bytes;
use crate::types::{Claims, Operation, Registration};

/// A Tessera engine. Every call takes its time from `clock` (a callable returning Unix seconds)
/// when one was given, else from the system clock.
#[pyclass(frozen, module = "tessera._native")]
pub(crate) struct Engine {
    /// `None` once closed.
    open: std::sync::Mutex<Option<Open>>,
    clock: Option<Py<PyAny>>,
    data_dir: PathBuf,
}

/// An open engine and, when it made one, its temporary data directory.
struct Open {
    engine: tessera_engine::Engine,
    // Declared last: the temporary directory outlives the engine that writes into it.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn secs(d: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    d.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| PyValueError::new_err(format!("{what} must be a non-negative number")))
    })
    .transpose()
}

/// The time from an injected clock (a callable returning Unix seconds), or the system's.
fn now_from(py: Python<'_>, clock: Option<&Py<PyAny>>) -> PyResult<Timestamp> {
    match clock {
        None => Ok(Timestamp::now_from_system_clock()),
        Some(c) => {
            let t: f64 = c.call0(py)?.extract(py).map_err(|_| {
                PyTypeError::new_err("the engine's clock must return Unix seconds as a number")
            })?;
            if !(t.is_finite() && t >= 0.0) {
                return Err(PyValueError::new_err(
                    "the engine's clock returned a negative or non-finite time",
                ));
            }
            Ok(Timestamp::from_unix_millis((t * 1000.0) as u64))
        }
    }
}

impl Engine {
    fn now(&self, py: Python<'_>) -> PyResult<Timestamp> {
        now_from(py, self.clock.as_ref())
    }

    /// The engine (a cheap handle), or `ConfigError` once closed.
    fn engine(&self, py: Python<'_>) -> PyResult<tessera_engine::Engine> {
        match &*self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(o) => Ok(o.engine.clone()),
            None => Err(
                errors::Raised::new(errors::client_code::CONFIG, "the engine is closed")
                    .into_pyerr(py),
            ),
        }
    }

    fn err(py: Python<'_>, e: tessera_engine::Error) -> PyErr {
        errors::engine(py, &e)
    }
}

fn op_id(py: Python<'_>, s: &str) -> PyResult<OperationId> {
    s.parse()
        .map_err(|e: tessera_engine::InputError| errors::engine(py, &e.into()))
}

fn device_id(py: Python<'_>, s: &str) -> PyResult<DeviceId> {
    DeviceId::new(s).map_err(|e| errors::engine(py, &e.into()))
}

/// A record as Python dicts and lists, with its times in Unix seconds (the package's one
/// convention: `tessera.records.to_seconds`).
fn to_python(py: Python<'_>, v: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let wire = py.import("json")?.call_method1("loads", (text,))?;
    Ok(py
        .import("tessera.records")?
        .call_method1("to_seconds", (wire,))?
        .unbind())
}

#[pymethods]
impl Engine {
    /// Open (or create) an engine in `data_dir`, or in a new temporary directory that is
    /// removed with the engine.
    #[new]
    #[pyo3(signature = (data_dir=None, *, clock=None, root_key=None, max_rt_lifetime=None,
                        refresh_grace=None, operation_ttl=None, max_code_attempts=None,
                        clock_skew_leeway=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        data_dir: Option<PathBuf>,
        clock: Option<Py<PyAny>>,
        root_key: Option<Vec<u8>>,
        max_rt_lifetime: Option<f64>,
        refresh_grace: Option<f64>,
        operation_ttl: Option<f64>,
        max_code_attempts: Option<u32>,
        clock_skew_leeway: Option<f64>,
    ) -> PyResult<Self> {
        if let Some(c) = &clock {
            if !c.bind(py).is_callable() {
                return Err(PyTypeError::new_err(
                    "clock must be a callable returning Unix seconds",
                ));
            }
        }
        let mut config = EngineConfig::default();
        if let Some(d) = secs(max_rt_lifetime, "max_rt_lifetime")? {
            config.max_rt_lifetime(d);
        }
        if let Some(d) = secs(refresh_grace, "refresh_grace")? {
            config.refresh_grace(d);
        }
        if let Some(d) = secs(operation_ttl, "operation_ttl")? {
            config.operation_ttl(d);
        }
        if let Some(n) = max_code_attempts {
            config.max_code_attempts(n);
        }
        if let Some(d) = secs(clock_skew_leeway, "clock_skew_leeway")? {
            if d > tessera_engine::MAX_CLOCK_SKEW_LEEWAY {
                return Err(PyValueError::new_err(
                    "clock_skew_leeway must be at most 300 seconds",
                ));
            }
            config.clock_skew_leeway(d);
        }
        let root = root_key
            .map(|k| {
                let k = zeroize::Zeroizing::new(k);
                <[u8; 32]>::try_from(k.as_slice())
                    .map_err(|_| PyValueError::new_err("root_key must be exactly 32 bytes"))
            })
            .transpose()?;
        let (temp, dir) = crate::data_dir_or_temp(py, data_dir, "tessera-engine-")?;
        let now = now_from(py, clock.as_ref())?;
        let inner = py
            .detach(|| match root {
                Some(r) => {
                    let store =
                        tessera_engine::store::SqliteStore::open(&dir, &Default::default())?;
                    tessera_engine::Engine::open(store, SoftwareKeeper::from_bytes(r), config, now)
                }
                None => tessera_engine::Engine::open_dir(&dir, config, now),
            })
            .map_err(|e| Self::err(py, e))?;
        Ok(Self {
            open: std::sync::Mutex::new(Some(Open {
                engine: inner,
                _temp: temp,
            })),
            clock,
            data_dir: dir,
        })
    }

    /// Close the engine: its store is closed and a temporary data directory it made is removed.
    /// Every later call raises `ConfigError`. Closing again does nothing. (Also what leaving a
    /// `with Engine() as e:` block does.)
    fn close(&self, py: Python<'_>) {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // Dropping the engine waits for its store's writer to finish.
        py.detach(move || drop(open));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Create a PT. Takes the arguments of the admin request PT_CREATE (docs/protocol.md).
    /// Returns `(pt_id, token)`; the token text is shown only here.
    #[pyo3(signature = (label, *, kind="single", approval="manual", max_registrations=None,
                        rule=None, rt_lifetime_secs=None, device_id_policy=None,
                        expires_at_ms=None, actor="python"))]
    #[allow(clippy::too_many_arguments)]
    fn create_pt(
        &self,
        py: Python<'_>,
        label: &str,
        kind: &str,
        approval: &str,
        max_registrations: Option<u64>,
        rule: Option<&str>,
        rt_lifetime_secs: Option<u64>,
        device_id_policy: Option<&str>,
        expires_at_ms: Option<u64>,
        actor: &str,
    ) -> PyResult<(String, String)> {
        let inner = self.engine(py)?;
        let args = tessera_proto::admin::requests::PtArgs {
            label: label.to_owned(),
            kind: Some(kind.to_owned()),
            approval: Some(approval.to_owned()),
            max_registrations,
            rule: rule.map(str::to_owned),
            rt_lifetime_secs,
            device_id_policy: device_id_policy.map(str::to_owned),
            expires_at_ms,
            count: None,
        };
        let spec =
            tessera_engine::PtSpec::try_from(&args).map_err(|e| errors::engine(py, &e.into()))?;
        let now = self.now(py)?;
        let actor = Actor::operator(actor);
        let (rec, tok) = py
            .detach(|| inner.create_pt(&spec, &actor, now))
            .map_err(|e| Self::err(py, e))?;
        Ok((rec.id.to_string(), tok.expose().to_owned()))
    }

    /// Revoke a PT and every registration it produced; returns how many were revoked.
    #[pyo3(signature = (pt_id, reason="revoked from Python", *, actor="python"))]
    fn revoke_pt(&self, py: Python<'_>, pt_id: &str, reason: &str, actor: &str) -> PyResult<usize> {
        let inner = self.engine(py)?;
        let id: PtId = pt_id
            .parse()
            .map_err(|e: tessera_engine::InputError| errors::engine(py, &e.into()))?;
        let now = self.now(py)?;
        py.detach(|| inner.revoke_pt(&id, reason, &Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))
    }

    /// Begin (or, with the same PT and nonce, resume) a provisioning operation as a device.
    /// `nonce` is the device instance's secret nonce (16-64 bytes); by default a fresh random
    /// one (32 hex digits), returned as `Operation.instance_nonce` for resuming.
    #[pyo3(signature = (pt, *, device_id=None, attributes=None, nonce=None))]
    fn begin(
        &self,
        py: Python<'_>,
        pt: &str,
        device_id: Option<&str>,
        attributes: Option<BTreeMap<String, String>>,
        nonce: Option<&str>,
    ) -> PyResult<Operation> {
        let inner = self.engine(py)?;
        let nonce = Zeroizing::new(match nonce {
            Some(n) => n.to_owned(),
            None => {
                let mut b = [0u8; 16];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).map_err(
                    |_| errors::engine(py, &tessera_engine::Error::Keys("random".into())),
                )?;
                data_encoding::HEXLOWER.encode(&b)
            }
        });
        let requested_device_id = device_id.map(|d| self::device_id(py, d)).transpose()?;
        let attributes = Attributes::new(attributes.unwrap_or_default())
            .map_err(|e| errors::engine(py, &e.into()))?;
        let req = BeginRequest {
            pt: ProvisioningToken::new(pt.to_owned()),
            requested_device_id,
            attributes,
            instance_nonce: nonce.as_bytes().to_vec(),
        };
        let now = self.now(py)?;
        py.detach(|| inner.begin_operation(req, &Actor::device(None), now))
            .map(|b| Operation::new(&b, &nonce))
            .map_err(|e| Self::err(py, e))
    }

    /// Poll an operation as its device: the registration once approved, `None` while pending.
    /// Raises `ProvisioningRejected`, `ProvisioningExpired` or `ProvisioningCancelled` when it
    /// ended without one.
    fn poll(
        &self,
        py: Python<'_>,
        operation_id: &str,
        secret: &str,
    ) -> PyResult<Option<Registration>> {
        let inner = self.engine(py)?;
        let id = op_id(py, operation_id)?;
        let now = self.now(py)?;
        let status = py
            .detach(|| inner.poll_operation(&id, secret, &Actor::device(None), now))
            .map_err(|e| Self::err(py, e))?;
        use errors::{client_code as c, Raised};
        match status {
            OperationStatus::Pending { .. } => Ok(None),
            OperationStatus::Provisioned(p) => Ok(Some(Registration::new(
                p.rt.expose(),
                p.device_id.as_str(),
                &p.claims,
            ))),
            OperationStatus::Rejected { reason } => Err(Raised::new(
                c::REJECTED,
                format!("provisioning rejected: {}", reason.unwrap_or_default()),
            )
            .into_pyerr(py)),
            OperationStatus::Expired => Err(Raised::new(
                c::OPERATION_EXPIRED,
                "provisioning operation expired",
            )
            .into_pyerr(py)),
            OperationStatus::Cancelled { .. } => {
                Err(Raised::new(c::CANCELLED, "provisioning operation cancelled").into_pyerr(py))
            }
        }
    }

    /// Like `poll`, but raises `PendingApproval` while the operation waits.
    fn collect(&self, py: Python<'_>, operation_id: &str, secret: &str) -> PyResult<Registration> {
        self.poll(py, operation_id, secret)?.ok_or_else(|| {
            errors::Raised::new(
                errors::client_code::PENDING_APPROVAL,
                "the operation is waiting for approval",
            )
            .into_pyerr(py)
        })
    }

    /// Approve an operation as a technician (with the verification code when the PT asks for
    /// one). Returns the new registration, as `AdminClient.approve` does (a
    /// `tessera.records.RegistrationRecord`, times in seconds).
    #[pyo3(signature = (operation_id, *, code=None, device_id=None, rt_lifetime=None, reassign=false, actor="technician"))]
    #[allow(clippy::too_many_arguments)]
    fn approve(
        &self,
        py: Python<'_>,
        operation_id: &str,
        code: Option<String>,
        device_id: Option<&str>,
        rt_lifetime: Option<f64>,
        reassign: bool,
        actor: &str,
    ) -> PyResult<Py<PyAny>> {
        let inner = self.engine(py)?;
        let id = op_id(py, operation_id)?;
        let approval = Approval {
            verification_code: code,
            device_id: device_id.map(|d| self::device_id(py, d)).transpose()?,
            rt_lifetime: secs(rt_lifetime, "rt_lifetime")?,
            reassign,
        };
        let now = self.now(py)?;
        let reg = py
            .detach(|| inner.approve_operation(&id, approval, &Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))?;
        to_python(py, &reg)
    }

    /// Reject an operation as a technician.
    #[pyo3(signature = (operation_id, reason="rejected from Python", *, actor="technician"))]
    fn reject(
        &self,
        py: Python<'_>,
        operation_id: &str,
        reason: &str,
        actor: &str,
    ) -> PyResult<()> {
        let inner = self.engine(py)?;
        let id = op_id(py, operation_id)?;
        let now = self.now(py)?;
        py.detach(|| inner.reject_operation(&id, reason, &Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))
    }

    /// Cancel an operation as its device.
    fn cancel(&self, py: Python<'_>, operation_id: &str, secret: &str) -> PyResult<()> {
        let inner = self.engine(py)?;
        let id = op_id(py, operation_id)?;
        let now = self.now(py)?;
        py.detach(|| inner.cancel_operation(&id, secret, &Actor::device(None), now))
            .map_err(|e| Self::err(py, e))
    }

    /// Expire overdue operations now; returns how many expired.
    fn expire_operations(&self, py: Python<'_>) -> PyResult<usize> {
        let inner = self.engine(py)?;
        let now = self.now(py)?;
        py.detach(|| inner.expire_operations(now))
            .map_err(|e| Self::err(py, e))
    }

    /// Refresh an RT as its device: the successor (the same successor again for a retry within
    /// the grace period).
    fn refresh(&self, py: Python<'_>, rt: &str) -> PyResult<Registration> {
        let inner = self.engine(py)?;
        let now = self.now(py)?;
        py.detach(|| inner.refresh(rt, &Actor::device(None), now))
            .map(|r| Registration::new(r.rt.expose(), r.device_id.as_str(), &r.claims))
            .map_err(|e| Self::err(py, e))
    }

    /// Validate an RT (`str` or `bytes`, text form): its claims, or the exception saying why
    /// not. Lock-free and allocation-free in the engine. Keeps the GIL: the ~0.2 µs of work
    /// costs less than handing the GIL over and back (measured in docs/python.md: releasing it
    /// made two threads slower than one). Threads that validate in bulk use `validate_many`.
    fn validate(&self, py: Python<'_>, rt: &Bound<'_, PyAny>) -> PyResult<Claims> {
        let inner = self.engine(py)?;
        let b = token_bytes(rt, "rt")?;
        let now = self.now(py)?;
        inner
            .validate_rt(b, now)
            .map(|v| Claims::from(&v.claims))
            .map_err(|e| Self::err(py, e))
    }

    /// Validate many RTs with the GIL released once for the whole batch. Returns, per token,
    /// its `Claims` or the exception instance (not raised).
    fn validate_many<'py>(
        &self,
        py: Python<'py>,
        rts: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let inner = self.engine(py)?;
        let texts = rts
            .iter()
            .map(|t| token_bytes(t, "rt"))
            .collect::<PyResult<Vec<&[u8]>>>()?;
        let now = self.now(py)?;
        let results: Vec<Result<Claims, tessera_engine::Error>> = py.detach(|| {
            texts
                .iter()
                .map(|t| inner.validate_rt(t, now).map(|v| Claims::from(&v.claims)))
                .collect()
        });
        let out = PyList::empty(py);
        for r in results {
            match r {
                Ok(c) => out.append(Py::new(py, c)?)?,
                Err(e) => out.append(Self::err(py, e).into_value(py))?,
            }
        }
        Ok(out)
    }

    /// What a service learns about an RT: `{device_id, registration_id, pt_id, generation,
    /// expires_at}`, or the exception saying why it is not valid.
    fn introspect(&self, py: Python<'_>, rt: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let inner = self.engine(py)?;
        let b = token_bytes(rt, "rt")?;
        let now = self.now(py)?;
        let i = py
            .detach(|| inner.introspect(b, now))
            .map_err(|e| Self::err(py, e))?;
        to_python(py, &i)
    }

    /// Revoke a registration (every RT of its family).
    #[pyo3(signature = (registration_id, reason="revoked from Python", *, actor="python"))]
    fn revoke_registration(
        &self,
        py: Python<'_>,
        registration_id: u64,
        reason: &str,
        actor: &str,
    ) -> PyResult<()> {
        let inner = self.engine(py)?;
        let now = self.now(py)?;
        py.detach(|| {
            inner.revoke_registration(
                RegistrationId::new(registration_id),
                reason,
                &Actor::operator(actor),
                now,
            )
        })
        .map_err(|e| Self::err(py, e))
    }

    /// Block a device id from provisioning and revoke its registrations; returns how many.
    #[pyo3(signature = (device_id, reason="blocked from Python", *, actor="python"))]
    fn block_device(
        &self,
        py: Python<'_>,
        device_id: &str,
        reason: &str,
        actor: &str,
    ) -> PyResult<usize> {
        let inner = self.engine(py)?;
        let d = self::device_id(py, device_id)?;
        let now = self.now(py)?;
        py.detach(|| inner.block_device(&d, reason, &Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))
    }

    /// Lift a block; returns whether the device was blocked.
    #[pyo3(signature = (device_id, *, actor="python"))]
    fn unblock_device(&self, py: Python<'_>, device_id: &str, actor: &str) -> PyResult<bool> {
        let inner = self.engine(py)?;
        let d = self::device_id(py, device_id)?;
        let now = self.now(py)?;
        py.detach(|| inner.unblock_device(&d, &Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))
    }

    /// The stored record of a registration, as a dict.
    fn registration(&self, py: Python<'_>, registration_id: u64) -> PyResult<Py<PyAny>> {
        let inner = self.engine(py)?;
        let r = py
            .detach(|| inner.registration(RegistrationId::new(registration_id)))
            .map_err(|e| Self::err(py, e))?;
        to_python(py, &r)
    }

    /// Audit events after sequence number `after`, oldest first, as dicts.
    #[pyo3(signature = (after=0, limit=100))]
    fn audit(&self, py: Python<'_>, after: u64, limit: usize) -> PyResult<Py<PyAny>> {
        let inner = self.engine(py)?;
        let r = py
            .detach(|| inner.audit(after, limit))
            .map_err(|e| Self::err(py, e))?;
        to_python(py, &r)
    }

    /// Rotate the working keys; returns the new key epoch.
    #[pyo3(signature = (*, actor="python"))]
    fn rotate_keys(&self, py: Python<'_>, actor: &str) -> PyResult<u32> {
        let inner = self.engine(py)?;
        let now = self.now(py)?;
        py.detach(|| inner.rotate_keys(&Actor::operator(actor), now))
            .map_err(|e| Self::err(py, e))
    }

    /// Engine counters, as a dict.
    fn status(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = self.engine(py)?;
        let s = py.detach(|| inner.status()).map_err(|e| Self::err(py, e))?;
        to_python(py, &s)
    }

    fn __repr__(&self) -> String {
        format!("Engine(data_dir='{}')", self.data_dir.display())
    }
}
