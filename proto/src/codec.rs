//! The text form shared by every token kind: `prefix + base64url(payload || crc32)`.
//!
//! The CRC-32 (IEEE) is computed over the prefix and the payload, so a secret scanner can tell
//! a real token from a random string offline, and a mistyped or truncated token is reported as
//! such before any key is touched. It is not a security mechanism: authenticity comes from the
//! MAC (RTs) or the keyed verifier (PTs).

use alloc::string::String;
use alloc::vec::Vec;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::TokenFormatError;

/// Length of the checksum appended to every binary token.
pub const CHECKSUM_LEN: usize = 4;

/// The checksum of `payload` under `prefix`.
#[inline]
pub fn checksum(prefix: &str, payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(payload);
    h.finalize().to_be_bytes()
}

/// Length of the text form of an `n`-byte binary token (checksum included) under `prefix`.
pub const fn text_len(prefix: &str, binary_len: usize) -> usize {
    prefix.len() + (binary_len * 8).div_ceil(6)
}

/// Append the checksum to `payload` and encode it under `prefix`.
pub fn encode(prefix: &str, payload: &[u8]) -> String {
    let mut binary = Vec::with_capacity(payload.len() + CHECKSUM_LEN);
    binary.extend_from_slice(payload);
    binary.extend_from_slice(&checksum(prefix, payload));
    let mut out = String::with_capacity(text_len(prefix, binary.len()));
    out.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(&binary, &mut out);
    zeroize::Zeroize::zeroize(&mut binary);
    out
}

/// Decode the text form into `out` (binary, checksum included) and check prefix, length,
/// alphabet and checksum. Does not allocate.
#[inline]
pub fn decode_into(prefix: &str, text: &[u8], out: &mut [u8]) -> Result<(), TokenFormatError> {
    let body = text
        .strip_prefix(prefix.as_bytes())
        .ok_or(TokenFormatError::WrongPrefix)?;
    if body.len() != (out.len() * 8).div_ceil(6) {
        return Err(TokenFormatError::WrongLength);
    }
    decode_body(body, out)?;
    check_binary(prefix, out)
}

/// Decode base64url without padding into exactly `out`, strict about the unused bits of the
/// last character (so a token has one text form).
#[cfg(not(feature = "simd"))]
#[inline]
fn decode_body(body: &[u8], out: &mut [u8]) -> Result<(), TokenFormatError> {
    let n = URL_SAFE_NO_PAD
        .decode_slice_unchecked(body, out)
        .map_err(|_| TokenFormatError::BadEncoding)?;
    if n != out.len() {
        return Err(TokenFormatError::WrongLength);
    }
    Ok(())
}

/// As the portable decoder, with SIMD (the `simd` feature): the same alphabet, the same
/// strictness, checked against the portable decoder by the tests.
#[cfg(feature = "simd")]
#[inline]
fn decode_body(body: &[u8], out: &mut [u8]) -> Result<(), TokenFormatError> {
    let n = base64_simd::URL_SAFE_NO_PAD
        .decode(body, base64_simd::Out::from_slice(out))
        .map_err(|_| TokenFormatError::BadEncoding)?
        .len();
    if n != out.len() {
        return Err(TokenFormatError::WrongLength);
    }
    Ok(())
}

/// Check the trailing checksum of a binary token.
#[inline]
pub fn check_binary(prefix: &str, binary: &[u8]) -> Result<(), TokenFormatError> {
    let split = binary
        .len()
        .checked_sub(CHECKSUM_LEN)
        .ok_or(TokenFormatError::WrongLength)?;
    let (payload, sum) = binary.split_at(split);
    if checksum(prefix, payload) != sum {
        return Err(TokenFormatError::BadChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let text = encode("tsxx_", b"hello world");
        assert!(text.starts_with("tsxx_"));
        assert_eq!(text.len(), text_len("tsxx_", 11 + CHECKSUM_LEN));
        let mut out = [0u8; 15];
        decode_into("tsxx_", text.as_bytes(), &mut out).unwrap();
        assert_eq!(&out[..11], b"hello world");
        // The same body under another prefix fails the checksum: the prefix is covered.
        let other = format!("tsyy_{}", &text[5..]);
        assert_eq!(
            decode_into("tsyy_", other.as_bytes(), &mut out),
            Err(TokenFormatError::BadChecksum)
        );
        assert_eq!(
            decode_into("tsyy_", text.as_bytes(), &mut out),
            Err(TokenFormatError::WrongPrefix)
        );
    }

    /// The SIMD decoder answers exactly as the portable one: on every length a token has, for
    /// text of the alphabet, text with a character outside it, and text whose last character
    /// has unused bits set.
    #[cfg(feature = "simd")]
    #[test]
    fn the_simd_decoder_agrees_with_the_portable_one() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in [15usize, 16, 17, 36, 40, 60, 69, 72] {
            let chars = (n * 8).div_ceil(6);
            for round in 0..2_000 {
                let mut body: Vec<u8> = (0..chars)
                    .map(|_| ALPHABET[(next() % 64) as usize])
                    .collect();
                if round % 7 == 0 {
                    let i = (next() as usize) % chars;
                    body[i] = b"=+/ .\0\xff"[(next() % 7) as usize];
                }
                let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                let simd = decode_body(&body, &mut a);
                let portable = URL_SAFE_NO_PAD
                    .decode_slice_unchecked(&body, &mut b)
                    .map_err(|_| TokenFormatError::BadEncoding)
                    .and_then(|m| {
                        if m == n {
                            Ok(())
                        } else {
                            Err(TokenFormatError::WrongLength)
                        }
                    });
                assert_eq!(simd, portable, "{n} bytes: {body:?}");
                if simd.is_ok() {
                    assert_eq!(a, b);
                }
            }
        }
    }
}
