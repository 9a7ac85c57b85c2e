//! Building the status from what a reconcile found. Pure: the caller writes it, and only when
//! it differs from the stored one, since our own status writes trigger the watch again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        ForecastPeak, ForecastStatus, PredictiveScalerStatus,
        conditions::{self, Cond, Status, reasons, types},
    },
    planner::{Decision, MetricDecision, Unavailable},
};

/// What a reconcile found, before it becomes a status.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub current: Option<u32>,
    pub desired: Option<u32>,
    /// Set when this reconcile changed the target.
    pub scaled_at: Option<Time>,
    pub forecast: Option<ForecastStatus>,
    pub conditions: Vec<Cond>,
}

impl Report {
    /// A spec that cannot be used: the target is not read, so the stored current count stays
    /// and nothing is desired.
    pub fn invalid_spec(previous: Option<&PredictiveScalerStatus>, message: &str) -> Self {
        Self {
            current: previous
                .and_then(|s| s.current_replicas)
                .map(|c| c.max(0) as u32),
            desired: None,
            scaled_at: None,
            forecast: None,
            conditions: invalid_spec(message),
        }
    }

    /// A target that cannot be read or may not be scaled (`reason`): no current count (the
    /// caller sets one it knows), the stored desired count stays.
    pub fn target_problem(
        previous: Option<&PredictiveScalerStatus>,
        reason: &'static str,
        message: &str,
    ) -> Self {
        Self {
            current: None,
            desired: previous
                .and_then(|s| s.desired_replicas)
                .map(|d| d.max(0) as u32),
            scaled_at: None,
            forecast: None,
            conditions: target_problem(reason, message),
        }
    }

    /// After a decision on a target at `current` replicas: the count it has now (the desired
    /// one when this reconcile scaled it, at `scaled_at`), the forecast summary of `fits`, and
    /// the conditions.
    pub fn decided(
        decision: &Decision,
        current: u32,
        write: &Write,
        scaled_at: Option<Time>,
        fits: &[FitSummary],
    ) -> Self {
        Self {
            current: Some(if scaled_at.is_some() {
                decision.desired
            } else {
                current
            }),
            desired: Some(decision.desired),
            scaled_at,
            forecast: forecast_status(decision, fits),
            conditions: decided(decision, current, write),
        }
    }
}

/// The fit behind a metric's forecast, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSummary {
    pub metric: String,
    /// The fitted model's name (`MSTL(1d,7d)+AutoETS`).
    pub model: String,
    /// When it was fitted (unix seconds).
    pub fitted_at: i64,
    pub backtest_error: Option<f64>,
}

/// Merges a report into the previous status: keeps `lastScaleTime` unless this reconcile
/// scaled, keeps each condition's `lastTransitionTime` unless its status flipped.
pub fn build(
    previous: Option<&PredictiveScalerStatus>,
    generation: Option<i64>,
    report: &Report,
    now: Time,
) -> PredictiveScalerStatus {
    let prev_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    PredictiveScalerStatus {
        observed_generation: generation,
        current_replicas: report.current.map(|c| c as i32),
        desired_replicas: report.desired.map(|d| d as i32),
        last_scale_time: report
            .scaled_at
            .clone()
            .or_else(|| previous.and_then(|p| p.last_scale_time.clone())),
        forecast: report
            .forecast
            .clone()
            .or_else(|| previous.and_then(|p| p.forecast.clone())),
        conditions: conditions::merge(prev_conditions, &report.conditions, generation, now),
    }
}

/// Conditions for a spec that cannot be used.
fn invalid_spec(message: &str) -> Vec<Cond> {
    vec![
        Cond::new(types::READY, Status::False, reasons::INVALID_SPEC, message),
        Cond::new(
            types::FORECAST_AVAILABLE,
            Status::Unknown,
            reasons::INVALID_SPEC,
            "not evaluated: the spec is invalid",
        ),
        Cond::new(
            types::ABLE_TO_SCALE,
            Status::False,
            reasons::INVALID_SPEC,
            "the target is not written while the spec is invalid",
        ),
        Cond::new(
            types::SCALING_LIMITED,
            Status::Unknown,
            reasons::INVALID_SPEC,
            "not evaluated: the spec is invalid",
        ),
    ]
}

/// Conditions when the target cannot be read or may not be scaled (`reason`: `TargetNotFound`,
/// `FailedGetScale`, `AmbiguousTarget`, `ScalingDisabled`).
fn target_problem(reason: &'static str, message: &str) -> Vec<Cond> {
    vec![
        Cond::new(types::READY, Status::False, reason, message),
        Cond::new(
            types::FORECAST_AVAILABLE,
            Status::Unknown,
            reason,
            "not evaluated: see AbleToScale",
        ),
        Cond::new(types::ABLE_TO_SCALE, Status::False, reason, message),
        Cond::new(
            types::SCALING_LIMITED,
            Status::Unknown,
            reason,
            "not evaluated: see AbleToScale",
        ),
    ]
}

