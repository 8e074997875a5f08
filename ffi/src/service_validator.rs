//! The service validator: what a broker uses when the Tessera server runs elsewhere. It
//! authenticates with a service token, asks the server about RTs it has not seen (INTROSPECT)
//! and follows the server's revocations (REVOCATIONS), all on a thread of its own, and answers
//! the broker from a bounded cache without ever waiting on the network.
//!
//! What the cache may say:
//! - an RT the server called valid, until the RT expires, the cache's lifetime for entries
//!   passes, its registration is revoked (seen on the feed) or a newer generation of it is seen;
//! - an RT the server refused (revoked, expired, superseded, not issued by it), until the
//!   lifetime passes.
//!
//! Valid answers are given only while the revocation feed is followed: when the server cannot be
//! reached, every check fails closed until the feed has caught up again.

mod cache;
mod sources;
mod worker;

use std::ffi::c_char;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tessera_client::Trust;
use tessera_proto::AdminToken;
use zeroize::Zeroizing;

use crate::result::tessera_result;
use crate::util::{boundary, bytes, write};
use crate::validator::{
    check_args, rt_claims, server_with_ca, server_with_pin, tessera_rt_identity,
};

use cache::{Cache, Verdict};
use sources::SourceLimit;
use worker::{Ask, Worker};

/// The most RTs waiting for the server's answer at once; more are refused with
/// `TESSERA_PENDING` without being asked until some have been answered.
const MAX_PENDING: usize = 1024;

/// Default cache size and entry lifetime.
const DEFAULT_CACHE_ENTRIES: usize = 100_000;
const DEFAULT_CACHE_SECS: u64 = 60;
/// Default clock-skew leeway: the server's default.
const DEFAULT_LEEWAY_SECS: u64 = 60;
/// The largest leeway: the server's largest.
const MAX_LEEWAY_SECS: u32 = 300;

/// A validator that asks a Tessera server on its own thread (opaque). Its functions may be
/// called from any one thread at a time; none of them waits on the network.
pub struct tessera_service_validator {
    shared: Arc<Shared>,
    worker: Option<Worker>,
}

impl std::fmt::Debug for tessera_service_validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tessera_service_validator")
            .finish_non_exhaustive()
    }
}

/// What the broker's thread and the worker share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// `TESSERA_OK` while the revocation feed is followed; `TESSERA_PENDING` before it has
    /// answered once; otherwise why the server cannot be followed.
    pub(crate) feed: tessera_result,
    pub(crate) cache: Cache,
    /// Registrations revoked on the feed that the broker has not taken yet.
    pub(crate) revoked: std::collections::VecDeque<u64>,
    /// RTs asked about and not answered yet (by digest).
    pub(crate) pending: std::collections::HashSet<[u8; 32]>,
    /// Whether the feed has a cursor: from then on it reports every revocation committed later.
    pub(crate) following: bool,
    /// How many revocations the feed has reported, and the latest of them (number, registration).
    pub(crate) revocations_seen: u64,
    recent: std::collections::VecDeque<(u64, u64)>,
    /// Unknown RTs per client address ([`tessera_service_validator_check_from`]).
    pub(crate) sources: SourceLimit,
    /// What the validator has done, for [`tessera_service_validator_stats`].
    pub(crate) stats: tessera_service_validator_stats,
}

/// What a service validator has done since it was created (each count only grows), and what
/// it holds now: how much of its service token's quota on the server it spends, and on what.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tessera_service_validator_stats {
    /// RTs asked about (one INTROSPECT each, charged to the service token's rate limit).
    pub asked: u64,
    /// Of those, answered valid.
    pub answered_valid: u64,
    /// Of those, answered with a lasting refusal (revoked, expired, superseded, not issued).
    pub answered_refused: u64,
    /// Of those, refused by the server's rate limit on the service token: the quota is spent.
    pub over_quota: u64,
    /// Of those, not answered for another reason (the connection, a timeout).
    pub failed: u64,
    /// Unknown RTs not asked about because their client address had asked too many
    /// (`tessera_service_validator_check_from`).
    pub throttled: u64,
    /// Valid answers held now.
    pub cached_valid: u64,
    /// Refusals held now (bounded apart from valid answers, so they never push one out).
    pub cached_refused: u64,
    /// RTs asked about and not answered yet.
    pub pending: u64,
}

