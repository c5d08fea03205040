//! The keys of the changes' maps: an item's primary key and lookup key in one allocation,
//! seen by the items map as its primary key and by the index as its lookup key.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use equivalent::Equivalent;

use crate::key::ItemKey;

/// An item's primary key and lookup key, in one allocation shared by both maps.
#[derive(Debug)]
pub(super) struct Keys<K> {
    pub(super) key: ItemKey,
    pub(super) lookup: Option<K>,
}

/// [`Keys`] as the items map's key and a group's member: hashed, compared and ordered by the
/// primary key alone.
#[derive(Debug)]
pub(super) struct ByKey<K>(pub(super) Arc<Keys<K>>);

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
pub(super) struct ByLookup<K>(pub(super) Arc<Keys<K>>);

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
pub(super) struct Query<'a, Q: ?Sized>(pub(super) &'a Q);

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
