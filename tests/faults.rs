//! Fault tests with real processes: the `prescale` binary (as the chart's ServiceAccount), a real
//! control plane (tests/support/cluster.rs), a real Prometheus behind a proxy that can be made to fail,
//! and an [`ApiProxy`] in front of the API server that injects hangs, 409s and 500s. Each test asserts the
//! target's replicas, the conditions and how many writes reached the API server. Two tests own a control
//! plane of their own: one kills and restarts its API server and etcd, one starts the operator before
//! its API server exists.

mod support;

use std::time::{Duration, Instant};

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::{ApiProxy, Fault, KubeCluster};
use support::scenario::{FLAT_LOAD_REPLICAS, deployments_path, flat_load, scalers_path};
use support::{
    Controller, FaultProxy, find_condition, free_port, http_request, report, wait_until,
};

/// Flat load 100 at targetPerReplica 10: the scaler wants 10 replicas.
const WANT: i64 = FLAT_LOAD_REPLICAS;

fn replicas(kube: &KubeCluster, ns: &str, name: &str) -> i64 {
    kube.get(&format!("{}/{name}", deployments_path(ns)))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

fn set_replicas(kube: &KubeCluster, ns: &str, name: &str, n: i64) {
    kube.patch_merge(
        &format!("{}/{name}", deployments_path(ns)),
        json!({"spec": {"replicas": n}}),
    );
}

fn get_scaler(kube: &KubeCluster, ns: &str, name: &str) -> Value {
    kube.get(&format!("{}/{name}", scalers_path(ns)))
}

fn condition(kube: &KubeCluster, ns: &str, name: &str, type_: &str) -> Option<(String, String)> {
    let s = get_scaler(kube, ns, name);
    let c = find_condition(&s, type_)?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

fn setup(kube: &KubeCluster, ns: &str, name: &str, replicas: i64) {
    kube.create_deployment(ns, name, replicas);
    kube.create(
        &scalers_path(ns),
        // the fixture's defaults: `proxy_rps` at 10 per replica, a day of history, no stabilization
        PredictiveScaler::test(ns, name).json(),
    );
}

/// `prescale run` for namespace `ns`, with `kubeconfig`; `http_addr` serves its probes.
fn start(
    prom_url: &str,
    ns: &str,
    kubeconfig: &std::path::Path,
    timeout: &str,
    http_addr: &str,
) -> Controller {
    Controller::start(
        &[
            "run",
            "--prometheus-url",
            prom_url,
            "--prometheus-timeout",
            timeout,
            "--http-addr",
            http_addr,
            "--sync-interval",
            "1s",
            "--namespaces",
            ns,
        ],
        &[("KUBECONFIG", kubeconfig)],
    )
}

/// Scale writes the operator says it made.
fn scale_writes(c: &Controller) -> usize {
    c.log().matches("scaled target").count()
}

fn probe(addr: &str, path: &str) -> Option<u16> {
    http_request("GET", &format!("http://{addr}{path}"), None, None)
        .ok()
        .map(|r| r.status)
}

#[test]
fn api_conflicts_and_errors_on_writes_are_retried_until_they_land_once() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "api-faults";
    let proxy = ApiProxy::start(kube);
    let kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
    // the scale write: no answer within the operator's 10 s request timeout, two conflicts,
    // then two server errors; the status write: three errors
    let scale = format!("/namespaces/{ns}/deployments/api-faults/scale");
    let status = format!("/namespaces/{ns}/predictivescalers/api-faults/status");
    proxy.set_faults(vec![
        Fault::new("PATCH", &scale, 504, "Timeout").after(Duration::from_secs(12)),
        Fault::new("PATCH", &scale, 409, "Conflict").times(2),
        Fault::new("PATCH", &scale, 500, "InternalError").times(2),
        Fault::new("PATCH", &status, 500, "InternalError").times(3),
    ]);
    setup(kube, ns, "api-faults", 3);
    let started = Instant::now();
    let mut ctrl = start(&prom.url(), ns, &kubeconfig, "5s", "127.0.0.1:0");
    let mut seen = Vec::new();
    let landed = wait_until(Duration::from_secs(90), Duration::from_millis(100), || {
        ctrl.assert_running();
        let r = replicas(kube, ns, "api-faults");
        if seen.last() != Some(&r) {
            seen.push(r);
        }
        (r == WANT).then(|| started.elapsed())
    })
    .unwrap_or_else(|| panic!("the scale never landed:\n{}", ctrl.log_tail(40)));
    assert_eq!(seen, vec![3, WANT], "replicas went only from 3 to {WANT}");
    // the status of a failed write (FailedUpdateScale) may land first; the one after the write
    // that landed must follow
    let stored = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let s = get_scaler(kube, ns, "api-faults");
        (s.pointer("/status/desiredReplicas") == Some(&json!(WANT))
            && find_condition(&s, "AbleToScale").is_some_and(|c| c["status"] == "True"))
        .then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the status never settled at {WANT}, AbleToScale=True: {}\n{}",
            get_scaler(kube, ns, "api-faults")["status"],
            ctrl.log_tail(40)
        )
    });
    assert_eq!(stored["status"]["currentReplicas"], WANT, "{stored}");
    // nothing more is written once the target and the status are right
    std::thread::sleep(Duration::from_secs(2));
    let scale_patches = proxy.count("PATCH", &scale);
    let status_patches = proxy.count("PATCH", &status);
    assert_eq!(
        scale_patches,
        6,
        "1 timed out + 2 conflicts + 2 errors + 1 write: {:?}",
        proxy.log()
    );
    assert!(
        status_patches >= 4,
        "3 failed + at least the one that landed: {status_patches}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (proxy.count("PATCH", &scale), proxy.count("PATCH", &status)),
        (scale_patches, status_patches),
        "writes in a steady state (1 s sync interval)"
    );
    assert_eq!(replicas(kube, ns, "api-faults"), WANT);
    assert_eq!(scale_writes(&ctrl), 1, "one scale write succeeded");
    ctrl.assert_never_forbidden();
    report(&format!(
        "[faults] /scale through the fault proxy: a 12 s hang (10 s timeout), 409 x2, 500 x2, landed {landed:.2?} \
         after start in {scale_patches} PATCHes; status: 500 x3, landed in {status_patches} PATCHes; replicas went \
         {seen:?}; {} requests proxied",
        proxy.log().len()
    ));
}

