//! Correct under every condition, on the real control plane (tests/support/cluster.rs) with a real
//! Prometheus and the `prescale run` binary as the chart's ServiceAccount: what a reliability review
//! found (phantom or merged scale events, status fields never cleared, state and series that leak,
//! failures invisible to alerting, a target at zero scaled back up, two scalers fighting over one
//! target, API calls without a bound). Each test names the defect it guards against; the pure ones
//! (the planner's budgets, DryRun, the clock stepping back, stale data) are unit tests.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use prescale::api::{PredictiveScaler, ScalerFixture};
use serde_json::{Value, json};
use support::cluster::{ApiProxy, Fault, KubeCluster};
use support::scenario::{FLAT_LOAD_REPLICAS, deployments_path, flat_load, scalers_path};
use support::{Controller, find_condition, free_port, http_request, report, unix_now, wait_until};

/// Flat load 100 at targetPerReplica 10: 10 replicas.
const WANT: i64 = FLAT_LOAD_REPLICAS;

fn deployment(kube: &KubeCluster, ns: &str, name: &str, replicas: i64) {
    kube.create_deployment(ns, name, replicas);
}

/// The scaler `name` most tests here create: the fixture's defaults on half a day of history,
/// scaling the Deployment of its own name.
fn scaler_fixture(ns: &str, name: &str) -> ScalerFixture {
    PredictiveScaler::test(ns, name).history("12h", "1m")
}

/// Creates the scaler on the API server, in the fixture's namespace.
fn create_scaler(kube: &KubeCluster, scaler: ScalerFixture) {
    let json = scaler.json();
    let path = scalers_path(json["metadata"]["namespace"].as_str().expect("a namespace"));
    kube.create(&path, json);
}

fn replicas(kube: &KubeCluster, ns: &str, name: &str) -> i64 {
    kube.deployment_replicas(ns, name)
}

fn get_scaler(kube: &KubeCluster, ns: &str, name: &str) -> Value {
    kube.get(&format!("{}/{name}", scalers_path(ns)))
}

fn reason(kube: &KubeCluster, ns: &str, name: &str, type_: &str) -> Option<String> {
    let s = get_scaler(kube, ns, name);
    find_condition(&s, type_).and_then(|c| c["reason"].as_str().map(str::to_string))
}

struct Operator {
    ctrl: Controller,
    http: String,
}

impl Operator {
    fn start(kubeconfig: &Path, prom: &str, ns: &str, extra: &[&str]) -> Operator {
        let http = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "run",
            "--prometheus-url",
            prom,
            "--http-addr",
            &http,
            "--sync-interval",
            "1s",
            "--namespaces",
            ns,
        ];
        args.extend_from_slice(extra);
        let ctrl = Controller::start(&args, &[("KUBECONFIG", kubeconfig)]);
        Operator { ctrl, http }
    }

    fn metrics(&self) -> String {
        http_request("GET", &format!("http://{}/metrics", self.http), None, None)
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// Waits for `what` (polling every 100 ms, the operator must stay up); how long it took.
    fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Operator) -> bool,
    ) -> Duration {
        let t = Instant::now();
        let done = wait_until(timeout, Duration::from_millis(100), || {
            self.ctrl.assert_running();
            f(self).then(|| t.elapsed())
        });
        done.unwrap_or_else(|| panic!("{what}: not within {timeout:?}\n{}", self.ctrl.log_tail(40)))
    }
}

fn events(kube: &KubeCluster, ns: &str, regarding: &str, reason: &str) -> Vec<Value> {
    kube.events_about(ns, regarding, reason)
}

