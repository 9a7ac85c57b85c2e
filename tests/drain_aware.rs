//! Drain-aware scale-in (`scaleDown.drainAware`) on the real control plane WITH
//! kube-controller-manager (tests/support/cluster.rs): its Deployment and ReplicaSet
//! controllers create the pods (they stay Pending: there is no scheduler or kubelet) and delete
//! the ones the ReplicaSet picks when prescale lowers the replicas. A real Prometheus holds the
//! load history and one in-flight series per pod, written for the pod names the
//! controller-manager chose (so it is started after the pods exist), and the `prescale run`
//! binary runs as the chart's ServiceAccount.
//!
//! - With `drainAware.enabled` in the chart: prescale gives the idlest pods, those that go, the
//!   lowest `controller.kubernetes.io/pod-deletion-cost` (and writes no other pod), then lowers
//!   the replicas, and the pods that remain are the busiest ones (a `DrainAware` event, the
//!   counter). 200 pods lowered to 150 take 50 pod PATCHes (counted by an [`ApiProxy`] in front
//!   of the API server) and one evaluation; then, with the status written every second, the
//!   operator evaluates once per sync interval, not once per status write.
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
use support::cluster::{ApiProxy, KubeCluster};
use support::scenario::{create_scaler, scaler_path, scrape, start_operator, wait_for};
use support::{
    Controller, Prometheus, find_condition, free_port, join_openmetrics, openmetrics_gauge, report,
    unix_now, wait_until,
};

/// The Deployment's replicas before, and what flat load 30 at targetPerReplica 10 needs.
const START: usize = 5;
const WANT: usize = 3;
/// The pods that go.
const GOING: usize = START - WANT;
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
    prometheus_at(now, 30.0, extra)
}

