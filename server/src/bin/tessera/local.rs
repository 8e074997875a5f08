//! Commands that work on this host's files and devices rather than through the admin endpoint:
//! `tessera backup`, `tessera restore`, `tessera tls init` and `tessera keys init-hsm`.

use std::path::Path;

use tessera_engine::keys::Pkcs11Keeper;
use tessera_server::server::archive::{self, BackupOptions};
use tessera_server::server::config::KeySettings;

/// `tessera backup`: the archive of `data_dir` (`tessera_server::server::archive`).
pub(super) fn backup(data_dir: &Path, out: &Path, o: BackupOptions) -> Result<(), String> {
    // On a terminal, a spinner with the time taken while the store is copied and checked.
    let spinner = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("backing up {} …", data_dir.display()));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let m = archive::backup(data_dir, out, &o);
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let m = m.map_err(|e| e.to_string())?;
    let store = match (m.schema_version, m.last_audit_seq) {
        (Some(v), Some(seq)) => {
            format!("the store (schema {v}, integrity checked; newest audit event {seq})")
        }
        _ => "no store (PostgreSQL: back the database up with its own tools)".into(),
    };
    println!(
        "backup of {} written to {} (mode 0600): {store}, {} files in all",
        data_dir.display(),
        out.display(),
        m.files.len()
    );
    println!("CA fingerprint (SHA-256): {}", m.ca_fingerprint);
    if m.root_key_included {
        println!(
            "WARNING: the root key is in this archive: whoever reads it can make tokens; keep \
             it as safe as the key itself"
        );
    } else {
        println!(
            "the root key is not in it: keep root.key (or the HSM key) safe separately; a \
             restore asks for it"
        );
    }
    Ok(())
}

