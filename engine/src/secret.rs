//! Key material: zeroized on drop, redacted in `Debug`.

use zeroize::{Zeroize, Zeroizing};

pub use tessera_proto::{
    AdminToken, OperationSecret, ProvisioningToken, RegistrationToken, VerificationCode,
};

/// 32 bytes of key material: kept on the heap (so moving a `KeyBytes` copies a pointer, not
/// the key), zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct KeyBytes(Box<Zeroizing<[u8; 32]>>);

impl KeyBytes {
    /// Take ownership of key bytes; the caller's copy should be zeroized by the caller.
    pub fn new(bytes: [u8; 32]) -> Self {
        let mut b = bytes;
        let out = Self::from_slice(&b);
        b.zeroize();
        out
    }

    /// Copy key bytes straight into their zeroizing home (no copy on the stack). `bytes` must
    /// be 32 bytes long; anything else gives a zero key, which no caller asks for.
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        if bytes.len() == 32 {
            k.copy_from_slice(bytes);
        }
        Self(k)
    }

    /// The key bytes, for handing to a MAC implementation.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

// The bytes live in `Zeroizing`, so dropping the value wipes them.
impl zeroize::ZeroizeOnDrop for KeyBytes {}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}
