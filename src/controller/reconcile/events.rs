//! What a reconcile tells through Kubernetes events: a Warning when a condition newly fails, a
//! notice of what `DryRun` would do, one event per scale operation, and a notice when a
//! scheduled window starts or ends.

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    runtime::events::{Event, EventType},
};
use tracing::warn;

use super::super::{Context, status, target};
use crate::{
    api::{
        PredictiveScaler,
        conditions::{Cond, Status, types},
    },
    planner::Decision,
    planner::Peak,
    planner::Schedules,
};

/// Event reasons of the scheduled windows.
pub(super) const SCHEDULE_STARTED: &str = "ScheduleStarted";
pub(super) const SCHEDULE_ENDED: &str = "ScheduleEnded";

/// A Normal event for each scheduled window that started or ended since the stored status
/// was written (its `schedules.active`): once per transition, since the status written after
/// this reconcile holds the new list.
pub(super) async fn schedule_transitions(ctx: &Context, ps: &PredictiveScaler, now: &Schedules) {
    let previous: &[String] = ps
        .status
        .as_ref()
        .and_then(|s| s.schedules.as_ref())
        .map(|s| s.active.as_slice())
        .unwrap_or(&[]);
    for (reason, note) in transitions(previous, now) {
        publish(ctx, ps, EventType::Normal, "Schedule", reason, note).await;
    }
}

/// The windows that started (active now, not in `previous`) and ended (in `previous`, not
/// active now), as (reason, note).
fn transitions(previous: &[String], now: &Schedules) -> Vec<(&'static str, String)> {
    let started = now
        .active
        .iter()
        .filter(|a| !previous.contains(&a.name))
        .map(|a| {
            let max = a
                .max_replicas
                .map(|m| format!(", at most {m}"))
                .unwrap_or_default();
            let end = Timestamp::from_second(a.span.end)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let note = format!(
                "schedule {} started: at least {} replicas{max} until {end}",
                a.name, a.min_replicas
            );
            (SCHEDULE_STARTED, note)
        });
    let ended = previous
        .iter()
        .filter(|name| !now.active.iter().any(|a| &a.name == *name))
        .map(|name| {
            let note = format!(
                "schedule {name} ended: replicas follow the forecast again, down as scaleDown allows"
            );
            (SCHEDULE_ENDED, note)
        });
    started.chain(ended).collect()
}

/// A Warning event for each condition that newly turned bad (not on every reconcile), one
/// per reason.
pub(super) async fn warn_on_new_failure(ctx: &Context, ps: &PredictiveScaler, conditions: &[Cond]) {
    let previous = ps
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let mut warned: Vec<&str> = Vec::new();
    for c in conditions.iter().filter(|c| {
        c.status == Status::False || (c.type_ == types::READY && c.status == Status::Unknown)
    }) {
        if c.type_ == types::SCALING_LIMITED || warned.contains(&c.reason) {
            continue;
        }
        let was = previous.iter().find(|p| p.type_ == c.type_);
        if was.is_none_or(|p| p.reason != c.reason) {
            let action = if c.type_ == types::FORECAST_AVAILABLE {
                "Forecast"
            } else {
                "Scale"
            };
            warned.push(c.reason);
            publish(
                ctx,
                ps,
                EventType::Warning,
                action,
                c.reason,
                c.message.clone(),
            )
            .await;
        }
    }
}

/// A Warning (or a DryRun notice) through kube-runtime's Recorder, which folds repeats of one
/// reason into one event with a count. Bounded by the request timeout.
pub(super) async fn publish(
    ctx: &Context,
    ps: &PredictiveScaler,
    type_: EventType,
    action: &str,
    reason: &str,
    note: String,
) {
    let Some(budget) = ctx.write_budget() else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.into(),
        secondary: None,
    };
    match tokio::time::timeout(budget, ctx.recorder.publish(&event, &ps.object_ref(&()))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %crate::error::plain(&e), "publishing an event failed"),
        Err(_) => warn!("publishing an event timed out"),
    }
}

