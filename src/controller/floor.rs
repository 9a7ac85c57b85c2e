//! Floor mode: when `scaleTargetRef` names an `autoscaling/v2` HorizontalPodAutoscaler or a KEDA
//! `keda.sh/v1alpha1` ScaledObject, prescale writes the plan's count as that object's floor
//! (`spec.minReplicas` / `spec.minReplicaCount`), never above its own maximum, and the reactive
//! autoscaler keeps scaling above it.
//!
//! The object's floor before prescale's first write is kept in the annotation
//! [`ORIGINAL_MIN_ANNOTATION`] (written once, with that first write) and put back by
//! [`restore`] when the scaler is deleted (the [`FINALIZER`] waits for it), set to `DryRun`, or
//! retargeted to another object (`status.floorTarget` records the object: [`recorded_target`],
//! [`retargeted_from`]).
//! Writes follow `target.rs`' discipline: a JSON merge patch, only when a value differs.

use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, Patch},
    core::GroupVersionKind,
};
use serde_json::{Value, json};

use super::target;
use crate::api::{PredictiveScaler, ScaleTargetRef};

/// The annotation on the HPA/ScaledObject holding its floor from before prescale's first write.
pub const ORIGINAL_MIN_ANNOTATION: &str = "prescale.dev/original-min-replicas";

/// The finalizer of a scaler in floor mode: its deletion waits until the floor is restored.
/// Set by hand (`set_finalizer`), not with `kube::runtime::finalizer`: that helper puts its
/// finalizer on every object it reconciles, and only scalers in floor mode need one (deleting
/// any other scaler stays immediate, even with the operator down).
pub const FINALIZER: &str = "prescale.dev/restore-floor";

/// The autoscaler whose floor prescale sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorKind {
    /// An `autoscaling/v2` HorizontalPodAutoscaler (`spec.minReplicas`).
    Hpa,
    /// A KEDA `keda.sh/v1alpha1` ScaledObject (`spec.minReplicaCount`).
    Keda,
}

impl FloorKind {
    /// The floor kind a `scaleTargetRef` names, if any (any other target is scaled through
    /// `/scale`). `validate` refuses other versions of these kinds.
    pub fn of(target: &ScaleTargetRef) -> Option<Self> {
        match (target.api_version.as_str(), target.kind.as_str()) {
            ("autoscaling/v2", "HorizontalPodAutoscaler") => Some(Self::Hpa),
            ("keda.sh/v1alpha1", "ScaledObject") => Some(Self::Keda),
            _ => None,
        }
    }

    /// `status.targetMode` for a scaler on this kind.
    pub fn mode(self) -> &'static str {
        match self {
            Self::Hpa => "HPAFloor",
            Self::Keda => "KEDAFloor",
        }
    }

    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Self::Hpa => (
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
            Self::Keda => ("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    fn min_field(self) -> &'static str {
        match self {
            Self::Hpa => "minReplicas",
            Self::Keda => "minReplicaCount",
        }
    }

    fn max_field(self) -> &'static str {
        match self {
            Self::Hpa => "maxReplicas",
            Self::Keda => "maxReplicaCount",
        }
    }

    /// The floor the object has when its spec leaves it out (the HPA's default 1, KEDA's 0).
    fn default_min(self) -> u32 {
        match self {
            Self::Hpa => 1,
            Self::Keda => 0,
        }
    }
}

/// `status.targetMode` for a scaler on `target`: `Scale`, `HPAFloor` or `KEDAFloor`.
pub fn mode_of(target: &ScaleTargetRef) -> &'static str {
    FloorKind::of(target).map_or("Scale", FloorKind::mode)
}

/// What prescale reads of an HPA or a ScaledObject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloorObject {
    pub kind: FloorKind,
    /// Its floor now (the kind's default when the spec leaves it out).
    pub min: u32,
    /// Its maximum, if set.
    pub max: Option<u32>,
    /// Its floor from before prescale's first write, from the annotation.
    pub original: Option<u32>,
    /// The workload it scales (a ScaledObject's defaults to an `apps/v1` Deployment).
    pub workload: ScaleTargetRef,
}

