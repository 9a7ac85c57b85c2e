//! Turns a `PredictiveScalerSpec` into a [`ScalerConfig`] of plain numbers, or says, in one
//! message a person can act on, what is wrong with it. Pure: no IO, no clock.
//!
//! The CRD's CEL rules reject most bad specs at the API server already; this covers what CEL
//! cannot say and objects that were stored before a rule existed.

mod upstream;

use std::time::Duration;

use super::{
    Fallback, GuardDirection, Mode, ModelKind, PredictiveScalerSpec, ScheduleSpec,
    duration::{format_duration, parse_duration},
    quantity::parse_quantity,
};
use crate::names::is_dns_label;
use crate::planner;
pub use upstream::UpstreamConfig;

/// A spec read into numbers and the planner's vocabulary, ready for the planner and the
/// forecaster.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerConfig {
    pub min_replicas: u32,
    /// May scale to and from 0 replicas.
    pub allow_scale_to_zero: bool,
    pub max_replicas: u32,
    pub mode: Mode,
    pub metrics: Vec<MetricConfig>,
    pub lookback: Duration,
    pub step: Duration,
    pub model: planner::ModelKind,
    /// Seasonal periods given in the spec; empty means "detect".
    pub seasonal_periods: Vec<Duration>,
    pub horizon: Duration,
    pub refresh_interval: Duration,
    /// The operating point; `None`: the budget of [`crate::planner::margin::DEFAULT_COST_RATIO`].
    pub quantile: Option<f64>,
    /// The lead time to plan with; with `leadTime: Auto` the default, bounded, until the
    /// controller has learned one.
    pub lead_time: Duration,
    /// `scaleUp.leadTime: Auto`: learn the lead time from the target's scale-ups.
    pub lead_time_auto: bool,
    pub max_replicas_per_minute: u32,
    pub stabilization_window: Duration,
    pub max_percent_per_minute: u32,
    pub fallback: planner::Fallback,
    /// `spec.schedules`, read, in the spec's order.
    pub schedules: Vec<planner::Schedule>,
    /// `spec.guards`, read, in the spec's order.
    pub guards: Vec<GuardConfig>,
    /// `spec.upstream.limits`, read, in the spec's order.
    pub upstream: Vec<UpstreamConfig>,
    /// `scaleDown.drainAware`, read.
    pub drain_aware: Option<DrainAwareConfig>,
    /// `floor.allowBelowOwner`: in floor mode, the floor may go below the object's own.
    pub floor_below_owner: bool,
}

/// `scaleDown.drainAware`: where each pod's in-flight value is read, and how long a
/// scale-down waits for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainAwareConfig {
    pub source: String,
    pub query: String,
    /// The label of the query's series that holds the pod name.
    pub pod_label: String,
    pub max_wait: Duration,
}

/// One guard of the spec: where its value is read, and the planner's rule for it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    pub source: String,
    pub query: String,
    pub guard: planner::Guard,
}

impl ScalerConfig {
    /// The planner's policy for this spec, with the controller's evaluation interval.
    pub fn policy(&self, interval: Duration) -> planner::Policy {
        planner::Policy {
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            lead_time: self.lead_time,
            interval,
            max_replicas_per_minute: self.max_replicas_per_minute,
            stabilization_window: self.stabilization_window,
            max_percent_per_minute: self.max_percent_per_minute,
            fallback: self.fallback,
            fallback_headroom: planner::margin::fallback_headroom(self.quantile),
            schedules: self.schedules.clone(),
            upstream: self.upstream.iter().map(|u| u.quota.clone()).collect(),
        }
    }
}

impl From<ModelKind> for planner::ModelKind {
    fn from(kind: ModelKind) -> Self {
        match kind {
            ModelKind::Auto => Self::Auto,
            ModelKind::Mstl => Self::Mstl,
            ModelKind::Ets => Self::Ets,
            ModelKind::SeasonalNaive => Self::SeasonalNaive,
        }
    }
}

impl From<Fallback> for planner::Fallback {
    fn from(fallback: Fallback) -> Self {
        match fallback {
            Fallback::Reactive => Self::Reactive,
            Fallback::Hold => Self::Hold,
        }
    }
}

/// One metric of a [`ScalerConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    pub name: String,
    pub source: String,
    pub query: String,
    /// In metric units, or with `duration_query` in concurrent requests (streams).
    pub target_per_replica: f64,
    /// `concurrency.durationQuery`: the metric is an arrival rate sized on concurrent requests
    /// (Little's law, [`planner::concurrency`]) with the request duration this query reads.
    pub duration_query: Option<String>,
    /// `groupBy`: forecast bottom-up per label set (`None` without `groupBy`).
    pub group: Option<GroupConfig>,
}

/// A metric's `groupBy`, read.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The label names, in the spec's order.
    pub labels: Vec<String>,
    /// At most this many series (`maxSeries`, default
    /// [`planner::group::DEFAULT_MAX_SERIES`]).
    pub max_series: usize,
}

impl GroupConfig {
    /// The query that reads the series: `sum by (<labels>) (<query>)`.
    pub fn series_query(&self, query: &str) -> String {
        format!("sum by ({}) ({query})", self.labels.join(", "))
    }

    /// The query that reads the total: `sum(<query>)`.
    pub fn total_query(query: &str) -> String {
        format!("sum({query})")
    }
}

/// The most points of history one metric may fetch and keep (`history.lookback /
/// history.step`); the CRD's CEL rule has the same number. 50,000 is 34 days at 1 minute.
pub const MAX_HISTORY_POINTS: u64 = 50_000;
/// The most points one forecast may hold (`forecast.horizon / history.step`); the CRD's CEL
/// rule has the same number. 20,000 is 13 days at 1 minute.
pub const MAX_FORECAST_POINTS: u64 = 20_000;
/// The most points one PredictiveScaler may ask the operator to read, fit and forecast at a
/// refit, all its metrics together: the series of every metric (1, or `maxSeries` with
/// `groupBy`) times `(history.lookback + forecast.horizon) / history.step`; the CRD's CEL rule
/// has the same number. 4,000,000 points is 32 MB of samples and about 200 fits of 14 days
/// at 1 minute: two `groupBy` metrics of 50 series over 14 days at 1 minute, or one of 50
/// series over the whole 34 days with a 13-day horizon beside 7 single-series metrics.
pub const MAX_SCALER_POINTS: u64 = 4_000_000;
/// The shortest `forecast.refreshInterval`: each refit reads a `groupBy` metric's series over
/// the whole lookback again and fits every series; the CRD's CEL rule has the same bound.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// The bounds on the work one PredictiveScaler may ask of the operator. The CRD enforces the
/// defaults; the operator checks again (objects stored before a rule existed, a smaller
/// history cache) before it fetches or allocates anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many history points per metric.
    pub max_history_points: u64,
    /// At most this many forecast points.
    pub max_forecast_points: u64,
    /// At most this many points of every metric's series, history and forecast together.
    pub max_scaler_points: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_history_points: MAX_HISTORY_POINTS,
            max_forecast_points: MAX_FORECAST_POINTS,
            max_scaler_points: MAX_SCALER_POINTS,
        }
    }
}