/// Review items 3 and 9: after the target is deleted the status kept `currentReplicas: 30` beside
/// TargetNotFound (a merge patch cannot remove a field), the gauge kept 30, the status was patched on
/// every sync forever, and no counter, gauge or Warning event showed the failure.
#[test]
fn a_deleted_target_clears_status_and_gauge_is_visible_to_alerting_and_is_written_once() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-gone";
    let proxy = ApiProxy::start(kube);
    let kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
    deployment(kube, ns, "gone", 3);
    create_scaler(kube, scaler_fixture(ns, "gone"));
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    let gauge =
        format!("prescale_scaler_current_replicas{{namespace=\"{ns}\",name=\"gone\"}} {WANT}");
    op.wait(
        "scaled, and the gauge says so",
        Duration::from_secs(60),
        |o| replicas(kube, ns, "gone") == WANT && o.metrics().contains(&gauge),
    );
    kube.delete(&format!("{}/gone", deployments_path(ns)));
    let took = op.wait("TargetNotFound", Duration::from_secs(30), |_| {
        reason(kube, ns, "gone", "AbleToScale").as_deref() == Some("TargetNotFound")
    });
    let status = get_scaler(kube, ns, "gone")["status"].clone();
    assert!(
        status.get("currentReplicas").is_none(),
        "currentReplicas must be cleared: {status}"
    );
    // written once, then left alone while nothing changes
    std::thread::sleep(Duration::from_secs(2));
    let path = format!("/namespaces/{ns}/predictivescalers/gone/status");
    let patches = proxy.count("PATCH", &path);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        proxy.count("PATCH", &path),
        patches,
        "status patched again with nothing changed (1 s sync interval)"
    );
    let m = op.metrics();
    assert!(
        !m.contains(&format!(
            "prescale_scaler_current_replicas{{namespace=\"{ns}\",name=\"gone\"}}"
        )),
        "the current-replicas gauge of a missing target:\n{m}"
    );
    for want in [
        format!(
            "prescale_scaler_condition{{namespace=\"{ns}\",name=\"gone\",type=\"Ready\",status=\"False\",reason=\"TargetNotFound\"}} 1"
        ),
        "prescale_reconcile_errors_total{reason=\"TargetNotFound\"}".to_string(),
    ] {
        assert!(m.contains(&want), "{want} missing:\n{m}");
    }
    let warnings = events(kube, ns, "gone", "TargetNotFound");
    assert!(
        warnings.iter().any(|e| e["type"] == "Warning"),
        "no TargetNotFound Warning event"
    );
    op.ctrl.assert_never_forbidden();
    report(&format!(
        "[reliability] target deleted: TargetNotFound in {took:.2?}, currentReplicas cleared, its gauge removed, \
         the condition exported, a Warning event, and {patches} status PATCHes in all (none in 5 s of steady state)"
    ));
}

/// Issue 21 item 16: the status was a merge patch with a hand-kept list of keys to null, so
/// `status.concurrency` (and `forecast.series`, `forecast.topContributors`,
/// `forecast.backtestError`) stayed once the scaler no longer had them, and since the stored
/// status then never matched, a status PATCH went out at every sync. A status an earlier prescale
/// wrote by merge patch (whose managedFields entry keeps its fields) is cleaned up too.
#[test]
fn a_status_field_that_goes_away_is_cleared_and_a_steady_state_writes_nothing() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-cleared";
    let proxy = ApiProxy::start(kube);
    let kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
    deployment(kube, ns, "streams", 3);
    // 100/s lasting 1 s each: 100 streams, 10 replicas at 10 per replica (as without it)
    create_scaler(kube, scaler_fixture(ns, "streams").concurrency("vector(1)"));
    let path = format!("{}/streams", scalers_path(ns));
    // what an earlier prescale left: written by merge patch as `prescale` (an Update entry)
    kube.patch_merge(
        &format!("{path}/status?fieldManager=prescale"),
        json!({"status": {"forecast": {"metric": "requests", "model": "old",
            "generatedAt": "2025-01-01T00:00:00Z", "series": 3}}}),
    );
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    let has = |s: &Value, pointer: &str| s.pointer(pointer).is_some();
    op.wait("status.concurrency", Duration::from_secs(60), |_| {
        let s = get_scaler(kube, ns, "streams");
        has(&s, "/status/concurrency/0") && replicas(kube, ns, "streams") == WANT
    });
    let s = get_scaler(kube, ns, "streams");
    assert!(
        !has(&s, "/status/forecast/series"),
        "the earlier operator's forecast.series is left: {}",
        s["status"]
    );
    // the metric loses `concurrency`: its status goes with it
    let mut metrics = s["spec"]["metrics"].clone();
    metrics[0].as_object_mut().unwrap().remove("concurrency");
    kube.patch_merge(&path, json!({"spec": {"metrics": metrics}}));
    op.wait(
        "status.concurrency cleared",
        Duration::from_secs(30),
        |_| {
            let s = get_scaler(kube, ns, "streams");
            s["status"]["observedGeneration"] == s["metadata"]["generation"]
                && !has(&s, "/status/concurrency")
        },
    );
    // then nothing changes and nothing is written, over several 1 s syncs (within one minute:
    // the forecast peak's time, the first minute of the flat forecast, moves on at each minute)
    std::thread::sleep(Duration::from_secs(2));
    while !(3..=52).contains(&(unix_now() % 60)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status_path = format!("/namespaces/{ns}/predictivescalers/streams/status");
    let patches = proxy.count("PATCH", &status_path);
    let version = get_scaler(kube, ns, "streams")["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(5));
    let s = get_scaler(kube, ns, "streams");
    assert_eq!(
        (
            proxy.count("PATCH", &status_path),
            &s["metadata"]["resourceVersion"]
        ),
        (patches, &version),
        "status written again with nothing changed (1 s sync interval): {}",
        s["status"]
    );
    op.ctrl.assert_never_forbidden();
    report(&format!(
        "[reliability] status.concurrency and a leftover forecast.series cleared; {patches} status \
         PATCHes in all, none in 5 s of steady state"
    ));
}

/// Issue 21 item 4: a `stabilizationWindow` no longer than the sync interval never scaled down
/// (30 s window at a 30 s sync: 6 replicas wanting 3 held for 31 minutes): the window was empty
/// at every evaluation, and an empty window was taken for a cold start, which counts the
/// current count as recommended. Here a 1 s window at the 1 s sync interval.
#[test]
fn a_stabilization_window_no_longer_than_the_sync_interval_scales_down() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-window";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    deployment(kube, ns, "short", 16);
    create_scaler(kube, scaler_fixture(ns, "short").scale_down("1s", 0));
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    let took = op.wait(
        "the scale-down to the load's count",
        Duration::from_secs(60),
        |_| replicas(kube, ns, "short") == WANT,
    );
    report(&format!(
        "[reliability] a 1 s stabilization window at a 1 s sync interval: 16 -> {WANT} replicas \
         {took:.1?} after the operator started"
    ));
}

