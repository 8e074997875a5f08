//! The device client for firmware: configuration, callbacks, and blocking calls.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

use tessera_client::device::{DeviceConfig, DeviceError, DeviceHooks};
use tessera_client::{BlockingDeviceClient, Trust};

use crate::result::tessera_result;
use crate::util::{boundary, bytes, copy_out, str, write};

/// Shows the verification code on the device's display. `code` is valid for the call only.
pub type tessera_show_code_cb = Option<extern "C" fn(userdata: *mut c_void, code: *const c_char)>;
/// Loads what the save callback last stored: copy at most `cap` (`TESSERA_STORED_MAX`) bytes into
/// `buf`, set `*written`, return 0 on success and non-zero if nothing is stored. A document
/// that is not what save stored (corrupt, truncated) or a `*written` above `cap` is ignored,
/// with a line through the log callback, and the device provisions again.
pub type tessera_load_cb = Option<
    extern "C" fn(userdata: *mut c_void, buf: *mut u8, cap: usize, written: *mut usize) -> i32,
>;
/// Saves the device's state (`len` bytes, at most `TESSERA_STORED_MAX`; a secret: store it
/// protected): a JSON
/// document with the registration, the provisioning operation it waits on, and its random
/// instance nonce. Called after each BEGIN, registration, refresh and revocation; hand the
/// last one back through the load callback after a restart, so the device resumes instead of
/// provisioning again (or opening a second operation). Valid for the call only.
pub type tessera_save_cb =
    Option<extern "C" fn(userdata: *mut c_void, data: *const u8, len: usize)>;
/// A log line (never contains secrets). Valid for the call only.
pub type tessera_log_cb = Option<extern "C" fn(userdata: *mut c_void, line: *const c_char)>;

/// Device client configuration (opaque). Create with `tessera_device_config_new`, give to
/// `tessera_device_client_new` (which consumes it) or free with `tessera_device_config_free`.
pub struct tessera_device_config {
    server: std::net::SocketAddr,
    server_name: String,
    trust: Option<Trust>,
    pt: Option<tessera_proto::ProvisioningToken>,
    device_id: Option<String>,
    attributes: BTreeMap<String, String>,
    request_timeout: Duration,
    wait_timeout: Duration,
    hooks: Callbacks,
}

#[derive(Clone, Copy)]
struct Callbacks {
    userdata: *mut c_void,
    show_code: tessera_show_code_cb,
    load: tessera_load_cb,
    save: tessera_save_cb,
    log: tessera_log_cb,
}

// SAFETY: the callbacks and `userdata` are only ever invoked on the thread that calls the
// blocking client functions (the client runs its runtime on the calling thread), which is the
// contract documented on `tessera_device_config_set_callbacks`.
unsafe impl Send for Callbacks {}
// SAFETY: as above; the client never calls them from two threads at once.
unsafe impl Sync for Callbacks {}

impl DeviceHooks for Callbacks {
    fn show_code(&self, code: &str) {
        if let (Some(f), Ok(c)) = (self.show_code, CString::new(code)) {
            f(self.userdata, c.as_ptr());
        }
    }
    fn load(&self) -> Option<String> {
        let f = self.load?;
        // The stored document holds the RT and the instance nonce: wiped unless handed on.
        let mut buf = zeroize::Zeroizing::new(vec![0u8; crate::TESSERA_STORED_MAX]);
        let mut n = 0usize;
        if f(self.userdata, buf.as_mut_ptr(), buf.len(), &mut n) != 0 {
            return None;
        }
        if n > buf.len() {
            self.log(&format!(
                "the load callback reported {n} bytes, more than the {} it was given; \
                 ignoring the stored document",
                buf.len()
            ));
            return None;
        }
        buf.truncate(n);
        String::from_utf8(std::mem::take(&mut *buf))
            .map_err(|e| zeroize::Zeroize::zeroize(&mut e.into_bytes()))
            .ok()
    }
    fn save(&self, stored: &str) {
        if let Some(f) = self.save {
            f(self.userdata, stored.as_ptr(), stored.len());
        }
    }
    fn log(&self, line: &str) {
        if let (Some(f), Ok(c)) = (self.log, CString::new(line)) {
            f(self.userdata, c.as_ptr());
        }
    }
}

