//! A scaler retargeted away from a floor object: when `scaleTargetRef` no longer names the
//! HorizontalPodAutoscaler or ScaledObject that `status.floorTarget` records, that object's
//! original floor is put back (a Normal event `FloorRestored`), and the finalizer goes when the
//! new target is not a floor object. A failure is retried at the next reconcile, and the status
//! keeps the old object until then. Which object that is, is the pure rule of
//! [`floor::retargeted_from`].

use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::{Run, events};
use crate::{
    api::ScaleTargetRef,
    controller::floor::{self, FloorKind},
};

/// Event reason when an earlier target's floor is put back.
pub(super) const FLOOR_RESTORED: &str = "FloorRestored";

/// Puts back the floor of the object `status.floorTarget` records when the spec now names
/// another target. Returns that object while its floor is not back (for the status), `None`
/// when there is nothing left to restore.
pub(super) async fn restore_previous(run: &Run<'_>) -> Option<ScaleTargetRef> {
    let spec = &run.ps.spec.scale_target_ref;
    let recorded = run.previous().and_then(|s| s.floor_target.as_ref());
    let old = floor::retargeted_from(recorded, spec)?;
    let Some(budget) = run.ctx.write_budget() else {
        return Some(old.clone());
    };
    let client = &run.ctx.client;
    let mut restored = floor::restore(client, run.namespace, old).await;
    if restored.is_ok() && FloorKind::of(spec).is_none() && floor::has_finalizer(run.ps) {
        restored = floor::set_finalizer(client, run.ps, false, budget).await;
    }
    if let Err(e) = restored {
        warn!(kind = %old.kind, name = %old.name, error = %e, "putting back the floor of the earlier target failed; retrying at the next reconcile");
        return Some(old.clone());
    }
    info!(kind = %old.kind, name = %old.name, "retargeted: the earlier target's floor is back");
    let note = format!(
        "put back the original floor of {} {}: the scaler now targets {} {}",
        old.kind, old.name, spec.kind, spec.name
    );
    events::publish(
        run.ctx,
        run.ps,
        EventType::Normal,
        "Scale",
        FLOOR_RESTORED,
        note,
    )
    .await;
    None
}
