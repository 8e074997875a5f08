//! Validation for C services on the platform side (an MQTT broker plugin, say): check an RT
//! through the server's introspection request and learn the device identity it carries.

use std::ffi::c_char;
use std::time::Duration;

use tessera_server::client::transport::Transport;
use tessera_server::wire::messages::{IntrospectResp, RtReq};
use tessera_server::wire::{kind, DEVICE_ALPN};
use tessera_server::Trust;

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

/// A validator that asks the server (opaque). Use from one thread at a time.
#[derive(Debug)]
pub struct tessera_validator {
    transport: Transport,
    rt: tokio::runtime::Runtime,
}

/// Create a validator for the server at `server_addr` whose certificate names `server_name`,
/// trusting the CA in `ca_pem` (`ca_len` bytes). On success `*out` owns it.
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
        let (addr, name, pem) =
            match unsafe { (str(server_addr), str(server_name), bytes(ca_pem, ca_len)) } {
                (Ok(a), Ok(n), Ok(p)) => (a, n, p),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
            };
        let Ok(addr) = addr.parse() else {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return tessera_result::TESSERA_CONFIG;
        };
        let transport = {
            let _g = rt.enter();
            match Transport::new(
                addr,
                name,
                &Trust::CaPem(pem.to_vec()),
                DEVICE_ALPN,
                Duration::from_secs(10),
            ) {
                Ok(t) => t,
                Err(e) => return (&e).into(),
            }
        };
        // SAFETY: `out` is caller-owned storage for one pointer.
        unsafe {
            write(
                out,
                Box::into_raw(Box::new(tessera_validator { transport, rt })),
            )
        }
    })
}

/// Check an RT (`rt`/`rt_len`) with the server. `TESSERA_OK` and `*out` filled when valid;
/// otherwise `TESSERA_UNAUTHENTICATED`, `TESSERA_EXPIRED`, `TESSERA_REVOKED`,
/// `TESSERA_SUPERSEDED`, a `TESSERA_TOKEN_*` code, or a connection error. Blocks.
#[no_mangle]
pub extern "C" fn tessera_validator_check(
    validator: *mut tessera_validator,
    rt: *const u8,
    rt_len: usize,
    out: *mut tessera_rt_identity,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: `rt_len` readable bytes per the caller's promise.
        let text = match unsafe { bytes(rt, rt_len) } {
            Ok(t) => t,
            Err(e) => return e,
        };
        // Format errors are answered here, without a round trip.
        if let Err(e) = tessera_engine::token::UntrustedRt::parse(text) {
            return e.into();
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return tessera_result::TESSERA_INVALID_UTF8;
        };
        let req = RtReq {
            rt: text.to_owned(),
        };
        let r: Result<IntrospectResp, _> =
            v.rt.block_on(v.transport.call(kind::INTROSPECT, &req, Duration::ZERO));
        match r {
            Ok(i) => {
                let mut id = [0 as c_char; 65];
                for (dst, src) in id.iter_mut().zip(i.device_id.bytes().take(64)) {
                    *dst = src as c_char;
                }
                let ident = tessera_rt_identity {
                    registration_id: i.registration_id,
                    generation: i.generation,
                    expires_at: i.expires_at,
                    device_id: id,
                };
                // SAFETY: `out` is non-NULL and caller-owned.
                unsafe { write(out, ident) }
            }
            Err(e) => (&e).into(),
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
