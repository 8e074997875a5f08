//! TLS material: a local CA and a server certificate, made with `rcgen` on first start and kept
//! in the data directory; and the rustls configurations for the endpoints.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tessera_proto::wire;

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key.
    #[error("certificate: {0}")]
    Cert(String),
}

/// Certificate files in the data directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate devices trust (`tls/ca.pem`).
    pub ca_cert: PathBuf,
    /// The server certificate chain (`tls/server.pem`: leaf then CA).
    pub server_chain: PathBuf,
    /// The server key (`tls/server.key`, mode 0600).
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Where the files live under `data_dir`.
    pub fn in_dir(data_dir: &Path) -> Self {
        let d = data_dir.join("tls");
        Self {
            ca_cert: d.join("ca.pem"),
            server_chain: d.join("server.pem"),
            server_key: d.join("server.key"),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(data.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Create the CA and server certificate if they do not exist. `names` are the DNS names and IP
/// addresses the server certificate is valid for.
pub fn ensure_certificates(data_dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::in_dir(data_dir);
    if files.ca_cert.exists() && files.server_chain.exists() && files.server_key.exists() {
        return Ok(files);
    }
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let cert_err = |e: rcgen::Error| TlsError::Cert(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tessera local CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);

    let leaf_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut leaf = rcgen::CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "Tessera server");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(cert_err)?;

    std::fs::write(&files.ca_cert, ca_cert.pem()).map_err(io(&files.ca_cert))?;
    write_private(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    std::fs::write(
        &files.server_chain,
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )
    .map_err(io(&files.server_chain))?;
    write_private(&files.server_key, &leaf_key.serialize_pem())?;
    let names_file = dir.join(NAMES_FILE);
    std::fs::write(&names_file, names.join("\n") + "\n").map_err(io(&names_file))?;
    Ok(files)
}

/// Beside a certificate the server made, the names it made it for (one a line).
const NAMES_FILE: &str = "server.names";

/// The names (DNS names and IP addresses) the server certificate in `data_dir` was made for, when
/// the server made it; `None` for a certificate supplied by the operator.
pub fn certificate_names(data_dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(data_dir.join("tls").join(NAMES_FILE)).ok()?;
    Some(
        text.lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// Load a PEM certificate chain.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Cert(format!("{}: {e}", path.display())))?
        .collect();
    let chain = chain.map_err(|e| TlsError::Cert(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError::Cert(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(chain)
}

/// SHA-256 fingerprint of a certificate, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, cert).as_ref())
}

/// The rustls provider every endpoint and client uses (ring, TLS 1.3 only), with
/// `TLS_AES_128_GCM_SHA256` first among its cipher suites.
///
/// Why AES-128 first: a connection is only as strong as its handshake, and the handshake's key
/// exchange (X25519) and certificate (ECDSA P-256) are at the 128-bit security level, which
/// `TLS_AES_256_GCM_SHA384` would not raise. It would cost more, though: its key schedule runs on
/// SHA-384, which x86 CPUs have no instructions for (SHA-256 has them), and AES-256 has 14
/// rounds to AES-128's 10. Measured in docs/reliability.md. The other two suites stay on offer,
/// for peers that do not offer AES-128.
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

/// Server TLS config for an endpoint speaking `alpn`. TLS 1.3 only; no 0-RTT early data.
/// Session tickets are sealed by `ticketer` when given (rustls' in-memory session cache
/// otherwise).
pub fn server_config(
    files: &TlsFiles,
    alpn: &[u8],
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = load_chain(&files.server_chain)?;
    let key = PrivateKeyDer::from_pem_file(&files.server_key)
        .map_err(|e| TlsError::Cert(format!("{}: {e}", files.server_key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    // The server's order of cipher suites (see `provider`) decides, not the client's.
    cfg.ignore_client_order = true;
    // 0-RTT is off: no request, state-changing or not, is accepted as early data.
    cfg.max_early_data_size = 0;
    if let Some(t) = ticketer {
        cfg.ticketer = t;
    }
    Ok(cfg)
}

/// ALPN names, for logs.
pub fn alpn_name(alpn: &[u8]) -> &'static str {
    if alpn == wire::ADMIN_ALPN {
        "tessera-admin/1"
    } else {
        "tessera/1"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring::cipher_suite;
    use tessera_client::transport::{client_tls, Trust};

    /// Run a TLS 1.3 handshake between `client` and `server` in memory; the suite it settled on.
    fn negotiate(
        client: rustls::ClientConfig,
        server: &Arc<rustls::ServerConfig>,
    ) -> rustls::SupportedCipherSuite {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
        let mut buf = Vec::new();
        while c.is_handshaking() || s.is_handshaking() {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets().unwrap();
        }
        let (ours, theirs) = (c.negotiated_cipher_suite(), s.negotiated_cipher_suite());
        assert_eq!(ours, theirs);
        ours.unwrap()
    }

    /// A client trusting the server's CA that offers exactly `suites`, in that order.
    fn offering(
        suites: Vec<rustls::SupportedCipherSuite>,
        files: &TlsFiles,
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_chain(&files.ca_cert).unwrap() {
            roots.add(cert).unwrap();
        }
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites;
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![wire::DEVICE_ALPN.to_vec()];
        cfg
    }

    #[test]
    fn aes_128_gcm_is_chosen_even_for_a_client_that_prefers_aes_256() {
        let dir = tempfile::tempdir().unwrap();
        let files = ensure_certificates(dir.path(), &["localhost".into()]).unwrap();
        let server = Arc::new(server_config(&files, wire::DEVICE_ALPN, None).unwrap());
        let trust = Trust::ca_file(&files.ca_cert).unwrap();
        let ours = client_tls(&trust, wire::DEVICE_ALPN).unwrap();
        assert_eq!(
            negotiate(ours, &server),
            cipher_suite::TLS13_AES_128_GCM_SHA256
        );

        // rustls' own default order puts AES-256 first; the server's order still decides.
        let default_order = rustls::crypto::ring::default_provider().cipher_suites;
        assert_eq!(default_order[0], cipher_suite::TLS13_AES_256_GCM_SHA384);
        assert_eq!(
            negotiate(offering(default_order, &files), &server),
            cipher_suite::TLS13_AES_128_GCM_SHA256
        );

        // A client that offers only AES-256 is still served.
        let only_256 = vec![cipher_suite::TLS13_AES_256_GCM_SHA384];
        assert_eq!(
            negotiate(offering(only_256, &files), &server),
            cipher_suite::TLS13_AES_256_GCM_SHA384
        );
    }
}
