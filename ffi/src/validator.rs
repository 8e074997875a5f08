//! Validation for C services on the platform side (an MQTT broker plugin, say): check an RT
//! through the server's introspection request and learn the device identity it carries.

use std::ffi::c_char;
use std::time::Duration;

use tessera_client::transport::Transport;
use tessera_client::Trust;
use tessera_proto::wire::messages::{IntrospectResp, RtReq};
use tessera_proto::wire::{kind, DEVICE_ALPN};

use crate::result::tessera_result;
use crate::util::{boundary, bytes, str, write};

/// What a valid RT says about its device.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tessera_rt_identity {
    /// The registration.
    pub registration_id: u64,
    /// Generation of the presented RT.
    pub generation: u32,
    /// Expiry of the presented RT, Unix seconds.
    pub expires_at: u64,
    /// The device id, NUL-terminated (at most 64 bytes + NUL).
    pub device_id: [c_char; 65],
}

pub(crate) fn identity(
    registration_id: u64,
    generation: u32,
    expires_at: u64,
    device_id: &str,
) -> tessera_rt_identity {
    let mut id = [0 as c_char; 65];
    for (dst, src) in id.iter_mut().zip(device_id.bytes().take(64)) {
        *dst = src as c_char;
    }
    tessera_rt_identity {
        registration_id,
        generation,
        expires_at,
        device_id: id,
    }
}

/// The arguments both validators' check functions take, checked in the documented order.
///
/// # Safety
/// `validator` NULL or live; `rt` NULL or `rt_len` readable bytes valid for `'a`.
pub(crate) unsafe fn check_args<'a, V>(
    validator: *const V,
    rt: *const u8,
    rt_len: usize,
    out: *mut tessera_rt_identity,
) -> Result<(&'a V, &'a [u8]), tessera_result> {
    // SAFETY: NULL or a live validator per the caller's promise.
    let v = unsafe { validator.as_ref() }.ok_or(tessera_result::TESSERA_NULL_PARAMETER)?;
    if out.is_null() {
        return Err(tessera_result::TESSERA_NULL_PARAMETER);
    }
    // SAFETY: `rt_len` readable bytes per the caller's promise.
    let text = unsafe { bytes(rt, rt_len) }?;
    Ok((v, text))
}

/// An RT to ask a server about, as text: format errors are answered here, without a round trip.
pub(crate) fn rt_text(text: &[u8]) -> Result<&str, tessera_result> {
    rt_claims(text).map(|(t, _)| t)
}

/// As [`rt_text`], with the claims the RT carries (not authenticated).
pub(crate) fn rt_claims(
    text: &[u8],
) -> Result<(&str, tessera_proto::token::RtClaims), tessera_result> {
    let rt = tessera_proto::token::UntrustedRt::parse(text).map_err(tessera_result::from)?;
    let text = std::str::from_utf8(text).map_err(|_| tessera_result::TESSERA_INVALID_UTF8)?;
    Ok((text, rt.untrusted_claims()))
}

/// The server and its CA, as the `*_new` constructors of both network validators take them
/// (checked in that order): address, certificate name, `ca_len` bytes of PEM.
///
/// # Safety
/// NULL or NUL-terminated strings; `ca_pem` NULL or `ca_len` readable bytes.
pub(crate) unsafe fn server_with_ca<'a>(
    server_addr: *const c_char,
    server_name: *const c_char,
    ca_pem: *const u8,
    ca_len: usize,
) -> Result<(&'a str, &'a str, Trust), tessera_result> {
    // SAFETY: the caller's promises.
    match unsafe { (str(server_addr), str(server_name), bytes(ca_pem, ca_len)) } {
        (Ok(a), Ok(n), Ok(p)) => Ok((a, n, Trust::CaPem(p.to_vec()))),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
    }
}

