//! # tessera-server
//!
//! Tessera's QUIC server over [`tessera_engine`]: the device and admin endpoints ([`server`])
//! and the `tessera` operator binary (serve + CLI, whose admin commands use
//! [`tessera_client`]). The wire protocol is [`tessera_proto::wire`]; docs/protocol.md
//! specifies it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod server;

pub use server::{Server, ServerConfig};
