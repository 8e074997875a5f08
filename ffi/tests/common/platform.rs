//! A real Tessera server in the test process, with an admin client and one PT: what the C,
//! judgement and broker tests run against.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tessera_client::{AdminClient, DeviceClient, DeviceConfig, NoHooks, Trust};
use tessera_proto::admin::requests::{PtArgs, TokenCreate};
use tessera_proto::wire::messages::RtBody;
use tessera_server::server::{Clock, ManualClock, SystemClock};
use tessera_server::{Server, ServerConfig};

/// The server (data in `dir/data`), its admin client, and the token of the PT it was started
/// with.
pub(crate) struct Platform {
    pub(crate) rt: tokio::runtime::Runtime,
    server: Option<Server>,
    pub(crate) admin: AdminClient,
    pub(crate) trust: Trust,
    pub(crate) pt: String,
    pub(crate) dir: tempfile::TempDir,
    clock: Arc<dyn Clock>,
    /// The clock, when the test moves it.
    manual: Option<Arc<ManualClock>>,
    stopped_at: Option<(SocketAddr, SocketAddr)>,
}

impl Platform {
    /// A server on the system clock with a PT made from `pt`.
    pub(crate) fn start(pt: PtArgs) -> Platform {
        Self::start_on(pt, Arc::new(SystemClock), None)
    }

    /// A server whose clock moves only when the test calls [`Platform::advance`].
    pub(crate) fn start_with_manual_clock(pt: PtArgs) -> Platform {
        let clock = ManualClock::new();
        Self::start_on(pt, clock.clone(), Some(clock))
    }

    fn start_on(pt: PtArgs, clock: Arc<dyn Clock>, manual: Option<Arc<ManualClock>>) -> Platform {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig::ephemeral(dir.path().join("data"));
        let (server, admin, trust, pt) = rt.block_on(async {
            let server = Server::start_with_clock(config, clock.clone())
                .await
                .unwrap();
            let trust = Trust::ca_file(&server.ca_cert_path()).unwrap();
            let token = server.first_admin_token().unwrap().clone();
            let admin = AdminClient::new(server.admin_addr(), "localhost", &trust, token).unwrap();
            let pt = admin.create_pt(&pt).await.unwrap().token.clone();
            (server, admin, trust, pt)
        });
        Platform {
            rt,
            server: Some(server),
            admin,
            trust,
            pt,
            dir,
            clock,
            manual,
            stopped_at: None,
        }
    }

    pub(crate) fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    /// The server's data directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Move the server's clock on (a platform started with a manual clock).
    pub(crate) fn advance(&self, d: Duration) {
        self.manual
            .as_ref()
            .expect("started with a manual clock")
            .advance(d);
    }

    /// A provisioned device on the platform's PT: its client (to refresh) and its current RT.
    pub(crate) fn device(&self) -> (DeviceClient, RtBody) {
        self.device_with(&self.pt)
    }

    /// A device provisioned on `pt`.
    pub(crate) fn device_with(&self, pt: &str) -> (DeviceClient, RtBody) {
        let cfg = DeviceConfig::new(
            self.server().device_addr(),
            "localhost",
            self.trust.clone(),
            pt.to_owned().into(),
        );
        self.rt.block_on(async {
            let d = DeviceClient::new(cfg, Box::new(NoHooks)).unwrap();
            let rt = d.ensure_registered(Duration::from_secs(30)).await.unwrap();
            (d, rt)
        })
    }

    /// A new service token (as a broker's validator uses), written to a file of its own.
    pub(crate) fn service_token_file(&self) -> PathBuf {
        let created = self
            .rt
            .block_on(self.admin.send(&TokenCreate {
                name: "broker".into(),
                role: "service".into(),
            }))
            .unwrap();
        let file = self
            .dir
            .path()
            .join(format!("service-token-{}", created.admin_token.id));
        std::fs::write(&file, format!("{}\n", created.token.as_str())).unwrap();
        file
    }

    pub(crate) fn revoke(&self, registration_id: u64) {
        self.rt
            .block_on(self.admin.revoke_registration(registration_id, "test"))
            .unwrap();
    }

    /// Stop the server (whoever follows it loses it).
    pub(crate) fn stop_server(&mut self) {
        let server = self.server.take().expect("server running");
        self.stopped_at = Some((server.device_addr(), server.admin_addr()));
        self.rt.block_on(server.shutdown(Duration::from_secs(1)));
    }

    /// Start it again on its data directory and addresses.
    pub(crate) fn restart_server(&mut self) {
        let (device_addr, admin_addr) = self.stopped_at.take().expect("server stopped");
        let mut config = ServerConfig::ephemeral(self.data_dir());
        config.device_addr = device_addr;
        config.admin_addr = admin_addr;
        let server = self
            .rt
            .block_on(Server::start_with_clock(config, self.clock.clone()))
            .expect("restart on the same addresses");
        self.server = Some(server);
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown(Duration::from_secs(1)));
        }
    }
}
