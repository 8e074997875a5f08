//! # tessera-server
//!
//! Tessera's QUIC server over [`tessera_engine`]: the device and admin endpoints ([`server`])
//! and the `tessera` operator binary (serve + CLI, whose admin commands use
//! [`tessera_client`]). The wire protocol is [`tessera_proto::wire`]; docs/protocol.md
//! specifies it.
//!
//! Embedding the server (the `tessera serve` binary does the same, with its configuration):
//!
//! ```
//! use std::time::Duration;
//! use tessera_server::{Server, ServerConfig};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! // A data directory of its own (store, root key file, TLS material), loopback ports.
//! let server = Server::start(ServerConfig::ephemeral(dir.path().join("data"))).await?;
//! println!("devices: {}, operators: {}", server.device_addr(), server.admin_addr());
//! println!("devices trust {}", server.ca_cert_path().display());
//! assert!(server.first_admin_token().is_some()); // made on the first start, shown once
//! server.shutdown(Duration::from_secs(5)).await; // lets requests in flight finish
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod server;

pub use server::{Server, ServerConfig};

/// The commit this build is from (12 hex digits; `unknown` outside a git checkout).
pub const COMMIT: &str = env!("TESSERA_COMMIT");

/// The build's date: its commit's (`SOURCE_DATE_EPOCH`'s when set), `YYYY-MM-DD`.
pub const BUILD_DATE: &str = env!("TESSERA_BUILD_DATE");

/// `tessera --version`: the version, the commit and the build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TESSERA_COMMIT"),
    ", built ",
    env!("TESSERA_BUILD_DATE"),
    ")"
);
