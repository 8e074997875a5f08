//! `tessera-python`: the native module `tessera._native` behind the pip package `tessera`.
//!
//! Not built yet: the bindings follow the QUIC server and the Rust clients they wrap. Until then
//! this crate exports nothing; it exists so the workspace layout is already the final one.
#![forbid(unsafe_code)]
