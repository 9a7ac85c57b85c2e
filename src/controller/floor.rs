//! Floor mode: when `scaleTargetRef` names an `autoscaling/v2` HorizontalPodAutoscaler or a KEDA
//! `keda.sh/v1alpha1` ScaledObject, prescale writes the plan's count as that object's floor
//! (`spec.minReplicas` / `spec.minReplicaCount`), never above its own maximum, and the reactive
//! autoscaler keeps scaling above it.
//!
//! Whose floor it is, in four rules (the pure ones are unit-tested below):
//! - **The owner's value** ([`owner_floor`]) is the floor the object's owner set (its manifest,
//!   an admin, a GitOps tool). Prescale never sets the floor below it unless the scaler says
//!   `floor.allowBelowOwner` ([`bounds`], [`floor_value`]). It is recorded in the annotation
//!   [`ORIGINAL_MIN_ANNOTATION`] when prescale takes the floor over, and re-read when another
//!   writer changes the field: that writer's value is the owner's from then on.
//! - **Whose the field is** is read from `managedFields`: prescale's while its field manager
//!   (`FIELD_MANAGER`) holds it. Any other writer that changes the value takes it away (an
//!   update, or a forced apply, strips the changed field from the other managers); a writer
//!   that sets the same value only shares it.
//! - **Writes** ([`plan_write`]) are server-side applies with prescale's field manager, not
//!   forced while prescale holds the field alone (the usual case). Forced, with the
//!   resourceVersion read as a guard, only to take the floor over (an object with no record:
//!   its creator holds the field), and to take it from writers that share it at prescale's own
//!   value (the creator whose value prescale took over unchanged; an earlier prescale's merge
//!   patches). Once another writer changed the field, prescale leaves it
//!   ([`FloorWrite::Conflict`], reported as `AbleToScale=False`, `FloorConflict`). Removing the
//!   annotation hands the floor back: the next write takes it over again, with the value then
//!   as the owner's.
//! - **Restores** ([`plan_restore`], [`restore`]), when the scaler is deleted (its
//!   [`FINALIZER`] waits for them), set to `DryRun`, or retargeted (`status.floorTarget`:
//!   [`recorded_target`], [`retargeted_from`]): the owner's value goes back only while the
//!   field is still prescale's; another writer's value stays. The record goes either way (a
//!   merge patch guarded by the resourceVersion read).
//! - **Refusals** ([`refused`], [`describe`]): a 4xx answer the API server will give again (RBAC
//!   removed, the CRD gone, a restore above a lowered maximum). What the finalizer does about
//!   them is `reconcile::finalize`'s.

use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
};
use serde_json::{Value, json};

use super::target;
use crate::api::{FIELD_MANAGER, PredictiveScaler, ScaleTargetRef};

/// The annotation on the HPA/ScaledObject holding its owner's floor: the floor before
/// prescale took it over, or the value another writer set since.
pub const ORIGINAL_MIN_ANNOTATION: &str = "prescale.dev/original-min-replicas";

