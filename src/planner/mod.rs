//! The pure core: forecasts and observations in, a replica count and its reasons out.
//!
//! Nothing here does IO or reads a clock: `now` is an argument. The reconciler and
//! `prescale simulate` call exactly this code, so a simulated plan is the plan the controller
//! would have made. [`series`] is the data shape, [`forecast`] the model fit and `Auto`'s
//! selection, [`margin`] the calibrated lead-window margin replicas are sized with, [`choice`]
//! when `Auto` chooses, [`model`] which model to fit and which one a forecast came from,
//! [`schedule`] which scheduled overrides are active, [`guard`] what a guard's health does,
//! [`lead_time`] the learned lead time of `scaleUp.leadTime: Auto`, [`concurrency`] Little's law
//! sizing of a metric with `concurrency`, [`group`] the bottom-up forecast of a metric with
//! `groupBy` (one forecast per series, combined), [`upstream`] the ceiling of the provider's
//! quota; this file is the decision
//! ([`plan`]). Nor does it know the CRD: the planner has its own types ([`Policy`],
//! [`ModelKind`], [`Fallback`], [`FittedModel`], [`Limit`], [`NoForecast`]); `crate::api`
//! reads a spec into them and maps the planner's outcomes to condition reasons.
//!
//! [`plan`] decides in the steps the HPA's controller takes, each a function of its own that
//! returns its count and, where it limited the count, its [`Limit`] and message:
//! 1. `metric_need`: per metric, the replicas its forecast and its latest observation ask for;
//! 2. `highest_need`: the most any metric asks for (a metric that cannot say holds the count);
//! 3. `clamp_to_bounds`: into `[minReplicas, maxReplicas]`;
//!    then `upstream::apply`: capped at what the upstream quotas admit, never below
//!    `minReplicas` ([`upstream`]);
//! 4. `apply_schedules`: raised to the highest floor of the active schedules, lowered to their
//!    lowest ceiling (both within the bounds);
//! 5. `guard::apply`: a breached guard raises the count over the current one, a failing or
//!    recently breached one keeps it from going down ([`guard`]);
//! 6. `stabilize`: a scale-down only to the highest recommendation of the window;
//! 7. `rate_limit`: scale-up and scale-down budgets over the last minute;
//! 8. `enforce_bounds`: a count already outside the bounds is brought inside at once.
//!
//! The last step that limited the count names the decision's [`Limit`].

pub mod choice;
pub mod concurrency;
pub mod drain;
pub mod forecast;
pub mod group;
pub mod guard;
pub mod lead_time;
pub mod margin;
pub mod model;
pub mod schedule;
pub mod series;
pub mod upstream;

use std::time::Duration;

pub use forecast::{
    DEFAULT_BAND_QUANTILE, Forecast, ForecastError, ForecastSettings, Point, SELECTION_INTERVAL,
    Score, Selection, fit_forecast, select_model,
};
pub use guard::{Direction, Guard, GuardDecision, GuardFailure, GuardInput, GuardState, GuardStep};
pub use lead_time::{LeadTimeLearner, LeadTimeSource};
pub use margin::Sizing;
pub use model::{FittedModel, ModelKind};
pub use schedule::{Schedule, Schedules};
pub use series::Series;
pub use upstream::{MetricUnit, Quota, QuotaDecision, QuotaFailure, QuotaReading};

/// What to do for a metric without a forecast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fallback {
    /// Size for the latest observed load, like a reactive autoscaler.
    #[default]
    Reactive,
    /// Keep the current replica count (or more, if the observed load needs it).
    Hold,
}

/// Scaling rules from the spec, in numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// How long a new replica takes to be useful.
    pub lead_time: Duration,
    /// How often decisions are made; capacity must last until the next one.
    pub interval: Duration,
    /// Replicas added per minute at most; 0 = unlimited.
    pub max_replicas_per_minute: u32,
    pub stabilization_window: Duration,
    /// Share of replicas removed per minute at most, percent; 0 = unlimited.
    pub max_percent_per_minute: u32,
    pub fallback: Fallback,
    /// With [`Fallback::Reactive`], the headroom a metric without a forecast is sized with:
    /// its latest load times this (at least 1; [`margin::fallback_headroom`]).
    pub fallback_headroom: f64,
    /// Scheduled overrides of the bounds (`spec.schedules`), in the spec's order.
    pub schedules: Vec<Schedule>,
    /// The upstream quotas (`spec.upstream.limits`), in the spec's order.
    pub upstream: Vec<Quota>,
}

/// Why a metric has no usable forecast. Each maps to a `ForecastAvailable` condition reason
/// (`crate::api::conditions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoForecast {
    /// The series has no samples.
    Empty,
    /// Too little history (or too many gaps) for the model.
    InsufficientHistory,
    /// The model could not be fitted.
    ModelFitFailed,
    /// The forecast ends before the lead window does.
    StaleForecast,
    /// The metric could not be read, or is too old to act on: the condition reason the edge
    /// that reads metrics gave. The planner passes it through.
    Metric(&'static str),
    /// A concurrency metric without a usable request duration ([`concurrency::read_duration`]).
    DurationUnavailable,
}

/// Why a metric has no usable forecast, and a message for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    pub cause: NoForecast,
    pub message: String,
}

impl Unavailable {
    pub fn new(cause: NoForecast, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
        }
    }

    /// Why a fit failed.
    pub fn from_forecast_error(e: &ForecastError) -> Self {
        let cause = match e {
            ForecastError::Empty => NoForecast::Empty,
            ForecastError::InsufficientHistory { .. } | ForecastError::TooManyGaps { .. } => {
                NoForecast::InsufficientHistory
            }
            ForecastError::ModelFit(_) => NoForecast::ModelFitFailed,
        };
        Self::new(cause, e.to_string())
    }
}

