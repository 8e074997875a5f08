//! `libtessera`: the C ABI over Tessera's token helpers, device client and validators.
//!
//! Two shapes, by cargo feature:
//! - `device` (the default, and what firmware builds): token helpers, the device client and the
//!   network validator, over `tessera-proto` and `tessera-client` only; no store, no engine,
//!   no server code.
//! - `platform`: adds the local validator, which opens a server's data directory and so links
//!   the engine and its store. Its functions are under `#if defined(TESSERA_PLATFORM)` in the
//!   header; define `TESSERA_PLATFORM` when building against this shape.
//!
//! Conventions (after rustls-ffi): opaque handles, `tessera_<type>_<verb>`
//! names, every fallible function returns a [`tessera_result`] with an explicit, never reused
//! number; outputs go through trailing pointers and are written only on success (one exception:
//! `TESSERA_BUFFER_TOO_SMALL` writes the size needed); buffers are pointer + length;
//! `_free(NULL)` is a no-op; every pointer is checked for NULL; every body runs inside a panic
//! boundary, so a panic becomes `TESSERA_PANIC` instead of aborting the firmware. Secrets handed
//! to C are copied into caller buffers; Tessera zeroizes its own copies.
//!
//! One rule for bad arguments, on every function: a NULL pointer is `TESSERA_NULL_PARAMETER`; a
//! string or buffer whose length is outside the documented range (empty included) is
//! `TESSERA_INVALID_LENGTH`; text that is not UTF-8 is `TESSERA_INVALID_UTF8`; content that is
//! not allowed (characters, formats, numbers out of range, one attribute too many) is
//! `TESSERA_INVALID_ARGUMENT`; a malformed token is one of the `TESSERA_TOKEN_*` codes.
#![allow(unsafe_code)] // this crate is the C boundary; every unsafe block has a SAFETY comment
#![allow(non_camel_case_types)]
// Exported functions take raw pointers from C by design: each documents its pointer contract,
// and every dereference goes through the checked helpers in util.rs.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod device;
#[cfg(feature = "platform")]
mod local_validator;
mod result;
#[cfg(feature = "platform")]
mod service_validator;
mod tokens;
mod util;
mod validator;

pub use device::*;
#[cfg(feature = "platform")]
pub use local_validator::*;
pub use result::*;
#[cfg(feature = "platform")]
pub use service_validator::*;
pub use tokens::*;
pub use validator::*;

/// The largest document the save callback is given, and the `cap` the load callback gets.
pub const TESSERA_STORED_MAX: usize = 4096;
/// The longest RT text this library hands out or accepts (today's RTs are 101 characters;
/// later versions stay within this): size RT buffers by it.
pub const TESSERA_RT_MAX_LEN: usize = 128;
/// The longest device id, in bytes (without the NUL).
pub const TESSERA_DEVICE_ID_MAX_LEN: usize = 64;

#[cfg(not(feature = "device"))]
compile_error!("libtessera is built with the `device` feature (firmware) or `platform`");

const _: () = assert!(
    tessera_proto::token::RT_TEXT_LEN <= TESSERA_RT_MAX_LEN
        && tessera_proto::limits::DEVICE_ID_MAX == TESSERA_DEVICE_ID_MAX_LEN
);
