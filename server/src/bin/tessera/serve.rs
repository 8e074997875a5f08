//! `tessera serve`: the configuration (file, then flags), metrics, the server, its banner, and
//! a clean shutdown on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use tessera_server::server::config::LogFormat;
use tessera_server::{Server, ServerConfig};

use crate::{fail, ServeArgs};

/// The format layer, boxed so that SIGHUP can swap text for JSON.
type FormatLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The registry with the (reloadable) format layer: what the filter wraps.
type Formatted = tracing_subscriber::layer::Layered<
    tracing_subscriber::reload::Layer<FormatLayer, tracing_subscriber::Registry>,
    tracing_subscriber::Registry,
>;

/// The running log subscriber's filter and format, replaceable on SIGHUP.
pub(crate) struct Logs {
    filter: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, Formatted>,
    format: tracing_subscriber::reload::Handle<FormatLayer, tracing_subscriber::Registry>,
}

fn parse_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))
}

fn format_layer(format: LogFormat) -> FormatLayer {
    use tracing_subscriber::Layer;
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => fmt.json().with_current_span(false).boxed(),
    }
}

/// Install the log subscriber: `filter` (an error if it does not parse) in `format`, both
/// replaceable later ([`Logs::reload`]).
fn init_logs(filter: &str, format: LogFormat) -> Result<Logs, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (format, format_handle) = tracing_subscriber::reload::Layer::new(format_layer(format));
    let (filter, filter_handle) = tracing_subscriber::reload::Layer::new(parse_filter(filter)?);
    // The format is the layer next to the registry; the filter wraps both.
    tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .init();
    Ok(Logs {
        filter: filter_handle,
        format: format_handle,
    })
}

impl Logs {
    /// Replace the filter and the format (a filter that does not parse changes nothing).
    fn reload(&self, filter: &str, format: LogFormat) -> Result<(), String> {
        let f = parse_filter(filter)?;
        self.filter.reload(f).map_err(|e| e.to_string())?;
        self.format
            .reload(format_layer(format))
            .map_err(|e| e.to_string())
    }
}

/// Move every port from `base` (`--ports`): device `base`, admin and console `base + 1`,
/// metrics `base + 2`, each on its own address.
fn move_ports(cfg: &mut ServerConfig, base: u16) -> Result<(), String> {
    let port = |n: u16| {
        base.checked_add(n)
            .ok_or_else(|| format!("--ports {base}: the ports run past 65535"))
    };
    cfg.device_addr.set_port(port(0)?);
    cfg.admin_addr.set_port(port(1)?);
    if let Some(c) = cfg.console_addr.as_mut() {
        c.set_port(port(1)?);
    }
    if let Some(m) = cfg.metrics_addr.as_mut() {
        m.set_port(port(2)?);
    }
    Ok(())
}

fn addr_or_off(flag: &str, v: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| format!("bad {flag} {v} (an address such as 127.0.0.1:9464, or off)"))
}

/// The settings `tessera serve` runs with: the defaults, then the configuration file, then the
/// flags and environment. Checked as far as can be without starting: the log filter, the
/// addresses, the store URL.
pub(crate) fn effective_config(a: &ServeArgs) -> Result<ServerConfig, String> {
    let mut cfg = match &a.config {
        Some(p) => ServerConfig::from_toml_file(p)?,
        None => ServerConfig::default(),
    };
    if let Some(l) = &a.log {
        cfg.log = l.clone();
    }
    if let Some(f) = a.log_format {
        cfg.log_format = f;
    }
    parse_filter(&cfg.log)?;
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(base) = a.ports {
        move_ports(&mut cfg, base)?;
    }
    if let Some(x) = a.device_addr {
        cfg.device_addr = x;
    }
    if let Some(x) = a.admin_addr {
        // The console shares the admin endpoint's number (on TCP) unless it was placed: it
        // moves with it, so that moving the admin endpoint alone does not collide.
        if a.console_addr.is_none() && cfg.console_addr == Some(cfg.admin_addr) {
            cfg.console_addr = Some(x);
        }
        cfg.admin_addr = x;
    }
    if let Some(m) = &a.metrics_addr {
        cfg.metrics_addr = addr_or_off("--metrics-addr", m)?;
    }
    if let Some(c) = &a.console_addr {
        cfg.console_addr = addr_or_off("--console-addr", c)?;
    }
    if let Some(u) = &a.store {
        cfg.store.url = Some(u.clone());
    }
    cfg.store.postgres()?;
    if !a.server_names.is_empty() {
        cfg.server_names = a.server_names.clone();
    }
    Ok(cfg)
}

/// `tessera config check`: what `tessera serve` would refuse before starting.
pub(crate) fn check_config(a: &ServeArgs) -> Result<(), String> {
    let cfg = effective_config(a)?;
    cfg.keys.pkcs11().map_err(|e| format!("[keys]: {e}"))?;
    if cfg.server_names.is_empty() {
        return Err("server_names is empty: the certificate needs a name".into());
    }
    let mut addrs = vec![
        ("device_addr (UDP)", cfg.device_addr),
        ("admin_addr (UDP)", cfg.admin_addr),
    ];
    if let Some(c) = cfg.console_addr {
        addrs.push(("console_addr (TCP)", c));
    }
    if let Some(m) = cfg.metrics_addr {
        addrs.push(("metrics_addr (TCP)", m));
        if cfg.console_addr == Some(m) {
            return Err(format!("console_addr and metrics_addr are both {m}"));
        }
    }
    if cfg.device_addr == cfg.admin_addr {
        return Err(format!(
            "device_addr and admin_addr are both {}",
            cfg.device_addr
        ));
    }
    println!("configuration OK");
    for (what, addr) in addrs {
        println!("  {what}: {addr}");
    }
    println!("  data_dir: {}", cfg.data_dir.display());
    println!(
        "  store: {}",
        match cfg.store.postgres()? {
            Some(url) => tessera_engine::store::redacted_url(url),
            None => format!("SQLite in {}", cfg.data_dir.display()),
        }
    );
    println!("  keys: {}", cfg.keys.keeper);
    println!("  log: {} ({:?})", cfg.log, cfg.log_format);
    Ok(())
}

