//! The pure core: forecasts and observations in, a replica count and its reasons out.
//!
//! Nothing here does IO or reads a clock: `now` is an argument. The reconciler and
//! `prescale simulate` call exactly this code, so a simulated plan is the plan the controller
//! would have made. [`series`] is the data shape, [`forecast`] the model fit and `Auto`'s
//! selection, [`margin`] the calibrated lead-window margin replicas are sized with, [`choice`]
//! when `Auto` chooses; this file is the decision ([`plan`]).

pub mod choice;
pub mod forecast;
pub mod margin;
pub mod series;

use std::time::Duration;

use crate::api::{Fallback, conditions::reasons};
pub use forecast::{
    DEFAULT_BAND_QUANTILE, Forecast, ForecastError, ForecastSettings, SELECTION_INTERVAL,
    Selection, fit_forecast, select_model,
};
pub use margin::Sizing;
pub use series::Series;

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
}

impl Policy {
    /// The policy a validated spec describes, with the controller's evaluation interval.
    pub fn from_config(c: &crate::api::ScalerConfig, interval: Duration) -> Self {
        Self {
            min_replicas: c.min_replicas,
            max_replicas: c.max_replicas,
            lead_time: c.lead_time,
            interval,
            max_replicas_per_minute: c.max_replicas_per_minute,
            stabilization_window: c.stabilization_window,
            max_percent_per_minute: c.max_percent_per_minute,
            fallback: c.fallback,
        }
    }
}

/// Why a metric has no usable forecast. The reason strings are condition reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Unavailable {
    pub reason: &'static str,
    pub message: String,
}

