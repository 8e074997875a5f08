//! The hostile-client suite: attacks on the HTTPS front end and the QUIC admin endpoint, on
//! loopback, each while a legitimate client is served within a stated bound, and nothing
//! changes. Attackers come from 127.0.0.2 and up (Linux answers every 127.0.0.0/8 address on
//! the loopback interface), the legitimate client from 127.0.0.1, so per-source limits tell
//! them apart. The live-update stream across a revocation is in `http_api.rs`; client-id
//! takeover and a forged-RT flood against a real Mosquitto are in `ffi/tests/broker.rs`.
//! docs/reliability.md lists the limits and the figures these tests print.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tessera_client::{AdminClient, ClientError};
use tessera_proto::admin::requests::{PtList, Status};
use tessera_proto::wire::{self, code, kind, ADMIN_ALPN};
use tessera_proto::AdminToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::{code_of, TestServer};
use crate::http_api::{client_builder, unknown_admin_token};

/// The bound a legitimate request is answered within while an attack runs.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// The `i`th attacker address: 127.0.0.2 and up.
fn attacker(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(i).unwrap())
}

fn https_addr(ts: &TestServer) -> SocketAddr {
    ts.server.as_ref().unwrap().console_addr().unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
async fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((from, 0))).unwrap();
    s.connect(to).await.expect("TCP connect")
}

