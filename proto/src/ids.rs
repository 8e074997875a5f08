//! Ids and the checked values a device sends: PT, admin-token, operation and registration ids,
//! device ids and attributes, and the limits on them.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Limits on device-supplied and operator-supplied text. Documented in docs/tokens.md.
pub mod limits {
    /// Longest device id, in bytes.
    pub const DEVICE_ID_MAX: usize = 64;
    /// Most attributes on one operation.
    pub const ATTRIBUTES_MAX: usize = 16;
    /// Longest attribute key, in bytes.
    pub const ATTRIBUTE_KEY_MAX: usize = 32;
    /// Longest attribute value, in bytes.
    pub const ATTRIBUTE_VALUE_MAX: usize = 128;
    /// Longest label, actor name or reason, in bytes.
    pub const LABEL_MAX: usize = 128;
    /// Shortest instance nonce, in bytes: 128 bits from the device's random generator.
    pub const NONCE_MIN: usize = 16;
    /// Longest instance nonce, in bytes.
    pub const NONCE_MAX: usize = 64;
}

/// The public id of a PT: its key epoch and the 16-byte selector tag. Shown as `pt_…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PtId([u8; PtId::LEN]);

impl PtId {
    /// Length of the binary id.
    pub const LEN: usize = 20;
    const PREFIX: &'static str = "pt_";

    /// Build from a key epoch and a 16-byte selector tag.
    pub fn new(epoch: u32, tag: [u8; 16]) -> Self {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&epoch.to_be_bytes());
        b[4..].copy_from_slice(&tag);
        Self(b)
    }

    /// Build from the 20-byte binary form.
    pub fn from_bytes(b: [u8; Self::LEN]) -> Self {
        Self(b)
    }

    /// The 20-byte binary form.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        self.0
    }

    /// The key epoch the PT's verifier was made under.
    pub fn epoch(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    /// The 16-byte selector tag.
    pub fn tag(&self) -> &[u8] {
        &self.0[4..]
    }
}

impl fmt::Display for PtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_id(f, Self::PREFIX, &self.0)
    }
}

impl fmt::Debug for PtId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PtId {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = InputError::new("pt_id", "expected pt_ followed by 27 base64url characters");
        parse_id(s, Self::PREFIX, bad).map(Self)
    }
}

/// `prefix` and the id's bytes in base64url: how every id is shown.
fn show_id(f: &mut fmt::Formatter<'_>, prefix: &str, bytes: &[u8]) -> fmt::Result {
    f.write_str(prefix)?;
    f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
}

/// The bytes of an id shown by [`show_id`]; `bad` for anything else.
fn parse_id<const N: usize>(s: &str, prefix: &str, bad: InputError) -> Result<[u8; N], InputError> {
    s.strip_prefix(prefix)
        .and_then(|body| URL_SAFE_NO_PAD.decode(body).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or(bad)
}

/// The public id of an admin token. Admin tokens have the PT layout (docs/tokens.md), so this is
/// the same 20 bytes as a [`PtId`] (key epoch and selector tag), shown as `at_…` so that it is
/// never taken for a PT's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdminTokenId(PtId);

impl AdminTokenId {
    const PREFIX: &'static str = "at_";

    /// Build from the 20-byte binary form.
    pub fn from_bytes(b: [u8; PtId::LEN]) -> Self {
        Self(PtId::from_bytes(b))
    }

    /// The 20-byte binary form.
    pub fn to_bytes(self) -> [u8; PtId::LEN] {
        self.0.to_bytes()
    }
}

impl From<PtId> for AdminTokenId {
    fn from(id: PtId) -> Self {
        Self(id)
    }
}

impl fmt::Display for AdminTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_id(f, Self::PREFIX, &self.0 .0)
    }
}

impl fmt::Debug for AdminTokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for AdminTokenId {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = InputError::new("id", "expected at_ followed by 27 base64url characters");
        parse_id(s, Self::PREFIX, bad).map(Self::from_bytes)
    }
}

/// The id of a provisioning operation: 16 random bytes, shown as `op_…`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationId([u8; 16]);

impl OperationId {
    const PREFIX: &'static str = "op_";

    /// Build from the 16-byte binary form.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    /// The 16-byte binary form.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        show_id(f, Self::PREFIX, &self.0)
    }
}

impl fmt::Debug for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for OperationId {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = InputError::new(
            "operation_id",
            "expected op_ followed by 22 base64url characters",
        );
        parse_id(s, Self::PREFIX, bad).map(Self)
    }
}

/// The id of a registration (an RT family). Assigned densely from 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistrationId(u64);

impl RegistrationId {
    /// Wrap a raw id.
    pub const fn new(id: u64) -> Self {
        Self(id)
    }
    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for RegistrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistrationId({})", self.0)
    }
}

