//! `tessera-server`: the QUIC layer and the `tessera` operator binary.
//!
//! Not built yet: this crate will hold the device and admin endpoints, the wire codec and the
//! `tessera` binary. Until then it exports nothing; it exists so the workspace layout is
//! already the final one.
#![forbid(unsafe_code)]
