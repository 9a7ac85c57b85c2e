//! Fault tests with real processes: the `prescale` binary, a real Prometheus behind a proxy that
//! can be made to fail, and the API emulator with injected errors. Each asserts the target's
//! replicas and the conditions.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    Controller, FaultProxy, KubeEmulator, Prometheus, find_condition, openmetrics_gauge, report,
    unix_now, wait_until,
};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SCALERS: &str = "/apis/prescale.dev/v1alpha1/namespaces/default/predictivescalers";
/// Flat load 100 at targetPerReplica 10: the scaler wants 10 replicas.
const WANT: i64 = 10;

fn replicas(kube: &KubeEmulator, name: &str) -> i64 {
    kube.get(&format!("{DEPLOYMENTS}/{name}"))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

fn scaler(kube: &KubeEmulator, name: &str) -> Value {
    kube.get(&format!("{SCALERS}/{name}"))
}

fn condition(kube: &KubeEmulator, name: &str, type_: &str) -> Option<(String, String)> {
    let s = scaler(kube, name);
    let c = find_condition(&s, type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

fn setup(kube: &KubeEmulator, name: &str, replicas: i64) {
    setup_deployment(kube, name, replicas);
    kube.create(
        SCALERS,
        json!({
            "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1, "maxReplicas": 50,
                "metrics": [{"name": "requests", "query": "proxy_rps", "targetPerReplica": "10"}],
                "history": {"lookback": "1d", "step": "1m"},
                "forecast": {"horizon": "1h", "refreshInterval": "10m"},
                "scaleDown": {"stabilizationWindow": "0s"},
                "fallback": "Reactive"
            }
        }),
    );
}

fn flat_history() -> Prometheus {
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

fn start(prom_url: &str, kube: &KubeEmulator, timeout: &str) -> Controller {
    Controller::start(
        &[
            "run",
            "--prometheus-url",
            prom_url,
            "--prometheus-timeout",
            timeout,
            "--http-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "1s",
        ],
        &[("KUBECONFIG", kube.kubeconfig_path())],
    )
}

#[test]
fn api_conflicts_and_errors_on_writes_are_retried_until_they_land_once() {
    let prom = flat_history();
    let kube = KubeEmulator::start();
    // the scale write: no answer within the operator's 10 s request timeout, two conflicts,
    // then two server errors; the status write: three errors
    kube.set_faults(json!([
        {"method": "PATCH", "path_contains": "/deployments/api-faults/scale", "delay_s": 12, "status": 504, "reason": "Timeout", "count": 1},
        {"method": "PATCH", "path_contains": "/deployments/api-faults/scale", "status": 409, "reason": "Conflict", "count": 2},
        {"method": "PATCH", "path_contains": "/deployments/api-faults/scale", "status": 500, "reason": "InternalError", "count": 2},
        {"method": "PATCH", "path_contains": "/predictivescalers/api-faults/status", "status": 500, "reason": "InternalError", "count": 3},
    ]));
    setup(&kube, "api-faults", 3);
    let started = Instant::now();
    let mut ctrl = start(&prom.url(), &kube, "5s");
    let mut seen = Vec::new();
    let landed = wait_until(Duration::from_secs(90), Duration::from_millis(100), || {
        ctrl.assert_running();
        let r = replicas(&kube, "api-faults");
        if seen.last() != Some(&r) {
            seen.push(r);
        }
        (r == WANT).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("the scale never landed:\n{}", ctrl.log_tail(40)));
    assert_eq!(seen, vec![3, WANT], "replicas went only from 3 to {WANT}");
    let status = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let s = scaler(&kube, "api-faults");
        (s.pointer("/status/desiredReplicas") == Some(&json!(WANT))).then_some(s)
    })
    .unwrap_or_else(|| panic!("the status never landed:\n{}", ctrl.log_tail(40)));
    assert_eq!(
        find_condition(&status, "AbleToScale").unwrap()["status"],
        "True",
        "{status}"
    );
    // nothing more is written once the target and the status are right
    std::thread::sleep(Duration::from_secs(2));
    let scale_patches = kube.count_requests("PATCH", "/deployments/api-faults/scale");
    let status_patches = kube.count_requests("PATCH", "/predictivescalers/api-faults/status");
    assert_eq!(
        scale_patches, 6,
        "1 timed out + 2 conflicts + 2 errors + 1 write"
    );
    assert!(
        status_patches >= 4,
        "3 failed + at least the one that landed: {status_patches}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (
            kube.count_requests("PATCH", "/deployments/api-faults/scale"),
            kube.count_requests("PATCH", "/predictivescalers/api-faults/status")
        ),
        (scale_patches, status_patches),
        "writes in a steady state (1 s sync interval)"
    );
    assert_eq!(replicas(&kube, "api-faults"), WANT);
    report(&format!(
        "[faults] /scale: a 12 s hang (10 s timeout), 409 x2, 500 x2, landed {landed:.2?} after start in {scale_patches} PATCHes; \
         status: 500 x3, landed in {status_patches} PATCHes; replicas went {seen:?}"
    ));
}

#[test]
fn a_failing_prometheus_never_lowers_replicas_and_the_scaler_recovers_by_itself() {
    let mut prom = flat_history();
    let proxy = FaultProxy::start(&prom.addr());
    let kube = KubeEmulator::start();
    setup(&kube, "prom-faults", 3);
    let mut ctrl = start(&proxy.url(), &kube, "2s");
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (replicas(&kube, "prom-faults") == WANT).then_some(())
    })
    .unwrap_or_else(|| panic!("never scaled to {WANT}:\n{}", ctrl.log_tail(40)));

    let mut figures = Vec::new();
    for (mode, reason) in [
        ("500", "MetricsQueryFailed"),
        ("garbage", "MetricsQueryFailed"),
        ("slow", "MetricsQueryTimeout"),
        ("killed", "MetricsSourceUnavailable"),
    ] {
        let t = Instant::now();
        if mode == "killed" {
            proxy.set_mode("forward");
            prom.stop();
        } else {
            proxy.set_mode(mode);
        }
        let got = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            ctrl.assert_running();
            assert_eq!(
                replicas(&kube, "prom-faults"),
                WANT,
                "replicas changed while Prometheus was failing ({mode})"
            );
            condition(&kube, "prom-faults", "ForecastAvailable")
                .filter(|(s, r)| s == "False" && r == reason)
                .map(|_| t.elapsed())
        })
        .unwrap_or_else(|| {
            panic!(
                "{mode}: no ForecastAvailable=False/{reason}: {:?}\n{}",
                condition(&kube, "prom-faults", "ForecastAvailable"),
                ctrl.log_tail(30)
            )
        });
        // held for a while, never below what the load needs, never zero
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert_eq!(replicas(&kube, "prom-faults"), WANT, "{mode}");
            std::thread::sleep(Duration::from_millis(200));
        }
        figures.push(format!("{mode} -> {reason} in {got:.2?}"));
        // recovery: Prometheus answers again
        let t = Instant::now();
        if mode == "killed" {
            prom.restart();
        }
        proxy.set_mode("forward");
        let back = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            condition(&kube, "prom-faults", "ForecastAvailable")
                .filter(|(s, _)| s == "True")
                .map(|_| t.elapsed())
        })
        .unwrap_or_else(|| panic!("{mode}: never recovered:\n{}", ctrl.log_tail(30)));
        assert_eq!(replicas(&kube, "prom-faults"), WANT);
        figures.push(format!("recovered in {back:.2?}"));
    }
    report(&format!(
        "[faults] Prometheus: {}; replicas held at {WANT} throughout; {} proxied requests",
        figures.join(", "),
        proxy.requests()
    ));
}

