//! DynamoDB Streams sequence numbers, compared as numbers.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Width of a sequence number in a change-file key (AWS sequence numbers have 21 to 40 digits).
pub const SEQUENCE_WIDTH: usize = 40;

/// A stream sequence number: up to 40 decimal digits, ordered by numeric value.
///
/// AWS writes sequence numbers of different lengths, so comparing the strings would put `"9"`
/// after `"10"`. The value is kept without leading zeros; [`SequenceNumber::padded`] gives the
/// fixed-width form used in keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

/// Why a string is not a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    /// The string was empty.
    Empty,
    /// The string had a character that is not an ASCII digit.
    NotDigits(String),
    /// The string had more than 40 significant digits.
    TooLong(String),
}

impl std::error::Error for SequenceError {}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceError::Empty => write!(f, "sequence number is empty"),
            SequenceError::NotDigits(s) => {
                write!(
                    f,
                    "sequence number {s:?} has a character that is not a digit"
                )
            }
            SequenceError::TooLong(s) => {
                write!(
                    f,
                    "sequence number {s:?} has more than {SEQUENCE_WIDTH} digits"
                )
            }
        }
    }
}

impl SequenceNumber {
    /// Parses a decimal sequence number; leading zeros are accepted and dropped.
    pub fn parse(s: &str) -> Result<Self, SequenceError> {
        if s.is_empty() {
            return Err(SequenceError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SequenceError::NotDigits(s.to_owned()));
        }
        let trimmed = s.trim_start_matches('0');
        let value = if trimmed.is_empty() { "0" } else { trimmed };
        if value.len() > SEQUENCE_WIDTH {
            return Err(SequenceError::TooLong(s.to_owned()));
        }
        Ok(SequenceNumber(value.to_owned()))
    }

    /// The digits without leading zeros.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits zero-padded to [`SEQUENCE_WIDTH`], as they appear in change-file keys.
    pub fn padded(&self) -> String {
        format!("{:0>width$}", self.0, width = SEQUENCE_WIDTH)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // No leading zeros, so a longer number is a larger one.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SequenceNumber {
    type Err = SequenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SequenceNumber::parse(s)
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SequenceNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        SequenceNumber::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_numerically_not_lexically() {
        let nine = SequenceNumber::parse("9").unwrap();
        let ten = SequenceNumber::parse("10").unwrap();
        assert!(nine < ten);
        let aws_short = SequenceNumber::parse("900000000000000000001").unwrap(); // 21 digits
        let aws_long = SequenceNumber::parse("1000000000000000000000000000000000000001").unwrap();
        assert!(aws_short < aws_long);
    }

    #[test]
    fn leading_zeros_are_the_same_number() {
        assert_eq!(
            SequenceNumber::parse("000123").unwrap(),
            SequenceNumber::parse("123").unwrap()
        );
        assert_eq!(SequenceNumber::parse("000").unwrap().as_str(), "0");
    }

    #[test]
    fn padded_is_fixed_width() {
        let s = SequenceNumber::parse("4210000000000012345678").unwrap();
        assert_eq!(s.padded().len(), SEQUENCE_WIDTH);
        assert_eq!(s.padded(), "0000000000000000004210000000000012345678");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(SequenceNumber::parse(""), Err(SequenceError::Empty));
        assert!(matches!(
            SequenceNumber::parse("12a"),
            Err(SequenceError::NotDigits(_))
        ));
        assert!(matches!(
            SequenceNumber::parse("-1"),
            Err(SequenceError::NotDigits(_))
        ));
        assert!(matches!(
            SequenceNumber::parse(&"1".repeat(41)),
            Err(SequenceError::TooLong(_))
        ));
        assert!(SequenceNumber::parse(&"9".repeat(40)).is_ok());
        assert!(
            SequenceNumber::parse("1e5").is_err(),
            "no float forms: {}",
            SequenceError::NotDigits("1e5".into())
        );
    }

    proptest! {
        #[test]
        fn order_matches_u128_order(a in any::<u128>(), b in any::<u128>()) {
            let sa = SequenceNumber::parse(&a.to_string()).unwrap();
            let sb = SequenceNumber::parse(&b.to_string()).unwrap();
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
            // The padded strings sort like the numbers too: that is what keys rely on.
            prop_assert_eq!(sa.padded().cmp(&sb.padded()), a.cmp(&b));
        }

        #[test]
        fn parse_never_panics(s in ".{0,60}") {
            let _ = SequenceNumber::parse(&s);
        }
    }
}