/// How many of the latest revocations are remembered to settle an answer that crossed one.
const RECENT_REVOCATIONS: usize = 65_536;

impl State {
    /// Record a revocation reported by the feed.
    pub(crate) fn revoked(&mut self, registration_id: u64) {
        self.cache.revoke(registration_id);
        self.revoked.push_back(registration_id);
        self.revocations_seen += 1;
        if self.recent.len() == RECENT_REVOCATIONS {
            self.recent.pop_front();
        }
        self.recent
            .push_back((self.revocations_seen, registration_id));
    }

    /// Whether the feed reported `registration_id` revoked after it had reported `seen`
    /// revocations; `None` when those are no longer remembered.
    pub(crate) fn revoked_since(&self, registration_id: u64, seen: u64) -> Option<bool> {
        if self.revocations_seen == seen {
            return Some(false);
        }
        match self.recent.front() {
            Some(&(first, _)) if first <= seen + 1 => {}
            _ => return None,
        }
        Some(
            self.recent
                .iter()
                .rev()
                .take_while(|(n, _)| *n > seen)
                .any(|(_, r)| *r == registration_id),
        )
    }
}

impl Shared {
    /// Before the server has answered: nothing known, the status `TESSERA_PENDING`.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                feed: tessera_result::TESSERA_PENDING,
                cache: Cache::new(
                    DEFAULT_CACHE_ENTRIES,
                    Duration::from_secs(DEFAULT_CACHE_SECS),
                    DEFAULT_LEEWAY_SECS,
                ),
                revoked: Default::default(),
                pending: Default::default(),
                following: false,
                revocations_seen: 0,
                recent: Default::default(),
                sources: SourceLimit::new(sources::DEFAULT_BURST, sources::DEFAULT_PER_SEC),
                stats: Default::default(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>, tessera_result> {
        // A panic while the state was held may have left it half updated: fail closed.
        self.state.lock().map_err(|_| tessera_result::TESSERA_PANIC)
    }
}

/// Now, as Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn digest(rt: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, rt);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Check the arguments every constructor takes, start the worker, hand the validator to `out`.
///
/// # Safety
/// `out` is non-NULL caller-owned storage for one pointer; `token`/`token_len` readable.
unsafe fn new_validator(
    addr: &str,
    name: &str,
    trust: Trust,
    token: *const u8,
    token_len: usize,
    out: *mut *mut tessera_service_validator,
) -> tessera_result {
    // SAFETY: `token_len` readable bytes per the caller's promise.
    let token = match unsafe { bytes(token, token_len) } {
        Ok(t) => Zeroizing::new(t.to_vec()),
        Err(e) => return e,
    };
    let addr = match crate::util::resolve(addr) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Ok(text) = std::str::from_utf8(&token) else {
        return tessera_result::TESSERA_INVALID_UTF8;
    };
    let text = text.trim();
    // The token's form is checked here; whether the server accepts it shows in the status.
    if let Err(e) = tessera_proto::token::ParsedPt::parse_with_prefix(
        tessera_proto::token::ADMIN_TOKEN_PREFIX,
        text.as_bytes(),
    ) {
        return e.into();
    }
    let token = AdminToken::new(text.to_owned());
    // The trust is checked here, where it enters (a PEM without a certificate).
    if tessera_client::transport::client_tls(&trust, tessera_proto::wire::ADMIN_ALPN).is_err() {
        return tessera_result::TESSERA_INVALID_ARGUMENT;
    }

    let shared = Arc::new(Shared::new());
    let worker = match Worker::start(addr, name, &trust, token, shared.clone(), MAX_PENDING) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let v = tessera_service_validator {
        shared,
        worker: Some(worker),
    };
    // SAFETY: `out` is caller-owned storage for one pointer (the caller's promise).
    unsafe { write(out, Box::into_raw(Box::new(v))) }
}

/// Create a service validator for the server's admin endpoint at `server_addr` (`IP:port` or
/// `host:port`) whose certificate names `server_name`, trusting the CA in `ca_pem` (`ca_len`
/// bytes of PEM), authenticating with the service token `token` (`token_len` bytes of its text,
/// `tsat_…`, as `tessera token create --role service` prints it; surrounding white space is
/// ignored). On success `*out` owns it, and its thread starts connecting and following the
/// server's revocations; `tessera_service_validator_status` tells when it is following.
///
/// `TESSERA_INVALID_ARGUMENT` for a PEM without a certificate or an address without a port;
/// a `TESSERA_TOKEN_*` code for a token that is not one in form.
#[no_mangle]
pub extern "C" fn tessera_service_validator_new(
    server_addr: *const c_char,
    server_name: *const c_char,
    ca_pem: *const u8,
    ca_len: usize,
    token: *const u8,
    token_len: usize,
    out: *mut *mut tessera_service_validator,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: NUL-terminated strings and `ca_len` readable bytes per the caller's promise.
        match unsafe { server_with_ca(server_addr, server_name, ca_pem, ca_len) } {
            // SAFETY: `out` is non-NULL and caller-owned; the token per the caller's promise.
            Ok((addr, name, trust)) => unsafe {
                new_validator(addr, name, trust, token, token_len, out)
            },
            Err(e) => e,
        }
    })
}

