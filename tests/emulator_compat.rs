//! The API emulator (tests/harness/kube_emulator.py) against the kube-rs features prescale's controller uses:
//! a `Controller` on PredictiveScalers that also watches Deployments, `get_scale`/`patch_scale`, `patch_status`
//! (merge and server-side apply), the events.k8s.io/v1 `Recorder` (create, then a series patch), Leases, 404/409
//! errors as kube-rs sees them, and watcher label selectors. If one of these breaks, tests built on the emulator
//! prove nothing, so this runs in CI with them.
//!
//! The PredictiveScaler is a `DynamicObject` here, so this test does not depend on the crate's own types.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::{Value, json};
use support::KubeEmulator;

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SCALERS: &str = "/apis/prescale.dev/v1alpha1/namespaces/default/predictivescalers";

fn scaler_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("prescale.dev", "v1alpha1", "PredictiveScaler"),
        "predictivescalers",
    )
}

async fn client_for(kube: &KubeEmulator) -> Client {
    // The binary installs this provider too: kube and reqwest both bring rustls.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(kube.kubeconfig_path()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config from kubeconfig");
    Client::try_from(config).expect("client")
}

/// Polls `f` (blocking HTTP helpers are fine on the multi-thread runtime) until `Some` or `timeout`.
async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_fixtures(kube: &KubeEmulator, replicas: i64) {
    kube.create(
        DEPLOYMENTS,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
        }),
    );
    kube.create(
        SCALERS,
        json!({
            "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 10, "replicas": replicas}
        }),
    );
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    reconciles: AtomicUsize,
}

