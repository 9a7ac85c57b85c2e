//! Building the status from what a reconcile found. Pure: the caller writes it, and only when
//! it differs from the stored one, since our own status writes trigger the watch again.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{
    api::{
        ConcurrencyStatus, Contributor, ForecastPeak, ForecastStatus, LeadTimeStatus, NextSchedule,
        PendingScaleUp, PredictiveScalerStatus, ScalerConfig, SchedulesStatus,
        conditions::{self, Cond, Status, limit_reason, reasons, types, unavailable_reason},
        duration::{format_duration, parse_duration},
    },
    planner::{
        Decision, LeadTimeLearner, LeadTimeSource, MetricDecision, Peak, Schedules, Unavailable,
        concurrency,
        group::{self, Contributions},
        lead_time::Pending,
    },
};

/// `status.leadTime` of `scaleUp.leadTime: Auto`: the lead time planned with, where it comes
/// from, the learner's measurements (whole seconds), the scale-ups it waits for, those that
/// timed out (not ready within `max`), and why nothing is measured, if so.
pub fn lead_time_status(
    learner: &LeadTimeLearner,
    current: Duration,
    source: LeadTimeSource,
    max: Duration,
    message: Option<String>,
) -> LeadTimeStatus {
    let timed_out = learner.timed_out();
    let message = message.or_else(|| {
        (timed_out > 0).then(|| {
            format!(
                "the last {} not ready within {}: not counted as start-up times (check that the \
                 workload's pods become ready; if they start slower than that, set \
                 scaleUp.leadTime to a duration)",
                if timed_out == 1 {
                    "scale-up was".to_string()
                } else {
                    format!("{timed_out} scale-ups were")
                },
                format_duration(max)
            )
        })
    });
    LeadTimeStatus {
        current: format_duration(current),
        source: match source {
            LeadTimeSource::Learned => "Learned",
            LeadTimeSource::Default => "Default",
        }
        .into(),
        samples: learner.samples().map(format_duration).collect(),
        pending: pending_scale_ups(learner),
        timed_out: (timed_out > 0).then_some(timed_out.min(i32::MAX as u32) as i32),
        message,
    }
}

/// `status.leadTime.pending`: the scale-ups `learner` waits for.
pub fn pending_scale_ups(learner: &LeadTimeLearner) -> Vec<PendingScaleUp> {
    learner
        .pending()
        .map(|p| PendingScaleUp {
            since: time(p.at),
            replicas: p.to.min(i32::MAX as u32) as i32,
        })
        .collect()
}

/// The learner a stored `status.leadTime` describes (a restart starts from it): its
/// measurements, the scale-ups still waiting and the timed-out count; unreadable measurements
/// are skipped.
pub fn stored_lead_time(previous: Option<&PredictiveScalerStatus>) -> LeadTimeLearner {
    let Some(l) = previous.and_then(|p| p.lead_time.as_ref()) else {
        return LeadTimeLearner::default();
    };
    let samples = l.samples.iter().filter_map(|s| parse_duration(s).ok());
    let pending = l.pending.iter().map(|p| Pending {
        at: p.since.0.as_second(),
        to: p.replicas.max(0) as u32,
    });
    LeadTimeLearner::restore(samples, pending, l.timed_out.unwrap_or(0).max(0) as u32)
}

