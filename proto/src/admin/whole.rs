//! Whole numbers in request arguments, as JSON Schema counts them: `316` and `316.0` are the
//! same integer. Anything above 2^63 − 1 (the `int64` the API document states), negative,
//! fractional or not a number is refused, so an out-of-range cursor is an error rather than a
//! page. [`num`] and [`opt`] are for JSON arguments (a string is refused); [`query_num`] and
//! [`query_opt`] are for the arguments the HTTPS API takes from a query string, where every
//! value arrives as text.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// The largest whole number an argument takes: `i64::MAX`.
pub const MAX: u64 = i64::MAX as u64;

struct Whole<T> {
    /// Whether text is read as a number (a query string's values).
    text: bool,
    t: PhantomData<T>,
}

fn whole<T>(text: bool) -> Whole<T> {
    Whole {
        text,
        t: PhantomData,
    }
}

impl<T: TryFrom<u64>> Whole<T> {
    fn take<E: de::Error>(v: u64) -> Result<T, E> {
        if v > MAX {
            return Err(E::custom("out of range: at most 9223372036854775807"));
        }
        T::try_from(v).map_err(|_| E::custom("out of range"))
    }
}

impl<'de, T: TryFrom<u64>> Visitor<'de> for Whole<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number from 0 to 9223372036854775807")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::take(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map_err(|_| E::custom("out of range: must not be negative"))
            .and_then(Self::take)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // 2^63 as a float: every whole float below it is exact as a u64.
        if (0.0..9_223_372_036_854_775_808.0).contains(&v) && v == whole_part(v) {
            Self::take(v as u64)
        } else {
            Err(E::custom(
                "not a whole number from 0 to 9223372036854775807",
            ))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if !self.text {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        match v.parse::<u64>() {
            Ok(n) => Self::take(n),
            Err(_) => match v.parse::<f64>() {
                Ok(f) if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') => self.visit_f64(f),
                _ => Err(E::custom(
                    "not a whole number from 0 to 9223372036854775807",
                )),
            },
        }
    }
}

/// The whole part of a non-negative float below 2^63 (`f64::trunc` needs `std`).
fn whole_part(v: f64) -> f64 {
    (v as u64) as f64
}

/// A whole number (`#[serde(deserialize_with = "whole::num")]`).
pub fn num<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(whole(false))
}

/// A whole number, also as text (a query string's value).
pub fn query_num<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(whole(true))
}

struct MaybeWhole<T>(Whole<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for MaybeWhole<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a whole number from 0 to 9223372036854775807")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<T>, E> {
        self.0.visit_u64(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<T>, E> {
        self.0.visit_i64(v).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<T>, E> {
        self.0.visit_f64(v).map(Some)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<T>, E> {
        self.0.visit_str(v).map(Some)
    }
}

/// An optional whole number (`#[serde(default, deserialize_with = "whole::opt")]`): absent or
/// `null` is `None`.
pub fn opt<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_option(MaybeWhole(whole(false)))
}

/// An optional whole number, also as text (a query string's value).
pub fn query_opt<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_option(MaybeWhole(whole(true)))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Args {
        #[serde(default, deserialize_with = "super::num")]
        limit: usize,
        #[serde(default, deserialize_with = "super::opt")]
        after: Option<u64>,
        #[serde(default, deserialize_with = "super::num")]
        epoch: u32,
    }

    fn json(s: &str) -> Result<Args, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn whole_numbers_however_written_and_nothing_else() {
        let a = json(r#"{"limit": 316.0, "after": 7, "epoch": 2.0}"#).unwrap();
        assert_eq!((a.limit, a.after, a.epoch), (316, Some(7), 2));
        assert_eq!(json(r#"{"after": null}"#).unwrap().after, None);
        assert_eq!(json("{}").unwrap().after, None);
        assert_eq!(
            json(r#"{"after": 9223372036854775807}"#).unwrap().after,
            Some(i64::MAX as u64)
        );
        for bad in [
            r#"{"after": 9223372036854775808}"#,
            r#"{"after": 18446744073709551615}"#,
            r#"{"after": 9.3e18}"#,
            r#"{"limit": -1}"#,
            r#"{"limit": 1.5}"#,
            r#"{"limit": "7"}"#,
            r#"{"epoch": 4294967296}"#,
            r#"{"after": true}"#,
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Query {
        #[serde(default, deserialize_with = "super::query_num")]
        limit: usize,
        #[serde(default, deserialize_with = "super::query_opt")]
        after: Option<u64>,
    }

    #[test]
    fn query_strings_as_text_and_as_json() {
        let a: Query = serde_urlencoded::from_str("limit=5&after=9").unwrap();
        assert_eq!((a.limit, a.after), (5, Some(9)));
        let a: Query = serde_urlencoded::from_str("limit=5.0").unwrap();
        assert_eq!(a.limit, 5);
        for bad in [
            "after=9223372036854775808",
            "limit=-1",
            "limit=1e3",
            "limit=x",
            "after=",
        ] {
            assert!(serde_urlencoded::from_str::<Query>(bad).is_err(), "{bad}");
        }
        // The same type read from JSON (the QUIC admin endpoint's arguments).
        let a: Query = serde_json::from_str(r#"{"limit": 5, "after": null}"#).unwrap();
        assert_eq!((a.limit, a.after), (5, None));
    }
}
