//! `tessera`: run the server (`tessera serve`) and operate it (every other subcommand talks to
//! the admin endpoint).
//!
//! This file holds the command line (clap); `serve` runs the server; `operate` runs the operator
//! commands and `output` prints their answers; `local` has the commands that work on this host's
//! files and HSM; `simulate` is a device for trying a server out.

mod local;
mod operate;
mod output;
mod probe;
mod serve;
mod simulate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tessera_proto::admin::requests::PtArgs;

/// mimalloc instead of the C library's allocator: the server allocates on one thread (a request
/// on a Tokio worker) and frees on another (its answer, after the store's writer), which glibc's
/// per-thread arenas handle poorly (measured in docs/reliability.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version = tessera_server::VERSION,
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
    /// The name the server's certificate must carry (default: the first name in
    /// DATA_DIR/tls/server.names, the names `tessera serve` made it for; else `localhost`).
    #[arg(long, env = "TESSERA_SERVER_NAME", global = true)]
    server_name: Option<String>,
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
    /// Server status. When the admin endpoint cannot answer (within 2 s), the server's
    /// readiness probe on the metrics listener says which part is down.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// The server's metrics listener (for its readiness probe, `/readyz`), or `off`.
        #[arg(long, env = "TESSERA_METRICS_ADDR", default_value = "127.0.0.1:9464")]
        metrics_addr: String,
    },
    /// Run a simulated device: provision (printing the verification code as a display would),
    /// then print the registration.
    Simulate(SimArgs),
    /// The server's TLS material (run on the server's host).
    #[command(subcommand)]
    Tls(TlsCmd),
    /// The server's settings: `check` them, or `show` the effective ones (defaults, the
    /// file, then flags and environment, as `tessera serve` would run; secrets redacted).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `tessera completions bash > /usr/share/bash-completion/completions/tessera`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `tessera man | man -l -`.
    Man,
    /// Back up a data directory while the server runs (run it on the server's host): one
    /// archive (mode 0600) with the store, `tls/`, the validator key file, the configuration
    /// and a manifest of checksums. The root key goes in only with `--include-root-key`.
    Backup {
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
        /// The archive to write; it must not exist.
        out: PathBuf,
        /// The server's configuration file, carried in the archive.
        #[arg(long, env = "TESSERA_CONFIG")]
        config: Option<PathBuf>,
        /// Put the root key file in the archive too (the software keeper's; an HSM's root
        /// stays in the HSM). Whoever reads the archive can then make tokens.
        #[arg(long)]
        include_root_key: bool,
        /// The server's PostgreSQL store: the archive leaves it out (back the database up with
        /// its own tools).
        #[arg(long = "store", env = "TESSERA_STORE", hide_env_values = true)]
        store: Option<String>,
    },
    /// Restore a backup archive into a data directory that does not exist or is empty, after
    /// checking the archive and that the root key is the one the store was made with.
    Restore {
        /// The archive `tessera backup` wrote.
        archive: PathBuf,
        /// The data directory to make.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
        /// The deployment's root key file, when the archive has none (the software keeper).
        #[arg(long)]
        root_key: Option<PathBuf>,
        /// A configuration whose `[keys]` name the HSM that holds the root.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TlsCmd {
    /// Make a new CA and server certificate in a data directory that has none. A deployment's
    /// devices trust its CA: a new one must be given to every device. The server makes them
    /// itself only on its first start.
    Init {
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
        /// Names in the server certificate (repeat; default localhost, 127.0.0.1, ::1).
        #[arg(
            long = "server-name",
            env = "TESSERA_SERVER_NAMES",
            value_delimiter = ','
        )]
        server_names: Vec<String>,
    },
    /// Show the CA and the server certificate: names, validity, fingerprints.
    Show {
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
    },
    /// Issue a new server certificate from the deployment's CA (for other names, or before the
    /// old one ends); the previous one is kept as `server.pem.prev`. Devices keep trusting the
    /// CA. Reload the server (SIGHUP) to use it.
    Issue {
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
        /// Names in the new certificate (repeat).
        #[arg(long = "server-name", required = true, value_delimiter = ',')]
        server_names: Vec<String>,
    },
    /// Move devices to a new CA without losing one. `begin` makes the next CA beside the
    /// current one and writes `tls/trust.pem` (both CAs) for devices to trust (or pin both
    /// fingerprints); once every device has it, `finish` makes the next CA the CA and issues
    /// the server certificate from it (reload the server, SIGHUP, to use it). docs/operations.md.
    Rollover {
        /// `begin` or `finish`.
        step: RolloverStep,
        /// Data directory of the server.
        #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check the settings `tessera serve` would run with (the same options): the file parses,
    /// every key is known, the log filter, addresses, store URL and key settings are valid.
    Check(ServeArgs),
    /// Print the effective settings as TOML (a store URL's password and HSM PINs are never
    /// shown).
    Show(ServeArgs),
}

