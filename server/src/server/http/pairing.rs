//! Pairing a phone: an admin signed in to the console issues a one-time pairing code for a
//! person; their phone types it on the sign-in page and gets a console session, without anyone
//! pasting a token on a phone.
//!
//! Issuing makes a technician token of its own for the phone (`<name> (phone)`, in the Tokens
//! list, revocable like any other) through the service layer with the admin's authority, and
//! keeps its text in this server's memory under the code. The code is 8 characters of Crockford
//! base32 (40 bits), works once, for [`LIFETIME`]; exchanges are held to the sign-in rate limit
//! per source address. An unused code's token is revoked when the code expires. Issuing and
//! using a code are recorded in the audit log; the code itself is never recorded or logged,
//! and never appears in a URL. Like sessions, codes live in the memory of the server that
//! issued them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tessera_engine::{Actor, AdminTokenId, PairingStep, Timestamp};
use tessera_proto::admin::requests::TokenCreate;
use tessera_proto::wire::{code, kind};
use zeroize::Zeroizing;

use super::console::{signed_in_change, small_json};
use super::problem::Problem;
use super::routes::Peer;
use super::session::{csrf_refused, same_site, set_cookie};
use super::HttpState;
use crate::server::service::{self, blocking, Cx, Serve};

/// How long a pairing code works.
pub(crate) const LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Codes waiting at most; more are refused until some are used or expire.
const MAX_WAITING: usize = 1_000;
/// Crockford's base32 alphabet: no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A code waiting for its phone.
struct Waiting {
    token: Zeroizing<String>,
    token_id: AdminTokenId,
    name: String,
    /// By the server's clock.
    expires: Timestamp,
}

/// The pairing codes this server issued, by the SHA-256 of the code.
#[derive(Default)]
pub(crate) struct Pairings {
    by_digest: Mutex<HashMap<[u8; 32], Waiting>>,
}

impl std::fmt::Debug for Pairings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairings").finish_non_exhaustive()
    }
}

fn digest(code: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, code.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new code: `XXXX-XXXX`.
fn new_code() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 8]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut *b)
        .expect("system random generator");
    let chars: Zeroizing<Vec<u8>> =
        Zeroizing::new(b.iter().map(|x| ALPHABET[usize::from(x % 32)]).collect());
    Zeroizing::new(format!(
        "{}-{}",
        std::str::from_utf8(&chars[..4]).expect("ASCII"),
        std::str::from_utf8(&chars[4..]).expect("ASCII")
    ))
}

/// What a person typed, as the code it stands for: case, spaces and dashes do not matter, and
/// the letters Crockford's base32 reads as digits (O, I, L) are read so.
fn normalize(typed: &str) -> Option<Zeroizing<String>> {
    let mut chars = Zeroizing::new(Vec::with_capacity(8));
    for c in typed.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        chars.push(c as u8);
    }
    if chars.len() != 8 {
        return None;
    }
    let s = std::str::from_utf8(&chars).ok()?;
    Some(Zeroizing::new(format!("{}-{}", &s[..4], &s[4..])))
}