/// The finalizer of a scaler in floor mode: its deletion waits until the floor is restored
/// (or the restore is given up, `reconcile::finalize`).
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

    pub fn api_version(self) -> &'static str {
        match self {
            Self::Hpa => "autoscaling/v2",
            Self::Keda => "keda.sh/v1alpha1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Hpa => "HorizontalPodAutoscaler",
            Self::Keda => "ScaledObject",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Hpa => "horizontalpodautoscalers",
            Self::Keda => "scaledobjects",
        }
    }

    fn resource(self) -> ApiResource {
        let (group, version) = self.api_version().split_once('/').expect("a group/version");
        let gvk = GroupVersionKind::gvk(group, version, self.kind());
        ApiResource::from_gvk_with_plural(&gvk, self.plural())
    }

    /// The floor field in the object's `spec`.
    pub fn min_field(self) -> &'static str {
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
    /// The owner's floor as prescale recorded it (the annotation), if it did.
    pub recorded: Option<u32>,
    /// The workload it scales (a ScaledObject's defaults to an `apps/v1` Deployment).
    pub workload: ScaleTargetRef,
    /// Whether prescale's field manager holds the floor field (`managedFields`): no other
    /// writer changed it since prescale set it.
    pub prescale_holds: bool,
    /// The field managers other than prescale's that hold the floor field, sorted.
    pub other_writers: Vec<String>,
    /// Whether a merge patch of an earlier prescale (field manager `prescale`, operation
    /// `Update`) holds the floor field or the record: server-side apply tells managers apart
    /// by operation too, so an apply that changes them needs force.
    pub earlier_prescale: bool,
    /// The resourceVersion it was read at: the guard of a forced apply and of a restore.
    pub resource_version: Option<String>,
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
        let floor_holders = holders(obj, &["f:spec", &format!("f:{}", kind.min_field())]);
        let record_holders = holders(
            obj,
            &[
                "f:metadata",
                "f:annotations",
                &format!("f:{ORIGINAL_MIN_ANNOTATION}"),
            ],
        );
        let mut other_writers: Vec<String> = floor_holders
            .iter()
            .filter(|(manager, _)| *manager != FIELD_MANAGER)
            .map(|(manager, _)| manager.to_string())
            .collect();
        other_writers.sort();
        other_writers.dedup();
        let prescale_holds = floor_holders
            .iter()
            .any(|(manager, _)| *manager == FIELD_MANAGER);
        let earlier_prescale = floor_holders
            .iter()
            .chain(&record_holders)
            .any(|(manager, operation)| *manager == FIELD_MANAGER && *operation != "Apply");
        Self {
            kind,
            min: count(&spec[kind.min_field()]).unwrap_or(kind.default_min()),
            max: count(&spec[kind.max_field()]),
            recorded: obj
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
            prescale_holds,
            other_writers,
            earlier_prescale,
            resource_version: obj.resource_version(),
        }
    }

    /// The object's field, for messages: `spec.minReplicas`.
    pub fn field(&self) -> String {
        format!("spec.{}", self.kind.min_field())
    }
}

/// The field managers (manager, operation) that hold `path` of the object's own fields (not a
/// subresource's), `path` as in `managedFields`' fieldsV1: `["f:spec", "f:minReplicas"]`.
fn holders<'a>(obj: &'a DynamicObject, path: &[&str]) -> Vec<(&'a str, &'a str)> {
    obj.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| path.iter().try_fold(&f.0, |v, key| v.get(*key)))
                .is_some()
        })
        .map(|e| {
            (
                e.manager.as_deref().unwrap_or_default(),
                e.operation.as_deref().unwrap_or_default(),
            )
        })
        .collect()
}

/// The owner's floor now: the recorded one while the field is prescale's; the field's value
/// when prescale has not taken the floor over yet, or when another writer set it since (their
/// value is the owner's from then on).
pub fn owner_floor(obj: &FloorObject) -> u32 {
    match obj.recorded {
        Some(recorded) if obj.prescale_holds => recorded,
        _ => obj.min,
    }
}

/// The scaler's `(minReplicas, maxReplicas)` for planning in floor mode: the object's own
/// maximum bounds the plan; the owner's floor (`owner`, `None` with `floor.allowBelowOwner`)
/// is its least, even over the scaler's `maxReplicas` (prescale does not lower it); the
/// minimum stays under the maximum.
pub fn bounds(min: u32, max: u32, object_max: Option<u32>, owner: Option<u32>) -> (u32, u32) {
    let mut max = object_max.map_or(max, |m| max.min(m));
    let mut min = min;
    if let Some(owner) = owner {
        min = min.max(owner);
        max = max.max(owner);
    }
    (min.min(max), max)
}

/// The floor to write for the plan's `desired` count: never above the object's own maximum,
/// never below the owner's floor (`owner`, `None` with `floor.allowBelowOwner`).
pub fn floor_value(desired: u32, object_max: Option<u32>, owner: Option<u32>) -> u32 {
    let under_max = object_max.map_or(desired, |max| desired.min(max));
    owner.map_or(under_max, |owner| under_max.max(owner))
}

