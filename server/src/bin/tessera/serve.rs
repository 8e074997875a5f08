//! `tessera serve`: the configuration (file, then flags), metrics, the server, its banner, and
//! a clean shutdown on SIGTERM or SIGINT.

use std::process::ExitCode;
use std::time::Duration;

use tessera_server::server::config::LogFormat;
use tessera_server::{Server, ServerConfig};

use crate::{fail, ServeArgs};

/// Install the log subscriber: `filter` (an error if it does not parse) in `format`.
fn init_logs(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt.json().with_current_span(false).init(),
    }
    Ok(())
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

pub(crate) async fn serve(a: ServeArgs) -> ExitCode {
    let mut cfg = match &a.config {
        Some(p) => match ServerConfig::from_toml_file(p) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
        None => ServerConfig::default(),
    };
    if let Some(l) = a.log {
        cfg.log = l;
    }
    if let Some(f) = a.log_format {
        cfg.log_format = f;
    }
    if let Err(e) = init_logs(&cfg.log, cfg.log_format) {
        return fail(e);
    }
    if let Some(d) = a.data_dir {
        cfg.data_dir = d;
    }
    if let Some(base) = a.ports {
        if let Err(e) = move_ports(&mut cfg, base) {
            return fail(e);
        }
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
    if let Some(c) = a.console_addr {
        cfg.console_addr = if c == "off" {
            None
        } else {
            match c.parse() {
                Ok(x) => Some(x),
                Err(_) => return fail(format!("bad --console-addr {c}")),
            }
        };
    }
    if let Some(u) = a.store {
        cfg.store.url = Some(u);
    }
    if let Err(e) = cfg.store.postgres() {
        return fail(e);
    }
    if !a.server_names.is_empty() {
        cfg.server_names = a.server_names;
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
    serve_until_stopped(&server).await;
    tracing::info!("shutting down");
    server.shutdown(Duration::from_secs(5)).await;
    ExitCode::SUCCESS
}

/// Serve until SIGTERM or SIGINT. SIGHUP reloads the server certificate and key (`tessera tls
/// issue`, a rollover's `finish`, or files an operator replaced) and never stops the server.
async fn serve_until_stopped(server: &tessera_server::Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = wait_for_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = hup.recv() => match server.reload_certificate() {
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
                    },
                }
            }
        }
    }
    wait_for_signal().await;
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
