//! The `PredictiveScaler` custom resource, `prescale.dev/v1alpha1`.
//!
//! Types, defaults, schema and CEL rules only: every `///` here becomes `kubectl explain` text,
//! so it is written for the person filling in the manifest. Reading the strings into numbers
//! lives in [`crate::api::validate`](mod@crate::api::validate).

use k8s_openapi::apimachinery::pkg::{
    api::resource::Quantity,
    apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Milliseconds of a duration field in CEL: `14d` is `14 * 86400000` because CEL's
/// `duration()` reads Go durations only. `f` is a CEL expression of a string matching
/// `DURATION_PATTERN`. Integers, not `duration(string(int(..)) + 'h')`: a real API server
/// estimates the cost of that string building as unbounded and refuses the whole CRD.
macro_rules! cel_duration_ms {
    ($f:literal) => {
        concat!(
            "(",
            $f,
            ".endsWith('d') ? int(",
            $f,
            ".replace('d', '')) * 86400000 : duration(",
            $f,
            ").getMilliseconds())"
        )
    };
}

/// A PredictiveScaler forecasts the load of a workload from its Prometheus history and sets
/// the workload's replicas through its `/scale` subresource ahead of the forecast peak.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "prescale.dev",
    version = "v1alpha1",
    kind = "PredictiveScaler",
    doc = "A PredictiveScaler forecasts the load of a workload from its Prometheus history and sets the workload's replicas through its /scale subresource ahead of the forecast rise, never below what the load observed now needs. status reports the decision, the forecast and four conditions (Ready, ForecastAvailable, AbleToScale, ScalingLimited).",
    plural = "predictivescalers",
    shortname = "psc",
    namespaced,
    cel,
    status = "PredictiveScalerStatus",
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.scaleTargetRef.name"}"#,
    printcolumn = r#"{"name":"Min","type":"integer","jsonPath":".spec.minReplicas"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxReplicas"}"#,
    printcolumn = r#"{"name":"Current","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Via","type":"string","jsonPath":".status.targetMode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Limited","type":"string","jsonPath":".status.conditions[?(@.type==\"ScalingLimited\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.spec.minReplicas >= 1 || (has(self.spec.allowScaleToZero) && self.spec.allowScaleToZero)")
        .message("minReplicas 0 needs allowScaleToZero: true")
        .field_path(".spec.minReplicas")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(
        "self.spec.scaleTargetRef.kind != 'HorizontalPodAutoscaler' || self.spec.scaleTargetRef.apiVersion == 'autoscaling/v2'")
        .message("a HorizontalPodAutoscaler target (floor mode) must be autoscaling/v2")
        .field_path(".spec.scaleTargetRef")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(
        "!self.spec.scaleTargetRef.apiVersion.startsWith('keda.sh/') || ",
        "(self.spec.scaleTargetRef.apiVersion == 'keda.sh/v1alpha1' && self.spec.scaleTargetRef.kind == 'ScaledObject')"))
        .message("the only KEDA target (floor mode) is a keda.sh/v1alpha1 ScaledObject")
        .field_path(".spec.scaleTargetRef")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new("self.spec.minReplicas <= self.spec.maxReplicas")
        .message("minReplicas must be less than or equal to maxReplicas")
        .field_path(".spec.minReplicas")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(
        "self.spec.scaleUp.leadTime == 'Auto' || ",
        cel_duration_ms!("self.spec.scaleUp.leadTime"), " < ", cel_duration_ms!("self.spec.forecast.horizon")))
        .message("scaleUp.leadTime must be shorter than forecast.horizon")
        .field_path(".spec.scaleUp.leadTime")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(
        cel_duration_ms!("self.spec.history.step"), " < ", cel_duration_ms!("self.spec.history.lookback")))
        .message("history.step must be shorter than history.lookback")
        .field_path(".spec.history.step")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(cel_duration_ms!("self.spec.history.step"), " >= 1000"))
        .message("history.step must be at least 1s")
        .field_path(".spec.history.step")
        .reason(Reason::FieldValueInvalid),
    // the caps of crate::api::validate::MAX_HISTORY_POINTS and MAX_FORECAST_POINTS
    validation = Rule::new(concat!(
        cel_duration_ms!("self.spec.history.lookback"), " <= ", cel_duration_ms!("self.spec.history.step"), " * 50000"))
        .message("history.lookback / history.step must be at most 50000 points: raise history.step or shorten history.lookback")
        .field_path(".spec.history.lookback")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(
        "!has(self.spec.upstream) || self.spec.upstream.limits.all(l, self.spec.metrics.exists(m, m.name == l.metric))")
        .message("every upstream limit must name a metric of spec.metrics")
        .field_path(".spec.upstream.limits")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(
        "!has(self.spec.scaleDown) || !has(self.spec.scaleDown.drainAware) || ",
        "(self.spec.scaleTargetRef.apiVersion == 'apps/v1' && self.spec.scaleTargetRef.kind in ['Deployment', 'ReplicaSet'])"))
        .message("scaleDown.drainAware needs an apps/v1 Deployment or ReplicaSet target: a StatefulSet removes its highest ordinal and ignores pod-deletion-cost, and in floor mode the HPA or KEDA picks the moment of the scale-down")
        .field_path(".spec.scaleDown.drainAware")
        .reason(Reason::FieldValueInvalid),
    validation = Rule::new(concat!(
        cel_duration_ms!("self.spec.forecast.horizon"), " <= ", cel_duration_ms!("self.spec.history.step"), " * 20000"))
        .message("forecast.horizon / history.step must be at most 20000 points: raise history.step or shorten forecast.horizon")
        .field_path(".spec.forecast.horizon")
        .reason(Reason::FieldValueInvalid),
    // crate::api::validate::MAX_SCALER_POINTS: series x (lookback + horizon) <= 4000000 x step,
    // without division (a step under 1s is the rule above's to refuse)
    validation = Rule::new(concat!(
        cel_duration_ms!("self.spec.history.step"), " < 1000 || ",
        "self.spec.metrics.map(m, has(m.groupBy) && size(m.groupBy) > 0 ? (has(m.maxSeries) ? m.maxSeries : 20) : 1).sum() * (",
        cel_duration_ms!("self.spec.history.lookback"), " + ", cel_duration_ms!("self.spec.forecast.horizon"), ") <= ",
        cel_duration_ms!("self.spec.history.step"), " * 4000000"))
        .message("the metrics' series (1 per metric, maxSeries per groupBy metric, default 20) x (history.lookback + forecast.horizon) / history.step must be at most 4000000 points per PredictiveScaler: lower maxSeries, group fewer metrics, raise history.step or shorten history.lookback or forecast.horizon")
        .field_path(".spec.metrics")
        .reason(Reason::FieldValueInvalid),
    // crate::api::validate::MIN_REFRESH_INTERVAL
    validation = Rule::new(concat!(cel_duration_ms!("self.spec.forecast.refreshInterval"), " >= 60000"))
        .message("forecast.refreshInterval must be at least 1m: each refit reads the history again and fits every series")
        .field_path(".spec.forecast.refreshInterval")
        .reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveScalerSpec {
    /// The workload to scale: anything with a `/scale` subresource (Deployment, StatefulSet,
    /// ...). Do not let an HPA scale the same workload.
    pub scale_target_ref: ScaleTargetRef,

    /// The fewest replicas prescale will set. Default 1; 0 only with `allowScaleToZero`.
    #[serde(default = "default_min_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("minReplicas must be 0 or more"))]
    pub min_replicas: i32,

    /// Let prescale own zero: scale the target down to 0 (with `minReplicas: 0`) and up from
    /// 0. Without it a target at 0 replicas counts as switched off, as with the HPA: prescale
    /// leaves it there (`AbleToScale=False`, `ScalingDisabled`) until someone scales it up.
    #[serde(default)]
    pub allow_scale_to_zero: bool,

    /// The most replicas prescale will set.
    #[x_kube(validation = Rule::new("self >= 1").message("maxReplicas must be 1 or more"))]
    pub max_replicas: i32,

    /// `Active` scales the target. `DryRun` forecasts and reports (status, events, metrics)
    /// but never writes the target.
    #[serde(default)]
    pub mode: Mode,

    /// The load signals to forecast, one or more. Desired replicas are the maximum over the
    /// metrics.
    #[x_kube(validation = Rule::new("size(self) >= 1").message("at least one metric is required"))]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(n, n.name == m.name))").message("metric names must be unique"))]
    #[schemars(length(max = 8))]
    pub metrics: Vec<MetricSpec>,

    /// How much history to fit the forecast on, and at what resolution.
    #[serde(default)]
    pub history: HistorySpec,

    /// How to forecast.
    #[serde(default)]
    pub forecast: ForecastSpec,

    /// How to scale up.
    #[serde(default)]
    pub scale_up: ScaleUpSpec,

    /// How to scale down.
    #[serde(default)]
    pub scale_down: ScaleDownSpec,

    /// What to do when no forecast can be made (no data, a failed query, too little history):
    /// `Reactive` sizes for the latest observed load like an HPA would, with the default
    /// budget's 1.15x headroom when `forecast.quantile` is unset (none when it is set); `Hold` keeps the
    /// current replica count, raised to what the latest observed load needs when there is
    /// one. Without any data both keep the current count: missing data is never read as zero
    /// load.
    #[serde(default)]
    pub fallback: Fallback,

    /// Windows of time with replica bounds of their own: a launch day, a weekday-morning rush.
    /// While a window is active its `minReplicas` raises the forecast's count (the highest of
    /// the active windows wins) and its `maxReplicas`, if set, caps it (the lowest wins, even
    /// over another window's floor); both stay within the spec's `minReplicas` and
    /// `maxReplicas`. A window changes what is recommended, so replicas follow as for any
    /// other change: a floor's start is a scale-up within `scaleUp.maxReplicasPerMinute`
    /// (start the window `scaleUp.leadTime` early to have the replicas warm at the time it
    /// names), and a floor's end or a cap's start is a scale-down as `scaleDown` allows (the
    /// stabilization window, then `maxPercentPerMinute`). The scaler is evaluated at each
    /// window's start and end when that comes before its next sync, so a window shorter than
    /// the sync interval applies too. `status.schedules` lists the active windows and the next
    /// one; events `ScheduleStarted` and `ScheduleEnded` mark each change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message("schedule names must be unique"))]
    #[schemars(length(max = 16))]
    pub schedules: Vec<ScheduleSpec>,

    /// The gateway's health, read now, overriding the forecast: each guard is a PromQL query
    /// (a p95 latency, an error ratio, a queue depth, in-flight requests per replica) with a
    /// threshold. A guard is never forecast; it reacts. While its latest value is past the
    /// threshold (`direction`), every evaluation raises replicas to at least the current
    /// count plus its step (`addReplicas`, or `addPercent` of the current count), at most
    /// `maxReplicas` (also over a schedule's `maxReplicas`; still within
    /// `scaleUp.maxReplicasPerMinute`), and after a breach no scale-down happens until it has
    /// been healthy for its `holdWindow` (then the stabilization window applies as usual). A
    /// guard whose query fails, returns nothing or stops never lowers replicas: it holds them
    /// and says why. `ScalingLimited` reports `GuardBreached` or `GuardUnavailable`, with an
    /// event (`GuardBreached`, `GuardRecovered`) and the gauge `prescale_guard_breached`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(g, self.exists_one(h, h.name == g.name))").message("guard names must be unique"))]
    #[schemars(length(max = 8))]
    pub guards: Vec<GuardSpec>,

    /// The provider quotas the proxy forwards to (requests per minute, tokens per minute):
    /// every forwarded request spends them, so replicas beyond what a quota admits only add
    /// cost. A limit on a metric caps the replicas that metric asks for at
    /// `ceil(limit as load / targetPerReplica)` (`perMinute / 60` as load for a per-second
    /// metric such as a `rate()`, `perMinute` itself for a per-minute one; see `metricUnit`);
    /// the count is the most any metric then asks for, never below `minReplicas` (an active
    /// schedule's `minReplicas` and a breached guard still raise it). When the ceiling lowers
    /// the count, `ScalingLimited` is `UpstreamLimited`, an `UpstreamLimited` event is sent
    /// when it starts (`UpstreamCleared` when it stops), and `prescale_upstream_limited` is 1:
    /// ask the provider for more quota, not for more replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamSpec>,

    /// Floor mode (a HorizontalPodAutoscaler or ScaledObject `scaleTargetRef`): how prescale
    /// sets that object's floor. Read only in floor mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<FloorSpec>,
}

