//! Where load history comes from. A [`MetricsSource`] answers range queries; the
//! [`HistoryStore`] keeps each series between reconciles (shared by every scaler with the same
//! source, query and step) so later ones fetch only new points, and backs off a failing query;
//! [`Sources`] holds the configured sources by name and decides who may use which; [`slots`]
//! shares each source's query slots fairly among the namespaces that use it.
//!
//! IO: this file calls the sources (through [`MetricsSource`]) but opens nothing itself;
//! [`prometheus`] sends the HTTP requests and reads its TLS files, [`secret`] reads credential
//! files, [`config`] reads the sources file. [`access`] and [`promql`] are pure; [`slots`] does
//! no IO.

pub mod access;
pub mod compact;
pub mod config;
pub mod prometheus;
pub mod promql;
pub mod secret;
pub mod slots;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;

use self::{
    access::{NamespaceLabels, SourceAccess},
    compact::CompactSeries,
    config::{ConfigError, SourceConfig},
    prometheus::PrometheusSource,
};
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
    /// More than one series; only the count is told (other series' labels may belong to
    /// someone else).
    #[error("the query returned {count} series; it must return one series: wrap it in sum()")]
    MultipleSeries { count: usize },
    /// A `groupBy` metric's query returned more series than `maxSeries` (`count` is `None` when
    /// the answer was refused by its size before the series were counted).
    #[error(
        "the query returned {} series, more than maxSeries {max}: group by fewer labels, filter the query, or raise maxSeries (at most 50)",
        count.map_or_else(|| "more".to_string(), |c| c.to_string())
    )]
    TooManySeries { count: Option<usize>, max: usize },
    /// The answer grew past what one series of the asked points can need: reading stopped there.
    #[error(
        "source {source_name:?}: the answer was larger than {limit_bytes} bytes, the most one series of {points} \
         points can need; reading stopped there (does the query return many series? wrap it in sum())"
    )]
    TooLarge {
        source_name: String,
        limit_bytes: u64,
        points: i64,
    },
    #[error(
        "namespace {namespace:?} may not use source {source_name:?} (the cluster admin allows sources per namespace \
         in the operator's sources file: allowedNamespaces, allowedNamespaceSelector)"
    )]
    NotAllowed {
        source_name: String,
        namespace: String,
    },
    #[error(
        "source {source_name:?} admits namespaces by label (allowedNamespaceSelector), and the labels of \
         namespace {namespace:?} could not be read: {message}. The scaler waits and tries again; if it \
         lasts, check that the operator may get namespaces (the chart grants it when a source has a selector)"
    )]
    NamespaceUnreadable {
        source_name: String,
        namespace: String,
        message: String,
    },
    #[error("source {source_name:?} isolates namespaces: {message}")]
    QueryNotAllowed {
        source_name: String,
        message: String,
    },
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
            SourceError::TooManySeries { .. } => reasons::TOO_MANY_SERIES,
            SourceError::TooLarge { .. } => reasons::QUERY_TOO_LARGE,
            SourceError::NotAllowed { .. } => reasons::SOURCE_NOT_ALLOWED,
            SourceError::NamespaceUnreadable { .. } => reasons::NAMESPACE_LABELS_UNAVAILABLE,
            SourceError::QueryNotAllowed { .. } => reasons::QUERY_NOT_ALLOWED,
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

    /// The series of `query` grouped by `labels` (a `sum by (<labels>) (...)` query), each
    /// with its values of those labels in their order, and its samples on the window's grid
    /// ([`GroupWindow::grid`]); more than `max_series` series is
    /// [`SourceError::TooManySeries`]. A source that cannot tell series apart refuses.
    fn range_grouped<'a>(
        &'a self,
        query: &'a str,
        labels: &'a [String],
        window: GroupWindow,
    ) -> BoxFuture<'a, Result<Vec<GroupSeries>, SourceError>> {
        let _ = (query, labels, window);
        Box::pin(async {
            Err(SourceError::QueryFailed {
                source_name: "unknown".into(),
                message: "this source cannot read several series (groupBy)".into(),
            })
        })
    }

    /// Requests sent so far, where the source counts them.
    fn requests(&self) -> Option<u64> {
        None
    }

    /// The value at `at` (unix seconds) of each series of the instant `query`, with the value
    /// of its `label` (series without it are skipped): one series per pod for drain-aware
    /// scale-in. At most `max_series` (the caller's bound, from the workload's pods); more is
    /// an error. A source without instant queries says so.
    fn instant_by_label<'a>(
        &'a self,
        query: &'a str,
        label: &'a str,
        at: i64,
        max_series: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, SourceError>> {
        let _ = (query, label, at, max_series);
        Box::pin(async {
            Err(SourceError::QueryFailed {
                source_name: String::new(),
                message: "this source cannot answer instant queries".into(),
            })
        })
    }
}

