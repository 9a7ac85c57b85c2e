//! Drain-aware scale-in (`scaleDown.drainAware`) on the real control plane WITH
//! kube-controller-manager (tests/support/cluster.rs): its Deployment and ReplicaSet
//! controllers create the pods (they stay Pending: there is no scheduler or kubelet) and delete
//! the ones the ReplicaSet picks when prescale lowers the replicas. A real Prometheus holds the
//! load history and one in-flight series per pod, written for the pod names the
//! controller-manager chose (so it is started after the pods exist), and the `prescale run`
//! binary runs as the chart's ServiceAccount.
//!
//! - With `drainAware.enabled` in the chart: prescale sets each pod's
//!   `controller.kubernetes.io/pod-deletion-cost` to its in-flight count, then lowers the
//!   replicas, and the pods that remain are the busiest ones (a `DrainAware` event, the
//!   counter).
//! - Without it: listing the pods is forbidden, the scale-down is held with
//!   `AbleToScale=False` `DrainAwareUnavailable` naming the forbidden call and the chart value,
//!   and after `maxWait` it goes ahead without costs (a `DrainAwareSkipped` Warning).
//!
//! The cost and wait rules themselves are unit tests (`planner::drain`).

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::scenario::{create_scaler, scaler_path, scrape, start_operator, wait_for};
use support::{
    Prometheus, find_condition, join_openmetrics, openmetrics_gauge, report, unix_now, wait_until,
};

/// The Deployment's replicas before, and what flat load 30 at targetPerReplica 10 needs.
const START: usize = 5;
const WANT: usize = 3;
/// The in-flight requests of the pods, in the order of their names.
const IN_FLIGHT: [f64; START] = [7.0, 0.0, 12.0, 2.0, 5.0];
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The Deployment's pods that are not terminating, by name.
fn pods(kube: &KubeCluster, ns: &str, app: &str) -> Vec<Value> {
    let list = kube.get(&format!(
        "/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{app}"
    ));
    let mut pods: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string());
    pods
}

fn names(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until the controller-manager has created exactly `n` pods of the Deployment.
fn wait_pods(kube: &KubeCluster, ns: &str, app: &str, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let p = names(&pods(kube, ns, app));
        (p.len() == n).then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "the controller-manager did not make {n} pods of {ns}/{app}: {:?}\n{}",
            names(&pods(kube, ns, app)),
            kube.log_tail("kube-controller-manager", 30)
        )
    })
}