/// As [`server_with_ca`], for the `*_new_pinned` constructors: a SHA-256 fingerprint of 64 hex
/// characters (`TESSERA_INVALID_ARGUMENT` otherwise).
///
/// # Safety
/// NULL or NUL-terminated strings.
pub(crate) unsafe fn server_with_pin<'a>(
    server_addr: *const c_char,
    server_name: *const c_char,
    sha256_hex: *const c_char,
) -> Result<(&'a str, &'a str, Trust), tessera_result> {
    // SAFETY: the caller's promises.
    let (addr, name, pin) = match unsafe { (str(server_addr), str(server_name), str(sha256_hex)) } {
        (Ok(a), Ok(n), Ok(p)) => (a, n, p),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
    };
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(tessera_result::TESSERA_INVALID_ARGUMENT);
    }
    Ok((addr, name, Trust::Pin(pin.to_owned())))
}

/// A validator that asks the server (opaque). Use from one thread at a time.
#[derive(Debug)]
pub struct tessera_validator {
    addr: std::net::SocketAddr,
    name: String,
    trust: Trust,
    transport: Transport,
    log: Option<(LogTarget, crate::device::tessera_log_cb)>,
    rt: tokio::runtime::Runtime,
}

/// The `userdata` pointer a log callback gets back (only ever handed to that callback).
#[derive(Debug, Clone, Copy)]
struct LogTarget(*mut std::ffi::c_void);

impl tessera_validator {
    fn log(&self, line: &str) {
        if let (Some((LogTarget(ud), Some(f))), Ok(c)) =
            (self.log.as_ref(), std::ffi::CString::new(line))
        {
            f(*ud, c.as_ptr());
        }
    }
}

/// The default time for one check (connecting included).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Make a validator for `addr`/`name` trusting `trust`, and hand it to `out`.
///
/// # Safety
/// `out` is non-NULL caller-owned storage for one pointer.
unsafe fn new_validator(
    addr: &str,
    name: &str,
    trust: Trust,
    out: *mut *mut tessera_validator,
) -> tessera_result {
    let addr = match crate::util::resolve(addr) {
        Ok(a) => a,
        Err(e) => return e,
    };
    // The trust is checked here, where it enters (a PEM without a certificate, a bad pin).
    if tessera_client::transport::client_tls(&trust, DEVICE_ALPN).is_err() {
        return tessera_result::TESSERA_INVALID_ARGUMENT;
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return tessera_result::TESSERA_CONFIG;
    };
    let transport = {
        let _g = rt.enter();
        match Transport::new(addr, name, &trust, DEVICE_ALPN, DEFAULT_TIMEOUT) {
            Ok(t) => t,
            Err(e) => return (&e).into(),
        }
    };
    let v = tessera_validator {
        addr,
        name: name.to_owned(),
        trust,
        transport,
        log: None,
        rt,
    };
    // SAFETY: `out` is caller-owned storage for one pointer (the caller's promise).
    unsafe { write(out, Box::into_raw(Box::new(v))) }
}

/// Create a validator for the server at `server_addr` (`IP:port` or `host:port`, as
/// `tessera_device_config_new` takes it) whose certificate names `server_name`, trusting the CA
/// in `ca_pem` (`ca_len` bytes of PEM, checked here: `TESSERA_INVALID_ARGUMENT` without a
/// certificate). On success `*out` owns it. Checks time out after 10 s
/// (`tessera_validator_set_timeout`).
#[no_mangle]
pub extern "C" fn tessera_validator_new(
    server_addr: *const c_char,
    server_name: *const c_char,
    ca_pem: *const u8,
    ca_len: usize,
    out: *mut *mut tessera_validator,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: NUL-terminated strings and `ca_len` readable bytes per the caller's promise.
        match unsafe { server_with_ca(server_addr, server_name, ca_pem, ca_len) } {
            // SAFETY: `out` is non-NULL and caller-owned.
            Ok((addr, name, trust)) => unsafe { new_validator(addr, name, trust, out) },
            Err(e) => e,
        }
    })
}

