//! A CA rollover that devices survive: devices are given both CAs (the bundle, or both pins)
//! while the old CA still serves; the server then moves to the new CA, and every device keeps
//! its registration. A device left with only the old CA cannot connect, which is why the
//! bundle comes first.

use std::time::Duration;

use serde_json::json;
use tessera_client::transport::{ClientError, Transport, Trust};
use tessera_proto::wire::DEVICE_ALPN;
use tessera_server::server::tls;

use crate::common::{begin, refresh, wait, TestServer};

fn transport(ts: &TestServer, trust: &Trust) -> Transport {
    Transport::new(
        ts.device_addr,
        "localhost",
        trust,
        DEVICE_ALPN,
        Duration::from_secs(10),
    )
    .expect("transport")
}

/// Refresh `rt` trusting `trust`; the registration must stay the same. Returns the new RT.
async fn refreshes(ts: &TestServer, trust: &Trust, rt: &str, registration: u64) -> String {
    let t = transport(ts, trust);
    let r = refresh(&t, rt).await.expect("refresh");
    t.close().await;
    assert_eq!(r.registration.registration_id, registration);
    r.registration.rt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_moves_to_a_new_ca_without_a_device_losing_its_registration() {
    let mut ts = TestServer::start().await;
    let (_, pt) = ts
        .pt(json!({ "label": "fleet", "kind": "fleet", "max_registrations": 10, "approval": "automatic" }))
        .await;
    let old = ts.server.as_ref().unwrap().ca_fingerprint().to_owned();

    // Three devices register trusting the CA they were made with.
    let t = ts.device_transport();
    let mut fleet = Vec::new();
    for i in 0..3 {
        let name = format!("pump-{i}");
        let op = begin(&t, &pt, Some(&name), &name).await.unwrap();
        let reg = wait(&t, &op, 5_000).await.unwrap().registration.unwrap();
        fleet.push((reg.rt, reg.registration_id));
    }
    t.close().await;

    // Begin: the next CA exists beside the current one, which keeps serving.
    let started = tls::rollover_begin(ts.dir.path()).unwrap();
    assert_eq!(started.old, old);
    assert_ne!(started.new, old);
    assert!(
        tls::rollover_begin(ts.dir.path()).is_err(),
        "a second begin while one is under way"
    );
    // The devices are given both: two through the bundle, one through both pins.
    let bundle = Trust::ca_file(&started.bundle).unwrap();
    let pins = Trust::Pin(format!("{},{}", started.old, started.new));
    let only_old = ts.trust.clone();
    let trusts = [bundle.clone(), bundle.clone(), pins];
    for ((rt, reg), trust) in fleet.iter_mut().zip(&trusts) {
        *rt = refreshes(&ts, trust, rt, *reg).await;
    }

    // Finish, and restart the server on the same directory.
    let finished = tls::rollover_finish(ts.dir.path()).unwrap();
    assert_eq!(
        (finished.old.as_str(), finished.new.as_str()),
        (old.as_str(), started.new.as_str())
    );
    let dir = std::mem::replace(&mut ts.dir, tempfile::tempdir().unwrap());
    let (url, token) = (ts.store_url.clone(), ts.admin_token.clone());
    ts.shutdown().await;
    let ts = TestServer::reopen(dir, url, bundle.clone(), token).await;
    assert_eq!(ts.server.as_ref().unwrap().ca_fingerprint(), started.new);
    assert!(ts.dir.path().join("tls").join(tls::PREVIOUS_CA).exists());

    // Every device refreshes its own registration under the new CA.
    for ((rt, reg), trust) in fleet.iter_mut().zip(&trusts) {
        *rt = refreshes(&ts, trust, rt, *reg).await;
    }
    // A device given only the old CA is refused by its own TLS check, before any request.
    let stale = transport(&ts, &only_old);
    let err = refresh(&stale, &fleet[0].0).await.unwrap_err();
    assert!(matches!(err, ClientError::Certificate(_)), "{err:?}");
    // Once all have moved, a device may trust the new CA alone.
    let new_only = Trust::Pin(started.new.clone());
    let (rt, reg) = &fleet[2];
    refreshes(&ts, &new_only, rt, *reg).await;
    ts.shutdown().await;
}
