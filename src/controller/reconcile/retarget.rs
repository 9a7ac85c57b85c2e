//! A scaler retargeted away from a floor object: when `scaleTargetRef` no longer names the
//! HorizontalPodAutoscaler or ScaledObject that `status.floorTarget` records, that object's
//! owner's floor is put back while the field is still prescale's (a Normal event
//! `FloorRestored` either way), and the finalizer goes when the new target is not a floor
//! object. A failure is retried at the next reconcile, and the status keeps the old object
//! until then (a deletion gives it up after a few refusals: `floor_mode::finalize`). Which
//! object that is, is the pure rule of [`floor::retargeted_from`].

use tracing::warn;

use super::{Run, floor_mode};
use crate::{
    api::ScaleTargetRef,
    controller::floor::{self, FloorKind},
};

/// Puts back the floor of the object `status.floorTarget` records when the spec now names
/// another target. Returns that object while its floor is not back (for the status), `None`
/// when there is nothing left to restore.
pub(super) async fn restore_previous(run: &Run<'_>) -> Option<ScaleTargetRef> {
    let spec = &run.ps.spec.scale_target_ref;
    let recorded = run.previous().and_then(|s| s.floor_target.as_ref());
    let old = floor::retargeted_from(recorded, spec)?;
    let kind = FloorKind::of(old)?;
    let Some(budget) = run.ctx.write_budget() else {
        return Some(old.clone());
    };
    let client = &run.ctx.client;
    let mut restored = floor::restore(client, run.namespace, old, budget).await;
    if restored.is_ok() && FloorKind::of(spec).is_none() && floor::has_finalizer(run.ps) {
        restored = match floor::set_finalizer(client, run.ps, false, budget).await {
            Ok(()) => restored,
            Err(e) => Err(e),
        };
    }
    match restored {
        Ok(restored) => {
            let why = format!("the scaler now targets {} {}", spec.kind, spec.name);
            floor_mode::announce_restore(run, old, &restored, &why).await;
            None
        }
        Err(e) => {
            let problem = floor::describe(kind, &e);
            warn!(kind = %old.kind, name = %old.name, %problem, "putting back the floor of the earlier target failed; retrying at the next reconcile");
            Some(old.clone())
        }
    }
}