impl Limits {
    /// The default limits, with the history bounded by a cache of `cache_points` too (one
    /// series larger than the whole cache would be fetched whole on every evaluation).
    pub fn with_cache_points(cache_points: usize) -> Self {
        let d = Self::default();
        Self {
            max_history_points: d.max_history_points.min(cache_points as u64),
            ..d
        }
    }
}

/// Why a spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {0}")]
pub struct InvalidSpec(pub String);

/// Reads and checks a spec, with the default [`Limits`].
pub fn validate(spec: &PredictiveScalerSpec) -> Result<ScalerConfig, InvalidSpec> {
    validate_with(spec, &Limits::default())
}

/// Reads and checks a spec, refusing one that asks for more work than `limits` allow. The
/// checks run in the order of the spec's fields, and the first problem is the one reported.
pub fn validate_with(
    spec: &PredictiveScalerSpec,
    limits: &Limits,
) -> Result<ScalerConfig, InvalidSpec> {
    check_replicas(spec)?;
    check_target_kind(spec)?;
    let metrics = read_metrics(spec)?;
    let w = read_windows(spec)?;
    check_points(spec, &w, limits)?;
    check_scaler_points(spec, &metrics, &w, limits)?;
    let quantile = read_quantile(spec)?;
    let seasonal_periods = read_seasonal_periods(spec, w.step)?;
    check_rates(spec)?;
    let schedules = read_schedules(spec)?;
    let guards = read_guards(spec)?;
    let drain_aware = read_drain_aware(spec)?;
    let upstream = upstream::read_upstream(spec, &metrics)?;
    Ok(ScalerConfig {
        min_replicas: spec.min_replicas as u32,
        allow_scale_to_zero: spec.allow_scale_to_zero,
        max_replicas: spec.max_replicas as u32,
        mode: spec.mode,
        metrics,
        lookback: w.lookback,
        step: w.step,
        model: spec.forecast.model.into(),
        seasonal_periods,
        horizon: w.horizon,
        refresh_interval: w.refresh_interval,
        quantile,
        lead_time: w.lead_time,
        lead_time_auto: w.lead_time_auto,
        max_replicas_per_minute: spec.scale_up.max_replicas_per_minute as u32,
        stabilization_window: w.stabilization_window,
        max_percent_per_minute: spec.scale_down.max_percent_per_minute as u32,
        fallback: spec.fallback.into(),
        schedules,
        guards,
        drain_aware,
        upstream,
        floor_below_owner: spec.floor.as_ref().is_some_and(|f| f.allow_below_owner),
    })
}

fn bad<T>(message: String) -> Result<T, InvalidSpec> {
    Err(InvalidSpec(message))
}

/// The duration in `field`, or an error naming the field.
fn duration(field: &str, value: &str) -> Result<Duration, InvalidSpec> {
    parse_duration(value).map_err(|e| InvalidSpec(format!("{field}: {e}")))
}

/// `minReplicas` and `maxReplicas`: at least 0 (0 only with `allowScaleToZero`) and 1, in
/// order.
fn check_replicas(spec: &PredictiveScalerSpec) -> Result<(), InvalidSpec> {
    if spec.min_replicas < 0 {
        return bad(format!(
            "minReplicas is {}, must be 0 or more",
            spec.min_replicas
        ));
    }
    if spec.max_replicas < 1 {
        return bad(format!(
            "maxReplicas is {}, must be 1 or more",
            spec.max_replicas
        ));
    }
    if spec.min_replicas == 0 && !spec.allow_scale_to_zero {
        return bad("minReplicas is 0 but allowScaleToZero is not set: set it to let prescale scale to zero".into());
    }
    if spec.min_replicas > spec.max_replicas {
        return bad(format!(
            "minReplicas ({}) is greater than maxReplicas ({})",
            spec.min_replicas, spec.max_replicas
        ));
    }
    Ok(())
}

/// A floor-mode target (an HPA or a KEDA object) of a version and kind prescale can set the
/// floor of: an `autoscaling/v2` HorizontalPodAutoscaler or a `keda.sh/v1alpha1` ScaledObject
/// (the same rules as the CRD's CEL, for specs that did not pass the API server).
fn check_target_kind(spec: &PredictiveScalerSpec) -> Result<(), InvalidSpec> {
    let t = &spec.scale_target_ref;
    let (version, kind) = (t.api_version.as_str(), t.kind.as_str());
    if kind == "HorizontalPodAutoscaler" && version != "autoscaling/v2" {
        return bad(format!(
            "scaleTargetRef: HorizontalPodAutoscaler {version} is not supported: floor mode needs autoscaling/v2"
        ));
    }
    if version.starts_with("keda.sh/") && (version, kind) != ("keda.sh/v1alpha1", "ScaledObject") {
        return bad(format!(
            "scaleTargetRef: {kind} {version} is not supported: the only KEDA target (floor mode) is a keda.sh/v1alpha1 ScaledObject"
        ));
    }
    Ok(())
}

