//! Durations as graph files write them: `500ms`, `30s`, `5m`, `2h`, `1d` and compounds such as
//! `1h30m`. Rule: one canonical spelling per value ([`format`]), so the same duration always
//! serializes, hashes and displays the same way; pure, no IO.
//!
//! [`parse`] accepts zero (`0s`) so that validation, not the parser, reports a zero timeout with
//! the node and field it belongs to; negative durations cannot be written at all.

use std::fmt;
use std::time::Duration;

/// Units from largest to smallest, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Why a duration string was rejected; the message quotes the input and shows the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{input}`: {reason}; write whole numbers with units (d, h, m, s, ms), largest first, as in `30s` or `1h30m`"
)]
pub struct DurationError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h`, `1d` or `1h30m`.
///
/// Each unit may appear once, largest first. `0s` parses to zero; empty, negative, fractional
/// and unit-less input is rejected.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let fail = |reason: String| DurationError {
        input: s.to_owned(),
        reason,
    };
    if s.is_empty() {
        return Err(fail("it is empty".to_owned()));
    }
    if s.starts_with('-') {
        return Err(fail("durations cannot be negative".to_owned()));
    }
    let mut total: u128 = 0;
    let mut smallest_so_far = None::<usize>;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(fail(format!("expected a number at `{rest}`")));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            let reason = if after.starts_with('.') {
                "fractions are not supported (write `1s500ms`, not `1.5s`)".to_owned()
            } else {
                format!("`{number}` has no unit")
            };
            return Err(fail(reason));
        }
        let Some(position) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(fail(format!("unknown unit `{unit}`")));
        };
        if smallest_so_far.is_some_and(|previous| position <= previous) {
            return Err(fail(format!("unit `{unit}` is out of order or repeated")));
        }
        smallest_so_far = Some(position);
        let value: u128 = number
            .parse()
            .map_err(|_| fail("the number is too large".to_owned()))?;
        total = value
            .checked_mul(UNITS[position].1)
            .and_then(|nanos| nanos.checked_add(total))
            .ok_or_else(|| fail("the duration is too large".to_owned()))?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| fail("the duration is too large".to_owned()))?;
    let nanos = u32::try_from(total % 1_000_000_000).expect("remainder is below one second");
    Ok(Duration::new(secs, nanos))
}

/// The canonical spelling of `d`: largest units first, zero units left out (`1h30m`, `500ms`);
/// zero is `0s`. [`parse`] reads it back to the same value.
pub fn format(d: Duration) -> String {
    Canonical(d).to_string()
}

/// Displays a duration in its canonical spelling without allocating a `String` first.
struct Canonical(Duration);

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            let count = nanos / size;
            if count > 0 {
                write!(f, "{count}{unit}")?;
            }
            nanos %= size;
        }
        Ok(())
    }
}

/// Serde support for `Option<Duration>` fields written as duration strings, with null or an
/// absent field meaning `None` (`with = "crate::duration::option"`).
pub mod option {
    use std::fmt;
    use std::time::Duration;

    use serde::{Deserializer, Serializer, de};

    /// Writes the canonical spelling, or null for `None`.
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serializer.collect_str(&super::Canonical(*d)),
            None => serializer.serialize_none(),
        }
    }

    /// Reads a duration string, or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> de::Visitor<'de> for OptionVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `30s`, `5m` or `1h30m`, or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(DurationVisitor).map(Some)
        }
    }

    struct DurationVisitor;

    impl de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as `30s`, `5m` or `1h30m`")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse(v).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m1s1ms", Duration::from_millis(61_001)),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("90s", Duration::from_secs(90)),
            ("0s", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("-5s", "negative"),
            ("5", "has no unit"),
            ("1.5s", "fractions"),
            ("5x", "unknown unit `x`"),
            ("5 s", "has no unit"),
            ("30m1h", "out of order"),
            ("1s1s", "out of order or repeated"),
            ("s", "expected a number"),
            ("99999999999999999999999999999999999999999d", "too large"),
            ("300000000000000d", "too large"),
        ];
        for (text, reason) in cases {
            let err = parse(text).expect_err(text);
            let message = err.to_string();
            assert!(message.contains(reason), "`{text}`: {message}");
            assert!(
                message.contains(&format!("`{text}`")),
                "`{text}`: {message}"
            );
        }
    }

    #[test]
    fn formats_canonically_with_largest_units() {
        let cases = [
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
            (Duration::from_nanos(1_500), "1us500ns"),
            (Duration::ZERO, "0s"),
        ];
        for (d, text) in cases {
            assert_eq!(format(d), text);
        }
    }

    #[test]
    fn equivalent_spellings_share_one_canonical_form() {
        assert_eq!(format(parse("60s").unwrap()), "1m");
        assert_eq!(format(parse("90m").unwrap()), "1h30m");
        assert_eq!(format(parse("1000ms").unwrap()), "1s");
    }

    proptest::proptest! {
        #[test]
        fn format_then_parse_is_identity(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            proptest::prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