/// A step of a CA rollover.
#[derive(Clone, Copy, clap::ValueEnum)]
enum RolloverStep {
    /// Make the next CA and the bundle devices trust meanwhile.
    Begin,
    /// Make the next CA the CA.
    Finish,
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
    /// Console and HTTPS admin API address (TCP), or `off`.
    #[arg(long, env = "TESSERA_CONSOLE_ADDR")]
    console_addr: Option<String>,
    /// The store: a PostgreSQL URL (`postgres://user@host/db`, shared by several nodes), or
    /// `sqlite` for the file in the data directory (the default)
    #[arg(long = "store", env = "TESSERA_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Names in the server certificate (repeat).
    #[arg(
        long = "server-name",
        env = "TESSERA_SERVER_NAMES",
        value_delimiter = ','
    )]
    server_names: Vec<String>,
    /// Move every port at once, for a second instance on one host: the device endpoint on
    /// BASE (UDP), the admin endpoint and the console on BASE+1 (UDP and TCP), metrics on
    /// BASE+2; each keeps its address. Options naming an address win over it.
    #[arg(long, env = "TESSERA_PORTS")]
    ports: Option<u16>,
    /// Log filter (e.g. `info`, `tessera_server=debug`; default `info`, or `log` in the
    /// configuration file). An invalid filter is an error.
    #[arg(long, env = "TESSERA_LOG")]
    log: Option<String>,
    /// Log format: `text` (default) or `json` (one object a line), or `log_format` in the
    /// configuration file.
    #[arg(long, env = "TESSERA_LOG_FORMAT")]
    log_format: Option<tessera_server::server::config::LogFormat>,
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
    /// The PT arguments of `PT_CREATE` and `PT_BATCH` (`count` unset).
    fn to_args(&self) -> PtArgs {
        let approval = if self.approval == "code" {
            "manual_with_code"
        } else {
            self.approval.as_str()
        };
        PtArgs {
            kind: Some(
                if self.fleet.is_some() {
                    "fleet"
                } else {
                    "single"
                }
                .into(),
            ),
            max_registrations: self.fleet,
            approval: Some(approval.into()),
            rule: self.rule.clone(),
            rt_lifetime_secs: Some(self.lifetime_days * 86_400),
            device_id_policy: Some(self.device_id_policy.clone()),
            ..PtArgs::new(self.label.clone())
        }
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
        /// The page after this one: the `next` of the previous page (its `--json` output).
        #[arg(long)]
        before: Option<String>,
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
        /// The page after this one: the `next` of the previous page (its `--json` output).
        #[arg(long)]
        before: Option<String>,
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
        /// Move the device id from its active registration under another PT to this operation
        /// (refused without it; recorded in the audit log).
        #[arg(long)]
        reassign: bool,
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
        /// The page after this one: the `next` of the previous page (its `--json` output).
        #[arg(long)]
        before: Option<u64>,
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
        /// technician, admin or service (introspect RTs and follow revocations only).
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
    /// Name in the server certificate (default: the first name in DATA_DIR/tls/server.names,
    /// else `localhost`).
    #[arg(long, env = "TESSERA_SERVER_NAME")]
    server_name: Option<String>,
    /// Data directory of a server on this host (for the default CA and server name).
    #[arg(long, env = "TESSERA_DATA_DIR", default_value = "./tessera-data")]
    data_dir: PathBuf,
    /// CA certificate (default: DATA_DIR/tls/ca.pem).
    #[arg(long, env = "TESSERA_CA")]
    ca: Option<PathBuf>,
    /// Device id to request.
    #[arg(long)]
    device_id: Option<String>,
    /// Where to keep the registration between runs.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Once registered, stay: keep the connection and refresh on each line `refresh` read from
    /// standard input, printing the outcome; exit at the end of the input.
    #[arg(long)]
    hold: bool,
}

