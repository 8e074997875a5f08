//! The values the native module hands to Python. Secrets (RTs, operation secrets) are kept in
//! zeroizing strings and left out of `repr`.

use pyo3::prelude::*;
use tessera_proto::token::RtClaims;
use tessera_proto::wire::messages::RtBody;
use zeroize::Zeroizing;

/// The claims of an RT that validated (or, from `inspect_rt`, that parsed — unauthenticated).
#[pyclass(frozen, get_all, eq, skip_from_py_object, module = "tessera._native")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    /// Registration (RT family) id.
    pub(crate) registration_id: u64,
    /// Generation within the family (1 for the first RT, +1 per refresh).
    pub(crate) generation: u32,
    /// Issue time, Unix seconds.
    pub(crate) issued_at: u64,
    /// Expiry time, Unix seconds.
    pub(crate) expires_at: u64,
    /// Key epoch of the MAC key.
    pub(crate) key_id: u32,
    /// The registration's binding (the same in every generation; docs/tokens.md).
    pub(crate) binding: u32,
}

impl From<&RtClaims> for Claims {
    fn from(c: &RtClaims) -> Self {
        Self {
            registration_id: c.registration_id.get(),
            generation: c.generation,
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            key_id: c.key_id,
            binding: c.binding,
        }
    }
}

#[pymethods]
impl Claims {
    fn __repr__(&self) -> String {
        format!(
            "Claims(registration_id={}, generation={}, issued_at={}, expires_at={}, key_id={})",
            self.registration_id, self.generation, self.issued_at, self.expires_at, self.key_id
        )
    }
}

/// A registration as a device holds it: the RT (a secret) and its public fields.
#[pyclass(frozen, module = "tessera._native")]
pub(crate) struct Registration {
    rt: Zeroizing<String>,
    #[pyo3(get)]
    device_id: String,
    #[pyo3(get)]
    registration_id: u64,
    #[pyo3(get)]
    generation: u32,
    #[pyo3(get)]
    issued_at: u64,
    #[pyo3(get)]
    expires_at: u64,
}

// Debug shows what `repr` shows: never the secret.
impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.__repr__())
    }
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.__repr__())
    }
}

impl Registration {
    pub(crate) fn new(rt: &str, device_id: &str, claims: &RtClaims) -> Self {
        Self {
            rt: Zeroizing::new(rt.to_owned()),
            device_id: device_id.to_owned(),
            registration_id: claims.registration_id.get(),
            generation: claims.generation,
            issued_at: claims.issued_at,
            expires_at: claims.expires_at,
        }
    }

    pub(crate) fn from_body(b: &RtBody) -> Self {
        Self {
            rt: Zeroizing::new(b.rt.clone()),
            device_id: b.device_id.clone(),
            registration_id: b.registration_id,
            generation: b.generation,
            issued_at: b.issued_at,
            expires_at: b.expires_at,
        }
    }
}

#[pymethods]
impl Registration {
    /// The RT text (`tsrt_…`). A secret: do not log it.
    #[getter]
    fn rt(&self) -> &str {
        &self.rt
    }

    fn __repr__(&self) -> String {
        format!(
            "Registration(device_id='{}', registration_id={}, generation={}, expires_at={}, rt=<redacted>)",
            self.device_id, self.registration_id, self.generation, self.expires_at
        )
    }
}

/// A provisioning operation as the device sees it after BEGIN.
#[pyclass(frozen, module = "tessera._native")]
pub(crate) struct Operation {
    #[pyo3(get)]
    operation_id: String,
    secret: Zeroizing<String>,
    #[pyo3(get)]
    verification_code: Option<String>,
    #[pyo3(get)]
    state: String,
    #[pyo3(get)]
    expires_at: f64,
    #[pyo3(get)]
    resumed: bool,
    instance_nonce: Zeroizing<String>,
}

impl Operation {
    pub(crate) fn new(b: &tessera_engine::BeginOutcome, instance_nonce: &str) -> Self {
        Self {
            instance_nonce: Zeroizing::new(instance_nonce.to_owned()),
            operation_id: b.operation_id.to_string(),
            secret: Zeroizing::new(b.secret.expose().to_owned()),
            verification_code: b.verification_code.as_ref().map(|c| c.expose().to_owned()),
            state: b.state.to_string(),
            expires_at: b.expires_at.unix_millis() as f64 / 1000.0,
            resumed: b.resumed,
        }
    }
}

#[pymethods]
impl Operation {
    /// The operation secret (`tsos_…`) that collects the RT. A secret: do not log it.
    #[getter]
    fn secret(&self) -> &str {
        &self.secret
    }

    /// The instance nonce the operation was begun with (random unless given): BEGIN again
    /// with it to resume the operation. A secret: do not log it.
    #[getter]
    fn instance_nonce(&self) -> &str {
        &self.instance_nonce
    }

    fn __repr__(&self) -> String {
        format!(
            "Operation(operation_id='{}', state='{}', verification_code={}, resumed={}, secret=<redacted>)",
            self.operation_id,
            self.state,
            self.verification_code
                .as_deref()
                .map_or_else(|| "None".to_owned(), |c| format!("'{c}'")),
            if self.resumed { "True" } else { "False" }
        )
    }
}
