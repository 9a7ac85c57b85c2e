//! Floor mode on the real control plane (tests/support/cluster.rs), with a real Prometheus and
//! the `prescale run` binary as the chart's ServiceAccount with `floorMode.enabled`: a scaler on
//! an `autoscaling/v2` HPA (or a KEDA ScaledObject, with a minimal copy of its CRD) raises that
//! object's floor to the plan's count under the object's own maximum, remembers the owner's
//! floor in an annotation, and puts it back when the scaler is deleted (its finalizer waits for
//! that), set to DryRun, or retargeted to another object. The Deployment itself is never
//! written. No kube-controller-manager: the HPA is data.
//!
//! Whose floor it is: never below the owner's value (unless `floor.allowBelowOwner`), no event
//! when nothing changes, another writer's value never overwritten (`FloorConflict`) and left by
//! a delete, a new scaler planning from the floor rather than the workload's HPA-scaled size,
//! and a deletion that gives up a restore the API server refuses (422, the CRD gone, 403) after a
//! few attempts instead of hanging on its finalizer.
//! The pure parts (the owner's value, the bounds, what is applied and with force, the restore
//! patch, the refusals) are unit tests in `controller::floor`.

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::cluster::{ApiProxy, Fault};
use support::scenario::{
    FLAT_LOAD_REPLICAS, create_scaler, flat_load, scaler_path, start_operator, steady_load,
    wait_for,
};
use support::{Controller, Prometheus, wait_until};

const ANNOTATION: &str = "prescale.dev/original-min-replicas";
const FINALIZER: &str = "prescale.dev/restore-floor";

/// How long a test waits for what the operator does.
const WAIT: Duration = Duration::from_secs(60);

const FLOOR_VALUES: &str = "floorMode:\n  enabled: true\n";

/// The operator watching `ns`, with the chart's RBAC for floor mode.
fn operator(kube: &KubeCluster, ns: &str, prom: &Prometheus) -> Controller {
    start_operator(kube, ns, &prom.url(), Some(FLOOR_VALUES), "1s").0
}

/// The operator watching `ns` through `proxy` (which injects faults), with floor mode's RBAC.
fn operator_through(
    kube: &KubeCluster,
    ns: &str,
    prom: &Prometheus,
    proxy: &ApiProxy,
) -> Controller {
    let values = std::env::temp_dir().join(format!("prescale-values-{ns}-proxied.yaml"));
    std::fs::write(&values, FLOOR_VALUES).expect("write the chart values");
    let kubeconfig = kube.operator_kubeconfig_for(ns, &[ns], Some(&proxy.url()), Some(&values));
    let args = [
        "run",
        "--prometheus-url",
        &prom.url(),
        "--http-addr",
        "127.0.0.1:0",
        "--sync-interval",
        "1s",
        "--namespaces",
        ns,
    ];
    Controller::start(&args, &[("KUBECONFIG", &kubeconfig)])
}

/// The scaler `name` once it is gone (its finalizer removed), within `timeout`.
fn wait_gone(op: &mut Controller, kube: &KubeCluster, path: &str, timeout: Duration) {
    let gone = wait_until(timeout, Duration::from_millis(200), || {
        op.assert_running();
        kube.try_get(path).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "the scaler is deleted once its finalizer is removed: {}\n{}",
        kube.try_get(path).unwrap_or_default(),
        op.log_tail(40)
    );
}

/// The Warning events about the scaler `name` with `reason`, waited for up to 10 s.
fn wait_events(kube: &KubeCluster, ns: &str, name: &str, reason: &str) -> Vec<Value> {
    wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, name, reason)).filter(|e| !e.is_empty())
    })
    .unwrap_or_else(|| panic!("no {reason} event about {name}"))
}

