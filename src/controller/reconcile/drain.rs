//! `scaleDown.drainAware` before a scale-down (stage 5, `Active`, a `/scale` target): the
//! target's pods (by the selector its `/scale` reports), each pod's in-flight value from the
//! pod query, and the `controller.kubernetes.io/pod-deletion-cost` annotations that changed
//! (merge patches, at most [`MAX_UPDATES_PER_EVALUATION`] per evaluation). Which cost each pod
//! gets and whether the scale-down waits are the planner's rules ([`crate::planner::drain`]).
//!
//! IO: `/scale` (get), pods (list, patch), the source (an instant query), events.

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
};

/// Event reasons of drain-aware scale-in.
const DRAIN_AWARE: &str = "DrainAware";
const DRAIN_AWARE_SKIPPED: &str = "DrainAwareSkipped";

/// What a scale-down does after drain-aware scale-in had its say.
pub(super) enum Prepared {
    /// Scale down: the costs are set, or could not be had for `maxWait` (an event says so).
    Go,
    /// Hold the current count; why (for `AbleToScale`).
    Hold(String),
}

/// The costs set and what they were.
struct Annotated {
    pods: usize,
    plan: CostPlan,
}

/// Before lowering `target` to `desired`: with `scaleDown.drainAware`, sets the pods' deletion
/// costs, or holds the scale-down while they cannot be set (up to `maxWait`). Without it, or
/// when nothing goes down, [`Prepared::Go`].
pub(super) async fn prepare(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    target: &Target<'_>,
    desired: u32,
) -> Prepared {
    let Some(drain) = &config.drain_aware else {
        return Prepared::Go;
    };
    if desired >= target.current {
        return Prepared::Go;
    }
    let _stage = Stage::enter("drain aware");
    let annotated = annotate(run, drain, target).await;
    let max_wait = drain.max_wait.as_secs() as i64;
    let verdict = gate(&mut state.drain, run.now_s(), annotated.is_ok(), max_wait);
    match (verdict, annotated) {
        (Gate::Proceed, Ok(a)) => {
            announce(run, target, desired, &a).await;
            Prepared::Go
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
            Prepared::Go
        }
        // the gate proceeds exactly when the costs were set
        (_, _) => Prepared::Go,
    }
}

/// The Normal event `DrainAware` and the log line of a scale-down with costs set.
async fn announce(run: &Run<'_>, target: &Target<'_>, desired: u32, a: &Annotated) {
    let idlest: Vec<String> = a
        .plan
        .costs
        .iter()
        .take((target.current - desired) as usize)
        .map(|c| format!("{} ({})", c.pod, c.cost))
        .collect();
    let unmeasured = match a.plan.unmeasured {
        0 => String::new(),
        n => format!("; {n} without a value counted as busy as the busiest"),
    };
    let note = format!(
        "set pod-deletion-cost on {} of {} pods of {} before scaling down from {} to {desired}; idlest: {}{unmeasured}",
        a.plan.updates.len(),
        a.pods,
        target.desc,
        target.current,
        idlest.join(", ")
    );
    info!(
        updated = a.plan.updates.len(),
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

/// The pods, their values and the annotations that changed, written; or why not.
async fn annotate(
    run: &Run<'_>,
    drain: &DrainAwareConfig,
    target: &Target<'_>,
) -> Result<Annotated, String> {
    let selector = read_selector(target).await?;
    let pods = list_pods(run, target, &selector).await?;
    let values = read_values(run, drain).await?;
    let plan = plan_costs(&pods, &values, MAX_UPDATES_PER_EVALUATION).map_err(
        |NoPodValues { pods, series }| {
            format!(
                "podQuery has no value for any of the {pods} pods of {} ({series} series with a {:?} label)",
                target.desc, drain.pod_label
            )
        },
    )?;
    write_costs(run, &plan).await?;
    if plan.deferred > 0 {
        return Err(format!(
            "set pod-deletion-cost on {} pods; {} more at the next evaluation (at most {MAX_UPDATES_PER_EVALUATION} each)",
            plan.updates.len(),
            plan.deferred
        ));
    }
    Ok(Annotated {
        pods: pods.len(),
        plan,
    })
}

/// The label selector of the target's pods, from its `/scale` (`status.selector`).
async fn read_selector(target: &Target<'_>) -> Result<String, String> {
    let scale = target::bounded(target.api.get_scale(&target.reference.name))
        .await
        .map_err(|e| format!("reading the scale of {}: {e}", target.desc))?;
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

/// The target's pods that are not already terminating, with their deletion-cost annotation.
async fn list_pods(run: &Run<'_>, target: &Target<'_>, selector: &str) -> Result<Vec<Pod>, String> {
    let api: Api<K8sPod> = Api::namespaced(run.ctx.client.clone(), run.namespace);
    let list = target::bounded(api.list(&ListParams::default().labels(selector)))
        .await
        .map_err(|e| pod_error(&format!("listing the pods of {}", target.desc), &e))?;
    let pods: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| Pod {
            annotation: p.annotations().get(DELETION_COST_ANNOTATION).cloned(),
            name: p.name_any(),
        })
        .collect();
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

/// Each series of the pod query: the pod label's value and the value.
async fn read_values(
    run: &Run<'_>,
    drain: &DrainAwareConfig,
) -> Result<Vec<(String, f64)>, String> {
    let namespace_labels = namespace_labels(run, &drain.source).await;
    let resolved = run
        .ctx
        .sources
        .resolve(
            run.namespace,
            namespace_labels.as_ref(),
            &drain.source,
            &drain.query,
        )
        .map_err(|e| format!("podQuery: {e}"))?;
    let result = timed_query(
        run,
        &drain.source,
        resolved
            .source
            .instant_by_label(&resolved.query, &drain.pod_label, run.now_s()),
    )
    .await;
    result.map_err(|e| format!("podQuery ({}): {e}", e.reason()))
}

/// The scaler's namespace labels, when the source's access depends on them
/// (`allowedNamespaceSelector`).
async fn namespace_labels(
    run: &Run<'_>,
    source: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    let access = run.ctx.sources.access(source)?;
    if !access.needs_labels() {
        return None;
    }
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(run.ctx.client.clone());
    match target::bounded(api.get_metadata(run.namespace)).await {
        Ok(ns) => Some(ns.metadata.labels.unwrap_or_default()),
        Err(e) => {
            warn!(error = %e, "cannot read the namespace's labels for the pod query's source");
            None
        }
    }
}

/// The changed annotations, written (a pod gone meanwhile is skipped), counted.
async fn write_costs(run: &Run<'_>, plan: &CostPlan) -> Result<(), String> {
    if plan.updates.is_empty() {
        return Ok(());
    }
    let api: Api<K8sPod> = Api::namespaced(run.ctx.client.clone(), run.namespace);
    let counter = run
        .ctx
        .metrics
        .pod_deletion_cost_updates
        .get_or_create(&scaler_labels(run))
        .clone();
    for update in &plan.updates {
        let Some(budget) = run.ctx.write_budget() else {
            return Err("no longer the leader: pod-deletion-cost not written".into());
        };
        let patch = json!({"metadata": {"annotations": {DELETION_COST_ANNOTATION: update.cost.to_string()}}});
        let params = target::patch_params();
        match target::within(
            budget,
            api.patch(&update.pod, &params, &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => {
                counter.inc();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let what = format!("setting pod-deletion-cost on pod {}", update.pod);
                return Err(pod_error(&what, &e));
            }
        }
    }
    Ok(())
}
