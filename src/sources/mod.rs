//! Where load history comes from. A [`MetricsSource`] answers range queries; the
//! [`HistoryCache`] keeps each series between reconciles so later ones fetch only new points.
//!
//! This module and the controller are the only places that do IO.

pub mod prometheus;

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::{
    api::conditions::reasons,
    planner::series::{Series, align_down},
};

/// Why a source could not answer. Messages never carry credentials or URLs with secrets.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name:?} is not configured in the operator")]
    UnknownSource { source_name: String },
    #[error("query to source {source_name:?} failed: {message}")]
    QueryFailed {
        source_name: String,
        message: String,
    },
    #[error("query returned {count} series; it must return one series (wrap it in sum())")]
    MultipleSeries { count: usize },
}

impl SourceError {
    /// The condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::UnknownSource { .. } => reasons::UNKNOWN_SOURCE,
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
}

/// Cache key: the same query at the same step from the same source shares its history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HistoryKey {
    pub source: String,
    pub query: String,
    pub step: i64,
}

/// Series kept between reconciles, so only new points are fetched.
#[derive(Debug, Default)]
pub struct HistoryCache {
    entries: HashMap<HistoryKey, Series>,
}

/// How many of the latest steps are fetched again on each update: Prometheus may fill in the
/// newest points late (scrape and rule evaluation delay).
const REFETCH_STEPS: i64 = 5;

impl HistoryCache {
    /// Brings the series of `key` up to `now` and returns it: `lookback` seconds ending at
    /// `now` (aligned to the step). The first call fetches everything, later ones only the
    /// points after the cached ones (plus a few to catch late samples).
    pub async fn update(
        &mut self,
        source: &dyn MetricsSource,
        key: &HistoryKey,
        lookback: i64,
        now: i64,
    ) -> Result<&Series, SourceError> {
        let step = key.step;
        let end = align_down(now, step);
        let start = end - align_down(lookback, step);
        let cached = self
            .entries
            .get(key)
            .filter(|s| !s.is_empty() && s.start <= start + step && s.end() > start);
        let fetch_from = match cached {
            Some(s) => (s.end() - REFETCH_STEPS * step).max(start),
            None => start,
        };
        let have_cache = cached.is_some();
        let samples = source.range(&key.query, fetch_from, end, step).await?;
        let entry = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| Series::empty(start, step));
        if !have_cache {
            *entry = Series::empty(start, step);
        }
        // values that are not finite (NaN, stale markers, +Inf) are gaps, not load; cached
        // values were cleaned when they arrived
        let samples: Vec<(i64, f64)> = samples
            .into_iter()
            .map(|(t, v)| (t, if v.is_finite() { v } else { f64::NAN }))
            .collect();
        entry.upsert(&samples);
        entry.extend_to(end + step);
        entry.trim_before(start);
        Ok(entry)
    }

    /// Drops every series not in `keep` (after a spec change).
    pub fn retain(&mut self, keep: &[HistoryKey]) {
        self.entries.retain(|k, _| keep.contains(k));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The sources configured in the operator, by name.
#[derive(Default, Clone)]
pub struct Sources {
    by_name: HashMap<String, std::sync::Arc<dyn MetricsSource>>,
}

impl Sources {
    pub fn insert(&mut self, name: impl Into<String>, source: std::sync::Arc<dyn MetricsSource>) {
        self.by_name.insert(name.into(), source);
    }

    pub fn get(&self, name: &str) -> Result<std::sync::Arc<dyn MetricsSource>, SourceError> {
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
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A source that serves `f(t)` and records the ranges it was asked for.
    struct Fn {
        calls: Mutex<Vec<(i64, i64)>>,
    }

    impl MetricsSource for Fn {
        fn range<'a>(
            &'a self,
            _q: &'a str,
            start: i64,
            end: i64,
            step: i64,
        ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
            self.calls.lock().unwrap().push((start, end));
            Box::pin(async move {
                Ok((start..=end)
                    .step_by(step as usize)
                    .map(|t| (t, t as f64))
                    .collect())
            })
        }
    }

    #[tokio::test]
    async fn second_update_fetches_only_new_points() {
        let src = Arc::new(Fn {
            calls: Mutex::new(vec![]),
        });
        let mut cache = HistoryCache::default();
        let key = HistoryKey {
            source: "default".into(),
            query: "q".into(),
            step: 60,
        };
        let s = cache
            .update(src.as_ref(), &key, 3600, 100_000)
            .await
            .unwrap()
            .clone();
        assert_eq!(s.len(), 61);
        assert_eq!(s.last_finite(), Some((99_960, 99_960.0)));
        let s2 = cache
            .update(src.as_ref(), &key, 3600, 100_600)
            .await
            .unwrap()
            .clone();
        assert_eq!(s2.len(), 61);
        assert_eq!(s2.last_finite(), Some((100_560, 100_560.0)));
        assert!(s2.values.iter().all(|v| v.is_finite()));
        let calls = src.calls.lock().unwrap().clone();
        assert_eq!(calls[0], (99_960 - 3600, 99_960));
        assert_eq!(
            calls[1],
            (99_960 + 60 - 5 * 60, 100_560),
            "only the new minutes and a few before"
        );
    }
}
