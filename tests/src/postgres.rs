//! PostgreSQL for the test suites: scripts/test-all.sh starts a server in a temporary
//! directory and runs the engine's and the end-to-end suites a second time with
//! `TESSERA_TEST_STORE=postgres://…`. Each test gets a schema of its own, named after its
//! temporary directory, so tests run side by side and a reopened store finds its data again.

use std::path::Path;

/// The database URL when the suite runs on PostgreSQL (`TESSERA_TEST_STORE=postgres://…`).
pub fn base_url() -> Option<String> {
    std::env::var("TESSERA_TEST_STORE")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    base_url().is_some()
}

/// The schema of the test whose data lives in `dir`: `t_` and 24 hex digits of the path's
/// SHA-256 (a valid, unquoted identifier, the same for the same directory).
pub fn schema_for(dir: &Path) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, dir.as_os_str().as_encoded_bytes());
    std::iter::once("t_".to_owned())
        .chain(digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")))
        .collect()
}
