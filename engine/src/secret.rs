//! Types that hold secrets: zeroized on drop, redacted in `Debug`, never `Display`.

use zeroize::{Zeroize, Zeroizing};

macro_rules! secret_text {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The text is zeroized when dropped and never shown by `Debug`; there is no `Display`.
        /// Call [`expose`](Self::expose) at the one place the secret must leave the process.
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Zeroizing<String>);

        impl $name {
            /// Wrap a secret string (for example one read back from device storage).
            pub fn new(text: String) -> Self {
                Self(Zeroizing::new(text))
            }

            /// The secret text. Every call site is a place where the secret leaves our care.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                Self::new(text)
            }
        }

        // The text lives in `Zeroizing`, so dropping the value wipes it.
        impl zeroize::ZeroizeOnDrop for $name {}
    };
}

secret_text!(
    /// The text of a provisioning token (`tspt_…`), shown once when the PT is created.
    ProvisioningToken
);
secret_text!(
    /// The text of a registration token (`tsrt_…`), the device's bearer credential.
    RegistrationToken
);
secret_text!(
    /// The text of an operation secret (`tsos_…`): needed to collect an operation's result.
    OperationSecret
);
secret_text!(
    /// The text of an admin token (`tsat_…`), shown once when created.
    AdminToken
);
secret_text!(
    /// A verification code as shown on a device display (`ABCD-EFGH`).
    VerificationCode
);

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
