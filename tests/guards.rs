//! Guards (`spec.guards`) on the real control plane (tests/support/cluster.rs), with a real
//! Prometheus and the `prescale run` binary as the chart's ServiceAccount: a guard series above
//! its threshold raises the Deployment's replicas over what the forecast needs
//! (`ScalingLimited=GuardBreached`, also in `kubectl get psc`, a `GuardBreached` event,
//! `prescale_guard_breached` 1), and once it is below the threshold the scale-down waits for
//! the guard's `holdWindow` (then a `GuardRecovered` event). The rules themselves (step,
//! percent, bounds, a failing query) are unit tests (`planner::guard`).
//!
//! A guard whose query fails holds the count where the forecast alone would lower it, and
//! `ScalingLimited=GuardUnavailable` gives the source's reason.
//!
//! The guard series is backfilled with its future: above the threshold until `healthy_from`,
//! below it after (Prometheus answers a range query ending now with the samples up to now).

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::json;
use support::cluster::KubeCluster;
use support::scenario::{
    FLAT_LOAD_REPLICAS, condition, create_scaler, flat_load, scaler_path, scrape, start_operator,
    wait_for,
};
use support::{Prometheus, join_openmetrics, openmetrics_gauge, report, unix_now, wait_until};

/// Flat load 100 at the fixture's targetPerReplica 10: 10 replicas.
const WANT: i64 = FLAT_LOAD_REPLICAS;
const MAX: i64 = 30;
/// The guard's hold window and the scaler's stabilisation window, in seconds.
const HOLD: i64 = 30;
const STABILIZE: i64 = 10;

#[test]
fn a_breached_guard_scales_up_and_holds_the_scale_down_for_its_window() {
    let now = unix_now();
    // breached (p95 2 s > 0.5 s) until healthy_from, then healthy (0.1 s)
    let healthy_from = now + 75;
    let load = openmetrics_gauge("proxy_rps", &[], now - 86_400, now - 60, 60, |_| 100.0);
    let p95 = openmetrics_gauge("proxy_p95_seconds", &[], now - 600, now + 600, 5, |t| {
        if t < healthy_from { 2.0 } else { 0.1 }
    });
    let prom = Prometheus::start_with_history(&join_openmetrics(&[load, p95]));
    let kube = KubeCluster::shared();
    let (ns, name) = ("guard-breach", "llm-proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    let scaler = PredictiveScaler::test(ns, name)
        .min_max(1, MAX as i32)
        .history("12h", "1m")
        .scale_down(&format!("{STABILIZE}s"), 100)
        .with(
            "/spec/guards",
            json!([{"name": "p95-latency", "query": "proxy_p95_seconds", "threshold": 0.5,
                    "addReplicas": 4, "holdWindow": format!("{HOLD}s")}]),
        )
        .json();
    create_scaler(kube, scaler);
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "2s");
    let path = scaler_path(ns, name);
    let wait = Duration::from_secs(90);

    // breached: above the forecast's 10, up to maxReplicas, and the condition says why
    let s = wait_for(&mut op, kube, &path, "the guard's scale-up", wait, |_| {
        kube.deployment_replicas(ns, name) > WANT
    });
    let raised_at = unix_now();
    assert!(
        raised_at < healthy_from,
        "raised only after the breach ended"
    );
    let s = if condition(&s, "ScalingLimited").0 == "GuardBreached" {
        s
    } else {
        wait_for(&mut op, kube, &path, "ScalingLimited", wait, |s| {
            condition(s, "ScalingLimited").0 == "GuardBreached"
        })
    };
    let (_, message) = condition(&s, "ScalingLimited");
    assert!(
        message.starts_with("guard p95-latency is breached (2 above threshold 0.5)"),
        "{message}"
    );
    // `kubectl get psc` shows the reason in its Limited column
    let table = kube.kubectl_ok(&["get", "psc", "-n", ns, name]);
    assert!(
        table.contains("LIMITED") && table.contains("GuardBreached"),
        "{table}"
    );
    let metrics = scrape(&http);
    assert!(
        metrics.contains(&format!(
            "prescale_guard_breached{{namespace=\"{ns}\",name=\"{name}\",guard=\"p95-latency\"}} 1"
        )),
        "{metrics}"
    );
    wait_for(&mut op, kube, &path, "maxReplicas", wait, |_| {
        kube.deployment_replicas(ns, name) == MAX
    });

    // healthy again: held at maxReplicas for the hold window, then down to the forecast's count
    wait_for(&mut op, kube, &path, "the hold", wait, |s| {
        condition(s, "ScalingLimited")
            .1
            .contains("no scale-down below")
    });
    let lowered = wait_for(&mut op, kube, &path, "the scale-down", wait, |_| {
        kube.deployment_replicas(ns, name) < MAX
    });
    let lowered_at = unix_now();
    assert!(
        lowered_at >= healthy_from + HOLD,
        "lowered {}s after the guard turned healthy, within its {HOLD}s hold window: {}",
        lowered_at - healthy_from,
        lowered["status"]
    );
    wait_for(&mut op, kube, &path, "the forecast's count", wait, |_| {
        kube.deployment_replicas(ns, name) == WANT
    });
    // one event when the breach began, one when the hold ended
    for (reason, type_) in [("GuardBreached", "Warning"), ("GuardRecovered", "Normal")] {
        let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            Some(kube.events_about(ns, name, reason)).filter(|e| !e.is_empty())
        })
        .unwrap_or_default();
        assert_eq!(events.len(), 1, "one {reason} event: {events:#?}");
        assert_eq!(events[0]["type"], type_);
        assert!(
            events[0]["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("guard p95-latency ")),
            "{:?}",
            events[0]["note"]
        );
    }
    op.assert_never_forbidden();
    report(&format!(
        "[guards] p95 above its threshold: {WANT} -> {MAX} replicas ({}s before it turned healthy); \
         held {}s after it turned healthy (holdWindow {HOLD}s), then back to {WANT}",
        healthy_from - raised_at,
        lowered_at - healthy_from
    ));
}