impl std::fmt::Debug for tessera_device_config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tessera_device_config")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A device client (opaque). Blocking; not for use from two threads at once.
#[derive(Debug)]
pub struct tessera_device_client {
    inner: BlockingDeviceClient,
}

/// Create a configuration for the server at `server_addr` whose certificate names
/// `server_name`. On success `*out` owns the new configuration.
///
/// `server_addr` is `IP:port` (`"192.0.2.7:4433"`, `"[2001:db8::7]:4433"`) or `host:port`
/// ("provisioning.example:4433", "localhost:4433"); a host name is resolved here, once, by the
/// system resolver (the first address is used). Without a port: `TESSERA_INVALID_ARGUMENT`; a
/// name that does not resolve: `TESSERA_CONNECTION`. The server's default certificate names
/// `localhost`, `127.0.0.1` and `::1` (`tessera serve` prints them); see docs/operations.md for a
/// certificate with your host name.
///
/// NULL rules: no argument may be NULL. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn tessera_device_config_new(
    server_addr: *const c_char,
    server_name: *const c_char,
    out: *mut *mut tessera_device_config,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: NUL-terminated strings per the caller's promise.
        let (addr, name) = match unsafe { (str(server_addr), str(server_name)) } {
            (Ok(a), Ok(n)) => (a, n),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let server = match crate::util::resolve(addr) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let cfg = Box::new(tessera_device_config {
            server,
            server_name: name.to_owned(),
            trust: None,
            pt: None,
            device_id: None,
            attributes: BTreeMap::new(),
            request_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(25),
            hooks: Callbacks {
                userdata: std::ptr::null_mut(),
                show_code: None,
                load: None,
                save: None,
                log: None,
            },
        });
        // SAFETY: `out` is caller-owned storage for one pointer.
        unsafe { write(out, Box::into_raw(cfg)) }
    })
}

/// Borrow a configuration mutably.
///
/// # Safety
/// `cfg` must be NULL or a live pointer from `tessera_device_config_new`.
unsafe fn cfg_mut<'a>(
    cfg: *mut tessera_device_config,
) -> Result<&'a mut tessera_device_config, tessera_result> {
    // SAFETY: NULL or a live, uniquely used configuration per the caller's promise.
    unsafe { cfg.as_mut() }.ok_or(tessera_result::TESSERA_NULL_PARAMETER)
}

macro_rules! with_cfg {
    ($cfg:expr, |$c:ident| $body:expr) => {
        boundary(|| {
            // SAFETY: a live configuration per the function's contract.
            let $c = match unsafe { cfg_mut($cfg) } {
                Ok(c) => c,
                Err(e) => return e,
            };
            $body
        })
    };
}

/// Use `trust` if a TLS configuration can be made from it (the CAs parse, the pins are
/// SHA-256s); `TESSERA_INVALID_ARGUMENT` and nothing changed otherwise.
fn set_trust(c: &mut tessera_device_config, trust: Trust) -> tessera_result {
    if tessera_client::transport::client_tls(&trust, tessera_proto::wire::DEVICE_ALPN).is_err() {
        return tessera_result::TESSERA_INVALID_ARGUMENT;
    }
    c.trust = Some(trust);
    tessera_result::TESSERA_OK
}

/// Trust the CA certificate(s) in `pem` (`len` bytes of PEM, one or more certificates).
/// Checked here: PEM that holds no certificate, or one that does not parse, is
/// `TESSERA_INVALID_ARGUMENT` and changes nothing. NULL rules: none may be NULL.
#[no_mangle]
pub extern "C" fn tessera_device_config_set_ca_pem(
    cfg: *mut tessera_device_config,
    pem: *const u8,
    len: usize,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        // SAFETY: `pem` points to `len` readable bytes per the caller's promise.
        match unsafe { bytes(pem, len) } {
            Ok(b) => set_trust(c, Trust::CaPem(b.to_vec())),
            Err(e) => e,
        }
    })
}

/// Trust the server chain containing a certificate with this SHA-256 fingerprint (64 hex
/// characters, NUL-terminated), instead of a CA file; or with any of several, separated by
/// commas (during a CA rollover: the current CA's and the next one's).
#[no_mangle]
pub extern "C" fn tessera_device_config_set_pin(
    cfg: *mut tessera_device_config,
    sha256_hex: *const c_char,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        // SAFETY: NUL-terminated per the caller's promise.
        match unsafe { str(sha256_hex) } {
            Ok(h) => set_trust(c, Trust::Pin(h.to_owned())),
            Err(e) => e,
        }
    })
}