/// What the planner knows about one metric at `now`.
#[derive(Debug, Clone)]
pub struct MetricInput<'a> {
    pub name: &'a str,
    pub target_per_replica: f64,
    /// The latest observed load, if recent enough to trust.
    pub observed: Option<f64>,
    /// The forecast, or why there is none.
    pub forecast: Result<&'a Forecast, Unavailable>,
    /// Concurrency sizing ([`concurrency`]): the mean request duration, in the time unit of
    /// the metric's rate. Every value of the metric is then sized as the concurrent requests
    /// `value x duration`, and `target_per_replica` is in those. `None`: the value itself.
    pub duration: Option<f64>,
}

/// A raw recommendation, remembered for scale-down stabilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub at: i64,
    pub replicas: u32,
}

/// A change the planner made, remembered for the rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    pub at: i64,
    pub from: u32,
    pub to: u32,
}

/// What the planner remembers between decisions. Pure data: the controller keeps one per
/// scaler, `simulate` one per run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlannerState {
    /// Whether a plan was made with this memory: the first one (a new scaler, a restarted
    /// operator, a new target, or the clock stepped back past the window's memory) is the cold
    /// start of the stabilisation window (step 6 of [`plan`]).
    pub planned: bool,
    pub recommendations: Vec<Recommendation>,
    pub events: Vec<ScaleEvent>,
    /// When each guard was last breached, for its hold window.
    pub guard_breaches: guard::Breaches,
}

impl PlannerState {
    /// Keeps what the windows still need. Entries from the future (the clock stepped back) are
    /// dropped: kept, they would hold scale-downs and spend rate budgets for the size of the jump.
    /// The window's memory is then lost, so the next plan is a cold start again.
    fn prune(&mut self, now: i64, policy: &Policy) {
        let window = policy.stabilization_window.as_secs() as i64;
        if self.recommendations.iter().any(|r| r.at > now) {
            self.planned = false;
        }
        self.recommendations
            .retain(|r| r.at > now - window && r.at <= now);
        self.events.retain(|e| e.at > now - 60 && e.at <= now);
    }
}

/// The highest upper-quantile load of a forecast, and the replicas it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Unix second of the peak.
    pub at: i64,
    /// The upper-quantile load there.
    pub value: f64,
    pub replicas: u32,
}

/// One metric's contribution to a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDecision {
    pub name: String,
    /// Replicas this metric asks for (`None`: it cannot say, so the count is held).
    pub replicas: Option<u32>,
    /// Replicas the forecast asks for over the lead window.
    pub forecast_replicas: Option<u32>,
    /// Replicas the latest observation asks for.
    pub reactive_replicas: Option<u32>,
    /// The forecast's peak over its horizon from the fit ([`Forecast::peak`]): the same until
    /// the next refit, so status does not change as time passes.
    pub peak: Option<Peak>,
    pub unavailable: Option<Unavailable>,
    /// The request duration a concurrency metric was sized with ([`MetricInput::duration`]).
    pub duration: Option<f64>,
}

/// What limited the desired count. Each maps to a `ScalingLimited` condition reason
/// (`crate::api::conditions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Nothing: the desired count is within range.
    WithinRange,
    /// Raised to `minReplicas`.
    TooFewReplicas,
    /// Lowered to `maxReplicas`.
    TooManyReplicas,
    /// Held back by `maxReplicasPerMinute`.
    ScaleUpLimit,
    /// Held back by `maxPercentPerMinute`.
    ScaleDownLimit,
    /// Raised to an active schedule's `minReplicas`.
    ScheduledMinimum,
    /// Lowered to an active schedule's `maxReplicas`.
    ScheduledMaximum,
    /// Raised by a breached guard, or a scale-down held after a breach.
    GuardBreached,
    /// A guard could not be read: no scale-down.
    GuardUnavailable,
    /// Capped at what the upstream quota admits.
    UpstreamLimited,
    /// An upstream limit's query failed: its static limit (never below the current count), or
    /// none.
    UpstreamUnavailable,
}

/// A [`Limit`] with its message, as a step of [`plan`] returns it.
#[derive(Debug, Clone, PartialEq)]
struct Limited {
    limit: Limit,
    message: String,
}

impl Limited {
    fn new(limit: Limit, message: String) -> Self {
        Self { limit, message }
    }

    /// A step's own limit (a guard's, a quota's) as the condition's reason, with its message.
    fn of(step: (impl Into<Limit>, String)) -> Self {
        Self::new(step.0.into(), step.1)
    }
}

impl From<guard::GuardLimit> for Limit {
    fn from(l: guard::GuardLimit) -> Self {
        match l {
            guard::GuardLimit::Breached => Limit::GuardBreached,
            guard::GuardLimit::Unavailable => Limit::GuardUnavailable,
        }
    }
}

impl From<upstream::UpstreamLimit> for Limit {
    fn from(l: upstream::UpstreamLimit) -> Self {
        match l {
            upstream::UpstreamLimit::Limited => Limit::UpstreamLimited,
            upstream::UpstreamLimit::Unavailable => Limit::UpstreamUnavailable,
        }
    }
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to set now.
    pub desired: u32,
    /// Before stabilisation and rate limits (clamped to min/max, and to the active schedules).
    pub recommended: u32,
    /// The metric that asked for the most replicas.
    pub driving_metric: Option<String>,
    pub metrics: Vec<MetricDecision>,
    /// What limited `desired` (the `ScalingLimited` reason), and the message.
    pub limit: Limit,
    pub limit_message: String,
    /// True when a scale-down was held back by the stabilisation window.
    pub stabilized: bool,
    /// The schedules at `now`: the active ones and the next to start.
    pub schedules: Schedules,
    /// Each guard's value and state, in the spec's order.
    pub guards: Vec<GuardDecision>,
    /// Each upstream limit in force and what it admits, in the spec's order.
    pub upstream: Vec<QuotaDecision>,
    /// The count the upstream limits allow now (`None`: no limit in force; see
    /// [`upstream::Ceiling`]).
    pub upstream_ceiling: Option<u32>,
    /// True when the upstream ceiling lowered the recommendation.
    pub upstream_limited: bool,
}