/// The fewest series drain-aware scale-in lets its pod query return
/// ([`MetricsSource::instant_by_label`]): it allows twice the target's pods (pods that just
/// went keep their series for a while), and at least this many.
pub const MAX_LABELLED_SERIES: usize = 5_000;
/// The range and cap of a [`MetricsSource::range_grouped`] read (unix seconds, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupWindow {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub max_series: usize,
}

impl GroupWindow {
    /// A series on this window's grid, `start, start + step, ..., end`, without samples
    /// (`NaN`): what a grouped read writes each series' samples into.
    pub fn grid(&self) -> Series {
        let n = ((self.end - self.start) / self.step.max(1) + 1).max(0) as usize;
        Series::new(self.start, self.step.max(1), vec![f64::NAN; n])
    }
}

/// One series of a grouped read: its values of the group labels (in their order; `""` where
/// the series lacks one) and its samples on the window's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSeries {
    pub values: Vec<String>,
    pub series: Series,
}

/// Reads the series of a `groupBy` metric over `lookback` seconds up to `now`, one [`Series`]
/// per label set on the `step` grid (not cached: read once per refit), each named as
/// `planner::group::label_set` names it, sorted by name.
pub async fn read_group(
    source: &dyn MetricsSource,
    query: &str,
    labels: &[String],
    lookback: i64,
    now: i64,
    step: i64,
    max_series: usize,
) -> Result<Vec<crate::planner::group::Part>, SourceError> {
    let end = align_down(now, step);
    let start = end - align_down(lookback, step);
    let window = GroupWindow {
        start,
        end,
        step,
        max_series,
    };
    let read = source.range_grouped(query, labels, window).await?;
    let mut parts: Vec<crate::planner::group::Part> = read
        .into_iter()
        .map(|g| {
            let pairs: Vec<(String, String)> = labels.iter().cloned().zip(g.values).collect();
            let mut series = g.series;
            series.extend_to(end + step);
            crate::planner::group::Part {
                labels: crate::planner::group::label_set(&pairs),
                series,
            }
        })
        .collect();
    parts.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(parts)
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

/// The default bound of [`HistoryStore`]: 50 million points, about 105 MB in the cache's
/// compact form ([`compact`]: ~2 bytes a point; ~2,480 series of 14 days at 1 minute).
pub const DEFAULT_MAX_POINTS: usize = 50_000_000;

/// The last failure of a series' fetch: until `retry_at` its users get the same error without a
/// request (a failing or refusing source is not asked again every sync).
#[derive(Debug, Clone)]
struct Failure {
    error: SourceError,
    failures: u32,
    retry_at: i64,
}

/// How long a failing series waits before the next fetch: `base` after the first failure,
/// doubling with each one after, at most `max` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: i64,
    pub max: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: 30, max: 300 }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failures in a row (1 or more).
    pub fn delay(&self, failures: u32) -> i64 {
        let doublings = failures.saturating_sub(1).min(20);
        self.base
            .max(0)
            .saturating_mul(1i64 << doublings)
            .min(self.max.max(self.base))
    }
}

/// A cached series (none before its first fetch), locked across a fetch, so users of one key
/// never fetch it twice at once.
type SeriesCell = Arc<tokio::sync::Mutex<Option<Arc<CompactSeries>>>>;

/// What [`HistoryStore::update`] gives a scaler: the last `lookback` of a cached series,
/// shared with the cache in its compact form ([`compact`]) and decoded only when read in
/// whole ([`HistoryView::series`], once per fit), so a fleet's histories stay ~2 bytes a point.
#[derive(Debug, Clone)]
pub struct HistoryView {
    series: Arc<CompactSeries>,
    /// Unix seconds of the view's first step (at the earliest, the series' start).
    from: i64,
}

