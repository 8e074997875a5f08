//! Backup and restore as one verified artifact: a restored data directory is the same
//! deployment (the same CA, the same root, the store as of the backup), so devices go on as
//! before; a restore checks everything before it writes, and never writes over a directory.
//! On PostgreSQL (the suite's PostgreSQL pass) the archive carries everything but the store,
//! which stays in the database.

use std::path::Path;

use serde_json::json;
use tessera_server::server::archive::{self, BackupOptions, RestoreOptions};

use crate::common::{assert_private, begin, refresh, wait, TestServer};

/// An RT issued before the backup refreshes on the server restored from it, which has the same
/// CA fingerprint: the devices notice nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_deployment_is_the_same_one() {
    let ts = TestServer::start().await;
    let (_, pt) = ts
        .pt(json!({ "label": "restore", "approval": "automatic" }))
        .await;
    let t = ts.device_transport();
    let op = begin(&t, &pt, Some("pump-1"), "pump-1").await.unwrap();
    let rt = wait(&t, &op, 5_000).await.unwrap().registration.unwrap();
    t.close().await;
    let fingerprint = ts.server.as_ref().unwrap().ca_fingerprint().to_owned();

    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("backup.tar");
    let options = BackupOptions {
        postgres: ts.store_url.is_some(),
        ..Default::default()
    };
    let made = archive::backup(ts.dir.path(), &out, &options).unwrap();
    assert_eq!(made.ca_fingerprint, fingerprint);
    assert!(!made.root_key_included);
    assert_eq!(
        made.files.contains_key("tessera.db"),
        ts.store_url.is_none()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the archive is readable by others");
    }
    // Again to the same file: refused.
    assert!(archive::backup(ts.dir.path(), &out, &options).is_err());

    let (trust, token, url) = (
        ts.trust.clone(),
        ts.admin_token.clone(),
        ts.store_url.clone(),
    );
    let root_key = work.path().join("root.key");
    std::fs::copy(ts.dir.path().join("root.key"), &root_key).unwrap();
    ts.shutdown().await;

    let dir = tempfile::tempdir().unwrap();
    let restored = archive::restore(
        &out,
        dir.path(),
        &RestoreOptions {
            root_key: Some(root_key.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(restored, made);
    assert_private(dir.path());
    // Into a directory that is not empty: refused.
    let again = archive::restore(
        &out,
        dir.path(),
        &RestoreOptions {
            root_key: Some(root_key),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(again.to_string().contains("not empty"), "{again}");

    let back = TestServer::reopen(dir, url, trust, token).await;
    assert_eq!(
        back.server.as_ref().unwrap().ca_fingerprint(),
        fingerprint,
        "the restored server has another CA: devices would no longer trust it"
    );
    let t = back.device_transport();
    let next = refresh(&t, &rt.rt)
        .await
        .expect("an RT from before the backup refreshes");
    assert_eq!(next.registration.generation, rt.generation + 1);
    t.close().await;
    back.shutdown().await;
}

/// A restore refuses, and writes nothing, without the root key, with another deployment's, or
/// from a damaged archive; with the root key in the archive (asked for) it needs nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_checks_the_archive_and_the_root_before_it_writes() {
    let ts = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    let postgres = ts.store_url.is_some();
    let plain = work.path().join("plain.tar");
    archive::backup(
        ts.dir.path(),
        &plain,
        &BackupOptions {
            postgres,
            ..Default::default()
        },
    )
    .unwrap();
    let with_root = work.path().join("with-root.tar");
    let m = archive::backup(
        ts.dir.path(),
        &with_root,
        &BackupOptions {
            postgres,
            include_root_key: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(m.root_key_included && m.files.contains_key("root.key"));
    let other = TestServer::start().await;
    let foreign_root = other.dir.path().join("root.key");

    let target = work.path().join("restored");
    let refuse = |o: RestoreOptions, archive_path: &Path| {
        let e = archive::restore(archive_path, &target, &o)
            .unwrap_err()
            .to_string();
        assert!(
            !target.exists(),
            "a refused restore wrote {}",
            target.display()
        );
        e
    };
    let e = refuse(RestoreOptions::default(), &plain);
    assert!(e.contains("no root key"), "{e}");
    let e = refuse(
        RestoreOptions {
            root_key: Some(foreign_root),
            ..Default::default()
        },
        &plain,
    );
    assert!(e.contains("does not match"), "{e}");
    // A damaged archive: one byte of a file changed.
    let mut bytes = std::fs::read(&plain).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    let damaged = work.path().join("damaged.tar");
    std::fs::write(&damaged, bytes).unwrap();
    let e = refuse(RestoreOptions::default(), &damaged);
    assert!(e.contains("not a Tessera backup"), "{e}");

    archive::restore(&with_root, &target, &RestoreOptions::default()).unwrap();
    assert!(target.join("root.key").exists());
    other.shutdown().await;
    ts.shutdown().await;
}
