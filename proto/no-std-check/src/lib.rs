//! Uses tessera-proto's token parsing and wire codec with only `core` and `alloc`.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;

use tessera_proto::token::{ParsedPt, UntrustedRt};
use tessera_proto::wire::{self, kind, messages::RtReq};

/// Frame a REFRESH for an RT read from flash, after checking its form.
pub fn refresh_frame(rt: &str) -> Option<Vec<u8>> {
    UntrustedRt::parse(rt.as_bytes()).ok()?;
    let body = serde_json::to_vec(&RtReq { rt: rt.into() }).ok()?;
    Some(wire::encode(kind::REFRESH, &body))
}

/// Whether a PT has the right form.
pub fn pt_well_formed(pt: &str) -> bool {
    ParsedPt::parse(pt.as_bytes()).is_ok()
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
