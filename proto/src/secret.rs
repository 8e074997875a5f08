//! Types that hold secrets: zeroized on drop, redacted in `Debug`, never `Display`.

use alloc::string::String;

use zeroize::Zeroizing;

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

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
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
