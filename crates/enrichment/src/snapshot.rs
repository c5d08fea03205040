//! The immutable reference-data snapshot readers see.
//!
//! Items are kept by primary key and indexed by the user's lookup key. Both maps are persistent
//! (`imbl`): building the next snapshot from the current one shares structure, so a delta of one
//! change costs O(log n), not a copy of the table, and the old snapshot stays valid for readers
//! that still hold it.

use std::hash::Hash;
use std::sync::Arc;

use crate::key::ItemKey;

/// What to do when several items share one lookup key (the original joins orders on
/// `dish == item` while the table's key is `(item, price)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ambiguity {
    /// Use the item with the lowest primary key (attribute by attribute, values compared as
    /// text). Deterministic; the default.
    #[default]
    LowestKey,
    /// Treat the lookup as unmatched, with the reason that it is ambiguous.
    Reject,
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    /// The item for the key.
    Found(&'a Arc<T>),
    /// No item has that lookup key.
    Missing,
    /// Several items have it and the policy is [`Ambiguity::Reject`]; how many.
    Ambiguous(usize),
}

#[derive(Debug)]
enum Resolved<T> {
    One(Arc<T>),
    Ambiguous(usize),
}

impl<T> Clone for Resolved<T> {
    fn clone(&self) -> Self {
        match self {
            Resolved::One(t) => Resolved::One(Arc::clone(t)),
            Resolved::Ambiguous(n) => Resolved::Ambiguous(*n),
        }
    }
}

/// The items that share one lookup key. Most keys have one item: it is kept without a set.
#[derive(Clone, Debug)]
enum Group {
    One(ItemKey),
    Many(imbl::OrdSet<ItemKey>),
}

impl Group {
    fn len(&self) -> usize {
        match self {
            Group::One(_) => 1,
            Group::Many(set) => set.len(),
        }
    }

    fn lowest(&self) -> Option<&ItemKey> {
        match self {
            Group::One(k) => Some(k),
            Group::Many(set) => set.get_min(),
        }
    }

    fn with(self, key: ItemKey) -> Group {
        match self {
            Group::One(k) if k == key => Group::One(k),
            Group::One(k) => Group::Many([k, key].into_iter().collect()),
            Group::Many(mut set) => {
                set.insert(key);
                Group::Many(set)
            }
        }
    }

    fn without(self, key: &ItemKey) -> Option<Group> {
        match self {
            Group::One(k) if &k == key => None,
            Group::One(k) => Some(Group::One(k)),
            Group::Many(mut set) => {
                set.remove(key);
                match set.len() {
                    0 => None,
                    1 => set.get_min().cloned().map(Group::One),
                    _ => Some(Group::Many(set)),
                }
            }
        }
    }
}

#[derive(Debug)]
struct Entry<T, K> {
    value: Arc<T>,
    lookup: Option<K>,
}

impl<T, K: Clone> Clone for Entry<T, K> {
    fn clone(&self) -> Self {
        Entry {
            value: Arc::clone(&self.value),
            lookup: self.lookup.clone(),
        }
    }
}

/// One version of the reference data. Cheap to clone; never changes once published.
#[derive(Debug)]
pub struct Snapshot<T, K: Hash + Eq + Clone> {
    items: imbl::HashMap<ItemKey, Entry<T, K>>,
    by_lookup: imbl::HashMap<K, Resolved<T>>,
    candidates: imbl::HashMap<K, Group>,
    ambiguity: Ambiguity,
    version: u64,
}

impl<T, K: Hash + Eq + Clone> Clone for Snapshot<T, K> {
    fn clone(&self) -> Self {
        Snapshot {
            items: self.items.clone(),
            by_lookup: self.by_lookup.clone(),
            candidates: self.candidates.clone(),
            ambiguity: self.ambiguity,
            version: self.version,
        }
    }
}

impl<T, K: Hash + Eq + Clone> Snapshot<T, K> {
    /// An empty snapshot (version 0: nothing loaded yet).
    pub(crate) fn empty(ambiguity: Ambiguity) -> Self {
        Snapshot {
            items: imbl::HashMap::new(),
            by_lookup: imbl::HashMap::new(),
            candidates: imbl::HashMap::new(),
            ambiguity,
            version: 0,
        }
    }

