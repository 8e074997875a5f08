//! Commands that work on this host's files and devices rather than through the admin endpoint:
//! `tessera backup`, `tessera tls init` and `tessera keys init-hsm`.

use std::path::Path;

use tessera_engine::keys::Pkcs11Keeper;
use tessera_server::server::config::KeySettings;

/// `tessera backup`: an online copy of the store in `data_dir` (engine `store::backup`).
pub(super) fn backup(data_dir: &Path, out: &Path) -> Result<(), String> {
    let r = tessera_engine::store::backup(data_dir, out).map_err(|e| e.to_string())?;
    println!(
        "backup of {} written to {} ({} bytes, integrity checked); newest audit event: {}",
        data_dir.display(),
        out.display(),
        r.bytes,
        r.last_audit_seq
    );
    println!("the root key is not in it: keep root.key (or the HSM key) safe separately");
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
