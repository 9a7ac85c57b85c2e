//! Where load history comes from. A [`MetricsSource`] answers range queries; the
//! [`HistoryCache`] keeps each series between reconciles so later ones fetch only new points.
//!
//! This module and the controller are the only places that do IO.

pub mod config;
pub mod prometheus;
pub mod secret;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;

use crate::{
    api::conditions::reasons,
    planner::series::{Series, align_down},
};

/// Why a source could not answer. Messages never carry credentials or URLs with secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source {source_name:?} is not configured in the operator (ask the cluster admin; PredictiveScalers can only name configured sources)"
    )]
    UnknownSource { source_name: String },
    #[error("source {source_name:?}: authentication failed: {message}")]
    AuthFailed {
        source_name: String,
        message: String,
    },
    #[error("source {source_name:?} is unavailable: {message}")]
    Unavailable {
        source_name: String,
        message: String,
    },
    #[error("source {source_name:?} timed out: {message}")]
    Timeout {
        source_name: String,
        message: String,
    },
    #[error("source {source_name:?} rejected the query: {message}")]
    InvalidQuery {
        source_name: String,
        message: String,
    },
    #[error("query to source {source_name:?} failed: {message}")]
    QueryFailed {
        source_name: String,
        message: String,
    },
    #[error("the query returned {count} series ({}); it must return one series: wrap it in sum()", examples.join(", "))]
    MultipleSeries { count: usize, examples: Vec<String> },
}

impl SourceError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::UnknownSource { .. } => reasons::UNKNOWN_SOURCE,
            SourceError::AuthFailed { .. } => reasons::METRICS_AUTH_FAILED,
            SourceError::Unavailable { .. } => reasons::METRICS_SOURCE_UNAVAILABLE,
            SourceError::Timeout { .. } => reasons::METRICS_QUERY_TIMEOUT,
            SourceError::InvalidQuery { .. } => reasons::INVALID_QUERY,
            SourceError::QueryFailed { .. } => reasons::METRICS_QUERY_FAILED,
            SourceError::MultipleSeries { .. } => reasons::MULTIPLE_SERIES,
        }
    }
}

/// A time-series backend with the Prometheus range-query semantics.
pub trait MetricsSource: Send + Sync {
    /// Samples of `query` at `start, start + step, ..., end` (unix seconds, inclusive). Missing
    /// points are simply absent; a query returning more than one series is an error.
    fn range<'a>(
        &'a self,
        query: &'a str,
        start: i64,
        end: i64,
        step: i64,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>>;

    /// Requests sent so far, where the source counts them.
    fn requests(&self) -> Option<u64> {
        None
    }
}

/// Cache key: the same query at the same step from the same source shares its history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryKey {
    pub source: String,
    pub query: String,
    pub step: i64,
}

/// How many of the latest steps are fetched again on each update: Prometheus may fill in the
/// newest points late (scrape and rule evaluation delay).
const REFETCH_STEPS: i64 = 5;

/// The default bound of [`HistoryStore`]: 10 million points, about 80 MB (500 series of 14
/// days at 1 minute).
pub const DEFAULT_MAX_POINTS: usize = 10_000_000;

/// One cached series and who uses it.
struct Slot {
    /// Locked across a fetch, so users of one key never fetch it twice at once.
    series: Arc<tokio::sync::Mutex<Option<Arc<Series>>>>,
    /// Users (scalers, by `namespace/name`) and the lookback each wants.
    users: HashMap<String, i64>,
    last_used: u64,
    points: usize,
}

#[derive(Default)]
struct StoreInner {
    slots: HashMap<HistoryKey, Slot>,
    tick: u64,
}

/// The history of every (source, query, step) in use, shared by all scalers, so each
/// reconcile fetches only the points after the cached ones.
///
/// Bounded: past `max_points` in all, the least recently used series are dropped (and fetched
/// whole again when next needed). A series is also dropped as soon as no scaler uses it any
/// more ([`HistoryStore::use_only`], [`HistoryStore::release`]): a spec that changes its
/// query or step invalidates the old entry.
pub struct HistoryStore {
    inner: Mutex<StoreInner>,
    max_points: usize,
}

impl Default for HistoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_POINTS)
    }
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, points) = self.usage();
        f.debug_struct("HistoryStore")
            .field("entries", &entries)
            .field("points", &points)
            .field("max_points", &self.max_points)
            .finish()
    }
}

