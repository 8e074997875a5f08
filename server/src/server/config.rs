//! Server configuration: defaults, TOML file, and overrides from flags and environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything `tessera serve` can be told. Every field has a default, so an empty TOML file (or
/// none) works.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory (store, root key, TLS material, first admin token). Default
    /// `./tessera-data`.
    pub data_dir: PathBuf,
    /// Device endpoint (UDP). Default `0.0.0.0:4433`.
    pub device_addr: SocketAddr,
    /// Admin endpoint (UDP). Default `127.0.0.1:4434`.
    pub admin_addr: SocketAddr,
    /// Prometheus metrics (HTTP), or none. Default `127.0.0.1:9464`.
    pub metrics_addr: Option<SocketAddr>,
    /// The console and the HTTPS admin API (TCP), or none. Default `127.0.0.1:4434`: the
    /// QUIC admin endpoint's number, on TCP.
    pub console_addr: Option<SocketAddr>,
    /// Names and addresses in the server certificate. Default `localhost`, `127.0.0.1`, `::1`.
    pub server_names: Vec<String>,
    /// Connections one source IP may hold open. Default 64.
    pub max_connections_per_source: usize,
    /// Total open device connections. Default 100,000.
    pub max_connections: usize,
    /// Handshakes in progress above which unvalidated clients get a Retry. Default 64.
    pub retry_above_handshakes: usize,
    /// Concurrent requests (streams) per device connection. Default 8.
    pub max_streams_per_connection: u32,
    /// Time to receive a whole request. Default 5 s.
    pub request_deadline_ms: u64,
    /// Longest a WAIT request is held. Default 30 s.
    pub max_wait_ms: u64,
    /// Idle connections are closed after this. Default 120 s.
    pub idle_timeout_ms: u64,
    /// UDP socket send and receive buffer sizes. Default 4 MiB.
    pub socket_buffer_bytes: usize,
    /// Housekeeping (expire operations, prune families) interval. Default 10 s.
    pub prune_interval_ms: u64,
    /// WAIT requests per source address: burst. Default 120.
    pub wait_burst: u32,
    /// WAIT requests per source address: per minute. Default 600.
    pub wait_per_minute: u32,
    /// INTROSPECT requests per source address: burst. Default 2000.
    pub introspect_burst: u32,
    /// INTROSPECT requests per source address: per minute. Default 60,000.
    pub introspect_per_minute: u32,
    /// Admin requests per admin token: burst. Default 200.
    pub admin_burst: u32,
    /// Admin requests per admin token: per minute. Default 1,200.
    pub admin_per_minute: u32,
    /// Failed authentications (a wrong admin token, sign-in or pairing code) per source
    /// address, on every admin route of both endpoints: burst. Default 10.
    pub auth_failure_burst: u32,
    /// Failed authentications per source address: per minute. Default 10.
    pub auth_failures_per_minute: u32,
    /// Connections one source may hold open on the QUIC admin endpoint. Default 16.
    pub admin_max_connections_per_source: usize,
    /// Log filter (`info`, `debug`, `tessera_server=debug,info`, …). Default `info`.
    pub log: String,
    /// Log format. Default `text`.
    pub log_format: LogFormat,
    /// The HTTPS console and API's connection limits and timeouts.
    pub http: HttpSettings,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Where the root key lives.
    pub keys: KeySettings,
    /// Where the store is.
    pub store: StoreSettings,
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people: `time level message key=value …`.
    #[default]
    Text,
    /// One JSON object a line (`timestamp`, `level`, `fields`, …), for log shippers.
    Json,
}

/// The HTTPS front end's limits (`[http]`): how many connections it holds, how long a client
/// may take, how many HTTP/2 streams a connection may open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Open connections in all. When full, the oldest connection that has not sent a whole
    /// request yet is closed to make room; without one, the new connection is closed at once.
    /// Default 1,024 (and at most what the process may open, less a reserve).
    pub max_connections: usize,
    /// Open connections per source address (IPv6: per /64). Default 64.
    pub max_connections_per_source: usize,
    /// Time to finish the TLS handshake and to send a request's headers. Default 10 s.
    pub header_timeout_ms: u64,
    /// Time to send a request's body. Default 30 s.
    pub body_timeout_ms: u64,
    /// A connection that moves no byte for this long is closed. Default 60 s.
    pub idle_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection. Default 64.
    pub max_streams: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_source: 64,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_streams: 64,
        }
    }
}

