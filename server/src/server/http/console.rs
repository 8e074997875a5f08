//! The console: a web UI served by the `tessera` binary itself (its files are compiled in), and
//! the sign-in, session and sign-out routes behind it. The UI calls the HTTPS admin API with
//! its session cookie and CSRF token; what a person may do is what their token's role may.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tessera_proto::wire::{code, kind};

use super::problem::Problem;
use super::routes::Peer;
use super::routes::{read_body, BodyError};
use super::session::{clear_cookie, csrf_matches, csrf_refused, same_site, set_cookie};
use super::HttpState;
use tessera_engine::AdminRole;

const INDEX: &str = include_str!("../../../console/index.html");
const APP_JS: &str = include_str!("../../../console/app.js");
const APP_CSS: &str = include_str!("../../../console/app.css");

/// The console's Content-Security-Policy: its own files only, no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub(crate) async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub(crate) async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

pub(crate) async fn root() -> Redirect {
    Redirect::to("/console/")
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// `POST /console/login` (a form with `token`): check the token, start a session, and send the
/// browser back to the console with its cookie. A failure comes back as `?signin=<why>`.
pub(crate) async fn login(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    let source = Peer::of(&req);
    if !same_site(req.headers()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "cross-site",
            code::FORBIDDEN,
            "sign-in from another site is refused",
        )
        .into_response();
    }
    let Ok(body) = read_body(&st, req.into_body(), 4096).await else {
        return Redirect::to("/console/?signin=bad").into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SignIn>(&body) else {
        return Redirect::to("/console/?signin=bad").into_response();
    };
    let form = zeroize::Zeroizing::new(form.token);
    let token = zeroize::Zeroizing::new(form.trim().to_owned());
    // OP_LIST is the first thing the console does, and a request every person's role may make.
    match crate::server::service::authorize(&st.shared, token.clone(), kind::OP_LIST, source).await
    {
        Ok(caller) => {
            let role = match caller.role {
                AdminRole::Admin => "admin",
                AdminRole::Technician => "technician",
                AdminRole::Service => {
                    return Redirect::to("/console/?signin=service").into_response()
                }
            };
            let id = st.sessions.start(token, role, caller.name);
            let mut r = Redirect::to("/console/").into_response();
            if let Ok(v) = HeaderValue::from_str(&set_cookie(&id)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) if e.code == code::FORBIDDEN => {
            Redirect::to("/console/?signin=service").into_response()
        }
        Err(e) if e.code == code::RATE_LIMITED => {
            Redirect::to("/console/?signin=rate").into_response()
        }
        Err(_) => Redirect::to("/console/?signin=refused").into_response(),
    }
}

/// `GET /console/session`: who is signed in, and the CSRF token their requests carry.
pub(crate) async fn session(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    match st.sessions.with(
        req.headers(),
        |s| serde_json::json!({ "role": s.role, "name": s.name, "csrf": s.csrf }),
    ) {
        Some(v) => axum::Json(v).into_response(),
        None => Problem::unauthorized("not signed in", code::UNAUTHENTICATED).into_response(),
    }
}

/// `POST /console/logout`: end the session (CSRF token required).
pub(crate) async fn logout(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    let h = req.headers();
    if !signed_in_change(&st, h) {
        return csrf_refused().into_response();
    }
    st.sessions.end(h);
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Whether a state-changing console request comes from this site, in a live session, with the
/// session's CSRF token.
pub(crate) fn signed_in_change(st: &HttpState, h: &axum::http::HeaderMap) -> bool {
    same_site(h)
        && st
            .sessions
            .with(h, |s| csrf_matches(h, &s.csrf))
            .unwrap_or(false)
}

/// A console request's JSON body (at most 4 KiB) as `T`; `expected` shows its shape in the
/// refusal of anything else.
pub(crate) async fn small_json<T: serde::de::DeserializeOwned>(
    st: &HttpState,
    req: Request,
    expected: &str,
) -> Result<T, Response> {
    let body = match read_body(st, req.into_body(), 4096).await {
        Ok(b) => b,
        Err(BodyError::Slow) => return Err(BodyError::slow().into_response()),
        Err(BodyError::TooLarge) => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                code::TOO_LARGE,
                "at most 4 KiB",
            )
            .into_response())
        }
    };
    serde_json::from_slice(&body).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            code::MALFORMED,
            &format!("expected {expected}"),
        )
        .into_response()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QrRequest {
    text: String,
}

/// `POST /console/qr` (signed in, CSRF token): a QR code of `text` as SVG, for the factory
/// station that scans a PT the console has just shown. The text is not kept or logged.
pub(crate) async fn qr(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    if !signed_in_change(&st, req.headers()) {
        return csrf_refused().into_response();
    }
    let q: QrRequest = match small_json(&st, req, "{\"text\": …}").await {
        Ok(q) => q,
        Err(r) => return r,
    };
    let text = zeroize::Zeroizing::new(q.text);
    match qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(240, 240)
                .quiet_zone(true)
                .build();
            let mut r = svg.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            r
        }
        Err(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-input",
            code::INVALID_INPUT,
            "too long for a QR code",
        )
        .into_response(),
    }
}
