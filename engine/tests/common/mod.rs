//! Shared test helpers: an engine in a temporary directory, an injected clock, and shortcuts
//! for the usual flows.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tessera_engine::store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore};
use tessera_engine::{
    Actor, Approval, ApprovalPolicy, Attributes, BeginOutcome, BeginRequest, DeviceId,
    DeviceIdPolicy, Engine, EngineConfig, OperationStatus, Provisioned, ProvisioningToken, PtKind,
    PtSpec, SoftwareKeeper, Timestamp,
};

/// A test clock: starts at a fixed instant and only moves when told to.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Timestamp);

impl Clock {
    pub fn new() -> Self {
        Clock(Timestamp::from_unix_secs(1_800_000_000))
    }
    pub fn now(&self) -> Timestamp {
        self.0
    }
    pub fn advance(&mut self, d: Duration) -> Timestamp {
        self.0 = self.0.saturating_add(d);
        self.0
    }
}

/// The suite folds the refresh journal into the registration rows every this many refreshes
/// (the default is 65,536), so folding runs all the time under every test.
pub const TEST_FOLD_ROWS: u64 = 3;

/// ... and writes one registration per batch while a fold is in progress (the default is
/// 1,024), so most folds take several batches, with refreshes committed in between.
pub const TEST_FOLD_SLICE: usize = 1;

/// Which key keeper the suite runs against: the software keeper by default, or the PKCS#11
/// keeper when `TESSERA_TEST_KEEPER=pkcs11` (scripts/test-all.sh runs the suite both ways,
/// against a throw-away SoftHSM2 token). Which store: SQLite in `dir` by default, folding its
/// journal every [`TEST_FOLD_ROWS`] refreshes, [`TEST_FOLD_SLICE`] registration per batch; or
/// PostgreSQL when `TESSERA_TEST_STORE` is a `postgres://` URL (scripts/test-all.sh runs the
/// suite against a throw-away server), in a schema of its own for each `dir`.
pub fn open_engine(
    dir: &std::path::Path,
    config: EngineConfig,
    now: Timestamp,
) -> Result<Engine, tessera_engine::Error> {
    open_engine_on(StoreKind::FromEnv, dir, config, now)
}

/// Which store a harness opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The one the environment names (see [`open_engine`]).
    FromEnv,
    /// SQLite, always: for tests of what only the embedded store has (the local validator
    /// reading its file, backups and restores).
    Sqlite,
}

/// [`open_engine`] on the store `kind` says.
pub fn open_engine_on(
    kind: StoreKind,
    dir: &std::path::Path,
    mut config: EngineConfig,
    now: Timestamp,
) -> Result<Engine, tessera_engine::Error> {
    config.validator_keys_file(dir.join(tessera_engine::keys::VALIDATOR_KEYS_FILE));
    let url = match kind {
        StoreKind::FromEnv => postgres_url(dir),
        StoreKind::Sqlite => None,
    };
    match url {
        Some(url) => {
            let store = PostgresStore::open(&url, &pg_options())?;
            open_with(store, dir, config, now)
        }
        None => {
            let store = SqliteStore::open(
                dir,
                SqliteOptions::default()
                    .journal_fold_rows(TEST_FOLD_ROWS)
                    .journal_fold_slice(TEST_FOLD_SLICE),
            )?;
            open_with(store, dir, config, now)
        }
    }
}

/// An engine on the PostgreSQL store at `url` (another node of a harness's store), with its
/// own directory `dir` and the keeper the environment names.
pub fn open_engine_at(
    url: &str,
    dir: &std::path::Path,
    mut config: EngineConfig,
    now: Timestamp,
) -> Result<Engine, tessera_engine::Error> {
    config.validator_keys_file(dir.join(tessera_engine::keys::VALIDATOR_KEYS_FILE));
    let store = PostgresStore::open(url, &pg_options())?;
    open_with(store, dir, config, now)
}