impl FloorObject {
    /// Reads an HPA's or ScaledObject's fields from its JSON.
    pub fn read(kind: FloorKind, obj: &DynamicObject) -> Self {
        let spec = &obj.data["spec"];
        let count = |v: &Value| v.as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32);
        let target = &spec["scaleTargetRef"];
        let text = |key: &str, default: &str| {
            target[key]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        Self {
            kind,
            min: count(&spec[kind.min_field()]).unwrap_or(kind.default_min()),
            max: count(&spec[kind.max_field()]),
            original: obj
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ORIGINAL_MIN_ANNOTATION))
                .and_then(|v| v.parse().ok()),
            workload: ScaleTargetRef {
                api_version: text("apiVersion", "apps/v1"),
                kind: text("kind", "Deployment"),
                name: text("name", ""),
            },
        }
    }
}

/// The floor to write for the plan's `desired` count: never above the object's own maximum.
pub fn floor_value(desired: u32, object_max: Option<u32>) -> u32 {
    object_max.map_or(desired, |max| desired.min(max))
}

/// The scaler's `(minReplicas, maxReplicas)` for planning in floor mode: the object's own
/// maximum bounds the plan too, and the minimum stays under the maximum.
pub fn bounds(min: u32, max: u32, object_max: Option<u32>) -> (u32, u32) {
    let max = object_max.map_or(max, |m| max.min(m));
    (min.min(max), max)
}

/// The merge patch that sets the object's floor to `floor`, or `None` when it is already there.
/// The first write also records the floor it replaces; later writes (prescale's own values)
/// never overwrite that record.
pub fn floor_patch(obj: &FloorObject, floor: u32) -> Option<Value> {
    if obj.min == floor && obj.original.is_some() {
        return None;
    }
    let mut patch = json!({ "spec": { obj.kind.min_field(): floor } });
    if obj.original.is_none() {
        patch["metadata"] =
            json!({ "annotations": { ORIGINAL_MIN_ANNOTATION: obj.min.to_string() } });
    }
    Some(patch)
}

/// The merge patch that puts back the floor from before prescale's first write and removes
/// the annotation, or `None` when prescale never wrote this object's floor.
pub fn restore_patch(obj: &FloorObject) -> Option<Value> {
    let original = obj.original?;
    Some(json!({
        "metadata": { "annotations": { ORIGINAL_MIN_ANNOTATION: null } },
        "spec": { obj.kind.min_field(): original },
    }))
}

/// The API of `kind` in `namespace`.
pub fn api(client: &Client, namespace: &str, kind: FloorKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.resource())
}

/// The object, `Ok(None)` when it does not exist.
pub async fn get(
    api: &Api<DynamicObject>,
    kind: FloorKind,
    name: &str,
) -> Result<Option<FloorObject>, kube::Error> {
    let obj = target::bounded(api.get_opt(name)).await?;
    Ok(obj.map(|o| FloorObject::read(kind, &o)))
}

/// Sets the floor (when it differs) within `budget`; `Ok(true)` when it was written.
pub async fn set_floor(
    api: &Api<DynamicObject>,
    name: &str,
    obj: &FloorObject,
    floor: u32,
    budget: std::time::Duration,
) -> Result<bool, kube::Error> {
    let Some(patch) = floor_patch(obj, floor) else {
        return Ok(false);
    };
    let params = target::patch_params();
    target::within(budget, api.patch(name, &params, &Patch::Merge(&patch))).await?;
    Ok(true)
}

