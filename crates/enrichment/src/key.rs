//! The primary key of a reference item, taken from its key attributes.

use std::fmt;

use change_protocol::{AttributeValue, Item};

/// What can serve as a lookup key: any hashable, cloneable, thread-safe value (`String`, a
/// tuple of strings, …). Implemented for every such type.
pub trait LookupKey: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static {}

impl<K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static> LookupKey for K {}

/// One key attribute's value. DynamoDB key attributes are strings, numbers or binary; numbers
/// are kept as DynamoDB writes them (it returns numbers in one canonical form, so the same key
/// from a stream record and from a Scan compares equal).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// A string key.
    S(String),
    /// A number key, as its decimal text.
    N(String),
    /// A binary key.
    B(Vec<u8>),
}

/// A primary key: the key attributes in the configured order. Ordered attribute by attribute,
/// values as text (so `"100" < "20"` for numbers); the order only serves to make choices
/// deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey(pub Vec<KeyValue>);

/// Why an item or key map has no usable primary key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no usable primary key: attribute {attribute:?} {problem}")]
pub struct KeyError {
    /// The key attribute.
    pub attribute: String,
    /// What was wrong.
    pub problem: &'static str,
}

impl ItemKey {
    /// The key of `item` (a whole item or just its keys) for the key attribute names `names`.
    pub fn from_item(names: &[String], item: &Item) -> Result<ItemKey, KeyError> {
        names
            .iter()
            .map(|name| match item.get(name) {
                Some(AttributeValue::S(s)) => Ok(KeyValue::S(s.clone())),
                Some(AttributeValue::N(n)) => Ok(KeyValue::N(n.clone())),
                Some(AttributeValue::B(b)) => Ok(KeyValue::B(b.clone())),
                Some(_) => Err(KeyError {
                    attribute: name.clone(),
                    problem: "is not a string, number or binary",
                }),
                None => Err(KeyError {
                    attribute: name.clone(),
                    problem: "is missing",
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ItemKey)
    }

    /// The key as an item of key attributes, for GetItem / BatchGetItem.
    pub fn to_item(&self, names: &[String]) -> Item {
        let map: std::collections::HashMap<String, AttributeValue> = names
            .iter()
            .zip(&self.0)
            .map(|(name, value)| {
                let v = match value {
                    KeyValue::S(s) => AttributeValue::S(s.clone()),
                    KeyValue::N(n) => AttributeValue::N(n.clone()),
                    KeyValue::B(b) => AttributeValue::B(b.clone()),
                };
                (name.clone(), v)
            })
            .collect();
        Item::from(map)
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match v {
                KeyValue::S(s) | KeyValue::N(s) => f.write_str(s)?,
                KeyValue::B(b) => write!(f, "<{} bytes>", b.len())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn item(pairs: &[(&str, AttributeValue)]) -> Item {
        Item::from(
            pairs
                .iter()
                .cloned()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<HashMap<_, _>>(),
        )
    }

    #[test]
    fn key_round_trips_and_ignores_other_attributes() {
        let names = vec!["item".to_owned(), "price".to_owned()];
        let full = item(&[
            ("item", AttributeValue::S("burger".into())),
            ("price", AttributeValue::N("100".into())),
            ("priority", AttributeValue::S("medium".into())),
        ]);
        let key = ItemKey::from_item(&names, &full).unwrap();
        assert_eq!(key.to_string(), "burger/100");
        let back = ItemKey::from_item(&names, &key.to_item(&names)).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn missing_or_mistyped_key_attributes_are_errors() {
        let names = vec!["item".to_owned(), "price".to_owned()];
        let err = ItemKey::from_item(&names, &item(&[("item", AttributeValue::S("x".into()))]))
            .unwrap_err();
        assert_eq!(err.attribute, "price");
        let err = ItemKey::from_item(
            &names,
            &item(&[
                ("item", AttributeValue::Bool(true)),
                ("price", AttributeValue::N("1".into())),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"item\""), "{err}");
    }
}
