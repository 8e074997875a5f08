//! Why the server could not start.

use super::tls;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine could not open.
    #[error("engine: {0}")]
    Engine(#[from] tessera_engine::Error),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// A socket could not be bound or configured.
    #[error("{0}")]
    Io(String),
    /// The data directory lacks part of the deployment's identity (root key, CA, server
    /// certificate) that would otherwise be made anew: what is missing and how to restore it.
    #[error("{0}")]
    Identity(String),
}
