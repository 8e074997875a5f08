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
    /// Part of the TLS material is missing and may not be made anew here.
    #[error("{0}")]
    Missing(String),
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

/// Write a new file (mode 0600, as everything in the data directory), failing if it exists.
fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    let mut f = super::identity::create_private(path).map_err(io(path))?;
    f.write_all(data.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// What [`ensure_certificates`] will do with a data directory's TLS material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Use what is there.
    Use,
    /// Nothing there: make a CA and a server certificate (only on a first start).
    MakeAll,
    /// The CA and its key there: issue a server certificate from them.
    IssueServerCertificate,
}

/// What to do with the TLS material in `dir` (`data_dir/tls`), or why nothing may be done.
fn plan(dir: &Path) -> Result<Plan, TlsError> {
    let has = |f: &str| dir.join(f).exists();
    let (ca, ca_key, chain, key) = (
        has("ca.pem"),
        has("ca.key"),
        has("server.pem"),
        has("server.key"),
    );
    let missing = |what: &str, how: &str| {
        Err(TlsError::Missing(format!(
            "{} has {what}: {how}",
            dir.display()
        )))
    };
    match (ca, chain, key) {
        (true, true, true) => Ok(Plan::Use),
        (false, false, false) if !ca_key => Ok(Plan::MakeAll),
        (false, true, true) => missing(
            "a server certificate and key but no ca.pem",
            "put the CA certificate that signed server.pem there (devices are given that CA to \
             trust)",
        ),
        (false, _, _) => missing(
            "an incomplete CA or server certificate (ca.pem, ca.key, server.pem, server.key)",
            "restore tls/ from the backup, or move tls/ away and run `tessera tls init`",
        ),
        (true, _, _) if !ca_key => missing(
            "ca.pem but no server.pem and server.key, and no ca.key to issue them with",
            "restore them from the backup, or bring a server certificate signed by that CA",
        ),
        (true, chain, key) if chain != key => missing(
            "only one of server.pem and server.key",
            "restore the other from the backup, or remove it to have the server issue a new \
             certificate from ca.key",
        ),
        (true, _, _) => Ok(Plan::IssueServerCertificate),
    }
}

/// Check, before anything else is opened or made, that the TLS material in `data_dir` can be
/// used or completed (see [`ensure_certificates`]): a refusal then changes nothing.
pub fn preflight(data_dir: &Path) -> Result<(), TlsError> {
    plan(&data_dir.join("tls")).map(|_| ())
}

/// The TLS material of `data_dir`, made where that is safe, never overwritten:
///
/// - all there (made by the server, or brought by the operator: `server.pem`, `server.key` and
///   the `ca.pem` that signed it): used as it is;
/// - none there, on a first start (`first_start`): a new CA and a server certificate for
///   `names` (DNS names and IP addresses);
/// - the CA and its key there, the server certificate and key not: a new server certificate
///   from that CA (devices keep trusting it);
/// - anything else (no CA in a deployment that has a store, a certificate without the CA that
///   signed it, a CA without its key and no server certificate, half a key pair) is refused,
///   with what is missing and how to bring it back.
pub fn ensure_certificates(
    data_dir: &Path,
    names: &[String],
    first_start: bool,
) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::in_dir(data_dir);
    let dir = data_dir.join("tls");
    match plan(&dir)? {
        Plan::Use => return Ok(files),
        Plan::IssueServerCertificate => return issue_server_certificate(&dir, &files, names),
        Plan::MakeAll if !first_start => {
            return Err(TlsError::Missing(format!(
                "{} has no CA (ca.pem) although this data directory already has a store: every \
                 device trusts that CA: restore tls/ from the backup (`tessera restore \
                 ARCHIVE`), or make a new CA with `tessera tls init` and give it to every device",
                dir.display()
            )))
        }
        Plan::MakeAll => {}
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir).map_err(io(&dir))?;
    let (ca_pem, ca_key_pem) = make_ca("Tessera local CA")?;
    write_private(&files.ca_cert, &ca_pem)?;
    write_private(&dir.join("ca.key"), &ca_key_pem)?;
    issue_server_certificate(&dir, &files, names)
}