/// How prescale sets the floor of a HorizontalPodAutoscaler or ScaledObject.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FloorSpec {
    /// Let the floor go below the object's own (its owner's) `minReplicas` /
    /// `minReplicaCount`, down to this scaler's `minReplicas` when the forecast needs fewer.
    /// The owner's value is the one prescale found when it took the floor over (kept in the
    /// object's annotation `prescale.dev/original-min-replicas` and put back when the scaler
    /// goes), or the one another writer set since. Default false: prescale only raises the
    /// floor above the owner's value, never lowers it below.
    #[serde(default)]
    pub allow_below_owner: bool,
}

/// The upstream provider's limits.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSpec {
    /// One limit per metric, each naming a metric of `spec.metrics`, e.g.
    /// `{metric: requests, perMinute: "6000"}` and `{metric: tokens, perMinute: 2M}`.
    #[x_kube(validation = Rule::new("size(self) >= 1").message("upstream.limits needs at least one limit"))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(k, k.metric == l.metric))").message("one upstream limit per metric"))]
    #[schemars(length(max = 8))]
    pub limits: Vec<UpstreamLimitSpec>,
}

/// One provider limit on a metric's load: a static `perMinute`, a `query` reading the current
/// limit, or both (the query wins; the static limit is the fallback when it fails).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.perMinute) || has(self.query)").message("an upstream limit needs perMinute, query, or both"))]
pub struct UpstreamLimitSpec {
    /// The metric of `spec.metrics` whose load spends this quota (`requests` for a
    /// requests-per-minute quota, `tokens` for tokens per minute).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub metric: String,