/// What a reconcile found, before it becomes a status.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub current: Option<u32>,
    pub desired: Option<u32>,
    /// Set when this reconcile changed the target.
    pub scaled_at: Option<Time>,
    pub forecast: Option<ForecastStatus>,
    /// The schedules at the decision (`None`: not evaluated, the stored ones stay; none
    /// active and none to come: no `status.schedules`).
    pub schedules: Option<SchedulesStatus>,
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
            schedules: None,
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
            schedules: None,
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
            schedules: Some(schedules_status(&decision.schedules)),
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
    /// The per-series forecasts of a `groupBy` metric at its peak times, for its top
    /// contributors.
    pub group: Option<std::sync::Arc<crate::planner::group::Contributions>>,
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
        schedules: match &report.schedules {
            Some(s) if s.active.is_empty() && s.next.is_none() => None,
            Some(s) => Some(s.clone()),
            None => previous.and_then(|p| p.schedules.clone()),
        },
        // set by the reconcile from the spec (`floor::mode_of`)
        target_mode: None,
        // set by the reconcile (`floor::recorded_target`)
        floor_target: previous.and_then(|p| p.floor_target.clone()),
        // set by the reconcile from its lead time learner (`scaleUp.leadTime: Auto`)
        lead_time: previous.and_then(|p| p.lead_time.clone()),
        // set by the reconcile from its last decision (`concurrency_status`)
        concurrency: previous.map(|p| p.concurrency.clone()).unwrap_or_default(),
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
    /// Active; a scale-down held by drain-aware scale-in, with why (`scaleDown.drainAware`).
    DrainAwareHeld(String),
    /// Active, floor mode; another writer holds the floor at another value, with what it is.
    FloorConflict(String),
}