/// The metrics: one or more, unique DNS-label names, a source name (never a URL), a query and
/// a positive `targetPerReplica`.
fn read_metrics(spec: &PredictiveScalerSpec) -> Result<Vec<MetricConfig>, InvalidSpec> {
    if spec.metrics.is_empty() {
        return bad("at least one metric is required".into());
    }
    let mut metrics = Vec::with_capacity(spec.metrics.len());
    for (i, m) in spec.metrics.iter().enumerate() {
        if !is_dns_label(&m.name) {
            return bad(format!(
                "metrics[{i}].name {:?} must be lower case letters, digits and '-' (at most 63)",
                m.name
            ));
        }
        if spec.metrics[..i].iter().any(|o| o.name == m.name) {
            return bad(format!("metric name {:?} is used twice", m.name));
        }
        if !is_dns_label(&m.source) {
            return bad(format!(
                "metrics[{i}] ({}).source {:?} is not a source name (lower case letters, digits, '-'); \
                 sources are configured in the operator, never given as a URL",
                m.name, m.source
            ));
        }
        if m.query.trim().is_empty() {
            return bad(format!("metrics[{i}] ({}): query is empty", m.name));
        }
        let target = parse_quantity(&m.target_per_replica.0)
            .map_err(|e| InvalidSpec(format!("metrics[{i}] ({}).targetPerReplica: {e}", m.name)))?;
        if target <= 0.0 {
            return bad(format!(
                "metrics[{i}] ({}).targetPerReplica must be positive, got {}",
                m.name, m.target_per_replica.0
            ));
        }
        metrics.push(MetricConfig {
            name: m.name.clone(),
            source: m.source.clone(),
            query: m.query.clone(),
            target_per_replica: target,
            duration_query: read_duration_query(m, i)?,
            group: read_group(i, m)?,
        });
    }
    Ok(metrics)
}

/// `concurrency.durationQuery` of `metrics[i]`, when set: not empty, and not the metric's own
/// query (that is the arrival rate, not a duration).
fn read_duration_query(m: &super::MetricSpec, i: usize) -> Result<Option<String>, InvalidSpec> {
    let Some(c) = &m.concurrency else {
        return Ok(None);
    };
    let at = format!("metrics[{i}] ({}).concurrency.durationQuery", m.name);
    if c.duration_query.trim().is_empty() {
        return bad(format!("{at} is empty"));
    }
    if c.duration_query.trim() == m.query.trim() {
        return bad(format!(
            "{at} repeats the metric's query: it must read the request duration in seconds \
             (e.g. sum(rate(x_duration_seconds_sum[5m])) / sum(rate(x_duration_seconds_count[5m]))), \
             while the query reads the arrival rate"
        ));
    }
    Ok(Some(c.duration_query.clone()))
}

/// A metric's `groupBy` and `maxSeries`, checked as the CRD's rules do.
fn read_group(i: usize, m: &crate::api::MetricSpec) -> Result<Option<GroupConfig>, InvalidSpec> {
    use crate::planner::group::{DEFAULT_MAX_SERIES, MAX_MAX_SERIES};
    if m.group_by.is_empty() {
        if m.max_series.is_some() {
            return bad(format!(
                "metrics[{i}] ({}).maxSeries applies to a metric with groupBy only",
                m.name
            ));
        }
        return Ok(None);
    }
    if m.group_by.len() > 4 {
        return bad(format!(
            "metrics[{i}] ({}).groupBy has {} label names; at most 4",
            m.name,
            m.group_by.len()
        ));
    }
    for (j, l) in m.group_by.iter().enumerate() {
        if !crate::names::is_prometheus_label_name(l) || l.starts_with("__") {
            return bad(format!(
                "metrics[{i}] ({}).groupBy[{j}] {l:?} is not a Prometheus label name",
                m.name
            ));
        }
        if m.group_by[..j].contains(l) {
            return bad(format!(
                "metrics[{i}] ({}).groupBy names {l:?} twice",
                m.name
            ));
        }
    }
    let max_series = match m.max_series {
        None => DEFAULT_MAX_SERIES,
        Some(n) if (1..=MAX_MAX_SERIES as i32).contains(&n) => n as usize,
        Some(n) => {
            return bad(format!(
                "metrics[{i}] ({}).maxSeries must be between 1 and {MAX_MAX_SERIES}, got {n}",
                m.name
            ));
        }
    };
    Ok(Some(GroupConfig {
        labels: m.group_by.clone(),
        max_series,
    }))
}

/// The spec's durations, read.
struct Windows {
    lookback: Duration,
    step: Duration,
    horizon: Duration,
    refresh_interval: Duration,
    lead_time: Duration,
    lead_time_auto: bool,
    stabilization_window: Duration,
}

/// The durations, and how they must relate: a step of at least 1s and shorter than the
/// lookback, a lead time shorter than the horizon, a horizon of at least one step.
fn read_windows(spec: &PredictiveScalerSpec) -> Result<Windows, InvalidSpec> {
    let lookback = duration("history.lookback", &spec.history.lookback)?;
    let step = duration("history.step", &spec.history.step)?;
    if step < Duration::from_secs(1) {
        return bad(format!(
            "history.step is {}, must be at least 1s",
            spec.history.step
        ));
    }
    if step >= lookback {
        return bad(format!(
            "history.step ({}) must be shorter than history.lookback ({})",
            spec.history.step, spec.history.lookback
        ));
    }
    let horizon = duration("forecast.horizon", &spec.forecast.horizon)?;
    let refresh_interval = duration("forecast.refreshInterval", &spec.forecast.refresh_interval)?;
    if refresh_interval < MIN_REFRESH_INTERVAL {
        return bad(format!(
            "forecast.refreshInterval is {}, must be at least {}: each refit reads the history \
             again and fits every series",
            spec.forecast.refresh_interval,
            format_duration(MIN_REFRESH_INTERVAL)
        ));
    }
    let lead_time_auto = spec.scale_up.lead_time == "Auto";
    let lead_time = if lead_time_auto {
        let bounds = planner::lead_time::lead_time_bounds(horizon, step);
        planner::lead_time::DEFAULT_LEAD_TIME.clamp(bounds.0, bounds.1)
    } else {
        parse_duration(&spec.scale_up.lead_time)
            .map_err(|e| InvalidSpec(format!("scaleUp.leadTime: {e}, or Auto to learn it")))?
    };
    let stabilization_window = duration(
        "scaleDown.stabilizationWindow",
        &spec.scale_down.stabilization_window,
    )?;
    if lead_time >= horizon && !lead_time_auto {
        return bad(format!(
            "scaleUp.leadTime ({}) must be shorter than forecast.horizon ({})",
            spec.scale_up.lead_time, spec.forecast.horizon
        ));
    }
    if horizon < step {
        return bad(format!(
            "forecast.horizon ({}) must be at least one history.step ({})",
            spec.forecast.horizon, spec.history.step
        ));
    }
    Ok(Windows {
        lookback,
        step,
        horizon,
        refresh_interval,
        lead_time,
        lead_time_auto,
        stabilization_window,
    })
}

