//! Provisioning tokens.
//!
//! Binary layout (57 bytes, integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version (1) |
//! | 1 | 4 | key epoch of the PT verifier key |
//! | 5 | 16 | selector tag: the first 16 bytes of the verifier |
//! | 21 | 32 | secret (random) |
//! | 53 | 4 | CRC-32 over `"tspt_"` and bytes 0..53 |
//!
//! The verifier is `HMAC-SHA256(pt_key[epoch], secret)`; the store keeps only the verifier. The
//! public PT id is `epoch || tag` (20 bytes, shown as `pt_…`). Because the tag is derived from
//! the secret under a key the attacker does not have, a presented PT is first checked by
//! recomputing the verifier and comparing its first 16 bytes with the tag — before any lookup.
//! A PT with an unknown id and a known id with a wrong secret therefore fail at the same step,
//! along the same path, in the same time.

#[cfg(feature = "mac")]
use alloc::string::String;

#[cfg(feature = "mac")]
use ring::hmac;
#[cfg(feature = "mac")]
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec;
use crate::error::TokenFormatError;
use crate::ids::PtId;
#[cfg(feature = "mac")]
use crate::secret::ProvisioningToken;

/// Text prefix of every PT.
pub const PT_PREFIX: &str = "tspt_";
/// The only PT version this engine knows.
pub const PT_VERSION: u8 = 1;
/// Length of a PT's secret.
pub const SECRET_LEN: usize = 32;
const PAYLOAD_LEN: usize = 1 + 4 + 16 + SECRET_LEN;
/// Length of the binary form, checksum included.
pub const PT_BINARY_LEN: usize = PAYLOAD_LEN + codec::CHECKSUM_LEN;
/// Length of the text form.
pub const PT_TEXT_LEN: usize = codec::text_len(PT_PREFIX, PT_BINARY_LEN);

/// A PT whose format has been checked; its secret has not been verified.
pub struct ParsedPt {
    id: PtId,
    // Read only by the keyed check, which needs the `mac` feature.
    #[cfg_attr(not(feature = "mac"), allow(dead_code))]
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl core::fmt::Debug for ParsedPt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParsedPt")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ParsedPt {
    /// Parse the text form; checks prefix, length, alphabet, checksum and version.
    pub fn parse(text: &[u8]) -> Result<Self, TokenFormatError> {
        Self::parse_with_prefix(PT_PREFIX, text)
    }

    /// Parse a token of the same layout under another prefix (admin tokens use `tsat_`).
    pub fn parse_with_prefix(prefix: &str, text: &[u8]) -> Result<Self, TokenFormatError> {
        let mut bin = Zeroizing::new([0u8; PT_BINARY_LEN]);
        codec::decode_into(prefix, text, &mut bin[..])?;
        if bin[0] != PT_VERSION {
            return Err(TokenFormatError::UnknownVersion);
        }
        let mut id = [0u8; PtId::LEN];
        id.copy_from_slice(&bin[1..21]);
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        secret.copy_from_slice(&bin[21..21 + SECRET_LEN]);
        Ok(Self {
            id: PtId::from_bytes(id),
            secret,
        })
    }

    /// The PT id as presented (not yet authenticated).
    pub fn untrusted_id(&self) -> PtId {
        self.id
    }

    /// Recompute the verifier under `key` and check it against the selector tag in constant
    /// time. Returns the verifier for the second check against the store.
    ///
    /// # Security
    /// The attacker controls the whole token. Whatever the id, this runs one HMAC and one
    /// 16-byte constant-time comparison, so it reveals neither whether the id exists nor how
    /// much of the secret matched.
    #[cfg(feature = "mac")]
    pub fn check_tag(&self, key: &hmac::Key) -> (bool, Zeroizing<[u8; 32]>) {
        let verifier = compute_verifier(key, &self.secret);
        let ok = verifier[..16].ct_eq(self.id.tag()).into();
        (ok, verifier)
    }
}

/// The verifier of a PT secret: `HMAC-SHA256(key, secret)`.
#[cfg(feature = "mac")]
pub fn compute_verifier(key: &hmac::Key, secret: &[u8; SECRET_LEN]) -> Zeroizing<[u8; 32]> {
    let tag = hmac::sign(key, secret);
    let mut v = Zeroizing::new([0u8; 32]);
    v.copy_from_slice(tag.as_ref());
    v
}

/// Make a new PT from a fresh secret: returns the text (shown once), the id and the verifier.
#[cfg(feature = "mac")]
pub fn mint(
    epoch: u32,
    key: &hmac::Key,
    secret: &[u8; SECRET_LEN],
) -> (ProvisioningToken, PtId, [u8; 32]) {
    let (text, id, v) = mint_with_prefix(PT_PREFIX, epoch, key, secret);
    (ProvisioningToken::new(text), id, v)
}

/// Make a token of the PT layout under `prefix`.
#[cfg(feature = "mac")]
pub fn mint_with_prefix(
    prefix: &str,
    epoch: u32,
    key: &hmac::Key,
    secret: &[u8; SECRET_LEN],
) -> (String, PtId, [u8; 32]) {
    let verifier = compute_verifier(key, secret);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&verifier[..16]);
    let id = PtId::new(epoch, tag);
    let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
    payload[0] = PT_VERSION;
    payload[1..21].copy_from_slice(&id.to_bytes());
    payload[21..].copy_from_slice(secret);
    let text = codec::encode(prefix, &payload[..]);
    (text, id, *verifier)
}

#[cfg(all(test, feature = "mac"))]
mod tests {
    use super::*;

    #[test]
    fn mint_parse_check() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
        let (text, id, verifier) = mint(3, &key, &[9u8; 32]);
        assert_eq!(text.expose().len(), PT_TEXT_LEN);
        let parsed = ParsedPt::parse(text.expose().as_bytes()).unwrap();
        assert_eq!(parsed.untrusted_id(), id);
        assert_eq!(id.epoch(), 3);
        let (ok, v) = parsed.check_tag(&key);
        assert!(ok);
        assert_eq!(*v, verifier);
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[2u8; 32]);
        assert!(!parsed.check_tag(&other).0);
        assert!(!format!("{parsed:?}").contains("secret:"));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
        let (text, _, _) = mint(1, &key, &[5u8; 32]);
        let t = text.expose().as_bytes();
        for n in 0..t.len() {
            assert!(ParsedPt::parse(&t[..n]).is_err());
        }
        let mut long = t.to_vec();
        long.extend_from_slice(b"AA");
        assert!(ParsedPt::parse(&long).is_err());
        for i in 0..t.len() {
            for bit in 0..8 {
                let mut m = t.to_vec();
                m[i] ^= 1 << bit;
                let ok = ParsedPt::parse(&m)
                    .map(|p| p.check_tag(&key).0)
                    .unwrap_or(false);
                assert!(!ok, "bit flip at {i}/{bit} accepted");
            }
        }
    }
}
