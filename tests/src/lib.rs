//! `tessera-tests`: what the test suites of several crates share, and (under `tests/`) the
//! cross-crate suites: end to end over QUIC, the HTTPS API, several nodes, crash and restart.
//!
//! The library holds only what more than one test crate needs and depends on nothing of
//! Tessera's but `tessera-proto`, so the engine's, the C library's and the server's tests can
//! all use it without a dependency cycle:
//!
//! - [`judgement`]: the one table of RT cases every validator is run against (the engine, the
//!   local validator, the C service validator), and a minter for the RTs the table needs;
//! - [`postgres`]: whether a suite runs on PostgreSQL, and the schema each test gets;
//! - [`instance_nonce`]: the instance nonce of a named test device.
#![forbid(unsafe_code)]

pub mod judgement;
pub mod postgres;
pub mod proxy;

/// The instance nonce of the test device instance called `label`: at least 16 bytes, as the
/// server requires (labels alone are often shorter).
pub fn instance_nonce(label: &str) -> String {
    format!("test-instance-nonce:{label}")
}