/// Like `tessera_service_validator_new`, trusting the server chain that contains a certificate
/// with this SHA-256 fingerprint (64 hex characters, NUL-terminated; `TESSERA_INVALID_ARGUMENT`
/// otherwise) instead of a CA.
#[no_mangle]
pub extern "C" fn tessera_service_validator_new_pinned(
    server_addr: *const c_char,
    server_name: *const c_char,
    sha256_hex: *const c_char,
    token: *const u8,
    token_len: usize,
    out: *mut *mut tessera_service_validator,
) -> tessera_result {
    boundary(|| {
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        // SAFETY: NUL-terminated strings per the caller's promise.
        match unsafe { server_with_pin(server_addr, server_name, sha256_hex) } {
            // SAFETY: `out` is non-NULL and caller-owned; the token per the caller's promise.
            Ok((addr, name, trust)) => unsafe {
                new_validator(addr, name, trust, token, token_len, out)
            },
            Err(e) => e,
        }
    })
}

/// Size the cache: at most `entries` RTs (1 to 10,000,000; default 100,000; the oldest entry
/// goes first), each kept at most `max_age_secs` (1 to 3,600; default 60). The lifetime bounds
/// how long an RT that has been superseded by a refresh may still be let in from the cache
/// (revocations and expiry end entries at once). Outside the ranges: `TESSERA_INVALID_ARGUMENT`,
/// nothing changed.
#[no_mangle]
pub extern "C" fn tessera_service_validator_set_cache(
    validator: *mut tessera_service_validator,
    entries: u32,
    max_age_secs: u32,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if !(1..=10_000_000).contains(&entries) || !(1..=3_600).contains(&max_age_secs) {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        }
        match v.shared.lock() {
            Ok(mut s) => {
                s.cache
                    .resize(entries as usize, Duration::from_secs(max_age_secs.into()));
                tessera_result::TESSERA_OK
            }
            Err(e) => e,
        }
    })
}

/// Judge RTs with a clock-skew leeway of `seconds` (0 to 300; default 60): set it to the
/// server's `clock_skew_leeway_secs`, so that an RT the server still accepts just past its
/// expiry is not refused from the cache, and the other way round. Outside the range:
/// `TESSERA_INVALID_ARGUMENT`, nothing changed.
#[no_mangle]
pub extern "C" fn tessera_service_validator_set_clock_skew_leeway(
    validator: *mut tessera_service_validator,
    seconds: u32,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if seconds > MAX_LEEWAY_SECS {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        }
        match v.shared.lock() {
            Ok(mut s) => {
                s.cache.set_leeway(seconds.into());
                tessera_result::TESSERA_OK
            }
            Err(e) => e,
        }
    })
}