/// Where the store is: the SQLite file in the data directory (the default), or a PostgreSQL
/// database shared by several nodes (`url = "postgres://…"`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://user[:password]@host[:port]/database`, or none for SQLite.
    pub url: Option<String>,
    /// PostgreSQL: writer threads of this node, each with its own connection. Default 1.
    pub writers: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: None,
            writers: 1,
        }
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("StoreSettings")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("writers", &self.writers)
            .finish()
    }
}

impl StoreSettings {
    /// The PostgreSQL URL, if the store is PostgreSQL; an error for a URL of another kind.
    pub fn postgres(&self) -> Result<Option<&str>, String> {
        match self.url.as_deref() {
            None | Some("") | Some("sqlite") => Ok(None),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(Some(u)),
            Some(_) => Err(
                "the store URL must start with postgres:// (or be absent, for the SQLite file in the data directory)"
                    .into(),
            ),
        }
    }
}

/// Where the root key lives: `software` (a key file in the data directory, the default) or
/// `pkcs11` (an HSM or TPM through its PKCS#11 module).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeySettings {
    /// `software` or `pkcs11`.
    pub keeper: String,
    /// PKCS#11 module path.
    pub module: Option<PathBuf>,
    /// Token label (or give `slot`).
    pub token_label: Option<String>,
    /// Slot id.
    pub slot: Option<u64>,
    /// Label of the root key object. Default `tessera-root`.
    pub key_label: String,
    /// Environment variable holding the user PIN. Default `TESSERA_HSM_PIN`.
    pub pin_env: String,
    /// File holding the user PIN (used instead of `pin_env` when set).
    pub pin_file: Option<PathBuf>,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            keeper: "software".into(),
            module: None,
            token_label: None,
            slot: None,
            key_label: "tessera-root".into(),
            pin_env: "TESSERA_HSM_PIN".into(),
            pin_file: None,
        }
    }
}

impl KeySettings {
    /// The PKCS#11 configuration, when `keeper = "pkcs11"`.
    pub fn pkcs11(
        &self,
    ) -> Result<Option<tessera_engine::keys::Pkcs11Config>, tessera_engine::Error> {
        match self.keeper.as_str() {
            "software" => Ok(None),
            "pkcs11" => {
                let module = self.module.clone().ok_or_else(|| {
                    tessera_engine::Error::Keys(
                        "keys.module is required for the pkcs11 keeper".into(),
                    )
                })?;
                let pin = match &self.pin_file {
                    Some(f) => tessera_engine::keys::Pkcs11Config::pin_from_file(f)?,
                    None => tessera_engine::keys::Pkcs11Config::pin_from_env(&self.pin_env)?,
                };
                Ok(Some(tessera_engine::keys::Pkcs11Config {
                    module,
                    token_label: self.token_label.clone(),
                    slot: self.slot,
                    pin,
                    key_label: self.key_label.clone(),
                }))
            }
            other => Err(tessera_engine::Error::Keys(format!(
                "unknown key keeper {other:?} (software or pkcs11)"
            ))),
        }
    }
}

