//! The scale target: read and write its `/scale` subresource. Nothing else about the target
//! is ever written (no ownerReference, no annotations), so deleting a PredictiveScaler leaves
//! the target as it is, like deleting an HPA. (Floor mode writes an HPA or ScaledObject
//! instead, and restores it: `floor.rs`; `scaleDown.drainAware` annotates the target's pods,
//! never the target: `reconcile/drain.rs`.)

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
    discovery::pinned_kind,
};
use serde_json::json;

use crate::api::{FIELD_MANAGER, ScaleTargetRef};

/// The plural of well-known scalable kinds, so no discovery round trip is needed for them.
fn known_plural(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("apps", "Deployment") => Some("deployments"),
        ("apps", "StatefulSet") => Some("statefulsets"),
        ("apps", "ReplicaSet") => Some("replicasets"),
        ("", "ReplicationController") => Some("replicationcontrollers"),
        _ => None,
    }
}

/// Resolves a `scaleTargetRef` to an API resource (discovery only for unknown kinds).
pub async fn resolve(client: &Client, target: &ScaleTargetRef) -> Result<ApiResource, kube::Error> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), target.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &target.kind);
    match known_plural(&group, &target.kind) {
        Some(plural) => Ok(ApiResource::from_gvk_with_plural(&gvk, plural)),
        None => Ok(pinned_kind(client, &gvk).await?.0),
    }
}

/// The API for a target's kind in `namespace`.
pub fn api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// The target's replica count from `/scale`; `Ok(None)` when the target does not exist.
pub async fn get_replicas(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<u32>, kube::Error> {
    match bounded(api.get_scale(name)).await {
        Ok(scale) => Ok(Some(
            scale.spec.and_then(|s| s.replicas).unwrap_or(0).max(0) as u32,
        )),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// The target's ready replicas, `status.readyReplicas` of the object (Deployment,
/// StatefulSet, or any kind that reports it); a status without it counts as 0 ready (a
/// Deployment leaves it out at 0). `Ok(None)` when the object has no status or reports no
/// ready replicas: nothing can be measured.
pub async fn get_ready_replicas(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<u32>, kube::Error> {
    let obj = bounded(api.get(name)).await?;
    Ok(ready_replicas(&obj.data))
}

/// `status.readyReplicas` of an object's JSON (0 when its status counts replicas but leaves
/// the ready ones out), or `None` when it says nothing about them.
pub fn ready_replicas(data: &serde_json::Value) -> Option<u32> {
    let status = data.get("status")?;
    match status.get("readyReplicas").and_then(|r| r.as_i64()) {
        Some(r) => Some(r.max(0) as u32),
        None if status.get("replicas").is_some() => Some(0),
        None => None,
    }
}

/// Sets the target's replicas with a merge patch on `/scale`, giving up after `budget` (the
/// write must land while this replica still holds its leader lease).
pub async fn set_replicas(
    api: &Api<DynamicObject>,
    name: &str,
    replicas: u32,
    budget: std::time::Duration,
) -> Result<(), kube::Error> {
    let patch = json!({ "spec": { "replicas": replicas } });
    within(
        budget,
        api.patch_scale(name, &patch_params(), &Patch::Merge(&patch)),
    )
    .await?;
    Ok(())
}

/// How long one request to the API server may take before the reconcile gives up on it (and
/// retries with backoff). The client's own read timeout is ~5 minutes, for watches.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `request`, or a timeout error after [`REQUEST_TIMEOUT`].
pub async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    within(REQUEST_TIMEOUT, request).await
}

/// `request`, or a timeout error after `limit`.
pub async fn within<T>(
    limit: std::time::Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match tokio::time::timeout(limit, request).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the API server did not answer within {}",
                crate::api::duration::format_duration(std::time::Duration::from_secs(
                    limit.as_secs().max(1)
                ))
            ),
        )))),
    }
}

/// Patch parameters carrying prescale's field manager.
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Server-side apply as prescale's field manager, forced: only prescale writes what it applies
/// (a scaler's status), so a conflict is a leftover owner, never a writer to defer to.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[cfg(test)]
mod tests {
    use super::ready_replicas;
    use serde_json::json;

    #[test]
    fn ready_replicas_are_read_from_the_status() {
        assert_eq!(
            ready_replicas(&json!({"status": {"replicas": 3, "readyReplicas": 2}})),
            Some(2)
        );
        // a Deployment leaves readyReplicas out at 0
        assert_eq!(ready_replicas(&json!({"status": {"replicas": 3}})), Some(0));
        assert_eq!(ready_replicas(&json!({"status": {}})), None);
        assert_eq!(ready_replicas(&json!({"spec": {"replicas": 3}})), None);
    }
}
