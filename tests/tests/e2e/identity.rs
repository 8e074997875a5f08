//! A deployment's identity is never made anew by accident: a data directory with a store but
//! without its root key or CA refuses to start (saying what is missing and how to restore it)
//! and changes nothing; certificates an operator brings are used as they are, never
//! overwritten; a missing server certificate is issued again from the deployment's own CA.

use std::path::{Path, PathBuf};

use tessera_server::server::tls;
use tessera_server::{Server, ServerConfig};

use crate::common::assert_private;

fn config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::ephemeral(dir.to_owned());
    c.store.url = None;
    c
}

/// Start a server on `dir`, stop it, and answer its CA fingerprint.
async fn start_and_stop(dir: &Path) -> String {
    let s = Server::start(config(dir)).await.expect("server starts");
    let fp = s.ca_fingerprint().to_owned();
    s.shutdown(std::time::Duration::from_secs(5)).await;
    fp
}

/// Every file under `dir` with its contents, to show that a refused start changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains("tessera.db") {
                // The store's own files change on every open (its WAL); they are not identity.
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

async fn refusal(dir: &Path) -> String {
    Server::start(config(dir))
        .await
        .expect_err("the server must refuse to start")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_its_root_key_refuses_to_start_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(dir.path()).await;
    std::fs::remove_file(dir.path().join("root.key")).unwrap();
    let before = snapshot(dir.path());
    let err = refusal(dir.path()).await;
    assert!(err.contains("no root key (root.key)"), "{err}");
    assert!(err.contains("tessera restore"), "{err}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a refused start changed files"
    );
    assert!(!dir.path().join("root.key.new").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_its_ca_refuses_to_start_until_a_new_one_is_made_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let old = start_and_stop(dir.path()).await;
    std::fs::remove_dir_all(dir.path().join("tls")).unwrap();
    let before = snapshot(dir.path());
    let err = refusal(dir.path()).await;
    assert!(err.contains("no CA (ca.pem)"), "{err}");
    assert!(err.contains("tessera tls init"), "{err}");
    assert_eq!(snapshot(dir.path()), before);
    assert!(!dir.path().join("tls").exists());
    // `tessera tls init` makes a new one on purpose: the server starts, with another CA.
    tls::ensure_certificates(dir.path(), &["localhost".into()], true).unwrap();
    assert_ne!(start_and_stop(dir.path()).await, old);
}

/// An operator's own CA and server certificate (made here by another data directory's first
/// start) are used as they are: not one byte changes, and the server's CA fingerprint is
/// theirs. A certificate without the CA that signed it is refused, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_an_operator_brings_are_kept_as_they_are() {
    let theirs = tempfile::tempdir().unwrap();
    let files = tls::ensure_certificates(theirs.path(), &["localhost".into()], true).unwrap();
    let their_ca = tls::fingerprint(&tls::load_chain(&files.ca_cert).unwrap()[0]);

    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("tls");
    std::fs::create_dir_all(&own).unwrap();
    for f in ["server.pem", "server.key"] {
        std::fs::copy(theirs.path().join("tls").join(f), own.join(f)).unwrap();
    }
    let before = snapshot(dir.path());
    let err = refusal(dir.path()).await;
    assert!(err.contains("no ca.pem"), "{err}");
    assert_eq!(snapshot(dir.path()), before);

    std::fs::copy(&files.ca_cert, own.join("ca.pem")).unwrap();
    let brought = snapshot(&own);
    assert_eq!(start_and_stop(dir.path()).await, their_ca);
    assert_eq!(
        snapshot(&own),
        brought,
        "a certificate the operator brought was changed"
    );
    assert!(!own.join("ca.key").exists());
}

/// Without its server certificate, a deployment that has its CA's key gets a new one from that
/// CA: devices keep trusting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_server_certificate_is_issued_again_by_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let fp = start_and_stop(dir.path()).await;
    let tls_dir = dir.path().join("tls");
    let old_leaf = std::fs::read(tls_dir.join("server.pem")).unwrap();
    std::fs::remove_file(tls_dir.join("server.pem")).unwrap();
    std::fs::remove_file(tls_dir.join("server.key")).unwrap();
    assert_eq!(start_and_stop(dir.path()).await, fp);
    let new_leaf = std::fs::read(tls_dir.join("server.pem")).unwrap();
    assert_ne!(new_leaf, old_leaf);
    // Only one of the pair: refused (which of the two is the operator's is not guessed).
    std::fs::remove_file(tls_dir.join("server.key")).unwrap();
    let err = refusal(dir.path()).await;
    assert!(
        err.contains("only one of server.pem and server.key"),
        "{err}"
    );
    assert_eq!(std::fs::read(tls_dir.join("server.pem")).unwrap(), new_leaf);
}

/// A first start makes a data directory private to the server's user: the directory 0700 and
/// every file in it (the store and its WAL included) 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_is_private_to_the_server() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let s = Server::start(config(&dir)).await.expect("server starts");
    assert_private(&dir);
    s.shutdown(std::time::Duration::from_secs(5)).await;
    assert_private(&dir);
}
