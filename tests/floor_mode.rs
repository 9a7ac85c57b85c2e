//! Floor mode on the real control plane (tests/support/cluster.rs), with a real Prometheus and
//! the `prescale run` binary as the chart's ServiceAccount with `floorMode.enabled`: a scaler on
//! an `autoscaling/v2` HPA (or a KEDA ScaledObject, with a minimal copy of its CRD) raises that
//! object's floor to the plan's count under the object's own maximum, remembers the original
//! floor in an annotation, and puts it back when the scaler is deleted (its finalizer waits for
//! that) or set to DryRun. The Deployment itself is never written. No kube-controller-manager: the HPA is data.
//! The pure parts (clamping, the record written once, the restore patch) are unit tests in
//! `controller::floor`.

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::{Controller, Prometheus, free_port, openmetrics_gauge, unix_now, wait_until};

const ANNOTATION: &str = "prescale.dev/original-min-replicas";
const FINALIZER: &str = "prescale.dev/restore-floor";

fn scaler_path(ns: &str, name: &str) -> String {
    format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers/{name}")
}

/// Waits up to a minute for `f` on the object at `path` (the operator must stay up); panics
/// with the object and the operator's log otherwise.
fn wait_for(
    op: &mut Controller,
    kube: &KubeCluster,
    path: &str,
    what: &str,
    mut f: impl FnMut(&Value) -> bool,
) -> Value {
    let timeout = Duration::from_secs(60);
    wait_until(timeout, Duration::from_millis(200), || {
        op.assert_running();
        kube.try_get(path).filter(|s| f(s))
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not within {timeout:?}\nobject: {:?}\n{}",
            kube.try_get(path),
            op.log_tail(40)
        )
    })
}

/// Flat load 100 at the fixture's targetPerReplica 10: the plan wants 10 replicas.
fn prometheus() -> Prometheus {
    let now = unix_now();
    Prometheus::start_with_history(&openmetrics_gauge(
        "proxy_rps",
        &[],
        now - 86_400,
        now - 60,
        60,
        |_| 100.0,
    ))
}

/// The operator watching `ns`, with the chart's RBAC for floor mode.
fn operator(kube: &KubeCluster, ns: &str, prom: &Prometheus) -> Controller {
    let values = std::env::temp_dir().join(format!("prescale-floor-{ns}-{}.yaml", free_port()));
    std::fs::write(&values, "floorMode:\n  enabled: true\n").unwrap();
    let kubeconfig = kube.operator_kubeconfig_for(ns, &[ns], None, Some(&values));
    let http = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--prometheus-url",
        &prom.url(),
        "--http-addr",
        &http,
        "--sync-interval",
        "1s",
        "--namespaces",
        ns,
    ];
    Controller::start(&args, &[("KUBECONFIG", &kubeconfig)])
}

/// Creates the fixture's scaler `name` (12 h of history) on the floor object `target`.
fn create_scaler(kube: &KubeCluster, ns: &str, name: &str, target: Value) {
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .with("/spec/scaleTargetRef", target)
        .json();
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
        scaler,
    );
}

/// Creates a scaler `name` on the floor object, waits for the floor `want` and the annotation
/// `original`, deletes the scaler and waits for the floor `original` back, no annotation, and
/// the scaler gone (its finalizer removed).
#[allow(clippy::too_many_arguments)]
fn raise_then_restore(
    kube: &KubeCluster,
    op: &mut Controller,
    ns: &str,
    name: &str,
    target: Value,
    object_path: &str,
    min_field: &str,
    want: i64,
    original: i64,
    mode: &str,
) {
    create_scaler(kube, ns, name, target);
    let path = scaler_path(ns, name);
    let obj = wait_for(op, kube, object_path, "the raised floor", |o| {
        o["spec"][min_field] == want
    });
    assert_eq!(
        obj["metadata"]["annotations"][ANNOTATION],
        original.to_string(),
        "the original floor is remembered: {obj}"
    );
    let s = wait_for(op, kube, &path, "status.targetMode", |s| {
        s["status"]["targetMode"] == mode
    });
    assert_eq!(s["metadata"]["finalizers"], json!([FINALIZER]), "{s}");
    assert_eq!(
        kube.deployment_replicas(ns, "app"),
        3,
        "the workload is never written in floor mode"
    );
    // a later reconcile keeps the record of the original, not prescale's own value
    std::thread::sleep(Duration::from_secs(3));
    let obj = kube.get(object_path);
    assert_eq!(obj["spec"][min_field], want);
    assert_eq!(
        obj["metadata"]["annotations"][ANNOTATION],
        original.to_string()
    );

    kube.delete(&path);
    wait_for(op, kube, object_path, "the restored floor", |o| {
        o["spec"][min_field] == original && o["metadata"]["annotations"][ANNOTATION].is_null()
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
    let prom = prometheus();
    let kube = KubeCluster::shared();
    let ns = "floor-hpa";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    kube.create(
        &format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                     "minReplicas": 2, "maxReplicas": 8}
        }),
    );
    let mut op = operator(kube, ns, &prom);
    // the plan wants 10; the HPA's maxReplicas 8 bounds the floor
    raise_then_restore(
        kube,
        &mut op,
        ns,
        "app-floor",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "app"}),
        &format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/app"),
        "minReplicas",
        8,
        2,
        "HPAFloor",
    );
}

