#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera_proto::token::UntrustedRt;

fuzz_target!(|data: &[u8]| {
    if let Ok(rt) = UntrustedRt::parse(data) {
        // Whatever parses must round-trip through the binary form.
        let again = UntrustedRt::from_bytes(&rt.to_bytes()).expect("binary form of a parsed RT");
        assert_eq!(again.untrusted_claims(), rt.untrusted_claims());
    }
    let _ = UntrustedRt::from_bytes(data);
});
