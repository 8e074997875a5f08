//! Verification codes: 8 characters of Crockford base32 (40 bits), shown as `ABCD-EFGH`.
//!
//! The alphabet has no I, L, O or U, and input is normalised the Crockford way (case folded,
//! `I`/`L` read as `1`, `O` as `0`, dashes and spaces ignored), so a code read off a small
//! display and typed by a technician is hard to get wrong. With the engine's default limit of
//! 5 attempts, an attacker guessing blindly succeeds with probability 5 / 2^40.

use alloc::string::String;

#[cfg(feature = "mac")]
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::secret::VerificationCode;

/// Number of significant characters in a code.
pub const CODE_LEN: usize = 8;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Derive the code of an operation: `HMAC(code_key, op_id)`, first 40 bits, base32.
#[cfg(feature = "mac")]
pub fn derive(key: &hmac::Key, operation_id: &[u8]) -> [u8; CODE_LEN] {
    let tag = hmac::sign(key, operation_id);
    let b = tag.as_ref();
    let bits = (u64::from(b[0]) << 32)
        | (u64::from(b[1]) << 24)
        | (u64::from(b[2]) << 16)
        | (u64::from(b[3]) << 8)
        | u64::from(b[4]);
    let mut out = [0u8; CODE_LEN];
    for (i, c) in out.iter_mut().enumerate() {
        let shift = 5 * (CODE_LEN - 1 - i);
        *c = ALPHABET[((bits >> shift) & 31) as usize];
    }
    out
}

/// Format a code for display: `ABCD-EFGH`.
pub fn display(code: &[u8; CODE_LEN]) -> VerificationCode {
    let mut s = String::with_capacity(CODE_LEN + 1);
    for (i, &c) in code.iter().enumerate() {
        if i == CODE_LEN / 2 {
            s.push('-');
        }
        s.push(char::from(c));
    }
    VerificationCode::new(s)
}

/// Normalise typed input to the 8 canonical characters, or `None` if it cannot be a code.
pub fn normalize_code(input: &str) -> Option<[u8; CODE_LEN]> {
    let mut out = [0u8; CODE_LEN];
    let mut n = 0;
    for ch in input.bytes() {
        let c = match ch.to_ascii_uppercase() {
            b'-' | b' ' => continue,
            b'I' | b'L' => b'1',
            b'O' => b'0',
            c if ALPHABET.contains(&c) => c,
            _ => return None,
        };
        *out.get_mut(n)? = c;
        n += 1;
    }
    (n == CODE_LEN).then_some(out)
}

/// Compare a typed code with the expected one in constant time (the normalisation before it
/// depends only on the typed input). Public for the constant-time check (`ct_check`).
pub fn matches(expected: &[u8; CODE_LEN], typed: &str) -> bool {
    match normalize_code(typed) {
        Some(n) => n.ct_eq(expected).into(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "mac")]
    #[test]
    fn derive_display_and_match() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[3u8; 32]);
        let code = derive(&key, b"op-1");
        let shown = display(&code);
        assert_eq!(shown.expose().len(), 9);
        assert!(matches(&code, shown.expose()));
        assert!(matches(
            &code,
            &shown.expose().to_lowercase().replace('-', " ")
        ));
        assert!(!matches(&code, "0000-0000") || code == *b"00000000");
        assert!(!matches(&code, ""));
        assert!(!matches(&code, "ABCD-EFGH-IJ"));
        assert_ne!(derive(&key, b"op-1"), derive(&key, b"op-2"));
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize_code("abcd-efgh"), Some(*b"ABCDEFGH"));
        assert_eq!(normalize_code("ILO0 1111"), Some(*b"11001111"));
        assert_eq!(normalize_code("UUUU-UUUU"), None);
        assert_eq!(normalize_code("ABCDEFG"), None);
        assert_eq!(normalize_code("ABCDEFGHJ"), None);
        assert_eq!(normalize_code("ÄBCDEFGH"), None);
    }
}