/// A new self-signed CA: its certificate and key, PEM.
fn make_ca(common_name: &str) -> Result<(String, zeroize::Zeroizing<String>), TlsError> {
    let cert_err = |e: rcgen::Error| TlsError::Cert(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    Ok((
        ca_cert.pem(),
        zeroize::Zeroizing::new(ca_key.serialize_pem()),
    ))
}
/// A new server certificate for `names` from the CA in `dir` (`ca.pem`, `ca.key`).
fn issue_server_certificate(
    dir: &Path,
    files: &TlsFiles,
    names: &[String],
) -> Result<TlsFiles, TlsError> {
    let cert_err = |e: rcgen::Error| TlsError::Cert(e.to_string());
    let ca_pem = std::fs::read_to_string(&files.ca_cert).map_err(io(&files.ca_cert))?;
    let ca_key_path = dir.join("ca.key");
    let ca_key_pem =
        zeroize::Zeroizing::new(std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?);
    let ca_key = rcgen::KeyPair::from_pem(&ca_key_pem).map_err(cert_err)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(cert_err)?;
    write_server_certificate(dir, files, names, &issuer, &ca_pem)?;
    Ok(files.clone())
}

/// Write `server.pem` (the leaf, then the CA) and `server.key` for `names`, signed by `issuer`;
/// neither may exist.
fn write_server_certificate<S: rcgen::SigningKey>(
    dir: &Path,
    files: &TlsFiles,
    names: &[String],
    issuer: &rcgen::Issuer<'_, S>,
    ca_pem: &str,
) -> Result<(), TlsError> {
    let cert_err = |e: rcgen::Error| TlsError::Cert(e.to_string());
    let leaf_key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut leaf = rcgen::CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "Tessera server");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, issuer).map_err(cert_err)?;
    write_private(&files.server_key, &leaf_key.serialize_pem())?;
    write_private(
        &files.server_chain,
        &format!("{}{}", leaf_cert.pem(), ca_pem),
    )?;
    let names_file = dir.join(NAMES_FILE);
    let _ = std::fs::remove_file(&names_file);
    write_private(&names_file, &(names.join("\n") + "\n"))
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

/// What one certificate says, for `tessera tls show` and the expiry warning.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// The subject, as text.
    pub subject: String,
    /// The DNS names and IP addresses it is valid for.
    pub names: Vec<String>,
    /// Valid from, Unix seconds.
    pub not_before: i64,
    /// Valid until, Unix seconds.
    pub not_after: i64,
    /// Its SHA-256 fingerprint, hex.
    pub fingerprint: String,
}

/// What the certificates in the PEM file at `path` say, in order.
pub fn describe(path: &Path) -> Result<Vec<CertificateInfo>, TlsError> {
    describe_chain(&load_chain(path)?)
        .map_err(|e| TlsError::Cert(format!("{}: {e}", path.display())))
}

/// What the certificates of a chain say, in order.
fn describe_chain(chain: &[CertificateDer<'_>]) -> Result<Vec<CertificateInfo>, String> {
    chain
        .iter()
        .map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
            let names = c
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| {
                    san.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            x509_parser::extensions::GeneralName::DNSName(d) => {
                                Some((*d).to_owned())
                            }
                            x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                                4 => Some(
                                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?)
                                        .to_string(),
                                ),
                                16 => Some(
                                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?)
                                        .to_string(),
                                ),
                                _ => None,
                            },
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(CertificateInfo {
                subject: c.subject().to_string(),
                names,
                not_before: c.validity().not_before.timestamp(),
                not_after: c.validity().not_after.timestamp(),
                fingerprint: fingerprint(der),
            })
        })
        .collect()
}

/// Days before a certificate's end from which `tessera serve` warns in its log.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Replace the server certificate with a new one for `names` from the CA in `data_dir` (which
/// must have `ca.key`). The previous certificate and key are kept as `server.pem.prev` and
/// `server.key.prev` (replacing older ones). A running server loads the new one when restarted.
pub fn reissue(data_dir: &Path, names: &[String]) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::in_dir(data_dir);
    let dir = data_dir.join("tls");
    if !dir.join("ca.key").exists() {
        return Err(TlsError::Missing(format!(
            "{} has no ca.key: a certificate from another CA is renewed by that CA",
            dir.display()
        )));
    }
    for f in [&files.server_chain, &files.server_key] {
        if f.exists() {
            let mut prev = f.as_os_str().to_owned();
            prev.push(".prev");
            std::fs::rename(f, &prev).map_err(io(f))?;
        }
    }
    issue_server_certificate(&dir, &files, names)
}

/// During a CA rollover: the next CA, made by [`rollover_begin`] (`tls/ca.next.pem`, and its
/// key).
pub const NEXT_CA: &str = "ca.next.pem";
/// The next CA's key.
pub const NEXT_CA_KEY: &str = "ca.next.key";
/// After a rollover: the CA before it (`tls/ca.prev.pem`, and its key).
pub const PREVIOUS_CA: &str = "ca.prev.pem";
/// The previous CA's key.
pub const PREVIOUS_CA_KEY: &str = "ca.prev.key";
/// The CA certificates devices should trust during a rollover: the current CA and the next
/// (`tls/trust.pem`).
pub const TRUST_BUNDLE: &str = "trust.pem";

/// The fingerprints of a rollover's two CAs.
#[derive(Debug, Clone)]
pub struct Rollover {
    /// The CA devices trust today (before [`rollover_finish`]) or trusted until it.
    pub old: String,
    /// The CA that takes over.
    pub new: String,
    /// The bundle of both, for devices.
    pub bundle: PathBuf,
}

fn first_fingerprint(path: &Path) -> Result<String, TlsError> {
    load_chain(path)?
        .first()
        .map(fingerprint)
        .ok_or_else(|| TlsError::Cert(format!("{}: no certificate", path.display())))
}