    /// A snapshot of the given items, built in bulk (the full load's path). A key given twice
    /// keeps its last value.
    pub(crate) fn from_entries(
        ambiguity: Ambiguity,
        entries: impl IntoIterator<Item = (ItemKey, T, Option<K>)>,
    ) -> Self {
        let mut unique: std::collections::HashMap<ItemKey, Entry<T, K>> =
            std::collections::HashMap::new();
        for (key, value, lookup) in entries {
            unique.insert(
                key,
                Entry {
                    value: Arc::new(value),
                    lookup,
                },
            );
        }
        let mut groups: std::collections::HashMap<K, Vec<ItemKey>> =
            std::collections::HashMap::new();
        for (key, entry) in &unique {
            if let Some(lookup) = &entry.lookup {
                groups.entry(lookup.clone()).or_default().push(key.clone());
            }
        }
        let mut by_lookup = imbl::HashMap::new();
        let mut candidates = imbl::HashMap::new();
        for (lookup, keys) in groups {
            let group = if keys.len() == 1 {
                Group::One(keys[0].clone())
            } else {
                Group::Many(keys.into_iter().collect())
            };
            let n = group.len();
            let resolved = match (n, ambiguity) {
                (1, _) | (_, Ambiguity::LowestKey) => group
                    .lowest()
                    .and_then(|k| unique.get(k))
                    .map(|e| Resolved::One(Arc::clone(&e.value))),
                (_, Ambiguity::Reject) => Some(Resolved::Ambiguous(n)),
            };
            if let Some(r) = resolved {
                by_lookup.insert(lookup.clone(), r);
            }
            candidates.insert(lookup, group);
        }
        Snapshot {
            items: unique.into_iter().collect(),
            by_lookup,
            candidates,
            ambiguity,
            version: 1,
        }
    }