#[test]
fn a_failing_prometheus_never_lowers_replicas_and_the_scaler_recovers_by_itself() {
    let mut prom = flat_load();
    let proxy = FaultProxy::start(&prom.addr());
    let kube = KubeCluster::shared();
    let ns = "prom-faults";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    setup(kube, ns, "prom-faults", 3);
    let mut ctrl = start(&proxy.url(), ns, &kubeconfig, "2s", "127.0.0.1:0");
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (replicas(kube, ns, "prom-faults") == WANT).then_some(())
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
                replicas(kube, ns, "prom-faults"),
                WANT,
                "replicas changed while Prometheus was failing ({mode})"
            );
            condition(kube, ns, "prom-faults", "ForecastAvailable")
                .filter(|(s, r)| s == "False" && r == reason)
                .map(|_| t.elapsed())
        })
        .unwrap_or_else(|| {
            panic!(
                "{mode}: no ForecastAvailable=False/{reason}: {:?}\n{}",
                condition(kube, ns, "prom-faults", "ForecastAvailable"),
                ctrl.log_tail(30)
            )
        });
        // held for a while, never below what the load needs, never zero
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            assert_eq!(replicas(kube, ns, "prom-faults"), WANT, "{mode}");
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
            condition(kube, ns, "prom-faults", "ForecastAvailable")
                .filter(|(s, _)| s == "True")
                .map(|_| t.elapsed())
        })
        .unwrap_or_else(|| panic!("{mode}: never recovered:\n{}", ctrl.log_tail(30)));
        assert_eq!(replicas(kube, ns, "prom-faults"), WANT);
        figures.push(format!("recovered in {back:.2?}"));
    }
    report(&format!(
        "[faults] Prometheus: {}; replicas held at {WANT} throughout; {} proxied requests",
        figures.join(", "),
        proxy.requests()
    ));
}

fn generation_observed(kube: &KubeCluster, ns: &str, name: &str) -> bool {
    let s = get_scaler(kube, ns, name);
    s["metadata"]["generation"].is_number()
        && s.pointer("/status/observedGeneration") == Some(&s["metadata"]["generation"])
}

