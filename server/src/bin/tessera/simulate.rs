//! `tessera simulate`: one simulated device, for trying a server out by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tessera_client::device::{DeviceConfig, DeviceHooks};
use tessera_client::{DeviceClient, Trust};

use super::{fail, output, SimArgs};

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

pub(super) fn simulate(a: SimArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let code = rt.block_on(run(a));
    // The stdin reader of `--hold` may still be blocked in a read: do not wait for it.
    rt.shutdown_background();
    code
}

async fn run(a: SimArgs) -> ExitCode {
    let ca =
        a.ca.clone()
            .unwrap_or_else(|| a.data_dir.join("tls/ca.pem"));
    let trust = match Trust::ca_file(&ca) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let server_name = super::operate::server_name_or_default(a.server_name.as_deref(), &a.data_dir);
    let mut cfg = DeviceConfig::new(
        a.server,
        &server_name,
        trust,
        tessera_engine::ProvisioningToken::new(a.pt),
    );
    cfg.device_id = a.device_id;
    let client = match DeviceClient::new(
        cfg,
        Box::new(SimHooks {
            state_file: a.state_file,
        }),
    ) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let code = match client
        .ensure_registered(Duration::from_secs(a.timeout_secs))
        .await
    {
        Ok(r) => {
            println!(
                "registered: device {} registration {} generation {} expires {}",
                r.device_id,
                r.registration_id,
                r.generation,
                output::utc(i64::try_from(r.expires_at).unwrap_or(i64::MAX))
            );
            if a.hold {
                hold(&client).await;
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    };
    client.close().await;
    code
}

/// Stay connected; refresh on each `refresh` line of standard input, until its end. When the
/// server closes the connection (a revocation, a shutdown), say so at once.
async fn hold(client: &DeviceClient) {
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Whether the connection the device holds has been reported closed (the next refresh
    // opens another).
    let mut reported = false;
    loop {
        let line = tokio::select! {
            line = lines.recv() => match line {
                Some(l) => l,
                None => return,
            },
            Some(how) = client.connection_closed(), if !reported => {
                println!("connection {how}");
                reported = true;
                continue;
            }
        };
        if line.trim() != "refresh" {
            continue;
        }
        reported = false;
        match client.refresh().await {
            Ok(r) => println!("refreshed: generation {}", r.generation),
            Err(e) => println!("refresh refused: {e}"),
        }
    }
}