/// Puts the original floor of `target` back (when prescale changed it); a missing object is
/// nothing to restore.
pub async fn restore(
    client: &Client,
    namespace: &str,
    target: &ScaleTargetRef,
) -> Result<(), kube::Error> {
    let Some(kind) = FloorKind::of(target) else {
        return Ok(());
    };
    let api = api(client, namespace, kind);
    let Some(obj) = get(&api, kind, &target.name).await? else {
        return Ok(());
    };
    if let Some(patch) = restore_patch(&obj) {
        let params = target::patch_params();
        target::bounded(api.patch(&target.name, &params, &Patch::Merge(&patch))).await?;
    }
    Ok(())
}

/// `status.floorTarget`: the object whose floor prescale may have raised and not put back.
/// An old target not yet restored (`unrestored`) stays until its restore succeeds; else the
/// spec's target while it is a floor object in `Active` mode (a DryRun puts its floor back).
pub fn recorded_target(
    spec_target: &ScaleTargetRef,
    active: bool,
    unrestored: Option<&ScaleTargetRef>,
) -> Option<ScaleTargetRef> {
    if let Some(old) = unrestored {
        return Some(old.clone());
    }
    (active && FloorKind::of(spec_target).is_some()).then(|| spec_target.clone())
}

/// The floor object of an earlier `scaleTargetRef` (`recorded`, from the status) that is not
/// the spec's target any more: its floor is to be put back.
pub fn retargeted_from<'a>(
    recorded: Option<&'a ScaleTargetRef>,
    spec_target: &ScaleTargetRef,
) -> Option<&'a ScaleTargetRef> {
    recorded.filter(|old| *old != spec_target && FloorKind::of(old).is_some())
}