/// Conditions after a decision: `Ready` sums up the other three (the forecast first, then
/// the write).
fn decided(decision: &Decision, current: u32, write: &Write) -> Vec<Cond> {
    let forecast = forecast_condition(decision, current);
    let able = able_condition(decision, current, write);
    let limited = Cond::new(
        types::SCALING_LIMITED,
        Status::from_bool(decision.is_limited()),
        limit_reason(decision.limit),
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
        unavailable_reason(u.cause),
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
        Write::DrainAwareHeld(why) => Cond::new(
            types::ABLE_TO_SCALE,
            Status::False,
            reasons::DRAIN_AWARE_UNAVAILABLE,
            why.clone(),
        ),
        Write::FloorConflict(why) => Cond::new(
            types::ABLE_TO_SCALE,
            Status::False,
            reasons::FLOOR_CONFLICT,
            why.clone(),
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
fn forecast_status(decision: &Decision, fits: &[FitSummary]) -> Option<ForecastStatus> {
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
        series: fit.group.as_ref().map(|g| g.series() as i32),
        top_contributors: fit.group.as_ref().map(top_contributors).unwrap_or_default(),
    })
}

/// `status.concurrency`: each metric of `config` with `concurrency` (in the order of the
/// spec) as `decision` sized it: its request duration, its forecast peak in concurrent
/// requests (Little's law, [`concurrency::streams`]), the replicas it asks for, or why it has
/// none.
pub fn concurrency_status(config: &ScalerConfig, decision: &Decision) -> Vec<ConcurrencyStatus> {
    config
        .metrics
        .iter()
        .filter(|m| m.duration_query.is_some())
        .filter_map(|m| decision.metrics.iter().find(|d| d.name == m.name))
        .map(|d| ConcurrencyStatus {
            metric: d.name.clone(),
            duration: d.duration.map(|s| format!("{}s", format_value(s))),
            peak_streams: d
                .duration
                .zip(d.peak)
                .map(|(s, p)| format_value(concurrency::streams(p.value, s))),
            replicas: d.replicas.map(|r| r.min(i32::MAX as u32) as i32),
            message: d.unavailable.as_ref().map(|u| u.message.clone()),
        })
        .collect()
}

/// The largest series of a `groupBy` metric at its peak, as status shows them.
fn top_contributors(group: &std::sync::Arc<Contributions>) -> Vec<Contributor> {
    group
        .contributors(group::TOP_CONTRIBUTORS)
        .into_iter()
        .map(|c| Contributor {
            labels: c.labels,
            value: format_value(c.value),
            share: format!("{:.2}", c.share),
        })
        .collect()
}

/// The schedules for status: the names of the active ones, and the next to start.
fn schedules_status(schedules: &Schedules) -> SchedulesStatus {
    SchedulesStatus {
        active: schedules.active_names(),
        next: schedules.next.as_ref().map(|n| NextSchedule {
            name: n.name.clone(),
            start: time(n.start),
        }),
    }
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

/// The fields of the `stored` status (JSON) that the `applied` one does not have, as a merge
/// patch of `null`s (objects are compared field by field; a list or value is the applied one's
/// to keep or change, not a leftover). `None` when there are none: server-side apply removed
/// every field it owned and no one else kept one.
pub fn leftover_fields(
    stored: &serde_json::Value,
    applied: &serde_json::Value,
) -> Option<serde_json::Value> {
    let (stored, applied) = (stored.as_object()?, applied.as_object()?);
    let mut out = serde_json::Map::new();
    for (key, value) in stored {
        match applied.get(key) {
            None => {
                out.insert(key.clone(), serde_json::Value::Null);
            }
            Some(kept) => {
                if let Some(inner) = leftover_fields(value, kept) {
                    out.insert(key.clone(), inner);
                }
            }
        }
    }
    (!out.is_empty()).then_some(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{Limit, NoForecast};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn t(secs: i64) -> Time {
        time(secs)
    }

    /// A metric's part of a decision: `replicas` asked for, a forecast peak `(at, value,
    /// replicas)`, or why it has no forecast. (The one place these tests build one.)
    fn metric(
        name: &str,
        replicas: Option<u32>,
        peak: Option<(i64, f64, u32)>,
        unavailable: Option<Unavailable>,
    ) -> MetricDecision {
        MetricDecision {
            name: name.into(),
            replicas,
            forecast_replicas: peak.map(|p| p.2),
            reactive_replicas: replicas,
            peak: peak.map(|(at, value, replicas)| Peak {
                at,
                value,
                replicas,
            }),
            unavailable,
            duration: None,
        }
    }

    /// A decision for `desired` replicas driven by `driving`, within range and not stabilised.
    fn decision(desired: u32, driving: Option<&str>, metrics: Vec<MetricDecision>) -> Decision {
        Decision {
            desired,
            recommended: desired,
            driving_metric: driving.map(Into::into),
            metrics,
            limit: Limit::WithinRange,
            limit_message: "the desired count is within range".into(),
            stabilized: false,
            schedules: Schedules::default(),
            guards: Vec::new(),
            upstream: Vec::new(),
            upstream_ceiling: None,
            upstream_limited: false,
        }
    }

    fn find<'a>(conditions: &'a [Cond], type_: &str) -> &'a Cond {
        conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} in {conditions:?}"))
    }

    /// (status, reason) of each condition, in the order written: Ready, ForecastAvailable,
    /// AbleToScale, ScalingLimited.
    fn summary(conditions: &[Cond]) -> Vec<(&str, Status, &str)> {
        conditions
            .iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect()
    }

    const OK: Write = Write::Active(Ok(()));

    #[test]
    fn a_decision_with_every_forecast_and_a_good_write_is_ready() {
        let d = decision(
            7,
            Some("requests"),
            vec![metric("requests", Some(7), None, None)],
        );
        let c = decided(&d, 3, &OK);
        assert_eq!(
            summary(&c),
            vec![
                (types::READY, Status::True, reasons::SCALER_ACTIVE),
                (
                    types::FORECAST_AVAILABLE,
                    Status::True,
                    reasons::FORECAST_SUCCEEDED
                ),
                (
                    types::ABLE_TO_SCALE,
                    Status::True,
                    reasons::READY_FOR_NEW_SCALE
                ),
                (
                    types::SCALING_LIMITED,
                    Status::False,
                    reasons::DESIRED_WITHIN_RANGE
                ),
            ]
        );
        assert_eq!(c[0].message, "7 replicas desired, 3 current");
        assert!(
            c[1].message.ends_with("requests drives the decision"),
            "{c:?}"
        );
    }

    #[test]
    fn a_metric_without_forecast_makes_ready_false_with_its_reason_and_says_what_is_done() {
        let stale = Unavailable::new(
            NoForecast::Metric(reasons::STALE_METRIC),
            "the newest sample is 1h old",
        );
        // held: the metric asks for nothing, or for the current count
        for replicas in [None, Some(4)] {
            let d = decision(
                4,
                None,
                vec![metric("requests", replicas, None, Some(stale.clone()))],
            );
            let c = decided(&d, 4, &OK);
            let fa = find(&c, types::FORECAST_AVAILABLE);
            assert_eq!(
                (fa.status, fa.reason),
                (Status::False, reasons::STALE_METRIC)
            );
            assert_eq!(
                fa.message,
                "metric requests: the newest sample is 1h old; holding 4 replicas"
            );
            let ready = find(&c, types::READY);
            assert_eq!(
                (ready.status, ready.reason, &ready.message),
                (Status::False, reasons::STALE_METRIC, &fa.message)
            );
        }
        // another count from the observed load; the first metric without forecast speaks for
        // the others
        let failed = Unavailable::new(
            NoForecast::Metric(reasons::METRICS_QUERY_FAILED),
            "connection refused",
        );
        let d = decision(
            9,
            Some("requests"),
            vec![
                metric("tokens", Some(5), Some((0, 1.0, 5)), None),
                metric("requests", Some(9), None, Some(failed)),
                metric("errors", None, None, Some(stale)),
            ],
        );
        let fa = find(&decided(&d, 4, &OK), types::FORECAST_AVAILABLE).clone();
        assert_eq!(fa.reason, reasons::METRICS_QUERY_FAILED);
        assert_eq!(
            fa.message,
            "metric requests: connection refused (and 1 more metrics); acting on the observed load (9 replicas)"
        );
    }

    #[test]
    fn the_write_decides_able_to_scale_and_a_failed_one_makes_ready_false() {
        let d = decision(
            7,
            Some("requests"),
            vec![metric("requests", Some(7), None, None)],
        );
        let failed = Write::Active(Err("updating the scale of Deployment a/b: 500".into()));
        let c = decided(&d, 3, &failed);
        let able = find(&c, types::ABLE_TO_SCALE);
        assert_eq!(
            (able.status, able.reason, able.message.as_str()),
            (
                Status::False,
                reasons::FAILED_UPDATE_SCALE,
                "updating the scale of Deployment a/b: 500"
            )
        );
        let ready = find(&c, types::READY);
        assert_eq!(
            (ready.status, ready.reason),
            (Status::False, reasons::FAILED_UPDATE_SCALE)
        );

        // a drain-aware scale-down held: not able to scale as planned, and Ready says why
        let c = decided(&d, 9, &Write::DrainAwareHeld("holding 9 replicas".into()));
        let able = find(&c, types::ABLE_TO_SCALE);
        assert_eq!(
            (able.status, able.reason, able.message.as_str()),
            (
                Status::False,
                reasons::DRAIN_AWARE_UNAVAILABLE,
                "holding 9 replicas"
            )
        );
        assert_eq!(
            find(&c, types::READY).reason,
            reasons::DRAIN_AWARE_UNAVAILABLE
        );

        let c = decided(&d, 3, &Write::DryRun);
        let able = find(&c, types::ABLE_TO_SCALE);
        assert_eq!((able.status, able.reason), (Status::True, reasons::DRY_RUN));
        assert_eq!(
            able.message,
            "DryRun: would set 7 replicas (now 3); the target is not written"
        );
        assert_eq!(find(&c, types::READY).status, Status::True);

        let held = Decision {
            recommended: 2,
            stabilized: true,
            ..d.clone()
        };
        let able = find(&decided(&held, 7, &OK), types::ABLE_TO_SCALE).clone();
        assert_eq!(
            (able.status, able.reason),
            (Status::True, reasons::SCALE_DOWN_STABILIZED)
        );
        assert_eq!(
            able.message,
            "recommended 2 replicas; holding 7 until the stabilization window agrees"
        );
    }

    #[test]
    fn a_missing_forecast_outranks_a_failed_write_in_ready() {
        let failed = Unavailable::new(NoForecast::Empty, "no data");
        let d = decision(3, None, vec![metric("requests", None, None, Some(failed))]);
        let c = decided(&d, 3, &Write::Active(Err("refused".into())));
        assert_eq!(find(&c, types::READY).reason, reasons::EMPTY_QUERY_RESULT);
    }

    #[test]
    fn scaling_limited_carries_the_planners_limit() {
        let d = Decision {
            limit: Limit::TooManyReplicas,
            limit_message: "the desired count is capped at maxReplicas (60)".into(),
            ..decision(
                60,
                Some("requests"),
                vec![metric("requests", Some(80), None, None)],
            )
        };
        let limited = find(&decided(&d, 60, &OK), types::SCALING_LIMITED).clone();
        assert_eq!(
            (limited.status, limited.reason, limited.message.as_str()),
            (
                Status::True,
                reasons::TOO_MANY_REPLICAS,
                "the desired count is capped at maxReplicas (60)"
            )
        );
    }

    fn fit(metric: &str, model: &str, at: i64, backtest: Option<f64>) -> FitSummary {
        FitSummary {
            metric: metric.into(),
            model: model.into(),
            fitted_at: at,
            backtest_error: backtest,
            group: None,
        }
    }

    #[test]
    fn a_grouped_metric_shows_its_series_and_top_contributors_at_the_peak() {
        use crate::planner::group::{GroupForecast, PartForecast};
        let part = |labels: &str, upper: Vec<f64>| PartForecast {
            labels: labels.into(),
            start: 940,
            step: 60,
            point: upper.clone(),
            upper,
            model: "ETS".into(),
            carried: None,
        };
        // at the peak (t = 1000, the second step) b is the largest, at t = 940 a was
        let group = GroupForecast {
            parts: vec![
                part("model=a", vec![30.0, 10.0]),
                part("model=b", vec![5.0, 25.0]),
                part("model=c", vec![1.0, 6.0]),
            ],
            vanished: vec![],
        };
        let combined = crate::planner::Forecast {
            start: 940,
            step: 60,
            point: vec![36.0, 41.0],
            upper: vec![36.0, 41.0],
            model: crate::planner::FittedModel::Ets,
            backtest_error: None,
            margins: None,
        };
        let mut f = fit("requests", "ETS", 900, None);
        let kept = Contributions::of(&group, &combined);
        f.group = Some(std::sync::Arc::new(kept));
        let d = decision(
            4,
            Some("requests"),
            vec![metric("requests", Some(4), Some((1_000, 40.0, 4)), None)],
        );
        let s = forecast_status(&d, &[f]).expect("a summary");
        assert_eq!(s.series, Some(3));
        let top: Vec<(&str, &str, &str)> = s
            .top_contributors
            .iter()
            .map(|c| (c.labels.as_str(), c.value.as_str(), c.share.as_str()))
            .collect();
        assert_eq!(
            top,
            [
                ("model=b", "25", "0.61"),
                ("model=a", "10", "0.24"),
                ("model=c", "6", "0.15")
            ]
        );
    }

    #[test]
    fn the_forecast_summary_is_the_driving_metrics_peak_else_the_highest() {
        let metrics = vec![
            metric("requests", Some(4), Some((1_000, 38.5, 4)), None),
            metric("tokens", Some(9), Some((2_000, 1234.4, 9)), None),
        ];
        let fits = [
            fit("requests", "SeasonalNaive(1d)", 900, Some(0.12345)),
            fit("tokens", "MSTL(1d)+AutoETS", 950, None),
        ];
        let driven = decision(4, Some("requests"), metrics.clone());
        let f = forecast_status(&driven, &fits).expect("a summary");
        assert_eq!(
            f,
            ForecastStatus {
                metric: "requests".into(),
                model: "SeasonalNaive(1d)".into(),
                generated_at: t(900),
                peak: Some(ForecastPeak {
                    at: t(1_000),
                    value: "38.5".into(),
                    replicas: 4,
                }),
                backtest_error: Some("0.123".into()),
                series: None,
                top_contributors: vec![],
            }
        );
        // no driving metric with a peak: the one that needs the most replicas
        let undriven = decision(9, None, metrics);
        let f = forecast_status(&undriven, &fits).expect("a summary");
        assert_eq!(
            (f.metric.as_str(), f.model.as_str()),
            ("tokens", "MSTL(1d)+AutoETS")
        );
        assert_eq!(f.peak.unwrap().value, "1234");
        assert_eq!(f.backtest_error, None);
        // no fit for the chosen metric (a failed write passes none): no summary
        assert_eq!(forecast_status(&driven, &[]), None);
        assert_eq!(forecast_status(&decision(3, None, vec![]), &fits), None);
    }

    fn condition(type_: &str, status: &str, reason: &str, at: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: t(at),
            observed_generation: Some(1),
        }
    }

    /// A stored status: scaled at 100, a forecast, and conditions from 50, 60 and (someone
    /// else's) 70.
    fn stored() -> PredictiveScalerStatus {
        PredictiveScalerStatus {
            observed_generation: Some(1),
            current_replicas: Some(5),
            desired_replicas: Some(5),
            last_scale_time: Some(t(100)),
            forecast: Some(ForecastStatus {
                metric: "requests".into(),
                model: "ETS".into(),
                generated_at: t(90),
                peak: None,
                backtest_error: None,
                series: None,
                top_contributors: vec![],
            }),
            schedules: None,
            target_mode: None,
            floor_target: None,
            lead_time: None,
            concurrency: Vec::new(),
            conditions: vec![
                condition(types::READY, "True", reasons::SCALER_ACTIVE, 50),
                condition(
                    types::ABLE_TO_SCALE,
                    "True",
                    reasons::READY_FOR_NEW_SCALE,
                    60,
                ),
                condition("Custom", "True", "SomeoneElses", 70),
            ],
        }
    }

    /// A report that did not scale and has no new forecast; the write failed.
    fn unscaled() -> Report {
        Report {
            current: Some(5),
            desired: Some(6),
            scaled_at: None,
            forecast: None,
            schedules: None,
            conditions: vec![
                Cond::new(
                    types::READY,
                    Status::True,
                    reasons::SCALER_ACTIVE,
                    "6 desired",
                ),
                Cond::new(
                    types::ABLE_TO_SCALE,
                    Status::False,
                    reasons::FAILED_UPDATE_SCALE,
                    "refused",
                ),
            ],
        }
    }

    #[test]
    fn build_keeps_what_the_report_does_not_change() {
        let previous = stored();
        let s = build(Some(&previous), Some(2), &unscaled(), t(200));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!((s.current_replicas, s.desired_replicas), (Some(5), Some(6)));
        // not scaled now, no new forecast: the stored ones stay
        assert_eq!(s.last_scale_time, Some(t(100)));
        assert_eq!(s.forecast, previous.forecast);
        // a condition's transition time moves only when its status flips; others' stay
        let at = |type_: &str| {
            let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
            (
                c.status.as_str(),
                c.last_transition_time.clone(),
                c.observed_generation,
            )
        };
        assert_eq!(at(types::READY), ("True", t(50), Some(2)));
        assert_eq!(at(types::ABLE_TO_SCALE), ("False", t(200), Some(2)));
        assert_eq!(at("Custom"), ("True", t(70), Some(1)));
    }

    #[test]
    fn build_takes_a_new_scale_time_and_forecast_from_the_report() {
        let forecast = ForecastStatus {
            metric: "requests".into(),
            model: "Constant".into(),
            generated_at: t(190),
            peak: None,
            backtest_error: None,
            series: None,
            top_contributors: vec![],
        };
        let scaled = Report {
            scaled_at: Some(t(200)),
            forecast: Some(forecast.clone()),
            ..unscaled()
        };
        let s = build(Some(&stored()), Some(2), &scaled, t(200));
        assert_eq!(s.last_scale_time, Some(t(200)));
        assert_eq!(s.forecast, Some(forecast));
    }

    #[test]
    fn status_lists_the_active_and_the_next_schedule_and_drops_them_when_none_is_left() {
        use crate::planner::schedule::{Active, Next, Span};
        let mut d = decision(10, None, vec![]);
        d.schedules = Schedules {
            active: vec![Active {
                name: "launch".into(),
                span: Span {
                    start: 100,
                    end: 300,
                },
                min_replicas: 10,
                max_replicas: None,
            }],
            next: Some(Next {
                name: "mornings".into(),
                start: 400,
            }),
        };
        let report = Report::decided(&d, 3, &OK, None, &[]);
        let s = build(Some(&stored()), Some(2), &report, t(200));
        let want = SchedulesStatus {
            active: vec!["launch".into()],
            next: Some(NextSchedule {
                name: "mornings".into(),
                start: t(400),
            }),
        };
        assert_eq!(s.schedules, Some(want.clone()));
        // an early end keeps the stored schedules
        let kept = build(
            Some(&s),
            Some(2),
            &Report::invalid_spec(Some(&s), "bad"),
            t(250),
        );
        assert_eq!(kept.schedules, Some(want));
        // a decision with none active and none to come removes them
        let report = Report::decided(&decision(3, None, vec![]), 10, &OK, None, &[]);
        assert_eq!(build(Some(&s), Some(2), &report, t(300)).schedules, None);
    }

    #[test]
    fn build_without_a_previous_status_starts_every_condition_now() {
        let report =
            Report::invalid_spec(None, "minReplicas (70) is greater than maxReplicas (60)");
        let s = build(None, Some(3), &report, t(10));
        assert_eq!((s.current_replicas, s.desired_replicas), (None, None));
        assert_eq!((s.last_scale_time, s.forecast), (None, None));
        assert_eq!(s.conditions.len(), 4);
        assert!(s.conditions.iter().all(|c| c.last_transition_time == t(10)));
        let ready = &s.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", reasons::INVALID_SPEC)
        );
        assert_eq!(
            ready.message,
            "minReplicas (70) is greater than maxReplicas (60)"
        );
    }

    #[test]
    fn reports_of_an_early_end_keep_the_counts_they_cannot_know() {
        let previous = PredictiveScalerStatus {
            current_replicas: Some(4),
            desired_replicas: Some(6),
            ..Default::default()
        };
        // an invalid spec never reads the target: the stored current count stays
        let r = Report::invalid_spec(Some(&previous), "bad");
        assert_eq!((r.current, r.desired), (Some(4), None));
        // a target that cannot be read has no current count; the desired one stays
        let r = Report::target_problem(Some(&previous), reasons::TARGET_NOT_FOUND, "gone");
        assert_eq!((r.current, r.desired), (None, Some(6)));
        assert_eq!(
            summary(&r.conditions),
            vec![
                (types::READY, Status::False, reasons::TARGET_NOT_FOUND),
                (
                    types::FORECAST_AVAILABLE,
                    Status::Unknown,
                    reasons::TARGET_NOT_FOUND
                ),
                (
                    types::ABLE_TO_SCALE,
                    Status::False,
                    reasons::TARGET_NOT_FOUND
                ),
                (
                    types::SCALING_LIMITED,
                    Status::Unknown,
                    reasons::TARGET_NOT_FOUND
                ),
            ]
        );
        assert_eq!(find(&r.conditions, types::ABLE_TO_SCALE).message, "gone");
    }

    #[test]
    fn a_decided_report_shows_the_count_the_target_has_now() {
        let d = decision(
            7,
            Some("requests"),
            vec![metric("requests", Some(7), Some((5, 66.0, 7)), None)],
        );
        let fits = [fit("requests", "ETS", 1, None)];
        let r = Report::decided(&d, 3, &OK, Some(t(9)), &fits);
        assert_eq!(
            (r.current, r.desired, r.scaled_at),
            (Some(7), Some(7), Some(t(9)))
        );
        assert_eq!(r.forecast.map(|f| f.model), Some("ETS".into()));
        // not written (DryRun, or nothing to change): the target keeps its count
        let r = Report::decided(&d, 3, &Write::DryRun, None, &fits);
        assert_eq!(
            (r.current, r.desired, r.scaled_at),
            (Some(3), Some(7), None)
        );
        assert_eq!(r.conditions, decided(&d, 3, &Write::DryRun));
    }

    #[test]
    fn the_fields_an_apply_left_behind_are_nulled() {
        let applied = serde_json::json!({
            "currentReplicas": 3,
            "forecast": {"metric": "requests", "model": "Constant"},
            "conditions": [{"type": "Ready"}],
        });
        // what the apply set: nothing left over
        assert_eq!(leftover_fields(&applied, &applied), None);
        // a status an earlier prescale wrote by merge patch still has these
        let stored = serde_json::json!({
            "currentReplicas": 4,
            "concurrency": [{"metric": "streams"}],
            "forecast": {"metric": "requests", "model": "Constant", "series": 3,
                         "topContributors": [{"value": "1"}]},
            "conditions": [{"type": "Ready"}, {"type": "Old"}],
        });
        assert_eq!(
            leftover_fields(&stored, &applied),
            Some(serde_json::json!({
                "concurrency": null,
                "forecast": {"series": null, "topContributors": null},
            })),
            "absent fields only: a changed value or list is the apply's"
        );
        // no stored status at all
        assert_eq!(leftover_fields(&serde_json::Value::Null, &applied), None);
    }

    #[test]
    fn a_lead_time_in_flight_and_timed_out_round_trips_through_the_status() {
        use crate::planner::lead_time::{DEFAULT_LEAD_TIME, MAX_LEAD_TIME, MIN_LEAD_TIME};
        let max = Duration::from_secs(540);
        let mut learner = LeadTimeLearner::with_samples([Duration::from_secs(95)]);
        // one never ready: censored at 9m, no sample
        learner.record_scale(1_000, 2, 4);
        learner.observe_ready(1_000 + 540, Some(2), max);
        // one in flight
        learner.record_scale(2_000, 2, 6);
        let (current, source) =
            learner.lead_time(DEFAULT_LEAD_TIME, (MIN_LEAD_TIME, MAX_LEAD_TIME), 0.9);
        let status = lead_time_status(&learner, current, source, max, None);
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "current": "95s",
                "source": "Learned",
                "samples": ["95s"],
                "pending": [{"since": "1970-01-01T00:33:20Z", "replicas": 6}],
                "timedOut": 1,
                "message": "the last scale-up was not ready within 9m: not counted as start-up \
                            times (check that the workload's pods become ready; if they start \
                            slower than that, set scaleUp.leadTime to a duration)",
            })
        );
        // a restarted operator starts from it and measures the one in flight from its write
        let stored = PredictiveScalerStatus {
            lead_time: Some(status),
            ..Default::default()
        };
        let mut restored = stored_lead_time(Some(&stored));
        assert_eq!(restored, learner);
        restored.observe_ready(2_070, Some(6), max);
        assert_eq!(
            restored.samples().collect::<Vec<_>>(),
            vec![Duration::from_secs(95), Duration::from_secs(70)]
        );
        assert_eq!(restored.timed_out(), 0);
        assert_eq!(stored_lead_time(None), LeadTimeLearner::default());
    }
}