/// The events about the scaler `name` that set a floor (`FloorRaised`, `FloorLowered`).
fn floor_events(kube: &KubeCluster, ns: &str, name: &str) -> Vec<Value> {
    let mut events = kube.events_about(ns, name, "FloorRaised");
    events.extend(kube.events_about(ns, name, "FloorLowered"));
    events
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
    fn hpa(kube: &KubeCluster, ns: &str, spec: Value) -> FloorObject {
        Self::hpa_named(kube, ns, "app", spec)
    }

    /// Creates the `autoscaling/v2` HPA `ns/name` on the Deployment `name` with `spec` besides
    /// its `scaleTargetRef` (created by the field manager `kubectl-create`, as kubectl does).
    fn hpa_named(kube: &KubeCluster, ns: &str, name: &str, mut spec: Value) -> FloorObject {
        let collection = format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers");
        spec["scaleTargetRef"] =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name});
        kube.create(
            &format!("{collection}?fieldManager=kubectl-create"),
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": name, "namespace": ns}, "spec": spec}),
        );
        FloorObject {
            target: json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": name}),
            path: format!("{collection}/{name}"),
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
        self.create_scaler_with(kube, ns, name, &[]);
    }

    /// [`FloorObject::create_scaler`] with the fields `with` (JSON pointer, value) set.
    fn create_scaler_with(&self, kube: &KubeCluster, ns: &str, name: &str, with: &[(&str, Value)]) {
        let mut scaler = PredictiveScaler::test(ns, name)
            .history("12h", "1m")
            .with("/spec/scaleTargetRef", self.target.clone());
        for (pointer, value) in with {
            scaler = scaler.with(pointer, value.clone());
        }
        create_scaler(kube, scaler.json());
    }

    /// A merge patch of the object by the field manager `manager` (an admin's edit).
    fn edit(&self, kube: &KubeCluster, manager: &str, patch: Value) -> Value {
        kube.patch_merge(&format!("{}?fieldManager={manager}", self.path), patch)
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

/// `AbleToScale`'s (reason, message) on the scaler at `path`.
fn able(s: &Value) -> (String, String) {
    support::scenario::condition(s, "AbleToScale")
}

#[test]
fn an_hpa_floor_never_goes_below_its_owners_value() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-owner";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    kube.create_deployment(ns, "same", 3);
    // the forecast needs 10; one owner wants at least 12, the other exactly 10
    let high = FloorObject::hpa(kube, ns, json!({"minReplicas": 12, "maxReplicas": 30}));
    let same = FloorObject::hpa_named(
        kube,
        ns,
        "same",
        json!({"minReplicas": FLAT_LOAD_REPLICAS, "maxReplicas": 30}),
    );
    let mut op = operator(kube, ns, &prom);
    let unlimited = [("/spec/scaleDown/maxPercentPerMinute", json!(0))];
    high.create_scaler_with(kube, ns, "app-floor", &unlimited);
    same.create_scaler(kube, ns, "same-floor");
    // prescale takes both floors over (the owner's value recorded) without changing them
    for (o, owner) in [(&high, "12"), (&same, "10")] {
        wait_for(
            &mut op,
            kube,
            &o.path,
            "the owner's floor recorded",
            WAIT,
            |h| h["metadata"]["annotations"][ANNOTATION] == owner,
        );
    }
    let path = scaler_path(ns, "app-floor");
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "the plan at the owner's 12",
        WAIT,
        |s| s["status"]["desiredReplicas"] == 12,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        kube.get(&high.path)["spec"]["minReplicas"],
        12,
        "{}",
        s["status"]
    );
    assert_eq!(
        kube.get(&same.path)["spec"]["minReplicas"],
        FLAT_LOAD_REPLICAS
    );
    // no "FloorLowered from 12 to 10", and no event for a floor that did not change
    for name in ["app-floor", "same-floor"] {
        let events = floor_events(kube, ns, name);
        assert!(events.is_empty(), "{name}: {events:#?}");
    }

    // the opt-in: the floor follows the forecast below the owner's value
    kube.patch_merge(&path, json!({"spec": {"floor": {"allowBelowOwner": true}}}));
    high.wait_floor(
        &mut op,
        kube,
        "the floor below the owner's",
        FLAT_LOAD_REPLICAS,
    );
    let lowered = wait_events(kube, ns, "app-floor", "FloorLowered");
    assert!(
        lowered[0]["note"].as_str().is_some_and(|n| n.starts_with(
            "set the floor of HorizontalPodAutoscaler floor-owner/app from 12 to 10;"
        )),
        "{lowered:#?}"
    );
    // and a delete puts the owner's value back
    kube.delete(&path);
    wait_for(
        &mut op,
        kube,
        &high.path,
        "the owner's floor back",
        WAIT,
        |o| o["spec"]["minReplicas"] == 12 && o["metadata"]["annotations"][ANNOTATION].is_null(),
    );
    wait_gone(&mut op, kube, &path, Duration::from_secs(30));
    op.assert_never_forbidden();
}

