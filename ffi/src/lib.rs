//! `libtessera`: the C ABI over the Tessera engine's token helpers and the device client.
//!
//! Conventions (after rustls-ffi): opaque handles, `tessera_<type>_<verb>`
//! names, every fallible function returns a [`tessera_result`] with an explicit, never reused
//! number; outputs go through trailing pointers and are written only on success; buffers are
//! pointer + length; `_free(NULL)` is a no-op; every pointer is checked for NULL; every body runs
//! inside a panic boundary, so a panic becomes `TESSERA_PANIC` instead of aborting the firmware.
//! Secrets handed to C are copied into caller buffers; Tessera zeroizes its own copies.
#![allow(unsafe_code)] // this crate is the C boundary; every unsafe block has a SAFETY comment
#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C by design: each documents its pointer contract,
// and every dereference goes through the checked helpers in util.rs.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod device;
mod result;
mod tokens;
mod util;
mod validator;

pub use device::*;
pub use result::*;
pub use tokens::*;
pub use validator::*;