/// Engine settings exposed in the config file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Longest RT lifetime a PT may ask for, days. Default 365.
    pub max_rt_lifetime_days: u64,
    /// Refresh retry grace, seconds. Default 300.
    pub refresh_grace_secs: u64,
    /// Clock-skew leeway, seconds (at most 300). Default 60.
    pub clock_skew_leeway_secs: u64,
    /// With several nodes on one PostgreSQL store: how far behind the other nodes' changes
    /// (milliseconds since this node last read the change feed to its head) it may be and
    /// still validate RTs; past it validation answers "unavailable". Default 5000.
    pub feed_max_lag_ms: u64,
    /// Pending operation expiry, seconds. Default 900.
    pub operation_ttl_secs: u64,
    /// Suggested poll interval, seconds. Default 5.
    pub poll_interval_secs: u64,
    /// New operations per source address: burst. Default 30.
    pub source_burst: u32,
    /// New operations per source address: per minute. Default 120.
    pub source_per_minute: u32,
    /// New operations per single-device PT: burst. Default 10.
    pub single_pt_burst: u32,
    /// New operations per single-device PT: per minute. Default 10.
    pub single_pt_per_minute: u32,
    /// New operations per fleet PT: burst. Default 2000.
    pub fleet_pt_burst: u32,
    /// New operations per fleet PT: per minute. Default 6000.
    pub fleet_pt_per_minute: u32,
    /// Refreshes per registration: burst. Default 20.
    pub refresh_burst: u32,
    /// Refreshes per registration: per minute. Default 60.
    pub refresh_per_minute: u32,
    /// Pending operations per single-device PT. Default 4.
    pub max_pending_single: usize,
    /// Pending operations per fleet PT. Default 1000.
    pub max_pending_fleet: usize,
    /// Wrong verification codes allowed per operation before it is rejected. Default 5.
    pub max_code_attempts: u32,
    /// Distinct addresses one registration may be refreshed from within
    /// `many_sources_window_secs` before the `many_sources` leak signal. Default 4.
    pub many_sources_threshold: u32,
    /// The window of `many_sources_threshold`, seconds. Default 3600.
    pub many_sources_window_secs: u64,
    /// What to do, beyond recording it, per leak signal kind: `flag` (the default) or
    /// `revoke_pt`. Table `[engine.leak_policy]` with keys `parallel_operations`,
    /// `rotation_reuse`, `code_guessing`, `many_sources`.
    pub leak_policy: tessera_engine::LeakPolicy,
    /// How long the store keeps what only grows. Table `[engine.retention]`.
    pub retention: RetentionSettings,
}

/// How many days the store keeps audit events, leak signals and refresh events; 0 keeps them
/// for ever. Housekeeping deletes what is older, in small steps, once a minute.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Audit events other than refreshes. Default 400. Revocations are kept at least
    /// `max_rt_lifetime_days` (RT validators read them).
    pub audit_days: u64,
    /// Leak signals. Default 400.
    pub leak_signals_days: u64,
    /// Refresh events (one per refresh). Default 31.
    pub refresh_events_days: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let d = tessera_engine::Retention::default();
        let days = |v: Option<Duration>| v.map_or(0, |v| v.as_secs() / 86_400);
        Self {
            audit_days: days(d.audit),
            leak_signals_days: days(d.leak_signals),
            refresh_events_days: days(d.refresh_events),
        }
    }
}

impl RetentionSettings {
    /// The engine's retention.
    pub fn retention(&self) -> tessera_engine::Retention {
        let age = |days: u64| (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400)));
        tessera_engine::Retention {
            audit: age(self.audit_days),
            leak_signals: age(self.leak_signals_days),
            refresh_events: age(self.refresh_events_days),
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_rt_lifetime_days: 365,
            refresh_grace_secs: 300,
            clock_skew_leeway_secs: 60,
            feed_max_lag_ms: 5000,
            operation_ttl_secs: 900,
            poll_interval_secs: 5,
            source_burst: 30,
            source_per_minute: 120,
            single_pt_burst: 10,
            single_pt_per_minute: 10,
            fleet_pt_burst: 2000,
            fleet_pt_per_minute: 6000,
            refresh_burst: 20,
            refresh_per_minute: 60,
            max_pending_single: 4,
            max_pending_fleet: 1000,
            max_code_attempts: 5,
            many_sources_threshold: 4,
            many_sources_window_secs: 3600,
            leak_policy: tessera_engine::LeakPolicy::default(),
            retention: RetentionSettings::default(),
        }
    }
}