/// The points of history and of forecast one metric asks for, against `limits`.
fn check_points(
    spec: &PredictiveScalerSpec,
    w: &Windows,
    limits: &Limits,
) -> Result<(), InvalidSpec> {
    let history_points = w.lookback.as_millis() / w.step.as_millis().max(1);
    if history_points > u128::from(limits.max_history_points) {
        return bad(format!(
            "history.lookback / history.step is {history_points} points ({} at {}); at most {} may be fetched \
             per metric: raise history.step or shorten history.lookback",
            spec.history.lookback, spec.history.step, limits.max_history_points
        ));
    }
    let forecast_points = w.horizon.as_millis() / w.step.as_millis().max(1);
    if forecast_points > u128::from(limits.max_forecast_points) {
        return bad(format!(
            "forecast.horizon / history.step is {forecast_points} points ({} at {}); at most {} may be \
             forecast: raise history.step or shorten forecast.horizon",
            spec.forecast.horizon, spec.history.step, limits.max_forecast_points
        ));
    }
    Ok(())
}

/// The series a metric asks the operator to read and fit at a refit: `maxSeries` with
/// `groupBy`, else 1.
pub fn series_of(m: &MetricConfig) -> u64 {
    m.group.as_ref().map_or(1, |g| g.max_series as u64)
}

/// The points of every metric's series, history and forecast together, against `limits`
/// ([`MAX_SCALER_POINTS`]): `series x (lookback + horizon) / step`, compared without rounding
/// as the CRD's rule does.
fn check_scaler_points(
    spec: &PredictiveScalerSpec,
    metrics: &[MetricConfig],
    w: &Windows,
    limits: &Limits,
) -> Result<(), InvalidSpec> {
    let series: u128 = metrics.iter().map(|m| u128::from(series_of(m))).sum();
    let span = (w.lookback + w.horizon).as_millis();
    let step = w.step.as_millis().max(1);
    if series * span <= u128::from(limits.max_scaler_points) * step {
        return Ok(());
    }
    let points = (series * span).div_ceil(step);
    bad(format!(
        "the metrics' {series} series (1 per metric, maxSeries per groupBy metric) x (history.lookback \
         + forecast.horizon) / history.step ({} + {} at {}) is {points} points; at most {} per \
         PredictiveScaler: lower maxSeries, group fewer metrics, raise history.step or shorten \
         history.lookback or forecast.horizon",
        spec.history.lookback, spec.forecast.horizon, spec.history.step, limits.max_scaler_points
    ))
}

/// `forecast.quantile`, strictly between 0 and 1 when set.
fn read_quantile(spec: &PredictiveScalerSpec) -> Result<Option<f64>, InvalidSpec> {
    let q = spec.forecast.quantile;
    if let Some(q) = q.filter(|q| !(*q > 0.0 && *q < 1.0)) {
        return bad(format!(
            "forecast.quantile is {q}, must be between 0 and 1, exclusive"
        ));
    }
    Ok(q)
}

/// `forecast.seasonalPeriods`: each a whole number of steps, at least two.
fn read_seasonal_periods(
    spec: &PredictiveScalerSpec,
    step: Duration,
) -> Result<Vec<Duration>, InvalidSpec> {
    let mut seasonal_periods = Vec::new();
    for (i, p) in spec.forecast.seasonal_periods.iter().enumerate() {
        let d = duration(&format!("forecast.seasonalPeriods[{i}]"), p)?;
        if d.as_secs() < 2 * step.as_secs() || d.as_secs() % step.as_secs() != 0 {
            return bad(format!(
                "forecast.seasonalPeriods[{i}] ({p}) must be a whole number of steps ({}), at least two",
                format_duration(step)
            ));
        }
        seasonal_periods.push(d);
    }
    Ok(seasonal_periods)
}

/// The rate limits: `maxReplicasPerMinute` 0 or more, `maxPercentPerMinute` 0 to 100.
fn check_rates(spec: &PredictiveScalerSpec) -> Result<(), InvalidSpec> {
    if spec.scale_up.max_replicas_per_minute < 0 {
        return bad("scaleUp.maxReplicasPerMinute must be 0 or more".into());
    }
    if !(0..=100).contains(&spec.scale_down.max_percent_per_minute) {
        return bad("scaleDown.maxPercentPerMinute must be between 0 and 100".into());
    }
    Ok(())
}

/// `spec.schedules`: unique DNS-label names, each either a window from `start` to a later
/// `end` or a `cron` expression that occurs, a positive `duration` and a known `timeZone`, and
/// `minReplicas` at most `maxReplicas`. Every message names the schedule.
fn read_schedules(spec: &PredictiveScalerSpec) -> Result<Vec<planner::Schedule>, InvalidSpec> {
    let mut schedules = Vec::with_capacity(spec.schedules.len());
    for (i, s) in spec.schedules.iter().enumerate() {
        let at = format!("schedules[{i}] ({})", s.name);
        if !is_dns_label(&s.name) {
            return bad(format!(
                "schedules[{i}].name {:?} must be lower case letters, digits and '-' (at most 63)",
                s.name
            ));
        }
        if spec.schedules[..i].iter().any(|o| o.name == s.name) {
            return bad(format!("schedule name {:?} is used twice", s.name));
        }
        if s.min_replicas < 0 {
            return bad(format!("{at}.minReplicas must be 0 or more"));
        }
        if let Some(max) = s.max_replicas.filter(|m| *m < 1 || *m < s.min_replicas) {
            return bad(format!(
                "{at}.maxReplicas ({max}) must be 1 or more and at least its minReplicas ({})",
                s.min_replicas
            ));
        }
        schedules.push(planner::Schedule {
            name: s.name.clone(),
            window: read_window(s, &at)?,
            min_replicas: s.min_replicas as u32,
            max_replicas: s.max_replicas.map(|m| m as u32),
        });
    }
    Ok(schedules)
}