impl Decision {
    pub fn is_limited(&self) -> bool {
        self.limit != Limit::WithinRange
    }
}

/// Replicas that carry `load` at `target_per_replica` each (saturating at `u32::MAX`).
pub(crate) fn replicas_for(load: f64, target_per_replica: f64) -> u32 {
    let r = (load.max(0.0) / target_per_replica).ceil();
    if r >= u32::MAX as f64 {
        u32::MAX
    } else {
        r as u32
    }
}

/// Decides the replica count at unix second `now` and records it in `state`.
///
/// For each metric: the forecast need is the highest upper-quantile value in
/// `[now, now + leadTime + interval]`; the reactive floor is the latest observed value; the
/// metric asks for the larger. A metric with no forecast asks for its floor (`Reactive`) or
/// the current count (`Hold`); a metric with neither forecast nor observation holds the
/// current count: no data is never read as zero load. The result is the maximum over metrics,
/// clamped to `[minReplicas, maxReplicas]`, raised at once (up to `maxReplicasPerMinute`) and
/// lowered only to the highest recommendation of the stabilisation window (down to
/// `maxPercentPerMinute`). The active schedules raise and cap the clamped count before the
/// window and the rate limits see it. See the module docs for the steps. Without guards:
/// [`plan_with_guards`] has them.
pub fn plan(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    state: &mut PlannerState,
) -> Decision {
    plan_with_guards(now, current, policy, metrics, &[], state)
}