/// Whether `ps` carries the floor [`FINALIZER`].
pub fn has_finalizer(ps: &PredictiveScaler) -> bool {
    ps.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes the floor [`FINALIZER`] of `ps` (a merge patch of the whole list, guarded by
/// the resourceVersion it was read at; nothing when it is already so) within `budget`.
pub async fn set_finalizer(
    client: &Client,
    ps: &PredictiveScaler,
    present: bool,
    budget: std::time::Duration,
) -> Result<(), kube::Error> {
    if has_finalizer(ps) == present {
        return Ok(());
    }
    let mut finalizers: Vec<String> = ps
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({
        "metadata": { "finalizers": finalizers, "resourceVersion": ps.resource_version() }
    });
    let api: Api<PredictiveScaler> =
        Api::namespaced(client.clone(), &ps.namespace().unwrap_or_default());
    let params = target::patch_params();
    target::within(
        budget,
        api.patch(&ps.name_any(), &params, &Patch::Merge(&patch)),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(spec: Value, original: Option<&str>) -> FloorObject {
        let mut obj = DynamicObject::new("h", &FloorKind::Hpa.resource()).data(json!({
            "spec": spec
        }));
        if let Some(o) = original {
            obj.metadata.annotations =
                Some([(ORIGINAL_MIN_ANNOTATION.to_string(), o.to_string())].into());
        }
        FloorObject::read(FloorKind::Hpa, &obj)
    }

    #[test]
    fn kinds_and_modes() {
        let r = |v: &str, k: &str| ScaleTargetRef {
            api_version: v.into(),
            kind: k.into(),
            name: "x".into(),
        };
        assert_eq!(mode_of(&r("apps/v1", "Deployment")), "Scale");
        assert_eq!(
            mode_of(&r("autoscaling/v2", "HorizontalPodAutoscaler")),
            "HPAFloor"
        );
        assert_eq!(mode_of(&r("keda.sh/v1alpha1", "ScaledObject")), "KEDAFloor");
        assert_eq!(
            FloorKind::of(&r("autoscaling/v1", "HorizontalPodAutoscaler")),
            None
        );
    }

    #[test]
    fn reads_fields_with_defaults() {
        let o = hpa(
            json!({"maxReplicas": 10, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "w"}}),
            None,
        );
        assert_eq!((o.min, o.max, o.original), (1, Some(10), None));
        assert_eq!(o.workload.kind, "StatefulSet");
        let obj = DynamicObject::new("s", &FloorKind::Keda.resource())
            .data(json!({"spec": {"scaleTargetRef": {"name": "w"}, "minReplicaCount": 2}}));
        let k = FloorObject::read(FloorKind::Keda, &obj);
        assert_eq!((k.min, k.max), (2, None));
        assert_eq!(
            (k.workload.api_version.as_str(), k.workload.kind.as_str()),
            ("apps/v1", "Deployment")
        );
    }

    #[test]
    fn floor_is_clamped_to_the_objects_max() {
        assert_eq!(bounds(2, 50, Some(8)), (2, 8));
        assert_eq!(bounds(2, 6, Some(8)), (2, 6));
        assert_eq!(bounds(10, 50, Some(8)), (8, 8));
        assert_eq!(bounds(2, 50, None), (2, 50));
        assert_eq!(floor_value(12, Some(8)), 8);
        assert_eq!(floor_value(5, Some(8)), 5);
        assert_eq!(floor_value(5, None), 5);
    }

    #[test]
    fn first_write_remembers_the_original_floor() {
        let o = hpa(json!({"minReplicas": 2, "maxReplicas": 10}), None);
        assert_eq!(
            floor_patch(&o, 6),
            Some(json!({
                "spec": {"minReplicas": 6},
                "metadata": {"annotations": {ORIGINAL_MIN_ANNOTATION: "2"}},
            }))
        );
        // even when the floor is already the plan's, the record is written once
        let same = hpa(json!({"minReplicas": 6}), None);
        assert!(floor_patch(&same, 6).unwrap()["metadata"].is_object());
    }

    #[test]
    fn later_writes_keep_the_record_and_unchanged_writes_nothing() {
        let o = hpa(json!({"minReplicas": 6, "maxReplicas": 10}), Some("2"));
        assert_eq!(floor_patch(&o, 6), None);
        assert_eq!(
            floor_patch(&o, 4),
            Some(json!({"spec": {"minReplicas": 4}}))
        );
    }

    #[test]
    fn the_status_records_the_floor_object_until_it_is_put_back() {
        let hpa = ScaleTargetRef {
            api_version: "autoscaling/v2".into(),
            kind: "HorizontalPodAutoscaler".into(),
            name: "app".into(),
        };
        let deployment = ScaleTargetRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "app".into(),
        };
        // an Active floor target is recorded; a DryRun one (restored) and a workload are not
        assert_eq!(recorded_target(&hpa, true, None), Some(hpa.clone()));
        assert_eq!(recorded_target(&hpa, false, None), None);
        assert_eq!(recorded_target(&deployment, true, None), None);
        // an old target whose restore failed stays until it succeeds
        assert_eq!(
            recorded_target(&deployment, true, Some(&hpa)),
            Some(hpa.clone())
        );
        // retargeted from the HPA to the Deployment: the HPA's floor goes back
        assert_eq!(retargeted_from(Some(&hpa), &deployment), Some(&hpa));
        assert_eq!(retargeted_from(Some(&hpa), &hpa), None);
        assert_eq!(retargeted_from(None, &deployment), None);
        // a recorded workload (not a floor object) is nothing to restore
        assert_eq!(retargeted_from(Some(&deployment), &hpa), None);
    }

    #[test]
    fn restore_puts_back_the_original_and_drops_the_record() {
        let o = hpa(json!({"minReplicas": 6}), Some("2"));
        assert_eq!(
            restore_patch(&o),
            Some(json!({
                "metadata": {"annotations": {ORIGINAL_MIN_ANNOTATION: null}},
                "spec": {"minReplicas": 2},
            }))
        );
        assert_eq!(restore_patch(&hpa(json!({"minReplicas": 6}), None)), None);
        let keda = FloorObject {
            kind: FloorKind::Keda,
            ..hpa(json!({}), Some("0"))
        };
        assert_eq!(restore_patch(&keda).unwrap()["spec"]["minReplicaCount"], 0);
    }
}