impl Pairings {
    /// Take out the codes that have expired at `now` (their tokens are to be revoked).
    fn expired(&self, now: Timestamp) -> Vec<Waiting> {
        let mut m = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<[u8; 32]> = m
            .iter()
            .filter(|(_, w)| w.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        gone.iter().filter_map(|k| m.remove(k)).collect()
    }
}

/// Revoke the tokens of codes that expired unused.
async fn sweep(st: &HttpState) {
    for w in st.pairings.expired(st.shared.clock.now()) {
        let id = w.token_id;
        let revoked = blocking(&st.shared, move |e, t| {
            e.revoke_admin_token(&id, &Actor::system(), t)
        })
        .await;
        if revoked.is_err() {
            tracing::warn!(token = %w.token_id, "could not revoke the token of an expired pairing code");
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Issue {
    name: String,
}

/// `POST /console/pairings` (an admin's session, CSRF token; JSON `{"name": …}`): a pairing
/// code for `name`'s phone. Answers `{code, expires_at, admin_token}`.
pub(crate) async fn issue(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    sweep(&st).await;
    let h = req.headers();
    if !signed_in_change(&st, h) {
        return csrf_refused().into_response();
    }
    let Some((token, role)) = st.sessions.with(h, |s| (s.token.clone(), s.role)) else {
        return csrf_refused().into_response();
    };
    if role != "admin" {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            code::FORBIDDEN,
            "only an admin may pair a phone",
        )
        .into_response();
    }
    let source = Peer::of(&req);
    let Issue { name } = match small_json(&st, req, "{\"name\": …}").await {
        Ok(i) => i,
        Err(r) => return r,
    };
    let name = name.trim().to_owned();
    if st
        .pairings
        .by_digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
        >= MAX_WAITING
    {
        return Problem::from_error(&crate::server::reply::err(
            code::RATE_LIMITED,
            "too many pairing codes are waiting; let some expire first",
        ))
        .into_response();
    }
    let caller = match service::authorize(&st.shared, token, kind::TOKEN_CREATE, source).await {
        Ok(c) => c,
        Err(e) => return Problem::from_error(&e).into_response(),
    };
    let create = TokenCreate {
        name: format!("{name} (phone)"),
        role: "technician".into(),
    };
    let created = match create
        .serve(Cx {
            shared: &st.shared,
            caller: &caller,
        })
        .await
    {
        Ok(c) => c,
        Err(e) => return Problem::from_error(&e).into_response(),
    };
    let record = created.admin_token.clone();
    let expires_at = st.shared.clock.now().saturating_add(LIFETIME);
    let (id, actor) = (record.id, caller.actor.clone());
    if let Err(e) = blocking(&st.shared, move |e, t| {
        e.record_pairing(&id, PairingStep::Issued { expires_at }, &actor, t)
    })
    .await
    {
        return Problem::from_error(&e).into_response();
    }
    let code = new_code();
    st.pairings
        .by_digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            digest(&code),
            Waiting {
                token: Zeroizing::new(created.token.clone()),
                token_id: record.id,
                name: record.name.clone(),
                expires: expires_at,
            },
        );
    let mut r = super::answer::wiped_json(serde_json::json!({
        "code": code.as_str(),
        "expires_at": expires_at,
        "admin_token": record,
    }));
    // The code is a secret until used: no cache keeps the answer.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
struct Exchange {
    code: String,
}

/// `POST /console/pair` (a form with `code`): a phone's pairing code for a session. Like
/// sign-in, a failure comes back as `?signin=pair`.
pub(crate) async fn exchange(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    sweep(&st).await;
    let source = Peer::of(&req);
    if !same_site(req.headers()) {
        return csrf_refused().into_response();
    }
    // A code that is not one waiting counts against the source, as a wrong token does.
    if st.shared.auth_attempt(source).is_err() {
        return Redirect::to("/console/?signin=rate").into_response();
    }
    let Ok(body) = super::routes::read_body(&st, req.into_body(), 4096).await else {
        return Redirect::to("/console/?signin=bad").into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<Exchange>(&body) else {
        return Redirect::to("/console/?signin=bad").into_response();
    };
    let typed = Zeroizing::new(form.code);
    let Some(code) = normalize(&typed) else {
        st.shared.auth_failed(source);
        return Redirect::to("/console/?signin=pair").into_response();
    };
    let waiting = st
        .pairings
        .by_digest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&digest(&code))
        .filter(|w| w.expires > st.shared.clock.now());
    let Some(w) = waiting else {
        st.shared.auth_failed(source);
        return Redirect::to("/console/?signin=pair").into_response();
    };
    let (id, actor) = (
        w.token_id,
        Actor::operator(&w.name).from_source(source.to_string()),
    );
    if blocking(&st.shared, move |e, t| {
        e.record_pairing(&id, PairingStep::Used, &actor, t)
    })
    .await
    .is_err()
    {
        return Redirect::to("/console/?signin=pair").into_response();
    }
    let session = st.sessions.start(w.token, "technician", w.name);
    let mut r = Redirect::to("/console/").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&session)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_crockford_characters_and_read_back_however_typed() {
        let c = new_code();
        assert_eq!(c.len(), 9);
        assert_eq!(&c[4..5], "-");
        assert!(c
            .bytes()
            .filter(|b| *b != b'-')
            .all(|b| ALPHABET.contains(&b)));
        assert_eq!(
            normalize(&c).as_deref().map(String::as_str),
            Some(c.as_str())
        );
        assert_eq!(
            normalize(" k7qd m2xo ").as_deref().map(String::as_str),
            Some("K7QD-M2X0")
        );
        assert_eq!(
            normalize("il00-0000").as_deref().map(String::as_str),
            Some("1100-0000")
        );
        assert!(normalize("K7QD-M2X").is_none(), "too short");
        assert!(normalize("K7QD-M2XPP").is_none(), "too long");
        assert!(normalize("K7QD-M2XU").is_none(), "U is not in the alphabet");
        assert!(normalize("K7QD-M2XÜ").is_none());
        assert_ne!(new_code().as_str(), new_code().as_str());
    }

    #[test]
    fn a_code_expires_at_its_time_and_is_taken_out_once() {
        let p = Pairings::default();
        let issued = Timestamp::from_unix_secs(1_800_000_000);
        let code = new_code();
        p.by_digest.lock().unwrap().insert(
            digest(&code),
            Waiting {
                token: Zeroizing::new("tsat_x".into()),
                token_id: "at_AAAAAUT0MNNche7NXY6a7FTgCeA".parse().unwrap(),
                name: "Eve (phone)".into(),
                expires: issued.saturating_add(LIFETIME),
            },
        );
        let just_before = issued.saturating_add(LIFETIME - Duration::from_millis(1));
        assert!(p.expired(just_before).is_empty());
        let gone = p.expired(issued.saturating_add(LIFETIME));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].name, "Eve (phone)");
        assert!(p.expired(issued.saturating_add(LIFETIME * 2)).is_empty());
        assert!(p.by_digest.lock().unwrap().is_empty());
    }
}
