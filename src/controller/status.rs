//! Building the status from what a reconcile found. Pure: the caller writes it, and only when
//! it differs from the stored one, since our own status writes trigger the watch again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        ForecastPeak, ForecastStatus, PredictiveScalerStatus,
        conditions::{self, Cond, Status, limit_reason, reasons, types, unavailable_reason},
    },
    planner::{Decision, Peak, Unavailable},
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
pub fn invalid_spec(message: &str) -> Vec<Cond> {
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

/// Conditions when the target cannot be read (`reason` is `TargetNotFound` or `FailedGetScale`).
pub fn target_problem(reason: &'static str, message: &str) -> Vec<Cond> {
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

/// Conditions after a decision.
pub fn decided(decision: &Decision, current: u32, write: &Write) -> Vec<Cond> {
    let unavailable: Vec<(&str, &Unavailable)> = decision
        .metrics
        .iter()
        .filter_map(|m| m.unavailable.as_ref().map(|u| (m.name.as_str(), u)))
        .collect();
    let forecast = match unavailable.first() {
        None => {
            let driving = decision.driving_metric.as_deref().unwrap_or("-");
            Cond::new(
                types::FORECAST_AVAILABLE,
                Status::True,
                reasons::FORECAST_SUCCEEDED,
                format!("forecasts are available for all metrics; {driving} drives the decision"),
            )
        }
        Some((name, u)) => {
            let what = match decision
                .metrics
                .iter()
                .find(|m| m.name == *name)
                .and_then(|m| m.replicas)
            {
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
                unavailable_reason(u.cause),
                format!("metric {name}: {}{more}; {what}", u.message),
            )
        }
    };
    let able = match write {
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
    };
    let limited = Cond::new(
        types::SCALING_LIMITED,
        Status::from_bool(decision.is_limited()),
        limit_reason(decision.limit),
        decision.limit_message.clone(),
    );
    let ready = if forecast.status != Status::True {
        Cond::new(
            types::READY,
            Status::False,
            forecast.reason,
            forecast.message.clone(),
        )
    } else if able.status != Status::True {
        Cond::new(
            types::READY,
            Status::False,
            able.reason,
            able.message.clone(),
        )
    } else {
        Cond::new(
            types::READY,
            Status::True,
            reasons::SCALER_ACTIVE,
            format!("{} replicas desired, {current} current", decision.desired),
        )
    };
    vec![ready, forecast, able, limited]
}

/// The forecast summary for status: the driving metric's peak, or the highest peak.
pub fn forecast_status(
    decision: &Decision,
    fits: &[(String, String, i64, Option<f64>)],
) -> Option<ForecastStatus> {
    // fits: (metric, model, generated_at, backtest_error)
    let best = decision
        .metrics
        .iter()
        .filter(|m| m.peak.is_some())
        .max_by_key(|m| {
            (
                decision.driving_metric.as_deref() == Some(m.name.as_str()),
                m.peak.map(|p| p.replicas),
            )
        })?;
    let Peak {
        at,
        value,
        replicas,
    } = best.peak?;
    let (_, model, generated_at, backtest) = fits.iter().find(|f| f.0 == best.name)?;
    Some(ForecastStatus {
        metric: best.name.clone(),
        model: model.clone(),
        generated_at: time(*generated_at),
        peak: Some(ForecastPeak {
            at: time(at),
            value: format_value(value),
            replicas: replicas as i32,
        }),
        backtest_error: backtest.map(|b| format!("{b:.3}")),
    })
}

/// Unix seconds as a Kubernetes time.
pub fn time(secs: i64) -> Time {
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