/// Begin a CA rollover: make the next CA beside the current one (which keeps serving) and write
/// the bundle of both (`trust.pem`), for devices to trust before [`rollover_finish`]. Needs the
/// current CA's key (a CA the server made); refused while a rollover is under way.
pub fn rollover_begin(data_dir: &Path) -> Result<Rollover, TlsError> {
    let dir = data_dir.join("tls");
    let current = dir.join("ca.pem");
    if !dir.join("ca.key").exists() {
        return Err(TlsError::Missing(format!(
            "{} has no ca.key: a CA the server did not make is rolled over by whoever runs it",
            dir.display()
        )));
    }
    if dir.join(NEXT_CA).exists() {
        return Err(TlsError::Missing(format!(
            "a rollover is under way ({} exists): finish it with `tessera tls rollover finish`",
            dir.join(NEXT_CA).display()
        )));
    }
    let old_pem = std::fs::read_to_string(&current).map_err(io(&current))?;
    let (next_pem, next_key) = make_ca("Tessera local CA (rollover)")?;
    // The key first: a next CA without its key could not finish.
    write_private(&dir.join(NEXT_CA_KEY), &next_key)?;
    write_private(&dir.join(NEXT_CA), &next_pem)?;
    let bundle = dir.join(TRUST_BUNDLE);
    let _ = std::fs::remove_file(&bundle);
    write_private(&bundle, &format!("{old_pem}{next_pem}"))?;
    Ok(Rollover {
        old: first_fingerprint(&current)?,
        new: first_fingerprint(&dir.join(NEXT_CA))?,
        bundle,
    })
}

/// Finish a CA rollover: the next CA becomes the CA (the previous one is kept as
/// `ca.prev.pem`), and a new server certificate for the same names is issued from it. Devices
/// that trust the bundle (or both pins) connect before and after; the server uses the new
/// certificate when restarted. Needs a server certificate the server made (its names are
/// known).
pub fn rollover_finish(data_dir: &Path) -> Result<Rollover, TlsError> {
    let dir = data_dir.join("tls");
    let (next, next_key) = (dir.join(NEXT_CA), dir.join(NEXT_CA_KEY));
    if !next.exists() || !next_key.exists() {
        return Err(TlsError::Missing(format!(
            "{} has no next CA ({NEXT_CA} and {NEXT_CA_KEY}): begin with `tessera tls rollover \
             begin`",
            dir.display()
        )));
    }
    let names = certificate_names(data_dir).ok_or_else(|| {
        TlsError::Missing(format!(
            "{} holds a server certificate the server did not make: issue one from the next CA \
             yourself",
            dir.display()
        ))
    })?;
    let old = first_fingerprint(&dir.join("ca.pem"))?;
    for (from, to) in [
        ("ca.pem", PREVIOUS_CA),
        ("ca.key", PREVIOUS_CA_KEY),
        (NEXT_CA, "ca.pem"),
        (NEXT_CA_KEY, "ca.key"),
    ] {
        let (from, to) = (dir.join(from), dir.join(to));
        std::fs::rename(&from, &to).map_err(io(&from))?;
    }
    let files = reissue(data_dir, &names)?;
    Ok(Rollover {
        old,
        new: first_fingerprint(&files.ca_cert)?,
        bundle: dir.join(TRUST_BUNDLE),
    })
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
    cert: Arc<ServerCert>,
    alpn: &[u8],
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
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

/// The server certificate every endpoint presents (device, admin, HTTPS), read from
/// `server.pem` and `server.key` at start and again on [`ServerCert::reload`] (SIGHUP): new
/// handshakes get the new one, open connections keep theirs.
#[derive(Debug)]
pub struct ServerCert {
    files: TlsFiles,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ServerCert {
    /// Load the certificate chain and key in `files`.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: std::sync::RwLock::new(Self::read(files)?),
            files: files.clone(),
        }))
    }

    fn read(files: &TlsFiles) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        let chain = load_chain(&files.server_chain)?;
        let key = PrivateKeyDer::from_pem_file(&files.server_key)
            .map_err(|e| TlsError::Cert(format!("{}: {e}", files.server_key.display())))?;
        let certified =
            rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
                TlsError::Cert(format!(
                    "{} and {}: {e}",
                    files.server_chain.display(),
                    files.server_key.display()
                ))
            })?;
        Ok(Arc::new(certified))
    }

    /// Read the files again and present what they hold from the next handshake on. A chain or
    /// key that does not load, or a key that is not the certificate's, is refused and the
    /// certificate in use stays. Returns the new leaf's description.
    pub fn reload(&self) -> Result<CertificateInfo, TlsError> {
        let next = Self::read(&self.files)?;
        let info = describe_chain(&next.cert)
            .map_err(TlsError::Cert)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Cert("no certificate".into()))?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(info)
    }
}

impl rustls::server::ResolvesServerCert for ServerCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
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
        let files = ensure_certificates(dir.path(), &["localhost".into()], true).unwrap();
        let server = Arc::new(
            server_config(ServerCert::load(&files).unwrap(), wire::DEVICE_ALPN, None).unwrap(),
        );
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
