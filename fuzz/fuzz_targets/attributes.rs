#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera_proto::Attributes;

fuzz_target!(|data: &[u8]| {
    // Split the input into key/value pairs at 0x00 / 0x01 separators.
    let pairs: Vec<(&[u8], &[u8])> = data
        .split(|b| *b == 0)
        .filter_map(|p| {
            let mut it = p.splitn(2, |b| *b == 1);
            Some((it.next()?, it.next()?))
        })
        .collect();
    if let Ok(a) = Attributes::from_raw(&pairs) {
        for (k, v) in a.iter() {
            assert!(k.len() <= 32 && v.len() <= 128);
        }
    }
    let _ = tessera_proto::DeviceId::new(String::from_utf8_lossy(data).into_owned());
});