/// Like `tessera_validator_new`, trusting the server chain that contains a certificate with
/// this SHA-256 fingerprint (64 hex characters, NUL-terminated; `TESSERA_INVALID_ARGUMENT`
/// otherwise) instead of a CA file, as `tessera_device_config_set_pin` does.
#[no_mangle]
pub extern "C" fn tessera_validator_new_pinned(
    server_addr: *const c_char,
    server_name: *const c_char,
    sha256_hex: *const c_char,
    out: *mut *mut tessera_validator,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: NUL-terminated strings per the caller's promise.
        match unsafe { server_with_pin(server_addr, server_name, sha256_hex) } {
            // SAFETY: `out` is non-NULL and caller-owned.
            Ok((addr, name, trust)) => unsafe { new_validator(addr, name, trust, out) },
            Err(e) => e,
        }
    })
}

/// Set how long one check may take, connecting included, in milliseconds (1..=600000;
/// outside: `TESSERA_INVALID_ARGUMENT`, nothing changed). Default 10,000.
#[no_mangle]
pub extern "C" fn tessera_validator_set_timeout(
    validator: *mut tessera_validator,
    timeout_ms: u32,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_mut() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if timeout_ms == 0 || timeout_ms > 600_000 {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        }
        let transport = {
            let _g = v.rt.enter();
            match Transport::new(
                v.addr,
                &v.name,
                &v.trust,
                DEVICE_ALPN,
                Duration::from_millis(timeout_ms.into()),
            ) {
                Ok(t) => t,
                Err(e) => return (&e).into(),
            }
        };
        let old = std::mem::replace(&mut v.transport, transport);
        v.rt.block_on(old.disconnect());
        tessera_result::TESSERA_OK
    })
}

/// Set a log callback (NULL to remove it) and the `userdata` it gets: one line per refused
/// check (the reason, never the RT) and per connection problem. Called on the thread inside
/// `tessera_validator_check`.
#[no_mangle]
pub extern "C" fn tessera_validator_set_log(
    validator: *mut tessera_validator,
    userdata: *mut std::ffi::c_void,
    log: crate::device::tessera_log_cb,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_mut() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        v.log = log.map(|f| (LogTarget(userdata), Some(f)));
        tessera_result::TESSERA_OK
    })
}

/// Check an RT (`rt`/`rt_len`) with the server. `TESSERA_OK` and `*out` filled when valid;
/// otherwise `TESSERA_UNAUTHENTICATED`, `TESSERA_EXPIRED`, `TESSERA_REVOKED`,
/// `TESSERA_SUPERSEDED`, a `TESSERA_TOKEN_*` code, `TESSERA_CERTIFICATE` (the server's
/// certificate does not carry the server name, or the CA or pin does not match),
/// `TESSERA_TIMEOUT` or `TESSERA_CONNECTION`. Blocks, at most the timeout.
#[no_mangle]
pub extern "C" fn tessera_validator_check(
    validator: *mut tessera_validator,
    rt: *const u8,
    rt_len: usize,
    out: *mut tessera_rt_identity,
) -> tessera_result {
    boundary(|| {
        // SAFETY: the caller's promises, as documented above.
        let (v, text) = match unsafe { check_args(validator, rt, rt_len, out) } {
            Ok(x) => x,
            Err(e) => return e,
        };
        let text = match rt_text(text) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let req = RtReq {
            rt: text.to_owned(),
        };
        let r: Result<IntrospectResp, _> =
            v.rt.block_on(v.transport.call(kind::INTROSPECT, &req, Duration::ZERO));
        match r {
            Ok(i) => {
                let ident = identity(i.registration_id, i.generation, i.expires_at, &i.device_id);
                // SAFETY: `out` is non-NULL and caller-owned.
                unsafe { write(out, ident) }
            }
            Err(e) => {
                // Error texts name the failure, never the RT.
                v.log(&format!("RT refused: {e}"));
                (&e).into()
            }
        }
    })
}

/// Free a validator. NULL is a no-op.
#[no_mangle]
pub extern "C" fn tessera_validator_free(validator: *mut tessera_validator) {
    let _ = boundary(|| {
        if !validator.is_null() {
            // SAFETY: a pointer from `tessera_validator_new`, freed once (caller's promise).
            let v = unsafe { Box::from_raw(validator) };
            v.rt.block_on(v.transport.disconnect());
        }
        tessera_result::TESSERA_OK
    });
}