#[test]
fn a_guard_whose_query_fails_holds_the_count_and_says_why() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let (ns, name) = ("guard-fails", "llm-proxy");
    kube.create_namespace(ns);
    // 20 replicas where the forecast needs 10; without the guard a 1 s stabilisation window
    // and no scale-down limit would lower them at once
    kube.create_deployment(ns, name, 20);
    let scaler = PredictiveScaler::test(ns, name)
        .min_max(1, MAX as i32)
        .history("12h", "1m")
        .scale_down("1s", 100)
        .with(
            "/spec/guards",
            json!([{"name": "p95-latency", "query": "proxy_p95_seconds{", "threshold": 0.5}]),
        )
        .json();
    create_scaler(kube, scaler);
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "1s");
    let path = scaler_path(ns, name);
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "GuardUnavailable",
        Duration::from_secs(90),
        |s| condition(s, "ScalingLimited").0 == "GuardUnavailable",
    );
    let (_, message) = condition(&s, "ScalingLimited");
    assert!(
        message.starts_with("guard p95-latency has no value (InvalidQuery: "),
        "{message}"
    );
    // eight evaluations later (a 1 s sync interval) the count still stands
    std::thread::sleep(Duration::from_secs(8));
    op.assert_running();
    let s = kube.get(&path);
    assert_eq!(s["status"]["desiredReplicas"], 20, "{}", s["status"]);
    assert_eq!(condition(&s, "ScalingLimited").0, "GuardUnavailable");
    assert_eq!(kube.deployment_replicas(ns, name), 20);
    // an unreadable guard has no gauge series
    let metrics = scrape(&http);
    assert!(!metrics.contains("prescale_guard_breached{"), "{metrics}");
    op.assert_never_forbidden();
    report(&format!(
        "[guards] a guard with an invalid query: held at 20 replicas (the forecast needs {WANT}): {message}"
    ));
}
