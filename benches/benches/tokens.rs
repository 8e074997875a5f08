//! Token benches: RT validation and minting against the bare HMAC floor and `jsonwebtoken`
//! HS256, and PT verification.
//!
//! `cargo bench -p tessera-benches --bench tokens`

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use tessera_benches::{bench_now, open, provision};
use tessera_engine::{Actor, PtSpec, RegistrationId};
use tessera_proto::token::{RtClaims, UntrustedRt};

/// The same claims an RT carries, as a JWT.
#[derive(Serialize, Deserialize)]
struct JwtClaims {
    sub: String,
    kid: u32,
    generation: u32,
    iat: u64,
    exp: u64,
}

fn rt_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let now = bench_now();
    let p = provision(&engine, 1, now).pop().expect("one device");
    let rt_text = p.rt.expose().as_bytes().to_vec();
    engine.validate_rt(&rt_text, now).expect("valid");

    // The floor: the same 33-byte MAC input and tag, verified with a prebuilt key.
    let floor_key = hmac::Key::new(hmac::HMAC_SHA256, &[9u8; 32]);
    let parsed = UntrustedRt::parse(&rt_text).expect("parse");
    let mac_input = parsed.mac_input().to_vec();
    let floor_tag = hmac::sign(&floor_key, &mac_input);

    let jwt_secret = [9u8; 32];
    let claims = p.claims;
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &JwtClaims {
            sub: claims.registration_id.to_string(),
            kid: claims.key_id,
            generation: claims.generation,
            iat: claims.issued_at,
            exp: claims.expires_at,
        },
        &EncodingKey::from_secret(&jwt_secret),
    )
    .expect("encode jwt");
    let jwt_key = DecodingKey::from_secret(&jwt_secret);
    let validation = Validation::new(Algorithm::HS256);
    jsonwebtoken::decode::<JwtClaims>(&jwt, &jwt_key, &validation).expect("jwt validates");

    // The same engine with its root in an HSM (SoftHSM2), when the PKCS#11 test token is set
    // up (scripts/softhsm-env.sh): validation must cost the same, since the HSM is only used
    // to derive working keys when the engine opens.
    let hsm = tessera_benches::pkcs11_from_env().map(|keeper| {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = tessera_engine::Engine::open_dir_with(
            dir.path(),
            keeper,
            tessera_benches::lenient_config(),
            now,
        )
        .expect("open with HSM");
        let p = provision(&e, 1, now).pop().expect("one device");
        (dir, e, p.rt.expose().as_bytes().to_vec())
    });

    let mut g = c.benchmark_group("rt_validate");
    g.bench_function("tessera", |b| {
        b.iter(|| engine.validate_rt(black_box(&rt_text), now).is_ok())
    });
    if let Some((_, e, rt)) = &hsm {
        e.validate_rt(rt, now).expect("valid under the HSM root");
        g.bench_function("tessera_pkcs11", |b| {
            b.iter(|| e.validate_rt(black_box(rt), now).is_ok())
        });
    }
    // A service on the server's host reading the same data directory from the side.
    let local = tessera_engine::LocalValidator::open(dir.path()).expect("local validator");
    local.validate(&rt_text, now).expect("valid locally");
    g.bench_function("local_validator", |b| {
        b.iter(|| local.validate(black_box(&rt_text), now).is_ok())
    });
    g.bench_function("hmac_floor", |b| {
        b.iter(|| hmac::verify(&floor_key, black_box(&mac_input), floor_tag.as_ref()).is_ok())
    });
    g.bench_function("jsonwebtoken_hs256", |b| {
        b.iter(|| jsonwebtoken::decode::<JwtClaims>(black_box(&jwt), &jwt_key, &validation).is_ok())
    });
    g.finish();

    // Where the time above the floor goes: the text decoding (the codec's base64 against
    // data-encoding on the same text) and the checksum, each alone.
    let mut g = c.benchmark_group("rt_parse");
    g.bench_function("tessera", |b| {
        b.iter(|| UntrustedRt::parse(black_box(&rt_text)).is_ok())
    });
    let body = &rt_text[tessera_proto::token::RT_PREFIX.len()..];
    g.bench_function("base64_decode", |b| {
        use base64::Engine;
        let mut out = [0u8; tessera_proto::token::RT_BINARY_LEN];
        b.iter(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode_slice_unchecked(black_box(body), &mut out)
                .is_ok()
        })
    });
    g.bench_function("data_encoding_decode", |b| {
        let mut out = [0u8; tessera_proto::token::RT_BINARY_LEN];
        b.iter(|| {
            data_encoding::BASE64URL_NOPAD
                .decode_mut(black_box(body), &mut out)
                .is_ok()
        })
    });
    g.bench_function("base64_simd_decode", |b| {
        let mut out = [0u8; tessera_proto::token::RT_BINARY_LEN];
        b.iter(|| {
            base64_simd::URL_SAFE_NO_PAD
                .decode(black_box(body), base64_simd::Out::from_slice(&mut out))
                .is_ok()
        })
    });
    let binary = parsed.to_bytes();
    g.bench_function("checksum", |b| {
        b.iter(|| {
            tessera_proto::codec::check_binary(tessera_proto::token::RT_PREFIX, black_box(&binary))
                .is_ok()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("rt_mint");
    let mint_claims = RtClaims {
        registration_id: RegistrationId::new(77),
        ..claims
    };
    g.bench_function("tessera", |b| {
        b.iter(|| black_box(&mint_claims).mint(&floor_key))
    });
    g.bench_function("hmac_floor", |b| {
        b.iter(|| hmac::sign(&floor_key, black_box(&mac_input)))
    });
    g.finish();

    let (_, pt) = engine
        .create_pt(&PtSpec::new("bench"), &Actor::operator("bench"), now)
        .expect("pt");
    engine.verify_pt(pt.expose(), now).expect("pt verifies");
    let mut g = c.benchmark_group("pt_verify");
    g.bench_function("tessera", |b| {
        b.iter(|| engine.verify_pt(black_box(pt.expose()), now).is_ok())
    });
    g.finish();
}

/// Opening an engine (deriving the working keys through the keeper, rebuilding the family
/// table) with each keeper, on a data directory holding 1,000 registrations.
fn open_benches(c: &mut Criterion) {
    let now = bench_now();
    let mut g = c.benchmark_group("engine_open");
    g.sample_size(20);
    let soft = tempfile::tempdir().expect("tempdir");
    drop(open(soft.path()));
    tessera_benches::seed_registrations(soft.path(), 1000, now).expect("seed");
    g.bench_function("software", |b| b.iter(|| open(soft.path())));
    if tessera_benches::pkcs11_from_env().is_some() {
        let hsm = tempfile::tempdir().expect("tempdir");
        let mk = || {
            let k = tessera_benches::pkcs11_from_env().expect("keeper");
            tessera_engine::Engine::open_dir_with(
                hsm.path(),
                k,
                tessera_benches::lenient_config(),
                now,
            )
            .expect("open")
        };
        drop(mk());
        tessera_benches::seed_registrations(hsm.path(), 1000, now).expect("seed");
        g.bench_function("pkcs11", |b| b.iter(mk));
    }
    g.finish();
}

criterion_group!(benches, rt_benches, open_benches);
criterion_main!(benches);