/// A toy reconciler shaped like prescale's: read /scale, patch it when it differs from `spec.replicas`, publish
/// an event, write status with observedGeneration.
async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let want = obj.data["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let scale = deployments.get_scale(&name).await?;
    let current = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
    let reference = obj.object_ref(&scaler_resource());
    if current != want {
        deployments
            .patch_scale(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": want}})),
            )
            .await?;
        ctx.recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Scaled".into(),
                    note: Some(format!("{current} -> {want}")),
                    action: "Scale".into(),
                    secondary: None,
                },
                &reference,
            )
            .await?;
    }
    // The same event on every reconcile: the Recorder creates it once, then patches its series.
    ctx.recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "Evaluated".into(),
                note: Some("evaluated".into()),
                action: "Evaluate".into(),
                secondary: None,
            },
            &reference,
        )
        .await?;
    let scalers: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &scaler_resource());
    scalers
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "observedGeneration": obj.metadata.generation,
                "desiredReplicas": want,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }})),
        )
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_obj: Arc<DynamicObject>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    eprintln!("reconcile error: {err}");
    Action::requeue(Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_watches_scales_patches_status_and_records_events() {
    let kube = KubeEmulator::start();
    create_fixtures(&kube, 3);
    let client = client_for(&kube).await;
    let ar = scaler_resource();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "compat-test".into(),
                instance: None,
            },
        ),
        reconciles: AtomicUsize::new(0),
    });
    let scalers: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let mapper_ar = ar.clone();
    let controller = Controller::new_with(scalers, watcher::Config::default(), ar.clone())
        .watches(
            deployments,
            watcher::Config::default(),
            move |d: Deployment| {
                // the scaler of a Deployment has the Deployment's name here
                Some(
                    ObjectRef::<DynamicObject>::new_with(&d.name_any(), mapper_ar.clone())
                        .within("default"),
                )
            },
        )
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let replicas = || kube.get(&format!("{DEPLOYMENTS}/web"))["spec"]["replicas"].as_i64();
    let scaler = || kube.get(&format!("{SCALERS}/web"));

    // A new scaler: scaled, status written, events recorded.
    eventually(Duration::from_secs(20), || {
        (replicas() == Some(3) && scaler()["status"]["observedGeneration"] == 1).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "not reconciled: scaler {}, deployment replicas {:?}",
            scaler(),
            replicas()
        )
    });

    // events.k8s.io/v1: "Scaled" created once; "Evaluated" created, then patched as a series.
    let events = || kube.get("/apis/events.k8s.io/v1/namespaces/default/events")["items"].clone();
    let find = |items: &Value, reason: &str| {
        items
            .as_array()
            .and_then(|a| a.iter().find(|e| e["reason"] == reason).cloned())
    };
    let scaled = eventually(Duration::from_secs(10), || find(&events(), "Scaled"))
        .await
        .expect("no Scaled event");
    assert_eq!(scaled["note"], "1 -> 3");
    assert_eq!(scaled["regarding"]["kind"], "PredictiveScaler");
    assert_eq!(scaled["regarding"]["name"], "web");

    // Quiet when nothing changes: the no-op status patch must not retrigger the watch forever.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = ctx.reconciles.load(Ordering::SeqCst);
    assert_eq!(
        settled, later,
        "reconciles kept coming with no change ({settled} -> {later})"
    );
    assert!(
        settled >= 2,
        "expected a reconcile for the scaler and one for the scaled Deployment: {settled}"
    );

    // Re-evaluating produced an event series (the Recorder PATCHes the cached event).
    let evaluated = find(&events(), "Evaluated").expect("no Evaluated event");
    assert!(
        evaluated["series"]["count"].as_i64().unwrap_or(0) >= 2,
        "the Evaluated event has no series: {evaluated}"
    );

    // A spec change (generation 2) is seen through the watch.
    kube.patch_merge(&format!("{SCALERS}/web"), json!({"spec": {"replicas": 5}}));
    eventually(Duration::from_secs(20), || {
        (replicas() == Some(5) && scaler()["status"]["observedGeneration"] == 2).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("spec change not reconciled: {}", scaler()));
    assert_eq!(scaler()["metadata"]["generation"], 2);

    // Someone else scales the Deployment: the watch on Deployments brings the scaler back.
    kube.patch_merge(
        &format!("{DEPLOYMENTS}/web/scale"),
        json!({"spec": {"replicas": 1}}),
    );
    eventually(Duration::from_secs(20), || {
        (replicas() == Some(5)).then_some(())
    })
    .await
    .expect("a change of the Deployment did not trigger a reconcile");

    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_semantics_kube_rs_relies_on() {
    let kube = KubeEmulator::start();
    create_fixtures(&kube, 2);
    let client = client_for(&kube).await;
    let ar = scaler_resource();
    let scalers: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());

    // 404 and 409 as kube::Error::Api with the API server's reasons.
    match deployments.get("nope").await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
        other => panic!("expected 404: {other:?}"),
    }
    assert!(
        deployments
            .get_opt("nope")
            .await
            .expect("get_opt")
            .is_none()
    );
    let mut dep = deployments.get("web").await.expect("get");
    match deployments.create(&PostParams::default(), &dep).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected 409: {other:?}"),
    }
    // replace (PUT) works with the current resourceVersion and conflicts with a stale one.
    dep.metadata
        .labels
        .get_or_insert_default()
        .insert("tier".into(), "proxy".into());
    let replaced = deployments
        .replace("web", &PostParams::default(), &dep)
        .await
        .expect("replace");
    assert_eq!(
        replaced.labels().get("tier").map(String::as_str),
        Some("proxy")
    );
    match deployments
        .replace("web", &PostParams::default(), &dep)
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("expected 409 Conflict on a stale resourceVersion: {other:?}"),
    }

    // Scale subresource through kube-rs's typed Scale.
    let scale = deployments.get_scale("web").await.expect("get_scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(
        scale.status.map(|s| s.selector),
        Some(Some("app=web".to_string()))
    );
    let scale = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("patch_scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(4)
    );

    // Status by server-side apply (what STYLE.md recommends), and by merge: spec untouched, generation unchanged.
    let applied = scalers
        .patch_status(
            "web",
            &PatchParams::apply("prescale").force(),
            &Patch::Apply(json!({
                "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
                "status": {"desiredReplicas": 4, "observedGeneration": 1}
            })),
        )
        .await
        .expect("apply status");
    assert_eq!(applied.data["status"]["desiredReplicas"], 4);
    assert_eq!(applied.data["spec"]["replicas"], 2);
    assert_eq!(applied.metadata.generation, Some(1));
    let merged = scalers
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"currentReplicas": 4}})),
        )
        .await
        .expect("merge status");
    assert_eq!(merged.data["status"]["currentReplicas"], 4);
    assert_eq!(merged.data["status"]["desiredReplicas"], 4);

    // Leases: create, apply, strategic merge (what kube-lease-manager sends).
    let leases: Api<Lease> = Api::default_namespaced(client.clone());
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "prescale"}, "spec": {}})).unwrap();
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create lease");
    leases
        .patch(
            "prescale",
            &PatchParams::apply("holder-a"),
            &Patch::Apply(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
            ),
        )
        .await
        .expect("apply lease");
    let renewed = leases
        .patch(
            "prescale",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"leaseTransitions": 1, "holderIdentity": null}})),
        )
        .await
        .expect("strategic lease");
    let spec = renewed.spec.expect("lease spec");
    assert_eq!(
        (spec.holder_identity, spec.lease_transitions),
        (None, Some(1))
    );

    // A watcher with a label selector sees only matching objects.
    kube.create(
        DEPLOYMENTS,
        json!({"metadata": {"name": "other", "labels": {"app": "other"}}, "spec": {"replicas": 1}}),
    );
    let names: Vec<String> = watcher(
        deployments.clone(),
        watcher::Config::default().labels("app=web"),
    )
    .default_backoff()
    .applied_objects()
    .take(1)
    .map(|d| d.expect("watch event").name_any())
    .collect()
    .await;
    assert_eq!(names, ["web"]);
    assert_eq!(
        deployments
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2,
        "unfiltered list"
    );
    assert!(Deployment::kind(&()) == "Deployment");
}