    /// The quota per minute, as the provider states it (a positive quantity: `6000`, `2M`).
    /// With `query`, the fallback used while the query fails (never below the current count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxLength" = 64))]
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))").message("perMinute must be a positive quantity"))]
    pub per_minute: Option<Quantity>,

    /// What the metric's value counts: `PerSecond` (the default: a `rate()`, so a quota of
    /// 6000 per minute is a load of 100) or `PerMinute` (an `increase(...[1m])`).
    #[serde(default)]
    pub metric_unit: UpstreamMetricUnit,

    /// A PromQL expression returning one series: the current limit, per minute, e.g. a gauge
    /// exported from the provider's `x-ratelimit-limit-requests` header. Its latest value (of
    /// the last five minutes) wins over `perMinute`; it stops a scale-up at what it admits but
    /// on its own never lowers the count below the current one. When it fails, returns
    /// nothing, or a value below 1 per minute, the limit is `perMinute` but never below the
    /// current count, or, without `perMinute`, no limit (`ScalingLimited` says
    /// `UpstreamUnavailable` with the source's reason). A gauge of
    /// the *remaining* quota is not a limit: add what was used, e.g.
    /// `remaining + sum(rate(used[1m])) * 60`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub query: Option<String>,

    /// The Prometheus source of `query`, as for a metric (configured by the cluster admin;
    /// never a URL). Default `default`.
    #[serde(default = "default_source")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub source: String,
}

