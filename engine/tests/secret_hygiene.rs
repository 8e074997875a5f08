//! Every secret-holding type redacts itself: formatting it with `Debug` shows no secret bytes,
//! in any encoding. (None of them implements `Display`.) The end-to-end counterpart, a debug
//! log of a whole flow, is `server/tests/cli.rs`.

mod common;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER};
use tessera_engine::keys::{KeyKeeper, Pkcs11Config, SoftwareKeeper};
use tessera_engine::token::ParsedPt;
use tessera_engine::{
    AdminToken, KeyBytes, OperationSecret, ProvisioningToken, RegistrationToken, VerificationCode,
};

/// The forms a secret could leak in.
fn forms(secret: &[u8]) -> Vec<String> {
    vec![
        HEXLOWER.encode(secret),
        BASE64URL_NOPAD.encode(secret),
        format!("{secret:?}"),
        String::from_utf8_lossy(secret).into_owned(),
    ]
}

fn assert_redacted(what: &str, debug: &str, secret: &[u8]) {
    for f in forms(secret) {
        if f.len() >= 8 {
            assert!(
                !debug.contains(&f),
                "{what}: Debug output contains the secret ({f})"
            );
        }
    }
}

#[test]
fn secret_types_redact_themselves() {
    let text = "tspt_AQAAAAGYrTXUtiUQZ8nIfVpMLagDWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlqUSl1J";
    assert_redacted(
        "ProvisioningToken",
        &format!("{:?}", ProvisioningToken::new(text.into())),
        text.as_bytes(),
    );
    assert_redacted(
        "RegistrationToken",
        &format!("{:?}", RegistrationToken::new(text.into())),
        text.as_bytes(),
    );
    assert_redacted(
        "OperationSecret",
        &format!("{:?}", OperationSecret::new(text.into())),
        text.as_bytes(),
    );
    assert_redacted(
        "AdminToken",
        &format!("{:?}", AdminToken::new(text.into())),
        text.as_bytes(),
    );
    assert_redacted(
        "VerificationCode",
        &format!("{:?}", VerificationCode::new("ABCD-EFGH".into())),
        b"ABCD-EFGH",
    );
    assert_redacted(
        "ParsedPt",
        &format!("{:?}", ParsedPt::parse(text.as_bytes()).unwrap()),
        &[0x5a; 32],
    );

    let key = [0x42u8; 32];
    assert_redacted("KeyBytes", &format!("{:?}", KeyBytes::new(key)), &key);
    let keeper = SoftwareKeeper::from_bytes(key);
    assert_redacted("SoftwareKeeper", &format!("{keeper:?}"), &key);
    let derived = keeper.derive(b"ctx").unwrap();
    assert_redacted(
        "derived KeyBytes",
        &format!("{derived:?}"),
        derived.expose(),
    );

    let cfg = Pkcs11Config {
        module: "/x.so".into(),
        token_label: Some("t".into()),
        slot: None,
        pin: "pin-31415926".to_owned().into(),
        key_label: "k".into(),
    };
    assert_redacted("Pkcs11Config", &format!("{cfg:?}"), b"pin-31415926");

    // A whole engine, after a full flow, prints none of the secrets it handled.
    let h = common::Harness::new();
    let p = h.provision("hygiene");
    let dump = format!("{:?}{:?}", h.engine, p.claims);
    assert_redacted("Engine", &dump, p.rt.expose().as_bytes());
    let root = std::fs::read_to_string(h.dir.path().join("root.key")).ok();
    if let Some(root) = root {
        assert_redacted("Engine", &dump, root.trim().as_bytes());
    }
}

/// Every type that holds a secret wipes it when dropped: each promises `ZeroizeOnDrop`, which
/// it keeps by holding its bytes in `zeroize::Zeroizing`. (What is freed cannot be read back
/// without `unsafe`, so this is checked where the promise is made, at compile time; the wire
/// buffers' counterpart is in `tests/tests/e2e/hardening.rs`, and docs/reliability.md lists
/// what cannot be wiped.)
#[test]
fn secret_types_wipe_on_drop() {
    fn wipes<T: zeroize::ZeroizeOnDrop>(_: &T) {}
    wipes(&ProvisioningToken::new("tspt_x".into()));
    wipes(&RegistrationToken::new("tsrt_x".into()));
    wipes(&OperationSecret::new("tsos_x".into()));
    wipes(&AdminToken::new("tsat_x".into()));
    wipes(&VerificationCode::new("ABCD-EFGH".into()));
    wipes(&KeyBytes::new([7; 32]));
}
