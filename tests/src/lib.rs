//! `tessera-tests`: cross-crate integration tests (end to end over QUIC, crash and restart of
//! the server).
//!
//! The engine's own behaviour is tested in `engine/tests/`; the cross-crate suites arrive with
//! the QUIC server. Until then this crate holds no tests.
#![forbid(unsafe_code)]