/// What a metric's value counts, per second or per minute.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpstreamMetricUnit {
    /// Per second (`rate()`).
    #[default]
    PerSecond,
    /// Per minute.
    PerMinute,
}

/// One guard: a health signal, its threshold, and what a breach does.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.addReplicas) && has(self.addPercent))").message("a guard adds either addReplicas or addPercent, not both"))]
pub struct GuardSpec {
    /// A short name for the guard, shown in status, events and metrics: lower case letters,
    /// digits and `-`, at most 63, unique within the scaler.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The Prometheus source to query, as for a metric (configured by the cluster admin; never
    /// a URL). Default `default`.
    #[serde(default = "default_source")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub source: String,

    /// A PromQL expression returning exactly one series, e.g.
    /// `histogram_quantile(0.95, sum by (le) (rate(proxy_request_duration_seconds_bucket[2m])))`.
    /// Its latest value (of the last five minutes) is compared with `threshold`.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,

    /// The value past which the guard is breached (required), in the query's unit.
    pub threshold: f64,

    /// `Above` (default): breached when the value is above `threshold` (latency, errors,
    /// queue depth). `Below`: breached when it is below (a success ratio, free capacity).
    #[serde(default)]
    pub direction: GuardDirection,

    /// Replicas added over the current count at each evaluation while breached. Default 1
    /// when `addPercent` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("a guard's addReplicas must be 1 or more"))]
    pub add_replicas: Option<i32>,

    /// Percent of the current count added at each evaluation while breached (rounded up, at
    /// least one replica), instead of `addReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("a guard's addPercent must be between 1 and 1000"))]
    pub add_percent: Option<i32>,

    /// How long the guard must stay healthy after a breach before replicas may go down, e.g.
    /// `5m` (the default).
    #[serde(default = "default_hold_window")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub hold_window: String,
}

/// Which side of a guard's threshold is unhealthy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GuardDirection {
    /// Breached above the threshold.
    #[default]
    Above,
    /// Breached below the threshold.
    Below,
}

/// One scheduled override: a window, given either once by `start` and `end` or repeating by
/// `cron`, `duration` and `timeZone`, and the replica bounds while it is active.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.start) == has(self.end)").message("start and end must be given together"))]
#[x_kube(validation = Rule::new("has(self.start) != has(self.cron)").message("a schedule has either start and end, or cron and duration"))]
#[x_kube(validation = Rule::new("has(self.cron) == has(self.duration)").message("cron and duration must be given together"))]
#[x_kube(validation = Rule::new("!has(self.timeZone) || has(self.cron)").message("timeZone applies to a cron schedule only (start and end carry their own offset)"))]
#[x_kube(validation = Rule::new("!has(self.start) || !has(self.end) || self.end > self.start").message("end must be after start"))]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("a schedule's minReplicas must be less than or equal to its maxReplicas"))]
pub struct ScheduleSpec {
    /// A short name for the window, shown in status and events: lower case letters, digits
    /// and `-`, at most 63, unique within the scaler.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// When a one-off window starts (RFC 3339, e.g. `2026-03-10T08:00:00+01:00`); active from
    /// this instant. With `end`; not with `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,

    /// When a one-off window ends (RFC 3339); no longer active at this instant. After `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,

    /// When a repeating window starts: a cron expression of five fields (minute, hour, day of
    /// month, month, day of week), e.g. `0 8 * * 1-5` for 08:00 on weekdays, read in
    /// `timeZone`. With `duration`; not with `start`/`end`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub cron: Option<String>,

    /// How long each repeating window lasts from its start, in elapsed time (e.g. `3h`; `1d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub duration: Option<String>,

    /// The IANA time zone `cron` is read in, e.g. `Europe/Berlin`, so a window follows the
    /// zone's daylight saving time. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// The fewest replicas while the window is active (within the spec's `minReplicas` and
    /// `maxReplicas`).
    #[x_kube(validation = Rule::new("self >= 0").message("a schedule's minReplicas must be 0 or more"))]
    pub min_replicas: i32,

