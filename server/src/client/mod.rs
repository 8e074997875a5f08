//! Rust clients: the admin client and the device client.

pub mod admin;
pub mod device;
mod socket;
pub mod transport;

pub use admin::AdminClient;
pub use device::{
    BlockingDeviceClient, DeviceClient, DeviceConfig, DeviceError, DeviceFaults, DeviceHooks,
    NoHooks,
};
pub use transport::{ClientError, Transport, Trust};
