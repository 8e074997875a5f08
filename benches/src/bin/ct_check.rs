//! Constant-time checks (dudect-style Welch t-test) for the two places where timing could leak
//! a secret:
//!
//! - `rt_mac_valid_vs_invalid`: the RT MAC check with the right tag against a wrong one;
//! - `rt_validate_first_vs_last_byte`: full `validate_rt` on forged tags that differ from the
//!   right one in the first byte against the last byte (does the comparison stop early?);
//! - `pt_verify_unknown_vs_wrong_secret`: full `verify_pt` on a PT whose id does not exist
//!   against a real PT id with a wrong secret;
//! - `code_first_vs_last_char`: the verification-code comparison with a typed code wrong in its
//!   first character against one wrong in its last.
//!
//! Run with `cargo run --release -p tessera-benches --bin ct_check` (add `-- --continuous
//! NAME` to keep sampling one test: the samples accumulate across rounds of 100,000, which is
//! how the long runs of docs/reliability.md reached tens of millions). |t| below 4.5 means no
//! leak was detected; docs/reliability.md records the figures.

use dudect_bencher::rand::RngCore;
use dudect_bencher::{ctbench_main, BenchRng, Class, CtRunner};
use tessera_benches::{bench_now, open, provision};
use tessera_engine::{Actor, Engine, PtSpec};
use tessera_proto::token::{UntrustedRt, RT_MAC_INPUT_LEN};

const SAMPLES: usize = 100_000;
/// Where the MAC sits in an RT's binary form, and where the MACed part ends.
const MAC: std::ops::Range<usize> = RT_MAC_INPUT_LEN..RT_MAC_INPUT_LEN + 32;

fn with_crc(prefix: &str, payload: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(payload);
    let mut bin = payload.to_vec();
    bin.extend_from_slice(&h.finalize().to_be_bytes());
    format!("{prefix}{}", data_encoding::BASE64URL_NOPAD.encode(&bin))
}

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    rt: Vec<u8>,
    pt: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let rt = provision(&engine, 1, bench_now())
        .pop()
        .expect("device")
        .rt
        .expose()
        .as_bytes()
        .to_vec();
    let (_, pt) = engine
        .create_pt(&PtSpec::new("ct"), &Actor::operator("ct"), bench_now())
        .expect("pt");
    Fixture {
        _dir: dir,
        engine,
        rt,
        pt: pt.expose().to_owned(),
    }
}

fn rt_mac_valid_vs_invalid(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let valid = UntrustedRt::parse(&f.rt).expect("parse");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3u8; 32]);
    // Re-MAC the same header under a local key so the tag is right for `key`.
    let mut bin = valid.to_bytes();
    bin[MAC].copy_from_slice(ring::hmac::sign(&key, valid.mac_input()).as_ref());
    let good = with_crc("tsrt_", &bin[..MAC.end]);
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        if rng.next_u32() & 1 == 0 {
            inputs.push((
                Class::Left,
                UntrustedRt::parse(good.as_bytes()).expect("parse"),
            ));
        } else {
            let mut b = bin;
            rng.fill_bytes(&mut b[MAC]);
            inputs.push((
                Class::Right,
                UntrustedRt::parse(with_crc("tsrt_", &b[..MAC.end]).as_bytes()).expect("parse"),
            ));
        }
    }
    for (class, rt) in inputs {
        runner.run_one(class, || rt.verify_mac(&key));
    }
}

fn rt_validate_first_vs_last_byte(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let bin = UntrustedRt::parse(&f.rt).expect("parse").to_bytes();
    let now = bench_now();
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut b = bin;
        let flip = (rng.next_u32() as u8) | 1;
        let class = if rng.next_u32() & 1 == 0 {
            b[MAC.start] ^= flip;
            Class::Left
        } else {
            b[MAC.end - 1] ^= flip;
            Class::Right
        };
        inputs.push((class, with_crc("tsrt_", &b[..MAC.end]).into_bytes()));
    }
    for (class, text) in inputs {
        runner.run_one(class, || f.engine.validate_rt(&text, now).is_ok());
    }
}

fn pt_verify_unknown_vs_wrong_secret(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = fixture();
    let now = bench_now();
    let mut bin = vec![0u8; 57];
    data_encoding::BASE64URL_NOPAD
        .decode_mut(&f.pt.as_bytes()["tspt_".len()..], &mut bin)
        .expect("decode pt");
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut b = bin.clone();
        let class = if rng.next_u32() & 1 == 0 {
            rng.fill_bytes(&mut b[5..21]); // unknown id
            Class::Left
        } else {
            Class::Right // the real id
        };
        rng.fill_bytes(&mut b[21..53]); // a wrong secret either way
        inputs.push((class, with_crc("tspt_", &b[..53])));
    }
    for (class, text) in inputs {
        runner.run_one(class, || f.engine.verify_pt(&text, now).is_ok());
    }
}

fn code_first_vs_last_char(runner: &mut CtRunner, rng: &mut BenchRng) {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut expected = [0u8; 8];
        for c in &mut expected {
            *c = ALPHABET[(rng.next_u32() % 32) as usize];
        }
        let mut typed = expected;
        let (class, at) = if rng.next_u32() & 1 == 0 {
            (Class::Left, 0)
        } else {
            (Class::Right, 7)
        };
        typed[at] = ALPHABET[(ALPHABET.iter().position(|&c| c == typed[at]).unwrap_or(0)
            + 1
            + (rng.next_u32() % 31) as usize)
            % 32];
        let text = format!(
            "{}-{}",
            std::str::from_utf8(&typed[..4]).unwrap_or_default(),
            std::str::from_utf8(&typed[4..]).unwrap_or_default()
        );
        inputs.push((class, expected, text));
    }
    for (class, expected, text) in inputs {
        runner.run_one(class, || {
            tessera_proto::token::code_matches(&expected, &text)
        });
    }
}

ctbench_main!(
    rt_mac_valid_vs_invalid,
    rt_validate_first_vs_last_byte,
    pt_verify_unknown_vs_wrong_secret,
    code_first_vs_last_char
);
