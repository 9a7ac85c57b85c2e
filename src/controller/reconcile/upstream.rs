//! The upstream limits (`spec.upstream`) for stage 4: each limit's query read through the same
//! sources layer as the metrics and guards ([`guards::latest`]), and what the ceiling shows
//! (an event when it starts to cap the count, the `prescale_upstream_*` gauges). What a limit
//! does is the planner's rule ([`crate::planner::upstream`]).

use kube::{ResourceExt, runtime::events::EventType};
use tracing::warn;

use super::{Run, events, guards};
use crate::{
    api::ScalerConfig,
    planner::{Decision, QuotaFailure, QuotaReading},
};

/// Event reasons: the ceiling starts to cap the count, and stops.
pub(super) const UPSTREAM_LIMITED: &str = "UpstreamLimited";
pub(super) const UPSTREAM_CLEARED: &str = "UpstreamCleared";

/// The latest value of each limit that has a query, by metric.
pub(super) async fn read(run: &Run<'_>, config: &ScalerConfig) -> Vec<QuotaReading> {
    if config.upstream.iter().all(|u| u.query.is_none()) {
        return Vec::new();
    }
    let labels = run.namespace_labels(config).await;
    let mut out = Vec::new();
    for u in &config.upstream {
        let Some(query) = &u.query else { continue };
        let value = guards::latest(run, labels, &u.source, query)
            .await
            .map_err(|f| QuotaFailure {
                reason: f.reason,
                message: f.message,
            });
        if let Err(f) = &value {
            warn!(metric = %u.quota.metric, source = %u.source, reason = f.reason, error = %f.message, "upstream limit query failed");
        }
        out.push(QuotaReading {
            metric: u.quota.metric.clone(),
            value,
        });
    }
    out
}

/// The ceiling of `decision` on the gauges, and a Normal event when it starts to cap the
/// count and when it stops (`limited`: whether it did at the last evaluation, updated).
pub(super) async fn report(
    run: &Run<'_>,
    config: &ScalerConfig,
    decision: &Decision,
    limited: &mut bool,
) {
    let name = run.ps.name_any();
    let limited_now = (!config.upstream.is_empty()).then_some(decision.upstream_limited);
    let admits: Vec<(String, Option<u32>)> = decision
        .upstream
        .iter()
        .map(|q| (q.metric.clone(), q.admits))
        .collect();
    run.ctx
        .metrics
        .set_upstream(run.namespace, &name, limited_now, &admits);
    if decision.upstream_limited && !*limited {
        let note = format!(
            "{}; ask the provider for more quota rather than for more replicas",
            decision
                .upstream
                .iter()
                .find(|q| q.binds())
                .map(|q| {
                    format!(
                        "the upstream limit of metric {} ({}/min) admits {} replicas, {} asked: capped at {}",
                        q.metric,
                        crate::planner::upstream::fmt_limit(q.per_minute.unwrap_or_default()),
                        q.admits.unwrap_or_default(),
                        q.asked.unwrap_or_default(),
                        decision.upstream_ceiling.unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "the upstream limits cap the replicas".into())
        );
        events::publish(
            run.ctx,
            run.ps,
            EventType::Normal,
            "Scale",
            UPSTREAM_LIMITED,
            note,
        )
        .await;
    } else if !decision.upstream_limited && *limited {
        let note = format!(
            "the upstream limits no longer cap the count: {} replicas recommended",
            decision.recommended
        );
        events::publish(
            run.ctx,
            run.ps,
            EventType::Normal,
            "Scale",
            UPSTREAM_CLEARED,
            note,
        )
        .await;
    }
    *limited = decision.upstream_limited;
}