/// A day of flat load `load` (`load / 10` replicas), plus `extra`.
fn prometheus_at(now: i64, load: f64, extra: Option<String>) -> Prometheus {
    let load = openmetrics_gauge("proxy_rps", &[], now - 86_400, now - 60, 60, |_| load);
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
        assert!(
            p["metadata"]["annotations"][COST].is_null(),
            "only the pods that go are written: {}",
            p["metadata"]
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
            "set pod-deletion-cost on {GOING} of {START} pods of Deployment {ns}/{name} before scaling down from {START} to {WANT}; the {GOING} idlest go: "
        )),
        "{note}"
    );
    let s = kube.get(&scaler_path(ns, name));
    assert_eq!(able(&s).1, "ReadyForNewScale", "{}", s["status"]);
    let metrics = scrape(&http);
    assert!(
        metrics.contains(&format!(
            "prescale_pod_deletion_cost_updates_total{{namespace=\"{ns}\",name=\"{name}\"}} {GOING}"
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

/// The pods of the large scale-down, and the count it wants (load 1500 at targetPerReplica 10).
const MANY: usize = 200;
const MANY_WANT: usize = 150;
/// The sync interval of the large scale-down and its steady window.
const SYNC_S: u64 = 3;
const STEADY: Duration = Duration::from_secs(30);

/// `prescale run` for `ns` as the chart's ServiceAccount with `drainAware.enabled`, talking to
/// the API server through `proxy` (which counts its requests), evaluating every `sync`.
fn operator_via(
    kube: &KubeCluster,
    ns: &str,
    proxy: &ApiProxy,
    prom: &Prometheus,
    sync: &str,
) -> (Controller, String) {
    let values = std::env::temp_dir().join(format!("prescale-values-{ns}-{}.yaml", free_port()));
    std::fs::write(&values, "drainAware:\n  enabled: true\n").expect("write the chart values");
    let kubeconfig = kube.operator_kubeconfig_for(ns, &[ns], Some(&proxy.url()), Some(&values));
    let http = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--prometheus-url",
        &prom.url(),
        "--http-addr",
        &http,
        "--sync-interval",
        sync,
        "--namespaces",
        ns,
    ];
    let op = Controller::start(&args, &[("KUBECONFIG", &kubeconfig)]);
    (op, http)
}

/// The operator's reconciles so far (`prescale_reconcile_duration_seconds_count`).
fn reconciles(http: &str) -> u64 {
    let metrics = scrape(http);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("prescale_reconcile_duration_seconds_count "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[test]
fn a_scale_down_of_hundreds_of_pods_writes_only_the_pods_that_go_and_status_writes_trigger_nothing()
{
    let kube = KubeCluster::shared();
    let (ns, name) = ("drain-many", "proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, MANY as i64);
    let before = wait_pods(kube, ns, name, MANY);
    // pod i of the sorted names carries (i * 37) % 101 streams: the ranking is not the name order
    let values: Vec<(String, f64)> = before
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), ((i * 37) % 101) as f64))
        .collect();
    let mut busiest = values.clone();
    busiest.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep: Vec<String> = busiest[..MANY_WANT]
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    keep.sort();

    let now = unix_now();
    let prom = prometheus_at(
        now,
        10.0 * MANY_WANT as f64,
        Some(inflight_series(now, &values)),
    );
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .min_max(1, 500)
        .scale_down("0s", 0)
        .drain_aware("sum by (pod) (proxy_inflight)")
        .json();
    create_scaler(kube, scaler);
    let proxy = ApiProxy::start(kube);
    let (mut op, http) = operator_via(kube, ns, &proxy, &prom, &format!("{SYNC_S}s"));
    let path = scaler_path(ns, name);
    wait_for(
        &mut op,
        kube,
        &path,
        "the scale-down",
        Duration::from_secs(90),
        |_| kube.deployment_replicas(ns, name) == MANY_WANT as i64,
    );
    // the evaluation that scaled has ended once it is counted
    let evaluations = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        Some(reconciles(&http)).filter(|n| *n > 0)
    })
    .unwrap_or_default();
    let pod_patches = proxy.count("PATCH", &format!("/api/v1/namespaces/{ns}/pods/"));
    assert!(
        pod_patches <= MANY - MANY_WANT,
        "{pod_patches} pod PATCHes for a scale-down that removes {} pods",
        MANY - MANY_WANT
    );
    assert!(
        evaluations <= 2,
        "the scale-down took {evaluations} evaluations"
    );
    let scaled = kube.events_about(ns, name, "ScaledDown");
    assert_eq!(scaled.len(), 1, "one step: {scaled:#?}");
    assert!(
        scaled[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("from {MANY} to {MANY_WANT}")),
        "{:?}",
        scaled[0]["note"]
    );
    // the ReplicaSet removed the idlest
    let after = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        let p = pods(kube, ns, name);
        (p.len() == MANY_WANT).then_some(p)
    })
    .unwrap_or_else(|| panic!("{} pods left", pods(kube, ns, name).len()));
    assert_eq!(names(&after), keep, "the busiest pods should remain");

    // a steady window in which the status is written every second (as the operator's own
    // writes do): evaluations come once per sync interval, not once per write
    let first = reconciles(&http);
    let start = std::time::Instant::now();
    let mut writes = 0;
    while start.elapsed() < STEADY {
        kube.patch_merge(
            &format!("{path}/status"),
            json!({"status": {"observedGeneration": 0}}),
        );
        writes += 1;
        std::thread::sleep(Duration::from_secs(1));
        op.assert_running();
    }
    let steady = reconciles(&http) - first;
    let expected = STEADY.as_secs() / SYNC_S;
    assert!(
        steady <= expected + 3,
        "{steady} evaluations in {STEADY:?} at a sync interval of {SYNC_S}s ({writes} status writes)"
    );
    assert_eq!(
        kube.deployment_replicas(ns, name),
        MANY_WANT as i64,
        "steady"
    );
    let more_patches =
        proxy.count("PATCH", &format!("/api/v1/namespaces/{ns}/pods/")) - pod_patches;
    assert_eq!(more_patches, 0, "no pod written once the scale-down landed");
    op.assert_never_forbidden();
    report(&format!(
        "[drain-aware] {MANY} -> {MANY_WANT} pods: {pod_patches} pod PATCHes, scaled in {evaluations} evaluations; \
         {steady} evaluations in a steady {STEADY:?} at sync {SYNC_S}s with {writes} status writes"
    ));
}

