//! Operation secrets: `tsos_` + base64url(32 bytes ‖ CRC-32), 48 characters.
//!
//! The secret is `HMAC-SHA256(op_key, operation_id)`, so the engine stores nothing for it; the
//! device presents it with the operation id to collect the operation's result.

use zeroize::Zeroizing;

use crate::codec;
use crate::error::TokenFormatError;
use crate::secret::OperationSecret;

/// Text prefix of every operation secret.
pub const OP_SECRET_PREFIX: &str = "tsos_";
/// Length of the secret's bytes.
pub const OP_SECRET_LEN: usize = 32;
/// Length of the binary form, checksum included.
pub const OP_SECRET_BINARY_LEN: usize = OP_SECRET_LEN + codec::CHECKSUM_LEN;
/// Length of the text form.
pub const OP_SECRET_TEXT_LEN: usize = codec::text_len(OP_SECRET_PREFIX, OP_SECRET_BINARY_LEN);

/// The text form of an operation secret's bytes.
pub fn encode(secret: &[u8; OP_SECRET_LEN]) -> OperationSecret {
    OperationSecret::new(codec::encode(OP_SECRET_PREFIX, secret))
}

/// The bytes of an operation secret's text; checks prefix, length, alphabet and checksum.
pub fn decode(text: &[u8]) -> Result<Zeroizing<[u8; OP_SECRET_LEN]>, TokenFormatError> {
    let mut bin = Zeroizing::new([0u8; OP_SECRET_BINARY_LEN]);
    codec::decode_into(OP_SECRET_PREFIX, text, &mut bin[..])?;
    let mut out = Zeroizing::new([0u8; OP_SECRET_LEN]);
    out.copy_from_slice(&bin[..OP_SECRET_LEN]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let text = encode(&[7u8; 32]);
        assert_eq!(text.expose().len(), OP_SECRET_TEXT_LEN);
        assert_eq!(*decode(text.expose().as_bytes()).unwrap(), [7u8; 32]);
        let mut bad = text.expose().as_bytes().to_vec();
        bad[10] ^= 1;
        assert!(decode(&bad).is_err());
        assert_eq!(decode(b"tsrt_AAAA"), Err(TokenFormatError::WrongPrefix));
    }
}