/// Set the provisioning token (`len` bytes, copied; checked for format).
#[no_mangle]
pub extern "C" fn tessera_device_config_set_pt(
    cfg: *mut tessera_device_config,
    pt: *const u8,
    len: usize,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        // SAFETY: `pt` points to `len` readable bytes per the caller's promise.
        let b = match unsafe { bytes(pt, len) } {
            Ok(b) => b,
            Err(e) => return e,
        };
        if let Err(e) = tessera_proto::token::ParsedPt::parse(b) {
            return e.into();
        }
        match std::str::from_utf8(b) {
            Ok(s) => {
                c.pt = Some(tessera_proto::ProvisioningToken::new(s.to_owned()));
                tessera_result::TESSERA_OK
            }
            Err(_) => tessera_result::TESSERA_INVALID_UTF8,
        }
    })
}

/// Request this device id (NUL-terminated; 1–64 bytes of `A–Z a–z 0–9 . _ : -`). Empty or
/// longer than 64 bytes: `TESSERA_INVALID_LENGTH`; another character: `TESSERA_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn tessera_device_config_set_device_id(
    cfg: *mut tessera_device_config,
    device_id: *const c_char,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        // SAFETY: NUL-terminated per the caller's promise.
        match unsafe { str(device_id) } {
            Ok(d) if d.len() > tessera_proto::limits::DEVICE_ID_MAX => {
                tessera_result::TESSERA_INVALID_LENGTH
            }
            Ok(d) => match tessera_proto::DeviceId::new(d) {
                Ok(_) => {
                    c.device_id = Some(d.to_owned());
                    tessera_result::TESSERA_OK
                }
                Err(_) => tessera_result::TESSERA_INVALID_ARGUMENT,
            },
            Err(e) => e,
        }
    })
}

/// Add an attribute sent with provisioning (both NUL-terminated; limits in docs/tokens.md). A key
/// empty or over 32 bytes, or a value over 128 bytes: `TESSERA_INVALID_LENGTH`; characters not
/// allowed, or a 17th attribute: `TESSERA_INVALID_ARGUMENT`. Adding a key again replaces its
/// value.
#[no_mangle]
pub extern "C" fn tessera_device_config_add_attribute(
    cfg: *mut tessera_device_config,
    key: *const c_char,
    value: *const c_char,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        // SAFETY: NUL-terminated per the caller's promise.
        let (k, v) = match unsafe { (str(key), str(value)) } {
            (Ok(k), Ok(v)) => (k, v),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        use tessera_proto::limits;
        if k.len() > limits::ATTRIBUTE_KEY_MAX || v.len() > limits::ATTRIBUTE_VALUE_MAX {
            return tessera_result::TESSERA_INVALID_LENGTH;
        }
        let mut next = c.attributes.clone();
        next.insert(k.to_owned(), v.to_owned());
        match tessera_proto::Attributes::new(next.clone()) {
            Ok(_) => {
                c.attributes = next;
                tessera_result::TESSERA_OK
            }
            Err(_) => tessera_result::TESSERA_INVALID_ARGUMENT,
        }
    })
}

/// Set the per-request timeout and the long-poll hold, in milliseconds (each 1..=600000;
/// outside that range: `TESSERA_INVALID_ARGUMENT`, nothing changed).
#[no_mangle]
pub extern "C" fn tessera_device_config_set_timeouts(
    cfg: *mut tessera_device_config,
    request_ms: u32,
    wait_ms: u32,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        if request_ms == 0 || wait_ms == 0 || request_ms > 600_000 || wait_ms > 600_000 {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        }
        c.request_timeout = Duration::from_millis(request_ms.into());
        c.wait_timeout = Duration::from_millis(wait_ms.into());
        tessera_result::TESSERA_OK
    })
}

/// Set the callbacks (any may be NULL) and the `userdata` passed to each. Callbacks are called
/// only on the thread that is inside a `tessera_device_client_*` call, never concurrently.
#[no_mangle]
pub extern "C" fn tessera_device_config_set_callbacks(
    cfg: *mut tessera_device_config,
    userdata: *mut c_void,
    show_code: tessera_show_code_cb,
    load: tessera_load_cb,
    save: tessera_save_cb,
    log: tessera_log_cb,
) -> tessera_result {
    with_cfg!(cfg, |c| {
        c.hooks = Callbacks {
            userdata,
            show_code,
            load,
            save,
            log,
        };
        tessera_result::TESSERA_OK
    })
}

