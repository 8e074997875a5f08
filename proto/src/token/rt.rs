//! Registration tokens.
//!
//! Binary layout (72 bytes, all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version (2) |
//! | 1 | 4 | key id (epoch of the RT MAC key) |
//! | 5 | 8 | registration id |
//! | 13 | 3 | binding: 24 random bits drawn when the registration is created |
//! | 16 | 4 | generation |
//! | 20 | 8 | issued at, Unix seconds |
//! | 28 | 8 | expires at, Unix seconds |
//! | 36 | 32 | HMAC-SHA256 over bytes 0..36 under the epoch's RT key |
//! | 68 | 4 | CRC-32 over `"tsrt_"` and bytes 0..68 |
//!
//! The binding ties every RT to the one registration it was minted for: validation compares it
//! with the registration's own, so an RT can never validate as another registration that later
//! got the same id (a store restored from a backup hands out ids again). The MAC input is 36
//! bytes (≤ 55), so one HMAC-SHA256 costs two SHA-256 compressions on top of the precomputed
//! key state; the binary form stays a multiple of three bytes, so the text has no spare bits.
//! Text form: `tsrt_` + base64url without padding (96 characters).

#[cfg(feature = "mac")]
use ring::hmac;

use crate::codec;
use crate::error::TokenFormatError;
use crate::ids::RegistrationId;
#[cfg(feature = "mac")]
use crate::secret::RegistrationToken;

/// Text prefix of every RT.
pub const RT_PREFIX: &str = "tsrt_";
/// The only RT version this engine knows (version 1, before the binding, is refused).
pub const RT_VERSION: u8 = 2;
/// Length of the MACed header.
pub const RT_MAC_INPUT_LEN: usize = 36;
/// Bindings are below this bound (24 bits).
pub const RT_BINDING_LIMIT: u32 = 1 << 24;
/// Length of the MAC.
pub const RT_MAC_LEN: usize = 32;
/// Length of the binary form, checksum included.
pub const RT_BINARY_LEN: usize = RT_MAC_INPUT_LEN + RT_MAC_LEN + codec::CHECKSUM_LEN;
/// Length of the text form.
pub const RT_TEXT_LEN: usize = codec::text_len(RT_PREFIX, RT_BINARY_LEN);
// One text form per token: base64url of a multiple of three bytes has no spare bits.
const _: () = assert!(RT_BINARY_LEN % 3 == 0 && RT_MAC_INPUT_LEN <= 55);

/// The fields an RT carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtClaims {
    /// Epoch of the key the RT was MACed with.
    pub key_id: u32,
    /// The registration (RT family) the token belongs to.
    pub registration_id: RegistrationId,
    /// The registration's binding (below [`RT_BINDING_LIMIT`]): drawn at random when the
    /// registration is created, the same in every generation, compared with the
    /// registration's own on validation. Minting uses its low 24 bits.
    pub binding: u32,
    /// Generation within the family; refresh returns generation + 1.
    pub generation: u32,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry time, Unix seconds.
    pub expires_at: u64,
}

impl RtClaims {
    /// The 36 bytes the MAC covers.
    pub fn mac_input(&self) -> [u8; RT_MAC_INPUT_LEN] {
        let mut h = [0u8; RT_MAC_INPUT_LEN];
        h[0] = RT_VERSION;
        h[1..5].copy_from_slice(&self.key_id.to_be_bytes());
        h[5..13].copy_from_slice(&self.registration_id.get().to_be_bytes());
        h[13..16].copy_from_slice(&self.binding.to_be_bytes()[1..]);
        h[16..20].copy_from_slice(&self.generation.to_be_bytes());
        h[20..28].copy_from_slice(&self.issued_at.to_be_bytes());
        h[28..36].copy_from_slice(&self.expires_at.to_be_bytes());
        h
    }

    /// Mint the RT for these claims under `key` (the RT key of epoch `self.key_id`).
    ///
    /// Minting is deterministic: the same claims and key give the same token, which is what
    /// makes a refresh retry inside the grace window idempotent. The engine mints with keys
    /// derived from its root; this is public for benchmarks and independent implementations.
    #[cfg(feature = "mac")]
    pub fn mint(&self, key: &hmac::Key) -> RegistrationToken {
        let mut bin = [0u8; RT_MAC_INPUT_LEN + RT_MAC_LEN];
        let header = self.mac_input();
        bin[..RT_MAC_INPUT_LEN].copy_from_slice(&header);
        bin[RT_MAC_INPUT_LEN..].copy_from_slice(hmac::sign(key, &header).as_ref());
        RegistrationToken::new(codec::encode(RT_PREFIX, &bin))
    }
}

/// An RT whose format has been checked but whose MAC has not.
///
/// Accessors are named `untrusted_*`: nothing read from here may be acted on until
/// the engine (or a validator holding the RT keys) has verified the MAC.
#[derive(Clone)]
pub struct UntrustedRt {
    bin: [u8; RT_BINARY_LEN],
}

impl core::fmt::Debug for UntrustedRt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The token is a bearer credential; show only its public claims.
        f.debug_struct("UntrustedRt")
            .field("claims", &self.untrusted_claims())
            .finish()
    }
}

