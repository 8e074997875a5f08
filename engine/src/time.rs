//! Time as the engine sees it: always passed in by the caller, never read from a clock. The
//! type is the protocol's, since records carry it.

pub use tessera_proto::Timestamp;
