//! The lines `tessera serve` prints about where it listens, and how tools read them back.

use std::net::SocketAddr;

/// Start of the line naming the device endpoint.
pub const DEVICE: &str = "tessera serving devices on";
/// Start of the line naming the admin endpoint.
pub const ADMIN: &str = "admin endpoint on";
/// Start of the line giving the console's URL.
pub const CONSOLE: &str = "console:";

/// Arguments that make `tessera serve` listen on ephemeral loopback ports; tools and tests
/// read the chosen addresses back from the lines above.
pub const EPHEMERAL_SERVE: [&str; 7] = [
    "serve",
    "--device-addr",
    "127.0.0.1:0",
    "--admin-addr",
    "127.0.0.1:0",
    "--console-addr",
    "127.0.0.1:0",
];

/// The address on `line` if it starts with `prefix`.
pub fn address(line: &str, prefix: &str) -> Option<SocketAddr> {
    line.strip_prefix(prefix)?
        .split_whitespace()
        .find_map(|w| w.parse().ok())
}