/// `tessera config show`: the effective settings as TOML, secrets redacted.
pub(crate) fn show_config(a: &ServeArgs) -> Result<(), String> {
    let mut cfg = effective_config(a)?;
    if let Some(url) = cfg
        .store
        .postgres()?
        .map(tessera_engine::store::redacted_url)
    {
        cfg.store.url = Some(url);
    }
    let text = toml::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
    print!("{text}");
    Ok(())
}

pub(crate) async fn serve(a: ServeArgs) -> ExitCode {
    let cfg = match effective_config(&a) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let logs = match init_logs(&cfg.log, cfg.log_format) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
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
    if let Some(c) = server.console_addr() {
        println!("{} https://{c}/", tessera_server::server::banner::CONSOLE);
    }
    println!("CA SHA-256 fingerprint (pin): {}", server.ca_fingerprint());
    println!("store: {}", server.store_description());
    match tessera_server::server::tls::certificate_names(&cfg.data_dir) {
        Some(names) => println!(
            "server certificate names (devices connect to one of these): {}",
            names.join(", ")
        ),
        None => println!("server certificate: supplied in the data directory's tls/ folder"),
    }
    // A certificate near its end is said at every start (`tessera tls issue` renews it).
    let tls_dir = cfg.data_dir.join("tls");
    for file in ["server.pem", "ca.pem"] {
        if let Ok(certs) = tessera_server::server::tls::describe(&tls_dir.join(file)) {
            let now = tessera_engine::Timestamp::now_from_system_clock().unix_secs();
            let left = (certs[0].not_after - i64::try_from(now).unwrap_or(i64::MAX)) / 86_400;
            if left < tessera_server::server::tls::EXPIRY_WARNING_DAYS {
                tracing::warn!(
                    file,
                    days_left = left,
                    "a TLS certificate ends soon: renew it (tessera tls issue) before devices are refused"
                );
            }
        }
    }
    if let Some(m) = server.metrics_addr() {
        println!("metrics: http://{m}/metrics (probes: /healthz, /readyz)");
    }
    if let Some(t) = server.first_admin_token() {
        let file = cfg.data_dir.join("admin.token");
        // Shown on a terminal only: output that goes elsewhere (the journal under systemd, a
        // log file) is a log, and a log never holds a secret.
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            println!(
                "first admin token (shown once; also in {}): {}",
                file.display(),
                t.expose()
            );
        } else {
            println!(
                "first admin token: in {} (mode 0600; printed only on a terminal)",
                file.display()
            );
        }
    }
    serve_until_stopped(&server, &a, &logs, signals).await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

/// The signals `tessera serve` answers, installed before it says it serves: a supervisor's
/// SIGTERM or SIGHUP right after the banner then never meets the default action (exit).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, String> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let on = |k: SignalKind| signal(k).map_err(|e| format!("signal handler: {e}"));
            Ok(Self {
                term: on(SignalKind::terminate())?,
                int: on(SignalKind::interrupt())?,
                hup: on(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }
}

/// Serve until SIGTERM or SIGINT. SIGHUP reloads what can change safely and logs what it
/// reloaded: the server certificate and key (`tessera tls issue`, a rollover's `finish`, files
/// an operator replaced), and the log filter and format (the configuration file read again;
/// flags still win). It never stops the server; anything else in the file needs a restart.
async fn serve_until_stopped(
    server: &tessera_server::Server,
    a: &ServeArgs,
    logs: &Logs,
    mut signals: Signals,
) {
    #[cfg(unix)]
    loop {
        tokio::select! {
            _ = signals.term.recv() => return,
            _ = signals.int.recv() => return,
            _ = signals.hup.recv() => reload(server, a, logs),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (server, a, logs, &mut signals);
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What SIGHUP does (see [`serve_until_stopped`]).
fn reload(server: &tessera_server::Server, a: &ServeArgs, logs: &Logs) {
    match server.reload_certificate() {
        Ok(c) => tracing::info!(
            names = %c.names.join(", "),
            fingerprint = %c.fingerprint,
            not_after = c.not_after,
            "SIGHUP: reloaded the server certificate (new connections get it)"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "SIGHUP: the server certificate was not reloaded; the one in use stays"
        ),
    }
    match effective_config(a).and_then(|c| logs.reload(&c.log, c.log_format).map(|()| c)) {
        Ok(c) => tracing::info!(
            filter = %c.log,
            format = ?c.log_format,
            "SIGHUP: reloaded the log filter and format"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "SIGHUP: the log settings were not reloaded; the ones in use stay"
        ),
    }
}

pub(crate) async fn wait_for_signal() {
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
