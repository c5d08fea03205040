//! Configuration variables from `(name, value)` pairs instead of the process environment: for
//! the `from_lookup` constructors in local runs and tests.

use std::collections::HashMap;

/// A lookup of the variables in `pairs`, for [`required_var`](crate::required_var),
/// [`optional_var`](crate::optional_var) and the `from_lookup` constructors built on them: of
/// two pairs that name one variable the later wins, so defaults can come first and what a run
/// or a test sets after them.
pub fn from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_later_of_two_pairs_wins_and_a_missing_name_is_none() {
        let get = from_pairs([("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(get("A").as_deref(), Some("3"));
        assert_eq!(get("B").as_deref(), Some("2"));
        assert_eq!(get("C"), None);
    }
}
