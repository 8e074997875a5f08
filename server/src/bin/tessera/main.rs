//! `tessera`: run the server (`tessera serve`) and operate it (every other subcommand talks to
//! the admin endpoint).

mod output;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use output::Col;
use serde_json::{json, Value};
use tessera_engine::AdminToken;
use tessera_server::client::device::{DeviceConfig, DeviceHooks};

/// mimalloc instead of the C library's allocator: the server allocates on one thread (a request
/// on a Tokio worker) and frees on another (its answer, after the store's writer), which glibc's
/// per-thread arenas handle poorly (measured in docs/reliability.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tessera_server::wire::kind;
use tessera_server::{AdminClient, BlockingDeviceClient, Server, ServerConfig, Trust};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera provisioning-token server and operator CLI"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Conn {
    /// Data directory (for the default CA and admin-token files).
    #[arg(
        long,
        env = "TESSERA_DATA_DIR",
        default_value = "./tessera-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Admin endpoint.
    #[arg(
        long,
        env = "TESSERA_ADMIN_ADDR",
        default_value = "127.0.0.1:4434",
        global = true
    )]
    admin_addr: SocketAddr,
    /// CA certificate to trust (default: DATA_DIR/tls/ca.pem).
    #[arg(long, env = "TESSERA_CA", global = true)]
    ca: Option<PathBuf>,
    /// Admin token file (default: DATA_DIR/admin.token). The token itself can be given in
    /// TESSERA_ADMIN_TOKEN instead; there is deliberately no flag for it (flags show in `ps`).
    #[arg(long, env = "TESSERA_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server.
    Serve(ServeArgs),
    /// Provisioning tokens.
    #[command(subcommand)]
    Pt(PtCmd),
    /// Provisioning operations.
    #[command(subcommand)]
    Op(OpCmd),
    /// Devices and their registrations.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Key epochs.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Admin tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Audit events.
    ///
    /// Without `--after`, the newest `--limit` events (the end of the log); with it, the first
    /// `--limit` events after that sequence number.
    Audit {
        #[command(flatten)]
        conn: Conn,
        /// Only events after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep printing new events as they are recorded, until Ctrl-C or SIGTERM (with
        /// `--json`: one JSON object per line).
        #[arg(long, short)]
        follow: bool,
        /// How often `--follow` asks for new events, in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
    },
    /// Leak signals.
    Leaks {
        #[command(flatten)]
        conn: Conn,
        /// Only signals after this id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Server status.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Run a simulated device: provision (printing the verification code as a display would),
    /// then print the registration.
    Simulate(SimArgs),
    /// Copy the store to a new file while the server runs (run it on the server's host). The
    /// root key is not in the copy: keep `root.key` (or the HSM key) safe separately.
    Backup {
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
        /// The backup file to write; it must not exist.
        out: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Device endpoint (UDP).
    #[arg(long, env = "TESSERA_DEVICE_ADDR")]
    device_addr: Option<SocketAddr>,
    /// Admin endpoint (UDP).
    #[arg(long, env = "TESSERA_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Prometheus metrics address, or `off`.
    #[arg(long, env = "TESSERA_METRICS_ADDR")]
    metrics_addr: Option<String>,
    /// Names in the server certificate (repeat).
    #[arg(
        long = "server-name",
        env = "TESSERA_SERVER_NAMES",
        value_delimiter = ','
    )]
    server_names: Vec<String>,
    /// Log filter (e.g. `info`, `tessera_server=debug`).
    #[arg(long, env = "TESSERA_LOG", default_value = "info")]
    log: String,
}

#[derive(Args)]
struct PtSpecArgs {
    /// Label.
    #[arg(long, default_value = "")]
    label: String,
    /// Make a fleet PT with this registration cap (default: single-device).
    #[arg(long)]
    fleet: Option<u64>,
    /// manual, code (manual with verification code), automatic, or rule.
    #[arg(long, default_value = "manual")]
    approval: String,
    /// Attribute rule for `--approval rule`, e.g. `model=TX-7;serial^=SN26`.
    #[arg(long)]
    rule: Option<String>,
    /// RT lifetime in days.
    #[arg(long, default_value_t = 30)]
    lifetime_days: u64,
    /// device, technician or either.
    #[arg(long, default_value = "either")]
    device_id_policy: String,
}