impl HistoryView {
    /// The view as a plain series, decoded: a transient for a fit.
    pub fn series(&self) -> Series {
        self.series.window(self.from)
    }

    /// Unix seconds of the first step.
    pub fn start(&self) -> i64 {
        self.series.start_from(self.from)
    }

    /// Unix seconds one step after the last.
    pub fn end(&self) -> i64 {
        self.series.end()
    }

    pub fn step(&self) -> i64 {
        self.series.step()
    }

    /// Steps in the view, gaps included.
    pub fn len(&self) -> usize {
        ((self.end() - self.start()) / self.step()) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values (not gaps) in the view.
    pub fn finite_count(&self) -> usize {
        self.series.finite_count(self.from)
    }

    /// The latest value, as `(time, value)`.
    pub fn last_finite(&self) -> Option<(i64, f64)> {
        self.series.last_finite(self.from)
    }
}

/// One cached series and who uses it.
struct Slot {
    series: SeriesCell,
    /// Users (scalers, by `namespace/name`) and the lookback each wants.
    users: HashMap<String, i64>,
    last_used: u64,
    points: usize,
    /// Bytes its compact form holds.
    bytes: usize,
    failure: Option<Failure>,
}

#[derive(Default)]
struct StoreInner {
    slots: HashMap<HistoryKey, Slot>,
    tick: u64,
}

/// What a [`HistoryStore`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Series cached.
    pub series: usize,
    /// Points held, all series together.
    pub points: usize,
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
    retry: RetryPolicy,
    /// Counts the series dropped to stay within `max_points`.
    evictions: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for HistoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_POINTS)
    }
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let usage = self.usage();
        f.debug_struct("HistoryStore")
            .field("entries", &usage.series)
            .field("points", &usage.points)
            .field("max_points", &self.max_points)
            .finish()
    }
}

impl HistoryStore {
    pub fn new(max_points: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_points,
            retry: RetryPolicy::default(),
            evictions: None,
        }
    }

    /// Counts every series dropped to stay within the bound on `counter`.
    pub fn with_eviction_counter(
        mut self,
        counter: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        self.evictions = Some(counter);
        self
    }

    /// Failing fetches wait as `retry` says before the next request.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
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
    ) -> Result<HistoryView, SourceError> {
        let (cell, keep) = self.register(user, key, lookback, now)?;
        let fetched = {
            let mut cached = cell.lock().await;
            let window = Window::new(cached.as_deref(), key.step, keep, now);
            let samples = match source
                .range(&key.query, window.fetch_from, window.end, key.step)
                .await
            {
                Ok(samples) => samples,
                Err(e) => {
                    self.record_failure(key, &cell, e.clone(), now);
                    return Err(e);
                }
            };
            merge(&mut cached, &window, samples, lookback)
        };
        self.record_success(key, &cell, &fetched);
        Ok(fetched.view)
    }

    /// Marks `user` as a user of `key` wanting `lookback`, and returns the series' cell and the
    /// longest lookback any of its users wants; or the last error, while its retry wait lasts.
    fn register(
        &self,
        user: &str,
        key: &HistoryKey,
        lookback: i64,
        now: i64,
    ) -> Result<(SeriesCell, i64), SourceError> {
        let mut inner = self.inner.lock().expect("history lock");
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.entry(key.clone()).or_insert_with(|| Slot {
            series: Arc::default(),
            users: HashMap::new(),
            last_used: tick,
            points: 0,
            bytes: 0,
            failure: None,
        });
        slot.users.insert(user.to_string(), lookback);
        slot.last_used = tick;
        if let Some(f) = slot.failure.as_ref().filter(|f| now < f.retry_at) {
            return Err(f.error.clone());
        }
        let keep = slot.users.values().copied().max().unwrap_or(lookback);
        Ok((slot.series.clone(), keep.max(lookback)))
    }

    /// Records the size of `key`'s series after a fetch (when `cell` is still its series),
    /// forgets its last failure and evicts others if the store is past its bound.
    fn record_success(&self, key: &HistoryKey, cell: &SeriesCell, fetched: &Fetched) {
        let mut inner = self.inner.lock().expect("history lock");
        if let Some(slot) = inner.slots.get_mut(key)
            && Arc::ptr_eq(&slot.series, cell)
        {
            slot.points = fetched.points;
            slot.bytes = fetched.bytes;
            slot.failure = None;
        }
        self.evict(&mut inner, key);
    }

    /// Remembers that fetching `key` failed at `now`, so its users wait before the next try.
    fn record_failure(&self, key: &HistoryKey, cell: &SeriesCell, error: SourceError, now: i64) {
        let mut inner = self.inner.lock().expect("history lock");
        if let Some(slot) = inner.slots.get_mut(key)
            && Arc::ptr_eq(&slot.series, cell)
        {
            let failures = slot.failure.as_ref().map_or(0, |f| f.failures) + 1;
            slot.failure = Some(Failure {
                error,
                failures,
                retry_at: now + self.retry.delay(failures),
            });
        }
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
            if let Some(c) = &self.evictions {
                c.inc();
            }
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
    pub fn usage(&self) -> Usage {
        let inner = self.inner.lock().expect("history lock");
        Usage {
            series: inner.slots.len(),
            points: inner.slots.values().map(|s| s.points).sum(),
        }
    }

    /// Bytes the cached series hold, all together (their compact form: about 2 a point).
    pub fn bytes(&self) -> usize {
        let inner = self.inner.lock().expect("history lock");
        inner.slots.values().map(|s| s.bytes).sum()
    }

    /// Whether a series for `key` is cached.
    #[cfg(test)]
    fn contains(&self, key: &HistoryKey) -> bool {
        self.inner
            .lock()
            .expect("history lock")
            .slots
            .contains_key(key)
    }
}