    /// The most replicas while the window is active, if set (within the spec's `minReplicas`
    /// and `maxReplicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("a schedule's maxReplicas must be 1 or more"))]
    pub max_replicas: Option<i32>,
}

/// Points at the workload to scale, like an HPA's `scaleTargetRef`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target, e.g. `apps/v1`. `autoscaling/v2` HorizontalPodAutoscaler
    /// and `keda.sh/v1alpha1` ScaledObject targets are floor mode: prescale sets their
    /// minimum, and they keep scaling above it.
    pub api_version: String,
    /// Kind of the target, e.g. `Deployment`.
    pub kind: String,
    /// Name of the target, in the PredictiveScaler's namespace.
    pub name: String,
}

/// Whether prescale writes the target.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    /// Scale the target.
    #[default]
    Active,
    /// Forecast and report only; never write the target.
    DryRun,
}

/// What to do when there is no forecast.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Fallback {
    /// Size for the latest observed load, like a reactive autoscaler (with the default
    /// budget's headroom when `forecast.quantile` is unset).
    #[default]
    Reactive,
    /// Keep the current replica count (raised to what the latest observed load needs).
    Hold,
}

/// One load signal and what one replica should carry of it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.concurrency) || self.concurrency.durationQuery != self.query").message("concurrency.durationQuery must read the request duration in seconds, not repeat the metric's query (the arrival rate)"))]
#[x_kube(validation = Rule::new("!has(self.maxSeries) || (has(self.groupBy) && size(self.groupBy) > 0)").message("maxSeries applies to a metric with groupBy only"))]
pub struct MetricSpec {
    /// A short name for the metric, shown in status, events, metrics and logs (e.g. `requests`,
    /// `tokens`): lower case letters, digits and `-`, at most 63, like a Kubernetes name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// The name of a Prometheus source configured in the operator by the cluster admin
    /// (`--sources-file`, or `--prometheus-url` for `default`). Never a URL: PredictiveScalers
    /// cannot aim the operator at an address of their own.
    #[serde(default = "default_source")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub source: String,

    /// A PromQL expression returning exactly one series: the load, e.g.
    /// `sum(rate(proxy_requests_total{app="llm-proxy"}[2m]))`. Use `rate()` on counters
    /// (it handles counter resets) and `sum()` to merge pods.
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,

    /// The amount of this metric one replica should carry (a quantity, like an HPA
    /// `averageValue`): replicas = ceil(load / targetPerReplica). With `concurrency`, the
    /// concurrent requests (streams) one replica should carry instead.
    // maxLength bounds the CEL rule's cost: without it a real API server refuses the CRD
    #[schemars(extend("maxLength" = 64))]
    #[x_kube(validation = Rule::new("isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))").message("targetPerReplica must be a positive quantity"))]
    pub target_per_replica: Quantity,

    /// Forecast bottom-up: label names (e.g. `[model]` or `[tenant]`) whose values split the
    /// load into series. prescale reads `sum by (<groupBy>) (<query>)`, forecasts each series
    /// on its own (the same model rule as any metric) and sizes for their combined total: the
    /// point forecasts add up and the upper bands add their half-widths in quadrature
    /// (`sum(point) + sqrt(sum((upper - point)^2))`, independent errors). Replicas are still
    /// sized with the calibrated margin of the total, `sum(<query>)`; the bottom-up band gives
    /// the forecast peak, `status.forecast.topContributors` (the largest series at the peak
    /// with their share) and the sizing while no margin can be calibrated. A series that
    /// stopped more than ten minutes ago is left out; one with too little history to fit (a
    /// new model) is carried flat at its recent level (newest value, upper the highest of its
    /// last hour). Each series is one more model fit per refit. Without `groupBy` a query
    /// returning several series is refused (`QueryReturnedManySeries`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 4),
        inner(
            length(min = 1, max = 128),
            regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")
        )
    )]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(k, k == l))").message("groupBy label names must be unique"))]
    pub group_by: Vec<String>,

    /// The most series `groupBy` may split the load into (default 20, at most 50). A query
    /// returning more is refused with `ForecastAvailable=False`, reason `TooManySeries`, and
    /// the metric holds the current replica count (never a truncated or partial sum). All
    /// metrics together (1 series per metric, `maxSeries` per `groupBy` metric) x
    /// `(history.lookback + forecast.horizon) / history.step` must be at most 4,000,000
    /// points per PredictiveScaler (two metrics of 50 series over 14 days at `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 50").message("maxSeries must be between 1 and 50"))]
    pub max_series: Option<i32>,
    /// Size on concurrent requests (Little's law) instead of on the metric itself: `query` is
    /// then the arrival rate in requests per second (`sum(rate(..._count[2m]))`), it is what
    /// is forecast, and replicas = ceil(forecast rate x mean request duration /
    /// targetPerReplica), with `targetPerReplica` in concurrent requests (streams) per
    /// replica. For long requests of varying length (streamed LLM responses, image
    /// generation), whose load on a replica is how many run at once, not how many arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
}

