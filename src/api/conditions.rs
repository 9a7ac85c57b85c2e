//! Condition types and reasons, and the pure merge that keeps `lastTransitionTime` stable.
//!
//! Types reuse the HPA's names where the meaning matches (`AbleToScale`, `ScalingLimited`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::planner::{Limit, NoForecast};

/// Condition types.
pub mod types {
    /// Summary: the scaler is doing its job.
    pub const READY: &str = "Ready";
    /// A forecast could be made from the metrics.
    pub const FORECAST_AVAILABLE: &str = "ForecastAvailable";
    /// The target can be read and scaled.
    pub const ABLE_TO_SCALE: &str = "AbleToScale";
    /// The desired count was clamped or rate-limited.
    pub const SCALING_LIMITED: &str = "ScalingLimited";
    /// All types, in the order they are written.
    pub const ALL: [&str; 4] = [READY, FORECAST_AVAILABLE, ABLE_TO_SCALE, SCALING_LIMITED];
}

/// Condition reasons (one CamelCase word naming the cause).
pub mod reasons {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SCALER_ACTIVE: &str = "ScalerActive";
    pub const FORECAST_SUCCEEDED: &str = "ForecastSucceeded";
    pub const INSUFFICIENT_HISTORY: &str = "InsufficientHistory";
    /// The source answered with an error not covered below (e.g. `execution`, HTTP 500).
    pub const METRICS_QUERY_FAILED: &str = "MetricsQueryFailed";
    /// HTTP 401/403, or a TLS handshake failure (untrusted server, missing client cert).
    pub const METRICS_AUTH_FAILED: &str = "MetricsAuthFailed";
    /// Connection refused, DNS, HTTP 502/503/429: the source is down or unreachable.
    pub const METRICS_SOURCE_UNAVAILABLE: &str = "MetricsSourceUnavailable";
    /// No answer within the source's timeout (or the server gave up evaluating).
    pub const METRICS_QUERY_TIMEOUT: &str = "MetricsQueryTimeout";
    /// The source rejected the PromQL (`bad_data`: syntax error, wrong types).
    pub const INVALID_QUERY: &str = "InvalidQuery";
    pub const EMPTY_QUERY_RESULT: &str = "EmptyQueryResult";
    /// The source answers but the series' newest sample is too old to act on.
    pub const STALE_METRIC: &str = "StaleMetric";
    pub const MULTIPLE_SERIES: &str = "QueryReturnedManySeries";
    /// A `groupBy` metric's query returned more series than its `maxSeries`.
    pub const TOO_MANY_SERIES: &str = "TooManySeries";
    pub const UNKNOWN_SOURCE: &str = "UnknownSource";
    /// The scaler's namespace may not use the source it names.
    pub const SOURCE_NOT_ALLOWED: &str = "SourceNotAllowed";
    /// A source admits namespaces by label, and the scaler's namespace's labels could not be
    /// read (the API server did not answer in time, or refused).
    pub const NAMESPACE_LABELS_UNAVAILABLE: &str = "NamespaceLabelsUnavailable";
    /// The query reads outside the scaler's namespace on a source that isolates namespaces.
    pub const QUERY_NOT_ALLOWED: &str = "QueryNotAllowed";
    /// The answer was larger than one series of the asked points can be.
    pub const QUERY_TOO_LARGE: &str = "QueryTooLarge";
    pub const MODEL_FIT_FAILED: &str = "ModelFitFailed";
    pub const STALE_FORECAST: &str = "StaleForecast";
    pub const READY_FOR_NEW_SCALE: &str = "ReadyForNewScale";
    pub const SCALE_DOWN_STABILIZED: &str = "ScaleDownStabilized";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// The target is at 0 replicas and the scaler may not scale from zero: switched off.
    pub const SCALING_DISABLED: &str = "ScalingDisabled";
    /// Another PredictiveScaler or an HPA scales the same target.
    pub const AMBIGUOUS_TARGET: &str = "AmbiguousTarget";
    pub const FAILED_GET_SCALE: &str = "FailedGetScale";
    pub const FAILED_UPDATE_SCALE: &str = "FailedUpdateScale";
    /// Floor mode: another writer holds the HPA's or ScaledObject's floor at a value other
    /// than the plan's; prescale leaves it (server-side apply, not forced).
    pub const FLOOR_CONFLICT: &str = "FloorConflict";
    /// Floor mode, a scaler being deleted: putting the owner's floor back failed; retried
    /// with backoff, given up after a few refusals (then its finalizer goes).
    pub const FLOOR_RESTORE_FAILED: &str = "FloorRestoreFailed";
    pub const DRY_RUN: &str = "DryRun";
    pub const DESIRED_WITHIN_RANGE: &str = "DesiredWithinRange";
    pub const TOO_FEW_REPLICAS: &str = "TooFewReplicas";
    pub const TOO_MANY_REPLICAS: &str = "TooManyReplicas";
    pub const SCALE_UP_LIMIT: &str = "ScaleUpLimit";
    pub const SCALE_DOWN_LIMIT: &str = "ScaleDownLimit";
    /// Raised to an active schedule's `minReplicas`.
    pub const SCHEDULED_MINIMUM: &str = "ScheduledMinimum";
    /// Lowered to an active schedule's `maxReplicas`.
    pub const SCHEDULED_MAXIMUM: &str = "ScheduledMaximum";
    /// A guard is breached (the count raised over the current one), or was within its
    /// `holdWindow` (a scale-down held).
    pub const GUARD_BREACHED: &str = "GuardBreached";
    /// A guard's query failed: no scale-down until it can be read.
    pub const GUARD_UNAVAILABLE: &str = "GuardUnavailable";
    /// A concurrency metric's duration query returned nothing (or only NaN) in the last hour,
    /// or a value that is not positive: the metric holds the replicas.
    pub const DURATION_UNAVAILABLE: &str = "DurationUnavailable";
    /// Drain-aware scale-in cannot set the pods' deletion costs (the pod query fails or
    /// matches no pod, the pods cannot be listed or annotated): the scale-down waits, up to
    /// `scaleDown.drainAware.maxWait`.
    pub const DRAIN_AWARE_UNAVAILABLE: &str = "DrainAwareUnavailable";
    /// Capped at what the upstream quota (`spec.upstream`) admits: ask the provider for more
    /// quota rather than for more replicas.
    pub const UPSTREAM_LIMITED: &str = "UpstreamLimited";
    /// An upstream limit's query failed: its static `perMinute` (never below the current
    /// count), or no ceiling from it.
    pub const UPSTREAM_UNAVAILABLE: &str = "UpstreamUnavailable";
}