/// Free a configuration that was not given to `tessera_device_client_new`. NULL is a no-op.
#[no_mangle]
pub extern "C" fn tessera_device_config_free(cfg: *mut tessera_device_config) {
    let _ = boundary(|| {
        if !cfg.is_null() {
            // SAFETY: a pointer from `tessera_device_config_new`, freed once (caller's promise).
            drop(unsafe { Box::from_raw(cfg) });
        }
        tessera_result::TESSERA_OK
    });
}

/// Create a client from the configuration `*cfg`, which is consumed (freed) whether or not this
/// succeeds: `*cfg` is set to NULL, so a later use of it is refused with
/// `TESSERA_NULL_PARAMETER` rather than touching freed memory. Needs a trust setting (CA or
/// pin) and a PT. On success `*out` owns the client.
#[no_mangle]
pub extern "C" fn tessera_device_client_new(
    cfg: *mut *mut tessera_device_config,
    out: *mut *mut tessera_device_client,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or caller-owned storage for one pointer.
        let Some(slot) = (unsafe { cfg.as_mut() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        let taken = std::mem::replace(slot, std::ptr::null_mut());
        if taken.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: a pointer from `tessera_device_config_new`, consumed here exactly once (the
        // caller's copy was just set to NULL).
        let c = unsafe { Box::from_raw(taken) };
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        let (Some(trust), Some(pt)) = (c.trust.clone(), c.pt.clone()) else {
            return tessera_result::TESSERA_CONFIG;
        };
        let mut dc = DeviceConfig::new(c.server, &c.server_name, trust, pt);
        dc.device_id = c.device_id.clone();
        dc.attributes = c.attributes.clone();
        dc.request_timeout = c.request_timeout;
        dc.wait_timeout = c.wait_timeout;
        match BlockingDeviceClient::new(dc, Box::new(c.hooks)) {
            // SAFETY: `out` is caller-owned storage for one pointer.
            Ok(inner) => unsafe {
                write(
                    out,
                    Box::into_raw(Box::new(tessera_device_client { inner })),
                )
            },
            Err(e) => (&e).into(),
        }
    })
}

/// # Safety
/// `client` must be NULL or a live pointer from `tessera_device_client_new`.
unsafe fn client<'a>(
    client: *mut tessera_device_client,
) -> Result<&'a tessera_device_client, tessera_result> {
    // SAFETY: NULL or live per the caller's promise.
    unsafe { client.as_ref() }.ok_or(tessera_result::TESSERA_NULL_PARAMETER)
}

macro_rules! with_client {
    ($client:expr, |$c:ident| $body:expr) => {
        boundary(|| {
            // SAFETY: a live client per the function's contract.
            let $c = match unsafe { client($client) } {
                Ok(c) => c,
                Err(e) => return e,
            };
            $body
        })
    };
}

/// Copy a field of the current registration out to C (`TESSERA_NOT_AVAILABLE` when there is
/// none).
fn copy_current(
    client_ptr: *mut tessera_device_client,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
    field: impl FnOnce(&tessera_proto::wire::messages::RtBody) -> &[u8],
) -> tessera_result {
    with_client!(client_ptr, |c| {
        let current = c.inner.current();
        // SAFETY: caller-owned output buffer of `cap` bytes and `written` slot.
        unsafe { copy_out(current.as_ref().map(field), buf, cap, written) }
    })
}

fn device_result(e: &DeviceError) -> tessera_result {
    match e {
        DeviceError::Rejected(_) => tessera_result::TESSERA_PROVISIONING_REJECTED,
        DeviceError::Expired => tessera_result::TESSERA_PROVISIONING_EXPIRED,
        DeviceError::Cancelled => tessera_result::TESSERA_PROVISIONING_CANCELLED,
        DeviceError::Deadline => tessera_result::TESSERA_TIMEOUT,
        DeviceError::NotRegistered => tessera_result::TESSERA_NOT_AVAILABLE,
        DeviceError::Client(c) => c.into(),
    }
}