#[test]
fn a_recreated_target_and_an_edited_scaler_are_honoured_at_once() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let ns = "edits";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    setup(kube, ns, "edits", 3);
    let mut ctrl = start(&prom.url(), ns, &kubeconfig, "5s", "127.0.0.1:0");
    let wait = |what: &str, ctrl: &mut Controller, f: &mut dyn FnMut() -> bool| -> Duration {
        let t = Instant::now();
        wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            ctrl.assert_running();
            f().then(|| t.elapsed())
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: {}\n{}",
                get_scaler(kube, ns, "edits"),
                ctrl.log_tail(30)
            )
        })
    };
    let deployment = format!("{}/edits", deployments_path(ns));
    let psc = format!("{}/edits", scalers_path(ns));
    wait("scaled to 10", &mut ctrl, &mut || {
        replicas(kube, ns, "edits") == WANT
    });

    // the target deleted: a condition, no crash; re-created: scaled again
    kube.delete(&deployment);
    let gone = wait("TargetNotFound", &mut ctrl, &mut || {
        condition(kube, ns, "edits", "AbleToScale")
            == Some(("False".into(), "TargetNotFound".into()))
    });
    // the delete is graceful (the garbage collector removes the ReplicaSet): wait until the name is free
    wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        kube.try_get(&deployment).is_none().then_some(())
    })
    .expect("the Deployment is gone");
    kube.create_deployment(ns, "edits", 3);
    let back = wait("re-created target scaled", &mut ctrl, &mut || {
        kube.try_get(&deployment).is_some() && replicas(kube, ns, "edits") == WANT
    });

    // maxReplicas lowered: honoured at once, and the status says which generation it saw
    kube.patch_merge(&psc, json!({"spec": {"maxReplicas": 6}}));
    let max = wait("maxReplicas 6", &mut ctrl, &mut || {
        replicas(kube, ns, "edits") == 6 && generation_observed(kube, ns, "edits")
    });
    assert_eq!(
        condition(kube, ns, "edits", "ScalingLimited"),
        Some(("True".into(), "TooManyReplicas".into()))
    );

    // DryRun: reported, never written
    kube.patch_merge(&psc, json!({"spec": {"mode": "DryRun"}}));
    wait("DryRun observed", &mut ctrl, &mut || {
        generation_observed(kube, ns, "edits")
            && condition(kube, ns, "edits", "AbleToScale").is_some_and(|(_, r)| r == "DryRun")
    });
    set_replicas(kube, ns, "edits", 2);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(kube, ns, "edits"), 2, "DryRun wrote the target");
    assert_eq!(
        get_scaler(kube, ns, "edits").pointer("/status/desiredReplicas"),
        Some(&json!(6))
    );

    // Active again with a query that has no data: the old history is not reused
    kube.patch_merge(
        &psc,
        json!({"spec": {"mode": "Active", "metrics": [
            {"name": "requests", "query": "proxy_rps_renamed", "targetPerReplica": "10"}]}}),
    );
    let query = wait("EmptyQueryResult for the new query", &mut ctrl, &mut || {
        generation_observed(kube, ns, "edits")
            && condition(kube, ns, "edits", "ForecastAvailable")
                == Some(("False".into(), "EmptyQueryResult".into()))
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replicas(kube, ns, "edits"),
        2,
        "no data is not zero load: held"
    );
    ctrl.assert_never_forbidden();
    report(&format!(
        "[faults] edits: target deleted -> TargetNotFound in {gone:.2?}, re-created and scaled in {back:.2?}; \
         maxReplicas 6 honoured in {max:.2?}; DryRun never wrote; a new query without data -> \
         EmptyQueryResult in {query:.2?}, replicas held"
    ));
}

/// The target is scaled down by hand just before `component` is killed; after it comes back the
/// operator must restore the replicas with exactly one write (none lost, none twice), without restarting.
fn outage(
    kube: &KubeCluster,
    ctrl: &mut Controller,
    ns: &str,
    component: &'static str,
    down_for: Duration,
    http_addr: &str,
) -> String {
    let writes = scale_writes(ctrl);
    set_replicas(kube, ns, "outage", 3);
    kube.kill_component(component);
    let killed = Instant::now();
    let mut unready_after = None;
    while killed.elapsed() < down_for {
        ctrl.assert_running();
        assert_eq!(
            probe(http_addr, "/healthz"),
            Some(200),
            "alive during the outage"
        );
        if unready_after.is_none() && probe(http_addr, "/readyz") == Some(503) {
            unready_after = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if component == "kube-apiserver" {
        // its watch broke: not ready while it cannot watch
        assert!(
            unready_after.is_some(),
            "/readyz stayed 200 while the API server was down:\n{}",
            ctrl.log_tail(20)
        );
    }
    kube.start_component(component);
    let up = killed.elapsed();
    if component == "etcd" {
        kube.wait_ready(Duration::from_secs(60));
    }
    let ready_again = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        (probe(http_addr, "/readyz") == Some(200)).then(|| killed.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "{component} restarted: /readyz never 200 again:\n{}",
            ctrl.log_tail(30)
        )
    });
    let restored = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        kube.try_get(&format!("{}/outage", deployments_path(ns)))
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .filter(|r| *r == WANT)
            .map(|_| killed.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "{component} restarted: the replicas were never restored:\n{}",
            ctrl.log_tail(40)
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(kube, ns, "outage"), WANT);
    let made = scale_writes(ctrl) - writes;
    assert!(
        made <= 1,
        "{component} outage: {made} scale writes for one change:\n{}",
        ctrl.log_tail(40)
    );
    // the operator may have restored the replicas between the hand edit and the kill; then the
    // one write happened before the outage
    assert_eq!(made, 1, "{component} outage: the write was lost");
    format!(
        "{component} down {:.1?}, back at {up:.1?}, replicas restored {restored:.2?} after the kill with {made} \
         write; unready {unready_after:.1?} after the kill, ready again at {ready_again:.1?}",
        down_for
    )
}

