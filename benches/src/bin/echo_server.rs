//! The framework floor for the load generator: a bare quinn request/response server that echoes
//! each stream, with the same TLS (ECDSA P-256, TLS 1.3), socket buffers and limits as Tessera.
//! Prints `echo listening on ADDR` and the path of its CA certificate.
//!
//! `cargo run --release -p tessera-benches --bin echo_server -- DIR`

use std::sync::Arc;
use std::time::Duration;

/// The same allocator as the `tessera` binary, so the floor differs from it only in what it
/// serves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: echo_server DIR"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = tessera_server::ServerConfig::ephemeral(dir.clone());
        cfg.server_names = vec!["localhost".into()];
        let files = tessera_server::server::tls::ensure_certificates(&dir, &cfg.server_names, true)
            .expect("certs");
        let cert = tessera_server::server::tls::ServerCert::load(&files).expect("certificate");
        let crypto = tessera_server::server::tls::server_config(cert, b"echo", None).expect("tls");
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).expect("quic tls");
        let mut sc = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(8u32.into())
            .max_concurrent_uni_streams(0u32.into())
            .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(120)).ok())
            .mtu_discovery_config(None);
        sc.transport_config(Arc::new(t));
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("socket");
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        let ep = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(sc),
            sock.into(),
            Arc::new(quinn::TokioRuntime),
        )
        .expect("endpoint");
        println!("echo listening on {}", ep.local_addr().expect("addr"));
        println!("ca {}", files.ca_cert.display());
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = inc.accept() else { return };
                let Ok(conn) = conn.await else { return };
                while let Ok((mut s, mut r)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(buf) = r.read_to_end(64 * 1024).await {
                            let _ = s.write_all(&buf).await;
                            let _ = s.finish();
                        }
                    });
                }
            });
        }
    });
}
