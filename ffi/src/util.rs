//! Pointer helpers and the panic boundary. Every cast from C lives here.

use std::ffi::{c_char, CStr};

use crate::result::tessera_result;

/// Run `body` inside a panic boundary: a panic becomes `TESSERA_PANIC`.
/// A server address: `IP:port` (`192.0.2.7:4433`, `[2001:db8::7]:4433`) or `host:port`
/// (`provisioning.example:4433`, `localhost:4433`), resolved now through the system resolver
/// (the first address is used). No port: `TESSERA_INVALID_ARGUMENT`; a name that does not
/// resolve: `TESSERA_CONNECTION`.
pub(crate) fn resolve(addr: &str) -> Result<std::net::SocketAddr, tessera_result> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(tessera_result::TESSERA_INVALID_ARGUMENT);
    }
    std::net::ToSocketAddrs::to_socket_addrs(addr)
        .ok()
        .and_then(|mut a| a.next())
        .ok_or(tessera_result::TESSERA_CONNECTION)
}

pub(crate) fn boundary(body: impl FnOnce() -> tessera_result) -> tessera_result {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        panic_point();
        body()
    })) {
        Ok(r) => r,
        Err(_) => tessera_result::TESSERA_PANIC,
    }
}

/// With the `panic-test` feature and `TESSERA_FFI_PANIC` set, every function panics here.
fn panic_point() {
    #[cfg(feature = "panic-test")]
    if std::env::var_os("TESSERA_FFI_PANIC").is_some() {
        panic!("panic-test");
    }
}

/// Largest buffer length accepted from C.
pub(crate) const MAX_LEN: usize = 1 << 20;

/// Borrow `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` must be NULL or point to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], tessera_result> {
    if ptr.is_null() {
        return Err(tessera_result::TESSERA_NULL_PARAMETER);
    }
    if len == 0 || len > MAX_LEN {
        return Err(tessera_result::TESSERA_INVALID_LENGTH);
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes valid for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrow a NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str<'a>(ptr: *const c_char) -> Result<&'a str, tessera_result> {
    if ptr.is_null() {
        return Err(tessera_result::TESSERA_NULL_PARAMETER);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's promise.
    let c = unsafe { CStr::from_ptr(ptr) };
    let b = c.to_bytes();
    if b.is_empty() || b.len() > MAX_LEN {
        return Err(tessera_result::TESSERA_INVALID_LENGTH);
    }
    c.to_str().map_err(|_| tessera_result::TESSERA_INVALID_UTF8)
}

/// Write `value` through `out`.
///
/// # Safety
/// `out` must be NULL or valid for writing a `T`.
pub(crate) unsafe fn write<T>(out: *mut T, value: T) -> tessera_result {
    if out.is_null() {
        return tessera_result::TESSERA_NULL_PARAMETER;
    }
    // SAFETY: non-NULL and writable per the caller's promise; `write` does not read or drop
    // the old (possibly uninitialised) value.
    unsafe { out.write(value) };
    tessera_result::TESSERA_OK
}

/// Copy `src` into the caller's buffer (`buf`, `cap`), writing the length through `written`.
/// The arguments are checked first, so a NULL or zero-length buffer is refused the same way
/// whether or not there is anything to copy; `None` (nothing yet) is `TESSERA_NOT_AVAILABLE`.
/// Nothing is copied unless everything fits; when it does not, `*written` gets the size needed
/// and the result is `TESSERA_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` must be NULL or valid for `cap` writable bytes; `written` NULL or writable.
pub(crate) unsafe fn copy_out(
    src: Option<&[u8]>,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> tessera_result {
    if buf.is_null() || written.is_null() {
        return tessera_result::TESSERA_NULL_PARAMETER;
    }
    if cap == 0 || cap > MAX_LEN {
        return tessera_result::TESSERA_INVALID_LENGTH;
    }
    let Some(src) = src else {
        return tessera_result::TESSERA_NOT_AVAILABLE;
    };
    if src.len() > cap {
        // The one output written on failure: the size needed, so the caller can retry.
        // SAFETY: `written` is non-NULL and writable per the caller's promise.
        unsafe { written.write(src.len()) };
        return tessera_result::TESSERA_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` is valid for `cap >= src.len()` bytes and cannot overlap our own `src`.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf, src.len()) };
    // SAFETY: `written` is non-NULL and writable per the caller's promise.
    unsafe { written.write(src.len()) };
    tessera_result::TESSERA_OK
}