/// Make sure the device holds an RT within `timeout_ms`, and return `TESSERA_OK` when it does.
///
/// Offline, it checks only the stored RT's own expiry (with 5 s to spare, against server time
/// learnt from the last answer): a stored RT that has not expired is returned without asking the
/// server, unless a refresh is due (about half its lifetime), in which case it is refreshed. The
/// server is asked only by that refresh or by provisioning: so an RT revoked while the device
/// was off is found out at its next refresh (`TESSERA_REVOKED`, and the stored document is
/// cleared) or when a service refuses it (an MQTT broker). Without a usable RT it provisions:
/// it resumes the operation stored by an earlier BEGIN (same instance nonce, id and secret), or
/// begins one, shows the code through the callback and waits for approval. Transient errors are
/// retried with backoff within `timeout_ms` (`TESSERA_TIMEOUT` after it; the operation stays
/// pending and the next call resumes it). Blocks. The client must not be used from another
/// thread meanwhile.
#[no_mangle]
pub extern "C" fn tessera_device_client_ensure_registered(
    client_ptr: *mut tessera_device_client,
    timeout_ms: u32,
) -> tessera_result {
    with_client!(client_ptr, |c| {
        match c
            .inner
            .ensure_registered(Duration::from_millis(timeout_ms.into()))
        {
            Ok(_) => tessera_result::TESSERA_OK,
            Err(e) => device_result(&e),
        }
    })
}

/// Refresh the RT now. On `TESSERA_REVOKED`, `TESSERA_EXPIRED` or `TESSERA_ROTATION_REUSE` the
/// registration is forgotten, in memory and in storage (the save callback gets a document
/// without it); the next `ensure_registered` provisions again. `TESSERA_NOT_AVAILABLE` when
/// there is no registration to refresh (before the first one, or after it was forgotten).
#[no_mangle]
pub extern "C" fn tessera_device_client_refresh(
    client_ptr: *mut tessera_device_client,
) -> tessera_result {
    with_client!(client_ptr, |c| {
        match c.inner.refresh() {
            Ok(_) => tessera_result::TESSERA_OK,
            Err(e) => device_result(&e),
        }
    })
}

/// Copy the current RT (a secret; not NUL-terminated) into `buf` (`cap` bytes); its length goes
/// to `*written`. Outputs for each result:
/// - `TESSERA_OK`: the RT in `buf[0..*written]`;
/// - `TESSERA_BUFFER_TOO_SMALL`: `buf` untouched, `*written` = the size needed (the RT's length);
/// - `TESSERA_NOT_AVAILABLE` (not registered) and every other code: nothing written.
#[no_mangle]
pub extern "C" fn tessera_device_client_copy_rt(
    client_ptr: *mut tessera_device_client,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> tessera_result {
    copy_current(client_ptr, buf, cap, written, |r| r.rt.as_bytes())
}

/// Copy the device id (not NUL-terminated) into `buf` (`cap` bytes); its length goes to
/// `*written`. Outputs as [`tessera_device_client_copy_rt`]: `*written` is the size needed on
/// `TESSERA_BUFFER_TOO_SMALL`, and nothing is written on any other failure.
#[no_mangle]
pub extern "C" fn tessera_device_client_copy_device_id(
    client_ptr: *mut tessera_device_client,
    buf: *mut u8,
    cap: usize,
    written: *mut usize,
) -> tessera_result {
    copy_current(client_ptr, buf, cap, written, |r| r.device_id.as_bytes())
}

/// When the next refresh is due, as local Unix seconds, into `*out`.
#[no_mangle]
pub extern "C" fn tessera_device_client_next_refresh_at(
    client_ptr: *mut tessera_device_client,
    out: *mut i64,
) -> tessera_result {
    with_client!(client_ptr, |c| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        match c.inner.next_refresh_at() {
            // SAFETY: caller-owned output slot.
            Some(t) => unsafe { write(out, t) },
            None => tessera_result::TESSERA_NOT_AVAILABLE,
        }
    })
}

/// Free a client (closing its connection). NULL is a no-op.
#[no_mangle]
pub extern "C" fn tessera_device_client_free(client_ptr: *mut tessera_device_client) {
    let _ = boundary(|| {
        if !client_ptr.is_null() {
            // SAFETY: a pointer from `tessera_device_client_new`, freed once (caller's promise).
            drop(unsafe { Box::from_raw(client_ptr) });
        }
        tessera_result::TESSERA_OK
    });
}