/// TLS to the server (trusting its CA only), speaking HTTP/1.1.
fn tls(ts: &TestServer) -> tokio_rustls::TlsConnector {
    let cfg = tessera_client::transport::client_tls(&ts.trust, b"http/1.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn tls_from(ts: &TestServer, from: Ipv4Addr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = tcp_from(from, https_addr(ts)).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls(ts).connect(name, tcp).await.expect("TLS handshake")
}

/// A legitimate API request on a new connection from 127.0.0.1: its status and how long the
/// answer took.
async fn legit(ts: &TestServer) -> (StatusCode, Duration) {
    let http = client_builder(ts).build().unwrap();
    let started = Instant::now();
    let r = http
        .get(format!(
            "https://localhost:{}/api/v1/pts",
            https_addr(ts).port()
        ))
        .bearer_auth(ts.admin_token.expose())
        .send()
        .await
        .expect("the legitimate request is answered");
    let status = r.status();
    let _ = r.bytes().await;
    (status, started.elapsed())
}

/// The PTs there are, by id.
async fn pts(ts: &TestServer) -> Vec<String> {
    let page = ts
        .admin
        .send(&PtList {
            limit: 1_000,
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    page.pts.into_iter().map(|p| p.id.to_string()).collect()
}

/// Whether the peer has closed `s`: a read ends (EOF or an error) within `within`.
async fn closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut b = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut b)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// 1,000 half-sent requests held from 16 addresses (TLS done, headers never finished), then a
/// flood of 300 more connections that send nothing, past the 1,024 the server holds: a
/// legitimate request is answered within 1 s throughout, because the oldest connections that
/// have not sent a request give way; and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_and_a_connection_flood_do_not_starve_a_legitimate_client() {
    // Timeouts longer than the test: the attackers hold their connections as long as it runs.
    let ts = TestServer::start_with(|c| {
        c.http.header_timeout_ms = 600_000;
        c.http.idle_timeout_ms = 600_000;
    })
    .await;
    let (s, _) = legit(&ts).await;
    assert_eq!(s, StatusCode::OK);
    let pts_before = pts(&ts).await;

    let mut held = Vec::new();
    for i in 0..1_000 {
        let mut s = tls_from(&ts, attacker(i % 16)).await;
        s.write_all(b"GET /api/v1/pts HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let (s, while_held) = legit(&ts).await;
    assert_eq!(s, StatusCode::OK);
    assert!(while_held < SERVED_WITHIN, "{while_held:?}");

    let mut flood = Vec::new();
    for i in 0..300 {
        flood.push(tcp_from(attacker(16 + i % 6), https_addr(&ts)).await);
    }
    let (s, while_full) = legit(&ts).await;
    assert_eq!(s, StatusCode::OK);
    assert!(while_full < SERVED_WITHIN, "{while_full:?}");

    // Room was made by closing the oldest half-sent requests: about as many as went past 1,024.
    let mut evicted = 0;
    for s in &mut held {
        if closed(s, Duration::from_millis(2)).await {
            evicted += 1;
        }
    }
    assert!((250..=320).contains(&evicted), "{evicted} evicted");
    assert_eq!(pts(&ts).await, pts_before, "the attack changed something");
    eprintln!(
        "HTTPS: 1,000 half-sent requests held: a legitimate request answered in {while_held:?}; \
         300 more connections past the cap: answered in {while_full:?} ({evicted} half-sent \
         requests closed to make room)"
    );
    drop((held, flood));
    ts.shutdown().await;
}

/// A source holds at most its share of connections: past it, a new one is closed at once (the
/// client learns, it does not hang), and the ones it holds stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_past_its_share_of_connections_is_closed_at_once() {
    let ts = TestServer::start_with(|c| c.http.max_connections_per_source = 8).await;
    let mut conns = Vec::new();
    for _ in 0..12 {
        conns.push(tcp_from(attacker(0), https_addr(&ts)).await);
    }
    // The last four are closed at once; once they are, the first eight are known admitted.
    for c in &mut conns[8..] {
        assert!(closed(c, Duration::from_secs(5)).await);
    }
    for c in &mut conns[..8] {
        assert!(!closed(c, Duration::ZERO).await);
    }
    let (s, t) = legit(&ts).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t < SERVED_WITHIN);
    ts.shutdown().await;
}

/// Slow clients are closed at the timeouts: a request's headers that never end, a TLS
/// handshake that never starts, a body that never ends (408), a connection that goes quiet
/// after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_at_the_timeouts() {
    let header = Duration::from_millis(300);
    let ts = TestServer::start_with(|c| {
        c.http.header_timeout_ms = 300;
        c.http.body_timeout_ms = 300;
        c.http.idle_timeout_ms = 600;
    })
    .await;
    let bound = Duration::from_secs(5);

    // Headers that never end.
    let started = Instant::now();
    let mut s = tls_from(&ts, attacker(0)).await;
    s.write_all(b"GET /api/v1/pts HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(closed(&mut s, bound).await, "half-sent headers held");
    let slowloris = started.elapsed();
    assert!(
        slowloris >= header - Duration::from_millis(50),
        "{slowloris:?}"
    );

    // A TCP connection that never starts its TLS handshake.
    let started = Instant::now();
    let mut raw = tcp_from(attacker(1), https_addr(&ts)).await;
    assert!(closed(&mut raw, bound).await, "a silent connection held");
    let silent = started.elapsed();

    // A body that never ends: 408 with a problem document.
    let mut s = tls_from(&ts, attacker(2)).await;
    let head = format!(
        "POST /api/v1/pts HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"label\"",
        ts.admin_token.expose()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(bound, s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");

    // A connection that goes quiet after its request (an HTTP/1.1 one waits for its next
    // request's headers at most the header timeout; any connection that moves no byte, at most
    // the idle timeout).
    let mut s = tls_from(&ts, attacker(3)).await;
    s.write_all(b"GET /console/app.css HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    assert!(closed(&mut s, bound).await, "a quiet connection held");
    let quiet = started.elapsed();
    eprintln!(
        "HTTPS timeouts (header 300 ms, idle 600 ms): half-sent headers closed after \
         {slowloris:?}, a silent connection after {silent:?}, a quiet HTTP/1.1 one after \
         {quiet:?}"
    );
    assert_eq!(legit(&ts).await.0, StatusCode::OK);
    ts.shutdown().await;
}

/// A bearer-token guessing loop from one address: the first 10 failures are answered 401,
/// then 429 with Retry-After (before the token is even looked at, so a right guess is not
/// told apart either), while a legitimate client elsewhere is served. Failed sign-ins and
/// wrong tokens on the QUIC admin endpoint count against the same throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guessing_loop_is_throttled_and_a_legitimate_client_is_not() {
    let ts = TestServer::start().await;
    let base = format!("https://localhost:{}", https_addr(&ts).port());
    let guesser = client_builder(&ts)
        .local_address(IpAddr::V4(attacker(0)))
        .build()
        .unwrap();
    let (mut unauthorized, mut limited, mut slowest) = (0, 0, Duration::ZERO);
    let started = Instant::now();
    for i in 0..200 {
        let guess = if i % 2 == 0 {
            unknown_admin_token()
        } else {
            format!("tsat_guess{i}")
        };
        let r = guesser
            .get(format!("{base}/api/v1/status"))
            .bearer_auth(guess)
            .send()
            .await
            .unwrap();
        match r.status() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=6).contains(&retry), "Retry-After: {retry}");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["code"], json!(code::RATE_LIMITED));
            }
            s => panic!("a guess got {s}"),
        }
        if i % 20 == 0 {
            let (s, t) = legit(&ts).await;
            assert_eq!(s, StatusCode::OK);
            slowest = slowest.max(t);
        }
    }
    let elapsed = started.elapsed();
    // 10 at once, then one every 6 s.
    let allowed = 10 + (elapsed.as_secs_f64() / 6.0).ceil() as usize;
    assert!(
        (10..=allowed).contains(&unauthorized),
        "{unauthorized} answered 401"
    );
    assert_eq!(unauthorized + limited, 200);
    assert!(slowest < SERVED_WITHIN, "{slowest:?}");
    // The guesser's address gets no answer about a right guess either.
    let r = guesser
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(ts.admin_token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    eprintln!(
        "bearer-token guessing: 200 guesses in {elapsed:?}: {unauthorized} answered 401, \
         {limited} 429; the legitimate client's slowest answer {slowest:?}"
    );

    // The QUIC admin endpoint and sign-in share the throttle (from 127.0.0.1 now).
    let wrong = AdminClient::new(
        ts.admin_addr,
        "localhost",
        &ts.trust,
        AdminToken::new(unknown_admin_token()),
    )
    .unwrap();
    let mut codes = Vec::new();
    for _ in 0..9 {
        codes.push(code_of(&wrong.send(&Status {}).await.unwrap_err()));
    }
    assert!(
        codes.iter().all(|c| *c == code::UNAUTHENTICATED),
        "{codes:?}"
    );
    let signin = client_builder(&ts)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/console/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("token", unknown_admin_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        signin.headers()["location"],
        "/console/?signin=refused",
        "the tenth failure is still told"
    );
    match wrong.send(&Status {}).await.unwrap_err() {
        ClientError::Server(e) => {
            assert_eq!(e.code, code::RATE_LIMITED);
            assert!(e.retry_after_ms.is_some());
        }
        e => panic!("{e}"),
    }
    wrong.close().await;
    ts.shutdown().await;
}

