//! `scaleUp.leadTime: Auto`, the IO around the pure
//! [`LeadTimeLearner`](crate::planner::LeadTimeLearner): after the target is
//! read, its ready replicas (`status.readyReplicas`) close the scale-ups waiting for them, and
//! the learned lead time replaces the config's for the forecast's sizing and the plan. The
//! target writes ([`record`]) open new ones; `status.leadTime` shows the result and keeps the
//! measurements and the scale-ups still waiting across restarts.

use tracing::debug;

use super::{Run, ScalerState, Stage, Target};
use crate::{
    api::{LeadTimeStatus, ScalerConfig},
    controller::{status, target},
    planner::lead_time::{DEFAULT_LEAD_TIME, LEAD_TIME_QUANTILE, MAX_LEAD_TIME, lead_time_bounds},
};

/// With `leadTime: Auto`: feeds the target's ready replicas to the scaler's learner (restored
/// from the stored status after a restart), sets `config.lead_time` to the learned value and
/// keeps the status to report in `state`. Without it, forgets any learner.
pub(super) async fn learn(
    run: &Run<'_>,
    config: &mut ScalerConfig,
    state: &mut ScalerState,
    target: &Target<'_>,
) {
    if !config.lead_time_auto {
        state.lead_time = None;
        state.lead_time_status = None;
        return;
    }
    let _stage = Stage::enter("learn lead time");
    let workload = target
        .floor
        .as_ref()
        .map_or(&target.reference.name, |(o, _)| &o.workload.name);
    let (ready, message) = match target::get_ready_replicas(&target.api, workload).await {
        Ok(Some(r)) => (Some(r), None),
        Ok(None) => (
            None,
            Some(format!(
                "{} reports no status.readyReplicas: the lead time cannot be measured",
                target.desc
            )),
        ),
        Err(e) => (
            None,
            Some(format!(
                "reading the ready replicas of {}: {}",
                target.desc,
                crate::error::plain(&e)
            )),
        ),
    };
    let bounds = lead_time_bounds(config.horizon, config.step);
    let learner = state
        .lead_time
        .get_or_insert_with(|| status::stored_lead_time(run.previous()));
    let max = MAX_LEAD_TIME.min(bounds.1);
    learner.observe_ready(run.now_s(), ready, max);
    let (lead_time, source) = learner.lead_time(DEFAULT_LEAD_TIME, bounds, LEAD_TIME_QUANTILE);
    debug!(?ready, ?lead_time, ?source, "lead time");
    config.lead_time = lead_time;
    state.lead_time_status = Some(status::lead_time_status(
        learner, lead_time, source, max, message,
    ));
}

/// A target write from `from` to `to` replicas at this reconcile's instant: a scale-up waits
/// for its ready replicas, a scale-down drops the scale-ups it supersedes.
pub(super) fn record(run: &Run<'_>, state: &mut ScalerState, from: u32, to: u32) {
    if let Some(learner) = state.lead_time.as_mut() {
        learner.record_scale(run.now_s(), from, to);
        // in this reconcile's status already: a restart before the next one measures it too
        if let Some(s) = state.lead_time_status.as_mut() {
            s.pending = status::pending_scale_ups(learner);
        }
    }
}

/// `status.leadTime` to write: the learner's with `leadTime: Auto` (the stored one when this
/// reconcile ended before it learned), none without.
pub(super) fn status_of(run: &Run<'_>, state: &ScalerState) -> Option<LeadTimeStatus> {
    if run.ps.spec.scale_up.lead_time != "Auto" {
        return None;
    }
    state
        .lead_time_status
        .clone()
        .or_else(|| run.previous().and_then(|p| p.lead_time.clone()))
}