impl Unavailable {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Maps a forecaster error to a condition reason.
    pub fn from_forecast_error(e: &ForecastError) -> Self {
        let reason = match e {
            ForecastError::Empty => reasons::EMPTY_QUERY_RESULT,
            ForecastError::InsufficientHistory { .. } | ForecastError::TooManyGaps { .. } => {
                reasons::INSUFFICIENT_HISTORY
            }
            ForecastError::ModelFit(_) => reasons::MODEL_FIT_FAILED,
        };
        Self::new(reason, e.to_string())
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
    pub recommendations: Vec<Recommendation>,
    pub events: Vec<ScaleEvent>,
}

impl PlannerState {
    /// Keeps what the windows still need. Entries from the future (the clock stepped back) are
    /// dropped: kept, they would hold scale-downs and spend rate budgets for the size of the jump.
    fn prune(&mut self, now: i64, policy: &Policy) {
        let window = policy.stabilization_window.as_secs() as i64;
        self.recommendations
            .retain(|r| r.at > now - window && r.at <= now);
        self.events.retain(|e| e.at > now - 60 && e.at <= now);
    }
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
    /// The forecast peak over the whole forecast from now: (time, upper value, replicas).
    pub peak: Option<(i64, f64, u32)>,
    pub unavailable: Option<Unavailable>,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to set now.
    pub desired: u32,
    /// Before stabilisation and rate limits (clamped to min/max).
    pub recommended: u32,
    /// The metric that asked for the most replicas.
    pub driving_metric: Option<String>,
    pub metrics: Vec<MetricDecision>,
    /// `ScalingLimited` reason and message.
    pub limit_reason: &'static str,
    pub limit_message: String,
    /// True when a scale-down was held back by the stabilisation window.
    pub stabilized: bool,
}

impl Decision {
    pub fn is_limited(&self) -> bool {
        self.limit_reason != reasons::DESIRED_WITHIN_RANGE
    }
}

fn replicas_for(load: f64, target_per_replica: f64) -> u32 {
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
/// `maxPercentPerMinute`).
pub fn plan(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    state: &mut PlannerState,
) -> Decision {
    state.prune(now, policy);
    let window_end = now + (policy.lead_time + policy.interval).as_secs() as i64;
    let mut decisions = Vec::with_capacity(metrics.len());
    for m in metrics {
        let observed = m.observed.filter(|v| v.is_finite());
        let reactive = observed.map(|v| replicas_for(v, m.target_per_replica));
        let (forecast_replicas, peak, unavailable) = match &m.forecast {
            Ok(fc) => match fc.max_upper_in(now, window_end) {
                Some((_, upper)) => {
                    let peak = fc
                        .max_upper_in(now, fc.end() - 1)
                        .map(|(t, v)| (t, v, replicas_for(v, m.target_per_replica)));
                    // the calibrated margin on the latest load when there is one, else the
                    // model's band
                    let sized = match (&fc.margins, observed) {
                        (Some(margins), Some(last)) => margins.sized_load(now, last),
                        _ => upper,
                    };
                    (Some(replicas_for(sized, m.target_per_replica)), peak, None)
                }
                None => (
                    None,
                    None,
                    Some(Unavailable::new(
                        reasons::STALE_FORECAST,
                        "the forecast does not reach the end of the lead window; waiting for a refit",
                    )),
                ),
            },
            Err(u) => (None, None, Some(u.clone())),
        };
        let replicas = match (forecast_replicas, reactive) {
            (Some(f), r) => Some(f.max(r.unwrap_or(0))),
            (None, Some(r)) if policy.fallback == Fallback::Reactive => Some(r),
            (None, Some(r)) => Some(r.max(current)),
            (None, None) => None,
        };
        decisions.push(MetricDecision {
            name: m.name.to_string(),
            replicas,
            forecast_replicas,
            reactive_replicas: reactive,
            peak,
            unavailable,
        });
    }

    // a metric that cannot say holds the current count
    let (raw, driving) = decisions
        .iter()
        .map(|d| (d.replicas.unwrap_or(current), Some(d.name.clone())))
        .max_by_key(|(r, _)| *r)
        .unwrap_or((current, None));

    let (mut limit_reason, mut limit_message) = (
        reasons::DESIRED_WITHIN_RANGE,
        String::from("the desired count is within range"),
    );
    let recommended = if raw < policy.min_replicas {
        limit_reason = reasons::TOO_FEW_REPLICAS;
        limit_message = format!(
            "the desired count {raw} is below minReplicas {}",
            policy.min_replicas
        );
        policy.min_replicas
    } else if raw > policy.max_replicas {
        limit_reason = reasons::TOO_MANY_REPLICAS;
        limit_message = format!(
            "the desired count {raw} is above maxReplicas {}",
            policy.max_replicas
        );
        policy.max_replicas
    } else {
        raw
    };

    let stabilized_target = if policy.stabilization_window.is_zero() {
        recommended
    } else {
        if state.recommendations.is_empty() {
            // a cold start (new scaler, restarted operator) counts the current size as
            // recommended now, as the HPA does, so it cannot drop before a full window
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

    let mut stabilized = false;
    let mut desired = if recommended >= current {
        recommended
    } else {
        if stabilized_target > recommended {
            stabilized = true;
        }
        stabilized_target.min(current)
    };

    // rate limits over the last minute (HPA style: relative to the count a minute ago)
    if desired > current && policy.max_replicas_per_minute > 0 {
        let added: u32 = state
            .events
            .iter()
            .filter(|e| e.to > e.from)
            .map(|e| e.to - e.from)
            .sum();
        let allowed = policy.max_replicas_per_minute.saturating_sub(added);
        if desired > current + allowed {
            desired = current + allowed;
            limit_reason = reasons::SCALE_UP_LIMIT;
            limit_message = format!(
                "scale-up limited to {} replicas per minute (wanted {recommended})",
                policy.max_replicas_per_minute
            );
        }
    }
    if desired < current && policy.max_percent_per_minute > 0 {
        let removed: u32 = state
            .events
            .iter()
            .filter(|e| e.to < e.from)
            .map(|e| e.from - e.to)
            .sum();
        let period_start = current + removed;
        // at least one replica a minute may go, or small targets could never scale down
        let budget =
            ((period_start as u64 * policy.max_percent_per_minute as u64) / 100).max(1) as u32;
        let allowed = budget.saturating_sub(removed);
        if current - desired > allowed {
            desired = current - allowed;
            limit_reason = reasons::SCALE_DOWN_LIMIT;
            limit_message = format!(
                "scale-down limited to {}% per minute (wanted {recommended})",
                policy.max_percent_per_minute
            );
        }
    }
    // a count outside [minReplicas, maxReplicas] (the bounds were just edited, or someone
    // scaled by hand) is brought inside at once, as the HPA does: the bounds are hard limits,
    // not subject to the stabilization window or the rate limits
    if current > policy.max_replicas {
        desired = policy.max_replicas;
        stabilized = false;
        limit_reason = reasons::TOO_MANY_REPLICAS;
        limit_message = format!(
            "the current count {current} is above maxReplicas {}",
            policy.max_replicas
        );
    } else if current < policy.min_replicas && desired < policy.min_replicas {
        desired = policy.min_replicas;
        limit_reason = reasons::TOO_FEW_REPLICAS;
        limit_message = format!(
            "the current count {current} is below minReplicas {}",
            policy.min_replicas
        );
    }
    Decision {
        desired,
        recommended,
        driving_metric: driving,
        metrics: decisions,
        limit_reason,
        limit_message,
        stabilized,
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
    /// The count DryRun would have set, and the target's real count when it did.
    shadow: Option<(u32, u32)>,
    pub planner: PlannerState,
}

/// [`plan`] for `mode: DryRun`: plans from the count it would have set (while the target's real
/// count stays `current`; a change of that by someone else restarts the shadow from it), and
/// records its own decision as if written.
pub fn plan_dry_run(
    now: i64,
    current: u32,
    policy: &Policy,
    metrics: &[MetricInput<'_>],
    state: &mut DryRunState,
) -> Decision {
    let shadow = match state.shadow {
        Some((would, real)) if real == current => would,
        _ => {
            state.planner = PlannerState::default();
            current
        }
    };
    let decision = plan(now, shadow, policy, metrics, &mut state.planner);
    record_scale(&mut state.planner, now, shadow, decision.desired);
    state.shadow = Some((decision.desired, current));
    decision
}