/// A device id: 1–64 bytes of `A–Z a–z 0–9 . _ : -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Check and wrap a device id.
    pub fn new(s: impl Into<String>) -> Result<Self, InputError> {
        let s = s.into();
        if s.is_empty() {
            return Err(InputError::new("device_id", "must not be empty"));
        }
        if s.len() > limits::DEVICE_ID_MAX {
            return Err(InputError::new("device_id", "longer than 64 bytes"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
        {
            return Err(InputError::new(
                "device_id",
                "only A-Z a-z 0-9 . _ : - are allowed",
            ));
        }
        Ok(Self(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        Self::new(s)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, InputError> {
        Self::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attributes a device sends about itself (serial number, firmware version, MAC address…).
///
/// At most 16 entries; keys 1–32 bytes of `a–z 0–9 . _ -`; values at most 128 bytes of UTF-8
/// without control characters.
#[derive(Clone, PartialEq, Eq, Default, Debug, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    /// Check and wrap attributes.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, InputError> {
        if map.len() > limits::ATTRIBUTES_MAX {
            return Err(InputError::new("attributes", "more than 16 entries"));
        }
        for (k, v) in &map {
            check_attribute_key(k)?;
            if v.len() > limits::ATTRIBUTE_VALUE_MAX {
                return Err(InputError::new("attributes", "value longer than 128 bytes"));
            }
            if v.chars().any(char::is_control) {
                return Err(InputError::new(
                    "attributes",
                    "value contains control characters",
                ));
            }
        }
        Ok(Self(map))
    }

    /// Check attributes given as raw bytes (for example from the wire or from C), rejecting
    /// non-UTF-8 keys or values.
    pub fn from_raw(pairs: &[(&[u8], &[u8])]) -> Result<Self, InputError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k = core::str::from_utf8(k)
                .map_err(|_| InputError::new("attributes", "key is not UTF-8"))?;
            let v = core::str::from_utf8(v)
                .map_err(|_| InputError::new("attributes", "value is not UTF-8"))?;
            if map.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(InputError::new("attributes", "duplicate key"));
            }
        }
        Self::new(map)
    }

    /// Look up one attribute.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// All attributes, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Check an attribute key: 1–32 bytes of `a–z 0–9 . _ -`.
pub fn check_attribute_key(k: &str) -> Result<(), InputError> {
    if k.is_empty() || k.len() > limits::ATTRIBUTE_KEY_MAX {
        return Err(InputError::new("attributes", "key must be 1-32 bytes"));
    }
    if !k
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(InputError::new(
            "attributes",
            "key may use only a-z 0-9 . _ -",
        ));
    }
    Ok(())
}

impl TryFrom<BTreeMap<String, String>> for Attributes {
    type Error = InputError;
    fn try_from(m: BTreeMap<String, String>) -> Result<Self, InputError> {
        Self::new(m)
    }
}

impl From<Attributes> for BTreeMap<String, String> {
    fn from(a: Attributes) -> Self {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn ids_round_trip() {
        let p = PtId::new(7, [3u8; 16]);
        assert_eq!(p.to_string().parse::<PtId>().unwrap(), p);
        assert!("pt_xx".parse::<PtId>().is_err());
        let o = OperationId::from_bytes([9u8; 16]);
        assert_eq!(o.to_string().parse::<OperationId>().unwrap(), o);
        // An admin token's id has a PT id's bytes under a prefix of its own, and neither
        // parses as the other.
        let a = AdminTokenId::from(p);
        assert_eq!(a.to_string(), p.to_string().replacen("pt_", "at_", 1));
        assert_eq!(a.to_string().parse::<AdminTokenId>().unwrap(), a);
        assert!(p.to_string().parse::<AdminTokenId>().is_err());
        assert!(a.to_string().parse::<PtId>().is_err());
        assert!("at_xx".parse::<AdminTokenId>().is_err());
    }

    #[test]
    fn device_id_limits() {
        assert!(DeviceId::new("sensor-01:a.b_c").is_ok());
        assert!(DeviceId::new("").is_err());
        assert!(DeviceId::new("a".repeat(64)).is_ok());
        assert!(DeviceId::new("a".repeat(65)).is_err());
        assert!(DeviceId::new("bad id").is_err());
        assert!(DeviceId::new("ümlaut").is_err());
    }

    #[test]
    fn attribute_limits() {
        let ok = Attributes::from_raw(&[(b"serial", b"SN-1"), (b"fw", "1.2 \u{e9}".as_bytes())]);
        assert!(ok.is_ok());
        assert!(Attributes::from_raw(&[(b"serial", b"\xff\xfe")]).is_err());
        assert!(Attributes::from_raw(&[(b"\xff", b"x")]).is_err());
        assert!(Attributes::from_raw(&[(b"k", &[b'x'; 129])]).is_err());
        assert!(Attributes::from_raw(&[(b"Upper", b"x")]).is_err());
        assert!(Attributes::from_raw(&[(b"k", b"a\nb")]).is_err());
        assert!(Attributes::from_raw(&[(b"k", b"1"), (b"k", b"2")]).is_err());
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("k{i}"), "v".into())).collect();
        let pairs: Vec<(&[u8], &[u8])> = many
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert!(Attributes::from_raw(&pairs).is_err());
    }
}

/// OpenAPI schemas of the ids and values as they appear in JSON (the `openapi` feature).
#[cfg(feature = "openapi")]
mod schemas {
    use alloc::borrow::Cow;

    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;
    use utoipa::{PartialSchema, ToSchema};

    use super::{limits, Attributes, DeviceId, RegistrationId};

    impl PartialSchema for DeviceId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(limits::DEVICE_ID_MAX))
                .description(Some("A device id: printable ASCII, no spaces"))
                .into()
        }
    }
    impl ToSchema for DeviceId {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("DeviceId")
        }
    }

    impl PartialSchema for RegistrationId {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(0))
                .description(Some("A registration id"))
                .into()
        }
    }
    impl ToSchema for RegistrationId {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("RegistrationId")
        }
    }

    impl PartialSchema for Attributes {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(limits::ATTRIBUTE_VALUE_MAX)),
                ))
                .max_properties(Some(limits::ATTRIBUTES_MAX))
                .description(Some(
                    "What a device sent about itself: at most 16 entries, keys of a-z 0-9 . _ -",
                ))
                .into()
        }
    }
    impl ToSchema for Attributes {
        fn name() -> Cow<'static, str> {
            Cow::Borrowed("Attributes")
        }
    }
}