#[test]
fn another_writers_floor_is_not_overwritten_and_a_delete_leaves_it() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-admin";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 2, "maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    hpa.create_scaler(kube, ns, "app-floor");
    hpa.wait_floor(&mut op, kube, "the raised floor", FLAT_LOAD_REPLICAS);
    let path = scaler_path(ns, "app-floor");

    // an admin sets 4: prescale leaves it (no revert), says why, and records 4 as the owner's
    hpa.edit(kube, "kubectl-edit", json!({"spec": {"minReplicas": 4}}));
    let s = wait_for(&mut op, kube, &path, "FloorConflict", WAIT, |s| {
        able(s).0 == "FloorConflict"
    });
    let message = able(&s).1;
    assert!(
        message.starts_with(
            "spec.minReplicas of HorizontalPodAutoscaler floor-admin/app is 4, set by kubectl-edit: \
             prescale does not overwrite another writer's floor (it would set 10)"
        ),
        "{message}"
    );
    assert!(message.contains(ANNOTATION), "the remedy: {message}");
    std::thread::sleep(Duration::from_secs(3));
    let obj = kube.get(&hpa.path);
    assert_eq!(obj["spec"]["minReplicas"], 4, "not reverted");
    assert_eq!(obj["metadata"]["annotations"][ANNOTATION], "4", "{obj}");
    let warned = wait_events(kube, ns, "app-floor", "FloorConflict");
    assert_eq!(warned[0]["type"], "Warning", "{warned:#?}");

    // removing the annotation hands the floor back: 10 again, with 4 as the owner's
    hpa.edit(
        kube,
        "kubectl-annotate",
        json!({"metadata": {"annotations": {ANNOTATION: null}}}),
    );
    wait_for(
        &mut op,
        kube,
        &hpa.path,
        "the floor handed back",
        WAIT,
        |o| {
            o["spec"]["minReplicas"] == FLAT_LOAD_REPLICAS
                && o["metadata"]["annotations"][ANNOTATION] == "4"
        },
    );
    wait_for(&mut op, kube, &path, "the conflict over", WAIT, |s| {
        able(s).0 == "ReadyForNewScale"
    });

    // the admin sets 6, then the scaler is deleted: the admin's 6 stays (not 4, not 2)
    hpa.edit(kube, "kubectl-edit", json!({"spec": {"minReplicas": 6}}));
    wait_for(&mut op, kube, &path, "FloorConflict again", WAIT, |s| {
        able(s).0 == "FloorConflict"
    });
    kube.delete(&path);
    wait_gone(&mut op, kube, &path, Duration::from_secs(30));
    let obj = kube.get(&hpa.path);
    assert_eq!(
        obj["spec"]["minReplicas"], 6,
        "the admin's floor stays: {obj}"
    );
    assert!(
        obj["metadata"]["annotations"][ANNOTATION].is_null(),
        "{obj}"
    );
    let left = wait_events(kube, ns, "app-floor", "FloorRestored");
    assert!(
        left.iter().any(|e| e["note"]
            == "left the floor of HorizontalPodAutoscaler app at 6, as kubectl-edit set it since \
                prescale's last write: the scaler is being deleted"),
        "{left:#?}"
    );
    op.assert_never_forbidden();
}

