//! The clients' TLS: rustls over ring, TLS 1.3 only.

use std::sync::Arc;

/// The rustls provider the clients use: ring, with `TLS_AES_128_GCM_SHA256` first among the
/// cipher suites (the server's order decides; see the server's `tls::provider`).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}