/// Review item 5: kube-runtime's Recorder folds events by reason and object, so three scale-ups
/// 2 -> 10 -> 20 -> 30 showed as one event "from 2 to 10" with a count of 3.
#[test]
fn every_scale_has_an_event_with_its_own_numbers() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-events";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    deployment(kube, ns, "steps", 2);
    create_scaler(kube, scaler_fixture(ns, "steps"));
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    for (min, want) in [(None, WANT), (Some(20), 20), (Some(30), 30)] {
        if let Some(min) = min {
            kube.patch_merge(
                &format!("{}/steps", scalers_path(ns)),
                json!({"spec": {"minReplicas": min}}),
            );
        }
        op.wait(&format!("{want} replicas"), Duration::from_secs(60), |_| {
            replicas(kube, ns, "steps") == want
        });
    }
    let notes = || -> Vec<String> {
        let mut v: Vec<String> = events(kube, ns, "steps", "ScaledUp")
            .iter()
            .filter_map(|e| e["note"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(notes()).filter(|n| n.len() >= 3)
    })
    .unwrap_or_else(notes);
    for step in ["from 2 to 10", "from 10 to 20", "from 20 to 30"] {
        assert!(
            got.iter().any(|n| n.contains(step)),
            "no ScaledUp event {step:?}: {got:#?}"
        );
    }
    assert_eq!(got.len(), 3, "one event per scale: {got:#?}");
    report(&format!(
        "[reliability] three scale-ups, three events: {}",
        got.iter()
            .map(|n| n.split(';').next().unwrap_or(n))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
}

/// Review item 6: a scaler deleted while its spec is invalid never triggered cleanup (its state,
/// history and gauges stayed forever); a renamed metric kept its gauges; a re-created scaler
/// inherited the failure backoff of the one before.
#[test]
fn nothing_of_a_scaler_outlives_it() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-leaks";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    deployment(kube, ns, "leaky", 3);
    create_scaler(kube, scaler_fixture(ns, "leaky"));
    // 12 h at 1 m is 721 points: within a 1,000-point cache; a day (1,441) is not
    let mut op = Operator::start(
        &kubeconfig,
        &prom.url(),
        ns,
        &["--history-cache-points", "1000"],
    );
    let series = |m: &str, needle: &str| m.lines().filter(|l| l.contains(needle)).count();
    op.wait("gauges of leaky", Duration::from_secs(60), |o| {
        series(&o.metrics(), "name=\"leaky\",metric=\"requests\"") > 0
    });
    // a renamed metric: the old name's series go
    kube.patch_merge(
        &format!("{}/leaky", scalers_path(ns)),
        json!({"spec": {"metrics": [{"name": "reqs", "query": "proxy_rps", "targetPerReplica": "10"}]}}),
    );
    op.wait(
        "the renamed metric's old series gone",
        Duration::from_secs(30),
        |o| {
            let m = o.metrics();
            series(&m, "metric=\"requests\"") == 0 && series(&m, "metric=\"reqs\"") > 0
        },
    );
    // invalid for this operator (the history cache is too small), then deleted
    kube.patch_merge(
        &format!("{}/leaky", scalers_path(ns)),
        json!({"spec": {"history": {"lookback": "1d"}}}),
    );
    op.wait("InvalidSpec", Duration::from_secs(30), |_| {
        reason(kube, ns, "leaky", "Ready").as_deref() == Some("InvalidSpec")
    });
    kube.delete(&format!("{}/leaky", scalers_path(ns)));
    let gone = op.wait("every series of leaky gone", Duration::from_secs(40), |o| {
        series(&o.metrics(), "name=\"leaky\"") == 0
    });

    // a scaler that keeps failing (a kind with no API), deleted and re-created: the new one
    // starts its backoff from the beginning
    let bad = scaler_fixture(ns, "failing").target_ref("example.com/v1", "Nope", "x");
    create_scaler(kube, bad.clone());
    op.wait("a long backoff", Duration::from_secs(60), |o| {
        o.ctrl.log().contains("retry_in_s=16")
    });
    kube.delete(&format!("{}/failing", scalers_path(ns)));
    wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        kube.try_get(&format!("{}/failing", scalers_path(ns)))
            .is_none()
            .then_some(())
    })
    .expect("deleted");
    std::thread::sleep(Duration::from_secs(2));
    let from = op.ctrl.log().len();
    create_scaler(kube, bad);
    op.wait(
        "the re-created scaler's first failure",
        Duration::from_secs(30),
        |o| o.ctrl.log()[from..].contains("reconcile failed"),
    );
    let first = op.ctrl.log()[from..]
        .lines()
        .find(|l| l.contains("reconcile failed"))
        .unwrap_or_default()
        .to_string();
    assert!(
        first.contains("retry_in_s=1 ") || first.ends_with("retry_in_s=1"),
        "the re-created scaler inherited a backoff: {first}"
    );
    report(&format!(
        "[reliability] leaks: a renamed metric's series removed; a scaler deleted while invalid forgotten \
         {gone:.2?} after deletion; a re-created failing scaler starts at a 1 s backoff"
    ));
}