/// Little's law sizing of a metric: where the mean request duration comes from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencySpec {
    /// A PromQL expression returning one series: the recent request duration in seconds, read
    /// from the metric's `source`. The mean of a histogram:
    /// `sum(rate(x_duration_seconds_sum[5m])) / sum(rate(x_duration_seconds_count[5m]))`, or
    /// a high quantile to size for slow spells:
    /// `histogram_quantile(0.9, sum by (le) (rate(x_duration_seconds_bucket[5m])))`. Its
    /// latest value of the last hour is used (idle minutes, where the ratio is NaN, are
    /// skipped). Nothing in the last hour, or a value that is not positive: the metric holds
    /// the replicas (`ForecastAvailable=False`, `DurationUnavailable`); it is never read as
    /// zero load.
    #[schemars(length(min = 1, max = 4096))]
    pub duration_query: String,
}

/// History window used for fitting.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// How much history to fit on, e.g. `14d`. Two weeks lets prescale learn the weekly cycle.
    /// At most 50,000 steps (`lookback / step`; 34 days at `1m`).
    #[serde(default = "default_lookback")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub lookback: String,

    /// Resolution of the series, e.g. `1m`; at least `1s`.
    #[serde(default = "default_step")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub step: String,
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            lookback: default_lookback(),
            step: default_step(),
        }
    }
}

/// Which forecasting model to use.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelKind {
    /// Let prescale choose per series, every 6 hours: MSTL, ETS and SeasonalNaive each
    /// forecast the horizon (1-6 h) from six origins over the last day, and the one whose
    /// upper quantile band has the lowest pinball loss wins. ETS while the history holds less
    /// than two cycles of a seasonal period.
    #[default]
    Auto,
    /// MSTL decomposition (daily/weekly seasonality) with an AutoETS trend.
    #[serde(rename = "MSTL")]
    Mstl,
    /// Exponential smoothing without seasonality.
    #[serde(rename = "ETS")]
    Ets,
    /// The value one season ago.
    SeasonalNaive,
}

/// Forecast settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastSpec {
    /// `Auto` (the default), `MSTL`, `ETS` or `SeasonalNaive`. `Auto` chooses per series
    /// every 6 hours: each candidate forecasts the horizon (1-6 h) from six origins over the
    /// last day, and the one whose upper quantile band has the lowest pinball loss wins; ETS
    /// while the history holds less than two cycles of a seasonal period.
    #[serde(default)]
    pub model: ModelKind,

    /// Seasonal periods such as `[1d, 7d]`. Empty: daily, and weekly too, whenever the history
    /// holds two full cycles of them.
    #[serde(default)]
    #[schemars(
        length(max = 4),
        inner(
            regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
            length(max = 32)
        )
    )]
    pub seasonal_periods: Vec<String>,

    /// How far ahead to forecast, e.g. `2h`. Must be longer than `scaleUp.leadTime`, and at
    /// most 20,000 steps of `history.step`.
    #[serde(default = "default_horizon")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub horizon: String,

    /// How often to refit the model; evaluations in between reuse the fitted forecast. At
    /// least `1m`: a refit reads a `groupBy` metric's series over the whole lookback again and
    /// fits every series.
    #[serde(default = "default_refresh_interval")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub refresh_interval: String,

    /// The operating point: size replicas for this quantile of the load over the lead window
    /// (strictly between 0 and 1), learnt from the same time of day over the last week. Unset,
    /// the quantile is chosen at every fit so that the plan costs about 1.15 times the
    /// replica-steps a reactive autoscaler at the same target would spend: a budget that
    /// means the same on smooth and on bursty traffic. Higher buys fewer shortfalls for more
    /// replicas; `prescale simulate --frontier` shows the trade on your own traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 1.0").message("quantile must be between 0 and 1, exclusive"))]
    pub quantile: Option<f64>,
}

impl Default for ForecastSpec {
    fn default() -> Self {
        Self {
            model: ModelKind::Auto,
            seasonal_periods: Vec::new(),
            horizon: default_horizon(),
            refresh_interval: default_refresh_interval(),
            quantile: None,
        }
    }
}

/// Scale-up behaviour.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUpSpec {
    /// How long a new replica takes to become useful (image pull, warm-up), e.g. `5m`, or
    /// `Auto`. Capacity for the forecast is in place this long before it is needed. `Auto`
    /// learns it: after each scale-up prescale measures how long the target took to have that
    /// many ready replicas (`status.readyReplicas` of the workload), keeps the last 20
    /// measurements in `status.leadTime`, and plans with their 90th percentile, bounded to
    /// 1m..30m (and below `forecast.horizon`); until the first measurement it plans with 5m.
    #[serde(default = "default_lead_time")]
    #[schemars(
        regex(pattern = r"^(Auto|[0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub lead_time: String,

    /// The most replicas added per minute; 0 means unlimited.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self >= 0").message("maxReplicasPerMinute must be 0 or more"))]
    pub max_replicas_per_minute: i32,
}