impl EngineSettings {
    /// The engine configuration these settings describe.
    pub fn engine_config(&self) -> tessera_engine::EngineConfig {
        let mut c = tessera_engine::EngineConfig::default();
        c.max_rt_lifetime(Duration::from_secs(self.max_rt_lifetime_days * 86_400))
            .refresh_grace(Duration::from_secs(self.refresh_grace_secs))
            .clock_skew_leeway(Duration::from_secs(self.clock_skew_leeway_secs))
            .feed_max_lag(Duration::from_millis(self.feed_max_lag_ms))
            .operation_ttl(Duration::from_secs(self.operation_ttl_secs))
            .poll_interval(Duration::from_secs(self.poll_interval_secs))
            .source_rate(tessera_engine::Rate::new(
                self.source_burst,
                self.source_per_minute,
            ))
            .pt_rates(
                tessera_engine::Rate::new(self.single_pt_burst, self.single_pt_per_minute),
                tessera_engine::Rate::new(self.fleet_pt_burst, self.fleet_pt_per_minute),
            )
            .max_pending(self.max_pending_single, self.max_pending_fleet)
            .max_code_attempts(self.max_code_attempts)
            .refresh_rate(tessera_engine::Rate::new(
                self.refresh_burst,
                self.refresh_per_minute,
            ))
            .many_sources(tessera_engine::ManySources {
                threshold: self.many_sources_threshold,
                window: Duration::from_secs(self.many_sources_window_secs),
            })
            .leak_policy(self.leak_policy)
            .retention(self.retention.retention());
        c
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tessera-data"),
            device_addr: SocketAddr::from(([0, 0, 0, 0], 4433)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 4434)),
            console_addr: Some(SocketAddr::from(([127, 0, 0, 1], 4434))),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            max_connections_per_source: 64,
            max_connections: 100_000,
            retry_above_handshakes: 64,
            max_streams_per_connection: 8,
            request_deadline_ms: 5_000,
            max_wait_ms: 30_000,
            idle_timeout_ms: 120_000,
            socket_buffer_bytes: 4 << 20,
            prune_interval_ms: 10_000,
            wait_burst: 120,
            wait_per_minute: 600,
            introspect_burst: 2000,
            introspect_per_minute: 60_000,
            admin_burst: 200,
            admin_per_minute: 1200,
            auth_failure_burst: 10,
            auth_failures_per_minute: 10,
            admin_max_connections_per_source: 16,
            log: "info".into(),
            log_format: LogFormat::Text,
            http: HttpSettings::default(),
            engine: EngineSettings::default(),
            keys: KeySettings::default(),
            store: StoreSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Read a TOML file; missing fields take their defaults.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A configuration for tests: everything on loopback with ephemeral ports, no metrics.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            device_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            console_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, "max_connections_per_source = 7\n[engine]\nfleet_pt_burst = 1000000000\nsource_per_minute = 5\n").unwrap();
        let c = ServerConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.max_connections_per_source, 7);
        assert_eq!(c.engine.fleet_pt_burst, 1_000_000_000);
        assert_eq!(c.engine.source_per_minute, 5);
        assert_eq!(c.engine.source_burst, 30);
        assert_eq!(c.device_addr, ServerConfig::default().device_addr);
        std::fs::write(
            &p,
            "[engine]\nmax_code_attempts = 2\n[engine.leak_policy]\ncode_guessing = \"revoke_pt\"\n",
        )
        .unwrap();
        let c = ServerConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.engine.max_code_attempts, 2);
        assert_eq!(
            c.engine.leak_policy.code_guessing,
            tessera_engine::LeakResponse::RevokePt
        );
        assert_eq!(
            c.engine.leak_policy.rotation_reuse,
            tessera_engine::LeakResponse::Flag
        );
        std::fs::write(&p, "[engine.leak_policy]\ncode_guessing = \"burn\"\n").unwrap();
        assert!(ServerConfig::from_toml_file(&p)
            .unwrap_err()
            .contains("unknown variant"));
        std::fs::write(
            &p,
            "[engine.retention]\nrefresh_events_days = 7\naudit_days = 0\n",
        )
        .unwrap();
        let r = ServerConfig::from_toml_file(&p)
            .unwrap()
            .engine
            .retention
            .retention();
        assert_eq!(r.refresh_events, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(r.audit, None, "0 keeps for ever");
        assert_eq!(
            r.leak_signals,
            tessera_engine::Retention::default().leak_signals
        );
        std::fs::write(&p, "no_such_setting = 1\n").unwrap();
        assert!(ServerConfig::from_toml_file(&p)
            .unwrap_err()
            .contains("no_such_setting"));
    }
}
