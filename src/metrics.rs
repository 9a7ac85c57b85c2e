//! The operator's own metrics, served on `/metrics` in the Prometheus text format. They are
//! recorded by the controller (src/controller/reconcile.rs) and the history cache; this file
//! registers them and removes a scaler's series when it goes.
//!
//! Names are prefixed `prescale_`, in base units (seconds), counters end in `_total`. Labels
//! are bounded: a reason is one of the condition reasons, a source one of the configured
//! sources, a model one of the model kinds; per-scaler series are removed when the scaler is.

use std::{
    collections::HashMap,
    sync::{Mutex, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub source: String,
    /// `ok`, or the reason the query failed (a condition reason: bounded).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub namespace: String,
    pub name: String,
    pub r#type: String,
    pub status: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalerLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScalerMetricLabels {
    pub namespace: String,
    pub name: String,
    pub metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GuardLabels {
    pub namespace: String,
    pub name: String,
    pub guard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub namespace: String,
    pub name: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn seconds_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub query_duration: Family<QueryLabels, Histogram>,
    /// Metric evaluations that had no usable data, by reason.
    pub metric_unavailable: Family<ReasonLabels, Counter>,
    /// Each scaler's conditions as last reported: 1 for the current (type, status, reason).
    pub scaler_condition: Family<ConditionLabels, Gauge>,
    /// Series dropped from the history cache to stay within --history-cache-points.
    pub history_evictions: Counter,
    /// Reconciles running now.
    pub reconciles_in_flight: Gauge,
    pub fit_duration: Family<ModelLabels, Histogram>,
    pub current_replicas: Family<ScalerLabels, Gauge>,
    pub desired_replicas: Family<ScalerLabels, Gauge>,
    pub forecast_peak: Family<ScalerMetricLabels, FloatGauge>,
    pub forecast_now: Family<ScalerMetricLabels, FloatGauge>,
    pub observed_load: Family<ScalerMetricLabels, FloatGauge>,
    /// The request duration each concurrency metric is sized with (Little's law).
    pub request_duration: Family<ScalerMetricLabels, FloatGauge>,
    /// Each `groupBy` metric: the series its last bottom-up forecast combined.
    pub group_series: Family<ScalerMetricLabels, Gauge>,
    pub backtest_error: Family<ScalerMetricLabels, FloatGauge>,
    pub scale_operations: Family<ScaleLabels, Counter>,
    /// Each guard of each scaler: 1 while breached, else 0 (no series while it cannot be read).
    pub guard_breached: Family<GuardLabels, Gauge>,
    /// Pod-deletion-cost annotations written before scale-downs (`scaleDown.drainAware`).
    pub pod_deletion_cost_updates: Family<ScalerLabels, Counter>,
    /// Scale-downs that went ahead without deletion costs after `drainAware.maxWait`.
    pub drain_aware_skipped: Family<ScalerLabels, Counter>,
    /// Each scaler with upstream limits: 1 while the ceiling caps its count, else 0.
    pub upstream_limited: Family<ScalerLabels, Gauge>,
    /// Each upstream limit of each scaler: the replicas it admits for its metric.
    pub upstream_ceiling: Family<ScalerMetricLabels, Gauge>,
    /// What each scaler has series of, so they can all be removed: its metric names and its
    /// condition label sets.
    known: Mutex<HashMap<(String, String), Known>>,
}

#[derive(Default)]
struct Known {
    metrics: Vec<String>,
    guards: Vec<String>,
    conditions: Vec<ConditionLabels>,
}

/// The metric names as exposed (with `_total` on counters), for documentation and tests.
pub const NAMES: &[&str] = &[
    "prescale_build_info",
    "prescale_reconcile_duration_seconds",
    "prescale_reconcile_errors_total",
    "prescale_reconciles_in_flight",
    "prescale_prometheus_query_duration_seconds",
    "prescale_metric_unavailable_total",
    "prescale_history_evictions_total",
    "prescale_forecast_fit_duration_seconds",
    "prescale_scaler_current_replicas",
    "prescale_scaler_desired_replicas",
    "prescale_scaler_forecast_peak",
    "prescale_scaler_forecast_load",
    "prescale_scaler_observed_load",
    "prescale_scaler_request_duration_seconds",
    "prescale_scaler_group_series",
    "prescale_scaler_forecast_backtest_error",
    "prescale_scale_operations_total",
    "prescale_scaler_condition",
    "prescale_guard_breached",
    "prescale_pod_deletion_cost_updates_total",
    "prescale_drain_aware_skipped_total",
    "prescale_upstream_limited",
    "prescale_upstream_ceiling_replicas",
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered in the order `/metrics` lists them: the build info, then one
    /// group per part of the operator (`register_reconciles`, `register_history`,
    /// `register_fits`, `register_scalers`).
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            reconcile_duration: seconds_histogram(),
            reconcile_errors: Family::default(),
            query_duration: Family::new_with_constructor(seconds_histogram),
            metric_unavailable: Family::default(),
            scaler_condition: Family::default(),
            history_evictions: Counter::default(),
            reconciles_in_flight: Gauge::default(),
            fit_duration: Family::new_with_constructor(seconds_histogram),
            current_replicas: Family::default(),
            desired_replicas: Family::default(),
            forecast_peak: Family::default(),
            forecast_now: Family::default(),
            observed_load: Family::default(),
            request_duration: Family::default(),
            group_series: Family::default(),
            backtest_error: Family::default(),
            scale_operations: Family::default(),
            guard_breached: Family::default(),
            pod_deletion_cost_updates: Family::default(),
            drain_aware_skipped: Family::default(),
            upstream_limited: Family::default(),
            upstream_ceiling: Family::default(),
            known: Mutex::default(),
        };
        m.register_build_info();
        m.register_reconciles();
        m.register_history();
        m.register_fits();
        m.register_scalers();
        m.register_drain_aware();
        m.register_upstream();
        m
    }

    /// `prescale_build_info`: a constant 1 labelled with the version.
    fn register_build_info(&mut self) {
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        self.registry.register(
            "prescale_build_info",
            "The running prescale version (always 1)",
            build_info,
        );
    }

    /// The reconcile loop (src/controller/reconcile.rs `reconcile`): its duration, the
    /// reconciles that end not ready, and how many run at once.
    fn register_reconciles(&mut self) {
        self.registry.register(
            "prescale_reconcile_duration_seconds",
            "Time of one reconcile, including metric queries and model fits",
            self.reconcile_duration.clone(),
        );
        self.registry.register(
            "prescale_reconcile_errors",
            "Reconciles that ended without Ready=True, one count per reconcile (a scaler that stays \
             unready counts at every sync), by reason: the error's reason when the reconcile failed \
             (ResolveTargetFailed, FailedGetScale, FailedUpdateScale, FailedPatchStatus, \
             ForecastTaskFailed, NoNamespace), else the reason of its Ready condition (InvalidSpec, \
             TargetNotFound, StaleMetric, ...)",
            self.reconcile_errors.clone(),
        );
        self.registry.register(
            "prescale_reconciles_in_flight",
            "Reconciles running now (bounded by --max-concurrent-reconciles)",
            self.reconciles_in_flight.clone(),
        );
    }

    /// The history of each metric (the history cache of src/sources and its sources).
    fn register_history(&mut self) {
        self.registry.register(
            "prescale_prometheus_query_duration_seconds",
            "Time of one metric's history update in a reconcile, by source (the name the scaler \
             gives) and result (ok, or the failure reason): waiting for the cached series (another \
             scaler may be updating it) and for a free query slot of the source, then the \
             query_range requests (the new points since the cached ones, or the whole lookback in \
             chunks the first time); about 0 s with the last failure's reason while a failed query \
             backs off. Not observed when the source cannot be used (UnknownSource, \
             SourceNotAllowed, NamespaceLabelsUnavailable, QueryNotAllowed)",
            self.query_duration.clone(),
        );
        self.registry.register(
            "prescale_metric_unavailable",
            "Metric evaluations without usable data (a failed query, no data, stale data, ...), by reason",
            self.metric_unavailable.clone(),
        );
        self.registry.register(
            "prescale_history_evictions",
            "Series dropped from the history cache to stay within --history-cache-points (then fetched whole \
             again when needed)",
            self.history_evictions.clone(),
        );
    }

    /// Model fits (the forecasting of src/planner, run by the controller).
    fn register_fits(&mut self) {
        self.registry.register(
            "prescale_forecast_fit_duration_seconds",
            "Time of one model fit (and Auto's model selection when it runs), by model",
            self.fit_duration.clone(),
        );
    }

    /// Per-scaler series: replicas, forecasts, scale writes and conditions. They are removed
    /// with their scaler ([`Metrics::remove_scaler`]) or metric.
    fn register_scalers(&mut self) {
        self.registry.register(
            "prescale_scaler_current_replicas",
            "Replicas of the scale target, as last read",
            self.current_replicas.clone(),
        );
        self.registry.register(
            "prescale_scaler_desired_replicas",
            "Replicas the scaler wants now",
            self.desired_replicas.clone(),
        );
        self.registry.register(
            "prescale_scaler_forecast_peak",
            "Highest upper-quantile value of the metric's forecast over its horizon",
            self.forecast_peak.clone(),
        );
        self.registry.register(
            "prescale_scaler_forecast_load",
            "The metric's point forecast for now (compare with prescale_scaler_observed_load)",
            self.forecast_now.clone(),
        );
        self.registry.register(
            "prescale_scaler_observed_load",
            "The metric's latest observed value",
            self.observed_load.clone(),
        );
        self.registry.register(
            "prescale_scaler_request_duration_seconds",
            "The request duration a metric with concurrency (Little's law) is sized with: the \
             newest value of its durationQuery of the last hour; no series while there is none",
            self.request_duration.clone(),
        );
        self.registry.register(
            "prescale_scaler_group_series",
            "A metric with groupBy: the series its last bottom-up forecast combined (alert before \
             it reaches maxSeries); no series without groupBy or without such a forecast",
            self.group_series.clone(),
        );
        self.registry.register(
            "prescale_scaler_forecast_backtest_error",
            "The latest fit's backtest error for the metric: its point forecasts of the last two hours, \
             made from two origins two hours and one hour back (each an hour ahead, or the horizon if \
             shorter), as the summed absolute error over the summed load (weighted absolute percentage \
             error, a fraction)",
            self.backtest_error.clone(),
        );
        self.registry.register(
            "prescale_scale_operations",
            "Writes of the target's replica count, by direction (up, down)",
            self.scale_operations.clone(),
        );
        self.registry.register(
            "prescale_scaler_condition",
            "Each scaler's conditions: 1 for its current status and reason of each type (alert on \
             type=\"Ready\",status=\"False\")",
            self.scaler_condition.clone(),
        );
        self.registry.register(
            "prescale_guard_breached",
            "Each guard of each scaler (spec.guards): 1 while its value is past its threshold, 0 \
             while healthy; absent while its query fails",
            self.guard_breached.clone(),
        );
    }

    /// Drain-aware scale-in (`scaleDown.drainAware`), per scaler.
    fn register_drain_aware(&mut self) {
        self.registry.register(
            "prescale_pod_deletion_cost_updates",
            "Pod annotations controller.kubernetes.io/pod-deletion-cost written before scale-downs \
             (scaleDown.drainAware; only changed values are written)",
            self.pod_deletion_cost_updates.clone(),
        );
        self.registry.register(
            "prescale_drain_aware_skipped",
            "Scale-downs that went ahead without pod deletion costs because the per-pod values \
             could not be had within scaleDown.drainAware.maxWait",
            self.drain_aware_skipped.clone(),
        );
    }

    /// The upstream quota ceiling of each scaler with `spec.upstream` (planner::upstream).
    fn register_upstream(&mut self) {
        self.registry.register(
            "prescale_upstream_limited",
            "Each scaler with upstream limits (spec.upstream): 1 while the quota ceiling caps its \
             replicas below what its metrics ask for (ask the provider for more quota, not for more \
             replicas), else 0",
            self.upstream_limited.clone(),
        );
        self.registry.register(
            "prescale_upstream_ceiling_replicas",
            "Each upstream limit of each scaler, by metric: the replicas it admits, ceil(limit as load \
             / targetPerReplica) (absent while the limit is unknown: its query fails and it has no \
             perMinute)",
            self.upstream_ceiling.clone(),
        );
    }

    /// The scaler's upstream ceiling now: `limited` is `None` without upstream limits (no
    /// series), else whether the ceiling caps the count; `admits` is each limit's metric and the
    /// replicas it admits (no series while unknown). The series of a metric no longer limited
    /// go; those of a removed metric go with its other series.
    pub fn set_upstream(
        &self,
        namespace: &str,
        name: &str,
        limited: Option<bool>,
        admits: &[(String, Option<u32>)],
    ) {
        let scaler = ScalerLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        match limited {
            Some(l) => {
                self.upstream_limited.get_or_create(&scaler).set(l as i64);
            }
            None => {
                self.upstream_limited.remove(&scaler);
            }
        }
        let known = self.known.lock().expect("metrics lock");
        let metrics = known
            .get(&(namespace.to_string(), name.to_string()))
            .map(|k| k.metrics.clone())
            .unwrap_or_default();
        drop(known);
        for metric in metrics.iter().chain(admits.iter().map(|(m, _)| m)) {
            let labels = ScalerMetricLabels {
                namespace: namespace.into(),
                name: name.into(),
                metric: metric.clone(),
            };
            match admits
                .iter()
                .find(|(m, _)| m == metric)
                .and_then(|(_, a)| *a)
            {
                Some(a) => {
                    self.upstream_ceiling.get_or_create(&labels).set(a as i64);
                }
                None => {
                    self.upstream_ceiling.remove(&labels);
                }
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Sets `family`'s series for `labels` to `value`, or removes it when there is none, so a
    /// gauge never shows a stale value.
    pub fn set_or_remove(
        family: &Family<ScalerMetricLabels, FloatGauge>,
        labels: &ScalerMetricLabels,
        value: Option<f64>,
    ) {
        match value {
            Some(v) => {
                family.get_or_create(labels).set(v);
            }
            None => {
                family.remove(labels);
            }
        }
    }

    /// The scaler now has exactly these metrics: the series of any other (renamed, removed) go.
    pub fn set_scaler_metrics(&self, namespace: &str, name: &str, metrics: &[String]) {
        let mut known = self.known.lock().expect("metrics lock");
        let entry = known
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        for gone in entry.metrics.iter().filter(|m| !metrics.contains(m)) {
            self.remove_metric_series(namespace, name, gone);
        }
        entry.metrics = metrics.to_vec();
    }

    /// Each of the scaler's guards now: breached (`Some(true)`), healthy (`Some(false)`) or
    /// unreadable (`None`, no series); the series of guards no longer in the spec go.
    pub fn set_guards(&self, namespace: &str, name: &str, guards: &[(String, Option<bool>)]) {
        let labels = |guard: &str| GuardLabels {
            namespace: namespace.into(),
            name: name.into(),
            guard: guard.into(),
        };
        let mut known = self.known.lock().expect("metrics lock");
        let entry = known
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        for gone in entry
            .guards
            .iter()
            .filter(|g| !guards.iter().any(|(n, _)| n == *g))
        {
            self.guard_breached.remove(&labels(gone));
        }
        for (guard, breached) in guards {
            match breached {
                Some(b) => {
                    self.guard_breached
                        .get_or_create(&labels(guard))
                        .set(*b as i64);
                }
                None => {
                    self.guard_breached.remove(&labels(guard));
                }
            }
        }
        entry.guards = guards.iter().map(|(n, _)| n.clone()).collect();
    }

    /// The scaler's conditions are now these (type, status, reason): the gauge shows 1 for each,
    /// and the series of the ones it had before are removed.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[(&str, &str, &str)]) {
        let labels: Vec<ConditionLabels> = conditions
            .iter()
            .map(|(t, s, r)| ConditionLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                r#type: t.to_string(),
                status: s.to_string(),
                reason: r.to_string(),
            })
            .collect();
        let mut known = self.known.lock().expect("metrics lock");
        let entry = known
            .entry((namespace.to_string(), name.to_string()))
            .or_default();
        for old in entry.conditions.iter().filter(|c| !labels.contains(c)) {
            self.scaler_condition.remove(old);
        }
        for l in &labels {
            self.scaler_condition.get_or_create(l).set(1);
        }
        entry.conditions = labels;
    }

    fn remove_metric_series(&self, namespace: &str, name: &str, metric: &str) {
        let l = ScalerMetricLabels {
            namespace: namespace.into(),
            name: name.into(),
            metric: metric.into(),
        };
        self.forecast_peak.remove(&l);
        self.forecast_now.remove(&l);
        self.observed_load.remove(&l);
        self.request_duration.remove(&l);
        self.group_series.remove(&l);
        self.backtest_error.remove(&l);
        self.upstream_ceiling.remove(&l);
    }

    /// The scalers that have series, as (namespace, name).
    pub fn scalers(&self) -> Vec<(String, String)> {
        self.known
            .lock()
            .expect("metrics lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets a scaler's series (it was deleted).
    pub fn remove_scaler(&self, namespace: &str, name: &str) {
        let s = ScalerLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.current_replicas.remove(&s);
        self.desired_replicas.remove(&s);
        self.pod_deletion_cost_updates.remove(&s);
        self.drain_aware_skipped.remove(&s);
        self.upstream_limited.remove(&s);
        for direction in ["up", "down"] {
            self.scale_operations.remove(&ScaleLabels {
                namespace: namespace.into(),
                name: name.into(),
                direction: direction.into(),
            });
        }
        let known = self
            .known
            .lock()
            .expect("metrics lock")
            .remove(&(namespace.to_string(), name.to_string()))
            .unwrap_or_default();
        for metric in &known.metrics {
            self.remove_metric_series(namespace, name, metric);
        }
        for c in &known.conditions {
            self.scaler_condition.remove(c);
        }
        for guard in &known.guards {
            self.guard_breached.remove(&GuardLabels {
                namespace: namespace.into(),
                name: name.into(),
                guard: guard.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics with one series in every family, so that each shows samples; the scaler
    /// `ns/a` has the metric `requests` and the condition Ready=False StaleMetric.
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.reconcile_duration.observe(0.01);
        m.reconcile_errors
            .get_or_create(&ReasonLabels {
                reason: "MetricsQueryFailed".into(),
            })
            .inc();
        m.query_duration
            .get_or_create(&QueryLabels {
                source: "default".into(),
                result: "ok".into(),
            })
            .observe(0.02);
        m.metric_unavailable
            .get_or_create(&ReasonLabels {
                reason: "StaleMetric".into(),
            })
            .inc();
        m.history_evictions.inc();
        m.reconciles_in_flight.set(1);
        m.fit_duration
            .get_or_create(&ModelLabels {
                model: "MSTL".into(),
            })
            .observe(0.03);
        let s = ScalerLabels {
            namespace: "ns".into(),
            name: "a".into(),
        };
        m.current_replicas.get_or_create(&s).set(3);
        m.desired_replicas.get_or_create(&s).set(5);
        let sm = ScalerMetricLabels {
            namespace: "ns".into(),
            name: "a".into(),
            metric: "requests".into(),
        };
        m.set_scaler_metrics("ns", "a", &["requests".into()]);
        m.set_conditions("ns", "a", &[("Ready", "False", "StaleMetric")]);
        m.forecast_peak.get_or_create(&sm).set(123.5);
        m.forecast_now.get_or_create(&sm).set(100.0);
        m.observed_load.get_or_create(&sm).set(98.0);
        m.request_duration.get_or_create(&sm).set(27.5);
        m.group_series.get_or_create(&sm).set(3);
        m.backtest_error.get_or_create(&sm).set(0.07);
        m.scale_operations
            .get_or_create(&ScaleLabels {
                namespace: "ns".into(),
                name: "a".into(),
                direction: "up".into(),
            })
            .inc();
        m.set_guards(
            "ns",
            "a",
            &[("p95".into(), Some(true)), ("errors".into(), None)],
        );
        m.pod_deletion_cost_updates.get_or_create(&s).inc_by(3);
        m.drain_aware_skipped.get_or_create(&s).inc();
        m.set_upstream("ns", "a", Some(true), &[("requests".into(), Some(4))]);
        m
    }

    #[test]
    fn every_name_is_exposed_once_with_help_and_type() {
        let text = populated().encode();
        for name in NAMES {
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name} in:\n{text}"
            );
        }
        let types = text.matches("# TYPE ").count();
        assert_eq!(types, NAMES.len(), "no undocumented metric:\n{text}");
        assert!(text.contains("prescale_scaler_desired_replicas{namespace=\"ns\",name=\"a\"} 5"));
        assert!(text.contains(
            "prescale_scaler_forecast_peak{namespace=\"ns\",name=\"a\",metric=\"requests\"} 123.5"
        ));
        assert!(text.contains(&format!(
            "prescale_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn a_scalers_series_follow_its_conditions_and_metrics_and_go_with_it() {
        let m = populated();
        let text = m.encode();
        assert!(text.contains(
            "prescale_scaler_condition{namespace=\"ns\",name=\"a\",type=\"Ready\",status=\"False\",reason=\"StaleMetric\"} 1"
        ));
        // a new reason replaces the old series; a renamed metric's series go
        m.set_conditions("ns", "a", &[("Ready", "True", "ScalerActive")]);
        m.set_scaler_metrics("ns", "a", &["tokens".into()]);
        let text = m.encode();
        assert!(
            !text.contains("status=\"False\",reason=\"StaleMetric\"}")
                && text.contains("status=\"True\",reason=\"ScalerActive\"} 1"),
            "{text}"
        );
        assert!(!text.contains("metric=\"requests\""), "{text}");
        // a guard's gauge: 1 breached, 0 healthy, absent unreadable or removed from the spec
        assert!(
            text.contains("prescale_guard_breached{namespace=\"ns\",name=\"a\",guard=\"p95\"} 1")
        );
        assert!(!text.contains("guard=\"errors\""), "{text}");
        m.set_guards("ns", "a", &[("errors".into(), Some(false))]);
        let text = m.encode();
        assert!(
            text.contains(
                "prescale_guard_breached{namespace=\"ns\",name=\"a\",guard=\"errors\"} 0"
            )
        );
        assert!(!text.contains("guard=\"p95\""), "{text}");
        // the upstream gauges: capped at 4; no ceiling in force; no limits at all
        assert!(text.contains("prescale_upstream_limited{namespace=\"ns\",name=\"a\"} 1"));
        m.set_upstream("ns", "a", Some(true), &[("tokens".into(), Some(4))]);
        let text = m.encode();
        assert!(text.contains(
            "prescale_upstream_ceiling_replicas{namespace=\"ns\",name=\"a\",metric=\"tokens\"} 4"
        ));
        m.set_upstream("ns", "a", Some(false), &[("tokens".into(), None)]);
        let text = m.encode();
        assert!(text.contains("prescale_upstream_limited{namespace=\"ns\",name=\"a\"} 0"));
        assert!(
            !text.contains("prescale_upstream_ceiling_replicas{"),
            "{text}"
        );
        m.set_upstream("ns", "a", None, &[]);
        assert!(!m.encode().contains("prescale_upstream_limited{"));
        m.set_upstream("ns", "a", Some(true), &[("tokens".into(), Some(4))]);

        assert!(
            text.contains(
                "prescale_pod_deletion_cost_updates_total{namespace=\"ns\",name=\"a\"} 3"
            ),
            "{text}"
        );

        m.remove_scaler("ns", "a");
        let text = m.encode();
        assert!(!text.contains("name=\"a\""), "{text}");
    }

    #[test]
    fn the_book_documents_exactly_these_metrics() {
        let page = include_str!("../docs/metrics.md");
        assert!(page.starts_with("# The operator's own metrics"), "{page}");
        let documented: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        assert_eq!(
            documented, NAMES,
            "docs/metrics.md's table vs the registered metrics"
        );
    }
}
