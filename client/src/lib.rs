//! # tessera-client
//!
//! Tessera's Rust clients over QUIC, on [`tessera_proto`]'s wire codec: the device client (the
//! state machine of provisioning, the stored RT, refresh scheduling and backoff) and the admin
//! client (every admin request). It depends on neither the engine nor the server, so a device
//! build carries no store and no server code. docs/protocol.md specifies what they speak.
//!
//! An operator creates a PT over the admin endpoint; a device provisions with it, collects its
//! RT and refreshes it. (The example starts a server in-process; a device is given the server's
//! address, its CA certificate or fingerprint, and the PT from its firmware image.)
//!
//! ```
//! use std::time::Duration;
//! use tessera_client::{AdminClient, DeviceClient, DeviceConfig, NoHooks, Trust};
//! use tessera_proto::admin::requests::PtArgs;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let server = tessera_server::Server::start(
//! #     tessera_server::ServerConfig::ephemeral(dir.path().join("data"))).await?;
//! # let (admin_addr, device_addr) = (server.admin_addr(), server.device_addr());
//! # let ca = server.ca_cert_path();
//! # let admin_token = server.first_admin_token().unwrap().clone();
//! let trust = Trust::ca_file(&ca)?;
//!
//! // The operator: a PT whose operations are approved without a technician.
//! let admin = AdminClient::new(admin_addr, "localhost", &trust, admin_token)?;
//! let args = PtArgs { approval: Some("automatic".into()), ..PtArgs::new("line 3") };
//! let created = admin.create_pt(&args).await?;
//!
//! // The device: provision, then refresh (a real device refreshes when `next_refresh_at` says).
//! let cfg = DeviceConfig::new(device_addr, "localhost", trust, created.token.clone().into());
//! let device = DeviceClient::new(cfg, Box::new(NoHooks))?;
//! let first = device.ensure_registered(Duration::from_secs(30)).await?;
//! let next = device.refresh().await?;
//! assert_eq!(next.registration_id, first.registration_id);
//! assert_eq!(next.generation, first.generation + 1);
//! # admin.close_now().await; device.close().await;
//! # server.shutdown(Duration::from_secs(1)).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod device;
mod socket;
pub mod tls;
pub mod transport;

pub use admin::AdminClient;
pub use device::{
    BlockingDeviceClient, DeviceClient, DeviceConfig, DeviceError, DeviceFaults, DeviceHooks,
    NoHooks,
};
pub use transport::{ClientError, ConnectionClosed, Transport, Trust};