impl Default for ScaleUpSpec {
    fn default() -> Self {
        Self {
            lead_time: default_lead_time(),
            max_replicas_per_minute: 0,
        }
    }
}

/// Scale-down behaviour.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownSpec {
    /// Scale down only to the highest count wanted by any evaluation in this window. The
    /// first evaluation (a new scaler, a restarted operator, a new target) counts the current
    /// replicas as wanted, so nothing goes down before a full window; a window no longer than
    /// the operator's sync interval holds only that first evaluation. Default `15m`; `0s`
    /// scales down at once.
    #[serde(default = "default_stabilization_window")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub stabilization_window: String,

    /// The largest share of the current replicas removed per minute, in percent; 0 means
    /// unlimited.
    #[serde(default = "default_max_percent_per_minute")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("maxPercentPerMinute must be between 0 and 100"))]
    pub max_percent_per_minute: i32,

    /// Drain-aware scale-in: before lowering the replicas of a Deployment or ReplicaSet,
    /// prescale reads each pod's in-flight requests or active streams (`podQuery`) and gives
    /// the idlest pods, those that go, the lowest `controller.kubernetes.io/pod-deletion-cost`
    /// (the bottom of the int32 range; the other pods are not written), so the ReplicaSet
    /// removes them and the long streams of the busy ones are not cut; then it lowers the
    /// count (in steps when more than 250 pods need a write). A pod the query has no value for
    /// counts as busy as the busiest. When the values cannot be read (the query fails or
    /// matches no pod, the pods cannot be listed or annotated) the scale-down waits up to
    /// `maxWait` (`AbleToScale=False`, `DrainAwareUnavailable`), then goes ahead without the
    /// costs (a Warning event `DrainAwareSkipped`). `Active` mode only; needs the chart's
    /// `drainAware.enabled` (pods list, patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_aware: Option<DrainAwareSpec>,
}

/// Where drain-aware scale-in reads each pod's in-flight work.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.podQuery) && size(self.podQuery) > 0").message("scaleDown.drainAware needs podQuery: a PromQL query returning one series per pod, e.g. sum by (pod) (proxy_inflight_requests{namespace=\"ai-gateway\"})"))]
pub struct DrainAwareSpec {
    /// The Prometheus source to query, as for a metric (configured by the cluster admin; never
    /// a URL). Default `default`.
    #[serde(default = "default_source")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub source: String,

    /// A PromQL expression returning one series per pod, labelled with the pod's name
    /// (`podLabel`), whose value is the pod's in-flight requests or active streams now, e.g.
    /// `sum by (pod) (proxy_inflight_requests{namespace="ai-gateway"})`. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub pod_query: Option<String>,

    /// The label of `podQuery`'s series that holds the pod name. Default `pod`.
    #[serde(default = "default_pod_label")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    )]
    pub pod_label: String,

    /// How long a scale-down waits for readable per-pod values (from the first failed read)
    /// before it goes ahead without deletion costs, e.g. `5m` (the default); `0s` never
    /// waits.
    #[serde(default = "default_drain_max_wait")]
    #[schemars(
        regex(pattern = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"),
        length(max = 32)
    )]
    pub max_wait: String,
}

impl Default for ScaleDownSpec {
    fn default() -> Self {
        Self {
            stabilization_window: default_stabilization_window(),
            max_percent_per_minute: default_max_percent_per_minute(),
            drain_aware: None,
        }
    }
}

/// What prescale observed and decided.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictiveScalerStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The target's replica count as last read from its `/scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,

    /// The replica count prescale wants now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,

    /// When prescale last changed the target's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,

    /// The forecast behind the current decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastStatus>,

    /// The scheduled windows active now, and the next to start (with `spec.schedules` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<SchedulesStatus>,

    /// How prescale applies its count: `Scale` (the target's `/scale`), or `HPAFloor` /
    /// `KEDAFloor` (the floor, `spec.minReplicas` / `spec.minReplicaCount`, of the
    /// HorizontalPodAutoscaler or KEDA ScaledObject that `scaleTargetRef` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mode: Option<String>,

    /// The HorizontalPodAutoscaler or ScaledObject whose floor prescale may have raised and
    /// not yet put back. When `scaleTargetRef` is changed to another object, prescale restores
    /// this one's original floor (and keeps it here until that succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_target: Option<ScaleTargetRef>,

    /// The lead time planned with, with `scaleUp.leadTime: Auto` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time: Option<LeadTimeStatus>,

    /// Each metric with `concurrency` at the last evaluation: the request duration it was
    /// sized with and the concurrent requests it forecasts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrency: Vec<ConcurrencyStatus>,

    /// `Ready`, `ForecastAvailable`, `AbleToScale` and `ScalingLimited`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// A summary of the forecast in use.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastStatus {
    /// The metric whose forecast drives the decision.
    pub metric: String,
    /// The model that produced it, e.g. `MSTL(1d,7d)+AutoETS`.
    pub model: String,
    /// When the model was fitted.
    pub generated_at: Time,
    /// The highest upper-quantile value of the forecast made at `generatedAt`, over its
    /// horizon. It changes at a refit, not as time passes (so the status is not rewritten every
    /// minute); it can lie before now when the load was falling at the fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<ForecastPeak>,
    /// The model's recent forecast error, as a fraction (0.1 = 10%): its point forecasts of the
    /// last two hours, made from two origins two hours and one hour back (each an hour ahead,
    /// or the horizon if shorter), as the summed absolute error over the summed load (the
    /// weighted absolute percentage error, WAPE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtest_error: Option<String>,
    /// For a metric with `groupBy`: how many series were forecast bottom-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<i32>,
    /// For a metric with `groupBy`: the largest series at the peak (at most five), largest
    /// first, each with its upper-quantile forecast there and its share of the sum of all
    /// series' forecasts there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_contributors: Vec<Contributor>,
}