/// What prescale applies to the object: its floor, and the owner's floor as the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apply {
    /// The floor; `None`: the field is left to the writer that holds it.
    pub min: Option<u32>,
    /// The owner's floor, for the annotation.
    pub owner: u32,
    /// Take the fields over from whoever holds them: only when prescale takes the floor over
    /// (no record yet), or from writers that share the field at prescale's own value.
    pub force: bool,
}

/// What setting the floor to a value takes ([`plan_write`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloorWrite {
    /// The floor and the record are as they should be.
    Nothing,
    /// Apply this.
    Apply(Apply),
    /// Another writer holds the field at a value other than `wanted`: prescale leaves it
    /// (and records it as the owner's floor with `record`, when the record differs).
    Conflict {
        wanted: u32,
        holders: Vec<String>,
        record: Option<Apply>,
    },
}

/// How prescale sets the object's floor to `floor` (see the module's rules).
pub fn plan_write(obj: &FloorObject, floor: u32) -> FloorWrite {
    let owner = owner_floor(obj);
    match obj.recorded {
        // taking the floor over: the field's holder is its owner, whose value is recorded
        None => FloorWrite::Apply(Apply {
            min: Some(floor),
            owner,
            force: true,
        }),
        Some(_) if obj.prescale_holds => {
            if floor == obj.min {
                FloorWrite::Nothing
            } else {
                FloorWrite::Apply(Apply {
                    min: Some(floor),
                    owner,
                    // the others hold it at prescale's value: theirs is prescale's to change
                    force: !obj.other_writers.is_empty() || obj.earlier_prescale,
                })
            }
        }
        Some(recorded) => {
            let record = (recorded != owner).then_some(Apply {
                min: None,
                owner,
                force: obj.earlier_prescale,
            });
            if floor == obj.min {
                record.map_or(FloorWrite::Nothing, FloorWrite::Apply)
            } else {
                FloorWrite::Conflict {
                    wanted: floor,
                    holders: obj.other_writers.clone(),
                    record,
                }
            }
        }
    }
}

/// The server-side apply configuration of `apply` on the object `name` (a forced one carries
/// the resourceVersion read, so it lands only on the object it was decided on).
pub fn apply_body(obj: &FloorObject, name: &str, apply: &Apply) -> Value {
    let mut body = json!({
        "apiVersion": obj.kind.api_version(),
        "kind": obj.kind.kind(),
        "metadata": {
            "name": name,
            "annotations": { ORIGINAL_MIN_ANNOTATION: apply.owner.to_string() },
        },
    });
    if let Some(min) = apply.min {
        body["spec"] = json!({ obj.kind.min_field(): min });
    }
    if let (true, Some(rv)) = (apply.force, &obj.resource_version) {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    body
}

/// What putting the owner's floor back takes ([`plan_restore`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// No record: prescale never set this floor, or put it back already (or the object is
    /// gone).
    Nothing,
    /// The field is still prescale's: the owner's floor goes back.
    PutBack { from: u32, to: u32 },
    /// Another writer set the field since: its value stays; only the record goes.
    LeaveOthers { value: u32, holders: Vec<String> },
}

/// How the object's floor is put back (see the module's rules).
pub fn plan_restore(obj: &FloorObject) -> Restore {
    match obj.recorded {
        None => Restore::Nothing,
        Some(to) if obj.prescale_holds => Restore::PutBack { from: obj.min, to },
        Some(_) => Restore::LeaveOthers {
            value: obj.min,
            holders: obj.other_writers.clone(),
        },
    }
}