/// The throttle counts failures only: many requests that authenticate at once from one address
/// (a console page's parallel requests, a broker's 64 concurrent introspections) are all
/// served, over HTTPS and over QUIC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_that_authenticate_at_once_are_not_throttled() {
    let ts = TestServer::start().await;
    let base = format!("https://localhost:{}", https_addr(&ts).port());
    let http = client_builder(&ts).build().unwrap();
    let token = ts.admin_token.expose().to_owned();
    let https = (0..64).map(|_| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        tokio::spawn(async move {
            http.get(format!("{base}/api/v1/status"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let quic = join_all((0..64).map(|_| ts.admin.send(&Status {})));
    let (https, quic) = tokio::join!(join_all(https), quic);
    assert!(https.into_iter().all(|s| s.unwrap() == StatusCode::OK));
    assert!(quic.into_iter().all(|r| r.is_ok()));
    ts.shutdown().await;
}

/// A QUIC connection to the admin endpoint from `from`.
async fn admin_conn(
    ts: &TestServer,
    from: Ipv4Addr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let tls = tessera_client::transport::client_tls(&ts.trust, ADMIN_ALPN).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client(SocketAddr::from((from, 0))).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    ep.connect(ts.admin_addr, "localhost").unwrap().await
}

/// Send one admin request frame on a new stream of `conn` and read its answer's code (0 for
/// OK). The request is written from a task of its own: a server that answers before reading
/// it all stops reading.
async fn admin_request(conn: &quinn::Connection, body: Vec<u8>) -> u16 {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let frame = wire::encode(kind::STATUS, &body);
    tokio::spawn(async move {
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
    });
    let answer = recv.read_to_end(1 << 20).await.unwrap();
    let f = wire::decode(&answer, 1 << 20).unwrap();
    if f.kind == kind::OK {
        return 0;
    }
    serde_json::from_slice::<Value>(f.body).unwrap()["code"]
        .as_u64()
        .map_or(0, |c| u16::try_from(c).unwrap())
}

/// An admin request body of about `len` bytes: `token` and an argument of padding.
fn admin_body(token: &str, len: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "token": token, "args": { "pad": "x".repeat(len) } })).unwrap()
}

/// A stream flood on the QUIC admin endpoint: before any of its requests has carried a token
/// that verifies, a connection may open 4 streams and send at most 64 KiB on each; a source
/// may hold 16 connections. 16 connections each holding 4 streams of 60 KiB (3.75 MiB in all,
/// against 64 streams × 1 MiB a connection before) leave a legitimate operator served within
/// 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_stream_flood_holds_little_before_the_token() {
    let ts = TestServer::start().await;
    let conn = admin_conn(&ts, attacker(0)).await.unwrap();
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(conn.open_bi().await.unwrap());
    }
    // A fifth stream has no credit: the open does not complete.
    assert!(tokio::time::timeout(Duration::ZERO, conn.open_bi())
        .await
        .is_err());
    drop(streams);
    // Over 64 KiB before the token verified: refused.
    let big = admin_body("tsat_x", 100 * 1024);
    assert_eq!(admin_request(&conn, big.clone()).await, code::TOO_LARGE);
    // A request whose token verifies opens up the connection: 64 streams, 1 MiB requests.
    assert_eq!(
        admin_request(&conn, admin_body(ts.admin_token.expose(), 0)).await,
        code::MALFORMED,
        "the padding argument is not one STATUS takes, but the token verified"
    );
    let mut streams = Vec::new();
    for _ in 0..16 {
        streams.push(
            tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
                .await
                .expect("stream credit after the token verified")
                .unwrap(),
        );
    }
    drop(streams);
    let big = admin_body(ts.admin_token.expose(), 100 * 1024);
    assert_eq!(admin_request(&conn, big).await, code::MALFORMED);

    // The flood: 16 connections from one address, 4 streams each with 60 KiB that never end;
    // a 17th connection from it is refused.
    let mut flood = Vec::new();
    for _ in 0..16 {
        let c = admin_conn(&ts, attacker(1)).await.unwrap();
        for _ in 0..4 {
            let (mut send, recv) = c.open_bi().await.unwrap();
            let mut frame = wire::encode(kind::STATUS, &vec![b' '; 70 * 1024]);
            frame.truncate(60 * 1024);
            send.write_all(&frame).await.unwrap();
            flood.push((send, recv));
        }
    }
    assert!(admin_conn(&ts, attacker(1)).await.is_err());
    let started = Instant::now();
    ts.admin.send(&Status {}).await.unwrap();
    let served = started.elapsed();
    assert!(served < SERVED_WITHIN, "{served:?}");
    eprintln!(
        "QUIC admin: 16 connections × 4 streams × 60 KiB held from one address (17th refused): \
         a legitimate request answered in {served:?}"
    );
    ts.shutdown().await;
}

/// Under load (here: always) the admin endpoint, too, makes a new client prove its address
/// with a Retry first; the client then gets its answer as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_clients_get_a_retry_under_load() {
    let ts = TestServer::start_with(|c| c.retry_above_handshakes = 0).await;
    let fresh = AdminClient::new(
        ts.admin_addr,
        "localhost",
        &ts.trust,
        ts.admin_token.clone(),
    )
    .unwrap();
    let before = ts.server.as_ref().unwrap().retries_sent();
    fresh.send(&Status {}).await.unwrap();
    assert!(ts.server.as_ref().unwrap().retries_sent() > before);
    fresh.close().await;
    ts.shutdown().await;
}
