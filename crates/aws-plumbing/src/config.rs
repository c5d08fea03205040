//! Configuration from the environment: a function reads its variables once at start-up, and a
//! missing or invalid one is an error that names it.

/// A configuration variable that is missing or invalid. The message names the variable (and
/// the value it had), so the log line at start-up says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set (or is empty).
    #[error("environment variable {var} is required but not set")]
    Missing {
        /// The variable's name.
        var: &'static str,
    },
    /// A variable is set to a value that cannot be used.
    #[error("environment variable {var}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        var: &'static str,
        /// The value it had.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads a required, non-empty variable through `get` (the process environment in `main`, a
/// map in tests).
///
/// # Errors
/// [`ConfigError::Missing`] when it is unset or blank.
pub fn required_var(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<String, ConfigError> {
    optional_var(get, var).ok_or(ConfigError::Missing { var })
}

/// Reads an optional variable through `get`; an empty or blank value counts as unset.
pub fn optional_var(get: &impl Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    get(var).filter(|v| !v.trim().is_empty())
}

/// Reads an optional whole-number variable through `get`: `default` when it is unset, else its
/// value if it parses and lies in `range`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `var`, its value and `expected` (what a valid value is).
pub fn number_var(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    range: impl std::ops::RangeBounds<u64>,
    expected: &str,
) -> Result<u64, ConfigError> {
    match optional_var(get, var) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                var,
                value: v,
                reason: expected.to_owned(),
            }),
    }
}

/// Reads `REFERENCE_KEY_ATTRIBUTES` through `get`: the reference table's key attribute names,
/// comma-separated, hash key first (default `item,price`, the seed's `ProductPriority`).
///
/// # Errors
/// [`ConfigError::Invalid`] unless it names one or two attributes.
pub fn key_attributes_var(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let var = "REFERENCE_KEY_ATTRIBUTES";
    let names: Vec<String> = optional_var(get, var)
        .as_deref()
        .unwrap_or("item,price")
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() || names.len() > 2 {
        return Err(ConfigError::Invalid {
            var,
            value: names.join(","),
            reason: "one or two attribute names (hash key, range key)".into(),
        });
    }
    Ok(names)
}

/// Checks the general rules for S3 bucket names (3–63 lowercase letters, digits, `-` or `.`,
/// starting and ending with a letter or digit), so a typo fails at start-up, not per batch.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `var` and the value.
pub fn validate_bucket(var: &'static str, bucket: &str) -> Result<(), ConfigError> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_ends = bucket
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && bucket
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            var,
            value: bucket.to_owned(),
            reason: "not a bucket name (3-63 lowercase letters, digits, '-' or '.')".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_required_variable_that_is_unset_or_blank_is_missing_by_name() {
        for get in [env(&[]), env(&[("TABLE", "  ")])] {
            let err = required_var(&get, "TABLE").unwrap_err();
            assert_eq!(err, ConfigError::Missing { var: "TABLE" });
            assert_eq!(
                err.to_string(),
                "environment variable TABLE is required but not set"
            );
        }
        assert_eq!(required_var(&env(&[("TABLE", "t")]), "TABLE").unwrap(), "t");
    }

    #[test]
    fn an_optional_variable_that_is_blank_is_unset() {
        assert_eq!(optional_var(&env(&[("X", "")]), "X"), None);
        assert_eq!(optional_var(&env(&[("X", "1")]), "X").as_deref(), Some("1"));
    }

    #[test]
    fn a_number_is_its_default_when_unset_and_refused_by_name_outside_its_range() {
        let n = |v: &str| number_var(&env(&[("N", v)]), "N", 7, 2..=10, "2 to 10");
        assert_eq!(n(""), Ok(7));
        assert_eq!(n(" 3 "), Ok(3));
        assert_eq!(n("10"), Ok(10));
        for bad in ["1", "11", "-2", "2.5", "x"] {
            assert_eq!(
                n(bad),
                Err(ConfigError::Invalid {
                    var: "N",
                    value: bad.to_owned(),
                    reason: "2 to 10".into()
                })
            );
        }
    }

    #[test]
    fn key_attributes_are_one_or_two_names() {
        let k = |v: &str| key_attributes_var(&env(&[("REFERENCE_KEY_ATTRIBUTES", v)]));
        assert_eq!(k("").unwrap(), ["item", "price"]);
        assert_eq!(k(" pk , sk ").unwrap(), ["pk", "sk"]);
        assert_eq!(k("pk").unwrap(), ["pk"]);
        for bad in ["a,b,c", ",,"] {
            let err = k(bad).unwrap_err().to_string();
            assert!(err.contains("REFERENCE_KEY_ATTRIBUTES"), "{err}");
            assert!(err.contains("one or two attribute names"), "{err}");
        }
    }

    #[test]
    fn bucket_names_follow_the_general_rules() {
        for ok in ["abc", "feed.bucket-1", &"a".repeat(63)] {
            assert!(validate_bucket("B", ok).is_ok(), "{ok}");
        }
        for bad in ["b", "Bad_Bucket", "-abc", "abc.", &"a".repeat(64)] {
            let text = validate_bucket("CHANGE_BUCKET", bad)
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("CHANGE_BUCKET") && text.contains(&format!("{bad:?}")),
                "{text}"
            );
        }
    }
}
