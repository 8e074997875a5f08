//! Token helpers that need no key: check a PT's format, read an RT's public fields.

use tessera_proto::token::{ParsedPt, UntrustedRt};

use crate::result::tessera_result;
use crate::util::{boundary, bytes, write};

/// The public fields of an RT. They are *not* authenticated: only the server (or a validator)
/// can tell whether the RT is genuine.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tessera_rt_info {
    /// Registration (RT family) id.
    pub registration_id: u64,
    /// Generation within the family.
    pub generation: u32,
    /// Key epoch the RT was made under.
    pub key_id: u32,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The registration's binding (the same in every generation; see docs/tokens.md).
    pub binding: u32,
}

/// Check a provisioning token's format: prefix, length, alphabet, checksum and version.
/// Returns `TESSERA_OK` or a `TESSERA_TOKEN_*` code. Says nothing about whether the PT exists.
///
/// `text`/`len`: the token text (not NUL-terminated; 1 to 1 MiB). Borrowed for the call.
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn tessera_pt_check(text: *const u8, len: usize) -> tessera_result {
    boundary(|| {
        // SAFETY: the caller promises `text` points to `len` readable bytes.
        let t = match unsafe { bytes(text, len) } {
            Ok(t) => t,
            Err(e) => return e,
        };
        match ParsedPt::parse(t) {
            Ok(_) => tessera_result::TESSERA_OK,
            Err(e) => e.into(),
        }
    })
}

/// Read the public fields of a registration token into `*out` (written only on success).
///
/// `text`/`len`: the RT text (borrowed for the call). `out`: caller-owned.
/// Thread safety: may be called from any thread.
#[no_mangle]
pub extern "C" fn tessera_rt_inspect(
    text: *const u8,
    len: usize,
    out: *mut tessera_rt_info,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: the caller promises `text` points to `len` readable bytes.
        let t = match unsafe { bytes(text, len) } {
            Ok(t) => t,
            Err(e) => return e,
        };
        match UntrustedRt::parse(t) {
            Ok(rt) => {
                let c = rt.untrusted_claims();
                let info = tessera_rt_info {
                    registration_id: c.registration_id.get(),
                    generation: c.generation,
                    key_id: c.key_id,
                    issued_at: c.issued_at,
                    expires_at: c.expires_at,
                    binding: c.binding,
                };
                // SAFETY: `out` is non-NULL and caller-owned.
                unsafe { write(out, info) }
            }
            Err(e) => e.into(),
        }
    })
}
