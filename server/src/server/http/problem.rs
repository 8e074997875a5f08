//! Errors as RFC 9457 problem details: the admin layer's stable wire code and message, with the
//! HTTP status that fits it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_proto::wire::{code, ErrorBody};

/// A problem document (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// `urn:tessera:problem:<name>`, one per wire code.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// The HTTP status's reason phrase.
    pub(crate) title: String,
    /// The HTTP status.
    pub(crate) status: u16,
    /// What went wrong (never contains a secret).
    pub(crate) detail: String,
    /// The stable error code, as on the QUIC admin endpoint (docs/protocol.md).
    pub(crate) code: u16,
    /// For rate limits: when to retry, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_ms: Option<u64>,
    /// For a wrong verification code: the attempts left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remaining_attempts: Option<u32>,
}

/// The HTTP status and the problem name of a wire code.
fn status_of(c: u16) -> (StatusCode, &'static str) {
    match c {
        code::MALFORMED => (StatusCode::BAD_REQUEST, "malformed"),
        code::UNSUPPORTED_VERSION => (StatusCode::BAD_REQUEST, "unsupported-version"),
        code::UNKNOWN_REQUEST => (StatusCode::NOT_FOUND, "unknown-request"),
        code::TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
        code::INVALID_INPUT => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-input"),
        code::TOKEN_FORMAT => (StatusCode::UNPROCESSABLE_ENTITY, "token-format"),
        code::UNAUTHENTICATED => (StatusCode::UNPROCESSABLE_ENTITY, "unauthenticated"),
        code::EXPIRED => (StatusCode::UNPROCESSABLE_ENTITY, "expired"),
        code::REVOKED => (StatusCode::UNPROCESSABLE_ENTITY, "revoked"),
        code::SUPERSEDED => (StatusCode::UNPROCESSABLE_ENTITY, "superseded"),
        code::ROTATION_REUSE => (StatusCode::UNPROCESSABLE_ENTITY, "rotation-reuse"),
        code::DEVICE_BLOCKED => (StatusCode::UNPROCESSABLE_ENTITY, "device-blocked"),
        code::NOT_FOUND => (StatusCode::NOT_FOUND, "not-found"),
        code::OPERATION_CLOSED => (StatusCode::CONFLICT, "operation-closed"),
        code::WRONG_CODE => (StatusCode::UNPROCESSABLE_ENTITY, "wrong-code"),
        code::CODE_ATTEMPTS_EXHAUSTED => (StatusCode::CONFLICT, "code-attempts-exhausted"),
        code::CODE_REQUIRED => (StatusCode::UNPROCESSABLE_ENTITY, "code-required"),
        code::DEVICE_ID_IN_USE => (StatusCode::CONFLICT, "device-id-in-use"),
        code::RATE_LIMITED => (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
        code::TOO_MANY_PENDING => (StatusCode::CONFLICT, "too-many-pending"),
        code::REGISTRATION_CAP => (StatusCode::CONFLICT, "registration-cap"),
        code::GENERATION_EXHAUSTED => (StatusCode::CONFLICT, "generation-exhausted"),
        code::FORBIDDEN => (StatusCode::FORBIDDEN, "forbidden"),
        code::TIMEOUT => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        code::UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl Problem {
    /// The problem for an error of the admin layer.
    pub(crate) fn from_error(e: &ErrorBody) -> Self {
        let (status, name) = status_of(e.code);
        Self::new(status, name, e.code, &e.message).with(e)
    }

    /// The admin token is missing, malformed, unknown or revoked: 401, whatever the wire code.
    pub(crate) fn unauthorized(detail: &str, wire_code: u16) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", wire_code, detail)
    }

    pub(crate) fn new(status: StatusCode, name: &str, wire_code: u16, detail: &str) -> Self {
        Self {
            kind: format!("urn:tessera:problem:{name}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.to_owned(),
            code: wire_code,
            retry_after_ms: None,
            remaining_attempts: None,
        }
    }

    fn with(mut self, e: &ErrorBody) -> Self {
        self.retry_after_ms = e.retry_after_ms;
        self.remaining_attempts = e.remaining_attempts;
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after_ms;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(ms) = retry {
            if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}
