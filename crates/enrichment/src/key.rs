//! The primary key of a reference item, taken from its key attributes.

use std::fmt;

use stream_refdata_protocol::{AttributeValue, Item};

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

/// A borrowed key attribute value, as [`ItemKey::values`] gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValueRef<'a> {
    /// A string key.
    S(&'a str),
    /// A number key, as its decimal text.
    N(&'a str),
    /// A binary key.
    B(&'a [u8]),
}

impl KeyValue {
    /// The value, borrowed.
    pub fn borrowed(&self) -> KeyValueRef<'_> {
        match self {
            KeyValue::S(s) => KeyValueRef::S(s),
            KeyValue::N(n) => KeyValueRef::N(n),
            KeyValue::B(b) => KeyValueRef::B(b),
        }
    }
}

impl KeyValueRef<'_> {
    /// The value, owned.
    pub fn to_key_value(self) -> KeyValue {
        match self {
            KeyValueRef::S(s) => KeyValue::S(s.to_owned()),
            KeyValueRef::N(n) => KeyValue::N(n.to_owned()),
            KeyValueRef::B(b) => KeyValue::B(b.to_vec()),
        }
    }
}

/// A primary key: the key attributes in the configured order. Ordered attribute by attribute,
/// values as text (so `"100" < "20"` for numbers); the order only serves to make choices
/// deterministic.
///
/// Kept in one allocation (every snapshot item holds one): each value as a type byte, its length
/// (4 bytes) and its bytes. Equal keys have equal bytes, so equality and hashing are the bytes';
/// the order is the values' (as if a list of [`KeyValue`]s).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ItemKey(Box<[u8]>);

const TAG_S: u8 = 0;
const TAG_N: u8 = 1;
const TAG_B: u8 = 2;

struct Encoder(Vec<u8>);

impl Encoder {
    fn push(&mut self, value: KeyValueRef<'_>) {
        let (tag, bytes) = match value {
            KeyValueRef::S(s) => (TAG_S, s.as_bytes()),
            KeyValueRef::N(n) => (TAG_N, n.as_bytes()),
            KeyValueRef::B(b) => (TAG_B, b),
        };
        // DynamoDB key attributes are at most 2,048 (hash) or 1,024 (range) bytes.
        let len = u32::try_from(bytes.len()).expect("a key attribute shorter than 4 GiB");
        self.0.push(tag);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
    }
}

/// The encoded values of a key, one `(tag, bytes)` at a time.
struct Encoded<'a>(&'a [u8]);

impl<'a> Iterator for Encoded<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.0.split_first()?;
        let (len, rest) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (bytes, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, bytes))
    }
}

impl Ord for ItemKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // (tag, bytes) pairs compare as the values do: S < N < B, then the text or bytes.
        Encoded(&self.0).cmp(Encoded(&other.0))
    }
}

impl PartialOrd for ItemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ItemKey")
            .field(&self.values().collect::<Vec<_>>())
            .finish()
    }
}

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
    /// A key of these values, in the key attributes' order.
    pub fn new<'a>(values: impl IntoIterator<Item = KeyValueRef<'a>>) -> ItemKey {
        let mut e = Encoder(Vec::new());
        for v in values {
            e.push(v);
        }
        ItemKey(e.0.into_boxed_slice())
    }

    /// The key's values, in the key attributes' order.
    pub fn values(&self) -> impl Iterator<Item = KeyValueRef<'_>> {
        Encoded(&self.0).map(|(tag, bytes)| {
            let text = || std::str::from_utf8(bytes).expect("encoded from a str");
            match tag {
                TAG_S => KeyValueRef::S(text()),
                TAG_N => KeyValueRef::N(text()),
                _ => KeyValueRef::B(bytes),
            }
        })
    }

    /// The key of `item` (a whole item or just its keys) for the key attribute names `names`.
    pub fn from_item(names: &[String], item: &Item) -> Result<ItemKey, KeyError> {
        let mut values = Vec::with_capacity(names.len());
        let mut size = 0;
        for name in names {
            let v = match item.get(name) {
                Some(AttributeValue::S(s)) => KeyValueRef::S(s),
                Some(AttributeValue::N(n)) => KeyValueRef::N(n),
                Some(AttributeValue::B(b)) => KeyValueRef::B(b),
                Some(_) => {
                    return Err(KeyError {
                        attribute: name.clone(),
                        problem: "is not a string, number or binary",
                    })
                }
                None => {
                    return Err(KeyError {
                        attribute: name.clone(),
                        problem: "is missing",
                    })
                }
            };
            size += 5 + match v {
                KeyValueRef::S(s) | KeyValueRef::N(s) => s.len(),
                KeyValueRef::B(b) => b.len(),
            };
            values.push(v);
        }
        // Sized exactly: the boxed slice keeps the allocation as it is.
        let mut e = Encoder(Vec::with_capacity(size));
        for v in values {
            e.push(v);
        }
        Ok(ItemKey(e.0.into_boxed_slice()))
    }

    /// The key as an item of key attributes, for GetItem / BatchGetItem.
    pub fn to_item(&self, names: &[String]) -> Item {
        let map: std::collections::HashMap<String, AttributeValue> = names
            .iter()
            .zip(self.values())
            .map(|(name, value)| {
                let v = match value {
                    KeyValueRef::S(s) => AttributeValue::S(s.to_owned()),
                    KeyValueRef::N(n) => AttributeValue::N(n.to_owned()),
                    KeyValueRef::B(b) => AttributeValue::B(b.to_vec()),
                };
                (name.clone(), v)
            })
            .collect();
        Item::from(map)
    }
}

impl FromIterator<KeyValue> for ItemKey {
    fn from_iter<I: IntoIterator<Item = KeyValue>>(values: I) -> Self {
        let mut e = Encoder(Vec::new());
        for v in values {
            e.push(v.borrowed());
        }
        ItemKey(e.0.into_boxed_slice())
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.values().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match v {
                KeyValueRef::S(s) | KeyValueRef::N(s) => f.write_str(s)?,
                KeyValueRef::B(b) => write!(f, "<{} bytes>", b.len())?,
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
    fn the_order_is_the_values_order() {
        let values = |k: &ItemKey| {
            k.values()
                .map(KeyValueRef::to_key_value)
                .collect::<Vec<_>>()
        };
        let samples = [
            vec![KeyValue::S("a".into()), KeyValue::N("100".into())],
            vec![KeyValue::S("a".into()), KeyValue::N("20".into())],
            vec![KeyValue::S("ab".into()), KeyValue::N("1".into())],
            vec![KeyValue::S("".into()), KeyValue::B(vec![0, 255])],
            vec![KeyValue::N("a".into())],
            vec![KeyValue::B(vec![])],
            vec![KeyValue::S("a".into())],
            vec![],
        ];
        for a in &samples {
            let ka: ItemKey = a.iter().cloned().collect();
            assert_eq!(&values(&ka), a);
            for b in &samples {
                let kb: ItemKey = b.iter().cloned().collect();
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ka == kb, a == b);
            }
        }
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