/// `spec.guards`: unique DNS-label names, a query, a finite threshold, `addReplicas` (default
/// one) or `addPercent` (1-1000), not both, and a positive `holdWindow`. Every message names
/// the guard.
fn read_guards(spec: &PredictiveScalerSpec) -> Result<Vec<GuardConfig>, InvalidSpec> {
    let mut guards = Vec::with_capacity(spec.guards.len());
    for (i, g) in spec.guards.iter().enumerate() {
        let at = format!("guards[{i}] ({})", g.name);
        if !is_dns_label(&g.name) {
            return bad(format!(
                "guards[{i}].name {:?} must be lower case letters, digits and '-' (at most 63)",
                g.name
            ));
        }
        if spec.guards[..i].iter().any(|o| o.name == g.name) {
            return bad(format!("guard name {:?} is used twice", g.name));
        }
        if g.query.trim().is_empty() {
            return bad(format!("{at}.query is empty"));
        }
        if !g.threshold.is_finite() {
            return bad(format!("{at}.threshold must be a finite number"));
        }
        let step = match (g.add_replicas, g.add_percent) {
            (Some(_), Some(_)) => return bad(format!("{at}: addReplicas or addPercent, not both")),
            (Some(n), None) if n >= 1 => planner::GuardStep::Replicas(n as u32),
            (None, Some(p)) if (1..=1000).contains(&p) => planner::GuardStep::Percent(p as u32),
            (None, None) => planner::GuardStep::Replicas(1),
            _ => {
                return bad(format!(
                    "{at}: addReplicas must be 1 or more, addPercent between 1 and 1000"
                ));
            }
        };
        let hold_window = duration(&format!("{at}.holdWindow"), &g.hold_window)?;
        if hold_window.is_zero() {
            return bad(format!("{at}.holdWindow must be positive"));
        }
        guards.push(GuardConfig {
            source: g.source.clone(),
            query: g.query.clone(),
            guard: planner::Guard {
                name: g.name.clone(),
                threshold: g.threshold,
                direction: match g.direction {
                    GuardDirection::Above => planner::Direction::Above,
                    GuardDirection::Below => planner::Direction::Below,
                },
                step,
                hold_window,
            },
        });
    }
    Ok(guards)
}

/// `scaleDown.drainAware`: an `apps/v1` Deployment or ReplicaSet target (a StatefulSet
/// ignores pod-deletion-cost; in floor mode the autoscaler scales down), a `podQuery`, a source
/// name, a Prometheus label name as `podLabel` and a `maxWait` duration.
fn read_drain_aware(spec: &PredictiveScalerSpec) -> Result<Option<DrainAwareConfig>, InvalidSpec> {
    let Some(d) = &spec.scale_down.drain_aware else {
        return Ok(None);
    };
    let t = &spec.scale_target_ref;
    if t.api_version != "apps/v1" || !matches!(t.kind.as_str(), "Deployment" | "ReplicaSet") {
        return bad(format!(
            "scaleDown.drainAware needs an apps/v1 Deployment or ReplicaSet target, not {} {}: a StatefulSet \
             removes its highest ordinal and ignores pod-deletion-cost, and in floor mode the HPA or KEDA picks \
             the moment of the scale-down",
            t.api_version, t.kind
        ));
    }
    let query = d.pod_query.as_deref().unwrap_or("").trim();
    if query.is_empty() {
        return bad(
            "scaleDown.drainAware needs podQuery: a PromQL query returning one series per pod, e.g. \
             sum by (pod) (proxy_inflight_requests{namespace=\"ai-gateway\"})"
                .into(),
        );
    }
    if !is_dns_label(&d.source) {
        return bad(format!(
            "scaleDown.drainAware.source {:?} is not a source name (lower case letters, digits, '-'); sources \
             are configured in the operator, never given as a URL",
            d.source
        ));
    }
    if !crate::names::is_prometheus_label_name(&d.pod_label) {
        return bad(format!(
            "scaleDown.drainAware.podLabel {:?} is not a Prometheus label name",
            d.pod_label
        ));
    }
    Ok(Some(DrainAwareConfig {
        source: d.source.clone(),
        query: query.to_string(),
        pod_label: d.pod_label.clone(),
        max_wait: duration("scaleDown.drainAware.maxWait", &d.max_wait)?,
    }))
}

/// A schedule's window: `start` and `end`, or `cron`, `duration` and `timeZone`. `at` names
/// the schedule in messages.
fn read_window(s: &ScheduleSpec, at: &str) -> Result<planner::schedule::Window, InvalidSpec> {
    use planner::schedule::Window;
    match (&s.start, &s.end, &s.cron, &s.duration) {
        (Some(start), Some(end), None, None) => {
            let (start, end) = (start.0.as_second(), end.0.as_second());
            if end <= start {
                return bad(format!("{at}: end must be after start"));
            }
            if s.time_zone.is_some() {
                return bad(format!("{at}: timeZone applies to a cron schedule only"));
            }
            Ok(Window::Fixed { start, end })
        }
        (None, None, Some(cron), Some(length)) => {
            let zone_name = s.time_zone.as_deref().unwrap_or("UTC");
            let zone = jiff::tz::TimeZone::get(zone_name).map_err(|_| {
                InvalidSpec(format!(
                    "{at}.timeZone {zone_name:?} is not a known IANA time zone (e.g. Europe/Berlin)"
                ))
            })?;
            let cron = read_cron(cron, &zone, at)?;
            let duration = duration(&format!("{at}.duration"), length)?;
            if duration.is_zero() {
                return bad(format!("{at}.duration must be longer than 0"));
            }
            Ok(Window::Cron {
                cron: Box::new(cron),
                zone,
                duration,
            })
        }
        _ => bad(format!(
            "{at}: give either start and end, or cron and duration (with an optional timeZone)"
        )),
    }
}