    /// The item for a lookup key. Synchronous and lock-free: the hot path.
    pub fn lookup<Q>(&self, key: &Q) -> Lookup<'_, T>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.by_lookup.get(key) {
            Some(Resolved::One(t)) => Lookup::Found(t),
            Some(Resolved::Ambiguous(n)) => Lookup::Ambiguous(*n),
            None => Lookup::Missing,
        }
    }

    /// The item with a primary key.
    pub fn get(&self, key: &ItemKey) -> Option<&Arc<T>> {
        self.items.get(key).map(|e| &e.value)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Increases with every published change; 0 before the first load.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every primary key (unordered).
    pub fn keys(&self) -> impl Iterator<Item = &ItemKey> {
        self.items.keys()
    }

    pub(crate) fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// Inserts or replaces the item at `key`.
    pub(crate) fn upsert(&mut self, key: ItemKey, value: T, lookup: Option<K>) {
        self.upsert_entry(
            key,
            Entry {
                value: Arc::new(value),
                lookup,
            },
        );
    }

    /// Copies the item at `key` in `from` (if any) into this snapshot, sharing its value.
    pub(crate) fn copy_from(&mut self, from: &Snapshot<T, K>, key: &ItemKey) {
        if let Some(entry) = from.items.get(key) {
            self.upsert_entry(key.clone(), entry.clone());
        }
    }

    fn upsert_entry(&mut self, key: ItemKey, entry: Entry<T, K>) {
        let lookup = entry.lookup.clone();
        let old = self.items.insert(key.clone(), entry);
        if let Some(old_lookup) = old.and_then(|e| e.lookup) {
            if Some(&old_lookup) != lookup.as_ref() {
                self.unindex(&old_lookup, &key);
            }
        }
        if let Some(lookup) = lookup {
            let group = match self.candidates.get(&lookup).cloned() {
                Some(g) => g.with(key),
                None => Group::One(key),
            };
            self.candidates.insert(lookup.clone(), group);
            self.resolve(&lookup);
        }
    }

    /// Removes the item at `key`, if any.
    pub(crate) fn remove(&mut self, key: &ItemKey) {
        if let Some(lookup) = self.items.remove(key).and_then(|e| e.lookup) {
            self.unindex(&lookup, key);
        }
    }

    fn unindex(&mut self, lookup: &K, key: &ItemKey) {
        if let Some(group) = self.candidates.get(lookup).cloned() {
            match group.without(key) {
                None => {
                    self.candidates.remove(lookup);
                }
                Some(g) => {
                    self.candidates.insert(lookup.clone(), g);
                }
            }
        }
        self.resolve(lookup);
    }

    fn resolve(&mut self, lookup: &K) {
        let resolved = self.candidates.get(lookup).and_then(|group| {
            let n = group.len();
            let first = group.lowest()?;
            match (n, self.ambiguity) {
                (1, _) | (_, Ambiguity::LowestKey) => self
                    .items
                    .get(first)
                    .map(|e| Resolved::One(Arc::clone(&e.value))),
                (_, Ambiguity::Reject) => Some(Resolved::Ambiguous(n)),
            }
        });
        match resolved {
            Some(r) => {
                self.by_lookup.insert(lookup.clone(), r);
            }
            None => {
                self.by_lookup.remove(lookup);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyValue;

    fn key(item: &str, price: &str) -> ItemKey {
        ItemKey(vec![KeyValue::S(item.into()), KeyValue::N(price.into())])
    }

    #[test]
    fn upsert_remove_and_lookup() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("burger", "100"), "medium".into(), Some("burger".into()));
        assert_eq!(
            s.lookup("burger"),
            Lookup::Found(&Arc::new("medium".to_owned()))
        );
        let before = s.clone();
        s.upsert(key("burger", "100"), "high".into(), Some("burger".into()));
        assert_eq!(
            s.lookup("burger"),
            Lookup::Found(&Arc::new("high".to_owned()))
        );
        // The old version is untouched: readers holding it keep their view.
        assert_eq!(
            before.lookup("burger"),
            Lookup::Found(&Arc::new("medium".to_owned()))
        );
        s.remove(&key("burger", "100"));
        assert_eq!(s.lookup("burger"), Lookup::Missing);
        assert!(s.is_empty());
    }

    #[test]
    fn several_items_per_lookup_key() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("burger", "200"), "b".into(), Some("burger".into()));
        s.upsert(key("burger", "100"), "a".into(), Some("burger".into()));
        assert_eq!(s.lookup("burger"), Lookup::Found(&Arc::new("a".to_owned())));
        s.remove(&key("burger", "100"));
        assert_eq!(s.lookup("burger"), Lookup::Found(&Arc::new("b".to_owned())));

        let mut r: Snapshot<String, String> = Snapshot::empty(Ambiguity::Reject);
        r.upsert(key("burger", "200"), "b".into(), Some("burger".into()));
        r.upsert(key("burger", "100"), "a".into(), Some("burger".into()));
        assert_eq!(r.lookup("burger"), Lookup::Ambiguous(2));
    }

    #[test]
    fn changing_the_lookup_key_moves_the_item() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("x", "1"), "v".into(), Some("old".into()));
        s.upsert(key("x", "1"), "v".into(), Some("new".into()));
        assert_eq!(s.lookup("old"), Lookup::Missing);
        assert!(matches!(s.lookup("new"), Lookup::Found(_)));
        s.upsert(key("x", "1"), "v".into(), None);
        assert_eq!(s.lookup("new"), Lookup::Missing);
        assert_eq!(s.len(), 1);
    }

    proptest::proptest! {
        /// Any sequence of upserts and removals resolves every lookup key like a plain model:
        /// the item with the lowest primary key among those sharing it.
        #[test]
        fn lookups_match_a_simple_model(ops in proptest::collection::vec((0u8..8, 0u8..3, proptest::bool::ANY), 0..60)) {
            let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
            let mut model: std::collections::BTreeMap<ItemKey, (String, String)> = Default::default();
            for (i, (k, l, insert)) in ops.into_iter().enumerate() {
                let item = key(&format!("i{k}"), "1");
                let lookup = format!("l{l}");
                if insert {
                    s.upsert(item.clone(), format!("v{i}"), Some(lookup.clone()));
                    model.insert(item, (format!("v{i}"), lookup));
                } else {
                    s.remove(&item);
                    model.remove(&item);
                }
                for l in 0..3 {
                    let lookup = format!("l{l}");
                    let expected = model.iter().find(|(_, (_, lk))| *lk == lookup).map(|(_, (v, _))| v.clone());
                    let got = match s.lookup(lookup.as_str()) {
                        Lookup::Found(v) => Some((**v).clone()),
                        _ => None,
                    };
                    proptest::prop_assert_eq!(got, expected);
                }
                proptest::prop_assert_eq!(s.len(), model.len());
            }
        }
    }
}
