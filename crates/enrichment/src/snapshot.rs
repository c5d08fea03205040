//! The immutable reference-data snapshot readers see.
//!
//! Items are kept by primary key and indexed by the user's lookup key. Both maps are persistent
//! (`imbl`): building the next snapshot from the current one shares structure, so a delta of one
//! change costs O(log n), not a copy of the table, and the old snapshot stays valid for readers
//! that still hold it.
//!
//! Memory: an item's primary key and lookup key are allocated once ([`Keys`]) and shared by
//! both maps (the items map's key, the index's key, a group's member), and the map slots hold
//! pointers only: a HAMT node reserves room for all its slots, so small slots matter.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use equivalent::Equivalent;

use crate::key::ItemKey;

/// The maps' hasher. foldhash is several times faster than the standard SipHash on these short
/// keys and not DoS-resistant: the keys come from the user's own table (and a feed snapshot of
/// it), not from untrusted input, so a hash-flooding attack would need write access to the
/// reference table itself. Seeded per process.
type Hashing = foldhash::fast::RandomState;

type Map<K, V> = imbl::GenericHashMap<K, V, Hashing, imbl::shared_ptr::DefaultSharedPtr>;

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

/// An item's primary key and lookup key, in one allocation shared by both maps.
#[derive(Debug)]
struct Keys<K> {
    key: ItemKey,
    lookup: Option<K>,
}

/// [`Keys`] as the items map's key and a group's member: hashed, compared and ordered by the
/// primary key alone.
#[derive(Debug)]
struct ByKey<K>(Arc<Keys<K>>);

impl<K> Clone for ByKey<K> {
    fn clone(&self) -> Self {
        ByKey(Arc::clone(&self.0))
    }
}

impl<K> PartialEq for ByKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl<K> Eq for ByKey<K> {}

impl<K> PartialOrd for ByKey<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for ByKey<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

impl<K> Hash for ByKey<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl<K> Borrow<ItemKey> for ByKey<K> {
    fn borrow(&self) -> &ItemKey {
        &self.0.key
    }
}

/// [`Keys`] with a lookup key as the index's key: hashed and compared by the lookup key alone
/// (as the lookup key itself hashes, so a [`Query`] finds it).
#[derive(Debug)]
struct ByLookup<K>(Arc<Keys<K>>);

impl<K> Clone for ByLookup<K> {
    fn clone(&self) -> Self {
        ByLookup(Arc::clone(&self.0))
    }
}

impl<K: PartialEq> PartialEq for ByLookup<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.lookup == other.0.lookup
    }
}

impl<K: Eq> Eq for ByLookup<K> {}

impl<K: Hash> Hash for ByLookup<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Only keys with a lookup key are indexed; hashed as the bare `K`, not the `Option`.
        if let Some(lookup) = &self.0.lookup {
            lookup.hash(state);
        }
    }
}

/// A lookup key (or what it borrows as, e.g. `&str` for `String`) to find a [`ByLookup`] by.
struct Query<'a, Q: ?Sized>(&'a Q);

impl<Q: Hash + ?Sized> Hash for Query<'_, Q> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<K: Borrow<Q>, Q: Eq + ?Sized> Equivalent<ByLookup<K>> for Query<'_, Q> {
    fn equivalent(&self, key: &ByLookup<K>) -> bool {
        key.0.lookup.as_ref().is_some_and(|l| l.borrow() == self.0)
    }
}

/// The items that share one lookup key. Most keys have one item: it is the index's key (its
/// [`Keys`]), and the slot holds just its value.
#[derive(Debug)]
enum Indexed<T, K> {
    One(Arc<T>),
    Many(Box<Many<T, K>>),
}

#[derive(Debug)]
struct Many<T, K> {
    members: imbl::OrdSet<ByKey<K>>,
    resolved: Resolved<T>,
}

impl<T, K> Clone for Indexed<T, K> {
    fn clone(&self) -> Self {
        match self {
            Indexed::One(t) => Indexed::One(Arc::clone(t)),
            Indexed::Many(m) => Indexed::Many(Box::new(Many {
                members: m.members.clone(),
                resolved: m.resolved.clone(),
            })),
        }
    }
}

/// One version of the reference data. Cheap to clone; never changes once published.
pub struct Snapshot<T, K: Hash + Eq + Clone> {
    items: Map<ByKey<K>, Arc<T>>,
    index: Map<ByLookup<K>, Indexed<T, K>>,
    ambiguity: Ambiguity,
    version: u64,
}