impl HistoryStore {
    pub fn new(max_points: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_points,
        }
    }

    /// Brings the series of `key` up to `now` for `user` and returns `lookback` seconds of it,
    /// ending at `now` (aligned to the step). The first call fetches everything; later ones
    /// only the points after the cached ones (plus a few, to catch late samples). A failed
    /// fetch leaves the cached series as it was.
    pub async fn update(
        &self,
        user: &str,
        source: &dyn MetricsSource,
        key: &HistoryKey,
        lookback: i64,
        now: i64,
    ) -> Result<Arc<Series>, SourceError> {
        let step = key.step;
        let (cell, keep) = {
            let mut inner = self.inner.lock().expect("history lock");
            inner.tick += 1;
            let tick = inner.tick;
            let slot = inner.slots.entry(key.clone()).or_insert_with(|| Slot {
                series: Arc::default(),
                users: HashMap::new(),
                last_used: tick,
                points: 0,
            });
            slot.users.insert(user.to_string(), lookback);
            slot.last_used = tick;
            let keep = slot.users.values().copied().max().unwrap_or(lookback);
            (slot.series.clone(), keep.max(lookback))
        };

        let result = {
            let mut cached = cell.lock().await;
            let end = align_down(now, step);
            let start = end - align_down(keep, step);
            let covers = cached
                .as_ref()
                .filter(|s| !s.is_empty() && s.start <= start + step && s.end() > start);
            let fetch_from = match covers {
                Some(s) => (s.end() - REFETCH_STEPS * step).max(start),
                None => start,
            };
            let fresh = covers.is_none();
            let samples = source.range(&key.query, fetch_from, end, step).await?;
            // values that are not finite (NaN, +Inf) are gaps, not load; cached values were
            // cleaned when they arrived
            let samples: Vec<(i64, f64)> = samples
                .into_iter()
                .map(|(t, v)| (t, if v.is_finite() { v } else { f64::NAN }))
                .collect();
            if fresh {
                *cached = Some(Arc::new(Series::empty(start, step)));
            }
            let arc = cached.as_mut().expect("set above");
            // copies only when a fit of the previous reconcile still holds the old series
            let series = Arc::make_mut(arc);
            series.upsert(&samples);
            series.extend_to(end + step);
            series.trim_before(start);
            let len = series.len();
            let want_start = end - align_down(lookback, step);
            if want_start > series.start {
                let mut view = series.clone();
                view.trim_before(want_start);
                (Arc::new(view), len)
            } else {
                (arc.clone(), len)
            }
        };

        let mut inner = self.inner.lock().expect("history lock");
        if let Some(slot) = inner.slots.get_mut(key)
            && Arc::ptr_eq(&slot.series, &cell)
        {
            slot.points = result.1;
        }
        self.evict(&mut inner, key);
        Ok(result.0)
    }

    /// Drops least recently used series (never `keep`) until the store is within its bound.
    fn evict(&self, inner: &mut StoreInner, keep: &HistoryKey) {
        let mut total: usize = inner.slots.values().map(|s| s.points).sum();
        while total > self.max_points {
            let Some(victim) = inner
                .slots
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let slot = inner.slots.remove(&victim).expect("present");
            total -= slot.points;
            tracing::info!(
                source = %victim.source,
                step = victim.step,
                points = slot.points,
                max_points = self.max_points,
                "history cache full: dropped the least recently used series"
            );
        }
    }

    /// Declares that `user` now uses exactly `keys`: it stops using every other series, and a
    /// series that no one uses any more is dropped (after a spec changed its query or step).
    pub fn use_only(&self, user: &str, keys: &[HistoryKey]) {
        let mut inner = self.inner.lock().expect("history lock");
        inner.slots.retain(|k, slot| {
            if !keys.contains(k) {
                slot.users.remove(user);
            }
            !slot.users.is_empty()
        });
    }

    /// `user` is gone (its PredictiveScaler was deleted).
    pub fn release(&self, user: &str) {
        self.use_only(user, &[]);
    }

    /// Series cached and points held in all.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("history lock");
        (
            inner.slots.len(),
            inner.slots.values().map(|s| s.points).sum(),
        )
    }

    /// Whether a series for `key` is cached.
    pub fn contains(&self, key: &HistoryKey) -> bool {
        self.inner
            .lock()
            .expect("history lock")
            .slots
            .contains_key(key)
    }
}

/// The sources configured in the operator, by name.
#[derive(Default, Clone)]
pub struct Sources {
    by_name: HashMap<String, Arc<dyn MetricsSource>>,
}

impl Sources {
    /// The configured names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn insert(&mut self, name: impl Into<String>, source: Arc<dyn MetricsSource>) {
        self.by_name.insert(name.into(), source);
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn MetricsSource>, SourceError> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| SourceError::UnknownSource {
                source_name: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A source that serves `f(t) = t` and records the ranges it was asked for.
    #[derive(Default)]
    struct Fn {
        calls: Mutex<Vec<(String, i64, i64)>>,
    }

    impl MetricsSource for Fn {
        fn range<'a>(
            &'a self,
            q: &'a str,
            start: i64,
            end: i64,
            step: i64,
        ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
            self.calls.lock().unwrap().push((q.to_string(), start, end));
            Box::pin(async move {
                Ok((start..=end)
                    .step_by(step as usize)
                    .map(|t| (t, if t % 600 == 0 { f64::NAN } else { t as f64 }))
                    .collect())
            })
        }
    }

