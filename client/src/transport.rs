//! The client side of the wire protocol: a QUIC connection to one endpoint, one stream per
//! request, reconnecting when the connection is gone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::Mutex;

use tessera_proto::wire::{self, kind, ErrorBody};

use crate::tls;

/// How a client decides to trust the server.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Trust certificates issued by these CA certificates (PEM).
    CaPem(Vec<u8>),
    /// Trust the chain that contains a certificate with this SHA-256 fingerprint (hex; the
    /// CA fingerprint `tessera serve` prints), or with any of several, separated by commas or
    /// white space (during a CA rollover, the current CA's and the next one's).
    Pin(String),
}

impl Trust {
    /// Read a CA PEM file.
    pub fn ca_file(path: &Path) -> Result<Self, ClientError> {
        std::fs::read(path)
            .map(Trust::CaPem)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
    }
}

/// Client errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Bad client configuration (certificates, names).
    #[error("configuration: {0}")]
    Config(String),
    /// Could not connect, or the connection broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The server's certificate was not accepted: a name it does not carry, a CA or pin that
    /// does not match. Retrying does not help; the configuration must change.
    #[error("server certificate not accepted: {0}")]
    Certificate(String),
    /// No answer in time.
    #[error("request timed out")]
    Timeout,
    /// The server's answer was not valid protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server refused the request.
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorBody),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Server(b) => Some(b.code),
            _ => None,
        }
    }

    /// Worth retrying later (connection trouble, timeouts, rate limits, server unavailable).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connection(_) | ClientError::Timeout => true,
            ClientError::Server(b) => matches!(
                b.code,
                wire::code::RATE_LIMITED
                    | wire::code::UNAVAILABLE
                    | wire::code::INTERNAL
                    | wire::code::TIMEOUT
            ),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct PinVerifier {
    pins: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = |c: &CertificateDer<'_>| {
            ring::digest::digest(&ring::digest::SHA256, c)
                .as_ref()
                .to_vec()
        };
        let anchor = intermediates
            .iter()
            .find(|c| self.pins.contains(&digest(c)))
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(anchor.clone().into_owned())?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Build the client TLS configuration.
pub fn client_tls(trust: &Trust, alpn: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let provider = tls::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut cfg = match trust {
        Trust::CaPem(pem) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(c.map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?)
                    .map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Config("no CA certificate given".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pin(list) => {
            let pins = list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(|hex| {
                    base16ct::mixed::decode_vec(hex)
                        .ok()
                        .filter(|p| p.len() == 32)
                        .ok_or_else(|| {
                            ClientError::Config(
                                "a pin must be 64 hex characters (SHA-256); several are \
                                 separated by commas"
                                    .into(),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if pins.is_empty() {
                return Err(ClientError::Config("no pin given".into()));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier { pins, provider }))
                .with_no_client_auth()
        }
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    cfg.enable_early_data = false;
    Ok(cfg)
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// The server closed it with an application close code (docs/protocol.md: `0x10` the
    /// registration was revoked, `0x11` the server is shutting down) and a reason text.
    ByServer {
        /// The application close code.
        code: u64,
        /// The server's reason text.
        reason: String,
    },
    /// This client closed it.
    Locally,
    /// It was lost: an idle timeout, a reset, a transport error (the text says which).
    Lost(String),
}

impl std::fmt::Display for ConnectionClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ByServer { code: 0x10, .. } => {
                f.write_str("closed by the server: the registration was revoked (0x10)")
            }
            Self::ByServer { code: 0x11, .. } => {
                f.write_str("closed by the server: it is shutting down (0x11)")
            }
            Self::ByServer { code, reason } => {
                write!(f, "closed by the server: code {code:#x} ({reason})")
            }
            Self::Locally => f.write_str("closed by this client"),
            Self::Lost(e) => write!(f, "lost: {e}"),
        }
    }
}

/// One endpoint's connection.
#[derive(Debug)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    server: std::sync::Mutex<SocketAddr>,
    server_name: String,
    conn: Mutex<Option<quinn::Connection>>,
    timeout: Duration,
    /// How long connecting may take, if shorter than a request (see
    /// [`Transport::set_connect_timeout`]).
    connect_timeout: Option<Duration>,
    closed: std::sync::atomic::AtomicBool,
}

/// The frames of one response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The final frame's body (OK). It may carry secrets (an RT, an operation secret, a
    /// token): wiped when the response is dropped.
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

impl Transport {
    /// A client for `server` (whose certificate names `server_name`), speaking `alpn`.
    pub fn new(
        server: SocketAddr,
        server_name: &str,
        trust: &Trust,
        alpn: &[u8],
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let tls = client_tls(trust, alpn)?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let mut cc = quinn::ClientConfig::new(Arc::new(quic));
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(Duration::from_secs(15)))
            .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(60)).ok())
            .mtu_discovery_config(None);
        cc.transport_config(Arc::new(t));
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| ClientError::Config("bind".into()))?;
        let (socket, runtime) =
            super::socket::bind(bind).map_err(|e| ClientError::Connection(e.to_string()))?;
        let mut endpoint =
            quinn::Endpoint::new_with_abstract_socket(Default::default(), None, socket, runtime)
                .map_err(|e| ClientError::Connection(e.to_string()))?;
        endpoint.set_default_client_config(cc);
        Ok(Self {
            endpoint,
            server: std::sync::Mutex::new(server),
            server_name: server_name.to_owned(),
            conn: Mutex::new(None),
            timeout,
            connect_timeout: None,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Give up connecting after `d` (rather than after the request timeout) with a
    /// [`ClientError::Connection`] that names the address: for tools that must say quickly that
    /// a server does not answer.
    pub fn set_connect_timeout(&mut self, d: Duration) {
        self.connect_timeout = Some(d);
    }

    /// The server address requests go to.
    pub fn server(&self) -> SocketAddr {
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send the next requests to `server` (another node of the same deployment, or the new
    /// address of a name): the current connection is closed, and the next request connects
    /// there, resuming the TLS session if that server can open this client's session ticket
    /// (every node of one deployment can).
    pub async fn set_server(&self, server: SocketAddr) {
        *self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = server;
        self.disconnect().await;
    }

    /// The current connection, connecting if there is none.
    pub async fn connection(&self) -> Result<quinn::Connection, ClientError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ClientError::Config("the client has been closed".into()));
        }
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let connecting = self
            .endpoint
            .connect(self.server(), &self.server_name)
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let limit = self.connect_timeout.unwrap_or(self.timeout);
        let c = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| match self.connect_timeout {
                Some(d) => ClientError::Connection(format!(
                    "no answer from {} within {} ms",
                    self.server(),
                    d.as_millis()
                )),
                None => ClientError::Timeout,
            })?
            .map_err(|e| match e {
                // Our own TLS stack refused the server's certificate (a TLS alert raised here,
                // carried as a QUIC crypto error).
                quinn::ConnectionError::TransportError(t)
                    if (0x100..0x200).contains(&u64::from(t.code))
                        && t.reason.contains("certificate") =>
                {
                    ClientError::Certificate(t.reason)
                }
                e => ClientError::Connection(e.to_string()),
            })?;
        *g = Some(c.clone());
        Ok(c)
    }

    /// Wait until the current connection ends, and say how; `None` at once when there is no
    /// connection (none made yet, or dropped with [`Transport::disconnect`]).
    pub async fn closed(&self) -> Option<ConnectionClosed> {
        let c = self.conn.lock().await.clone()?;
        Some(match c.closed().await {
            quinn::ConnectionError::ApplicationClosed(a) => ConnectionClosed::ByServer {
                code: a.error_code.into_inner(),
                reason: String::from_utf8_lossy(&a.reason).into_owned(),
            },
            quinn::ConnectionError::LocallyClosed => ConnectionClosed::Locally,
            e => ConnectionClosed::Lost(e.to_string()),
        })
    }

    /// Drop the connection (the next request reconnects).
    pub async fn disconnect(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.close(quinn::VarInt::from_u32(0), b"bye");
        }
    }

    /// Send one request and read its response; `on_chunk` sees streamed chunks.
    ///
    /// If the connection turns out to be gone before any answer arrived (the server closed it,
    /// or it timed out while idle), the request is sent once more on a new connection. Every
    /// device request is idempotent (operations resume by instance nonce, a refresh retry gets
    /// the same successor), so this is safe.
    pub async fn request_streaming(
        &self,
        kind_code: u8,
        body: &[u8],
        extra_wait: Duration,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<Response, ClientError> {
        // A connection kept from earlier may have died unnoticed: a request that fails on it
        // is tried once more on a new one. A failure to connect at all is not retried.
        let had_connection = self
            .conn
            .lock()
            .await
            .as_ref()
            .is_some_and(|c| c.close_reason().is_none());
        let mut got_chunk = false;
        let first = self
            .request_once(kind_code, body, extra_wait, |c| {
                got_chunk = true;
                on_chunk(c)
            })
            .await;
        match first {
            Err(ClientError::Connection(_)) if !got_chunk && had_connection => {
                self.disconnect().await;
                self.request_once(kind_code, body, extra_wait, on_chunk)
                    .await
            }
            other => other,
        }
    }

    async fn request_once(
        &self,
        kind_code: u8,
        body: &[u8],
        extra_wait: Duration,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> Result<Response, ClientError> {
        let conn = self.connection().await?;
        let run = async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            // The request may carry a PT, an RT or a secret: wiped once sent.
            let frame = zeroize::Zeroizing::new(wire::encode(kind_code, body));
            send.write_all(&frame)
                .await
                .map_err(|e| ClientError::Connection(e.to_string()))?;
            let _ = send.finish();
            loop {
                let mut hdr = [0u8; wire::frame::HEADER_LEN];
                recv.read_exact(&mut hdr)
                    .await
                    .map_err(|e| ClientError::Connection(e.to_string()))?;
                let (k, len) = wire::frame::decode_header(&hdr, wire::frame::RESPONSE_MAX)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                let mut buf = zeroize::Zeroizing::new(vec![0u8; len]);
                recv.read_exact(&mut buf)
                    .await
                    .map_err(|e| ClientError::Connection(e.to_string()))?;
                match k {
                    kind::CHUNK => on_chunk(&buf),
                    kind::OK => return Ok(Response { body: buf }),
                    kind::ERROR => {
                        let e: ErrorBody = serde_json::from_slice(&buf)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        return Err(ClientError::Server(e));
                    }
                    other => {
                        return Err(ClientError::Protocol(format!(
                            "unexpected frame kind {other}"
                        )))
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout + extra_wait, run)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Send one request with a JSON body and parse the JSON response.
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind_code: u8,
        req: &Req,
        extra_wait: Duration,
    ) -> Result<Resp, ClientError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?,
        );
        let r = self
            .request_streaming(kind_code, &body, extra_wait, |_| {})
            .await?;
        serde_json::from_slice(&r.body).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Wait until the endpoint has no connections left.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }

    /// Close for good: requests in flight on other tasks or threads end with an error, new ones
    /// are refused (a permanent [`ClientError::Config`], so no retry loop reconnects), and this
    /// returns once the endpoint is idle.
    pub async fn close(&self) {
        self.close_now().await;
        self.endpoint.wait_idle().await;
    }

    /// [`Transport::close`] without waiting for the endpoint to drain: the close is sent at
    /// once and the endpoint finishes on its runtime, which must keep running (a shared one).
    /// For harnesses that open and close many clients.
    pub async fn close_now(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.disconnect().await;
        self.endpoint.close(quinn::VarInt::from_u32(0), b"bye");
    }
}
