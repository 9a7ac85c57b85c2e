//! Floor mode on the real control plane (tests/support/cluster.rs), with a real Prometheus and
//! the `prescale run` binary as the chart's ServiceAccount with `floorMode.enabled`: a scaler on
//! an `autoscaling/v2` HPA (or a KEDA ScaledObject, with a minimal copy of its CRD) raises that
//! object's floor to the plan's count under the object's own maximum, remembers the original
//! floor in an annotation, and puts it back when the scaler is deleted (its finalizer waits for
//! that), set to DryRun, or retargeted to another object. The Deployment itself is never written. No kube-controller-manager: the HPA is data.
//! The pure parts (clamping, the record written once, the restore patch) are unit tests in
//! `controller::floor`.

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::scenario::{
    FLAT_LOAD_REPLICAS, create_scaler, flat_load, scaler_path, start_operator, wait_for,
};
use support::{Controller, Prometheus, wait_until};

const ANNOTATION: &str = "prescale.dev/original-min-replicas";
const FINALIZER: &str = "prescale.dev/restore-floor";

/// How long a test waits for what the operator does.
const WAIT: Duration = Duration::from_secs(60);

/// The operator watching `ns`, with the chart's RBAC for floor mode.
fn operator(kube: &KubeCluster, ns: &str, prom: &Prometheus) -> Controller {
    start_operator(
        kube,
        ns,
        &prom.url(),
        Some("floorMode:\n  enabled: true\n"),
        "1s",
    )
    .0
}

/// An autoscaler object `app` (on the Deployment `app`) whose floor a scaler raises.
struct FloorObject {
    /// The scaler's `scaleTargetRef` naming it.
    target: Value,
    /// Where it lives on the API server.
    path: String,
    /// Its floor field in `spec`.
    field: &'static str,
    /// The scaler's `status.targetMode` on it.
    mode: &'static str,
}

impl FloorObject {
    /// Creates the `autoscaling/v2` HPA `ns/app` with `spec` besides its `scaleTargetRef`.
    fn hpa(kube: &KubeCluster, ns: &str, mut spec: Value) -> FloorObject {
        let collection = format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers");
        spec["scaleTargetRef"] =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"});
        kube.create(
            &collection,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": "app", "namespace": ns}, "spec": spec}),
        );
        FloorObject {
            target: json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "app"}),
            path: format!("{collection}/app"),
            field: "minReplicas",
            mode: "HPAFloor",
        }
    }

    /// Creates the KEDA ScaledObject `ns/app` (its CRD installed first) with `spec` besides its
    /// `scaleTargetRef` and a trigger.
    fn scaled_object(kube: &KubeCluster, ns: &str, mut spec: Value) -> FloorObject {
        install_scaled_object_crd(kube);
        let collection = format!("/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects");
        spec["scaleTargetRef"] = json!({"name": "app"});
        spec["triggers"] =
            json!([{"type": "prometheus", "metadata": {"query": "x", "threshold": "10"}}]);
        kube.create(
            &collection,
            json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                   "metadata": {"name": "app", "namespace": ns}, "spec": spec}),
        );
        FloorObject {
            target: json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "app"}),
            path: format!("{collection}/app"),
            field: "minReplicaCount",
            mode: "KEDAFloor",
        }
    }

    /// Creates the fixture's scaler `name` (12 h of history) on this object.
    fn create_scaler(&self, kube: &KubeCluster, ns: &str, name: &str) {
        let scaler = PredictiveScaler::test(ns, name)
            .history("12h", "1m")
            .with("/spec/scaleTargetRef", self.target.clone());
        create_scaler(kube, scaler.json());
    }

    /// Waits for the floor `want` on the object; the object.
    fn wait_floor(&self, op: &mut Controller, kube: &KubeCluster, what: &str, want: i64) -> Value {
        wait_for(op, kube, &self.path, what, WAIT, |o| {
            o["spec"][self.field] == want
        })
    }
}

/// Creates a scaler `name` on the floor object, waits for the floor `want` and the annotation
/// `original`, deletes the scaler and waits for the floor `original` back, no annotation, and
/// the scaler gone (its finalizer removed).
fn raise_then_restore(
    kube: &KubeCluster,
    op: &mut Controller,
    ns: &str,
    name: &str,
    floor: &FloorObject,
    want: i64,
    original: i64,
) {
    floor.create_scaler(kube, ns, name);
    let path = scaler_path(ns, name);
    let obj = floor.wait_floor(op, kube, "the raised floor", want);
    assert_eq!(
        obj["metadata"]["annotations"][ANNOTATION],
        original.to_string(),
        "the original floor is remembered: {obj}"
    );
    let s = wait_for(op, kube, &path, "status.targetMode", WAIT, |s| {
        s["status"]["targetMode"] == floor.mode
    });
    assert_eq!(s["metadata"]["finalizers"], json!([FINALIZER]), "{s}");
    assert_eq!(
        kube.deployment_replicas(ns, "app"),
        3,
        "the workload is never written in floor mode"
    );
    // a later reconcile keeps the record of the original, not prescale's own value
    std::thread::sleep(Duration::from_secs(3));
    let obj = kube.get(&floor.path);
    assert_eq!(obj["spec"][floor.field], want);
    assert_eq!(
        obj["metadata"]["annotations"][ANNOTATION],
        original.to_string()
    );

    kube.delete(&path);
    wait_for(op, kube, &floor.path, "the restored floor", WAIT, |o| {
        o["spec"][floor.field] == original && o["metadata"]["annotations"][ANNOTATION].is_null()
    });
    let gone = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        kube.try_get(&path).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "the scaler is deleted once its finalizer is removed: {:?}",
        kube.try_get(&path)
    );
}

