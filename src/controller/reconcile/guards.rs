//! The guards (`spec.guards`) read for stage 4: each guard's latest value through the same
//! sources layer as the metrics (the source access rules and the namespace isolation of
//! queries, [`crate::sources::Sources::resolve`]), and what a change of their state shows
//! (events, the `prescale_guard_breached` gauge). What a value does is the planner's rule
//! ([`crate::planner::guard`]).

use kube::{ResourceExt, runtime::events::EventType};
use tracing::warn;

use super::{Run, events, recent_points};
use crate::sources::access::NamespaceLabels;
use crate::{
    api::{GuardConfig, ScalerConfig, conditions::reasons},
    planner::{Decision, GuardFailure, GuardInput, GuardState},
};

/// The window a guard's latest value is taken from: Prometheus' own staleness lookback.
const WINDOW: i64 = 5 * 60;
/// The step of the short range query.
const STEP: i64 = 30;

/// Event reasons of the guards.
pub(super) const GUARD_BREACHED: &str = "GuardBreached";
pub(super) const GUARD_RECOVERED: &str = "GuardRecovered";

/// Each guard's latest value (or why there is none), in the order of `config.guards`.
pub(super) async fn read(run: &Run<'_>, config: &ScalerConfig) -> Vec<Result<f64, GuardFailure>> {
    if config.guards.is_empty() {
        return Vec::new();
    }
    let labels = run.namespace_labels(config).await;
    let mut out = Vec::with_capacity(config.guards.len());
    for g in &config.guards {
        let value = read_one(run, labels, g).await;
        if let Err(f) = &value {
            warn!(guard = %g.guard.name, source = %g.source, reason = f.reason, error = %f.message, "guard query failed");
        }
        out.push(value);
    }
    out
}

/// One guard's latest value: the last finite point of its query over the last [`WINDOW`].
async fn read_one(
    run: &Run<'_>,
    labels: &NamespaceLabels,
    g: &GuardConfig,
) -> Result<f64, GuardFailure> {
    latest(run, labels, &g.source, &g.query).await
}

/// The latest value of `query` on `source` (with the source's rules for the scaler's
/// namespace): the last finite point over the last [`WINDOW`]. Also read by the upstream
/// limits' queries.
pub(super) async fn latest(
    run: &Run<'_>,
    labels: &NamespaceLabels,
    source: &str,
    query: &str,
) -> Result<f64, GuardFailure> {
    let failed = |e: crate::sources::SourceError| GuardFailure {
        reason: e.reason(),
        message: e.to_string(),
    };
    let points = recent_points(run, labels, (source, query), WINDOW, STEP)
        .await
        .map_err(failed)?;
    points
        .iter()
        .rev()
        .map(|(_, v)| *v)
        .find(|v| v.is_finite())
        .ok_or_else(|| GuardFailure {
            reason: reasons::EMPTY_QUERY_RESULT,
            message: "the query returned no data in the last 5m".into(),
        })
}

/// The planner's input for each guard.
pub(super) fn inputs<'a>(
    config: &'a ScalerConfig,
    readings: &[Result<f64, GuardFailure>],
) -> Vec<GuardInput<'a>> {
    config
        .guards
        .iter()
        .zip(readings)
        .map(|(g, r)| GuardInput {
            guard: &g.guard,
            reading: r.clone(),
        })
        .collect()
}

/// The guards of `decision` on the gauge, and an event for each that turned breached
/// (Warning) or healthy again (Normal) since the last evaluation (`breached`, updated).
pub(super) async fn report(run: &Run<'_>, decision: &Decision, breached: &mut Vec<String>) {
    let states: Vec<(String, Option<bool>)> = decision
        .guards
        .iter()
        .map(|g| {
            let b = match g.state {
                GuardState::Unavailable(_) => None,
                _ => Some(g.breached()),
            };
            (g.name.clone(), b)
        })
        .collect();
    run.ctx
        .metrics
        .set_guards(run.namespace, &run.ps.name_any(), &states);
    for g in &decision.guards {
        let was = breached.contains(&g.name);
        if g.breached() && !was {
            let note = format!(
                "guard {} breached (value {}): replicas raised over the current count, no scale-down until healthy for its holdWindow",
                g.name,
                g.value.map_or_else(|| "none".into(), |v| v.to_string())
            );
            events::publish(
                run.ctx,
                run.ps,
                EventType::Warning,
                "Scale",
                GUARD_BREACHED,
                note,
            )
            .await;
        } else if was && matches!(g.state, GuardState::Healthy) {
            let note = format!(
                "guard {} healthy for its holdWindow: scale-down allowed again",
                g.name
            );
            events::publish(
                run.ctx,
                run.ps,
                EventType::Normal,
                "Scale",
                GUARD_RECOVERED,
                note,
            )
            .await;
        }
    }
    breached.retain(|n| {
        decision
            .guards
            .iter()
            .any(|g| &g.name == n && !matches!(g.state, GuardState::Healthy))
    });
    for g in decision.guards.iter().filter(|g| g.breached()) {
        if !breached.contains(&g.name) {
            breached.push(g.name.clone());
        }
    }
}
