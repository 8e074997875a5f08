//! `tessera-ffi`: the C ABI (`libtessera.a`, `include/tessera.h`) over the engine and the
//! device client.
//!
//! Not built yet: the C ABI follows the QUIC server and device client it wraps. Until then this
//! crate exports nothing; it exists so the workspace layout is already the final one.
#![forbid(unsafe_code)]
