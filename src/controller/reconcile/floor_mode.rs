//! The writes of floor mode (the rules are `controller::floor`'s): the floor set in `Active`
//! mode ([`set_floor`], or a `FloorConflict` when another writer holds it), put back in
//! `DryRun` ([`restore_floor`]), and put back when the scaler is deleted ([`finalize`]), where a
//! restore the API server keeps refusing is given up after [`RESTORE_ATTEMPTS`] so that a
//! deletion never hangs on it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{End, Next, Run, ScalerState, Target, Then, Written, events, lead_time, write_status};
use crate::{
    Error, Result,
    api::{ScaleTargetRef, ScalerConfig, conditions::reasons},
    controller::{
        floor::{self, FINALIZER, FloorKind, FloorWrite, ORIGINAL_MIN_ANNOTATION, Restore},
        status,
    },
    planner::{self, Decision},
};

/// How many times a deleted scaler tries to put back a floor the API server refuses
/// ([`floor::refused`]: forbidden, its CRD not installed, invalid) before it gives up and
/// removes its finalizer. The tries are a reconcile's retries, so they back off from the sync
/// interval (doubling: a few minutes at the default 30s, about 15 s in the tests' 1s).
pub(super) const RESTORE_ATTEMPTS: u32 = 5;

/// Event reason when a floor is put back (or left to the writer that set it since).
const FLOOR_RESTORED: &str = "FloorRestored";

/// Event reason when a deleted scaler gives up putting a floor back.
const FLOOR_NOT_RESTORED: &str = "FloorNotRestored";

/// `Active` in floor mode: the decision's count, within the object's own maximum and never
/// below its owner's floor (unless `floor.allowBelowOwner`), as its floor: applied when it
/// differs (after the finalizer that restores it), with a `FloorRaised` or `FloorLowered`
/// event; the autoscaler scales above it. A change spends the rate budget like a scale. When
/// another writer holds the floor at another value, prescale leaves it and reports
/// `FloorConflict`.
pub(super) async fn set_floor(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    target: &Target<'_>,
    decision: &Decision,
) -> Result<Written, End> {
    let (obj, api) = target.floor.as_ref().expect("floor mode");
    let owner = (!config.floor_below_owner).then(|| floor::owner_floor(obj));
    let value = floor::floor_value(decision.desired, obj.max, owner);
    let (apply, conflict) = match floor::plan_write(obj, value) {
        FloorWrite::Nothing => return Ok(Written::unchanged(status::Write::Active(Ok(())))),
        FloorWrite::Apply(apply) => (Some(apply), None),
        FloorWrite::Conflict {
            wanted,
            holders,
            record,
        } => {
            let by = format!("set by {}", floor::writers(&holders));
            (record, Some(conflict_message(target, obj, &by, wanted)))
        }
    };
    if let Some(apply) = &apply {
        let Some(budget) = run.ctx.write_budget() else {
            return Err(End::LeaseLost);
        };
        let written = match floor::set_finalizer(&run.ctx.client, run.ps, true, budget).await {
            Ok(()) => floor::apply(api, &target.reference.name, obj, apply, budget).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {}
            // another writer took the field between the read and the apply
            Err(e) if floor::field_conflict(&e) => {
                let why = conflict_message(target, obj, &crate::error::plain(&e), value);
                return Ok(Written::unchanged(status::Write::FloorConflict(why)));
            }
            Err(e) => {
                warn!(error = %crate::error::plain(&e), "setting the floor failed");
                let message = format!(
                    "updating the floor of {}: {}",
                    target.desc,
                    floor::describe(obj.kind, &e)
                );
                let write = status::Write::Active(Err(message));
                let report = status::Report::decided(decision, target.current, &write, None, &[]);
                return Err(End::report(report, Then::Retry(Error::UpdateScale(e))));
            }
        }
    }
    if let Some(why) = conflict {
        info!(%why, "the floor is another writer's; left as it is");
        return Ok(Written::unchanged(status::Write::FloorConflict(why)));
    }
    let apply = apply.expect("a write");
    let Some(value) = apply.min.filter(|v| *v != obj.min) else {
        // the record alone (a takeover at the plan's value, or another writer's new value)
        info!(owner = apply.owner, "recorded the owner's floor");
        return Ok(Written::unchanged(status::Write::Active(Ok(()))));
    };
    planner::record_scale(&mut state.planner, run.now_s(), obj.min, value);
    lead_time::record(run, state, target.current, value);
    info!(
        from = obj.min,
        to = value,
        owner = apply.owner,
        "set the floor"
    );
    let note = format!(
        "set the floor of {} from {} to {value}; {}",
        target.desc,
        obj.min,
        events::why(decision)
    );
    let reason = if value > obj.min {
        "FloorRaised"
    } else {
        "FloorLowered"
    };
    events::scale_event(run.ctx, run.ps, run.namespace, reason, note).await;
    Ok(Written {
        write: status::Write::Active(Ok(())),
        scaled_at: Some(Time(run.now)),
    })
}