/// Exit status of a command that printed its own output.
fn done(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Write `text` to standard output; a reader that stopped early (`| head`) is no error.
fn print_all(text: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => fail(e),
        _ => ExitCode::SUCCESS,
    }
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
        Cmd::Serve(a) => rt.block_on(serve::serve(a)),
        Cmd::Simulate(a) => {
            drop(rt);
            simulate::simulate(a)
        }
        Cmd::Backup {
            data_dir,
            out,
            config,
            include_root_key,
            store,
        } => done(local::backup(
            &data_dir,
            &out,
            tessera_server::server::archive::BackupOptions {
                config,
                include_root_key,
                postgres: store.is_some_and(|u| u.starts_with("postgres")),
            },
        )),
        Cmd::Restore {
            archive,
            data_dir,
            root_key,
            config,
        } => done(local::restore(&archive, &data_dir, root_key, config)),
        Cmd::Config(ConfigCmd::Check(a)) => done(serve::check_config(&a)),
        Cmd::Config(ConfigCmd::Show(a)) => done(serve::show_config(&a)),
        Cmd::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "tessera",
                &mut text,
            );
            print_all(&text)
        }
        Cmd::Man => {
            let mut text = Vec::new();
            match clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut text)
            {
                Ok(()) => print_all(&text),
                Err(e) => fail(e),
            }
        }
        Cmd::Tls(TlsCmd::Init {
            data_dir,
            server_names,
        }) => done(local::tls_init(&data_dir, server_names)),
        Cmd::Tls(TlsCmd::Show { data_dir }) => done(local::tls_show(&data_dir)),
        Cmd::Tls(TlsCmd::Issue {
            data_dir,
            server_names,
        }) => done(local::tls_issue(&data_dir, &server_names)),
        Cmd::Tls(TlsCmd::Rollover { step, data_dir }) => done(local::tls_rollover(
            &data_dir,
            matches!(step, RolloverStep::Finish),
        )),
        Cmd::Keys(KeysCmd::InitHsm {
            module,
            token_label,
            slot,
            key_label,
            pin_env,
            pin_file,
        }) => done(local::init_hsm(
            &tessera_server::server::config::KeySettings {
                keeper: "pkcs11".into(),
                module: Some(module),
                token_label,
                slot,
                key_label,
                pin_env,
                pin_file,
            },
        )),
        other => rt.block_on(operate::operate(other)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The README says: every operator command takes `--json`; the host commands (`serve`,
    /// `simulate`, `backup`, `keys init-hsm`) do not.
    #[test]
    fn json_is_offered_exactly_where_the_readme_says() {
        fn leaves(c: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
            let subs: Vec<_> = c.get_subcommands().collect();
            if subs.is_empty() {
                let json = c.get_arguments().any(|a| a.get_id() == "json");
                out.push((path.trim().to_owned(), json));
            }
            for s in subs {
                leaves(s, &format!("{path} {}", s.get_name()), out);
            }
        }
        let mut out = Vec::new();
        leaves(&super::Cli::command(), "", &mut out);
        let host = [
            "serve",
            "simulate",
            "backup",
            "restore",
            "keys init-hsm",
            "tls init",
            "tls show",
            "tls issue",
            "tls rollover",
            "completions",
            "man",
            "config check",
            "config show",
        ];
        assert!(out.len() > 20, "{out:?}");
        for (path, json) in out {
            assert_eq!(json, !host.contains(&path.as_str()), "{path}");
        }
    }
}