/// Review item 11: a workload scaled to 0 for maintenance was scaled back up within one sync (the
/// HPA treats 0 as "disabled"), and `minReplicas: 0` was allowed without an opt-in.
#[test]
fn a_target_at_zero_is_left_alone_unless_the_scaler_owns_zero() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-zero";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    deployment(kube, ns, "paused", 0);
    create_scaler(kube, scaler_fixture(ns, "paused"));
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    op.wait("ScalingDisabled", Duration::from_secs(60), |_| {
        reason(kube, ns, "paused", "AbleToScale").as_deref() == Some("ScalingDisabled")
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(replicas(kube, ns, "paused"), 0, "scaled up from 0");
    // scaled up by hand: prescale takes over again
    kube.patch_merge(
        &format!("{}/paused", deployments_path(ns)),
        json!({"spec": {"replicas": 1}}),
    );
    op.wait(
        "scaled after the hand edit",
        Duration::from_secs(30),
        |_| replicas(kube, ns, "paused") == WANT,
    );
    // the API server refuses minReplicas 0 without the opt-in, and takes it with it
    let zero = scaler_fixture(ns, "zero").min_max(0, 50);
    let resp = kube.request(
        "POST",
        &format!("{}?dryRun=All", scalers_path(ns)),
        Some("application/json"),
        Some(&zero.clone().json()),
    );
    assert_eq!(resp.status, 422, "{}", resp.body);
    assert!(resp.body.contains("allowScaleToZero"), "{}", resp.body);
    deployment(kube, ns, "zero", 0);
    create_scaler(kube, zero.allow_scale_to_zero());
    op.wait(
        "scaled up from 0 with allowScaleToZero",
        Duration::from_secs(60),
        |_| replicas(kube, ns, "zero") == WANT,
    );
    report(
        "[reliability] a target at 0: ScalingDisabled and left at 0; scaled again once raised by hand; with allowScaleToZero scaled up from 0",
    );
}

/// Review item 13: two PredictiveScalers (or one and an HPA) on one target fought unnoticed.
#[test]
fn two_scalers_or_an_hpa_on_one_target_are_ambiguous_and_write_nothing() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-ambiguous";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    deployment(kube, ns, "shared", 3);
    create_scaler(kube, scaler_fixture(ns, "a").target("shared"));
    create_scaler(
        kube,
        scaler_fixture(ns, "b")
            .target("shared")
            .metric("requests", "proxy_rps", "5"),
    );
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    let took = op.wait("both AmbiguousTarget", Duration::from_secs(60), |_| {
        ["a", "b"]
            .iter()
            .all(|n| reason(kube, ns, n, "AbleToScale").as_deref() == Some("AmbiguousTarget"))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        replicas(kube, ns, "shared"),
        3,
        "nobody writes an ambiguous target"
    );
    let message =
        find_condition(&get_scaler(kube, ns, "a"), "AbleToScale").unwrap()["message"].clone();
    assert!(
        message
            .to_string()
            .contains("PredictiveScaler b also scales"),
        "{message}"
    );
    kube.delete(&format!("{}/b", scalers_path(ns)));
    op.wait("a alone scales", Duration::from_secs(60), |_| {
        replicas(kube, ns, "shared") == WANT
    });
    // an HPA on a scaler's target
    deployment(kube, ns, "hpa-target", 3);
    kube.create(
        &format!("/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"),
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "cpu", "namespace": ns},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hpa-target"},
                     "minReplicas": 2, "maxReplicas": 5,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
        }),
    );
    create_scaler(kube, scaler_fixture(ns, "c").target("hpa-target"));
    op.wait(
        "AmbiguousTarget beside an HPA",
        Duration::from_secs(60),
        |_| {
            let s = get_scaler(kube, ns, "c");
            find_condition(&s, "AbleToScale").is_some_and(|c| {
                c["reason"] == "AmbiguousTarget"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("HorizontalPodAutoscaler cpu"))
            })
        },
    );
    assert_eq!(replicas(kube, ns, "hpa-target"), 3);
    op.ctrl.assert_never_forbidden();
    report(&format!(
        "[reliability] two scalers on one target: both AmbiguousTarget in {took:.2?}, nothing written; the one left \
         scales; a scaler beside an HPA: AmbiguousTarget"
    ));
}

