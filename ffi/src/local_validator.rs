//! The local validator: checks RTs against a Tessera server's data directory on the same host.
//! Only in the `platform` shape of the library, since it opens the server's store.

use std::ffi::c_char;

use crate::result::tessera_result;
use crate::util::{boundary, str, write};
use crate::validator::{check_args, identity, tessera_rt_identity};

/// A validator that checks RTs locally against a Tessera server's data directory on the same
/// host (opaque). Thread-safe: one handle may be used from several threads at once.
#[derive(Debug)]
pub struct tessera_local_validator {
    inner: tessera_engine::LocalValidator,
}

/// Open a local validator on the server data directory `data_dir` (NUL-terminated path), whose
/// root key is in its key file (`root.key`; a server whose root is in an HSM needs the network
/// validator). The store is opened read-only; revocations the server commits are seen by the
/// next check. On success `*out` owns the handle. `TESSERA_CONFIG` if the directory holds no
/// store or its key file does not match it.
#[no_mangle]
pub extern "C" fn tessera_local_validator_new(
    data_dir: *const c_char,
    out: *mut *mut tessera_local_validator,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: a NUL-terminated string per the caller's promise.
        let dir = match unsafe { str(data_dir) } {
            Ok(d) => d,
            Err(e) => return e,
        };
        match tessera_engine::LocalValidator::open(std::path::Path::new(dir)) {
            // SAFETY: `out` is caller-owned storage for one pointer.
            Ok(inner) => unsafe {
                write(
                    out,
                    Box::into_raw(Box::new(tessera_local_validator { inner })),
                )
            },
            Err(_) => tessera_result::TESSERA_CONFIG,
        }
    })
}

/// Check an RT (`rt`/`rt_len`) against the data directory at the current system time.
/// `TESSERA_OK` and `*out` filled when valid; otherwise `TESSERA_UNAUTHENTICATED`,
/// `TESSERA_EXPIRED`, `TESSERA_REVOKED`, `TESSERA_SUPERSEDED`, a `TESSERA_TOKEN_*` code, or
/// `TESSERA_STORE` if the store could not be read. Does not block on the network.
#[no_mangle]
pub extern "C" fn tessera_local_validator_check(
    validator: *const tessera_local_validator,
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
        match v
            .inner
            .validate(text, tessera_engine::Timestamp::now_from_system_clock())
        {
            Ok(i) => {
                let ident = identity(
                    i.registration_id.get(),
                    i.generation,
                    i.expires_at,
                    i.device_id.as_str(),
                );
                // SAFETY: `out` is non-NULL and caller-owned.
                unsafe { write(out, ident) }
            }
            Err(e) => (&e).into(),
        }
    })
}

/// Free a local validator. NULL is a no-op.
#[no_mangle]
pub extern "C" fn tessera_local_validator_free(validator: *mut tessera_local_validator) {
    let _ = boundary(|| {
        if !validator.is_null() {
            // SAFETY: a pointer from `tessera_local_validator_new`, freed once (caller's promise).
            drop(unsafe { Box::from_raw(validator) });
        }
        tessera_result::TESSERA_OK
    });
}

/// The most registration ids one call of `tessera_local_validator_revocations` returns.
pub const TESSERA_REVOCATIONS_MAX: usize = 4096;

/// The output buffer of both validators' revocation functions: `ids` and `count` non-NULL,
/// `cap` from 1 to `TESSERA_REVOCATIONS_MAX`.
pub(crate) fn revocation_buffer(
    ids: *mut u64,
    cap: usize,
    count: *const usize,
) -> Result<(), tessera_result> {
    if ids.is_null() || count.is_null() {
        return Err(tessera_result::TESSERA_NULL_PARAMETER);
    }
    if cap == 0 || cap > TESSERA_REVOCATIONS_MAX {
        return Err(tessera_result::TESSERA_INVALID_LENGTH);
    }
    Ok(())
}

/// Write `revoked` (at most the buffer's `cap` ids) to `ids` and their number to `count`.
///
/// # Safety
/// A buffer [`revocation_buffer`] accepted, with `revoked` no longer than its `cap`.
pub(crate) unsafe fn write_ids(
    ids: *mut u64,
    count: *mut usize,
    revoked: impl ExactSizeIterator<Item = u64>,
) -> tessera_result {
    let n = revoked.len();
    // SAFETY: `ids` points to `cap >= n` caller-owned u64s (the caller's promise).
    let out = unsafe { std::slice::from_raw_parts_mut(ids, n) };
    for (slot, id) in out.iter_mut().zip(revoked) {
        *slot = id;
    }
    // SAFETY: `count` is non-NULL caller-owned storage.
    unsafe { write(count, n) }
}

/// Where to start following revocations (see `tessera_local_validator_revocations`): the
/// newest change the server has committed now. On success `*out` holds the cursor.
/// `TESSERA_STORE` if the store could not be read.
#[no_mangle]
pub extern "C" fn tessera_local_validator_revocation_cursor(
    validator: *const tessera_local_validator,
    out: *mut u64,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        match v.inner.revocation_cursor() {
            // SAFETY: `out` is non-NULL caller-owned storage for one u64.
            Ok(c) => unsafe { write(out, c) },
            Err(e) => (&e).into(),
        }
    })
}

/// The registrations revoked after `*cursor`, oldest first: a broker holding live sessions
/// calls this periodically instead of checking each session's RT again. A registration
/// appears once the server has committed its revocation, whichever way it was revoked
/// (directly, by blocking its device id, by revoking its PT, or on rotation reuse).
///
/// Writes at most `cap` ids (1 to `TESSERA_REVOCATIONS_MAX`) to `ids`, their number to
/// `*count`, and moves `*cursor` past them; call again while `*count == cap`. Nothing is
/// written unless the result is `TESSERA_OK`. `TESSERA_STORE` if the store could not be read.
#[no_mangle]
pub extern "C" fn tessera_local_validator_revocations(
    validator: *const tessera_local_validator,
    cursor: *mut u64,
    ids: *mut u64,
    cap: usize,
    count: *mut usize,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if cursor.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        if let Err(e) = revocation_buffer(ids, cap, count) {
            return e;
        }
        // SAFETY: `cursor` is non-NULL caller-owned storage for one u64.
        let from = unsafe { cursor.read() };
        match v.inner.revocations_after(from, cap) {
            Ok((revoked, next)) => {
                // SAFETY: `cursor` is non-NULL caller-owned storage; the buffer was checked.
                unsafe {
                    cursor.write(next);
                    write_ids(ids, count, revoked.iter().map(|r| r.get()))
                }
            }
            Err(e) => (&e).into(),
        }
    })
}