/// Whether the validator is following the server: `TESSERA_OK` when it is (valid RTs are let
/// in from the cache); `TESSERA_PENDING` before the server has answered for the first time,
/// and while it catches up with revocations it missed (a page of them as long as it asks for);
/// otherwise why not (`TESSERA_CONNECTION`, `TESSERA_TIMEOUT`, `TESSERA_CERTIFICATE`,
/// `TESSERA_UNAUTHENTICATED` or `TESSERA_REVOKED` for a service token the server does not
/// accept, …). It keeps trying on its own.
#[no_mangle]
pub extern "C" fn tessera_service_validator_status(
    validator: *const tessera_service_validator,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        match v.shared.lock() {
            Ok(s) => s.feed,
            Err(e) => e,
        }
    })
}

/// Check an RT (`rt`/`rt_len`) without waiting. `TESSERA_OK` and `*out` filled when the cache
/// holds the server's word that it is valid (and the RT has not expired since). Otherwise:
/// - `TESSERA_PENDING`: not known yet; the validator is asking the server now, and a check of
///   the same RT shortly after (a device's next attempt) is answered from the cache;
/// - `TESSERA_EXPIRED`, `TESSERA_REVOKED`, `TESSERA_SUPERSEDED`, `TESSERA_UNAUTHENTICATED`:
///   the server's answer, or a revocation seen on the feed; a `TESSERA_TOKEN_*` code for a
///   malformed RT (answered here);
/// - the status (`tessera_service_validator_status`) when the server is not being followed:
///   no RT is let in then.
#[no_mangle]
pub extern "C" fn tessera_service_validator_check(
    validator: *mut tessera_service_validator,
    rt: *const u8,
    rt_len: usize,
    out: *mut tessera_rt_identity,
) -> tessera_result {
    tessera_service_validator_check_from(validator, rt, rt_len, std::ptr::null(), out)
}

/// As `tessera_service_validator_check`, for a client at `source` (its address as text,
/// NUL-terminated, such as `mosquitto_client_address` gives; NULL for none): an RT the cache
/// does not know is asked about only while that address has questions left (by default 20 at
/// once, then 10 a second; `tessera_service_validator_set_source_limit`). Past that the answer
/// is `TESSERA_RATE_LIMITED` and the server is not asked: a client making up RTs spends its
/// own share, not the broker's quota on the server. What the cache knows is answered whatever
/// the address. `TESSERA_INVALID_UTF8` for a source that is not UTF-8.
#[no_mangle]
pub extern "C" fn tessera_service_validator_check_from(
    validator: *mut tessera_service_validator,
    rt: *const u8,
    rt_len: usize,
    source: *const c_char,
    out: *mut tessera_rt_identity,
) -> tessera_result {
    boundary(|| {
        let source = if source.is_null() {
            None
        } else {
            // SAFETY: non-NULL and NUL-terminated per the caller's promise.
            match unsafe { crate::util::str(source) } {
                Ok(s) => Some(s),
                Err(e) => return e,
            }
        };
        // SAFETY: the caller's promises, as documented above.
        let (v, text) = match unsafe { check_args(validator.cast_const(), rt, rt_len, out) } {
            Ok(x) => x,
            Err(e) => return e,
        };
        let (text, claims) = match rt_claims(text) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let key = digest(text.as_bytes());
        let mut s = match v.shared.lock() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let found = s.cache.lookup(&key, &claims, unix_now());
        match found {
            Some((Verdict::Refused(code), _)) => return code,
            Some((Verdict::Valid(ident), renew)) if s.feed == tessera_result::TESSERA_OK => {
                // An RT in use is asked about again past half its entry's age, so that its
                // entry is renewed before it ends (and a device never meets a refusal for it).
                if renew {
                    ask(v, &mut s, key, text, claims.binding);
                }
                // SAFETY: `out` is non-NULL and caller-owned.
                return unsafe { write(out, ident) };
            }
            _ => {}
        }
        if s.feed != tessera_result::TESSERA_OK && s.feed != tessera_result::TESSERA_PENDING {
            return s.feed;
        }
        if !s.pending.contains(&key) {
            if let Some(source) = source {
                if !s.sources.take(source, std::time::Instant::now()) {
                    s.stats.throttled += 1;
                    return tessera_result::TESSERA_RATE_LIMITED;
                }
            }
        }
        ask(v, &mut s, key, text, claims.binding);
        tessera_result::TESSERA_PENDING
    })
}