/// The points one update asks for, all aligned to `step`: the series is kept from `start` to
/// `end`, and fetched from `fetch_from` (from `start` when `fresh`: nothing cached can be
/// extended).
struct Window {
    step: i64,
    start: i64,
    end: i64,
    fetch_from: i64,
    fresh: bool,
}

impl Window {
    /// The window of an update at `now` keeping `keep` seconds at `step`, given the `cached`
    /// series.
    fn new(cached: Option<&CompactSeries>, step: i64, keep: i64, now: i64) -> Self {
        let end = align_down(now, step);
        let start = end - align_down(keep, step);
        // a cached series that ends after now (the clock stepped back) is fetched again
        // whole: kept, its "future" points would freeze the observed load and the fetches
        let covers = cached.filter(|s| {
            !s.is_empty() && s.start() <= start + step && s.end() > start && s.end() <= end + step
        });
        let fetch_from = match covers {
            Some(s) => (s.end() - REFETCH_STEPS * step).max(start),
            None => start,
        };
        Self {
            step,
            start,
            end,
            fetch_from,
            fresh: covers.is_none(),
        }
    }
}

/// What an update leaves: the view its caller asked for, and the points and bytes the cache
/// now holds for the key.
struct Fetched {
    view: HistoryView,
    points: usize,
    bytes: usize,
}

/// Puts fetched `samples` into the `cached` series of `window` and returns the last `lookback`
/// seconds of it. All but the steps the next update fetches again are encoded.
fn merge(
    cached: &mut Option<Arc<CompactSeries>>,
    window: &Window,
    samples: Vec<(i64, f64)>,
    lookback: i64,
) -> Fetched {
    let Window {
        step, start, end, ..
    } = *window;
    // values that are not finite (NaN, +Inf) are gaps, not load; cached values were cleaned
    // when they arrived
    let samples: Vec<(i64, f64)> = samples
        .into_iter()
        .map(|(t, v)| (t, if v.is_finite() { v } else { f64::NAN }))
        .collect();
    if window.fresh {
        let mut fresh = CompactSeries::empty(start, step);
        fresh.reserve_to(end + step);
        *cached = Some(Arc::new(fresh));
    }
    let arc = cached.as_mut().expect("set above");
    // copies only when a fit of the previous reconcile still holds the old series
    let series = Arc::make_mut(arc);
    series.write(&samples, REFETCH_STEPS as usize);
    series.extend_to(end + step);
    series.trim_before(start);
    series.seal(REFETCH_STEPS as usize);
    let (points, bytes) = (series.len(), series.heap_bytes());
    let view = HistoryView {
        series: arc.clone(),
        from: end - align_down(lookback, step),
    };
    Fetched {
        view,
        points,
        bytes,
    }
}