/// A five-field cron expression that occurs at all (`0 0 30 2 *` never does).
fn read_cron(expr: &str, zone: &jiff::tz::TimeZone, at: &str) -> Result<croner::Cron, InvalidSpec> {
    let bad_cron = |why: String| {
        InvalidSpec(format!(
            "{at}.cron {expr:?} is not a cron expression of five fields (minute hour \
             day-of-month month day-of-week): {why}"
        ))
    };
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| bad_cron(e.to_string()))?;
    // any expression without a year repeats within 28 years: search from a fixed instant, so
    // the check does not depend on the clock
    let from = jiff::Timestamp::UNIX_EPOCH.to_zoned(zone.clone());
    cron.find_next_occurrence(&from, false)
        .map_err(|_| bad_cron("it never occurs".into()))?;
    Ok(cron)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PredictiveScalerSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "minReplicas": 2,
            "maxReplicas": 60,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1.5k"}],
        }))
        .unwrap()
    }

    #[test]
    fn defaults_read_into_numbers() {
        let c = validate(&spec()).unwrap();
        assert_eq!(c.metrics[0].target_per_replica, 1500.0);
        assert_eq!(c.metrics[0].source, "default");
        assert_eq!(c.lookback, Duration::from_secs(14 * 86_400));
        assert_eq!(c.step, Duration::from_secs(60));
        assert_eq!(c.lead_time, Duration::from_secs(300));
        assert_eq!((c.quantile, c.max_percent_per_minute), (None, 10));
    }

    #[test]
    fn group_by_reads_with_its_default_cap_and_its_queries() {
        assert_eq!(validate(&spec()).unwrap().metrics[0].group, None);
        let mut s = spec();
        s.metrics[0].group_by = vec!["model".into(), "tenant".into()];
        let g = validate(&s).unwrap().metrics[0].group.clone().unwrap();
        assert_eq!(g.max_series, planner::group::DEFAULT_MAX_SERIES);
        assert_eq!(g.series_query("q"), "sum by (model, tenant) (q)");
        assert_eq!(GroupConfig::total_query("q"), "sum(q)");
        s.metrics[0].max_series = Some(7);
        assert_eq!(
            validate(&s).unwrap().metrics[0]
                .group
                .clone()
                .unwrap()
                .max_series,
            7
        );
    }

    #[test]
    fn bad_group_by_has_a_message() {
        let cases: Vec<(Vec<&str>, Option<i32>, &str)> = vec![
            (
                vec![],
                Some(5),
                "maxSeries applies to a metric with groupBy only",
            ),
            (
                vec!["model"],
                Some(0),
                "maxSeries must be between 1 and 50, got 0",
            ),
            (
                vec!["model"],
                Some(51),
                "maxSeries must be between 1 and 50, got 51",
            ),
            (vec!["model-name"], None, "is not a Prometheus label name"),
            (vec!["__name__"], None, "is not a Prometheus label name"),
            (
                vec!["model", "model"],
                None,
                "groupBy names \"model\" twice",
            ),
            (vec!["a", "b", "c", "d", "e"], None, "at most 4"),
        ];
        for (labels, max, words) in cases {
            let mut s = spec();
            s.metrics[0].group_by = labels.iter().map(|l| l.to_string()).collect();
            s.metrics[0].max_series = max;
            let err = validate(&s).unwrap_err().to_string();
            assert!(err.contains(words), "{labels:?} {max:?}: {err}");
        }
    }

    #[test]
    fn lead_time_auto_starts_from_the_default_within_the_horizon() {
        let mut s = spec();
        s.scale_up.lead_time = "Auto".into();
        let c = validate(&s).unwrap();
        assert!(c.lead_time_auto);
        assert_eq!(c.lead_time, planner::lead_time::DEFAULT_LEAD_TIME);
        // a horizon shorter than the default: the default is bounded below it, not an error
        s.forecast.horizon = "3m".into();
        let c = validate(&s).unwrap();
        assert_eq!(c.lead_time, Duration::from_secs(120));
        assert!(!validate(&spec()).unwrap().lead_time_auto);
    }

    #[test]
    fn each_problem_has_a_message() {
        type Case = (fn(&mut PredictiveScalerSpec), &'static str);
        let cases: Vec<Case> = vec![
            (
                |s| s.min_replicas = 61,
                "minReplicas (61) is greater than maxReplicas (60)",
            ),
            (|s| s.min_replicas = -1, "minReplicas is -1"),
            (|s| s.metrics.clear(), "at least one metric"),
            (
                |s| s.metrics[0].target_per_replica.0 = "0".into(),
                "must be positive",
            ),
            (
                |s| s.metrics[0].target_per_replica.0 = "lots".into(),
                "invalid quantity",
            ),
            (|s| s.metrics[0].query = " ".into(), "query is empty"),
            (
                |s| s.history.step = "5x".into(),
                "history.step: invalid duration",
            ),
            (
                |s| s.scale_up.lead_time = "3h".into(),
                "must be shorter than forecast.horizon",
            ),
            (
                |s| s.scale_up.lead_time = "auto".into(),
                "scaleUp.leadTime: invalid duration \"auto\"",
            ),
            (|s| s.forecast.quantile = Some(1.0), "between 0 and 1"),
            (
                |s| s.forecast.seasonal_periods = vec!["90s".into()],
                "whole number of steps",
            ),
            (|s| s.metrics.push(s.metrics[0].clone()), "used twice"),
            (
                |s| s.metrics[0].source = "http://evil.example:9090".into(),
                "is not a source name",
            ),
            (
                |s| s.metrics[0].name = "req\u{1b}[2J\nfake log line".into(),
                "must be lower case letters, digits and '-'",
            ),
            (
                |s| {
                    s.history.lookback = "1h".into();
                    s.history.step = "1s".into();
                    s.forecast.horizon = "365d".into();
                },
                "forecast.horizon / history.step is 31536000 points (365d at 1s); at most 20000",
            ),
            (
                |s| {
                    s.history.lookback = "3650d".into();
                    s.history.step = "1s".into();
                },
                "history.lookback / history.step is 315360000 points (3650d at 1s); at most 50000",
            ),
            (
                |s| {
                    s.scale_target_ref.api_version = "autoscaling/v1".into();
                    s.scale_target_ref.kind = "HorizontalPodAutoscaler".into();
                },
                "floor mode needs autoscaling/v2",
            ),
            (
                |s| {
                    s.scale_target_ref.api_version = "keda.sh/v1alpha1".into();
                    s.scale_target_ref.kind = "ScaledJob".into();
                },
                "ScaledJob keda.sh/v1alpha1 is not supported",
            ),
        ];
        for (change, want) in cases {
            let mut s = spec();
            change(&mut s);
            let err = validate(&s).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;
    use planner::schedule::Window;

    fn spec(schedules: serde_json::Value) -> PredictiveScalerSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 60,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1"}],
            "schedules": schedules,
        }))
        .unwrap()
    }

    #[test]
    fn schedules_read_into_windows() {
        let c = validate(&spec(serde_json::json!([
            {"name": "launch", "start": "2026-03-10T08:00:00+01:00",
             "end": "2026-03-10T20:00:00+01:00", "minReplicas": 20},
            {"name": "mornings", "cron": "30 7 * * 1-5", "duration": "3h",
             "timeZone": "Europe/Berlin", "minReplicas": 8, "maxReplicas": 30},
            {"name": "nightly", "cron": "0 2 * * *", "duration": "1h", "minReplicas": 1},
        ])))
        .unwrap();
        let s = &c.schedules;
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].window,
            Window::Fixed {
                start: 1_773_126_000,
                end: 1_773_169_200
            }
        );
        assert_eq!((s[1].min_replicas, s[1].max_replicas), (8, Some(30)));
        match &s[1].window {
            Window::Cron { zone, duration, .. } => {
                assert_eq!(zone.iana_name(), Some("Europe/Berlin"));
                assert_eq!(*duration, Duration::from_secs(3 * 3600));
            }
            w => panic!("{w:?}"),
        }
        match &s[2].window {
            Window::Cron { zone, .. } => assert_eq!(zone.iana_name(), Some("UTC")),
            w => panic!("{w:?}"),
        }
        assert_eq!(c.policy(Duration::from_secs(30)).schedules, c.schedules);
    }

    #[test]
    fn each_schedule_problem_has_a_message_naming_the_schedule() {
        let fixed = |start: &str, end: &str| serde_json::json!({"name": "launch", "start": start, "end": end, "minReplicas": 2});
        let cron = |expr: &str, zone: &str, duration: &str| {
            serde_json::json!({"name": "mornings", "cron": expr, "timeZone": zone,
                               "duration": duration, "minReplicas": 2})
        };
        let cases = vec![
            (
                fixed("2026-03-10T20:00:00Z", "2026-03-10T20:00:00Z"),
                "schedules[0] (launch): end must be after start",
            ),
            (
                cron("0 25 * * *", "UTC", "1h"),
                "schedules[0] (mornings).cron \"0 25 * * *\" is not a cron expression of five fields",
            ),
            (cron("0 0 30 2 *", "UTC", "1h"), "it never occurs"),
            (
                cron("0 0 8 * * *", "UTC", "1h"),
                "is not a cron expression of five fields",
            ),
            (
                cron("0 8 * * *", "Mars/Olympus", "1h"),
                "schedules[0] (mornings).timeZone \"Mars/Olympus\" is not a known IANA time zone",
            ),
            (
                cron("0 8 * * *", "UTC", "0s"),
                "schedules[0] (mornings).duration must be longer than 0",
            ),
            (
                cron("0 8 * * *", "UTC", "soon"),
                "schedules[0] (mornings).duration: invalid duration",
            ),
            (
                serde_json::json!({"name": "both", "cron": "0 8 * * *", "duration": "1h",
                                   "start": "2026-03-10T08:00:00Z", "end": "2026-03-10T09:00:00Z",
                                   "minReplicas": 2}),
                "schedules[0] (both): give either start and end, or cron and duration",
            ),
            (
                serde_json::json!({"name": "neither", "minReplicas": 2}),
                "schedules[0] (neither): give either start and end, or cron and duration",
            ),
            (
                serde_json::json!({"name": "inverted", "cron": "0 8 * * *", "duration": "1h",
                                   "minReplicas": 9, "maxReplicas": 3}),
                "schedules[0] (inverted).maxReplicas (3) must be 1 or more and at least its minReplicas (9)",
            ),
        ];
        for (schedule, want) in cases {
            let err = validate(&spec(serde_json::json!([schedule])))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        let twice = spec(serde_json::json!([
            fixed("2026-03-10T08:00:00Z", "2026-03-10T09:00:00Z"),
            fixed("2026-03-11T08:00:00Z", "2026-03-11T09:00:00Z")
        ]));
        let err = validate(&twice).unwrap_err().to_string();
        assert!(
            err.contains("schedule name \"launch\" is used twice"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod concurrency_tests {
    use super::*;

    fn spec(concurrency: serde_json::Value) -> PredictiveScalerSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 60,
            "metrics": [
                {"name": "requests", "query": "rps", "targetPerReplica": "40"},
                {"name": "streams", "query": "arrivals", "targetPerReplica": "8",
                 "concurrency": concurrency},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn a_concurrency_metric_reads_its_duration_query_and_streams_target() {
        let c = validate(&spec(serde_json::json!({"durationQuery": "mean_duration"}))).unwrap();
        assert_eq!(c.metrics[0].duration_query, None);
        assert_eq!(
            c.metrics[1].duration_query.as_deref(),
            Some("mean_duration")
        );
        assert_eq!(c.metrics[1].target_per_replica, 8.0);
    }

    #[test]
    fn an_empty_or_repeated_duration_query_is_refused_naming_the_metric() {
        for (duration_query, want) in [
            (
                " ",
                "metrics[1] (streams).concurrency.durationQuery is empty",
            ),
            (
                "arrivals",
                "metrics[1] (streams).concurrency.durationQuery repeats the metric's query",
            ),
        ] {
            let err = validate(&spec(serde_json::json!({"durationQuery": duration_query})))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        // durationQuery is required in a concurrency block (the API server's schema, serde too)
        let err = serde_json::from_value::<PredictiveScalerSpec>(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 6,
            "metrics": [{"name": "s", "query": "q", "targetPerReplica": "1", "concurrency": {}}],
        }))
        .unwrap_err();
        assert!(err.to_string().contains("durationQuery"), "{err}");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_small_history_cache_lowers_the_history_cap() {
        let spec: PredictiveScalerSpec = serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 10,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1"}],
        }))
        .unwrap();
        // 14 days at 1 minute: 20,160 points
        validate_with(&spec, &Limits::with_cache_points(20_160)).unwrap();
        let err = validate_with(&spec, &Limits::with_cache_points(20_000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is 20160 points") && err.contains("at most 20000"),
            "{err}"
        );
        assert_eq!(Limits::with_cache_points(10_000_000), Limits::default());
    }

    /// `n` metrics of `groupBy: [model]` with `maxSeries`, over `lookback` and `horizon` at 1m.
    fn grouped(n: usize, max_series: i32, lookback: &str, horizon: &str) -> PredictiveScalerSpec {
        let metrics: Vec<_> = (0..n)
            .map(|i| {
                serde_json::json!({"name": format!("m{i}"), "query": "q", "targetPerReplica": "1",
                    "groupBy": ["model"], "maxSeries": max_series})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 10,
            "metrics": metrics,
            "history": {"lookback": lookback, "step": "1m"},
            "forecast": {"horizon": horizon},
            "scaleUp": {"leadTime": "5m"},
        }))
        .unwrap()
    }

    #[test]
    fn a_scaler_is_bounded_by_all_its_series_history_and_forecast_together() {
        // every cap at once (8 metrics, 50 series, 34 days, 13 days): accepted before the
        // bound, 28 million points that held 345 MiB in the operator
        let err = validate(&grouped(8, 50, "34d", "13d"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "the metrics' 400 series (1 per metric, maxSeries per groupBy metric) x \
                 (history.lookback + forecast.horizon) / history.step (34d + 13d at 1m) is \
                 27072000 points; at most 4000000 per PredictiveScaler: lower maxSeries"
            ),
            "{err}"
        );
        // the largest accepted: one groupBy metric of 50 series at every per-metric cap, or
        // two of 50 series over 14 days with a 2h horizon (2 x 50 x 20,280 = 2,028,000)
        validate(&grouped(1, 50, "34d", "13d")).unwrap();
        validate(&grouped(2, 50, "14d", "2h")).unwrap();
        validate(&grouped(3, 50, "14d", "2h")).unwrap();
        let err = validate(&grouped(4, 50, "14d", "2h"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is 4056000 points; at most 4000000"), "{err}");
        // single-series metrics count one series each: 8 of them at every cap pass
        let mut plain = grouped(8, 50, "34d", "13d");
        for m in &mut plain.metrics {
            m.group_by.clear();
            m.max_series = None;
        }
        validate(&plain).unwrap();
    }

    #[test]
    fn a_refresh_interval_under_a_minute_is_refused_naming_the_minimum() {
        let mut s = grouped(1, 20, "14d", "2h");
        s.forecast.refresh_interval = "1s".into();
        let err = validate(&s).unwrap_err().to_string();
        assert!(
            err.contains("forecast.refreshInterval is 1s, must be at least 1m"),
            "{err}"
        );
        s.forecast.refresh_interval = "1m".into();
        validate(&s).unwrap();
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    fn spec(guards: serde_json::Value) -> Result<PredictiveScalerSpec, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 60,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1"}],
            "guards": guards,
        }))
    }

    #[test]
    fn guards_read_with_their_defaults() {
        let c = validate(
            &spec(serde_json::json!([
                {"name": "p95", "query": "latency", "threshold": 0.5},
                {"name": "ok", "source": "other", "query": "ratio", "threshold": 0.99,
                 "direction": "Below", "addPercent": 20, "holdWindow": "10m"},
            ]))
            .unwrap(),
        )
        .unwrap();
        let g = &c.guards;
        assert_eq!(
            (g[0].source.as_str(), g[0].query.as_str()),
            ("default", "latency")
        );
        assert_eq!(
            g[0].guard,
            planner::Guard {
                name: "p95".into(),
                threshold: 0.5,
                direction: planner::Direction::Above,
                step: planner::GuardStep::Replicas(1),
                hold_window: Duration::from_secs(300),
            }
        );
        assert_eq!(g[1].guard.direction, planner::Direction::Below);
        assert_eq!(g[1].guard.step, planner::GuardStep::Percent(20));
        assert_eq!(g[1].guard.hold_window, Duration::from_secs(600));
    }

    #[test]
    fn a_guard_without_a_threshold_does_not_parse_and_each_problem_names_the_guard() {
        // `threshold` is required: the API server refuses it (schema), serde too
        let err = spec(serde_json::json!([{"name": "p95", "query": "q"}])).unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
        let g = |extra: serde_json::Value| {
            let mut base = serde_json::json!({"name": "p95", "query": "q", "threshold": 1.0});
            base.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            base
        };
        for (guards, want) in [
            (
                serde_json::json!([g(serde_json::json!({"name": "P95"}))]),
                "guards[0].name",
            ),
            (
                serde_json::json!([g(serde_json::json!({})), g(serde_json::json!({}))]),
                "guard name \"p95\" is used twice",
            ),
            (
                serde_json::json!([g(serde_json::json!({"query": " "}))]),
                "guards[0] (p95).query is empty",
            ),
            (
                serde_json::json!([g(serde_json::json!({"addReplicas": 1, "addPercent": 5}))]),
                "addReplicas or addPercent, not both",
            ),
            (
                serde_json::json!([g(serde_json::json!({"addReplicas": 0}))]),
                "addReplicas must be 1 or more",
            ),
            (
                serde_json::json!([g(serde_json::json!({"addPercent": 5000}))]),
                "addPercent between 1 and 1000",
            ),
            (
                serde_json::json!([g(serde_json::json!({"holdWindow": "0s"}))]),
                "holdWindow must be positive",
            ),
            (
                serde_json::json!([g(serde_json::json!({"holdWindow": "soon"}))]),
                "guards[0] (p95).holdWindow",
            ),
        ] {
            let err = validate(&spec(guards).unwrap()).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}

#[cfg(test)]
mod drain_aware_tests {
    use super::*;

    fn spec(kind: &str, drain_aware: serde_json::Value) -> PredictiveScalerSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "x"},
            "maxReplicas": 60,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1"}],
            "scaleDown": {"drainAware": drain_aware},
        }))
        .unwrap()
    }

    #[test]
    fn drain_aware_reads_with_its_defaults() {
        let q = "sum by (pod) (inflight)";
        let c = validate(&spec("Deployment", serde_json::json!({"podQuery": q}))).unwrap();
        assert_eq!(
            c.drain_aware,
            Some(DrainAwareConfig {
                source: "default".into(),
                query: q.into(),
                pod_label: "pod".into(),
                max_wait: Duration::from_secs(300),
            })
        );
        let d = serde_json::json!({"podQuery": q, "source": "other", "podLabel": "kubernetes_pod_name", "maxWait": "0s"});
        let c = validate(&spec("ReplicaSet", d)).unwrap();
        let d = c.drain_aware.unwrap();
        assert_eq!(
            (d.pod_label.as_str(), d.max_wait),
            ("kubernetes_pod_name", Duration::ZERO)
        );
        assert_eq!(
            validate(&spec("Deployment", serde_json::json!(null)))
                .unwrap()
                .drain_aware,
            None
        );
    }

    #[test]
    fn each_drain_aware_problem_has_a_message() {
        let q = serde_json::json!("sum by (pod) (inflight)");
        for (kind, d, want) in [
            (
                "Deployment",
                serde_json::json!({}),
                "scaleDown.drainAware needs podQuery",
            ),
            (
                "Deployment",
                serde_json::json!({"podQuery": "  "}),
                "scaleDown.drainAware needs podQuery",
            ),
            (
                "StatefulSet",
                serde_json::json!({"podQuery": q}),
                "a StatefulSet removes its highest ordinal and ignores pod-deletion-cost",
            ),
            (
                "Deployment",
                serde_json::json!({"podQuery": q, "source": "http://p"}),
                "drainAware.source \"http://p\" is not a source name",
            ),
            (
                "Deployment",
                serde_json::json!({"podQuery": q, "podLabel": "pod-name"}),
                "podLabel \"pod-name\" is not a Prometheus label name",
            ),
            (
                "Deployment",
                serde_json::json!({"podQuery": q, "maxWait": "5min"}),
                "scaleDown.drainAware.maxWait",
            ),
        ] {
            let err = validate(&spec(kind, d)).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