/// `FloorConflict`'s message: whose the floor is (`by`: "set by NAME", or the API server's
/// conflict), what prescale would set, and how to hand the floor back.
fn conflict_message(
    target: &Target<'_>,
    obj: &floor::FloorObject,
    by: &str,
    wanted: u32,
) -> String {
    format!(
        "{field} of {desc} is {value}, {by}: prescale does not overwrite another writer's floor \
         (it would set {wanted}). To hand the floor back to prescale, remove the annotation \
         {ORIGINAL_MIN_ANNOTATION} from the {kind} (prescale then keeps {value} as the owner's \
         floor and raises it from there); or stop the other writer from setting {field}",
        field = obj.field(),
        desc = target.desc,
        value = obj.min,
        kind = obj.kind.kind(),
    )
}

/// `DryRun` in floor mode: the floor prescale raised is put back (while it is prescale's) and
/// the finalizer goes.
pub(super) async fn restore_floor(run: &Run<'_>) -> Result<(), End> {
    let Some(budget) = run.ctx.write_budget() else {
        return Err(End::LeaseLost);
    };
    let client = &run.ctx.client;
    let spec = &run.ps.spec.scale_target_ref;
    let restored = match floor::restore(client, run.namespace, spec, budget).await {
        Ok(restored) => floor::set_finalizer(client, run.ps, false, budget)
            .await
            .map(|()| restored),
        Err(e) => Err(e),
    };
    match restored {
        Ok(restored) => {
            announce_restore(run, spec, &restored, "the scaler is in DryRun mode").await;
            Ok(())
        }
        Err(e) => {
            let kind = FloorKind::of(spec).expect("floor mode");
            let message = format!(
                "putting back the floor of {} {}/{}: {}",
                spec.kind,
                run.namespace,
                spec.name,
                floor::describe(kind, &e)
            );
            let then = Then::Retry(Error::Floor(e));
            Err(run.target_problem(reasons::FAILED_UPDATE_SCALE, &message, then))
        }
    }
}

/// A Normal event `FloorRestored` for what a restore of `target` did (`why`: what asked for
/// it); nothing when there was nothing to put back.
pub(super) async fn announce_restore(
    run: &Run<'_>,
    target: &ScaleTargetRef,
    restored: &Restore,
    why: &str,
) {
    let note = match restored {
        Restore::Nothing => return,
        Restore::PutBack { from, to } => {
            info!(kind = %target.kind, name = %target.name, from, to, "put the owner's floor back");
            format!(
                "put back the original floor of {} {}: {why}",
                target.kind, target.name
            )
        }
        Restore::LeaveOthers { value, holders } => {
            info!(kind = %target.kind, name = %target.name, value, "the floor is another writer's; left as it is");
            format!(
                "left the floor of {} {} at {value}, as {} set it since prescale's last write: {why}",
                target.kind,
                target.name,
                floor::writers(holders)
            )
        }
    };
    let normal = EventType::Normal;
    events::publish(run.ctx, run.ps, normal, "Scale", FLOOR_RESTORED, note).await;
}