/// A source a scaler may use, and the query to send to it.
pub struct Resolved {
    /// The source as the scaler's namespace uses it: its requests take that namespace's share
    /// of the source's query slots ([`slots`]).
    pub source: Arc<dyn MetricsSource>,
    /// The query as the source receives it (with the namespace matcher under isolation).
    pub query: String,
}

/// The sources configured in the operator, by name, with who may use them.
#[derive(Default, Clone)]
pub struct Sources {
    by_name: HashMap<String, Configured>,
}

/// One configured source and who may use it.
#[derive(Clone)]
struct Configured {
    source: Arc<dyn MetricsSource>,
    access: SourceAccess,
}

impl Sources {
    /// The configured names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds a source open to every namespace.
    pub fn insert(&mut self, name: impl Into<String>, source: Arc<dyn MetricsSource>) {
        self.insert_with_access(name, source, SourceAccess::open());
    }

    /// Adds a source that the namespaces `access` allows may use.
    fn insert_with_access(
        &mut self,
        name: impl Into<String>,
        source: Arc<dyn MetricsSource>,
        access: SourceAccess,
    ) {
        self.by_name
            .insert(name.into(), Configured { source, access });
    }

    /// The source `name`, whoever asks (for the operator's own tools).
    pub fn get(&self, name: &str) -> Result<Arc<dyn MetricsSource>, SourceError> {
        self.configured(name).map(|c| c.source.clone())
    }

    /// Who may use source `name`.
    pub fn access(&self, name: &str) -> Option<&SourceAccess> {
        self.by_name.get(name).map(|c| &c.access)
    }

    fn configured(&self, name: &str) -> Result<&Configured, SourceError> {
        self.by_name
            .get(name)
            .ok_or_else(|| SourceError::UnknownSource {
                source_name: name.to_string(),
            })
    }

    /// The source `name` for a scaler in `namespace` (whose labels are `labels`, when the
    /// source's access needs them), and `query` as that source must receive it; or why not.
    pub fn resolve(
        &self,
        namespace: &str,
        labels: &NamespaceLabels,
        name: &str,
        query: &str,
    ) -> Result<Resolved, SourceError> {
        let Configured { source, access } = self.configured(name)?;
        if !access.allows(namespace, labels.get()) {
            return Err(match labels {
                // the selector might admit it: the labels are missing, not the right
                NamespaceLabels::Unreadable(why) if access.needs_labels() => {
                    SourceError::NamespaceUnreadable {
                        source_name: name.to_string(),
                        namespace: namespace.to_string(),
                        message: why.clone(),
                    }
                }
                _ => SourceError::NotAllowed {
                    source_name: name.to_string(),
                    namespace: namespace.to_string(),
                },
            });
        }
        let query = match &access.enforce_namespace_label {
            None => query.to_string(),
            Some(label) => promql::enforce_label(query, label, namespace).map_err(|e| {
                SourceError::QueryNotAllowed {
                    source_name: name.to_string(),
                    message: e.to_string(),
                }
            })?,
        };
        Ok(Resolved {
            source: slots::for_namespace(source.clone(), namespace),
            query,
        })
    }
}

/// Builds a [`Sources`] registry; fails on the first bad source.
pub fn build_sources(
    configs: &[SourceConfig],
    default_timeout: Duration,
) -> Result<Sources, ConfigError> {
    let mut sources = Sources::default();
    for c in configs {
        let access = c.access()?;
        let source = PrometheusSource::from_config(c, default_timeout)?;
        if !access.all_namespaces && access.namespaces.is_empty() && access.selector.is_none() {
            tracing::warn!(
                source = %c.name,
                "no namespace may use this source: set allowedNamespaces (names, or \"*\" for every namespace) \
                 or allowedNamespaceSelector in the sources file"
            );
        }
        sources.insert_with_access(c.name.clone(), Arc::new(source), access);
    }
    Ok(sources)
}