    fn key(query: &str, step: i64) -> HistoryKey {
        HistoryKey {
            source: "default".into(),
            query: query.into(),
            step,
        }
    }

    #[tokio::test]
    async fn second_update_fetches_only_new_points() {
        let src = Fn::default();
        let store = HistoryStore::default();
        let k = key("q", 60);
        let s = store.update("ns/a", &src, &k, 3600, 100_000).await.unwrap();
        assert_eq!(s.len(), 61);
        assert_eq!(s.last_finite(), Some((99_960, 99_960.0)));
        let s2 = store.update("ns/a", &src, &k, 3600, 100_600).await.unwrap();
        assert_eq!(s2.len(), 61);
        assert_eq!(s2.last_finite(), Some((100_560, 100_560.0)));
        assert_eq!(s2.start, 100_560 - 3600);
        assert!(
            s2.values[s2.len() - 1 - (100_560 % 600) as usize / 60].is_nan(),
            "NaN stays a gap"
        );
        let calls = src.calls.lock().unwrap().clone();
        assert_eq!((calls[0].1, calls[0].2), (99_960 - 3600, 99_960));
        assert_eq!(
            (calls[1].1, calls[1].2),
            (99_960 + 60 - 5 * 60, 100_560),
            "only the new minutes and a few before"
        );
        assert_eq!(store.usage(), (1, 61));
    }

    #[tokio::test]
    async fn changing_query_or_step_drops_the_old_series() {
        let src = Fn::default();
        let store = HistoryStore::default();
        let (a, b, a5) = (key("a", 60), key("b", 60), key("a", 300));
        store.update("ns/x", &src, &a, 3600, 100_000).await.unwrap();
        store.update("ns/y", &src, &b, 3600, 100_000).await.unwrap();
        // x's spec now uses query a at a 5-minute step
        store.use_only("ns/x", std::slice::from_ref(&a5));
        assert!(!store.contains(&a), "no one uses a at 1m any more");
        assert!(store.contains(&b), "y still uses b");
        store
            .update("ns/x", &src, &a5, 3600, 100_000)
            .await
            .unwrap();
        let calls = src.calls.lock().unwrap().len();
        store.update("ns/x", &src, &a, 3600, 100_000).await.unwrap();
        let last = src.calls.lock().unwrap()[calls].clone();
        assert_eq!(
            last.1,
            99_960 - 3600,
            "fetched whole again after invalidation"
        );
        store.release("ns/y");
        assert!(!store.contains(&b), "a deleted scaler's series go");
    }

    #[tokio::test]
    async fn shared_key_keeps_the_longest_lookback() {
        let src = Fn::default();
        let store = HistoryStore::default();
        let k = key("q", 60);
        let long = store
            .update("ns/long", &src, &k, 7200, 100_000)
            .await
            .unwrap();
        let short = store
            .update("ns/short", &src, &k, 3600, 100_000)
            .await
            .unwrap();
        assert_eq!((long.len(), short.len()), (121, 61));
        let again = store
            .update("ns/long", &src, &k, 7200, 100_060)
            .await
            .unwrap();
        assert_eq!(again.len(), 121);
        let calls = src.calls.lock().unwrap().clone();
        assert_eq!(
            calls.len(),
            3,
            "one full fetch, then only new points: {calls:?}"
        );
        assert!(calls[1].1 > 99_000 && calls[2].1 > 99_000, "{calls:?}");
    }

    #[tokio::test]
    async fn bounded_by_points_dropping_the_least_recently_used() {
        let src = Fn::default();
        let store = HistoryStore::new(150);
        let (a, b, c) = (key("a", 60), key("b", 60), key("c", 60));
        store.update("ns/1", &src, &a, 3600, 100_000).await.unwrap();
        store.update("ns/1", &src, &b, 3600, 100_000).await.unwrap();
        assert_eq!(store.usage(), (2, 122));
        store.update("ns/1", &src, &a, 3600, 100_000).await.unwrap(); // a is now newer than b
        store.update("ns/1", &src, &c, 3600, 100_000).await.unwrap();
        assert!(store.contains(&a) && store.contains(&c) && !store.contains(&b));
        assert!(store.usage().1 <= 150, "{:?}", store.usage());
        // one series larger than the bound is still served (and kept alone)
        let big = store
            .update("ns/1", &src, &key("big", 60), 36_000, 100_000)
            .await
            .unwrap();
        assert_eq!(big.len(), 601);
        assert_eq!(store.usage(), (1, 601));
    }

    #[test]
    fn errors_name_their_reason() {
        let e = SourceError::MultipleSeries {
            count: 2,
            examples: vec!["m{pod=\"a\"}".into(), "m{pod=\"b\"}".into()],
        };
        assert_eq!(e.reason(), "QueryReturnedManySeries");
        assert!(
            e.to_string()
                .contains("must return one series: wrap it in sum()"),
            "{e}"
        );
        assert!(e.to_string().contains("m{pod=\"b\"}"), "{e}");
    }
}
