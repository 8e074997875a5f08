//! # tessera-client
//!
//! Tessera's Rust clients over QUIC, on [`tessera_proto`]'s wire codec: the device client (the
//! state machine of provisioning, the stored RT, refresh scheduling and backoff) and the admin
//! client (every admin request). It depends on neither the engine nor the server, so a device
//! build carries no store and no server code. docs/protocol.md specifies what they speak.
//!
//! ```no_run
//! use tessera_client::{BlockingDeviceClient, DeviceConfig, NoHooks, Trust};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = DeviceConfig::new(
//!     "192.0.2.10:4433".parse()?,
//!     "tessera.example",
//!     Trust::ca_file("ca.pem".as_ref())?,
//!     tessera_proto::ProvisioningToken::new(std::fs::read_to_string("pt.txt")?),
//! );
//! // Provision (or load the stored RT and refresh it when due), then present it to the broker.
//! let client = BlockingDeviceClient::new(cfg, Box::new(NoHooks))?;
//! let rt = client.ensure_registered(std::time::Duration::from_secs(600))?;
//! println!("registered as {}", rt.device_id);
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
pub use transport::{ClientError, Transport, Trust};
