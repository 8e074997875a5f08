//! `tessera status`'s second source: the server's readiness probe (`GET /readyz` on the metrics
//! listener), which needs neither a token nor the store, so it can say which part is down when
//! the admin endpoint cannot answer.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;

/// `GET http://addr/readyz` within `within`: the status code and the JSON body.
pub(super) async fn readyz(
    addr: SocketAddr,
    within: Duration,
) -> Result<(u16, serde_json::Value), String> {
    let get = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/readyz")
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let res = send.send_request(req).await.map_err(|e| e.to_string())?;
        let code = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json =
            serde_json::from_slice(&body).map_err(|e| format!("not a readiness answer: {e}"))?;
        Ok((code, json))
    };
    tokio::time::timeout(within, get)
        .await
        .map_err(|_| format!("no answer within {} ms", within.as_millis()))?
}

/// In words: the checks that failed (`name: detail`), or `None` when all passed.
pub(super) fn failing(readiness: &serde_json::Value) -> Option<Vec<String>> {
    let checks = readiness.get("checks")?.as_object()?;
    let bad: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c.get("ok") != Some(&serde_json::Value::Bool(true)))
        .map(|(name, c)| {
            format!(
                "{name}: {}",
                c.get("detail").and_then(|d| d.as_str()).unwrap_or("failed")
            )
        })
        .collect();
    (!bad.is_empty()).then_some(bad)
}

#[cfg(test)]
mod tests {
    use super::failing;

    #[test]
    fn the_failing_checks_in_words() {
        let down = serde_json::json!({
            "status": "not ready",
            "checks": {
                "store": { "ok": false, "detail": "the store did not answer within 1500 ms" },
                "feed": { "ok": true, "detail": "one node" },
                "keys": { "ok": true, "detail": "key epoch 1 loaded" },
                "endpoints": { "ok": true, "detail": "listening" }
            }
        });
        assert_eq!(
            failing(&down),
            Some(vec![
                "store: the store did not answer within 1500 ms".to_owned()
            ])
        );
        let up = serde_json::json!({ "status": "ready", "checks": { "store": { "ok": true } } });
        assert_eq!(failing(&up), None);
        assert_eq!(
            failing(&serde_json::json!({})),
            None,
            "not a readiness answer"
        );
    }
}