/// The `ScalingLimited` reason for what limited a decision.
pub fn limit_reason(limit: Limit) -> &'static str {
    match limit {
        Limit::WithinRange => reasons::DESIRED_WITHIN_RANGE,
        Limit::TooFewReplicas => reasons::TOO_FEW_REPLICAS,
        Limit::TooManyReplicas => reasons::TOO_MANY_REPLICAS,
        Limit::ScaleUpLimit => reasons::SCALE_UP_LIMIT,
        Limit::ScaleDownLimit => reasons::SCALE_DOWN_LIMIT,
        Limit::ScheduledMinimum => reasons::SCHEDULED_MINIMUM,
        Limit::ScheduledMaximum => reasons::SCHEDULED_MAXIMUM,
        Limit::GuardBreached => reasons::GUARD_BREACHED,
        Limit::GuardUnavailable => reasons::GUARD_UNAVAILABLE,
        Limit::UpstreamLimited => reasons::UPSTREAM_LIMITED,
        Limit::UpstreamUnavailable => reasons::UPSTREAM_UNAVAILABLE,
    }
}

/// The `ForecastAvailable` reason for why a metric has no forecast.
pub fn unavailable_reason(cause: NoForecast) -> &'static str {
    match cause {
        NoForecast::Empty => reasons::EMPTY_QUERY_RESULT,
        NoForecast::InsufficientHistory => reasons::INSUFFICIENT_HISTORY,
        NoForecast::ModelFitFailed => reasons::MODEL_FIT_FAILED,
        NoForecast::StaleForecast => reasons::STALE_FORECAST,
        NoForecast::Metric(reason) => reason,
        NoForecast::DurationUnavailable => reasons::DURATION_UNAVAILABLE,
    }
}

/// The `status` of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    pub fn from_bool(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// A condition as the reconciler decides it, before times are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Merges `new` into `existing`. The result holds `new`'s conditions first, in the order
/// `new` gives them (the controller builds them in the order of [`types::ALL`]), each with
/// `observedGeneration` set to `generation` and a `lastTransitionTime` that is the existing
/// condition's of that type when its status is unchanged, else `now`. Existing conditions of
/// types `new` does not have (written by someone else) follow, unchanged and in their order.
pub fn merge(
    existing: &[Condition],
    new: &[Cond],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = Vec::with_capacity(types::ALL.len());
    for c in new {
        let previous = existing.iter().find(|e| e.type_ == c.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == c.status.as_str() => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: c.type_.to_string(),
            status: c.status.as_str().to_string(),
            reason: c.reason.to_string(),
            message: c.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
    }
    // keep conditions of other types (written by someone else) untouched
    for e in existing {
        if !out.iter().any(|o| o.type_ == e.type_) {
            out.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let first = merge(
            &[],
            &[Cond::new(
                types::READY,
                Status::False,
                reasons::INVALID_SPEC,
                "starting",
            )],
            Some(1),
            t(100),
        );
        assert_eq!(first[0].last_transition_time, t(100));
        let same = merge(
            &first,
            &[Cond::new(
                types::READY,
                Status::False,
                reasons::METRICS_QUERY_FAILED,
                "down",
            )],
            Some(2),
            t(200),
        );
        assert_eq!(same[0].last_transition_time, t(100), "status unchanged");
        assert_eq!(same[0].reason, "MetricsQueryFailed");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[Cond::new(
                types::READY,
                Status::True,
                reasons::SCALER_ACTIVE,
                "ok",
            )],
            Some(2),
            t(300),
        );
        assert_eq!(flipped[0].last_transition_time, t(300));
    }
}
