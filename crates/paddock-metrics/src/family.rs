//! One family's series: a value per label-value tuple, created on first use.
//!
//! Lookups hash the borrowed `&str` values (no allocation) and take a read lock; only the
//! first sample of a new tuple takes the write lock and allocates its `String`s.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The per-series state of a metric kind.
pub(crate) trait Core: Send + Sync + 'static {
    /// What every series of a family is built from (a histogram's buckets).
    type Config: Send + Sync;
    fn new(config: &Self::Config) -> Self;
}

pub(crate) type Series<M, const N: usize> = ([String; N], Arc<M>);

/// Keys are already hashes of the label values: pass them through.
#[derive(Default)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type SeriesMap<M, const N: usize> = HashMap<u64, Vec<Series<M, N>>, BuildHasherDefault<PreHashed>>;

pub(crate) struct Family<M: Core, const N: usize> {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) label_names: [&'static str; N],
    config: M::Config,
    hasher: RandomState,
    series: RwLock<SeriesMap<M, N>>,
}

fn matches<const N: usize>(stored: &[String; N], values: &[&str; N]) -> bool {
    stored.iter().zip(values.iter()).all(|(a, b)| a == b)
}

impl<M: Core, const N: usize> Family<M, N> {
    pub(crate) fn new(
        name: &'static str,
        help: &'static str,
        label_names: [&'static str; N],
        config: M::Config,
    ) -> Self {
        let family = Family {
            name,
            help,
            label_names,
            config,
            hasher: RandomState::new(),
            series: RwLock::new(SeriesMap::default()),
        };
        if N == 0 {
            // A family without labels has exactly one series: show it (at zero) from the start.
            let _ = family.get([""; N]);
        }
        family
    }

    pub(crate) fn config(&self) -> &M::Config {
        &self.config
    }

    fn key(&self, values: &[&str; N]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for v in values {
            v.hash(&mut h);
        }
        h.finish()
    }

    fn read(&self) -> RwLockReadGuard<'_, SeriesMap<M, N>> {
        // A panic while the lock was held can't leave a series half-made: keep serving.
        self.series.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, SeriesMap<M, N>> {
        self.series.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn find<'m>(map: &'m SeriesMap<M, N>, key: u64, values: &[&str; N]) -> Option<&'m Arc<M>> {
        map.get(&key)?
            .iter()
            .find(|(stored, _)| matches(stored, values))
            .map(|(_, m)| m)
    }

    fn insert_locked(&self, map: &mut SeriesMap<M, N>, key: u64, values: &[&str; N]) -> Arc<M> {
        let bucket = map.entry(key).or_default();
        if let Some((_, m)) = bucket.iter().find(|(stored, _)| matches(stored, values)) {
            return Arc::clone(m);
        }
        let m = Arc::new(M::new(&self.config));
        bucket.push((values.map(String::from), Arc::clone(&m)));
        m
    }

    /// Runs `f` on the series of `values`, creating it first if needed.
    pub(crate) fn with<R>(&self, values: [&str; N], f: impl FnOnce(&M) -> R) -> R {
        let key = self.key(&values);
        {
            let map = self.read();
            if let Some(m) = Self::find(&map, key, &values) {
                return f(m);
            }
        }
        let m = self.insert_locked(&mut self.write(), key, &values);
        f(&m)
    }

    /// The series of `values`, created if needed; a handle to keep for repeated use.
    pub(crate) fn get(&self, values: [&str; N]) -> Arc<M> {
        let key = self.key(&values);
        if let Some(m) = Self::find(&self.read(), key, &values) {
            return Arc::clone(m);
        }
        self.insert_locked(&mut self.write(), key, &values)
    }

    /// Runs `f` on the series of `values` if it exists; creates nothing.
    pub(crate) fn peek<R>(&self, values: [&str; N], f: impl FnOnce(&M) -> R) -> Option<R> {
        let key = self.key(&values);
        Self::find(&self.read(), key, &values).map(|m| f(m))
    }

    /// Under the write lock, so a render sees all of it or none: `reset` runs on every
    /// existing series, then `apply` on the series of each tuple (created if needed).
    pub(crate) fn replace<K, V>(
        &self,
        tuples: impl IntoIterator<Item = ([K; N], V)>,
        reset: impl Fn(&M),
        apply: impl Fn(&M, V),
    ) where
        K: AsRef<str>,
    {
        let mut map = self.write();
        for (_, m) in map.values().flatten() {
            reset(m);
        }
        for (values, v) in tuples {
            let values: [&str; N] = std::array::from_fn(|i| values[i].as_ref());
            let key = self.key(&values);
            let m = self.insert_locked(&mut map, key, &values);
            apply(&m, v);
        }
    }

    /// Calls `f` on every series, in label-value order.
    pub(crate) fn for_each_sorted(&self, mut f: impl FnMut(&[String; N], &M)) {
        let map = self.read();
        let mut all: Vec<&Series<M, N>> = map.values().flatten().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (values, m) in all {
            f(values, m);
        }
    }

    /// How many series exist.
    pub(crate) fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }
}