/// [`plan`] with the spec's guards read now: after the schedules, a breached guard raises the
/// recommendation over `current` and a failing or recently breached one holds a scale-down
/// ([`guard::apply`]).
pub fn plan_with_guards(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    guards: &[GuardInput<'_>],
    state: &mut PlannerState,
) -> Decision {
    plan_with_readings(now, current, policy, metrics, guards, &[], state)
}

/// [`plan_with_guards`] with the upstream limits' queries read now (`upstream`; a limit of
/// `policy.upstream` without a reading uses its static `perMinute`).
pub fn plan_with_readings(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    guards: &[GuardInput<'_>],
    upstream: &[QuotaReading],
    state: &mut PlannerState,
) -> Decision {
    let current = Current::of(current);
    plan_from(now, current, policy, metrics, guards, upstream, state)
}

/// Where a plan starts. For a `/scale` target both counts are its replicas; in floor mode
/// prescale sets the autoscaler's floor, and the workload runs what the autoscaler scaled it
/// to, which may be more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// The count prescale sets, as it is now (in floor mode, the floor): the plan starts from
    /// it (the stabilisation window, the rate limits, a `Hold`, the bounds). Starting a floor
    /// from the workload's replicas would hold it at the size the autoscaler scaled to.
    pub set: u32,
    /// The replicas the workload runs: a breached guard steps up from them, and a guard holds
    /// them, which is what it protects.
    pub running: u32,
}

impl Current {
    /// Both counts `n` (a `/scale` target).
    pub fn of(n: u32) -> Self {
        Self { set: n, running: n }
    }
}

/// [`plan_with_readings`] from `current`, whose two counts differ in floor mode ([`Current`]).
pub fn plan_from(
    now: i64,
    current: Current,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    guards: &[GuardInput<'_>],
    upstream: &[QuotaReading],
    state: &mut PlannerState,
) -> Decision {
    let Current {
        set: current,
        running,
    } = current;
    state.prune(now, policy);
    let window_end = now + (policy.lead_time + policy.interval).as_secs() as i64;
    let decisions: Vec<MetricDecision> = metrics
        .iter()
        .map(|m| {
            metric_need(
                m,
                now,
                window_end,
                current,
                policy.fallback,
                policy.fallback_headroom,
            )
        })
        .collect();
    let (raw, driving_metric) = highest_need(&decisions, current);
    let (clamped, bounded) = clamp_to_bounds(raw, policy);
    let ceiling = apply_upstream(clamped, current, policy, metrics, &decisions, upstream);
    let schedules = schedule::at(&policy.schedules, now);
    let (scheduled_count, scheduled) = apply_schedules(ceiling.count, &schedules, policy);
    let guarded = guard::apply(
        now,
        running,
        scheduled_count,
        policy.max_replicas,
        guards,
        &mut state.guard_breaches,
    );
    let recommended = guarded.count;
    let (desired, stabilized) = stabilize(now, current, recommended, policy, state);
    let (desired, rated) = rate_limit(current, desired, recommended, policy, &state.events);
    let (desired, stabilized, enforced) = match enforce_bounds(current, desired, policy) {
        // the bounds override the window (below minReplicas nothing was held back anyway:
        // the recommendation is at least minReplicas)
        Some((desired, limited)) => (desired, false, Some(limited)),
        None => (desired, stabilized, None),
    };
    // the step that acted last names the limit
    let limited = enforced
        .or(rated)
        .or(guarded.limit.map(Limited::of))
        .or(scheduled)
        .or(ceiling.limit.map(Limited::of))
        .or(bounded)
        .unwrap_or_else(|| {
            Limited::new(
                Limit::WithinRange,
                "the desired count is within range".into(),
            )
        });
    Decision {
        desired,
        recommended,
        driving_metric,
        metrics: decisions,
        limit: limited.limit,
        limit_message: limited.message,
        stabilized,
        schedules,
        guards: guarded.guards,
        upstream: ceiling.quotas,
        upstream_ceiling: ceiling.ceiling,
        upstream_limited: ceiling.limited,
    }
}

/// Step 3, second half: the upstream quotas' ceiling on the bounded count ([`upstream`]).
/// Why here: a quota limits what the load can be, so it caps what the metrics ask for, like
/// `maxReplicas`, and never below `minReplicas`; an active schedule's floor, a breached guard,
/// the stabilisation window and the rate limits come after it and still win.
fn apply_upstream(
    count: u32,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    decisions: &[MetricDecision],
    readings: &[QuotaReading],
) -> upstream::Ceiling {
    let asked: Vec<upstream::Asked<'_>> = metrics
        .iter()
        .zip(decisions)
        .map(|(m, d)| upstream::Asked {
            name: m.name,
            // a quota counts arrivals: with concurrency sizing, the arrival rate one replica
            // carries at the metric's duration
            target_per_replica: match m.duration {
                Some(duration) => concurrency::rate_per_replica(m.target_per_replica, duration),
                None => m.target_per_replica,
            },
            replicas: d.replicas,
        })
        .collect();
    upstream::apply(
        count,
        current,
        policy.min_replicas,
        &asked,
        &policy.upstream,
        readings,
    )
}

/// Step 1: what one metric asks for. With a forecast that covers the lead window
/// (`[now, window_end]`), its need over that window (sized with the calibrated margin on the
/// latest load when there is one, else the model's band), and at least the reactive floor;
/// without one, the floor (`Reactive`) or the floor and at least `current` (`Hold`); with
/// neither, nothing (`replicas: None`).
fn metric_need(
    m: &MetricInput<'_>,
    now: i64,
    window_end: i64,
    current: u32,
    fallback: Fallback,
    fallback_headroom: f64,
) -> MetricDecision {
    if let Some(d) = m.duration.filter(|d| !(d.is_finite() && *d > 0.0)) {
        // the edge reads only positive durations; any other is no data, never zero load
        return MetricDecision {
            name: m.name.to_string(),
            replicas: None,
            forecast_replicas: None,
            reactive_replicas: None,
            peak: None,
            unavailable: Some(Unavailable::new(
                NoForecast::DurationUnavailable,
                concurrency::DurationProblem::NotPositive(d).to_string(),
            )),
            duration: None,
        };
    }
    let observed = m.observed.filter(|v| v.is_finite());
    // the one place a metric's values become the load replicas carry (Little's law with a
    // duration)
    let replicas_of =
        |value: f64| replicas_for(concurrency::load(value, m.duration), m.target_per_replica);
    let reactive = observed.map(replicas_of);
    let (forecast_replicas, peak, unavailable) = match &m.forecast {
        Ok(fc) => match fc.max_upper_in(now, window_end) {
            Some(window_max) => {
                let peak = fc.peak().map(|p| Peak {
                    at: p.at,
                    value: p.value,
                    replicas: replicas_of(p.value),
                });
                let sized = match (&fc.margins, observed) {
                    (Some(margins), Some(last)) => margins.sized_load(now, last),
                    _ => window_max.value,
                };
                (Some(replicas_of(sized)), peak, None)
            }
            None => (
                None,
                None,
                Some(Unavailable::new(
                    NoForecast::StaleForecast,
                    "the forecast does not reach the end of the lead window; waiting for a refit",
                )),
            ),
        },
        Err(u) => (None, None, Some(u.clone())),
    };
    let replicas = match (forecast_replicas, reactive) {
        (Some(f), r) => Some(f.max(r.unwrap_or(0))),
        (None, Some(r)) if fallback == Fallback::Reactive => {
            let headroom = fallback_headroom.max(1.0);
            Some(observed.map_or(r, |v| replicas_of(v * headroom)).max(r))
        }
        (None, Some(r)) => Some(r.max(current)),
        (None, None) => None,
    };
    MetricDecision {
        name: m.name.to_string(),
        replicas,
        forecast_replicas,
        reactive_replicas: reactive,
        peak,
        unavailable,
        duration: m.duration,
    }
}

/// Step 2: the most replicas any metric asks for, and that metric; a metric that cannot say
/// counts as `current`, and with no metrics the count is `current`.
fn highest_need(decisions: &[MetricDecision], current: u32) -> (u32, Option<String>) {
    decisions
        .iter()
        .map(|d| (d.replicas.unwrap_or(current), Some(d.name.clone())))
        .max_by_key(|(r, _)| *r)
        .unwrap_or((current, None))
}

/// Step 3: `raw` clamped to `[minReplicas, maxReplicas]`, and the limit when it was clamped.
fn clamp_to_bounds(raw: u32, policy: &Policy) -> (u32, Option<Limited>) {
    if raw < policy.min_replicas {
        let message = format!(
            "the desired count {raw} is below minReplicas {}",
            policy.min_replicas
        );
        (
            policy.min_replicas,
            Some(Limited::new(Limit::TooFewReplicas, message)),
        )
    } else if raw > policy.max_replicas {
        let message = format!(
            "the desired count {raw} is above maxReplicas {}",
            policy.max_replicas
        );
        (
            policy.max_replicas,
            Some(Limited::new(Limit::TooManyReplicas, message)),
        )
    } else {
        (raw, None)
    }
}

/// Step 4: the active schedules. `count` is raised to their highest `minReplicas` and then
/// lowered to their lowest `maxReplicas` (a ceiling wins over a floor of another schedule),
/// each first brought within `[minReplicas, maxReplicas]`: the spec's bounds stay hard.
///
/// Why here, after the bounds and before the stabilisation window and the rate limits: a
/// schedule changes what is *recommended*, as the HPA's `minReplicas` does, and the
/// recommendation is what the window remembers. So when a floor ends (or a ceiling starts),
/// the count falls only as the stabilisation window and `maxPercentPerMinute` allow, like any
/// other drop in load; and a floor's start is a scale-up within `maxReplicasPerMinute` (start
/// a window earlier by the time that takes, plus `leadTime`, to have the replicas ready at the
/// time it names). Only the spec's own bounds are hard limits (`enforce_bounds`).
fn apply_schedules(count: u32, schedules: &Schedules, policy: &Policy) -> (u32, Option<Limited>) {
    let within = |n: u32| n.clamp(policy.min_replicas, policy.max_replicas);
    let mut out = (count, None);
    if let Some((floor, name)) = schedules.floor().map(|(f, n)| (within(f), n))
        && floor > out.0
    {
        let message = format!(
            "the desired count {count} is raised to {floor} by schedule {name} (minReplicas)"
        );
        out = (floor, Some(Limited::new(Limit::ScheduledMinimum, message)));
    }
    if let Some((ceiling, name)) = schedules.ceiling().map(|(c, n)| (within(c), n))
        && ceiling < out.0
    {
        let message = format!(
            "the desired count {} is capped at {ceiling} by schedule {name} (maxReplicas)",
            out.0
        );
        out = (
            ceiling,
            Some(Limited::new(Limit::ScheduledMaximum, message)),
        );
    }
    out
}

/// Step 6: scale-down stabilisation. Records `recommended` in `state` and returns the count
/// to go to: up at once, down only to the highest recommendation of the window (never above
/// `current`), and whether that held a scale-down back.
fn stabilize(
    now: i64,
    current: u32,
    recommended: u32,
    policy: &Policy,
    state: &mut PlannerState,
) -> (u32, bool) {
    let cold_start = !std::mem::replace(&mut state.planned, true);
    let target = if policy.stabilization_window.is_zero() {
        recommended
    } else {
        if cold_start {
            // the first plan of this memory (new scaler, restarted operator, new target)
            // counts the current size as recommended now, as the HPA does, so it cannot drop
            // before a full window. Only the first: a window no longer than the sync interval
            // is empty at every evaluation, and taking that for a cold start held the count
            // for ever
            state.recommendations.push(Recommendation {
                at: now,
                replicas: current,
            });
        }
        state.recommendations.push(Recommendation {
            at: now,
            replicas: recommended,
        });
        state
            .recommendations
            .iter()
            .map(|r| r.replicas)
            .max()
            .unwrap_or(recommended)
    };
    if recommended >= current {
        (recommended, false)
    } else {
        (target.min(current), target > recommended)
    }
}

/// Step 7: the rate limits over the last minute's `events` (HPA style: relative to the count
/// a minute ago). At most `maxReplicasPerMinute` added; at most `maxPercentPerMinute` of the
/// count a minute ago removed, and at least one replica a minute, or small targets could
/// never scale down. Returns the count and the limit when one applied.
fn rate_limit(
    current: u32,
    desired: u32,
    recommended: u32,
    policy: &Policy,
    events: &[ScaleEvent],
) -> (u32, Option<Limited>) {
    if desired > current && policy.max_replicas_per_minute > 0 {
        let added: u32 = events
            .iter()
            .filter(|e| e.to > e.from)
            .map(|e| e.to - e.from)
            .sum();
        let allowed = policy.max_replicas_per_minute.saturating_sub(added);
        if desired > current + allowed {
            let message = format!(
                "scale-up limited to {} replicas per minute (wanted {recommended})",
                policy.max_replicas_per_minute
            );
            return (
                current + allowed,
                Some(Limited::new(Limit::ScaleUpLimit, message)),
            );
        }
    }
    if desired < current && policy.max_percent_per_minute > 0 {
        let removed: u32 = events
            .iter()
            .filter(|e| e.to < e.from)
            .map(|e| e.from - e.to)
            .sum();
        let period_start = current + removed;
        let budget =
            ((period_start as u64 * policy.max_percent_per_minute as u64) / 100).max(1) as u32;
        let allowed = budget.saturating_sub(removed);
        if current - desired > allowed {
            let message = format!(
                "scale-down limited to {}% per minute (wanted {recommended})",
                policy.max_percent_per_minute
            );
            return (
                current - allowed,
                Some(Limited::new(Limit::ScaleDownLimit, message)),
            );
        }
    }
    (desired, None)
}

/// Step 8: a `current` count outside `[minReplicas, maxReplicas]` (the bounds were just
/// edited, or someone scaled by hand) is brought inside at once, as the HPA does: the bounds
/// are hard limits, not subject to the stabilisation window or the rate limits. `None` when
/// `desired` stands.
fn enforce_bounds(current: u32, desired: u32, policy: &Policy) -> Option<(u32, Limited)> {
    if current > policy.max_replicas {
        let message = format!(
            "the current count {current} is above maxReplicas {}",
            policy.max_replicas
        );
        Some((
            policy.max_replicas,
            Limited::new(Limit::TooManyReplicas, message),
        ))
    } else if current < policy.min_replicas && desired < policy.min_replicas {
        let message = format!(
            "the current count {current} is below minReplicas {}",
            policy.min_replicas
        );
        Some((
            policy.min_replicas,
            Limited::new(Limit::TooFewReplicas, message),
        ))
    } else {
        None
    }
}

/// Records that the target went from `from` to `to` at `now`: call it after a write succeeded,
/// never for a decision that was not written (a DryRun, a failed or gated write), so the rate
/// limits count only real scale operations.
pub fn record_scale(state: &mut PlannerState, now: i64, from: u32, to: u32) {
    if from != to {
        state.events.push(ScaleEvent { at: now, from, to });
    }
}

/// What `mode: DryRun` plans with: the count it would have set by now (the target itself is
/// not written, so its count stays) and planner memory of its own, so its decisions follow the
/// trajectory `Active` would and switching to `Active` starts with nothing spent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DryRunState {
    shadow: Option<Shadow>,
    pub planner: PlannerState,
}

/// The count DryRun would have set, and the target's real count when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shadow {
    would_set: u32,
    real: u32,
}