/// The merge patch of `restore` (the record removed, and the owner's floor when it goes
/// back), guarded by the resourceVersion read: a change made since is never overwritten.
pub fn restore_patch(obj: &FloorObject, restore: &Restore) -> Option<Value> {
    let mut patch = json!({ "metadata": { "annotations": { ORIGINAL_MIN_ANNOTATION: null } } });
    if let Some(rv) = &obj.resource_version {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    match restore {
        Restore::Nothing => return None,
        Restore::PutBack { to, .. } => patch["spec"] = json!({ obj.kind.min_field(): to }),
        Restore::LeaveOthers { .. } => {}
    }
    Some(patch)
}

/// The writers of a field, for a message: their names, or "another writer" when none holds
/// it (its value was removed and defaulted).
pub fn writers(holders: &[String]) -> String {
    if holders.is_empty() {
        "another writer".into()
    } else {
        holders.join(", ")
    }
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

/// Applies `apply` to the object `name` (read as `obj`) within `budget`.
pub async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    obj: &FloorObject,
    apply: &Apply,
    budget: std::time::Duration,
) -> Result<(), kube::Error> {
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = apply.force;
    let body = apply_body(obj, name, apply);
    target::within(budget, api.patch(name, &params, &Patch::Apply(&body))).await?;
    Ok(())
}

/// Puts the owner's floor of `target` back while the field is still prescale's, and drops the
/// record (a write within `budget`); a missing object, or one without a record, is nothing to
/// restore. Returns what it did.
pub async fn restore(
    client: &Client,
    namespace: &str,
    target: &ScaleTargetRef,
    budget: std::time::Duration,
) -> Result<Restore, kube::Error> {
    let Some(kind) = FloorKind::of(target) else {
        return Ok(Restore::Nothing);
    };
    let api = api(client, namespace, kind);
    let Some(obj) = get(&api, kind, &target.name).await? else {
        return Ok(Restore::Nothing);
    };
    let restore = plan_restore(&obj);
    if let Some(patch) = restore_patch(&obj, &restore) {
        let params = target::patch_params();
        let patch = Patch::Merge(&patch);
        target::within(budget, api.patch(&target.name, &params, &patch)).await?;
    }
    Ok(restore)
}

/// Whether the API server refused a floor request in a way that asking again will not change
/// by itself: a 4xx answer other than 408, 409 (a conflict: decided afresh on the next read)
/// and 429 (throttled). Forbidden (the RBAC removed), not found (the CRD not installed),
/// invalid (a floor above a lowered maximum).
pub fn refused(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if (400..500).contains(&s.code) && ![408, 409, 429].contains(&s.code))
}

/// Whether `e` is the bare 404 of a path the API server does not serve: the kind's CRD is not
/// installed (an object that does not exist gets a `NotFound` Status instead).
pub fn not_installed(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && s.reason != "NotFound")
}

/// Whether an apply was refused because another field manager holds a field at another value.
pub fn field_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.message.starts_with("Apply failed"))
}

