//! # tessera-server
//!
//! Tessera's QUIC layer over [`tessera_engine`]: the wire protocol ([`wire`], pure and fuzzed),
//! the server with its device and admin endpoints ([`server`]), the Rust clients ([`client`]),
//! and the `tessera` operator binary (serve + CLI). docs/protocol.md specifies the protocol.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod wire;

pub use client::{
    AdminClient, BlockingDeviceClient, ClientError, DeviceClient, DeviceConfig, Trust,
};
pub use server::{Server, ServerConfig};
