//! `scaleDown.drainAware` before a scale-down (stage 5, `Active`, a `/scale` target): the
//! target's pods (by the selector its `/scale` reports; their metadata only, a page at a
//! time), each pod's in-flight value from the pod query, and the
//! `controller.kubernetes.io/pod-deletion-cost` annotations of the pods that go (merge patches,
//! at most [`MAX_UPDATES_PER_EVALUATION`] per evaluation; a larger scale-down goes in steps).
//! Which pods go, their costs and whether the scale-down waits are the planner's rules
//! ([`crate::planner::drain`]).
//!
//! IO: `/scale` (get), pods (list metadata, patch metadata), the source (an instant query),
//! events.

use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch},
    runtime::events::EventType,
};
use serde_json::json;
use tracing::{info, warn};

use super::{Run, ScalerState, Stage, Target, events, timed_query};
use crate::{
    api::{DrainAwareConfig, ScalerConfig},
    controller::target,
    metrics::ScalerLabels,
    planner::drain::{
        CostPlan, DELETION_COST_ANNOTATION, Gate, MAX_UPDATES_PER_EVALUATION, NoPodValues, Pod,
        gate, plan_costs,
    },
    sources::MAX_LABELLED_SERIES,
};

/// Event reasons of drain-aware scale-in.
const DRAIN_AWARE: &str = "DrainAware";
const DRAIN_AWARE_SKIPPED: &str = "DrainAwareSkipped";

/// Pods listed per request (metadata only): one page in memory at a time.
const POD_PAGE: u32 = 500;

/// The idlest pods an event names; the others are counted.
const NAMED_IN_EVENT: usize = 10;

/// What a scale-down does after drain-aware scale-in had its say.
pub(super) enum Prepared {
    /// Lower the count to `to`: the plan's count, or a step towards it when its pods need
    /// more writes than one evaluation makes; the costs are set, or could not be had for
    /// `maxWait` (an event says so).
    Go { to: u32 },
    /// Hold the current count; why (for `AbleToScale`).
    Hold(String),
}

/// The pods that go, their costs set.
struct Annotated {
    /// The target's pods (not terminating).
    pods: usize,
    /// How many of them the scale-down to `desired` removes.
    leaving: usize,
    plan: Option<CostPlan>,
}

impl Annotated {
    /// How many go now.
    fn going(&self) -> usize {
        self.plan.as_ref().map_or(0, |p| p.going)
    }
}

/// Before lowering `target` to `desired`: with `scaleDown.drainAware`, sets the deletion costs
/// of the pods that go, or holds the scale-down while they cannot be set (up to `maxWait`).
/// Without it, or when nothing goes down, [`Prepared::Go`] to `desired`.
pub(super) async fn prepare(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    target: &Target<'_>,
    desired: u32,
) -> Prepared {
    let all_the_way = Prepared::Go { to: desired };
    let Some(drain) = &config.drain_aware else {
        return all_the_way;
    };
    if desired >= target.current {
        return all_the_way;
    }
    let _stage = Stage::enter("drain aware");
    let annotated = annotate(run, config, drain, target, desired).await;
    let max_wait = drain.max_wait.as_secs() as i64;
    let verdict = gate(&mut state.drain, run.now_s(), annotated.is_ok(), max_wait);
    match (verdict, annotated) {
        (Gate::Proceed, Ok(a)) if a.leaving > 0 && a.going() == 0 => Prepared::Hold(format!(
            "holding {} replicas (the plan wants {desired}): pods that stay hold a pod-deletion-cost as \
                 low as those prescale gives the pods that go; their annotations are removed first (at most \
                 {MAX_UPDATES_PER_EVALUATION} per evaluation)",
            target.current
        )),
        (Gate::Proceed, Ok(a)) => {
            let to = step_to(target.current, desired, &a);
            announce(run, target, desired, to, &a).await;
            Prepared::Go { to }
        }
        (Gate::Wait { until }, Err(why)) => {
            let at = k8s_openapi::jiff::Timestamp::from_second(until)
                .map(|t| t.to_string())
                .unwrap_or_default();
            warn!(%why, "drain-aware scale-in: the scale-down waits");
            Prepared::Hold(format!(
                "holding {} replicas (the plan wants {desired}): {why}; the scale-down goes ahead without \
                 pod-deletion-cost at {at} at the latest (scaleDown.drainAware.maxWait)",
                target.current
            ))
        }
        (Gate::GiveUp { .. }, Err(why)) => {
            skipped(run, target, desired, &why).await;
            all_the_way
        }
        // the gate proceeds exactly when the costs were set
        (_, _) => all_the_way,
    }
}