fn open_with(
    store: impl tessera_engine::store::Store + 'static,
    dir: &std::path::Path,
    config: EngineConfig,
    now: Timestamp,
) -> Result<Engine, tessera_engine::Error> {
    match std::env::var("TESSERA_TEST_KEEPER").as_deref() {
        Ok("pkcs11") => Engine::open(store, pkcs11_keeper("tessera-test-root")?, config, now),
        _ => Engine::open(store, SoftwareKeeper::open_or_create(dir)?, config, now),
    }
}

/// The PostgreSQL store's options: `TESSERA_TEST_PG_WRITERS` writer threads (default 2, so
/// that the suite runs with batches committing side by side).
pub fn pg_options() -> PostgresOptions {
    let mut o = PostgresOptions::default();
    o.writers(
        std::env::var("TESSERA_TEST_PG_WRITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    o
}

/// Whether the suite runs against PostgreSQL (`TESSERA_TEST_STORE=postgres://…`).
pub fn on_postgres() -> bool {
    tessera_tests::postgres::on_postgres()
}

/// With `TESSERA_TEST_STORE=postgres://…`: the URL of a schema of that database for `dir`
/// (made on first use), so that each test has a database of its own and a reopened engine
/// finds its data again.
pub fn postgres_url(dir: &std::path::Path) -> Option<String> {
    let base = tessera_tests::postgres::base_url()?;
    let schema = tessera_tests::postgres::schema_for(dir);
    Some(PostgresStore::schema_url(&base, &schema).expect("test PostgreSQL"))
}

/// The PKCS#11 test configuration from the environment (set by scripts/test-all.sh).
pub fn pkcs11_config(
    token_env: &str,
    key_label: &str,
) -> Option<tessera_engine::keys::Pkcs11Config> {
    let module = std::env::var("TESSERA_TEST_PKCS11_MODULE").ok()?;
    let token = std::env::var(token_env).ok()?;
    let pin = std::env::var("TESSERA_TEST_PKCS11_PIN").ok()?;
    Some(tessera_engine::keys::Pkcs11Config {
        module: module.into(),
        token_label: Some(token),
        slot: None,
        pin: pin.into(),
        key_label: key_label.into(),
    })
}

/// A PKCS#11 keeper on the shared test token, creating the key on first use.
pub fn pkcs11_keeper(
    key_label: &str,
) -> Result<tessera_engine::keys::Pkcs11Keeper, tessera_engine::Error> {
    use tessera_engine::keys::Pkcs11Keeper;
    static CREATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let cfg = pkcs11_config("TESSERA_TEST_PKCS11_TOKEN", key_label)
        .expect("TESSERA_TEST_PKCS11_* not set");
    // Tests run in parallel threads: create the key once, under a lock. (Test binaries run one
    // after another, and each finds the key the first one made.)
    let _g = CREATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match Pkcs11Keeper::open(&cfg) {
        Ok(k) => Ok(k),
        Err(tessera_engine::Error::Keys(m)) if m.contains("no key labelled") => {
            Pkcs11Keeper::init_root_key(&cfg)?;
            Pkcs11Keeper::open(&cfg)
        }
        Err(e) => Err(e),
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub engine: Engine,
    pub clock: Clock,
    pub config: EngineConfig,
    pub kind: StoreKind,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Self {
        Self::on(StoreKind::FromEnv, config)
    }

    /// A harness on SQLite whatever the environment says (see [`StoreKind::Sqlite`]).
    pub fn sqlite() -> Self {
        Self::on(StoreKind::Sqlite, EngineConfig::default())
    }

    pub fn on(kind: StoreKind, config: EngineConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Clock::new();
        let engine =
            open_engine_on(kind, dir.path(), config.clone(), clock.now()).expect("open engine");
        Self {
            dir,
            engine,
            clock,
            config,
            kind,
        }
    }

    /// Drop the engine and open the same data directory again.
    pub fn reopen(&mut self) {
        let placeholder = {
            // Open a throwaway engine so the old one can be dropped (closing its store) first.
            let d = tempfile::tempdir().expect("tempdir");
            let e = open_engine_on(
                self.kind,
                d.path(),
                EngineConfig::default(),
                self.clock.now(),
            )
            .expect("open");
            (d, e)
        };
        let old = std::mem::replace(&mut self.engine, placeholder.1);
        drop(old);
        self.engine = open_engine_on(
            self.kind,
            self.dir.path(),
            self.config.clone(),
            self.clock.now(),
        )
        .expect("reopen");
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn tech() -> Actor {
        Actor::operator("tech")
    }

    pub fn device() -> Actor {
        Actor::device(Some("192.0.2.10:5000".into()))
    }

    pub fn pt(&self, spec: PtSpec) -> ProvisioningToken {
        self.engine
            .create_pt(&spec, &Self::tech(), self.now())
            .expect("create pt")
            .1
    }

    /// Begin as the device instance called `label` (its nonce is [`instance_nonce`]`(label)`).
    pub fn begin(
        &self,
        pt: &ProvisioningToken,
        device: Option<&str>,
        label: &[u8],
    ) -> Result<BeginOutcome, tessera_engine::Error> {
        self.begin_raw(pt, device, &instance_nonce(label))
    }

    /// Begin with exactly this instance nonce.
    pub fn begin_raw(
        &self,
        pt: &ProvisioningToken,
        device: Option<&str>,
        nonce: &[u8],
    ) -> Result<BeginOutcome, tessera_engine::Error> {
        self.engine.begin_operation(
            BeginRequest {
                pt: pt.clone(),
                requested_device_id: device.map(|d| DeviceId::new(d).expect("device id")),
                attributes: Attributes::default(),
                instance_nonce: nonce.to_vec(),
            },
            &Self::device(),
            self.now(),
        )
    }

    pub fn collect(&self, op: &BeginOutcome) -> Provisioned {
        match self
            .engine
            .poll_operation(
                &op.operation_id,
                op.secret.expose(),
                &tessera_engine::Actor::device(None),
                self.now(),
            )
            .expect("poll")
        {
            OperationStatus::Provisioned(p) => p,
            other => panic!("expected provisioned, got {other:?}"),
        }
    }

    /// Approve as a technician, typing `code` (if any).
    pub fn approve_with_code(
        &self,
        op: &tessera_engine::OperationId,
        code: Option<&str>,
    ) -> Result<tessera_engine::model::RegistrationRecord, tessera_engine::Error> {
        let approval = Approval {
            verification_code: code.map(str::to_owned),
            ..Approval::default()
        };
        self.engine
            .approve_operation(op, approval, &Self::tech(), self.now())
    }

    /// A well-formed code that is not the operation's.
    pub fn wrong_code(op: &BeginOutcome) -> &'static str {
        match op.verification_code.as_ref().map(|c| c.expose()) {
            Some("0000-0000") => "1111-1111",
            _ => "0000-0000",
        }
    }

    /// How many registrations are active.
    pub fn active_registrations(&self) -> usize {
        self.engine
            .list_registrations(&tessera_engine::store::RegistrationQuery {
                active_only: true,
                ..Default::default()
            })
            .expect("list registrations")
            .len()
    }

    /// Create a PT with manual approval, begin, approve, collect.
    pub fn provision(&self, device: &str) -> Provisioned {
        let pt = self.pt(PtSpec::new("test"));
        let op = self.begin(&pt, Some(device), b"nonce").expect("begin");
        self.approve_with_code(&op.operation_id, None)
            .expect("approve");
        self.collect(&op)
    }
}

/// The instance nonce of the test device instance called `label` (`tessera_tests`).
pub fn instance_nonce(label: &[u8]) -> Vec<u8> {
    tessera_tests::instance_nonce(&String::from_utf8_lossy(label)).into_bytes()
}

pub fn spec(kind: PtKind, approval: ApprovalPolicy) -> PtSpec {
    PtSpec {
        label: "spec".into(),
        kind,
        approval,
        rt_lifetime: Duration::from_secs(3600),
        device_id_policy: DeviceIdPolicy::Either,
        expires_at: None,
    }
}