/// One event per scale operation (events.k8s.io/v1, created directly): unlike the Recorder,
/// which would fold a second scale-up into the first's event ("from 2 to 10", count 2), every
/// change keeps its own numbers. Bounded by the request timeout.
pub(super) async fn scale_event(
    ctx: &Context,
    ps: &PredictiveScaler,
    namespace: &str,
    reason: &str,
    note: String,
) {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let event = K8sEvent {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ps.name_any())),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        action: Some("Scale".into()),
        reason: Some(reason.into()),
        note: Some(truncate(note, 1000)),
        type_: Some("Normal".into()),
        regarding: Some(ps.object_ref(&())),
        reporting_controller: Some(ctx.reporter.controller.clone()),
        reporting_instance: Some(
            ctx.reporter
                .instance
                .clone()
                .unwrap_or_else(|| ctx.reporter.controller.clone()),
        ),
        ..Default::default()
    };
    let Some(budget) = ctx.write_budget() else {
        return;
    };
    let api: Api<K8sEvent> = Api::namespaced(ctx.client.clone(), namespace);
    if let Err(e) = target::within(
        budget,
        api.create(&kube::api::PostParams::default(), &event),
    )
    .await
    {
        warn!(error = %crate::error::plain(&e), "publishing the scale event failed");
    }
}

/// An event note of at most `max` bytes (cut at a character boundary).
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A one-line reason for an event, and the upstream quota's cap when it lowered the count.
pub(super) fn why(d: &Decision) -> String {
    let base = why_driven(d);
    match d.upstream_ceiling.filter(|_| d.upstream_limited) {
        Some(c) => format!("{base}; capped at {c} by the upstream quota (spec.upstream)"),
        None => base,
    }
}

/// What drives a decision, in one line.
fn why_driven(d: &Decision) -> String {
    let Some(name) = &d.driving_metric else {
        return "no metric data; holding".into();
    };
    let Some(m) = d.metrics.iter().find(|m| &m.name == name) else {
        return String::new();
    };
    match (m.forecast_replicas, m.reactive_replicas, &m.peak) {
        (
            Some(f),
            r,
            Some(Peak {
                at,
                value,
                replicas,
            }),
        ) if f >= r.unwrap_or(0) => format!(
            "driven by metric {name}: its forecast needs {f} replicas within the lead time (peak {} at {} needs {replicas})",
            status::format_value(*value),
            Timestamp::from_second(*at)
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
        (None, Some(r), _) if m.replicas.is_some_and(|w| w > r) => format!(
            "driven by metric {name}: it has no forecast, and its observed load needs {r} replicas, {} with the default budget's headroom",
            m.replicas.unwrap_or(r)
        ),
        (_, Some(r), _) => format!("driven by metric {name}: its observed load needs {r} replicas"),
        _ => format!("driven by metric {name}: holding"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::schedule::{Active, Span};

    #[test]
    fn a_window_is_announced_when_it_starts_and_when_it_ends() {
        let launch = Active {
            name: "launch".into(),
            span: Span {
                start: 0,
                end: 3600,
            },
            min_replicas: 10,
            max_replicas: Some(20),
        };
        let now = Schedules {
            active: vec![launch],
            next: None,
        };
        assert_eq!(
            transitions(&[], &now),
            vec![(
                SCHEDULE_STARTED,
                "schedule launch started: at least 10 replicas, at most 20 until 1970-01-01T01:00:00Z"
                    .to_string()
            )]
        );
        assert_eq!(transitions(&["launch".into()], &now), vec![], "once");
        let ended = transitions(&["launch".into()], &Schedules::default());
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].0, SCHEDULE_ENDED);
        assert!(ended[0].1.starts_with("schedule launch ended"), "{ended:?}");
    }
}