#[test]
fn the_api_server_and_etcd_restarting_lose_no_write_and_the_operator_stays_up() {
    let prom = flat_load();
    let kube = KubeCluster::start();
    let ns = "outage";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    setup(&kube, ns, "outage", 3);
    let http_addr = format!("127.0.0.1:{}", free_port());
    let mut ctrl = start(&prom.url(), ns, &kubeconfig, "5s", &http_addr);
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (replicas(&kube, ns, "outage") == WANT).then_some(())
    })
    .unwrap_or_else(|| panic!("never scaled to {WANT}:\n{}", ctrl.log_tail(40)));
    let figures = [
        outage(
            &kube,
            &mut ctrl,
            ns,
            "kube-apiserver",
            Duration::from_secs(5),
            &http_addr,
        ),
        outage(
            &kube,
            &mut ctrl,
            ns,
            "etcd",
            Duration::from_secs(5),
            &http_addr,
        ),
    ];
    // the watch came back too: an edit is seen without a restart
    let psc = format!("{}/outage", scalers_path(ns));
    kube.patch_merge(&psc, json!({"spec": {"maxReplicas": 7}}));
    let t = Instant::now();
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (replicas(&kube, ns, "outage") == 7).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "an edit after the outages was not honoured:\n{}",
            ctrl.log_tail(40)
        )
    });
    assert!(!ctrl.log().contains("panicked"), "{}", ctrl.log_tail(40));
    report(&format!(
        "[faults] outages: {}; an edit after them honoured in {:.2?}; the operator never exited",
        figures.join("; "),
        t.elapsed()
    ));
}

#[test]
fn an_operator_started_before_its_api_server_waits_alive_and_not_ready() {
    let prom = flat_load();
    let kube = KubeCluster::init_only();
    let http_addr = format!("127.0.0.1:{}", free_port());
    let ns = "early";
    let mut ctrl = start(&prom.url(), ns, kube.kubeconfig_path(), "5s", &http_addr);
    // nothing listens on the API port yet
    let waiting = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        ctrl.assert_running();
        ctrl.log()
            .contains("cannot list PredictiveScalers")
            .then_some(())
    });
    assert!(waiting.is_some(), "no retry logged:\n{}", ctrl.log_tail(20));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        ctrl.assert_running();
        assert_eq!(
            probe(&http_addr, "/healthz"),
            Some(200),
            "/healthz while waiting"
        );
        assert_eq!(
            probe(&http_addr, "/readyz"),
            Some(503),
            "/readyz while waiting"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // the control plane arrives, then the CRD, then a scaler
    let arrived = Instant::now();
    for c in support::cluster::COMPONENTS {
        kube.start_component(c);
    }
    kube.wait_controller_manager();
    kube.install_crd();
    kube.create_namespace(ns);
    setup(&kube, ns, "early", 3);
    let ready = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (probe(&http_addr, "/readyz") == Some(200)).then(|| arrived.elapsed())
    })
    .unwrap_or_else(|| panic!("never ready:\n{}", ctrl.log_tail(30)));
    let scaled = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        ctrl.assert_running();
        (replicas(&kube, ns, "early") == WANT).then(|| arrived.elapsed())
    })
    .unwrap_or_else(|| panic!("never scaled:\n{}", ctrl.log_tail(30)));
    let retries = ctrl.log().matches("cannot list PredictiveScalers").count();
    report(&format!(
        "[faults] an operator started before its API server: alive and not ready for {:.1?} ({retries} retries \
         logged), ready {ready:.2?} and scaled {scaled:.2?} after the control plane started",
        arrived.duration_since(ctrl.started)
    ));
}