/// The count to set: `desired` when every pod that must go has its cost, else a step down
/// by the pods that have (the rest go at the next evaluation).
fn step_to(current: u32, desired: u32, a: &Annotated) -> u32 {
    let going = a.going();
    if going >= a.leaving {
        return desired;
    }
    let going = u32::try_from(going).unwrap_or(u32::MAX);
    current.saturating_sub(going).max(desired)
}

/// The Normal event `DrainAware` and the log line of a scale-down with costs set.
async fn announce(run: &Run<'_>, target: &Target<'_>, desired: u32, to: u32, a: &Annotated) {
    let Some(plan) = &a.plan else {
        return;
    };
    let mut idlest: Vec<String> = plan
        .ranked
        .iter()
        .take(plan.going.min(NAMED_IN_EVENT))
        .map(|c| format!("{} ({})", c.pod, c.load))
        .collect();
    if plan.going > NAMED_IN_EVENT {
        idlest.push(format!("and {} more", plan.going - NAMED_IN_EVENT));
    }
    let unmeasured = match plan.unmeasured {
        0 => String::new(),
        n => format!("; {n} without a value counted as busy as the busiest"),
    };
    let rest = if to == desired {
        String::new()
    } else {
        format!(
            "; the rest of the scale-down to {desired} at the next evaluation (at most \
             {MAX_UPDATES_PER_EVALUATION} pods annotated per evaluation)"
        )
    };
    let note = format!(
        "set pod-deletion-cost on {} of {} pods of {} before scaling down from {} to {to}; the {} idlest go: {}{unmeasured}{rest}",
        plan.writes.len(),
        a.pods,
        target.desc,
        target.current,
        plan.going,
        idlest.join(", ")
    );
    info!(
        written = plan.writes.len(),
        going = plan.going,
        pods = a.pods,
        "pod deletion costs set"
    );
    events::scale_event(run.ctx, run.ps, run.namespace, DRAIN_AWARE, note).await;
}

/// A scale-down without costs after `maxWait`: a Warning event and the counter.
async fn skipped(run: &Run<'_>, target: &Target<'_>, desired: u32, why: &str) {
    warn!(%why, "drain-aware scale-in: scaling down without pod deletion costs");
    run.ctx
        .metrics
        .drain_aware_skipped
        .get_or_create(&scaler_labels(run))
        .inc();
    let note = format!(
        "scaling {} down from {} to {desired} without pod-deletion-cost after scaleDown.drainAware.maxWait: {why}",
        target.desc, target.current
    );
    events::publish(
        run.ctx,
        run.ps,
        EventType::Warning,
        "Scale",
        DRAIN_AWARE_SKIPPED,
        note,
    )
    .await;
}

fn scaler_labels(run: &Run<'_>) -> ScalerLabels {
    ScalerLabels {
        namespace: run.namespace.to_string(),
        name: run.ps.name_any(),
    }
}

/// The pods, which go, and their costs written; or why not. When no pod goes (the target
/// has no more pods than `desired`), nothing is read or written.
async fn annotate(
    run: &Run<'_>,
    config: &ScalerConfig,
    drain: &DrainAwareConfig,
    target: &Target<'_>,
    desired: u32,
) -> Result<Annotated, String> {
    let selector = read_selector(target).await?;
    let pods = list_pods(run, target, &selector).await?;
    // what the ReplicaSet removes: the pods it has beyond `desired`, at most the count lowered
    // (more pods than replicas: the ReplicaSet is still removing some)
    let leaving = pods
        .len()
        .min(target.current as usize)
        .saturating_sub(desired as usize);
    if leaving == 0 {
        return Ok(Annotated {
            pods: pods.len(),
            leaving,
            plan: None,
        });
    }
    let max_series = MAX_LABELLED_SERIES.max(2 * pods.len());
    let values = read_values(run, config, drain, max_series).await?;
    let plan = plan_costs(&pods, &values, leaving, MAX_UPDATES_PER_EVALUATION).map_err(
        |NoPodValues { pods, series }| {
            format!(
                "podQuery has no value for any of the {pods} pods of {} ({series} series with a {:?} label)",
                target.desc, drain.pod_label
            )
        },
    )?;
    write_costs(run, &plan).await?;
    Ok(Annotated {
        pods: pods.len(),
        leaving,
        plan: Some(plan),
    })
}

