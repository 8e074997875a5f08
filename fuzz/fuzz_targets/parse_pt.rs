#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera_proto::token::{normalize_code, ParsedPt};

fuzz_target!(|data: &[u8]| {
    if let Ok(pt) = ParsedPt::parse(data) {
        let _ = pt.untrusted_id().to_string();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = normalize_code(s);
        let _ = s.parse::<tessera_proto::PtId>();
        let _ = s.parse::<tessera_proto::OperationId>();
        let _ = s.parse::<tessera_engine::model::AttributeRule>();
    }
});