/// Review item 14: discovery (a kind prescale does not know) and event calls had no bound: a hung
/// API server held the reconcile for the client's five-minute read timeout.
#[test]
fn a_hanging_discovery_or_event_call_is_bounded_by_the_request_timeout() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "rel-hang";
    let proxy = ApiProxy::start(kube);
    let kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
    proxy.set_faults(vec![
        Fault::new("GET", "/apis/example.com/v1", 504, "Timeout")
            .after(Duration::from_secs(60))
            .times(100),
        Fault::new("POST", &format!("/namespaces/{ns}/events"), 504, "Timeout")
            .after(Duration::from_secs(60))
            .times(100),
    ]);
    create_scaler(
        kube,
        scaler_fixture(ns, "hung").target_ref("example.com/v1", "Widget", "x"),
    );
    let mut op = Operator::start(&kubeconfig, &prom.url(), ns, &[]);
    let took = op.wait(
        "FailedGetScale within the bound",
        Duration::from_secs(45),
        |_| {
            let s = get_scaler(kube, ns, "hung");
            find_condition(&s, "AbleToScale").is_some_and(|c| {
                c["reason"] == "FailedGetScale"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("did not answer within 10s"))
            })
        },
    );
    report(&format!(
        "[reliability] a discovery call that hangs (and event writes that hang): FailedGetScale {took:.2?} after \
         start, the reconcile bounded by the 10 s request timeout"
    ));
}