#[test]
fn a_new_scaler_does_not_pin_the_floor_at_the_workloads_size() {
    // the forecast needs 5; the HPA has scaled the workload to 8 on what it measures
    let prom = steady_load(50.0);
    let kube = KubeCluster::shared();
    let ns = "floor-cold";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 8);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 3, "maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    // the default stabilisation window: a cold start counts where it starts as recommended
    let window = [("/spec/scaleDown/stabilizationWindow", json!("15m"))];
    hpa.create_scaler_with(kube, ns, "app-floor", &window);
    let obj = wait_for(&mut op, kube, &hpa.path, "the floor raised", WAIT, |o| {
        o["spec"]["minReplicas"] != 3
    });
    assert_eq!(
        obj["spec"]["minReplicas"], 5,
        "the floor is the forecast's 5, not the workload's 8"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kube.get(&hpa.path)["spec"]["minReplicas"], 5);
    let events = floor_events(kube, ns, "app-floor");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0]["note"].as_str().is_some_and(|n| n
            .starts_with("set the floor of HorizontalPodAutoscaler floor-cold/app from 3 to 5;")),
        "{events:#?}"
    );
    assert_eq!(kube.deployment_replicas(ns, "app"), 8);
}

/// Deletes the scaler `name` and waits until the operator gave up putting the floor back and
/// removed the finalizer; the `FloorNotRestored` Warning event's note.
fn delete_and_wait_given_up(
    op: &mut Controller,
    kube: &KubeCluster,
    ns: &str,
    name: &str,
) -> String {
    let path = scaler_path(ns, name);
    kube.delete(&path);
    wait_gone(op, kube, &path, Duration::from_secs(90));
    let given_up = wait_events(kube, ns, name, "FloorNotRestored");
    assert_eq!(given_up.len(), 1, "{given_up:#?}");
    assert_eq!(given_up[0]["type"], "Warning");
    given_up[0]["note"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_restore_the_api_server_rejects_is_given_up_after_a_few_attempts() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-invalid";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 3, "maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    // a floor below the owner's 3 (the opt-in), then the HPA's maximum lowered to it: the
    // owner's 3 cannot go back (the API server answers 422)
    let below = [
        ("/spec/maxReplicas", json!(2)),
        ("/spec/floor", json!({"allowBelowOwner": true})),
        ("/spec/scaleDown/maxPercentPerMinute", json!(0)),
    ];
    hpa.create_scaler_with(kube, ns, "app-floor", &below);
    hpa.wait_floor(&mut op, kube, "the floor below the owner's", 2);
    hpa.edit(kube, "kubectl-edit", json!({"spec": {"maxReplicas": 2}}));
    let note = delete_and_wait_given_up(&mut op, kube, ns, "app-floor");
    assert!(
        note.starts_with(
            "gave up putting back the floor of HorizontalPodAutoscaler floor-invalid/app after 5 attempts: "
        ) && note.contains("is invalid")
            && note.ends_with(
                "The finalizer prescale.dev/restore-floor is removed; set spec.minReplicas of \
                 HorizontalPodAutoscaler floor-invalid/app by hand (the owner's value is in its \
                 annotation prescale.dev/original-min-replicas)"
            ),
        "{note}"
    );
    let failed = wait_events(kube, ns, "app-floor", "FloorRestoreFailed");
    assert_eq!(failed[0]["type"], "Warning", "{failed:#?}");
    assert_eq!(kube.get(&hpa.path)["spec"]["minReplicas"], 2);
}

#[test]
fn a_removed_scaled_object_crd_does_not_hold_the_finalizer() {
    // what the API server answers for a group nobody serves: a bare 404, not a Status
    let bare = kube_bare_404(KubeCluster::shared());
    assert_eq!(bare, (404, "404 page not found\n".to_string()));
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-crd-gone";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let so = FloorObject::scaled_object(
        kube,
        ns,
        json!({"minReplicaCount": 1, "maxReplicaCount": 20}),
    );
    let proxy = ApiProxy::start(kube);
    let mut op = operator_through(kube, ns, &prom, &proxy);
    so.create_scaler(kube, ns, "app-floor");
    so.wait_floor(&mut op, kube, "the raised floor", FLAT_LOAD_REPLICAS);
    // the CRD is removed, as far as the operator sees (the other tests share the real one)
    proxy.set_faults(vec![
        Fault::not_served("GET", "/apis/keda.sh/"),
        Fault::not_served("PATCH", "/apis/keda.sh/"),
    ]);
    let path = scaler_path(ns, "app-floor");
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "the CRD reported missing",
        WAIT,
        |s| able(s).0 == "TargetNotFound",
    );
    assert_eq!(
        able(&s).1,
        "ScaledObject floor-crd-gone/app cannot be read: the ScaledObject CRD (keda.sh/v1alpha1) \
         is not installed (install KEDA, or point scaleTargetRef at the workload)"
    );
    let note = delete_and_wait_given_up(&mut op, kube, ns, "app-floor");
    assert_eq!(
        note,
        "gave up putting back the floor of ScaledObject floor-crd-gone/app after 5 attempts: the \
         ScaledObject CRD (keda.sh/v1alpha1) is not installed. The finalizer \
         prescale.dev/restore-floor is removed; there is no ScaledObject left to put back"
    );
}

