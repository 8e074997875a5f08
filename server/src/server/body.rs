//! Request bodies: one JSON object each, decoded into the request's type, with an error a
//! client can act on that never repeats a value from the body (bodies carry tokens).

use serde::de::DeserializeOwned;
use tessera_proto::wire::{code, ErrorBody};

use super::reply::err;

/// A request body as `T`. The body must be one JSON object (an array would otherwise be read as
/// positional fields); unknown fields are refused by `T` itself.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ErrorBody> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(err(
            code::MALFORMED,
            "malformed request body: not a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages name fields and positions, not values.
        err(
            code::MALFORMED,
            &format!("malformed request body: {}", describe(&e)),
        )
    })
}

/// What is wrong with a body, from serde_json's error: which field and why ("unknown field
/// `x`", "missing field `y`", "invalid type"), or that the JSON itself is broken. serde_json's
/// messages name fields and positions, never input values; the position is dropped too.
pub(crate) fn describe(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => e
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or("invalid data")
            .to_owned(),
        serde_json::error::Category::Syntax => "invalid JSON".into(),
        serde_json::error::Category::Eof => "truncated JSON".into(),
        serde_json::error::Category::Io => "I/O".into(),
    }
}