/// One series of a `groupBy` metric and its part of the forecast peak.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contributor {
    /// Its label set, e.g. `model=gpt-4o`.
    pub labels: String,
    /// Its upper-quantile forecast at the peak, in the metric's units.
    pub value: String,
    /// Its share of the sum of all series' forecasts at the peak, e.g. `0.42`.
    pub share: String,
}

/// A concurrency metric at the last evaluation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyStatus {
    /// The metric's name.
    pub metric: String,
    /// The request duration sized with, e.g. `27.5s`: the newest value of
    /// `concurrency.durationQuery` of the last hour. Absent when there is none (see
    /// `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The forecast peak in concurrent requests: the upper-quantile arrival rate at the peak
    /// times `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_streams: Option<String>,
    /// The replicas this metric asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Why the metric has no duration or forecast, when it has none: it holds the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The learned lead time of `scaleUp.leadTime: Auto`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadTimeStatus {
    /// The lead time planned with, e.g. `3m20s`: the 90th percentile of `samples` bounded to
    /// 1m..30m (and below `forecast.horizon`), or the default 5m without samples.
    pub current: String,
    /// `Learned` (from `samples`) or `Default` (no scale-up measured yet).
    pub source: String,
    /// How long the recent scale-ups took until the target had that many ready replicas,
    /// oldest first, at most 20, unbounded. A scale-up not ready within the upper bound is not
    /// one of them (see `timedOut`). Kept across restarts of the operator.
    #[serde(default)]
    pub samples: Vec<String>,
    /// The scale-ups still waiting for their replicas to be ready, oldest first: kept across
    /// restarts of the operator, which measures them from their write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingScaleUp>,
    /// How many of the latest scale-ups in a row were not ready within the upper bound (the
    /// pods never became ready, or start slower than the bound). They are not start-up times,
    /// so they do not move `current`; a measured scale-up resets the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<i32>,
    /// Why nothing is measured (the target reports no `status.readyReplicas`), or what the
    /// timed-out scale-ups mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A scale-up waiting for its replicas to be ready.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingScaleUp {
    /// When prescale wrote it.
    pub since: Time,
    /// The replica count it asked for.
    pub replicas: i32,
}

/// The scheduled windows at the last evaluation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulesStatus {
    /// The names of the windows active now, in the spec's order.
    #[serde(default)]
    pub active: Vec<String>,
    /// The window that starts next, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextSchedule>,
}

/// The window that starts next.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextSchedule {
    /// Its name.
    pub name: String,
    /// When it starts.
    pub start: Time,
}

/// The forecast peak.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForecastPeak {
    /// When the peak is expected.
    pub at: Time,
    /// The upper-quantile load at the peak, in the metric's units.
    pub value: String,
    /// The replicas that load needs.
    pub replicas: i32,
}

fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    serde_json::from_value(serde_json::json!({
        "description": "`Ready`, `ForecastAvailable`, `AbleToScale` and `ScalingLimited`.",
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "properties": {
                "lastTransitionTime": { "format": "date-time", "type": "string" },
                "message": { "type": "string" },
                "observedGeneration": { "type": "integer", "format": "int64" },
                "reason": { "type": "string" },
                "status": { "type": "string" },
                "type": { "type": "string" }
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        }
    }))
    .expect("static schema is valid")
}

fn default_min_replicas() -> i32 {
    1
}
fn default_source() -> String {
    "default".into()
}
fn default_lookback() -> String {
    "14d".into()
}
fn default_step() -> String {
    "1m".into()
}
fn default_horizon() -> String {
    "2h".into()
}
fn default_refresh_interval() -> String {
    "10m".into()
}
fn default_lead_time() -> String {
    "5m".into()
}
fn default_hold_window() -> String {
    "5m".into()
}
fn default_stabilization_window() -> String {
    "15m".into()
}
fn default_max_percent_per_minute() -> i32 {
    10
}
fn default_pod_label() -> String {
    "pod".into()
}
fn default_drain_max_wait() -> String {
    "5m".into()
}
