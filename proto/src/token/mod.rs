//! Token formats: provisioning tokens (PTs), registration tokens (RTs), admin tokens, operation
//! secrets and verification codes. docs/tokens.md specifies every byte; the test vectors in
//! `docs/token-vectors.json` are checked by the Rust, C and Python test suites.
//!
//! Parsing checks form only (prefix, length, alphabet, checksum, version) and needs no key.
//! Minting and verifying need the keys and the `mac` feature.

pub mod code;
pub mod judge;
pub mod op;
pub mod pt;
pub mod rt;

pub use code::{matches as code_matches, normalize_code, CODE_LEN};
pub use judge::{admit, judge, settle, FamilyState, RtRefusal, Standing};
pub use pt::{ParsedPt, PT_BINARY_LEN, PT_PREFIX, PT_TEXT_LEN, PT_VERSION};
pub use rt::{
    RtClaims, UntrustedRt, RT_BINARY_LEN, RT_BINDING_LIMIT, RT_MAC_INPUT_LEN, RT_MAC_LEN,
    RT_PREFIX, RT_TEXT_LEN, RT_VERSION,
};

/// Text prefix of every admin token. Admin tokens have the PT layout under this prefix
/// ([`ParsedPt::parse_with_prefix`]).
pub const ADMIN_TOKEN_PREFIX: &str = "tsat_";