/// A deleted scaler in floor mode: the floors it raised are put back (also an earlier target's
/// not yet restored, `retarget`), then its finalizer goes.
///
/// A transient failure is retried with backoff. A refusal the API server will repeat
/// ([`floor::refused`]) is reported (`AbleToScale=False`, `FloorRestoreFailed`, with a Warning
/// event the first time) and retried, and after [`RESTORE_ATTEMPTS`] refusals given up: a
/// Warning event `FloorNotRestored` names the object and what to set by hand, and the
/// finalizer goes.
pub(super) async fn finalize(run: &Run<'_>, state: &mut ScalerState) -> Result<Next> {
    let Some(budget) = run.ctx.write_budget() else {
        return Ok(Next::AwaitChange);
    };
    let client = &run.ctx.client;
    let spec = &run.ps.spec.scale_target_ref;
    let recorded = run.previous().and_then(|s| s.floor_target.as_ref());
    let old = floor::retargeted_from(recorded, spec);
    state.unrestored_floor = old.cloned();
    for target in old.into_iter().chain([spec]) {
        let Some(kind) = FloorKind::of(target) else {
            continue;
        };
        let key = format!("{}/{}", target.kind, target.name);
        let refused_before = state.restore_refusals.get(&key).copied().unwrap_or(0);
        if refused_before >= RESTORE_ATTEMPTS {
            continue; // given up already
        }
        match floor::restore(client, run.namespace, target, budget).await {
            Ok(restored) => {
                announce_restore(run, target, &restored, "the scaler is being deleted").await;
            }
            Err(e) if floor::refused(&e) => {
                let refusals = refused_before + 1;
                state.restore_refusals.insert(key, refusals);
                let what = format!(
                    "putting back the floor of {} {}/{}",
                    target.kind, run.namespace, target.name
                );
                let problem = floor::describe(kind, &e);
                if refusals < RESTORE_ATTEMPTS {
                    warn!(kind = %target.kind, name = %target.name, attempt = refusals, %problem, "putting back the floor was refused; retrying");
                    let message = format!(
                        "{what} failed: {problem}. prescale tries {RESTORE_ATTEMPTS} times, then \
                         removes its finalizer {FINALIZER} and leaves the floor as it is"
                    );
                    report_restore_failure(run, state, &message).await?;
                    return Err(Error::Floor(e));
                }
                give_up(run, kind, target, &what, &problem, floor::not_installed(&e)).await;
            }
            Err(e) => return Err(Error::Floor(e)),
        }
        if Some(target) == old {
            state.unrestored_floor = None;
        }
    }
    if let Err(e) = floor::set_finalizer(client, run.ps, false, budget).await {
        if !floor::refused(&e) {
            return Err(Error::Floor(e));
        }
        let message = format!(
            "removing the finalizer {FINALIZER} failed: {}. The operator needs patch on \
             predictivescalers (the chart's floorMode.enabled=true); or remove it by hand: \
             kubectl patch predictivescaler {} -n {} --type=merge -p \
             '{{\"metadata\":{{\"finalizers\":null}}}}'",
            crate::error::plain(&e),
            run.ps.metadata.name.as_deref().unwrap_or_default(),
            run.namespace
        );
        report_restore_failure(run, state, &message).await?;
        return Err(Error::Floor(e));
    }
    info!("floor restored; finalizer removed");
    Ok(Next::AwaitChange)
}

/// The status of a scaler being deleted whose floor restore failed (`AbleToScale=False`,
/// `FloorRestoreFailed`; the Warning event comes with its first write). The message carries no
/// attempt count, so later attempts leave the status as it is and do not trigger a reconcile
/// of their own.
async fn report_restore_failure(
    run: &Run<'_>,
    state: &mut ScalerState,
    message: &str,
) -> Result<()> {
    let report =
        status::Report::target_problem(run.previous(), reasons::FLOOR_RESTORE_FAILED, message);
    write_status(run, state, &report).await
}

/// Gives up putting back the floor of `target`: a Warning event names the object, what was
/// refused and what to set by hand.
async fn give_up(
    run: &Run<'_>,
    kind: FloorKind,
    target: &ScaleTargetRef,
    what: &str,
    problem: &str,
    not_installed: bool,
) {
    warn!(kind = %target.kind, name = %target.name, %problem, "gave up putting back the floor; removing the finalizer");
    let remedy = if not_installed {
        format!("there is no {} left to put back", kind.kind())
    } else {
        format!(
            "set spec.{} of {} {}/{} by hand (the owner's value is in its annotation \
             {ORIGINAL_MIN_ANNOTATION})",
            kind.min_field(),
            target.kind,
            run.namespace,
            target.name
        )
    };
    let note = format!(
        "gave up {what} after {RESTORE_ATTEMPTS} attempts: {problem}. The finalizer {FINALIZER} \
         is removed; {remedy}"
    );
    events::publish(
        run.ctx,
        run.ps,
        EventType::Warning,
        "Scale",
        FLOOR_NOT_RESTORED,
        note,
    )
    .await;
}