impl<T: fmt::Debug, K: Hash + Eq + Clone + fmt::Debug> fmt::Debug for Snapshot<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("items", &self.items)
            .field("index", &self.index)
            .field("ambiguity", &self.ambiguity)
            .field("version", &self.version)
            .finish()
    }
}

impl<T, K: Hash + Eq + Clone> Clone for Snapshot<T, K> {
    fn clone(&self) -> Self {
        Snapshot {
            items: self.items.clone(),
            index: self.index.clone(),
            ambiguity: self.ambiguity,
            version: self.version,
        }
    }
}

impl<T, K: Hash + Eq + Clone> Snapshot<T, K> {
    /// An empty snapshot (version 0: nothing loaded yet).
    pub(crate) fn empty(ambiguity: Ambiguity) -> Self {
        Snapshot {
            items: Map::with_hasher(Hashing::default()),
            index: Map::with_hasher(Hashing::default()),
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
        let mut s = Snapshot::empty(ambiguity);
        // The items first: a later duplicate replaces the whole slot, its keys with its value.
        for (key, value, lookup) in entries {
            s.items
                .insert(ByKey(Arc::new(Keys { key, lookup })), Arc::new(value));
        }
        // Then the index, from unique items: one hash and one slot per lookup key.
        for (keys, value) in &s.items {
            let Some(lookup) = &keys.0.lookup else {
                continue;
            };
            // (imbl's entry API would hash once, but its occupied entry gives back the key it
            // was asked for, not the stored one, and walks the trie again to mutate.)
            let Some((first, slot)) = s.index.get_key_value_mut(&Query(lookup)) else {
                s.index.insert(
                    ByLookup(Arc::clone(&keys.0)),
                    Indexed::One(Arc::clone(value)),
                );
                continue;
            };
            match slot {
                Indexed::One(first_value) => {
                    let first = ByKey(Arc::clone(&first.0));
                    let low = if keys.0.key < first.0.key {
                        value
                    } else {
                        &*first_value
                    };
                    let resolved = match ambiguity {
                        Ambiguity::LowestKey => Resolved::One(Arc::clone(low)),
                        Ambiguity::Reject => Resolved::Ambiguous(2),
                    };
                    *slot = Indexed::Many(Box::new(Many {
                        members: [first, keys.clone()].into_iter().collect(),
                        resolved,
                    }));
                }
                Indexed::Many(m) => {
                    let lowest = m.members.get_min().is_none_or(|l| keys.0.key < l.0.key);
                    m.members.insert(keys.clone());
                    match ambiguity {
                        Ambiguity::LowestKey if lowest => {
                            m.resolved = Resolved::One(Arc::clone(value));
                        }
                        Ambiguity::LowestKey => {}
                        Ambiguity::Reject => m.resolved = Resolved::Ambiguous(m.members.len()),
                    }
                }
            }
        }
        s.version = 1;
        s
    }

    /// The item for a lookup key. Synchronous and lock-free: the hot path.
    pub fn lookup<Q>(&self, key: &Q) -> Lookup<'_, T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.index.get(&Query(key)) {
            Some(Indexed::One(t)) => Lookup::Found(t),
            Some(Indexed::Many(m)) => match &m.resolved {
                Resolved::One(t) => Lookup::Found(t),
                Resolved::Ambiguous(n) => Lookup::Ambiguous(*n),
            },
            None => Lookup::Missing,
        }
    }

    /// The item with a primary key.
    pub fn get(&self, key: &ItemKey) -> Option<&Arc<T>> {
        self.items.get(key)
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
        self.items.keys().map(|k| &k.0.key)
    }

    pub(crate) fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// Inserts or replaces the item at `key`.
    pub(crate) fn upsert(&mut self, key: ItemKey, value: T, lookup: Option<K>) {
        self.upsert_entry(ByKey(Arc::new(Keys { key, lookup })), Arc::new(value));
    }

    /// Copies the item at `key` in `from` (if any) into this snapshot, sharing its value and
    /// its keys.
    pub(crate) fn copy_from(&mut self, from: &Snapshot<T, K>, key: &ItemKey) {
        if let Some((keys, value)) = from.items.get_key_value(key) {
            self.upsert_entry(keys.clone(), Arc::clone(value));
        }
    }

    fn upsert_entry(&mut self, keys: ByKey<K>, value: Arc<T>) {
        let old = self
            .items
            .get_key_value(&keys.0.key)
            .map(|(k, _)| k.clone());
        self.items.insert(keys.clone(), Arc::clone(&value));
        if let Some(old) = old {
            if let Some(old_lookup) = &old.0.lookup {
                if Some(old_lookup) != keys.0.lookup.as_ref() {
                    self.unindex(old_lookup, &old.0.key);
                }
            }
        }
        if let Some(lookup) = &keys.0.lookup {
            let slot = match self.index.get_key_value(&Query(lookup)) {
                None => Indexed::One(value),
                Some((first, Indexed::One(_))) if first.0.key == keys.0.key => Indexed::One(value),
                Some((first, Indexed::One(_))) => {
                    let members = [ByKey(Arc::clone(&first.0)), keys.clone()]
                        .into_iter()
                        .collect();
                    self.many(members)
                }
                Some((_, Indexed::Many(m))) => {
                    let mut members = m.members.clone();
                    members.insert(keys.clone());
                    self.many(members)
                }
            };
            // The slot's key is this item's keys now (same lookup key, current allocation).
            self.index.insert(ByLookup(Arc::clone(&keys.0)), slot);
        }
    }

    /// Removes the item at `key`, if any.
    pub(crate) fn remove(&mut self, key: &ItemKey) {
        if let Some((keys, _)) = self.items.remove_with_key(key) {
            if let Some(lookup) = &keys.0.lookup {
                self.unindex(lookup, key);
            }
        }
    }

    /// Takes the item at `key` out of the group of `lookup`.
    fn unindex(&mut self, lookup: &K, key: &ItemKey) {
        let next = match self.index.get_key_value(&Query(lookup)) {
            None => return,
            Some((first, Indexed::One(_))) if &first.0.key == key => None,
            Some((_, Indexed::One(_))) => return,
            Some((_, Indexed::Many(m))) => {
                let mut members = m.members.clone();
                members.remove(key);
                match members.len() {
                    0 => None,
                    1 => members.get_min().and_then(|only| {
                        let value = self.items.get(&only.0.key)?;
                        Some((only.clone(), Indexed::One(Arc::clone(value))))
                    }),
                    _ => members
                        .get_min()
                        .cloned()
                        .map(|low| (low, self.many(members))),
                }
            }
        };
        match next {
            // Keyed by a remaining member, so no removed item's keys stay alive in the index.
            Some((member, slot)) => {
                self.index.insert(ByLookup(member.0), slot);
            }
            None => {
                self.index.remove(&Query(lookup));
            }
        }
    }

    /// A group of several items, resolved by the policy.
    fn many(&self, members: imbl::OrdSet<ByKey<K>>) -> Indexed<T, K> {
        let resolved = match self.ambiguity {
            Ambiguity::LowestKey => {
                match members.get_min().and_then(|low| self.items.get(&low.0.key)) {
                    Some(value) => Resolved::One(Arc::clone(value)),
                    None => Resolved::Ambiguous(members.len()),
                }
            }
            Ambiguity::Reject => Resolved::Ambiguous(members.len()),
        };
        Indexed::Many(Box::new(Many { members, resolved }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyValue;

    fn key(item: &str, price: &str) -> ItemKey {
        ItemKey::from_iter([KeyValue::S(item.into()), KeyValue::N(price.into())])
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

    #[test]
    fn from_entries_keeps_the_last_of_a_duplicate_key_with_its_lookup_key() {
        let s: Snapshot<String, String> = Snapshot::from_entries(
            Ambiguity::LowestKey,
            [
                (key("x", "1"), "a".to_owned(), Some("old".to_owned())),
                (key("y", "1"), "b".to_owned(), Some("other".to_owned())),
                (key("x", "1"), "c".to_owned(), Some("new".to_owned())),
            ],
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.version(), 1);
        assert_eq!(s.lookup("old"), Lookup::Missing);
        assert_eq!(s.lookup("new"), Lookup::Found(&Arc::new("c".to_owned())));
        assert_eq!(s.get(&key("x", "1")), Some(&Arc::new("c".to_owned())));
        let mut keys: Vec<String> = s.keys().map(ToString::to_string).collect();
        keys.sort();
        assert_eq!(keys, ["x/1", "y/1"]);
    }

    #[test]
    fn groups_from_entries_resolve_and_shrink_by_policy() {
        let entries = || {
            [
                (key("b", "3"), "b3".to_owned(), Some("b".to_owned())),
                (key("b", "1"), "b1".to_owned(), Some("b".to_owned())),
                (key("b", "2"), "b2".to_owned(), Some("b".to_owned())),
                (key("n", "1"), "none".to_owned(), None),
            ]
        };
        let mut s: Snapshot<String, String> =
            Snapshot::from_entries(Ambiguity::LowestKey, entries());
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b1".to_owned())));
        s.remove(&key("b", "1"));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b2".to_owned())));
        s.upsert(key("b", "2"), "b2'".into(), Some("b".into()));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b2'".to_owned())));
        s.remove(&key("b", "2"));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b3".to_owned())));
        s.remove(&key("b", "3"));
        assert_eq!(s.lookup("b"), Lookup::Missing);
        assert_eq!(s.len(), 1);

        let mut r: Snapshot<String, String> = Snapshot::from_entries(Ambiguity::Reject, entries());
        assert_eq!(r.lookup("b"), Lookup::Ambiguous(3));
        r.remove(&key("b", "3"));
        assert_eq!(r.lookup("b"), Lookup::Ambiguous(2));
        r.upsert(key("b", "1"), "moved".into(), Some("c".into()));
        assert_eq!(r.lookup("b"), Lookup::Found(&Arc::new("b2".to_owned())));
        assert_eq!(r.lookup("c"), Lookup::Found(&Arc::new("moved".to_owned())));
    }

    #[test]
    fn copy_from_shares_the_value_and_indexes_it() {
        let from: Snapshot<String, String> = Snapshot::from_entries(
            Ambiguity::LowestKey,
            [(key("x", "1"), "v".to_owned(), Some("l".to_owned()))],
        );
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.copy_from(&from, &key("x", "1"));
        s.copy_from(&from, &key("missing", "1"));
        assert_eq!(s.len(), 1);
        match (s.lookup("l"), from.lookup("l")) {
            (Lookup::Found(a), Lookup::Found(b)) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
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

        /// A bulk build of any entries (duplicate keys, shared lookup keys, items without one)
        /// answers every lookup like one upsert after another, and like a plain model, under
        /// both policies; and so does every snapshot after further changes to it.
        #[test]
        fn bulk_build_matches_upserts_and_the_model(
            entries in proptest::collection::vec((0u8..12, 0u8..4, 0u8..5), 0..40),
            ops in proptest::collection::vec((0u8..12, 0u8..5, proptest::bool::ANY), 0..20),
            reject in proptest::bool::ANY,
        ) {
            let ambiguity = if reject { Ambiguity::Reject } else { Ambiguity::LowestKey };
            let item = |k: u8| key(&format!("i{}", k % 4), &format!("{}", k / 4));
            // lookup key 4 stands for none
            let lookup = |l: u8| (l < 4).then(|| format!("l{l}"));
            let mut model: std::collections::BTreeMap<ItemKey, (String, Option<String>)> = Default::default();
            let mut one_by_one: Snapshot<String, String> = Snapshot::empty(ambiguity);
            let mut bulk = Vec::new();
            for (i, (k, v, l)) in entries.into_iter().enumerate() {
                let value = format!("v{i}-{v}");
                one_by_one.upsert(item(k), value.clone(), lookup(l));
                model.insert(item(k), (value.clone(), lookup(l)));
                bulk.push((item(k), value, lookup(l)));
            }
            let mut s = Snapshot::from_entries(ambiguity, bulk);
            let check = |s: &Snapshot<String, String>, model: &std::collections::BTreeMap<ItemKey, (String, Option<String>)>| -> Result<(), proptest::test_runner::TestCaseError> {
                proptest::prop_assert_eq!(s.len(), model.len());
                for l in 0..4 {
                    let lk = format!("l{l}");
                    let group: Vec<&String> = model.values().filter(|(_, g)| g.as_deref() == Some(lk.as_str())).map(|(v, _)| v).collect();
                    let expected = match (group.len(), ambiguity) {
                        (0, _) => None,
                        (1, _) | (_, Ambiguity::LowestKey) => Some(Ok(group[0].clone())),
                        (n, Ambiguity::Reject) => Some(Err(n)),
                    };
                    let got = match s.lookup(lk.as_str()) {
                        Lookup::Found(v) => Some(Ok((**v).clone())),
                        Lookup::Ambiguous(n) => Some(Err(n)),
                        Lookup::Missing => None,
                    };
                    proptest::prop_assert_eq!(got, expected);
                }
                for (k, (v, _)) in model {
                    proptest::prop_assert_eq!(s.get(k).map(|v| (**v).clone()), Some(v.clone()));
                }
                Ok(())
            };
            check(&s, &model)?;
            check(&one_by_one, &model)?;
            let before = s.clone();
            let before_model = model.clone();
            for (i, (k, l, insert)) in ops.into_iter().enumerate() {
                if insert {
                    s.upsert(item(k), format!("u{i}"), lookup(l));
                    model.insert(item(k), (format!("u{i}"), lookup(l)));
                } else {
                    s.remove(&item(k));
                    model.remove(&item(k));
                }
                check(&s, &model)?;
            }
            // the bulk-built version is untouched by the changes to its successor
            check(&before, &before_model)?;
        }
    }
}
