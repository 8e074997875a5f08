//! A real server on ephemeral loopback ports with a temporary data directory and a manual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_client::transport::Transport;
use tessera_client::{AdminClient, ClientError, Trust};
use tessera_proto::wire::messages::{BeginReq, BeginResp, RefreshResp, RtReq, WaitReq, WaitResp};
use tessera_proto::wire::{kind, DEVICE_ALPN};
use tessera_proto::AdminToken;
use tessera_server::server::ManualClock;
use tessera_server::{Server, ServerConfig};

/// With `TESSERA_TEST_STORE=postgres://…` (scripts/test-all.sh sets it for a run of the suite
/// on PostgreSQL): a schema of that database of its own for the server in `dir`.
pub async fn postgres_url(dir: &std::path::Path) -> Option<String> {
    let base = tessera_tests::postgres::base_url()?;
    let schema = tessera_tests::postgres::schema_for(dir);
    // The driver blocks on a runtime of its own: not on this one's threads.
    let url = tokio::task::spawn_blocking(move || {
        tessera_engine::store::PostgresStore::schema_url(&base, &schema)
    })
    .await
    .expect("schema task")
    .expect("test PostgreSQL");
    Some(url)
}

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub trust: Trust,
    pub admin: AdminClient,
    pub device_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin_token: AdminToken,
    /// The PostgreSQL store, when the suite runs on one.
    pub store_url: Option<String>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = postgres_url(dir.path()).await;
        Self::launch(dir, url, None, f).await
    }

    /// Another node of `first`'s PostgreSQL store: its own data directory with `first`'s root
    /// key and TLS material (every node of one deployment has the same), its own endpoints.
    pub async fn join(first: &TestServer, f: impl FnOnce(&mut ServerConfig)) -> Self {
        let url = first.store_url.clone().expect("a PostgreSQL store");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = first.dir.path().join(tessera_engine::keys::ROOT_KEY_FILE);
        std::fs::copy(&root, dir.path().join(tessera_engine::keys::ROOT_KEY_FILE))
            .expect("copy the root key");
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        for e in std::fs::read_dir(first.dir.path().join("tls")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), tls.join(e.file_name())).unwrap();
        }
        let known = (first.trust.clone(), first.admin_token.clone());
        Self::launch(dir, Some(url), Some(known), f).await
    }

    /// A server on a data directory that has a deployment already (restored from a backup):
    /// `trust` its CA, `admin_token` one of its tokens.
    pub async fn reopen(
        dir: tempfile::TempDir,
        url: Option<String>,
        trust: Trust,
        admin_token: AdminToken,
    ) -> Self {
        Self::launch(dir, url, Some((trust, admin_token)), |_| {}).await
    }

    /// Start a server on `dir` (on the store `url`, SQLite if none); with `known`, one of a
    /// deployment that exists already, whose CA and admin token these are.
    async fn launch(
        dir: tempfile::TempDir,
        url: Option<String>,
        known: Option<(Trust, AdminToken)>,
        f: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let mut cfg = ServerConfig::ephemeral(dir.path().to_owned());
        cfg.engine.source_burst = 100_000;
        cfg.engine.source_per_minute = 100_000;
        cfg.store.url = url;
        f(&mut cfg);
        let store_url = cfg.store.url.clone();
        let clock = ManualClock::new();
        let server = Server::start_with_clock(cfg, clock.clone())
            .await
            .expect("server starts");
        let (trust, admin_token) = match known {
            Some(k) => k,
            None => (
                Trust::ca_file(&server.ca_cert_path()).expect("ca"),
                server
                    .first_admin_token()
                    .expect("first admin token")
                    .clone(),
            ),
        };
        let admin = AdminClient::new(
            server.admin_addr(),
            "localhost",
            &trust,
            admin_token.clone(),
        )
        .expect("admin client");
        Self {
            device_addr: server.device_addr(),
            admin_addr: server.admin_addr(),
            server: Some(server),
            dir,
            clock,
            trust,
            admin,
            admin_token,
            store_url,
        }
    }

    pub fn device_transport(&self) -> Transport {
        Transport::new(
            self.device_addr,
            "localhost",
            &self.trust,
            DEVICE_ALPN,
            Duration::from_secs(10),
        )
        .expect("transport")
    }

    /// An admin client with a new token of `role` (`technician`, `admin`, `service`).
    pub async fn client_with_role(&self, name: &str, role: &str) -> AdminClient {
        let v = self
            .admin
            .call(kind::TOKEN_CREATE, json!({ "name": name, "role": role }))
            .await
            .expect("token create");
        AdminClient::new(
            self.admin_addr,
            "localhost",
            &self.trust,
            AdminToken::new(v["token"].as_str().expect("token text").to_owned()),
        )
        .expect("admin client")
    }

    /// Create a PT with the given JSON arguments; returns (id, token).
    pub async fn pt(&self, args: Value) -> (String, String) {
        let created = self
            .admin
            .create_pt(&pt_args(args))
            .await
            .expect("create pt");
        (created.pt.id.to_string(), created.token.clone())
    }

    pub async fn shutdown(mut self) {
        self.admin.close().await;
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(2)).await;
        }
    }
}

/// The instance nonce of the test device instance called `label` (`tessera_tests`).
pub fn instance_nonce(label: &str) -> String {
    tessera_tests::instance_nonce(label)
}

/// BEGIN as the device instance called `label` (see [`instance_nonce`]).
pub async fn begin(
    t: &Transport,
    pt: &str,
    device_id: Option<&str>,
    nonce: &str,
) -> Result<BeginResp, ClientError> {
    let req = BeginReq {
        pt: pt.into(),
        device_id: device_id.map(str::to_owned),
        attributes: Default::default(),
        instance_nonce: instance_nonce(nonce),
    };
    t.call(kind::BEGIN, &req, Duration::ZERO).await
}

pub async fn wait(t: &Transport, op: &BeginResp, timeout_ms: u64) -> Result<WaitResp, ClientError> {
    let req = WaitReq {
        operation_id: op.operation_id.clone(),
        secret: op.secret.clone(),
        timeout_ms,
    };
    t.call(kind::WAIT, &req, Duration::from_millis(timeout_ms))
        .await
}

pub async fn refresh(t: &Transport, rt: &str) -> Result<RefreshResp, ClientError> {
    t.call(kind::REFRESH, &RtReq { rt: rt.into() }, Duration::ZERO)
        .await
}

pub async fn introspect(t: &Transport, rt: &str) -> Result<Value, ClientError> {
    t.call(kind::INTROSPECT, &RtReq { rt: rt.into() }, Duration::ZERO)
        .await
}

pub fn manual() -> Value {
    json!({ "label": "e2e", "approval": "manual" })
}

pub fn code_of(e: &ClientError) -> u16 {
    e.code()
        .unwrap_or_else(|| panic!("expected a server error, got {e:?}"))
}

/// PT arguments written as JSON, as docs/protocol.md shows them.
pub fn pt_args(args: Value) -> tessera_proto::admin::requests::PtArgs {
    serde_json::from_value(args).expect("PT arguments")
}

/// Every file under `dir` is 0600 and every directory 0700: a data directory is private to the
/// server's user.
pub fn assert_private(dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_private(&p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }
}
