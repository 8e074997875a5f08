//! The HTTPS front end: the admin API under `/api/v1/` (and its OpenAPI document), on TCP,
//! with the server's own certificate, HTTP/1.1 and HTTP/2.

mod answer;
mod console;
mod listener;
mod openapi;
mod pairing;
pub(crate) mod problem;
pub(crate) mod routes;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{on, MethodFilter};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::config::HttpSettings;
use super::error::ServerError;
use super::shared::Shared;
use super::tls;
use routes::Peer;

/// What the HTTPS front end's handlers share.
pub(crate) struct HttpState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sessions: session::Sessions,
    pub(crate) pairings: pairing::Pairings,
    /// Open event streams by the SHA-256 of their token (see `routes::events`).
    pub(crate) event_streams: std::sync::Mutex<std::collections::HashMap<[u8; 32], usize>>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

/// The router: every API route, the OpenAPI document, the console, and problem details for
/// everything else.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let state = Arc::new(HttpState {
        shared,
        sessions: Default::default(),
        pairings: Default::default(),
        event_streams: Default::default(),
    });
    let mut r = Router::new()
        .route("/", axum::routing::get(console::root))
        .route("/console/", axum::routing::get(console::index))
        .route("/console/app.js", axum::routing::get(console::app_js))
        .route("/console/app.css", axum::routing::get(console::app_css))
        .route("/console/login", axum::routing::post(console::login))
        .route("/console/session", axum::routing::get(console::session))
        .route("/console/logout", axum::routing::post(console::logout))
        .route("/console/qr", axum::routing::post(console::qr))
        .route("/console/pairings", axum::routing::post(pairing::issue))
        .route("/console/pair", axum::routing::post(pairing::exchange))
        .route("/api/v1/events", axum::routing::get(routes::events));
    for route in routes::routes() {
        let filter = match route.method {
            routes::Verb::Post => MethodFilter::POST,
            routes::Verb::Get => MethodFilter::GET,
        };
        r = r.route(
            route.path,
            on(filter, move |st, path, q, req| {
                routes::call(st, route, path, q, req)
            }),
        );
    }
    let doc = openapi::document_json();
    r.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc,
                )
            }
        }),
    )
    .method_not_allowed_fallback(|| async {
        problem::Problem::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            tessera_proto::wire::code::UNKNOWN_REQUEST,
            "this route does not take that method",
        )
    })
    .fallback(|| async {
        problem::Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "not-found",
            tessera_proto::wire::code::UNKNOWN_REQUEST,
            "no such page or API route",
        )
    })
    .layer(axum::middleware::map_response(security_headers))
    .with_state(state)
}

/// Headers every answer carries: no caching of admin data, no framing, no sniffing, HTTPS
/// only.
async fn security_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::header::{self, HeaderValue};
    let h = r.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    r
}

/// Bind the HTTPS listener (so that a port in use fails the start).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Io(format!("console {addr}: {e}")))
}

/// The TLS configuration: the server's certificate, TLS 1.3, ALPN h2 and http/1.1.
pub(crate) fn tls_config(
    cert: &Arc<tls::ServerCert>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let mut cfg = tls::server_config(cert.clone(), b"h2", None)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accept connections until the task is aborted: each gets a place in the connection table
/// (or is closed at once, see `listener`), then its TLS handshake and HTTP/1.1 or HTTP/2, on a
/// task of its own, within the timeouts.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) {
    let settings = shared.config.http.clone();
    let conns = listener::Connections::new(
        listener::connection_cap(&settings),
        settings.max_connections_per_source,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(shared);
    let mut backoff = listener::AcceptBackoff::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                if let Some(wait) = backoff.after(&e) {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
        };
        backoff.reset();
        let Ok(slot) = conns.admit(peer.ip()) else {
            // Closed at once: the client learns now instead of waiting.
            drop(tcp);
            continue;
        };
        // Without it, a response written in two segments waits for the client's delayed ACK
        // (about 40 ms on Linux) under Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, settings) = (acceptor.clone(), app.clone(), settings.clone());
        tokio::spawn(async move {
            let state = slot.state.clone();
            let activity = listener::Activity::new();
            let header_timeout = Duration::from_millis(settings.header_timeout_ms);
            let idle = Duration::from_millis(settings.idle_timeout_ms);
            let serve = connection(
                acceptor,
                app,
                listener::Watched::new(tcp, activity.clone()),
                peer,
                &settings,
                state.clone(),
            );
            // The handshake and the first request's headers within the header timeout.
            let first_request = async {
                tokio::time::sleep(header_timeout).await;
                if !state.served() {
                    return;
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                () = serve => {}
                () = state.evicted() => {}
                () = first_request => {}
                () = activity.idle_for(idle) => {}
            }
            drop(slot);
        });
    }
}

/// One connection: the TLS handshake, then HTTP/1.1 or HTTP/2 until either side ends it.
async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    io: listener::Watched<tokio::net::TcpStream>,
    peer: SocketAddr,
    settings: &HttpSettings,
    state: Arc<listener::ConnState>,
) {
    let Ok(stream) = acceptor.accept(io).await else {
        return;
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        state.mark_served();
        req.extensions_mut().insert(Peer(peer));
        let mut app = app.clone();
        async move {
            use tower::Service;
            app.call(req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_timeout_ms))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(256))
        .max_header_list_size(64 * 1024);
    // No HTTP/2 keep-alive pings: their bytes would keep an idle connection from ever reaching
    // the idle timeout, which already closes a connection whose peer has gone.
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