/// A parser's message on one line (sources' errors are one line each, for logs and conditions).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

    #[test]
    fn unread_labels_are_their_own_refusal_only_where_the_selector_could_admit() {
        let selector: access::NamespaceSelector =
            serde_yaml::from_str("matchLabels: {tier: paid}").unwrap();
        let mut sources = Sources::default();
        let by_label = SourceAccess {
            namespaces: vec!["named".into()],
            selector: Some(selector),
            ..Default::default()
        };
        sources.insert_with_access("labelled", Arc::new(Fn::default()), by_label);
        let unread = NamespaceLabels::Unreadable("the API server did not answer within 10s".into());
        let err = sources
            .resolve("team-a", &unread, "labelled", "up")
            .err()
            .expect("refused");
        assert_eq!(err.reason(), reasons::NAMESPACE_LABELS_UNAVAILABLE);
        assert!(
            err.to_string().contains("did not answer within 10s"),
            "{err}"
        );
        // listed by name: the labels do not matter
        assert!(sources.resolve("named", &unread, "labelled", "up").is_ok());
        // read, and not matching: not allowed
        let other = NamespaceLabels::Read([("tier".to_string(), "free".to_string())].into());
        let err = sources
            .resolve("team-a", &other, "labelled", "up")
            .err()
            .expect("refused");
        assert_eq!(err.reason(), reasons::SOURCE_NOT_ALLOWED);
        let paid = NamespaceLabels::Read([("tier".to_string(), "paid".to_string())].into());
        assert!(sources.resolve("team-a", &paid, "labelled", "up").is_ok());
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
        assert_eq!(s2.start(), 100_560 - 3600);
        assert!(
            s2.series().values[s2.len() - 1 - (100_560 % 600) as usize / 60].is_nan(),
            "NaN stays a gap"
        );
        let calls = src.calls.lock().unwrap().clone();
        assert_eq!((calls[0].1, calls[0].2), (99_960 - 3600, 99_960));
        assert_eq!(
            (calls[1].1, calls[1].2),
            (99_960 + 60 - 5 * 60, 100_560),
            "only the new minutes and a few before"
        );
        assert_eq!(
            store.usage(),
            Usage {
                series: 1,
                points: 61
            }
        );
    }

    #[tokio::test]
    async fn a_fortnight_at_one_minute_is_held_in_about_two_bytes_a_point() {
        let src = Fn::default();
        let store = HistoryStore::default();
        let k = key("q", 60);
        let fortnight = 14 * 86_400;
        let now = 1_767_225_600 + 7;
        let s = store
            .update("ns/a", &src, &k, fortnight, now)
            .await
            .unwrap();
        assert_eq!(s.len(), 20_161);
        let first = store.bytes();
        // a day of updates a minute apart: the cache neither grows nor copies
        for minute in 1..=1440 {
            store
                .update("ns/a", &src, &k, fortnight, now + minute * 60)
                .await
                .unwrap();
        }
        let bytes = store.bytes();
        let per_point = bytes as f64 / 20_161.0;
        assert!(
            per_point < 2.25,
            "{per_point} bytes a point ({first} at first)"
        );
        // at most one more block (its codes and offset) and a tail's worth of f64
        let one_more = 128 * 2 + 16 + (128 + 16) * 8;
        assert!(
            bytes <= first + one_more,
            "{bytes} bytes after a day, {first} at first"
        );
        // the view decodes to what the source served (whole numbers: exact; NaN: gaps)
        let s = store
            .update("ns/a", &src, &k, fortnight, now + 1441 * 60)
            .await
            .unwrap()
            .series();
        for (i, v) in s.values.iter().enumerate() {
            let t = s.time_of(i);
            if t % 600 == 0 {
                assert!(v.is_nan(), "{t}");
            } else {
                assert_eq!(*v, t as f64, "{t}");
            }
        }
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
        let evictions = prometheus_client::metrics::counter::Counter::<u64>::default();
        let store = HistoryStore::new(150).with_eviction_counter(evictions.clone());
        let (a, b, c) = (key("a", 60), key("b", 60), key("c", 60));
        store.update("ns/1", &src, &a, 3600, 100_000).await.unwrap();
        store.update("ns/1", &src, &b, 3600, 100_000).await.unwrap();
        assert_eq!(
            store.usage(),
            Usage {
                series: 2,
                points: 122
            }
        );
        store.update("ns/1", &src, &a, 3600, 100_000).await.unwrap(); // a is now newer than b
        store.update("ns/1", &src, &c, 3600, 100_000).await.unwrap();
        assert!(store.contains(&a) && store.contains(&c) && !store.contains(&b));
        assert!(store.usage().points <= 150, "{:?}", store.usage());
        assert_eq!(evictions.get(), 1, "the eviction is counted");
        // one series larger than the bound is still served (and kept alone)
        let big = store
            .update("ns/1", &src, &key("big", 60), 36_000, 100_000)
            .await
            .unwrap();
        assert_eq!(big.len(), 601);
        assert_eq!(
            store.usage(),
            Usage {
                series: 1,
                points: 601
            }
        );
    }

    #[tokio::test]
    async fn a_clock_that_steps_back_refetches_instead_of_freezing() {
        let src = Fn::default();
        let store = HistoryStore::default();
        let k = key("q", 60);
        // a second user keeps two hours cached, so the window after the step is still covered
        store
            .update("ns/long", &src, &k, 7200, 100_000)
            .await
            .unwrap();
        let s = store.update("ns/a", &src, &k, 3600, 100_000).await.unwrap();
        assert_eq!(s.last_finite().unwrap().0, 99_960);
        // half an hour back
        let s = store.update("ns/a", &src, &k, 3600, 98_200).await.unwrap();
        let (last, value) = s.last_finite().unwrap();
        assert_eq!(
            (last, value),
            (98_160, 98_160.0),
            "the newest point is now's, not the future's"
        );
        assert!(
            s.end() <= 98_200 + 60,
            "no points from the future: {}",
            s.end()
        );
        let calls = src.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        assert_eq!(
            (calls[2].1, calls[2].2),
            (98_160 - 7200, 98_160),
            "fetched whole again"
        );
    }

    /// Fails while `failing` is set; counts requests.
    #[derive(Default)]
    struct Flaky {
        failing: std::sync::atomic::AtomicBool,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl MetricsSource for Flaky {
        fn range<'a>(
            &'a self,
            _q: &'a str,
            start: i64,
            end: i64,
            step: i64,
        ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
            use std::sync::atomic::Ordering::SeqCst;
            self.calls.fetch_add(1, SeqCst);
            let fail = self.failing.load(SeqCst);
            Box::pin(async move {
                if fail {
                    Err(SourceError::Unavailable {
                        source_name: "default".into(),
                        message: "down".into(),
                    })
                } else {
                    Ok((start..=end)
                        .step_by(step as usize)
                        .map(|t| (t, 1.0))
                        .collect())
                }
            })
        }
    }

    #[tokio::test]
    async fn a_failing_source_is_asked_again_only_after_a_growing_wait() {
        use std::sync::atomic::Ordering::SeqCst;
        let src = Flaky::default();
        src.failing.store(true, SeqCst);
        let store = HistoryStore::default().with_retry(RetryPolicy { base: 10, max: 40 });
        let k = key("q", 60);
        let mut asked_at = Vec::new();
        // an evaluation every 5 s for 2 minutes
        for now in (100_000..100_120).step_by(5) {
            let before = src.calls.load(SeqCst);
            let e = store.update("ns/a", &src, &k, 3600, now).await.unwrap_err();
            assert_eq!(
                e.reason(),
                "MetricsSourceUnavailable",
                "the same error while waiting"
            );
            if src.calls.load(SeqCst) > before {
                asked_at.push(now - 100_000);
            }
        }
        // waits of 10, 20, 40, 40 s after the failures
        assert_eq!(asked_at, vec![0, 10, 30, 70, 110], "{asked_at:?}");
        // it answers again: the next try succeeds and the wait is forgotten
        src.failing.store(false, SeqCst);
        assert!(store.update("ns/a", &src, &k, 3600, 100_150).await.is_ok());
        src.failing.store(true, SeqCst);
        store
            .update("ns/a", &src, &k, 3600, 100_155)
            .await
            .unwrap_err();
        let calls = src.calls.load(SeqCst);
        store
            .update("ns/a", &src, &k, 3600, 100_160)
            .await
            .unwrap_err();
        assert_eq!(
            src.calls.load(SeqCst),
            calls,
            "10 s after a first failure: no request"
        );
        store
            .update("ns/a", &src, &k, 3600, 100_165)
            .await
            .unwrap_err();
        assert_eq!(src.calls.load(SeqCst), calls + 1);
        assert_eq!(RetryPolicy { base: 10, max: 40 }.delay(u32::MAX), 40);
    }

    #[test]
    fn errors_name_their_reason() {
        let e = SourceError::MultipleSeries { count: 2 };
        assert_eq!(e.reason(), "QueryReturnedManySeries");
        assert!(
            e.to_string()
                .contains("returned 2 series; it must return one series: wrap it in sum()"),
            "{e}"
        );
    }
}