#[test]
fn a_keda_scaled_object_floor_is_raised_and_restored_on_delete() {
    let prom = prometheus();
    let kube = KubeCluster::shared();
    install_scaled_object_crd(kube);
    let ns = "floor-keda";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    kube.create(
        &format!("/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects"),
        json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"scaleTargetRef": {"name": "app"}, "minReplicaCount": 1,
                     "maxReplicaCount": 20,
                     "triggers": [{"type": "prometheus", "metadata": {"query": "x", "threshold": "10"}}]}
        }),
    );
    let mut op = operator(kube, ns, &prom);
    raise_then_restore(
        kube,
        &mut op,
        ns,
        "app-floor",
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "app"}),
        &format!("/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/app"),
        "minReplicaCount",
        10,
        1,
        "KEDAFloor",
    );
}

#[test]
fn dry_run_puts_the_floor_back_and_drops_the_finalizer() {
    let prom = prometheus();
    let kube = KubeCluster::shared();
    let ns = "floor-dryrun";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 3);
    let hpa_path = format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/app");
    kube.create(
        &format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                     "maxReplicas": 30}
        }),
    );
    let mut op = operator(kube, ns, &prom);
    create_scaler(
        kube,
        ns,
        "app-floor",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "app"}),
    );
    // no minReplicas in the HPA's spec: the default 1 is the original
    let hpa = wait_for(&mut op, kube, &hpa_path, "the raised floor", |o| {
        o["spec"]["minReplicas"] == 10
    });
    assert_eq!(hpa["metadata"]["annotations"][ANNOTATION], "1");
    let path = scaler_path(ns, "app-floor");
    kube.patch_merge(&path, json!({"spec": {"mode": "DryRun"}}));
    wait_for(&mut op, kube, &hpa_path, "the floor put back", |o| {
        o["spec"]["minReplicas"] == 1 && o["metadata"]["annotations"][ANNOTATION].is_null()
    });
    wait_for(&mut op, kube, &path, "the finalizer removed", |s| {
        s["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    });
    // DryRun leaves the floor alone from then on
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kube.get(&hpa_path)["spec"]["minReplicas"], 1);
}

#[test]
fn a_keda_workload_idle_at_zero_is_woken_by_the_floor() {
    let prom = prometheus();
    let kube = KubeCluster::shared();
    install_scaled_object_crd(kube);
    let ns = "floor-keda-idle";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "app", 0);
    let so_path = format!("/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/app");
    kube.create(
        &format!("/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects"),
        json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "app", "namespace": ns},
            "spec": {"scaleTargetRef": {"name": "app"}, "minReplicaCount": 0,
                     "triggers": [{"type": "prometheus", "metadata": {"query": "x", "threshold": "10"}}]}
        }),
    );
    let mut op = operator(kube, ns, &prom);
    create_scaler(
        kube,
        ns,
        "app-floor",
        json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "app"}),
    );
    // KEDA's 0 is idle, not switched off: the forecast raises the floor from it
    let so = wait_for(&mut op, kube, &so_path, "the floor raised from idle", |o| {
        o["spec"]["minReplicaCount"] == 10
    });
    assert_eq!(so["metadata"]["annotations"][ANNOTATION], "0");
    assert_eq!(
        kube.deployment_replicas(ns, "app"),
        0,
        "KEDA, not prescale, wakes it"
    );
}
