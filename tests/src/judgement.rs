//! The RT judgement table: every case an RT validator must decide, and what it must answer.
//! The engine, the local validator and the C service validator all run this one table
//! (`engine/tests/rt_judgement.rs`, `ffi/tests/c_api.rs`), so they cannot drift apart.
//!
//! Each case starts from a live registration whose RT has been refreshed once (generation 2,
//! so that an older generation exists), applies a [`State`], and presents that RT changed by
//! a [`Change`], re-minted with the registration's real RT key (read from the data
//! directory's validator key file) unless the change is to the key itself. Validators run with
//! the default clock-skew leeway, [`LEEWAY_SECS`].

use std::path::Path;

use ring::hmac;
use tessera_proto::token::{RtClaims, UntrustedRt};

/// The clock-skew leeway every validator in the table runs with (the engine's default).
pub const LEEWAY_SECS: u64 = 60;

/// What the RT presented differs in from the registration's current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the current RT itself.
    None,
    /// Its expiry, this many seconds from now (negative: in the past).
    ExpiresIn(i64),
    /// Its generation, by this much (−1: the one before; +1: one never issued).
    Generation(i32),
    /// Its binding: another registration that had the same id (after a restore).
    Binding,
    /// Its key epoch: one that is not live, the MAC made with the live epoch's key.
    Epoch,
    /// Its MAC: made with a key that is not the server's.
    Mac,
}

/// What happens to the registration before its RT is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing: it stays live.
    Live,
    /// It is revoked.
    Revoked,
}

/// What a validator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid, with the identity it carries.
    Valid,
    /// Not accepted (and nothing more said).
    Unauthenticated,
    /// Authentic and expired.
    Expired,
    /// Authentic and revoked, or its registration is gone.
    Revoked,
    /// Authentic and superseded by a newer generation.
    Superseded,
}

impl Outcome {
    /// The wire protocol's code for this outcome (`OK` when valid).
    pub fn wire_code(self) -> &'static str {
        match self {
            Outcome::Valid => "OK",
            Outcome::Unauthenticated => "UNAUTHENTICATED",
            Outcome::Expired => "EXPIRED",
            Outcome::Revoked => "REVOKED",
            Outcome::Superseded => "SUPERSEDED",
        }
    }
}

/// One case of the table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// What the case shows.
    pub name: &'static str,
    /// The registration's state.
    pub state: State,
    /// How the RT presented differs from the current one.
    pub change: Change,
    /// What every validator answers.
    pub expect: Outcome,
}

/// The table.
pub const CASES: &[Case] = &[
    Case {
        name: "the current generation, not expired",
        state: State::Live,
        change: Change::None,
        expect: Outcome::Valid,
    },
    Case {
        name: "expired, within the clock-skew leeway",
        state: State::Live,
        change: Change::ExpiresIn(-(LEEWAY_SECS as i64) / 2),
        expect: Outcome::Valid,
    },
    Case {
        name: "expired by exactly the leeway",
        state: State::Live,
        change: Change::ExpiresIn(-(LEEWAY_SECS as i64)),
        expect: Outcome::Expired,
    },
    Case {
        name: "expired long ago",
        state: State::Live,
        change: Change::ExpiresIn(-86_400),
        expect: Outcome::Expired,
    },
    Case {
        name: "superseded: the generation before the current one",
        state: State::Live,
        change: Change::Generation(-1),
        expect: Outcome::Superseded,
    },
    Case {
        name: "a generation above the current one (never issued: the store is the authority)",
        state: State::Live,
        change: Change::Generation(1),
        expect: Outcome::Revoked,
    },
    Case {
        name: "revoked",
        state: State::Revoked,
        change: Change::None,
        expect: Outcome::Revoked,
    },
    Case {
        name: "revoked and expired: expiry is said first",
        state: State::Revoked,
        change: Change::ExpiresIn(-86_400),
        expect: Outcome::Expired,
    },
    Case {
        name: "the wrong binding (another registration with the same id)",
        state: State::Live,
        change: Change::Binding,
        expect: Outcome::Revoked,
    },
    Case {
        name: "a key epoch that is not live",
        state: State::Live,
        change: Change::Epoch,
        expect: Outcome::Unauthenticated,
    },
    Case {
        name: "a MAC under another key",
        state: State::Live,
        change: Change::Mac,
        expect: Outcome::Unauthenticated,
    },
    Case {
        name: "a MAC under another key, of a revoked registration: nothing more is said",
        state: State::Revoked,
        change: Change::Mac,
        expect: Outcome::Unauthenticated,
    },
];

/// The RT keys of the live epochs, from a data directory's validator key file
/// (`validator.keys`: `{"rt_keys": [{"epoch": 1, "key": "<64 hex>"}, …], …}`).
pub fn rt_keys(data_dir: &Path) -> Vec<(u32, Vec<u8>)> {
    let text = std::fs::read(data_dir.join("validator.keys")).expect("validator.keys");
    let doc: serde_json::Value = serde_json::from_slice(&text).expect("validator.keys is JSON");
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    doc["rt_keys"]
        .as_array()
        .expect("rt_keys")
        .iter()
        .map(|e| {
            let epoch = e["epoch"].as_u64().expect("epoch") as u32;
            (epoch, hex(e["key"].as_str().expect("key")))
        })
        .collect()
}

/// The RT a case presents: `current` (the registration's current RT) changed as the case
/// says, at `now_secs`, minted under `keys` (from [`rt_keys`]).
pub fn present(case: &Case, current: &str, now_secs: u64, keys: &[(u32, Vec<u8>)]) -> String {
    let mut claims: RtClaims = UntrustedRt::parse(current.as_bytes())
        .expect("a current RT")
        .untrusted_claims();
    let live_key = keys
        .iter()
        .find(|(e, _)| *e == claims.key_id)
        .map(|(_, k)| hmac::Key::new(hmac::HMAC_SHA256, k))
        .expect("the RT's epoch is live");
    let mut key = live_key;
    match case.change {
        Change::None => {}
        Change::ExpiresIn(d) => claims.expires_at = now_secs.saturating_add_signed(d),
        Change::Generation(d) => claims.generation = claims.generation.saturating_add_signed(d),
        Change::Binding => claims.binding ^= 1,
        Change::Epoch => {
            claims.key_id = (1..1000)
                .find(|e| keys.iter().all(|(k, _)| k != e))
                .expect("an epoch that is not live");
        }
        Change::Mac => key = hmac::Key::new(hmac::HMAC_SHA256, &[0x5a; 32]),
    }
    claims.mint(&key).expose().to_owned()
}