impl UntrustedRt {
    /// Parse the text form. Checks prefix, length, alphabet, checksum and version; does not
    /// allocate.
    #[inline]
    pub fn parse(text: &[u8]) -> Result<Self, TokenFormatError> {
        let mut bin = [0u8; RT_BINARY_LEN];
        codec::decode_into(RT_PREFIX, text, &mut bin)?;
        Self::check_version(bin)
    }

    /// Parse the binary form (72 bytes, checksum included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenFormatError> {
        let bin: [u8; RT_BINARY_LEN] = bytes
            .try_into()
            .map_err(|_| TokenFormatError::WrongLength)?;
        codec::check_binary(RT_PREFIX, &bin)?;
        Self::check_version(bin)
    }

    #[inline]
    fn check_version(bin: [u8; RT_BINARY_LEN]) -> Result<Self, TokenFormatError> {
        if bin[0] != RT_VERSION {
            return Err(TokenFormatError::UnknownVersion);
        }
        Ok(Self { bin })
    }

    /// The binary form (72 bytes).
    pub fn to_bytes(&self) -> [u8; RT_BINARY_LEN] {
        self.bin
    }

    /// The claims, not yet authenticated.
    #[inline]
    pub fn untrusted_claims(&self) -> RtClaims {
        let b = &self.bin;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        RtClaims {
            key_id: u32_at(1),
            registration_id: RegistrationId::new(u64_at(5)),
            binding: u32::from_be_bytes([0, b[13], b[14], b[15]]),
            generation: u32_at(16),
            issued_at: u64_at(20),
            expires_at: u64_at(28),
        }
    }

    /// The key epoch it names, not yet authenticated: which key to check its MAC with.
    #[inline]
    pub fn untrusted_key_id(&self) -> u32 {
        let b = &self.bin;
        u32::from_be_bytes([b[1], b[2], b[3], b[4]])
    }

    /// The 36 bytes the MAC covers.
    pub fn mac_input(&self) -> &[u8] {
        &self.bin[..RT_MAC_INPUT_LEN]
    }

    /// The MAC as presented.
    pub fn mac(&self) -> &[u8] {
        &self.bin[RT_MAC_INPUT_LEN..RT_MAC_INPUT_LEN + RT_MAC_LEN]
    }

    /// Verify the MAC in constant time (`ring::hmac::verify`).
    #[cfg(feature = "mac")]
    #[inline]
    pub fn verify_mac(&self, key: &hmac::Key) -> bool {
        hmac::verify(
            key,
            &self.bin[..RT_MAC_INPUT_LEN],
            &self.bin[RT_MAC_INPUT_LEN..RT_MAC_INPUT_LEN + RT_MAC_LEN],
        )
        .is_ok()
    }
}

#[cfg(all(test, feature = "mac"))]
mod tests {
    use super::*;

    fn claims() -> RtClaims {
        RtClaims {
            key_id: 1,
            registration_id: RegistrationId::new(42),
            binding: 0x5e_d123,
            generation: 3,
            issued_at: 1_700_000_000,
            expires_at: 1_702_592_000,
        }
    }

    #[test]
    fn mint_parse_verify() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let rt = claims().mint(&key);
        assert_eq!(rt.expose().len(), RT_TEXT_LEN);
        let parsed = UntrustedRt::parse(rt.expose().as_bytes()).unwrap();
        assert_eq!(parsed.untrusted_claims(), claims());
        assert!(parsed.verify_mac(&key));
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]);
        assert!(!parsed.verify_mac(&other));
        let again = UntrustedRt::from_bytes(&parsed.to_bytes()).unwrap();
        assert_eq!(again.untrusted_claims(), claims());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
        let rt = claims().mint(&key);
        let text = rt.expose().as_bytes();
        for n in 0..text.len() {
            assert!(
                UntrustedRt::parse(&text[..n]).is_err(),
                "truncation to {n} accepted"
            );
        }
        let mut long = text.to_vec();
        long.push(b'A');
        assert_eq!(
            UntrustedRt::parse(&long).unwrap_err(),
            TokenFormatError::WrongLength
        );
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut t = text.to_vec();
                t[i] ^= 1 << bit;
                // Either the format check or the MAC rejects it; never both pass.
                let ok = UntrustedRt::parse(&t)
                    .map(|p| p.verify_mac(&key))
                    .unwrap_or(false);
                assert!(!ok, "bit flip at {i}/{bit} accepted");
            }
        }
        let bin = UntrustedRt::parse(text).unwrap().to_bytes();
        for i in 0..bin.len() {
            for bit in 0..8 {
                let mut b = bin;
                b[i] ^= 1 << bit;
                assert!(
                    UntrustedRt::from_bytes(&b).is_err(),
                    "binary flip at {i}/{bit}"
                );
            }
        }
    }

    #[test]
    fn unknown_version_is_reported_after_checksum() {
        let mut bin = [0u8; RT_MAC_INPUT_LEN + RT_MAC_LEN];
        bin[0] = 1;
        let text = codec::encode(RT_PREFIX, &bin);
        assert_eq!(
            UntrustedRt::parse(text.as_bytes()).unwrap_err(),
            TokenFormatError::UnknownVersion
        );
    }
}