/// [`plan`] for `mode: DryRun`: plans from the count it would have set (while the target's real
/// count stays `current`; a change of that by someone else restarts the shadow from it), and
/// records its own decision as if written.
pub fn plan_dry_run(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    guards: &[GuardInput<'_>],
    upstream: &[QuotaReading],
    state: &mut DryRunState,
) -> Decision {
    let shadow = match state.shadow {
        Some(s) if s.real == current => s.would_set,
        _ => {
            state.planner = PlannerState::default();
            current
        }
    };
    let decision = plan_with_readings(
        now,
        shadow,
        policy,
        metrics,
        guards,
        upstream,
        &mut state.planner,
    );
    record_scale(&mut state.planner, now, shadow, decision.desired);
    state.shadow = Some(Shadow {
        would_set: decision.desired,
        real: current,
    });
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_replicas: 2,
            max_replicas: 20,
            lead_time: Duration::from_secs(300),
            interval: Duration::from_secs(60),
            max_replicas_per_minute: 4,
            stabilization_window: Duration::from_secs(300),
            max_percent_per_minute: 10,
            fallback: Fallback::Reactive,
            fallback_headroom: 1.0,
            schedules: Vec::new(),
            upstream: Vec::new(),
        }
    }

    #[test]
    fn clamping_names_the_bound() {
        let p = policy();
        assert_eq!(clamp_to_bounds(7, &p), (7, None));
        let (r, l) = clamp_to_bounds(1, &p);
        assert_eq!((r, l.map(|l| l.limit)), (2, Some(Limit::TooFewReplicas)));
        let (r, l) = clamp_to_bounds(25, &p);
        assert_eq!((r, l.map(|l| l.limit)), (20, Some(Limit::TooManyReplicas)));
    }

    #[test]
    fn stabilisation_holds_a_scale_down_to_the_window_and_never_a_scale_up() {
        let p = policy();
        let mut state = PlannerState::default();
        // a cold start counts the current size as recommended now
        assert_eq!(stabilize(0, 10, 4, &p, &mut state), (10, true));
        assert_eq!(stabilize(60, 10, 12, &p, &mut state), (12, false));
        let mut state = PlannerState::default();
        let zero = Policy {
            stabilization_window: Duration::ZERO,
            ..p
        };
        assert_eq!(stabilize(0, 10, 4, &zero, &mut state), (4, false));
        assert!(state.recommendations.is_empty());
    }

    /// Plans every `sync` seconds from `current` for `evaluations` evaluations with a need of
    /// 3 replicas, scaling as decided; the counts set.
    fn scale_down_with(window: u64, sync: u64, current: u32, evaluations: usize) -> Vec<u32> {
        let p = Policy {
            stabilization_window: Duration::from_secs(window),
            interval: Duration::from_secs(sync),
            max_percent_per_minute: 0,
            ..policy()
        };
        let need = [MetricInput {
            name: "requests",
            target_per_replica: 1.0,
            observed: Some(3.0),
            forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
            duration: None,
        }];
        let mut state = PlannerState::default();
        let mut current = current;
        (0..evaluations)
            .map(|i| {
                let now = 1_000_000 + i as i64 * sync as i64;
                let d = plan(now, current, &p, &need, &mut state);
                record_scale(&mut state, now, current, d.desired);
                current = d.desired;
                current
            })
            .collect()
    }

    #[test]
    fn a_window_shorter_than_the_sync_interval_holds_only_the_cold_start() {
        // 10 s window, 30 s sync: the cold start holds the first evaluation, the second scales
        // down (the window was empty at every evaluation, and each was taken for a cold start)
        assert_eq!(scale_down_with(10, 30, 6, 4), vec![6, 3, 3, 3]);
    }

    #[test]
    fn a_window_equal_to_the_sync_interval_holds_one_evaluation() {
        // the 30 s window of the issue, at a 30 s sync interval: held 6 wanting 3 for ever
        assert_eq!(scale_down_with(30, 30, 6, 4), vec![6, 3, 3, 3]);
        // 45 s: the cold start's 6 is still in the window at the second evaluation
        assert_eq!(scale_down_with(45, 30, 6, 4), vec![6, 6, 3, 3]);
    }

    #[test]
    fn a_sync_interval_of_the_default_window_or_longer_scales_down() {
        // the default 15m window at a 15m and a 20m sync interval
        assert_eq!(scale_down_with(900, 900, 6, 3), vec![6, 3, 3]);
        assert_eq!(scale_down_with(900, 1200, 6, 3), vec![6, 3, 3]);
    }

    #[test]
    fn rate_limits_count_the_last_minute() {
        let p = policy();
        let up = [ScaleEvent {
            at: 0,
            from: 4,
            to: 7,
        }];
        // 3 of 4 added already: one more
        let (r, l) = rate_limit(7, 12, 12, &p, &up);
        assert_eq!((r, l.map(|l| l.limit)), (8, Some(Limit::ScaleUpLimit)));
        // 10% of 10 is one replica a minute; at least one may always go
        let (r, l) = rate_limit(10, 5, 5, &p, &[]);
        assert_eq!((r, l.map(|l| l.limit)), (9, Some(Limit::ScaleDownLimit)));
        let down = [ScaleEvent {
            at: 0,
            from: 10,
            to: 9,
        }];
        let (r, _) = rate_limit(9, 5, 5, &p, &down);
        assert_eq!(r, 9, "the minute's budget is spent");
        assert_eq!(rate_limit(9, 9, 9, &p, &down), (9, None));
    }

    fn fixed(name: &str, start: i64, end: i64, min: u32, max: Option<u32>) -> Schedule {
        Schedule {
            name: name.into(),
            window: schedule::Window::Fixed { start, end },
            min_replicas: min,
            max_replicas: max,
        }
    }

    #[test]
    fn the_highest_active_floor_raises_and_the_lowest_ceiling_caps() {
        let p = Policy {
            schedules: vec![
                fixed("launch", 0, 100, 8, None),
                fixed("press", 0, 100, 12, None),
                fixed("later", 200, 300, 30, None),
            ],
            ..policy()
        };
        let (r, l) = apply_schedules(5, &schedule::at(&p.schedules, 50), &p);
        let l = l.unwrap();
        assert_eq!((r, l.limit), (12, Limit::ScheduledMinimum));
        assert_eq!(
            l.message,
            "the desired count 5 is raised to 12 by schedule press (minReplicas)"
        );
        // a count above the floor stands
        assert_eq!(
            apply_schedules(15, &schedule::at(&p.schedules, 50), &p),
            (15, None)
        );
        // a floor above maxReplicas stops there
        let (r, _) = apply_schedules(5, &schedule::at(&p.schedules, 250), &p);
        assert_eq!(r, 20);
        // nothing active
        assert_eq!(
            apply_schedules(5, &schedule::at(&p.schedules, 150), &p),
            (5, None)
        );

        let capped = Policy {
            schedules: vec![
                fixed("floor", 0, 100, 12, None),
                fixed("budget", 0, 100, 2, Some(9)),
                fixed("tighter", 0, 100, 1, Some(1)),
            ],
            ..policy()
        };
        let (r, l) = apply_schedules(15, &schedule::at(&capped.schedules, 50), &capped);
        let l = l.unwrap();
        assert_eq!(
            (r, l.limit),
            (2, Limit::ScheduledMaximum),
            "the lowest max wins over a floor, and stops at minReplicas"
        );
        assert_eq!(
            l.message,
            "the desired count 15 is capped at 2 by schedule tighter (maxReplicas)"
        );
    }

    #[test]
    fn a_window_raises_at_its_start_and_its_end_follows_the_stabilisation_window() {
        let p = Policy {
            max_replicas_per_minute: 0,
            schedules: vec![fixed("launch", 600, 1200, 10, None)],
            ..policy()
        };
        let mut state = PlannerState::default();
        // no metrics: the count holds at 3 until the window starts
        let d = plan(540, 3, &p, &[], &mut state);
        assert_eq!((d.desired, d.limit), (3, Limit::WithinRange));
        assert_eq!(d.schedules.next.as_ref().map(|n| n.start), Some(600));
        let d = plan(600, 3, &p, &[], &mut state);
        assert_eq!((d.desired, d.limit), (10, Limit::ScheduledMinimum));
        assert_eq!(d.schedules.active_names(), vec!["launch"]);
        record_scale(&mut state, 600, 3, 10);
        let d = plan(1140, 10, &p, &[], &mut state);
        assert_eq!(d.desired, 10);
        // the window ended at 1200; the load needs 4, but the window's recommendations of 10
        // hold the count for the 5-minute stabilisation window
        let fc_free = [MetricInput {
            name: "requests",
            target_per_replica: 1.0,
            observed: Some(4.0),
            forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
            duration: None,
        }];
        let d = plan(1200, 10, &p, &fc_free, &mut state);
        assert!(d.schedules.active.is_empty());
        assert_eq!((d.recommended, d.desired, d.stabilized), (4, 10, true));
        for at in (1260..1440).step_by(60) {
            let d = plan(at, 10, &p, &fc_free, &mut state);
            assert_eq!((d.desired, d.stabilized), (10, true), "at {at}");
        }
        // the window's last recommendation of 10 (at 1140) leaves the 5-minute window
        let d = plan(1440, 10, &p, &fc_free, &mut state);
        assert_eq!(
            d.desired, 9,
            "the window let go; 10% a minute, at least one"
        );
    }

    #[test]
    fn an_upstream_quota_counts_the_arrivals_of_a_concurrency_metric() {
        // 600/min = 10 arrivals/s; at 4 s per request and 8 streams per replica one replica
        // carries 2 arrivals/s: the quota admits 5 replicas
        let p = Policy {
            stabilization_window: Duration::ZERO,
            upstream: vec![Quota {
                metric: "requests".into(),
                per_minute: Some(600.0),
                unit: MetricUnit::PerSecond,
                queried: false,
            }],
            ..policy()
        };
        let input = |arrivals: f64| {
            [MetricInput {
                name: "requests",
                target_per_replica: 8.0,
                observed: Some(arrivals),
                forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
                duration: Some(4.0),
            }]
        };
        let mut state = PlannerState::default();
        // 18 arrivals/s x 4 s = 72 streams: 9 replicas asked, 5 admitted
        let d = plan(0, 3, &p, &input(18.0), &mut state);
        assert_eq!((d.desired, d.limit), (5, Limit::UpstreamLimited));
        assert_eq!(d.upstream_ceiling, Some(5));
        // 8 arrivals/s x 4 s = 32 streams: 4 replicas, within the quota
        let d = plan(60, 5, &p, &input(8.0), &mut state);
        assert_eq!(d.desired, 4);
        assert!(!d.upstream_limited);
    }

    #[test]
    fn the_upstream_ceiling_caps_the_need_and_a_schedule_floor_or_a_guard_still_wins() {
        // 600/min of a per-second metric: 10/s, 10 replicas at 1 per replica
        let p = Policy {
            max_replicas_per_minute: 0,
            max_percent_per_minute: 0,
            stabilization_window: Duration::ZERO,
            upstream: vec![Quota {
                metric: "requests".into(),
                per_minute: Some(600.0),
                unit: MetricUnit::PerSecond,
                queried: false,
            }],
            ..policy()
        };
        let need = |v: f64| {
            [MetricInput {
                name: "requests",
                target_per_replica: 1.0,
                observed: Some(v),
                forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
                duration: None,
            }]
        };
        let mut state = PlannerState::default();
        let d = plan(0, 5, &p, &need(18.0), &mut state);
        assert_eq!((d.desired, d.limit), (10, Limit::UpstreamLimited));
        assert_eq!((d.upstream_ceiling, d.upstream_limited), (Some(10), true));
        assert_eq!(d.recommended, 10);
        // within the quota: nothing to say
        let d = plan(60, 10, &p, &need(7.0), &mut state);
        assert_eq!(
            (d.desired, d.limit, d.upstream_limited),
            (7, Limit::WithinRange, false)
        );
        // a schedule's floor wins over the ceiling
        let floored = Policy {
            schedules: vec![fixed("launch", 0, 1000, 14, None)],
            ..p.clone()
        };
        let d = plan(120, 10, &floored, &need(18.0), &mut PlannerState::default());
        assert_eq!((d.desired, d.limit), (14, Limit::ScheduledMinimum));
        assert!(
            d.upstream_limited,
            "the ceiling still lowered the forecast's 18"
        );
        // so does a breached guard
        let g = Guard {
            name: "p95".into(),
            threshold: 0.5,
            direction: Direction::Above,
            step: GuardStep::Replicas(2),
            hold_window: Duration::from_secs(60),
        };
        let breached = [GuardInput {
            guard: &g,
            reading: Ok(0.9),
        }];
        let d = plan_with_guards(
            180,
            10,
            &p,
            &need(18.0),
            &breached,
            &mut PlannerState::default(),
        );
        assert_eq!((d.desired, d.limit), (12, Limit::GuardBreached));
        // a quota below minReplicas stops there
        let tight = Policy {
            upstream: vec![Quota {
                per_minute: Some(60.0),
                ..p.upstream[0].clone()
            }],
            ..p.clone()
        };
        let d = plan(240, 5, &tight, &need(18.0), &mut PlannerState::default());
        assert_eq!((d.desired, d.limit), (2, Limit::UpstreamLimited));
    }

    #[test]
    fn a_count_outside_the_bounds_is_brought_inside_at_once() {
        let p = policy();
        let (r, l) = enforce_bounds(30, 25, &p).expect("above max");
        assert_eq!((r, l.limit), (20, Limit::TooManyReplicas));
        let (r, l) = enforce_bounds(1, 1, &p).expect("below min");
        assert_eq!((r, l.limit), (2, Limit::TooFewReplicas));
        assert_eq!(enforce_bounds(1, 3, &p), None, "already rising past min");
        assert_eq!(enforce_bounds(10, 9, &p), None);
    }

    #[test]
    fn a_breached_guard_scales_up_past_the_need_and_its_hold_outlasts_the_window() {
        // no metrics: the need is the current count; stabilisation window 300 s
        let p = Policy {
            max_replicas_per_minute: 0,
            max_percent_per_minute: 0,
            ..policy()
        };
        let g = Guard {
            name: "p95".into(),
            threshold: 0.5,
            direction: Direction::Above,
            step: GuardStep::Replicas(2),
            hold_window: Duration::from_secs(600),
        };
        let at = |v: f64| {
            [GuardInput {
                guard: &g,
                reading: Ok(v),
            }]
        };
        // the metric's need: 2 replicas (its observed load, no forecast, `Reactive`)
        let low = [MetricInput {
            name: "requests",
            target_per_replica: 1.0,
            observed: Some(2.0),
            forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
            duration: None,
        }];
        let mut state = PlannerState::default();
        let d = plan_with_guards(0, 4, &p, &low, &at(0.9), &mut state);
        assert_eq!((d.desired, d.limit), (6, Limit::GuardBreached));
        let d = plan_with_guards(30, 6, &p, &low, &at(0.9), &mut state);
        assert_eq!(d.desired, 8);
        // healthy again: no scale-down for the hold window (600 s from the last breach)...
        for now in [60, 400, 629] {
            let d = plan_with_guards(now, 8, &p, &low, &at(0.1), &mut state);
            assert_eq!((d.desired, d.limit), (8, Limit::GuardBreached), "at {now}");
        }
        // ...then the stabilisation window remembers the held count, as for any recommendation
        for now in [630, 900] {
            let d = plan_with_guards(now, 8, &p, &low, &at(0.1), &mut state);
            assert_eq!((d.desired, d.stabilized), (8, true), "at {now}");
        }
        let d = plan_with_guards(930, 8, &p, &low, &at(0.1), &mut state);
        assert_eq!((d.desired, d.limit), (2, Limit::WithinRange));
        // the rate limit still bounds a guard's scale-up; maxReplicas bounds it
        let limited = Policy {
            max_replicas_per_minute: 1,
            ..p.clone()
        };
        let d = plan_with_guards(
            700,
            8,
            &limited,
            &[],
            &at(0.9),
            &mut PlannerState::default(),
        );
        assert_eq!((d.desired, d.limit), (9, Limit::ScaleUpLimit));
        let d = plan_with_guards(700, 19, &p, &[], &at(0.9), &mut PlannerState::default());
        assert_eq!(d.desired, 20);
    }

    #[test]
    fn a_floor_is_planned_from_itself_and_a_guard_from_the_running_replicas() {
        // floor mode: the floor is 3, the autoscaler runs the workload at 8, the load needs 5
        let need = |v: f64| {
            [MetricInput {
                name: "requests",
                target_per_replica: 1.0,
                observed: Some(v),
                forecast: Err(Unavailable::new(NoForecast::Empty, "none")),
                duration: None,
            }]
        };
        let p = policy();
        let floor = Current { set: 3, running: 8 };
        let mut state = PlannerState::default();
        let d = plan_from(0, floor, &p, &need(5.0), &[], &[], &mut state);
        // not held at 8 by the cold start's window, nor by a scale-down rate counted from 8
        assert_eq!((d.desired, d.stabilized), (5, false));
        // from the floor prescale set, a drop is held by the window as usual
        let floor = Current { set: 5, running: 8 };
        let d = plan_from(60, floor, &p, &need(4.0), &[], &[], &mut state);
        assert_eq!((d.desired, d.stabilized), (5, true));
        // the same start from 8 (a /scale target at 8) is held at 8
        let mut state = PlannerState::default();
        let d = plan_from(0, Current::of(8), &p, &need(5.0), &[], &[], &mut state);
        assert_eq!((d.desired, d.stabilized), (8, true));
        // a breached guard steps up from the replicas running, not from the floor
        let g = Guard {
            name: "p95".into(),
            threshold: 0.5,
            direction: Direction::Above,
            step: GuardStep::Replicas(2),
            hold_window: Duration::from_secs(600),
        };
        let breached = [GuardInput {
            guard: &g,
            reading: Ok(0.9),
        }];
        let unlimited = Policy {
            max_replicas_per_minute: 0,
            ..policy()
        };
        let floor = Current { set: 3, running: 8 };
        let mut state = PlannerState::default();
        let d = plan_from(0, floor, &unlimited, &need(5.0), &breached, &[], &mut state);
        assert_eq!((d.desired, d.limit), (10, Limit::GuardBreached));
    }
}