/// `tessera restore`: a data directory from an archive, after every check.
pub(super) fn restore(
    archive_path: &Path,
    data_dir: &Path,
    root_key: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> Result<(), String> {
    let keeper_root_check = match config {
        Some(c) => {
            let cfg = tessera_server::ServerConfig::from_toml_file(&c)?;
            match cfg.keys.pkcs11().map_err(|e| e.to_string())? {
                Some(p) => {
                    let keeper = Pkcs11Keeper::open(&p).map_err(|e| e.to_string())?;
                    Some(tessera_engine::keys::root_check(&keeper).map_err(|e| e.to_string())?)
                }
                None => None,
            }
        }
        None => None,
    };
    let m = archive::restore(
        archive_path,
        data_dir,
        &archive::RestoreOptions {
            keeper_root_check,
            root_key,
        },
    )
    .map_err(|e| e.to_string())?;
    println!(
        "restored {} into {} (made {} by tessera {}; {})",
        archive_path.display(),
        data_dir.display(),
        tessera_engine::Timestamp::from_unix_millis(m.made_at),
        m.tessera_version,
        match m.last_audit_seq {
            Some(seq) => format!("its store's newest audit event is {seq}"),
            None => "no store: restore the PostgreSQL database with its own tools".into(),
        }
    );
    println!("the root key matches the store's");
    println!(
        "CA fingerprint (SHA-256): {} (the one devices trust)",
        m.ca_fingerprint
    );
    if m.files.contains_key(archive::CONFIG_FILE) {
        println!(
            "the configuration is at {}: start with `tessera serve --config` on it",
            data_dir.join(archive::CONFIG_FILE).display()
        );
    }
    Ok(())
}

/// `tessera tls init`: a new CA and server certificate where there are none.
pub(super) fn tls_init(data_dir: &Path, names: Vec<String>) -> Result<(), String> {
    use tessera_server::server::tls;
    let names = if names.is_empty() {
        tessera_server::ServerConfig::default().server_names
    } else {
        names
    };
    if data_dir.join("tls").join("ca.pem").exists() {
        return Err(format!(
            "{} already has a CA (tls/ca.pem): devices trust it; nothing was changed",
            data_dir.display()
        ));
    }
    let files = tls::ensure_certificates(data_dir, &names, true).map_err(|e| e.to_string())?;
    let ca = tls::load_chain(&files.ca_cert).map_err(|e| e.to_string())?;
    println!(
        "made a new CA ({}) and a server certificate for {}",
        files.ca_cert.display(),
        names.join(", ")
    );
    println!("CA fingerprint (SHA-256): {}", tls::fingerprint(&ca[0]));
    println!("every device must be given this CA (or pin) before it can connect");
    Ok(())
}

/// `tessera tls show`: each certificate's names, validity and fingerprint.
pub(super) fn tls_show(data_dir: &Path) -> Result<(), String> {
    use tessera_server::server::tls;
    let now = tessera_engine::Timestamp::now_from_system_clock().unix_secs();
    let dir = data_dir.join("tls");
    for (what, file, all) in [
        ("CA (devices trust this)", "ca.pem", false),
        ("server certificate", "server.pem", false),
    ] {
        let path = dir.join(file);
        let certs = tls::describe(&path).map_err(|e| e.to_string())?;
        for c in certs.iter().take(if all { usize::MAX } else { 1 }) {
            let days = (c.not_after - i64::try_from(now).unwrap_or(i64::MAX)) / 86_400;
            println!("{what}: {}", path.display());
            println!("  subject:     {}", c.subject);
            if !c.names.is_empty() {
                println!("  names:       {}", c.names.join(", "));
            }
            println!(
                "  valid:       {} until {} ({})",
                super::output::utc(c.not_before),
                super::output::utc(c.not_after),
                if days < 0 {
                    "EXPIRED".to_owned()
                } else {
                    format!("{days} days left")
                }
            );
            println!("  SHA-256:     {}", c.fingerprint);
        }
    }
    Ok(())
}

/// `tessera tls issue`: a new server certificate from the deployment's CA.
pub(super) fn tls_issue(data_dir: &Path, names: &[String]) -> Result<(), String> {
    use tessera_server::server::tls;
    let files = tls::reissue(data_dir, names).map_err(|e| e.to_string())?;
    let leaf = tls::describe(&files.server_chain).map_err(|e| e.to_string())?;
    println!(
        "issued a new server certificate for {} ({}); the previous one is {}.prev",
        names.join(", "),
        leaf[0].fingerprint,
        files.server_chain.display()
    );
    println!("devices keep trusting the same CA; reload the server (SIGHUP, `systemctl reload tessera`) to use it");
    Ok(())
}

/// `tessera tls rollover begin|finish`.
pub(super) fn tls_rollover(data_dir: &Path, finish: bool) -> Result<(), String> {
    use tessera_server::server::tls;
    if finish {
        let r = tls::rollover_finish(data_dir).map_err(|e| e.to_string())?;
        println!("the CA is now {} (was {})", r.new, r.old);
        println!("issued the server certificate from it; reload the server (SIGHUP) to use it");
        println!(
            "devices that trust {} (or pin both) keep connecting; once every device has \
             connected, they may drop the previous CA",
            r.bundle.display()
        );
    } else {
        let r = tls::rollover_begin(data_dir).map_err(|e| e.to_string())?;
        println!("made the next CA {}", r.new);
        println!("the current CA {} keeps serving", r.old);
        println!(
            "give every device {} (both CAs) or both pins: {},{}",
            r.bundle.display(),
            r.old,
            r.new
        );
        println!("then run `tessera tls rollover finish` and reload the server (SIGHUP)");
    }
    Ok(())
}

/// `tessera keys init-hsm`: make the root key inside the HSM and print the settings that use it.
pub(super) fn init_hsm(settings: &KeySettings) -> Result<(), String> {
    let cfg = settings
        .pkcs11()
        .map_err(|x| x.to_string())?
        .ok_or("pkcs11 settings")?;
    Pkcs11Keeper::init_root_key(&cfg).map_err(|x| x.to_string())?;
    let keeper = Pkcs11Keeper::open(&cfg).map_err(|x| x.to_string())?;
    let a = keeper.root_key_attributes().map_err(|x| x.to_string())?;
    println!(
        "created root key {:?}: extractable={} sensitive={} value readable={}",
        cfg.key_label, a.extractable, a.sensitive, a.value_readable
    );
    let token = match (&settings.token_label, settings.slot) {
        (Some(t), _) => format!("token_label = {t:?}\n"),
        (None, Some(s)) => format!("slot = {s}\n"),
        _ => String::new(),
    };
    println!(
        "configure the server with:\n[keys]\nkeeper = \"pkcs11\"\nmodule = {:?}\n{token}key_label = {:?}",
        settings.module.as_deref().unwrap_or(Path::new("")),
        cfg.key_label
    );
    Ok(())
}