/// OpenMetrics text of `proxy_inflight{pod=...}`, one series per pod, every 5 s from 10 minutes
/// ago to 10 minutes ahead (an instant query at "now" finds the latest).
fn inflight_series(now: i64, pods: &[(String, f64)]) -> String {
    let mut out = String::from("# TYPE proxy_inflight gauge\n");
    for (pod, v) in pods {
        let mut t = now - 600;
        while t <= now + 600 {
            let _ = writeln!(out, "proxy_inflight{{pod=\"{pod}\"}} {v} {t}");
            t += 5;
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A day of flat load 30 (3 replicas at the fixture's targetPerReplica 10), plus `extra`.
fn prometheus(now: i64, extra: Option<String>) -> Prometheus {
    let load = openmetrics_gauge("proxy_rps", &[], now - 86_400, now - 60, 60, |_| 30.0);
    let parts: Vec<String> = std::iter::once(load).chain(extra).collect();
    Prometheus::start_with_history(&join_openmetrics(&parts))
}

/// A drain-aware scaler on `ns/name` that scales down at once and waits at most `max_wait` for
/// pod readings.
fn create_drain_aware(kube: &KubeCluster, ns: &str, name: &str, max_wait: &str) {
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .scale_down("0s", 0)
        .drain_aware("sum by (pod) (proxy_inflight)")
        .with("/spec/scaleDown/drainAware/maxWait", json!(max_wait))
        .json();
    create_scaler(kube, scaler);
}

fn able(s: &Value) -> (String, String, String) {
    let c = find_condition(s, "AbleToScale")
        .cloned()
        .unwrap_or_default();
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (field("status"), field("reason"), field("message"))
}

#[test]
fn the_replicaset_removes_the_idlest_pods_after_prescale_sets_their_deletion_cost() {
    let kube = KubeCluster::shared();
    let (ns, name) = ("drain-aware", "proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, START as i64);
    let before = wait_pods(kube, ns, name, START);
    let values: Vec<(String, f64)> = before.iter().cloned().zip(IN_FLIGHT).collect();
    let mut busiest = values.clone();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut keep: Vec<String> = busiest[..WANT].iter().map(|(p, _)| p.clone()).collect();
    keep.sort();

    let now = unix_now();
    let prom = prometheus(now, Some(inflight_series(now, &values)));
    create_drain_aware(kube, ns, name, "5m");
    let chart = "drainAware:\n  enabled: true\n";
    let (mut op, http) = start_operator(kube, ns, &prom.url(), Some(chart), "1s");

    let path = scaler_path(ns, name);
    wait_for(
        &mut op,
        kube,
        &path,
        "the scale-down",
        Duration::from_secs(90),
        |_| kube.deployment_replicas(ns, name) == WANT as i64,
    );
    // the ReplicaSet deletes the pods with the lowest cost: the busiest remain
    let after = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let p = pods(kube, ns, name);
        (p.len() == WANT).then_some(p)
    })
    .unwrap_or_else(|| panic!("pods: {:?}", names(&pods(kube, ns, name))));
    assert_eq!(
        names(&after),
        keep,
        "the busiest pods should remain; in flight: {values:?}"
    );
    for p in &after {
        let pod = p["metadata"]["name"].as_str().unwrap();
        let v = values.iter().find(|(n, _)| n == pod).unwrap().1;
        assert_eq!(
            p["metadata"]["annotations"][COST],
            json!(format!("{v}")),
            "{pod}"
        );
    }
    let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, name, "DrainAware")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(events.len(), 1, "one DrainAware event: {events:#?}");
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(&format!(
            "set pod-deletion-cost on {START} of {START} pods of Deployment {ns}/{name} before scaling down from {START} to {WANT}; idlest: "
        )),
        "{note}"
    );
    let s = kube.get(&scaler_path(ns, name));
    assert_eq!(able(&s).1, "ReadyForNewScale", "{}", s["status"]);
    let metrics = scrape(&http);
    assert!(
        metrics.contains(&format!(
            "prescale_pod_deletion_cost_updates_total{{namespace=\"{ns}\",name=\"{name}\"}} {START}"
        )),
        "{metrics}"
    );
    op.assert_never_forbidden();
    report(&format!(
        "[drain-aware] in flight {values:?}: {START} -> {WANT} replicas, the ReplicaSet kept {keep:?}"
    ));
}

#[test]
fn without_the_pod_rbac_the_scale_down_waits_max_wait_then_goes_ahead_without_costs() {
    let kube = KubeCluster::shared();
    let (ns, name) = ("drain-forbidden", "proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, START as i64);
    wait_pods(kube, ns, name, START);
    let prom = prometheus(unix_now(), None);
    let max_wait = 15;
    create_drain_aware(kube, ns, name, &format!("{max_wait}s"));
    let chart = "drainAware:\n  enabled: false\n";
    let (mut op, _) = start_operator(kube, ns, &prom.url(), Some(chart), "1s");
    let path = scaler_path(ns, name);

    let held = wait_for(
        &mut op,
        kube,
        &path,
        "the hold",
        Duration::from_secs(90),
        |s| able(s).1 == "DrainAwareUnavailable",
    );
    let held_at = unix_now();
    let (status, _, message) = able(&held);
    assert_eq!(status, "False");
    assert!(
        message.starts_with(&format!("holding {START} replicas (the plan wants {WANT}): listing the pods of Deployment {ns}/{name} is forbidden: drain-aware scale-in needs get, list and patch on pods (the chart's drainAware.enabled=true)")),
        "{message}"
    );
    assert_eq!(kube.deployment_replicas(ns, name), START as i64);
    let ready = find_condition(&held, "Ready").cloned().unwrap_or_default();
    assert_eq!(ready["reason"], "DrainAwareUnavailable", "{ready}");

    // after maxWait: scaled down without the costs, and said so
    wait_for(
        &mut op,
        kube,
        &path,
        "the scale-down",
        Duration::from_secs(60),
        |_| kube.deployment_replicas(ns, name) == WANT as i64,
    );
    let waited = unix_now() - held_at;
    assert!(
        waited >= max_wait - 3,
        "scaled down {waited}s after the hold was first seen; maxWait is {max_wait}s"
    );
    let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, name, "DrainAwareSkipped")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(events.len(), 1, "one DrainAwareSkipped event: {events:#?}");
    assert_eq!(events[0]["type"], "Warning");
    assert!(
        events[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("is forbidden"),
        "{:?}",
        events[0]["note"]
    );
    assert_eq!(
        kube.events_about(ns, name, "DrainAwareUnavailable").len(),
        1,
        "one Warning when the hold began"
    );
    let no_costs = pods(kube, ns, name)
        .iter()
        .all(|p| p["metadata"]["annotations"][COST].is_null());
    assert!(no_costs, "no pod was annotated");
    report(&format!(
        "[drain-aware] without pod RBAC: held {waited}s (maxWait {max_wait}s), then {START} -> {WANT} without costs"
    ));
}
