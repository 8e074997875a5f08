//! Console sessions: a person signs in with their admin token once; the browser then holds only
//! a random session id in an HttpOnly, Secure, SameSite=Strict cookie. The token stays in the
//! server's memory (wiped when the session ends), never in the browser.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use tessera_proto::wire::code;

use super::problem::Problem;
use zeroize::Zeroizing;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "tessera_session";
/// How long a session lasts from sign-in.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions held at most; the oldest goes first.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in person.
pub(crate) struct Session {
    /// Their admin token, used for every request the console makes for them.
    pub(crate) token: Zeroizing<String>,
    /// `admin` or `technician`.
    pub(crate) role: &'static str,
    /// The token's name.
    pub(crate) name: String,
    /// What every state-changing request must carry in `X-CSRF-Token`.
    pub(crate) csrf: String,
    expires: Instant,
}

/// The sessions of this server.
#[derive(Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 random bytes, base64url.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system random generator");
    data_encoding::BASE64URL_NOPAD.encode(&b)
}

impl Sessions {
    /// Start a session; answers its id (the cookie's value).
    pub(crate) fn start(
        &self,
        token: Zeroizing<String>,
        role: &'static str,
        name: String,
    ) -> String {
        let id = random_id();
        let mut m = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, s| s.expires > now);
        if m.len() >= MAX_SESSIONS {
            if let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(
            id.clone(),
            Session {
                token,
                role,
                name,
                csrf: random_id(),
                expires: now + LIFETIME,
            },
        );
        id
    }

    /// The session a request's cookie names, if it is live: `f` sees it.
    pub(crate) fn with<T>(&self, headers: &HeaderMap, f: impl FnOnce(&Session) -> T) -> Option<T> {
        let id = cookie(headers)?;
        let mut m = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&id) {
            Some(s) if s.expires > Instant::now() => Some(f(s)),
            Some(_) => {
                m.remove(&id);
                None
            }
            None => None,
        }
    }

    /// End the session a request's cookie names.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.by_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

/// The session id in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value that gives the browser its session.
pub(crate) fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// Whether a state-changing request comes from this site: browsers send `Sec-Fetch-Site` or
/// `Origin`; a request with either from another site is refused (with SameSite=Strict cookies
/// and the CSRF token, the third guard).
pub(crate) fn same_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("https://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Whether the request carries the session's CSRF token.
pub(crate) fn csrf_matches(h: &HeaderMap, csrf: &str) -> bool {
    h.get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| bool::from(subtle::ConstantTimeEq::ct_eq(v.as_bytes(), csrf.as_bytes())))
}

/// The refusal of a state change without the session's CSRF token.
pub(crate) fn csrf_refused() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "csrf",
        code::FORBIDDEN,
        "a state change needs the session's CSRF token, from this site",
    )
}