/// The status and body of the API server's answer for a path of a group it does not serve.
fn kube_bare_404(kube: &KubeCluster) -> (u16, String) {
    let resp = kube.request(
        "GET",
        "/apis/not-installed.example.com/v1/namespaces/default/things/x",
        None,
        None,
    );
    (resp.status, resp.body)
}

#[test]
fn a_restore_forbidden_by_rbac_is_given_up_after_a_few_attempts() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "floor-forbidden";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa = FloorObject::hpa(kube, ns, json!({"minReplicas": 2, "maxReplicas": 30}));
    let mut op = operator(kube, ns, &prom);
    hpa.create_scaler(kube, ns, "app-floor");
    hpa.wait_floor(&mut op, kube, "the raised floor", FLAT_LOAD_REPLICAS);
    // the RBAC of floor mode on HPAs goes (the finalizer's patch on the scaler stays)
    let roles = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles");
    let role = kube.get(&format!("{roles}/prescale"));
    let mut rules = role["rules"].as_array().expect("the Role's rules").clone();
    for rule in &mut rules {
        let on_hpas = rule["resources"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("horizontalpodautoscalers")));
        if let (true, Some(verbs)) = (on_hpas, rule["verbs"].as_array_mut()) {
            verbs.retain(|v| v != "patch");
        }
    }
    rules.retain(|r| r["verbs"].as_array().is_some_and(|v| !v.is_empty()));
    assert_ne!(&rules, role["rules"].as_array().unwrap(), "{role}");
    kube.patch_merge(&format!("{roles}/prescale"), json!({"rules": rules}));
    let note = delete_and_wait_given_up(&mut op, kube, ns, "app-floor");
    assert!(
        note.starts_with(
            "gave up putting back the floor of HorizontalPodAutoscaler floor-forbidden/app after 5 attempts: "
        ) && note.contains("cannot patch resource \"horizontalpodautoscalers\"")
            && note.contains("the chart's floorMode.enabled=true"),
        "{note}"
    );
    assert_eq!(
        kube.get(&hpa.path)["spec"]["minReplicas"],
        FLAT_LOAD_REPLICAS,
        "left as it was"
    );
}