/// What went wrong with a request about a `kind` object, in plain words for a condition or an
/// event (never a `Debug` dump of the error).
pub fn describe(kind: FloorKind, e: &kube::Error) -> String {
    match e {
        _ if not_installed(e) => match kind {
            FloorKind::Keda => format!(
                "the {} CRD ({}) is not installed",
                kind.kind(),
                kind.api_version()
            ),
            FloorKind::Hpa => format!(
                "the API server does not serve {} {}s",
                kind.api_version(),
                kind.kind()
            ),
        },
        kube::Error::Api(s) if s.code == 403 => format!(
            "{} (floor mode needs patch on {}{}: the chart's floorMode.enabled=true)",
            s.message.trim().trim_end_matches('.'),
            kind.plural(),
            if kind == FloorKind::Keda {
                " and get"
            } else {
                ""
            }
        ),
        other => crate::error::plain(other),
    }
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    /// `(manager, operation, fieldsV1)` of a managedFields entry.
    type Entry<'a> = (&'a str, &'a str, Value);

    fn object(
        kind: FloorKind,
        spec: Value,
        recorded: Option<&str>,
        managed: &[Entry],
    ) -> FloorObject {
        let mut obj = DynamicObject::new("h", &kind.resource()).data(json!({ "spec": spec }));
        if let Some(o) = recorded {
            obj.metadata.annotations =
                Some([(ORIGINAL_MIN_ANNOTATION.to_string(), o.to_string())].into());
        }
        obj.metadata.resource_version = Some("42".into());
        obj.metadata.managed_fields = Some(
            managed
                .iter()
                .map(|(manager, operation, fields)| ManagedFieldsEntry {
                    manager: Some(manager.to_string()),
                    operation: Some(operation.to_string()),
                    fields_v1: Some(FieldsV1(fields.clone())),
                    ..Default::default()
                })
                .collect(),
        );
        FloorObject::read(kind, &obj)
    }

    fn hpa(spec: Value, recorded: Option<&str>, managed: &[Entry]) -> FloorObject {
        object(FloorKind::Hpa, spec, recorded, managed)
    }

    fn holds_min() -> Value {
        json!({"f:spec": {"f:minReplicas": {}, "f:maxReplicas": {}}})
    }

    fn holds_min_and_record() -> Value {
        json!({"f:spec": {"f:minReplicas": {}},
               "f:metadata": {"f:annotations": {format!("f:{ORIGINAL_MIN_ANNOTATION}"): {}}}})
    }

    /// What prescale's entry keeps after another writer changed the floor: the record only.
    fn holds_record() -> Value {
        json!({"f:metadata": {"f:annotations": {format!("f:{ORIGINAL_MIN_ANNOTATION}"): {}}}})
    }

    fn holds_max_only() -> Value {
        json!({"f:spec": {"f:maxReplicas": {}}})
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
        let keda = FloorKind::Keda.resource();
        assert_eq!(
            (keda.group.as_str(), keda.plural.as_str()),
            ("keda.sh", "scaledobjects")
        );
    }

    #[test]
    fn reads_fields_with_defaults() {
        let o = hpa(
            json!({"maxReplicas": 10, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "w"}}),
            None,
            &[],
        );
        assert_eq!((o.min, o.max, o.recorded), (1, Some(10), None));
        assert_eq!(o.workload.kind, "StatefulSet");
        assert_eq!(o.resource_version.as_deref(), Some("42"));
        let k = object(
            FloorKind::Keda,
            json!({"scaleTargetRef": {"name": "w"}, "minReplicaCount": 2}),
            None,
            &[],
        );
        assert_eq!((k.min, k.max), (2, None));
        assert_eq!(
            (k.workload.api_version.as_str(), k.workload.kind.as_str()),
            ("apps/v1", "Deployment")
        );
        assert_eq!(k.field(), "spec.minReplicaCount");
    }

    #[test]
    fn the_floors_writers_are_read_from_managed_fields() {
        let o = hpa(
            json!({"minReplicas": 4}),
            Some("2"),
            &[
                ("kubectl-edit", "Update", holds_min()),
                ("prescale", "Apply", holds_min_and_record()),
                ("argocd", "Apply", holds_min()),
                ("kubectl-edit", "Update", holds_min()),
                ("helm", "Update", holds_max_only()),
            ],
        );
        assert_eq!(o.other_writers, ["argocd", "kubectl-edit"]);
        assert!(o.prescale_holds && !o.earlier_prescale);
        // once another writer changed it, prescale's entry keeps only the record
        let edited = hpa(
            json!({"minReplicas": 4}),
            Some("2"),
            &[
                ("prescale", "Apply", holds_record()),
                ("kubectl-edit", "Update", holds_min()),
            ],
        );
        assert!(!edited.prescale_holds);
        // a status subresource entry never holds the spec
        let mut obj = DynamicObject::new("h", &FloorKind::Hpa.resource());
        obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kube-controller-manager".into()),
            operation: Some("Update".into()),
            subresource: Some("status".into()),
            fields_v1: Some(FieldsV1(holds_min())),
            ..Default::default()
        }]);
        assert!(
            FloorObject::read(FloorKind::Hpa, &obj)
                .other_writers
                .is_empty()
        );
        // an earlier prescale's merge patches (operation Update) are prescale's, not another writer
        let legacy = hpa(
            json!({"minReplicas": 8}),
            Some("2"),
            &[("prescale", "Update", holds_min_and_record())],
        );
        assert!(legacy.other_writers.is_empty());
        assert!(legacy.prescale_holds && legacy.earlier_prescale);
    }

    #[test]
    fn the_owners_floor_is_the_record_while_the_field_is_prescales() {
        let own = [("prescale", "Apply", holds_min_and_record())];
        assert_eq!(
            owner_floor(&hpa(json!({"minReplicas": 8}), Some("3"), &own)),
            3
        );
        // not taken over yet: the value there is the owner's
        let creator = [("kubectl-create", "Update", holds_min())];
        assert_eq!(
            owner_floor(&hpa(json!({"minReplicas": 3}), None, &creator)),
            3
        );
        // the creator shares the field at the value prescale took over: still the record
        let shared = [
            ("kubectl-create", "Update", holds_min()),
            ("prescale", "Apply", holds_min_and_record()),
        ];
        assert_eq!(
            owner_floor(&hpa(json!({"minReplicas": 3}), Some("3"), &shared)),
            3
        );
        // an admin set 4 since: 4 is the owner's now, not the stale record
        let admin = [
            ("prescale", "Apply", holds_record()),
            ("kubectl-edit", "Update", holds_min()),
        ];
        assert_eq!(
            owner_floor(&hpa(json!({"minReplicas": 4}), Some("3"), &admin)),
            4
        );
    }

    #[test]
    fn the_floor_never_goes_below_the_owners_without_the_opt_in() {
        // the HPA's maximum bounds the plan
        assert_eq!(bounds(2, 50, Some(8), None), (2, 8));
        assert_eq!(bounds(2, 6, Some(8), None), (2, 6));
        assert_eq!(bounds(10, 50, Some(8), None), (8, 8));
        assert_eq!(bounds(2, 50, None, None), (2, 50));
        // the owner's 12 is the least, also over the scaler's own maxReplicas 5
        assert_eq!(bounds(1, 50, Some(30), Some(12)), (12, 30));
        assert_eq!(bounds(1, 5, Some(30), Some(12)), (12, 12));
        // an owner's floor above the object's maximum (KEDA does not check) stays as it is
        assert_eq!(bounds(1, 50, Some(8), Some(10)), (10, 10));
        assert_eq!(floor_value(12, Some(8), None), 8);
        assert_eq!(floor_value(5, Some(8), None), 5);
        assert_eq!(floor_value(5, None, None), 5);
        assert_eq!(
            floor_value(1, Some(30), Some(3)),
            3,
            "never below the owner's"
        );
        assert_eq!(floor_value(1, Some(30), None), 1, "allowBelowOwner");
        assert_eq!(floor_value(12, Some(8), Some(10)), 10);
    }

    #[test]
    fn taking_the_floor_over_records_the_owners_and_forces_once() {
        let creator = [("kubectl-create", "Update", holds_min())];
        let o = hpa(json!({"minReplicas": 2, "maxReplicas": 10}), None, &creator);
        let apply = Apply {
            min: Some(6),
            owner: 2,
            force: true,
        };
        assert_eq!(plan_write(&o, 6), FloorWrite::Apply(apply.clone()));
        assert_eq!(
            apply_body(&o, "app", &apply),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "app", "resourceVersion": "42",
                             "annotations": {ORIGINAL_MIN_ANNOTATION: "2"}},
                "spec": {"minReplicas": 6},
            })
        );
        // even when the floor is already the plan's, the field is taken and the record written
        let same = hpa(json!({"minReplicas": 6}), None, &creator);
        assert!(matches!(
            plan_write(&same, 6),
            FloorWrite::Apply(Apply {
                min: Some(6),
                owner: 6,
                force: true
            })
        ));
    }

    #[test]
    fn later_writes_are_not_forced_and_unchanged_writes_nothing() {
        let own = [("prescale", "Apply", holds_min_and_record())];
        let o = hpa(
            json!({"minReplicas": 6, "maxReplicas": 10}),
            Some("2"),
            &own,
        );
        assert_eq!(plan_write(&o, 6), FloorWrite::Nothing);
        let apply = Apply {
            min: Some(4),
            owner: 2,
            force: false,
        };
        assert_eq!(plan_write(&o, 4), FloorWrite::Apply(apply.clone()));
        let body = apply_body(&o, "app", &apply);
        assert_eq!(body["spec"], json!({"minReplicas": 4}));
        assert_eq!(
            body["metadata"]["annotations"][ORIGINAL_MIN_ANNOTATION],
            "2"
        );
        assert!(body["metadata"].get("resourceVersion").is_none());
        // the creator shares the field at the value prescale took over unchanged: forced, and
        // guarded by the resourceVersion read
        let shared = hpa(
            json!({"minReplicas": 3}),
            Some("3"),
            &[
                ("kubectl-create", "Update", holds_min()),
                ("prescale", "Apply", holds_min_and_record()),
            ],
        );
        let apply = Apply {
            min: Some(10),
            owner: 3,
            force: true,
        };
        assert_eq!(plan_write(&shared, 10), FloorWrite::Apply(apply.clone()));
        assert_eq!(
            apply_body(&shared, "app", &apply)["metadata"]["resourceVersion"],
            "42"
        );
        // over an earlier prescale's merge patch: forced (it is prescale's own)
        let legacy = hpa(
            json!({"minReplicas": 6}),
            Some("2"),
            &[("prescale", "Update", holds_min_and_record())],
        );
        assert!(matches!(
            plan_write(&legacy, 4),
            FloorWrite::Apply(Apply { force: true, .. })
        ));
    }

    #[test]
    fn another_writers_floor_is_not_overwritten_and_becomes_the_owners() {
        let admin = [
            ("prescale", "Apply", holds_record()),
            ("kubectl-edit", "Update", holds_min()),
        ];
        // an admin set 4 where prescale had 10: prescale wants 10 again, and leaves the 4
        let o = hpa(
            json!({"minReplicas": 4, "maxReplicas": 30}),
            Some("2"),
            &admin,
        );
        assert_eq!(
            plan_write(&o, 10),
            FloorWrite::Conflict {
                wanted: 10,
                holders: vec!["kubectl-edit".into()],
                record: Some(Apply {
                    min: None,
                    owner: 4,
                    force: false
                }),
            }
        );
        // the record follows the owner's value, without claiming the field
        let body = apply_body(
            &o,
            "app",
            &Apply {
                min: None,
                owner: 4,
                force: false,
            },
        );
        assert!(body.get("spec").is_none(), "{body}");
        // the plan agrees with the admin's value: only the record is written
        assert_eq!(
            plan_write(&o, 4),
            FloorWrite::Apply(Apply {
                min: None,
                owner: 4,
                force: false
            })
        );
        // recorded already: nothing
        let recorded = hpa(json!({"minReplicas": 4}), Some("4"), &admin);
        assert_eq!(plan_write(&recorded, 4), FloorWrite::Nothing);
        assert!(matches!(
            plan_write(&recorded, 10),
            FloorWrite::Conflict { record: None, .. }
        ));
    }

    #[test]
    fn a_restore_puts_back_the_owners_floor_only_while_the_field_is_prescales() {
        let own = [("prescale", "Apply", holds_min_and_record())];
        let o = hpa(json!({"minReplicas": 6}), Some("2"), &own);
        let restore = plan_restore(&o);
        assert_eq!(restore, Restore::PutBack { from: 6, to: 2 });
        assert_eq!(
            restore_patch(&o, &restore),
            Some(json!({
                "metadata": {"annotations": {ORIGINAL_MIN_ANNOTATION: null}, "resourceVersion": "42"},
                "spec": {"minReplicas": 2},
            }))
        );
        // never recorded (or put back already): nothing
        let none = hpa(json!({"minReplicas": 6}), None, &[]);
        assert_eq!(plan_restore(&none), Restore::Nothing);
        assert_eq!(restore_patch(&none, &Restore::Nothing), None);
        // an admin set 8 since: the 8 stays, the record goes
        let admin = [
            ("prescale", "Apply", holds_record()),
            ("kubectl-edit", "Update", holds_min()),
        ];
        let edited = hpa(json!({"minReplicas": 8}), Some("3"), &admin);
        let restore = plan_restore(&edited);
        assert_eq!(
            restore,
            Restore::LeaveOthers {
                value: 8,
                holders: vec!["kubectl-edit".into()]
            }
        );
        let patch = restore_patch(&edited, &restore).unwrap();
        assert!(patch.get("spec").is_none(), "{patch}");
        assert_eq!(
            patch["metadata"]["annotations"][ORIGINAL_MIN_ANNOTATION],
            Value::Null
        );
        // an admin removed the field (now nobody's): theirs too
        let reset = hpa(json!({"minReplicas": 1}), Some("3"), &[]);
        assert_eq!(
            plan_restore(&reset),
            Restore::LeaveOthers {
                value: 1,
                holders: vec![]
            }
        );
        let keda = object(
            FloorKind::Keda,
            json!({"minReplicaCount": 5}),
            Some("0"),
            &[(
                "prescale",
                "Apply",
                json!({"f:spec": {"f:minReplicaCount": {}}}),
            )],
        );
        let patch = restore_patch(&keda, &plan_restore(&keda)).unwrap();
        assert_eq!(patch["spec"]["minReplicaCount"], 0);
    }

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(message, reason).with_code(code),
        ))
    }

    #[test]
    fn refusals_are_told_apart_and_said_in_plain_words() {
        // what kube makes of the API server's bare "404 page not found" for a CRD not installed
        let bare = api_error(404, "Failed to parse error data", "404 page not found\n");
        assert!(not_installed(&bare) && refused(&bare));
        assert_eq!(
            describe(FloorKind::Keda, &bare),
            "the ScaledObject CRD (keda.sh/v1alpha1) is not installed"
        );
        let gone = api_error(404, "NotFound", "scaledobjects.keda.sh \"app\" not found");
        assert!(!not_installed(&gone));
        let forbidden = api_error(
            403,
            "Forbidden",
            "horizontalpodautoscalers.autoscaling \"app\" is forbidden: User \"x\" cannot patch resource",
        );
        assert!(refused(&forbidden));
        assert_eq!(
            describe(FloorKind::Hpa, &forbidden),
            "horizontalpodautoscalers.autoscaling \"app\" is forbidden: User \"x\" cannot patch \
             resource (floor mode needs patch on horizontalpodautoscalers: the chart's \
             floorMode.enabled=true)"
        );
        let invalid = api_error(
            422,
            "Invalid",
            "HorizontalPodAutoscaler.autoscaling \"app\" is invalid: spec.minReplicas: Invalid value: 3: must be less than or equal to maxReplicas",
        );
        assert!(refused(&invalid));
        assert!(describe(FloorKind::Hpa, &invalid).starts_with("HorizontalPodAutoscaler"));
        // a conflict, a stale resourceVersion, throttling, a server error: asked again
        let conflict = api_error(
            409,
            "Conflict",
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using autoscaling/v2: .spec.minReplicas",
        );
        assert!(field_conflict(&conflict) && !refused(&conflict));
        let stale = api_error(
            409,
            "Conflict",
            "Operation cannot be fulfilled on horizontalpodautoscalers.autoscaling \"app\": the object has been modified",
        );
        assert!(!field_conflict(&stale) && !refused(&stale));
        assert!(!refused(&api_error(429, "TooManyRequests", "slow down")));
        assert!(!refused(&api_error(500, "InternalError", "etcd")));
        for e in [&bare, &forbidden, &invalid, &conflict] {
            let text = describe(FloorKind::Keda, e);
            assert!(
                !text.contains("Status {") && !text.contains("ApiError"),
                "{text}"
            );
        }
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
}