/// The label selector of the target's pods, from its `/scale` (`status.selector`).
async fn read_selector(target: &Target<'_>) -> Result<String, String> {
    let scale = target::bounded(target.api.get_scale(&target.reference.name))
        .await
        .map_err(|e| {
            format!(
                "reading the scale of {}: {}",
                target.desc,
                crate::error::plain(&e)
            )
        })?;
    scale
        .status
        .and_then(|s| s.selector)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "{} reports no status.selector in its /scale: its pods cannot be found",
                target.desc
            )
        })
}

/// The target's pods that are not already terminating, with their deletion-cost annotation:
/// their metadata only, [`POD_PAGE`] at a time, keeping the name and that annotation of each.
async fn list_pods(run: &Run<'_>, target: &Target<'_>, selector: &str) -> Result<Vec<Pod>, String> {
    let api: Api<K8sPod> = Api::namespaced(run.ctx.client.clone(), run.namespace);
    let mut params = ListParams::default().labels(selector).limit(POD_PAGE);
    let mut pods = Vec::new();
    loop {
        let page = target::bounded(api.list_metadata(&params))
            .await
            .map_err(|e| pod_error(&format!("listing the pods of {}", target.desc), &e))?;
        pods.extend(
            page.items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| Pod {
                    annotation: p
                        .metadata
                        .annotations
                        .and_then(|mut a| a.remove(DELETION_COST_ANNOTATION)),
                    name: p.metadata.name.unwrap_or_default(),
                }),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    if pods.is_empty() {
        return Err(format!(
            "no pod of {} matches its selector {selector}",
            target.desc
        ));
    }
    Ok(pods)
}

/// A pod request's failure; a refusal names the RBAC the operator lacks.
fn pod_error(what: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{what} is forbidden: drain-aware scale-in needs get, list and patch on pods (the chart's \
             drainAware.enabled=true): {}",
            s.message
        ),
        other => format!("{what}: {other}"),
    }
}

/// Each series of the pod query: the pod label's value and the value; more than `max_series`
/// series is an error.
async fn read_values(
    run: &Run<'_>,
    config: &ScalerConfig,
    drain: &DrainAwareConfig,
    max_series: usize,
) -> Result<Vec<(String, f64)>, String> {
    let labels = run.namespace_labels(config).await;
    let resolved = run
        .ctx
        .sources
        .resolve(run.namespace, labels, &drain.source, &drain.query)
        .map_err(|e| format!("podQuery: {e}"))?;
    let result = timed_query(
        run,
        &drain.source,
        resolved.source.instant_by_label(
            &resolved.query,
            &drain.pod_label,
            run.now_s(),
            max_series,
        ),
    )
    .await;
    result.map_err(|e| format!("podQuery ({}): {e}", e.reason()))
}

/// The plan's writes (a merge patch of each pod's metadata: the cost set, or the annotation
/// removed; a pod gone meanwhile is skipped), counted.
async fn write_costs(run: &Run<'_>, plan: &CostPlan) -> Result<(), String> {
    if plan.writes.is_empty() {
        return Ok(());
    }
    let api: Api<K8sPod> = Api::namespaced(run.ctx.client.clone(), run.namespace);
    let counter = run
        .ctx
        .metrics
        .pod_deletion_cost_updates
        .get_or_create(&scaler_labels(run))
        .clone();
    let params = target::patch_params();
    for write in &plan.writes {
        let Some(budget) = run.ctx.write_budget() else {
            return Err("no longer the leader: pod-deletion-cost not written".into());
        };
        let value = write.cost.map(|c| c.to_string());
        let patch = json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: value}}});
        match target::within(
            budget,
            api.patch_metadata(&write.pod, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => {
                counter.inc();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let what = format!("setting pod-deletion-cost on pod {}", write.pod);
                return Err(pod_error(&what, &e));
            }
        }
    }
    Ok(())
}