/// Send an RT to the worker to ask the server about, unless it is already asked about or too
/// many are.
fn ask(v: &tessera_service_validator, s: &mut State, key: [u8; 32], rt: &str, binding: u32) {
    if s.pending.contains(&key) || s.pending.len() >= MAX_PENDING {
        return;
    }
    let ask = Ask {
        key,
        rt: Zeroizing::new(rt.to_owned()),
        binding,
    };
    if v.worker.as_ref().is_some_and(|w| w.ask(ask)) {
        s.pending.insert(key);
        s.stats.asked += 1;
    }
}

/// Limit each client address to `burst` unknown RTs at once, then `per_sec` a second (see
/// `tessera_service_validator_check_from`); `burst` 1 to 1,000,000, `per_sec` 1 to 1,000,000.
/// Outside the ranges: `TESSERA_INVALID_ARGUMENT`, nothing changed.
#[no_mangle]
pub extern "C" fn tessera_service_validator_set_source_limit(
    validator: *mut tessera_service_validator,
    burst: u32,
    per_sec: u32,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if !(1..=1_000_000).contains(&burst) || !(1..=1_000_000).contains(&per_sec) {
            return tessera_result::TESSERA_INVALID_ARGUMENT;
        }
        match v.shared.lock() {
            Ok(mut s) => {
                s.sources = SourceLimit::new(burst, per_sec);
                tessera_result::TESSERA_OK
            }
            Err(e) => e,
        }
    })
}

/// What the validator has done and holds now (see `tessera_service_validator_stats`), into
/// `*out`; a broker reports it, so that an operator sees how much of the service token's quota
/// is spent and on what.
#[no_mangle]
pub extern "C" fn tessera_service_validator_get_stats(
    validator: *const tessera_service_validator,
    out: *mut tessera_service_validator_stats,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if out.is_null() {
            return tessera_result::TESSERA_NULL_PARAMETER;
        }
        let s = match v.shared.lock() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let (valid, refused) = s.cache.counts();
        let stats = tessera_service_validator_stats {
            cached_valid: valid as u64,
            cached_refused: refused as u64,
            pending: s.pending.len() as u64,
            ..s.stats
        };
        // SAFETY: `out` is non-NULL caller-owned storage (the caller's promise).
        unsafe { write(out, stats) }
    })
}

/// The registrations the validator has seen revoked on the server's feed since the last call
/// (directly, by blocking the device id, by revoking the PT), oldest first, without waiting:
/// a broker ends their sessions. Writes at most `cap` ids (1 to `TESSERA_REVOCATIONS_MAX`) to
/// `ids` and their number to `*count`; call again while `*count == cap`.
#[no_mangle]
pub extern "C" fn tessera_service_validator_revocations(
    validator: *mut tessera_service_validator,
    ids: *mut u64,
    cap: usize,
    count: *mut usize,
) -> tessera_result {
    boundary(|| {
        // SAFETY: NULL or a live validator per the caller's promise.
        let Some(v) = (unsafe { validator.as_ref() }) else {
            return tessera_result::TESSERA_NULL_PARAMETER;
        };
        if let Err(e) = crate::local_validator::revocation_buffer(ids, cap, count) {
            return e;
        }
        let mut s = match v.shared.lock() {
            Ok(s) => s,
            Err(e) => return e,
        };
        let n = cap.min(s.revoked.len());
        // SAFETY: the buffer was checked, and at most `cap` ids are written.
        unsafe { crate::local_validator::write_ids(ids, count, s.revoked.drain(..n)) }
    })
}

/// Stop the validator's thread (closing its connection) and free it. NULL is a no-op.
#[no_mangle]
pub extern "C" fn tessera_service_validator_free(validator: *mut tessera_service_validator) {
    let _ = boundary(|| {
        if !validator.is_null() {
            // SAFETY: a pointer from `tessera_service_validator_new`, freed once (caller's
            // promise).
            let mut v = unsafe { Box::from_raw(validator) };
            if let Some(w) = v.worker.take() {
                w.stop();
            }
        }
        tessera_result::TESSERA_OK
    });
}