/// Installs the minimal ScaledObject CRD (tests/floor/) and waits until it is Established.
/// (Once per test process: the tests run in parallel on one shared cluster.)
fn install_scaled_object_crd(kube: &KubeCluster) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let crd = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/floor/scaledobject-crd.yaml");
        kube.kubectl_ok(&[
            "apply",
            "--server-side",
            "--field-manager=prescale-tests",
            "-f",
            &crd.display().to_string(),
        ]);
        kube.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/scaledobjects.keda.sh",
        ]);
    });
}

#[test]
fn an_hpa_floor_is_raised_under_its_max_and_restored_on_delete() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-hpa";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 2, "maxReplicas": 8}));
    let mut op = operator(kube, ns, &prom);
    // the plan wants 10; the HPA's maxReplicas 8 bounds the floor
    raise_then_restore(kube, &mut op, ns, "app-floor", &hpa, 8, 2);
}

#[test]
fn a_keda_scaled_object_floor_is_raised_and_restored_on_delete() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-keda";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let so = FloorObject::scaled_object(
        kube,
        ns,
        json!({"minReplicaCount": 1, "maxReplicaCount": 20}),
    );
    let mut op = operator(kube, ns, &prom);
    raise_then_restore(kube, &mut op, ns, "app-floor", &so, FLAT_LOAD_REPLICAS, 1);
}

#[test]
fn retargeting_away_from_an_hpa_puts_its_floor_back() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-retarget";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    kube.create_deployment(ns, "other", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 2, "maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    hpa.create_scaler(kube, ns, "app-floor");
    hpa.wait_floor(&mut op, kube, "the raised floor", FLAT_LOAD_REPLICAS);
    let path = scaler_path(ns, "app-floor");
    let s = wait_for(&mut op, kube, &path, "status.floorTarget", WAIT, |s| {
        s["status"]["floorTarget"]["name"] == "app"
    });
    assert_eq!(
        s["status"]["floorTarget"]["kind"], "HorizontalPodAutoscaler",
        "{}",
        s["status"]
    );

    // the scaler now scales the Deployment `other` through /scale: the HPA's floor goes back
    // to its own 2, the finalizer and the record go, and `other` gets the plan's count
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"});
    kube.patch_merge(&path, json!({"spec": {"scaleTargetRef": other}}));
    wait_for(&mut op, kube, &hpa.path, "the floor put back", WAIT, |o| {
        o["spec"]["minReplicas"] == 2 && o["metadata"]["annotations"][ANNOTATION].is_null()
    });
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "the record and finalizer gone",
        WAIT,
        |s| {
            s["status"]["floorTarget"].is_null()
                && s["status"]["targetMode"] == "Scale"
                && s["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
        },
    );
    wait_for(&mut op, kube, &path, "the new target scaled", WAIT, |_| {
        kube.deployment_replicas(ns, "other") == FLAT_LOAD_REPLICAS
    });
    let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, "app-floor", "FloorRestored")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(events.len(), 1, "one FloorRestored event: {events:#?}");
    assert_eq!(
        events[0]["note"],
        "put back the original floor of HorizontalPodAutoscaler app: the scaler now targets \
         Deployment other"
    );
    // later reconciles leave the HPA alone
    std::thread::sleep(Duration::from_secs(3));
    op.assert_running();
    assert_eq!(kube.get(&hpa.path)["spec"]["minReplicas"], 2);
    assert_eq!(kube.deployment_replicas(ns, "app"), 3, "{}", s["status"]);
    op.assert_never_forbidden();
}

#[test]
fn dry_run_puts_the_floor_back_and_drops_the_finalizer() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-dryrun";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    hpa.create_scaler(kube, ns, "app-floor");
    // no minReplicas in the HPA's spec: the default 1 is the original
    let obj = hpa.wait_floor(&mut op, kube, "the raised floor", FLAT_LOAD_REPLICAS);
    assert_eq!(obj["metadata"]["annotations"][ANNOTATION], "1");
    let path = scaler_path(ns, "app-floor");
    kube.patch_merge(&path, json!({"spec": {"mode": "DryRun"}}));
    wait_for(&mut op, kube, &hpa.path, "the floor put back", WAIT, |o| {
        o["spec"]["minReplicas"] == 1 && o["metadata"]["annotations"][ANNOTATION].is_null()
    });
    wait_for(&mut op, kube, &path, "the finalizer removed", WAIT, |s| {
        s["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    });
    // DryRun leaves the floor alone from then on
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kube.get(&hpa.path)["spec"]["minReplicas"], 1);
}

#[test]
fn a_keda_workload_idle_at_zero_is_woken_by_the_floor() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-keda-idle";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 0);
    let so = FloorObject::scaled_object(kube, ns, json!({"minReplicaCount": 0}));
    let mut op = operator(kube, ns, &prom);
    so.create_scaler(kube, ns, "app-floor");
    // KEDA's 0 is idle, not switched off: the forecast raises the floor from it
    let obj = so.wait_floor(
        &mut op,
        kube,
        "the floor raised from idle",
        FLAT_LOAD_REPLICAS,
    );
    assert_eq!(obj["metadata"]["annotations"][ANNOTATION], "0");
    assert_eq!(
        kube.deployment_replicas(ns, "app"),
        0,
        "KEDA, not prescale, wakes it"
    );
}
