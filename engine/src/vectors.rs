//! Test vectors for the token formats (docs/token-vectors.json).
//!
//! Everything here is derived from fixed inputs, so the output is byte-for-byte stable. The
//! Rust, C and Python test suites check their implementations against the committed file, and
//! the Rust suite regenerates it and fails on any difference.

use ring::hmac;
use serde_json::{json, Value};

use crate::keys::{context, KeyKeeper, Purpose, SoftwareKeeper};
use crate::model::{OperationId, RegistrationId};
use tessera_proto::codec;
use tessera_proto::token::{code, pt, RtClaims};

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

/// Generate the vectors document.
pub fn generate() -> Value {
    let root = [0x42u8; 32];
    let keeper = SoftwareKeeper::from_bytes(root);
    let derive = |p: Purpose, epoch: u32| {
        let k = keeper
            .derive(&context(p, epoch))
            .unwrap_or_else(|_| unreachable!("software keeper"));
        (
            hex(k.expose()),
            hmac::Key::new(hmac::HMAC_SHA256, k.expose()),
        )
    };
    let (rt_hex, rt_key) = derive(Purpose::RtMac, 1);
    let (pt_hex, pt_key) = derive(Purpose::PtVerifier, 1);
    let (op_hex, op_key) = derive(Purpose::OperationSecret, 1);
    let (code_hex, code_key) = derive(Purpose::VerificationCode, 1);
    let (admin_hex, _) = derive(Purpose::AdminVerifier, 1);

    let secret = [0x5au8; 32];
    let (pt_text, pt_id, verifier) = pt::mint(1, &pt_key, &secret);

    let claims = RtClaims {
        key_id: 1,
        registration_id: RegistrationId::new(1234),
        binding: 0x00ba_dcaf,
        generation: 7,
        issued_at: 1_800_000_000,
        expires_at: 1_802_592_000,
    };
    let rt = claims.mint(&rt_key);
    let rt_bin = tessera_proto::token::UntrustedRt::parse(rt.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("fresh RT parses"))
        .to_bytes();

    let op_id = OperationId::from_bytes([0x11; 16]);
    let op_secret = hmac::sign(&op_key, &op_id.to_bytes());
    let op_secret_text = codec::encode("tsos_", op_secret.as_ref());
    let code = code::display(&code::derive(&code_key, &op_id.to_bytes()));

    // Negative vectors: each is the valid token altered in one way.
    let rt_s = rt.expose();
    let flip_last = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        let last = b.len() - 1;
        b[last] = if b[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap_or_default()
    };
    // Version 1, the layout before the binding, is refused.
    let mut v1 = rt_bin;
    v1[0] = 1;
    let v1_text = codec::encode("tsrt_", &v1[..rt_bin.len() - 4]);
    let mut forged = rt_bin;
    forged[40] ^= 1;
    let forged_text = codec::encode("tsrt_", &forged[..rt_bin.len() - 4]);

    json!({
        "description": "Tessera token test vectors; see docs/tokens.md. All byte strings are lowercase hex.",
        "root_key": hex(&root),
        "key_derivation": {
            "formula": "HMAC-SHA256(root, \"tessera/v1/\" || purpose || \"/\" || u32_be(epoch))",
            "epoch": 1,
            "rt-mac": rt_hex,
            "pt-verifier": pt_hex,
            "op-secret": op_hex,
            "code": code_hex,
            "admin-verifier": admin_hex,
            "context_rt_mac_hex": hex(&context(Purpose::RtMac, 1)),
        },
        "pt": {
            "epoch": 1,
            "secret": hex(&secret),
            "verifier": hex(&verifier),
            "id": pt_id.to_string(),
            "text": pt_text.expose(),
        },
        "rt": {
            "key_id": claims.key_id,
            "registration_id": claims.registration_id.get(),
            "binding": claims.binding,
            "generation": claims.generation,
            "issued_at": claims.issued_at,
            "expires_at": claims.expires_at,
            "mac_input": hex(&rt_bin[..tessera_proto::token::RT_MAC_INPUT_LEN]),
            "binary": hex(&rt_bin),
            "text": rt_s,
        },
        "operation": {
            "id": op_id.to_string(),
            "id_bytes": hex(&op_id.to_bytes()),
            "secret_text": op_secret_text,
            "verification_code": code.expose(),
        },
        "invalid": [
            { "kind": "rt", "text": rt_s.replacen("tsrt_", "tsrx_", 1), "error": "wrong_prefix" },
            { "kind": "rt", "text": &rt_s[..rt_s.len() - 1], "error": "wrong_length" },
            { "kind": "rt", "text": format!("{rt_s}A"), "error": "wrong_length" },
            { "kind": "rt", "text": flip_last(rt_s), "error": "bad_encoding_or_checksum" },
            { "kind": "rt", "text": rt_s.replacen('A', "*", 1).replacen('B', "*", 1).replacen('C', "*", 1).replacen('D', "*", 1), "error": "bad_encoding" },
            { "kind": "rt", "text": v1_text, "error": "unknown_version" },
            { "kind": "rt", "text": forged_text, "error": "unauthenticated" },
            { "kind": "pt", "text": pt_text.expose().replacen("tspt_", "tsrt_", 1), "error": "wrong_prefix" },
            { "kind": "pt", "text": &pt_text.expose()[..pt_text.expose().len() - 2], "error": "wrong_length" },
            { "kind": "pt", "text": flip_last(pt_text.expose()), "error": "bad_encoding_or_checksum" },
        ],
    })
}