/// The sum of the API server's `apiserver_request_total` for PATCH on pods.
fn apiserver_pod_patches(kube: &KubeCluster) -> u64 {
    let metrics = kube.request("GET", "/metrics", None, None).body;
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"pods\"")
                && l.contains("verb=\"PATCH\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An env variable's number, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The issue's measurement (issue 21 item 2), by hand: a Deployment of `DRAIN_BENCH_PODS`
/// (5000) pods lowered to `DRAIN_BENCH_WANT` (4000) by a drain-aware scaler at the default sync
/// interval (30 s), each pod's in-flight value changing every 15 s (a live gauge), for at most
/// `DRAIN_BENCH_MINUTES` (6) minutes after the first evaluation. Prints the operator's peak RSS,
/// the pod PATCHes the API server served, the evaluations per minute and the time until the
/// Deployment's replicas reached the count wanted. Compare builds with `PRESCALE_TEST_BIN`:
///
/// ```text
/// cargo build --release && PRESCALE_TEST_BIN=target/release/prescale \
///   cargo test --test drain_aware measure_a_5000_pod_scale_down -- --ignored --nocapture
/// ```
#[test]
#[ignore = "a measurement (minutes, 5000 pods): run by hand"]
fn measure_a_5000_pod_scale_down() {
    let pods_n = env_or("DRAIN_BENCH_PODS", 5000) as usize;
    let want = env_or("DRAIN_BENCH_WANT", 4000) as usize;
    let minutes = env_or("DRAIN_BENCH_MINUTES", 6);
    let kube = KubeCluster::shared();
    let (ns, name) = ("drain-bench", "proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, pods_n as i64);
    let t = std::time::Instant::now();
    let pod_names = wait_until(Duration::from_secs(900), Duration::from_secs(2), || {
        let p = names(&pods(kube, ns, name));
        (p.len() == pods_n).then_some(p)
    })
    .expect("the controller-manager makes the pods");
    eprintln!("[bench] {pods_n} pods made in {:.0?}", t.elapsed());
    // each pod's in-flight value moves every 15 s
    let now = unix_now();
    let mut inflight = String::from("# TYPE proxy_inflight gauge\n");
    for (i, pod) in pod_names.iter().enumerate() {
        let mut at = now - 600;
        while at <= now + 60 * (minutes as i64 + 10) {
            let v = (i as i64 * 7 + at / 15) % 23;
            let _ = writeln!(inflight, "proxy_inflight{{pod=\"{pod}\"}} {v} {at}");
            at += 15;
        }
    }
    inflight.push_str("# EOF\n");
    let prom = prometheus_at(now, 10.0 * want as f64, Some(inflight));
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .min_max(1, 10_000)
        .scale_down("0s", 0)
        .drain_aware("sum by (pod) (proxy_inflight)")
        .json();
    create_scaler(kube, scaler);
    let patches_before = apiserver_pod_patches(kube);
    let chart = "drainAware:\n  enabled: true\n";
    let (mut op, http) = start_operator(kube, ns, &prom.url(), Some(chart), "30s");
    let started = std::time::Instant::now();
    let deadline = Duration::from_secs(60 * minutes);
    let mut converged = None;
    while started.elapsed() < deadline {
        op.assert_running();
        if converged.is_none() && kube.deployment_replicas(ns, name) == want as i64 {
            converged = Some(started.elapsed());
            eprintln!("[bench] replicas at {want} after {:.0?}", started.elapsed());
        }
        if let Some(at) = converged
            && started.elapsed() > at + Duration::from_secs(60)
        {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let elapsed = started.elapsed();
    let evaluations = reconciles(&http);
    let patches = apiserver_pod_patches(kube) - patches_before;
    let rss = op.peak_rss_mib().unwrap_or(f64::NAN);
    let steps = kube.events_about(ns, name, "ScaledDown").len();
    let held = kube.get(&scaler_path(ns, name));
    report(&format!(
        "[drain-aware bench] {pods_n} -> {want} pods, {:.0?} observed: peak RSS {rss:.0} MiB, {patches} pod PATCHes, \
         {evaluations} evaluations ({:.1}/min), replicas at {want} after {}, {steps} ScaledDown events; \
         AbleToScale: {:?}",
        elapsed,
        evaluations as f64 / elapsed.as_secs_f64() * 60.0,
        converged.map_or("never".to_string(), |c| format!("{c:.0?}")),
        able(&held).2,
    ));
}
