#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera_proto::wire::{self, messages};

fuzz_target!(|data: &[u8]| {
    for cap in [wire::frame::DEVICE_REQUEST_MAX, 64] {
        if let Ok(f) = wire::decode(data, cap) {
            assert!(f.body.len() <= cap);
            // Re-encoding a decoded frame gives the same bytes.
            assert_eq!(wire::encode(f.kind, f.body), data);
            let _ = serde_json::from_slice::<messages::BeginReq>(f.body);
            let _ = serde_json::from_slice::<messages::WaitReq>(f.body);
            let _ = serde_json::from_slice::<messages::RtReq>(f.body);
            let _ = serde_json::from_slice::<messages::AdminReq>(f.body);
            let _ = serde_json::from_slice::<messages::ErrorBody>(f.body);
        }
        let _ = wire::decode_all(data, cap);
    }
});
