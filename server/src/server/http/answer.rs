//! JSON answers that may carry secrets (a new PT or admin token, a pairing code): written into
//! one buffer of exactly their size, which is wiped once the connection has sent it, and the
//! JSON value they were made from wiped too.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

/// `v` as an `application/json` answer whose bytes are wiped once sent; `v` is wiped here.
pub(crate) fn wiped_json(mut v: Value) -> Response {
    let bytes = serialize_exact(&v);
    wipe(&mut v);
    let mut r = Response::new(Body::from(Bytes::from_owner(bytes)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The JSON text of `v` in a buffer allocated once at its final size (a growing buffer would
/// leave copies behind in the memory it gave back).
fn serialize_exact(v: &Value) -> Zeroizing<Vec<u8>> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing into memory cannot fail; a value that would not serialize has no text.
    let _ = serde_json::to_writer(&mut n, v);
    let mut out = Zeroizing::new(Vec::with_capacity(n.0));
    let _ = serde_json::to_writer(&mut *out, v);
    out
}

/// Overwrite every string in `v` (where tokens and codes are).
fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_fills_its_buffer_exactly_and_the_value_is_wiped() {
        let mut v = serde_json::json!({
            "token": "tsat_secret", "pt": {"id": "pt_1", "token": ["tspt_x", 7]}, "n": 3
        });
        let text = serialize_exact(&v);
        assert_eq!(text.len(), text.capacity());
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), v);
        wipe(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"token": "", "pt": {"id": "", "token": ["", 7]}, "n": 3})
        );
    }
}