fn generation_observed(kube: &KubeEmulator, name: &str) -> bool {
    let s = scaler(kube, name);
    s["metadata"]["generation"].is_number()
        && s.pointer("/status/observedGeneration") == Some(&s["metadata"]["generation"])
}

#[test]
fn a_recreated_target_and_an_edited_scaler_are_honoured_at_once() {
    let prom = flat_history();
    let kube = KubeEmulator::start();
    setup(&kube, "edits", 3);
    let mut ctrl = start(&prom.url(), &kube, "5s");
    let wait = |what: &str, ctrl: &mut Controller, f: &mut dyn FnMut() -> bool| -> Duration {
        let t = Instant::now();
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            ctrl.assert_running();
            f().then(|| t.elapsed())
        })
        .unwrap_or_else(|| panic!("{what}: {}\n{}", scaler(&kube, "edits"), ctrl.log_tail(30)))
    };
    wait("scaled to 10", &mut ctrl, &mut || {
        replicas(&kube, "edits") == WANT
    });

    // the target deleted: a condition, no crash; re-created: scaled again
    kube.delete(&format!("{DEPLOYMENTS}/edits"));
    let gone = wait("TargetNotFound", &mut ctrl, &mut || {
        condition(&kube, "edits", "AbleToScale") == Some(("False".into(), "TargetNotFound".into()))
    });
    setup_deployment(&kube, "edits", 3);
    let back = wait("re-created target scaled", &mut ctrl, &mut || {
        kube.try_get(&format!("{DEPLOYMENTS}/edits")).is_some() && replicas(&kube, "edits") == WANT
    });

    // maxReplicas lowered: honoured at once, and the status says which generation it saw
    kube.patch_merge(
        &format!("{SCALERS}/edits"),
        json!({"spec": {"maxReplicas": 6}}),
    );
    let max = wait("maxReplicas 6", &mut ctrl, &mut || {
        replicas(&kube, "edits") == 6 && generation_observed(&kube, "edits")
    });
    assert_eq!(
        condition(&kube, "edits", "ScalingLimited"),
        Some(("True".into(), "TooManyReplicas".into()))
    );

    // DryRun: reported, never written
    kube.patch_merge(
        &format!("{SCALERS}/edits"),
        json!({"spec": {"mode": "DryRun"}}),
    );
    wait("DryRun observed", &mut ctrl, &mut || {
        generation_observed(&kube, "edits")
            && condition(&kube, "edits", "AbleToScale").is_some_and(|(_, r)| r == "DryRun")
    });
    kube.patch_merge(
        &format!("{DEPLOYMENTS}/edits"),
        json!({"spec": {"replicas": 2}}),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(&kube, "edits"), 2, "DryRun wrote the target");
    assert_eq!(
        scaler(&kube, "edits").pointer("/status/desiredReplicas"),
        Some(&json!(6))
    );

    // Active again with a query that has no data: the old history is not reused
    kube.patch_merge(
        &format!("{SCALERS}/edits"),
        json!({"spec": {"mode": "Active", "metrics": [
            {"name": "requests", "query": "proxy_rps_renamed", "targetPerReplica": "10"}]}}),
    );
    let query = wait("EmptyQueryResult for the new query", &mut ctrl, &mut || {
        generation_observed(&kube, "edits")
            && condition(&kube, "edits", "ForecastAvailable")
                == Some(("False".into(), "EmptyQueryResult".into()))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replicas(&kube, "edits"),
        2,
        "no data is not zero load: held"
    );
    report(&format!(
        "[faults] edits: target deleted -> TargetNotFound in {gone:.2?}, re-created and scaled in {back:.2?}; \
         maxReplicas 6 honoured in {max:.2?}; DryRun never wrote; a new query without data -> \
         EmptyQueryResult in {query:.2?}, replicas held"
    ));
}

fn setup_deployment(kube: &KubeEmulator, name: &str, replicas: i64) {
    kube.create(
        DEPLOYMENTS,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "p", "image": "example/proxy:1"}]}}}
        }),
    );
}
