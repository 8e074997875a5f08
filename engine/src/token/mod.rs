//! Token formats: provisioning tokens (PTs), registration tokens (RTs), operation secrets and
//! verification codes. docs/tokens.md specifies every byte; the test vectors in
//! `docs/token-vectors.json` are checked by the Rust, C and Python test suites.

pub mod code;
pub mod pt;
pub mod rt;

pub use code::{matches as code_matches, normalize_code, CODE_LEN};
pub use pt::{ParsedPt, PT_BINARY_LEN, PT_PREFIX, PT_TEXT_LEN, PT_VERSION};
pub use rt::{
    RtClaims, UntrustedRt, RT_BINARY_LEN, RT_BINDING_LIMIT, RT_MAC_INPUT_LEN, RT_PREFIX,
    RT_TEXT_LEN, RT_VERSION,
};