impl PtSpecArgs {
    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "kind": if self.fleet.is_some() { "fleet" } else { "single" },
            "max_registrations": self.fleet,
            "approval": if self.approval == "code" { "manual_with_code" } else { self.approval.as_str() },
            "rule": self.rule,
            "rt_lifetime_secs": self.lifetime_days * 86_400,
            "device_id_policy": self.device_id_policy,
        })
    }
}

#[derive(Subcommand)]
enum PtCmd {
    /// Create one PT and print its token (shown once).
    Create {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        spec: PtSpecArgs,
    },
    /// Create many PTs; writes `pt_id<TAB>token` lines to a new file (mode 0600).
    Batch {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        spec: PtSpecArgs,
        /// How many.
        #[arg(long)]
        count: u64,
        /// Output file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// List PTs.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Include revoked PTs.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a PT.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Revoke a PT and every registration it produced.
    Revoke {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum OpCmd {
    /// List operations (pending by default).
    List {
        #[command(flatten)]
        conn: Conn,
        /// pending, approved, completed, rejected, expired, cancelled, or all.
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show an operation.
    Show {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
    /// Approve an operation.
    Approve {
        #[command(flatten)]
        conn: Conn,
        id: String,
        /// The verification code shown on the device.
        #[arg(long)]
        code: Option<String>,
        /// Device id to register.
        #[arg(long)]
        device_id: Option<String>,
    },
    /// Reject an operation.
    Reject {
        #[command(flatten)]
        conn: Conn,
        id: String,
        #[arg(long, default_value = "rejected by technician")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// List registrations.
    List {
        #[command(flatten)]
        conn: Conn,
        /// Only active ones.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a device's registrations and block.
    Show {
        #[command(flatten)]
        conn: Conn,
        device_id: String,
    },
    /// Revoke a device's registrations (or one registration with --registration).
    Revoke {
        #[command(flatten)]
        conn: Conn,
        device_id: Option<String>,
        #[arg(long)]
        registration: Option<u64>,
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
    },
    /// Block a device id (revokes its registrations, refuses provisioning).
    Block {
        #[command(flatten)]
        conn: Conn,
        device_id: String,
        #[arg(long, default_value = "blocked by operator")]
        reason: String,
    },
    /// Unblock a device id.
    Unblock {
        #[command(flatten)]
        conn: Conn,
        device_id: String,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create the root key in an HSM or TPM (PKCS#11): a non-extractable, sensitive 256-bit
    /// secret usable only for HMAC. The PIN comes from TESSERA_HSM_PIN (or --pin-env) or
    /// --pin-file, never from a flag value.
    InitHsm {
        /// PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
        #[arg(long)]
        module: PathBuf,
        /// Token label.
        #[arg(long)]
        token_label: Option<String>,
        /// Slot id (instead of a token label).
        #[arg(long)]
        slot: Option<u64>,
        /// Label of the key object to create.
        #[arg(long, default_value = "tessera-root")]
        key_label: String,
        /// Environment variable holding the user PIN.
        #[arg(long, default_value = "TESSERA_HSM_PIN")]
        pin_env: String,
        /// File holding the user PIN.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Start a new key epoch.
    Rotate {
        #[command(flatten)]
        conn: Conn,
    },
    /// List key epochs.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Retire an epoch at once (its RTs stop validating).
    Retire {
        #[command(flatten)]
        conn: Conn,
        epoch: u32,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an admin token (printed once).
    Create {
        #[command(flatten)]
        conn: Conn,
        name: String,
        /// technician or admin.
        #[arg(long, default_value = "technician")]
        role: String,
    },
    /// List admin tokens.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke an admin token.
    Revoke {
        #[command(flatten)]
        conn: Conn,
        id: String,
    },
}

#[derive(Args)]
struct SimArgs {
    /// The device's PT (or set TESSERA_PT).
    #[arg(long, env = "TESSERA_PT", hide_env_values = true)]
    pt: String,
    /// Device endpoint.
    #[arg(long, env = "TESSERA_SERVER", default_value = "127.0.0.1:4433")]
    server: SocketAddr,
    /// Name in the server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// CA certificate (default ./tessera-data/tls/ca.pem).
    #[arg(long, default_value = "./tessera-data/tls/ca.pem")]
    ca: PathBuf,
    /// Device id to request.
    #[arg(long)]
    device_id: Option<String>,
    /// Where to keep the registration between runs.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match cli.cmd {
        Cmd::Serve(a) => rt.block_on(serve(a)),
        Cmd::Simulate(a) => {
            drop(rt);
            simulate(a)
        }
        Cmd::Backup { data_dir, out } => {
            drop(rt);
            match tessera_engine::store::backup(&data_dir, &out) {
                Ok(r) => {
                    println!(
                        "backup of {} written to {} ({} bytes, integrity checked); newest audit event: {}",
                        data_dir.display(),
                        out.display(),
                        r.bytes,
                        r.last_audit_seq
                    );
                    println!(
                        "the root key is not in it: keep root.key (or the HSM key) safe separately"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        other => rt.block_on(operate(other)),
    }
}

async fn serve(a: ServeArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = match &a.config {
        Some(p) => match ServerConfig::from_toml_file(p) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => ServerConfig::default(),
    };
    if let Some(d) = a.data_dir {
        cfg.data_dir = d;
    }
    if let Some(x) = a.device_addr {
        cfg.device_addr = x;
    }
    if let Some(x) = a.admin_addr {
        cfg.admin_addr = x;
    }
    if let Some(m) = a.metrics_addr {
        cfg.metrics_addr = if m == "off" {
            None
        } else {
            match m.parse() {
                Ok(x) => Some(x),
                Err(_) => return fail(format!("bad --metrics-addr {m}")),
            }
        };
    }
    if !a.server_names.is_empty() {
        cfg.server_names = a.server_names;
    }
    if let Some(addr) = cfg.metrics_addr {
        if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
        {
            return fail(format!("metrics on {addr}: {e}"));
        }
    }
    let server = match Server::start(cfg.clone()).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    println!(
        "{} {} (ALPN tessera/1)",
        tessera_server::server::banner::DEVICE,
        server.device_addr()
    );
    println!(
        "{} {} (ALPN tessera-admin/1)",
        tessera_server::server::banner::ADMIN,
        server.admin_addr()
    );
    println!(
        "CA certificate for devices: {}",
        server.ca_cert_path().display()
    );
    println!("CA SHA-256 fingerprint (pin): {}", server.ca_fingerprint());
    if let Some(m) = cfg.metrics_addr {
        println!("metrics: http://{m}/metrics");
    }
    if let Some(t) = server.first_admin_token() {
        println!(
            "first admin token (shown once; also in {}): {}",
            cfg.data_dir.join("admin.token").display(),
            t.expose()
        );
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn admin_client(c: &Conn) -> Result<AdminClient, String> {
    let ca =
        c.ca.clone()
            .unwrap_or_else(|| c.data_dir.join("tls/ca.pem"));
    let token = match std::env::var("TESSERA_ADMIN_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let f = c
                .token_file
                .clone()
                .unwrap_or_else(|| c.data_dir.join("admin.token"));
            std::fs::read_to_string(&f)
                .map_err(|e| format!("admin token {}: {e}", f.display()))?
                .trim()
                .to_owned()
        }
    };
    let trust = Trust::ca_file(&ca).map_err(|e| e.to_string())?;
    AdminClient::new(c.admin_addr, "localhost", &trust, AdminToken::new(token))
        .map_err(|e| e.to_string())
}

/// The admin connection of one operator command, opened on first use and closed when the
/// command is done, so that the server does not keep it until its idle timeout.
#[derive(Default)]
struct Session {
    client: Option<AdminClient>,
}

impl Session {
    fn client(&mut self, conn: &Conn) -> Result<&AdminClient, String> {
        if self.client.is_none() {
            self.client = Some(admin_client(conn)?);
        }
        self.client
            .as_ref()
            .ok_or_else(|| "no admin client".to_owned())
    }

    async fn close(self) {
        if let Some(c) = self.client {
            // A connection that never got going is not worth waiting for.
            let _ = tokio::time::timeout(Duration::from_millis(500), c.close()).await;
        }
    }
}

async fn operate(cmd: Cmd) -> ExitCode {
    let mut session = Session::default();
    let r = run(cmd, &mut session).await;
    session.close().await;
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn run(cmd: Cmd, session: &mut Session) -> Result<(), String> {
    let e = |x: tessera_server::ClientError| x.to_string();
    match cmd {
        Cmd::Pt(PtCmd::Create { conn, spec }) => {
            let c = session.client(&conn)?;
            let v = c.call(kind::PT_CREATE, spec.to_json()).await.map_err(e)?;
            if conn.json {
                println!("{v}");
            } else {
                println!("PT id:    {}", v["pt"]["id"].as_str().unwrap_or(""));
                println!("PT token: {}", v["token"].as_str().unwrap_or(""));
                println!("(the token is shown once; put it in the device's firmware image)");
            }
        }
        Cmd::Pt(PtCmd::Batch {
            conn,
            spec,
            count,
            out,
        }) => {
            use std::io::Write;
            let c = session.client(&conn)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(&out)
                .map_err(|x| format!("{}: {x}", out.display()))?;
            let mut werr = None;
            let mut args = spec.to_json();
            args["count"] = json!(count);
            let r = c
                .create_pt_batch(args, |chunk| {
                    if werr.is_none() {
                        werr = f.write_all(chunk).err();
                    }
                })
                .await;
            match (r, werr) {
                (Ok(v), None) => {
                    f.sync_all().map_err(|x| x.to_string())?;
                    if conn.json {
                        println!("{v}");
                    } else {
                        println!(
                            "created {} PTs in batch {}; tokens in {}",
                            v["count"],
                            v["batch_id"].as_str().unwrap_or(""),
                            out.display()
                        );
                    }
                }
                (r, w) => {
                    drop(f);
                    let _ = std::fs::remove_file(&out);
                    return Err(match (r, w) {
                        (Err(x), _) => format!("batch failed, nothing stored: {x}"),
                        (_, Some(x)) => format!("writing {}: {x}", out.display()),
                        _ => "batch failed".into(),
                    });
                }
            }
        }
        Cmd::Pt(PtCmd::List { conn, all, limit }) => {
            let v = session
                .client(&conn)?
                .call(
                    kind::PT_LIST,
                    json!({ "limit": limit, "include_revoked": all }),
                )
                .await
                .map_err(e)?;
            print_list(&conn, &v["pts"], output::PT_LIST);
        }
        Cmd::Pt(PtCmd::Show { conn, id }) => {
            let v = session
                .client(&conn)?
                .call(kind::PT_SHOW, json!({ "id": id }))
                .await
                .map_err(e)?;
            print_record(&conn, &v, &v["pt"], output::PT_SHOW);
        }
        Cmd::Pt(PtCmd::Revoke { conn, id, reason }) => {
            let v = session
                .client(&conn)?
                .call(kind::PT_REVOKE, json!({ "id": id, "reason": reason }))
                .await
                .map_err(e)?;
            print_done(
                &conn,
                &v,
                format!(
                    "revoked {id}; registrations revoked with it: {}",
                    v["registrations_revoked"]
                ),
            );
        }
        Cmd::Op(OpCmd::List { conn, state, limit }) => {
            let st = if state == "all" {
                Value::Null
            } else {
                json!(state)
            };
            let v = session
                .client(&conn)?
                .call(kind::OP_LIST, json!({ "state": st, "limit": limit }))
                .await
                .map_err(e)?;
            print_list(&conn, &v["operations"], output::OP_LIST);
        }
        Cmd::Op(OpCmd::Show { conn, id }) => {
            let v = session
                .client(&conn)?
                .call(kind::OP_SHOW, json!({ "id": id }))
                .await
                .map_err(e)?;
            print_record(&conn, &v, &v["operation"], output::OP_SHOW);
        }
        Cmd::Op(OpCmd::Approve {
            conn,
            id,
            code,
            device_id,
        }) => {
            let v = session
                .client(&conn)?
                .call(
                    kind::OP_APPROVE,
                    json!({ "id": id, "code": code, "device_id": device_id }),
                )
                .await
                .map_err(e)?;
            if conn.json {
                println!("{v}");
            } else {
                println!(
                    "approved: device {} registration {}",
                    v["registration"]["device_id"].as_str().unwrap_or(""),
                    v["registration"]["id"]
                );
            }
        }
        Cmd::Op(OpCmd::Reject { conn, id, reason }) => {
            let v = session
                .client(&conn)?
                .call(kind::OP_REJECT, json!({ "id": id, "reason": reason }))
                .await
                .map_err(e)?;
            print_done(&conn, &v, format!("rejected {id}"));
        }
        Cmd::Device(DeviceCmd::List {
            conn,
            active,
            limit,
        }) => {
            let v = session
                .client(&conn)?
                .call(
                    kind::DEVICE_LIST,
                    json!({ "active_only": active, "limit": limit }),
                )
                .await
                .map_err(e)?;
            print_list(&conn, &v["registrations"], output::REGISTRATIONS);
        }
        Cmd::Device(DeviceCmd::Show { conn, device_id }) => {
            let v = session
                .client(&conn)?
                .call(kind::DEVICE_SHOW, json!({ "device_id": device_id }))
                .await
                .map_err(e)?;
            if conn.json {
                println!("{v}");
            } else {
                match &v["blocked"] {
                    Value::Null => println!("device {device_id}: not blocked"),
                    b => print!(
                        "device {device_id}: BLOCKED\n{}",
                        output::record(b, output::BLOCK)
                    ),
                }
                let regs = v["registrations"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                if regs.is_empty() {
                    println!("no registrations");
                } else {
                    print!("{}", output::table(regs, output::REGISTRATION_DETAIL));
                }
            }
        }
        Cmd::Device(DeviceCmd::Revoke {
            conn,
            device_id,
            registration,
            reason,
        }) => {
            let v = session.client(&conn)?.call(kind::DEVICE_REVOKE, json!({ "device_id": device_id, "registration_id": registration, "reason": reason })).await.map_err(e)?;
            print_done(
                &conn,
                &v,
                format!("registrations revoked: {}", v["registrations_revoked"]),
            );
        }
        Cmd::Device(DeviceCmd::Block {
            conn,
            device_id,
            reason,
        }) => {
            let v = session
                .client(&conn)?
                .call(
                    kind::DEVICE_BLOCK,
                    json!({ "device_id": device_id, "reason": reason }),
                )
                .await
                .map_err(e)?;
            print_done(
                &conn,
                &v,
                format!(
                    "blocked {device_id}; registrations revoked: {}",
                    v["registrations_revoked"]
                ),
            );
        }
        Cmd::Device(DeviceCmd::Unblock { conn, device_id }) => {
            let v = session
                .client(&conn)?
                .call(kind::DEVICE_UNBLOCK, json!({ "device_id": device_id }))
                .await
                .map_err(e)?;
            let text = if v["was_blocked"] == Value::Bool(true) {
                format!("unblocked {device_id}")
            } else {
                format!("{device_id} was not blocked")
            };
            print_done(&conn, &v, text);
        }
        Cmd::Keys(KeysCmd::InitHsm {
            module,
            token_label,
            slot,
            key_label,
            pin_env,
            pin_file,
        }) => {
            let settings = tessera_server::server::config::KeySettings {
                keeper: "pkcs11".into(),
                module: Some(module),
                token_label,
                slot,
                key_label,
                pin_env,
                pin_file,
            };
            let cfg = settings
                .pkcs11()
                .map_err(|x| x.to_string())?
                .ok_or("pkcs11 settings")?;
            tessera_engine::keys::Pkcs11Keeper::init_root_key(&cfg).map_err(|x| x.to_string())?;
            let keeper =
                tessera_engine::keys::Pkcs11Keeper::open(&cfg).map_err(|x| x.to_string())?;
            let a = keeper.root_key_attributes().map_err(|x| x.to_string())?;
            println!(
                "created root key {:?}: extractable={} sensitive={} value readable={}",
                cfg.key_label, a.extractable, a.sensitive, a.value_readable
            );
            println!("configure the server with:\n[keys]\nkeeper = \"pkcs11\"\nmodule = {:?}\n{}key_label = {:?}", settings.module.as_deref().unwrap_or(std::path::Path::new("")), match (&settings.token_label, settings.slot) {
                (Some(t), _) => format!("token_label = {t:?}\n"),
                (None, Some(s)) => format!("slot = {s}\n"),
                _ => String::new(),
            }, cfg.key_label);
        }
        Cmd::Keys(KeysCmd::Rotate { conn }) => {
            let v = session
                .client(&conn)?
                .call(kind::KEYS_ROTATE, json!({}))
                .await
                .map_err(e)?;
            print_done(
                &conn,
                &v,
                format!("current key epoch is now {}", v["epoch"]),
            );
        }
        Cmd::Keys(KeysCmd::List { conn }) => {
            let v = session
                .client(&conn)?
                .call(kind::KEYS_LIST, json!({}))
                .await
                .map_err(e)?;
            print_list(&conn, &v["epochs"], output::KEY_EPOCHS);
        }
        Cmd::Keys(KeysCmd::Retire { conn, epoch }) => {
            let v = session
                .client(&conn)?
                .call(kind::KEYS_RETIRE, json!({ "epoch": epoch }))
                .await
                .map_err(e)?;
            print_done(
                &conn,
                &v,
                format!("retired key epoch {epoch}; its RTs no longer validate"),
            );
        }
        Cmd::Token(TokenCmd::Create { conn, name, role }) => {
            let v = session
                .client(&conn)?
                .call(kind::TOKEN_CREATE, json!({ "name": name, "role": role }))
                .await
                .map_err(e)?;
            if conn.json {
                println!("{v}");
            } else {
                println!(
                    "admin token for {name} ({role}), shown once: {}",
                    v["token"].as_str().unwrap_or("")
                );
            }
        }
        Cmd::Token(TokenCmd::List { conn }) => {
            let v = session
                .client(&conn)?
                .call(kind::TOKEN_LIST, json!({}))
                .await
                .map_err(e)?;
            print_list(&conn, &v["admin_tokens"], output::ADMIN_TOKENS);
        }
        Cmd::Token(TokenCmd::Revoke { conn, id }) => {
            let v = session
                .client(&conn)?
                .call(kind::TOKEN_REVOKE, json!({ "id": id }))
                .await
                .map_err(e)?;
            let text = if v["revoked"] == Value::Bool(true) {
                format!("revoked admin token {id}")
            } else {
                format!("admin token {id} was already revoked")
            };
            print_done(&conn, &v, text);
        }
        Cmd::Audit {
            conn,
            after,
            limit,
            follow,
            interval_ms,
        } => {
            let c = session.client(&conn)?;
            let first =
                json!({ "after": after.unwrap_or(0), "limit": limit, "newest": after.is_none() });
            let v = c.call(kind::AUDIT, first).await.map_err(e)?;
            if follow {
                let interval = Duration::from_millis(interval_ms);
                follow_audit(c, conn.json, after.unwrap_or(0), v, interval).await?;
            } else {
                print_list(&conn, &v["events"], output::AUDIT);
            }
        }
        Cmd::Leaks { conn, after, limit } => {
            let v = session
                .client(&conn)?
                .call(kind::LEAKS, json!({ "after": after, "limit": limit }))
                .await
                .map_err(e)?;
            print_list(&conn, &v["signals"], output::LEAKS);
        }
        Cmd::Status { conn } => {
            let v = session
                .client(&conn)?
                .call(kind::STATUS, json!({}))
                .await
                .map_err(e)?;
            if conn.json {
                println!("{v}");
            } else {
                print!("{}", output::flattened(&v));
            }
        }
        Cmd::Serve(_) | Cmd::Simulate(_) | Cmd::Backup { .. } => unreachable!("handled in main"),
    }
    Ok(())
}

/// `tessera audit --follow`: print `first`'s events (all after `after`), then every later one as
/// it is recorded, until Ctrl-C or SIGTERM. A line per event with `--json`; for people, the first batch with
/// headings and each later batch as rows.
async fn follow_audit(
    c: &AdminClient,
    json: bool,
    mut after: u64,
    first: Value,
    interval: Duration,
) -> Result<(), String> {
    use std::io::Write;
    const PAGE: usize = 1000;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    let mut answer = first;
    let mut headings = !json;
    let mut layout = output::Layout::default();
    loop {
        let events = answer["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if let Some(seq) = events.last().and_then(|ev| ev["seq"].as_u64()) {
            after = after.max(seq);
        }
        let mut out = std::io::stdout().lock();
        let written = if json {
            events.iter().try_for_each(|ev| writeln!(out, "{ev}"))
        } else if headings || !events.is_empty() {
            let text = layout.render(events, output::AUDIT, headings);
            headings = false;
            out.write_all(text.as_bytes())
        } else {
            Ok(())
        };
        // A closed pipe (`tessera audit -f | head`) ends the command quietly.
        if written.and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        drop(out);
        if events.len() < PAGE {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let next = json!({ "after": after, "limit": PAGE });
        answer = tokio::select! {
            _ = &mut stop => return Ok(()),
            r = c.call(kind::AUDIT, next) => r.map_err(|x| x.to_string())?,
        };
    }
}

fn print_list(conn: &Conn, rows: &Value, cols: &[Col]) {
    if conn.json {
        println!("{rows}");
    } else {
        print!(
            "{}",
            output::table(rows.as_array().map(Vec::as_slice).unwrap_or(&[]), cols)
        );
    }
}

/// A single record: the whole answer with `--json`, else the record's fields.
fn print_record(conn: &Conn, answer: &Value, rec: &Value, cols: &[Col]) {
    if conn.json {
        println!("{answer}");
    } else {
        print!("{}", output::record(rec, cols));
    }
}

/// The outcome of a change: the answer with `--json`, else one sentence.
fn print_done(conn: &Conn, answer: &Value, text: String) {
    if conn.json {
        println!("{answer}");
    } else {
        println!("{text}");
    }
}

struct SimHooks {
    state_file: Option<PathBuf>,
}

impl DeviceHooks for SimHooks {
    fn show_code(&self, code: &str) {
        println!("verification code: {code}");
    }
    fn load(&self) -> Option<String> {
        self.state_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
    }
    fn save(&self, stored: &str) {
        // The stored registration holds the RT: a secret, so the file is private (0600).
        use std::io::Write;
        if let Some(p) = &self.state_file {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            if let Ok(mut f) = opts.open(p) {
                let _ = f.write_all(stored.as_bytes());
            }
        }
    }
    fn log(&self, line: &str) {
        eprintln!("device: {line}");
    }
}

fn simulate(a: SimArgs) -> ExitCode {
    let trust = match Trust::ca_file(&a.ca) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let mut cfg = DeviceConfig::new(
        a.server,
        &a.server_name,
        trust,
        tessera_engine::ProvisioningToken::new(a.pt),
    );
    cfg.device_id = a.device_id;
    let client = match BlockingDeviceClient::new(
        cfg,
        Box::new(SimHooks {
            state_file: a.state_file,
        }),
    ) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match client.ensure_registered(Duration::from_secs(a.timeout_secs)) {
        Ok(r) => {
            println!(
                "registered: device {} registration {} generation {} expires {}",
                r.device_id,
                r.registration_id,
                r.generation,
                output::utc(i64::try_from(r.expires_at).unwrap_or(i64::MAX))
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