/// How the target write went.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Active mode; `Ok` when written (or nothing to write), `Err` with the error text.
    Active(Result<(), String>),
    DryRun,
}

/// Conditions after a decision: `Ready` sums up the other three (the forecast first, then
/// the write).
pub fn decided(decision: &Decision, current: u32, write: &Write) -> Vec<Cond> {
    let forecast = forecast_condition(decision, current);
    let able = able_condition(decision, current, write);
    let limited = Cond::new(
        types::SCALING_LIMITED,
        Status::from_bool(decision.is_limited()),
        decision.limit_reason,
        decision.limit_message.clone(),
    );
    let ready = ready_condition(&forecast, &able, decision, current);
    vec![ready, forecast, able, limited]
}

/// `ForecastAvailable`: true when every metric has a forecast; otherwise the first metric
/// without one says why, and what the scaler does instead.
fn forecast_condition(decision: &Decision, current: u32) -> Cond {
    let unavailable: Vec<(&MetricDecision, &Unavailable)> = decision
        .metrics
        .iter()
        .filter_map(|m| m.unavailable.as_ref().map(|u| (m, u)))
        .collect();
    let Some((metric, u)) = unavailable.first() else {
        let driving = decision.driving_metric.as_deref().unwrap_or("-");
        return Cond::new(
            types::FORECAST_AVAILABLE,
            Status::True,
            reasons::FORECAST_SUCCEEDED,
            format!("forecasts are available for all metrics; {driving} drives the decision"),
        );
    };
    let what = match metric.replicas {
        Some(r) if r != current => format!("acting on the observed load ({r} replicas)"),
        _ => format!("holding {current} replicas"),
    };
    let more = if unavailable.len() > 1 {
        format!(" (and {} more metrics)", unavailable.len() - 1)
    } else {
        String::new()
    };
    Cond::new(
        types::FORECAST_AVAILABLE,
        Status::False,
        u.reason,
        format!("metric {}: {}{more}; {what}", metric.name, u.message),
    )
}

/// `AbleToScale`: how the target write went (or, in DryRun, what it would have been).
fn able_condition(decision: &Decision, current: u32, write: &Write) -> Cond {
    match write {
        Write::DryRun => Cond::new(
            types::ABLE_TO_SCALE,
            Status::True,
            reasons::DRY_RUN,
            format!(
                "DryRun: would set {} replicas (now {current}); the target is not written",
                decision.desired
            ),
        ),
        Write::Active(Err(e)) => Cond::new(
            types::ABLE_TO_SCALE,
            Status::False,
            reasons::FAILED_UPDATE_SCALE,
            e.clone(),
        ),
        Write::Active(Ok(())) if decision.stabilized => Cond::new(
            types::ABLE_TO_SCALE,
            Status::True,
            reasons::SCALE_DOWN_STABILIZED,
            format!(
                "recommended {} replicas; holding {} until the stabilization window agrees",
                decision.recommended, decision.desired
            ),
        ),
        Write::Active(Ok(())) => Cond::new(
            types::ABLE_TO_SCALE,
            Status::True,
            reasons::READY_FOR_NEW_SCALE,
            "the target can be scaled",
        ),
    }
}

/// `Ready`: false with the forecast's reason when it is not true, else with the write's when
/// that is not; true (`ScalerActive`) when both are.
fn ready_condition(forecast: &Cond, able: &Cond, decision: &Decision, current: u32) -> Cond {
    match [forecast, able]
        .into_iter()
        .find(|c| c.status != Status::True)
    {
        Some(bad) => Cond::new(types::READY, Status::False, bad.reason, bad.message.clone()),
        None => Cond::new(
            types::READY,
            Status::True,
            reasons::SCALER_ACTIVE,
            format!("{} replicas desired, {current} current", decision.desired),
        ),
    }
}

/// The forecast summary for status: the driving metric's peak, or the highest peak, with the
/// fit that made it (none without one).
pub fn forecast_status(decision: &Decision, fits: &[FitSummary]) -> Option<ForecastStatus> {
    let best = decision
        .metrics
        .iter()
        .filter(|m| m.peak.is_some())
        .max_by_key(|m| {
            (
                decision.driving_metric.as_deref() == Some(m.name.as_str()),
                m.peak.map(|p| p.2),
            )
        })?;
    let (at, value, replicas) = best.peak?;
    let fit = fits.iter().find(|f| f.metric == best.name)?;
    Some(ForecastStatus {
        metric: best.name.clone(),
        model: fit.model.clone(),
        generated_at: time(fit.fitted_at),
        peak: Some(ForecastPeak {
            at: time(at),
            value: format_value(value),
            replicas: replicas as i32,
        }),
        backtest_error: fit.backtest_error.map(|b| format!("{b:.3}")),
    })
}

/// Unix seconds as a Kubernetes time.
fn time(secs: i64) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(secs)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// A load value as a short decimal string for status (quantities are strings).
pub fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}
