//! The upstream quota ceiling (`spec.upstream`) on the real control plane
//! (tests/support/cluster.rs), with a real Prometheus and the `prescale run` binary as the
//! chart's ServiceAccount. The load (100/s at the fixture's targetPerReplica 10) asks for 10
//! replicas:
//! - a static quota of 3000 per minute (50/s) caps the Deployment at 5
//!   (`ScalingLimited=UpstreamLimited`, also in `kubectl get psc`, one `UpstreamLimited` event,
//!   `prescale_upstream_limited` 1 and `prescale_upstream_ceiling_replicas` 5);
//! - a quota read from a limit gauge in Prometheus (4200 per minute: 7 replicas) wins over the
//!   static one; a limit query that fails falls back to the static quota but never below the
//!   current count (`UpstreamLimited`, naming the failure); a small queried limit caps a
//!   scale-up but never lowers the current count on its own.
//!
//! The rules themselves (units, several limits, minReplicas, failures) are unit tests
//! (`planner::upstream`).

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::scenario::{
    FLAT_LOAD_REPLICAS, condition, create_scaler, flat_load, scaler_path, scrape, start_operator,
    wait_for,
};
use support::{
    Prometheus, find_condition, join_openmetrics, openmetrics_gauge, report, unix_now, wait_until,
};

/// A scaler of the fixture's shape (12h of 1m history, scale-down at once) with these upstream
/// limits.
fn scaler(ns: &str, name: &str, limits: Value) -> Value {
    PredictiveScaler::test(ns, name)
        .min_max(1, 30)
        .history("12h", "1m")
        .scale_down("1s", 100)
        .with("/spec/upstream", json!({ "limits": limits }))
        .json()
}

#[test]
fn a_static_quota_caps_the_replicas_below_the_forecast_and_says_so() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let (ns, name) = ("upstream-static", "llm-proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    create_scaler(
        kube,
        scaler(
            ns,
            name,
            json!([{"metric": "requests", "perMinute": "3000"}]),
        ),
    );
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "2s");
    let path = scaler_path(ns, name);
    let wait = Duration::from_secs(90);

    let s = wait_for(&mut op, kube, &path, "UpstreamLimited", wait, |s| {
        condition(s, "ScalingLimited").0 == "UpstreamLimited" && s["status"]["desiredReplicas"] == 5
    });
    let (_, message) = condition(&s, "ScalingLimited");
    assert_eq!(
        message,
        "the upstream limit of metric requests (3000/min) admits 5 replicas, 10 asked: the \
         desired count 10 is capped at 5; more quota, not more replicas, would serve more"
    );
    wait_for(&mut op, kube, &path, "the capped scale-up", wait, |_| {
        kube.deployment_replicas(ns, name) == 5
    });
    // it stays there: the forecast's 10 never lands
    std::thread::sleep(Duration::from_secs(6));
    op.assert_running();
    assert_eq!(kube.deployment_replicas(ns, name), 5);
    let s = kube.get(&path);
    assert_eq!(
        condition(&s, "ScalingLimited").0,
        "UpstreamLimited",
        "{}",
        s["status"]
    );
    assert_eq!(
        find_condition(&s, "ScalingLimited").unwrap()["status"],
        "True"
    );
    // `kubectl get psc` shows the reason in its Limited column
    let table = kube.kubectl_ok(&["get", "psc", "-n", ns, name]);
    assert!(
        table.contains("LIMITED") && table.contains("UpstreamLimited"),
        "{table}"
    );
    let metrics = scrape(&http);
    for series in [
        format!("prescale_upstream_limited{{namespace=\"{ns}\",name=\"{name}\"}} 1"),
        format!(
            "prescale_upstream_ceiling_replicas{{namespace=\"{ns}\",name=\"{name}\",metric=\"requests\"}} 5"
        ),
    ] {
        assert!(metrics.contains(&series), "{series} not in:\n{metrics}");
    }
    // one Normal event when the ceiling started to cap, not one per evaluation
    let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, name, "UpstreamLimited")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(events.len(), 1, "one UpstreamLimited event: {events:#?}");
    assert_eq!(events[0]["type"], "Normal");
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with(
            "the upstream limit of metric requests (3000/min) admits 5 replicas, 10 asked: capped at 5"
        ),
        "{note}"
    );
    let count = events[0]["deprecatedCount"].as_i64().unwrap_or(1);
    assert_eq!(count, 1, "the event repeated: {:#?}", events[0]);

    // the provider raises the quota to 6000/min: the ceiling (10) no longer caps, the forecast's
    // 10 lands, and one UpstreamCleared event says so
    kube.patch_merge(
        &path,
        json!({"spec": {"upstream": {"limits": [{"metric": "requests", "perMinute": "6000"}]}}}),
    );
    wait_for(&mut op, kube, &path, "the cap lifted", wait, |s| {
        condition(s, "ScalingLimited").0 != "UpstreamLimited"
            && kube.deployment_replicas(ns, name) == FLAT_LOAD_REPLICAS
    });
    let cleared = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, name, "UpstreamCleared")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(cleared.len(), 1, "one UpstreamCleared event: {cleared:#?}");
    assert_eq!(
        cleared[0]["note"],
        format!(
            "the upstream limits no longer cap the count: {FLAT_LOAD_REPLICAS} replicas recommended"
        )
    );
    let metrics = scrape(&http);
    assert!(
        metrics.contains(&format!(
            "prescale_upstream_limited{{namespace=\"{ns}\",name=\"{name}\"}} 0"
        )),
        "{metrics}"
    );
    op.assert_never_forbidden();
    report(&format!(
        "[upstream] a 3000/min quota on 100/s at 10 per replica: {FLAT_LOAD_REPLICAS} asked, held at 5: {message}; \
         raised to 6000/min: {FLAT_LOAD_REPLICAS} replicas, UpstreamCleared"
    ));
}

#[test]
fn a_limit_read_from_prometheus_wins_and_a_failing_one_never_scales_down() {
    let now = unix_now();
    let load = openmetrics_gauge("proxy_rps", &[], now - 86_400, now - 60, 60, |_| 100.0);
    // the proxy's gauge of the provider's x-ratelimit-limit-requests: 4200 a minute
    let limit = openmetrics_gauge(
        "provider_ratelimit_limit_requests",
        &[],
        now - 3600,
        now + 600,
        15,
        |_| 4200.0,
    );
    let prom = Prometheus::start_with_history(&join_openmetrics(&[load, limit]));
    let kube = KubeCluster::shared();
    let ns = "upstream-query";
    kube.create_namespace(ns);
    kube.create_deployment(ns, "queried", 3);
    kube.create_deployment(ns, "query-fails", 8);
    kube.create_deployment(ns, "query-small", 8);
    let create = |name: &str, limits: Value| {
        create_scaler(kube, scaler(ns, name, limits));
    };
    create(
        "queried",
        json!([{"metric": "requests", "perMinute": "3000",
                "query": "max(provider_ratelimit_limit_requests)"}]),
    );
    // an invalid query: the static 3000/min (5 replicas) applies, but never below the current 8
    create(
        "query-fails",
        json!([{"metric": "requests", "perMinute": "3000",
                "query": "max(provider_ratelimit_limit_requests{"}]),
    );
    // a query that reads a hundredth of the limit (42/min: one replica): a small value caps a
    // scale-up, but on its own never lowers the current 8 (it used to go to minReplicas 1)
    create(
        "query-small",
        json!([{"metric": "requests", "query": "max(provider_ratelimit_limit_requests) / 100"}]),
    );
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "2s");
    let wait = Duration::from_secs(90);

    // 4200/min is 70/s: 7 replicas, not the static 5 and not the forecast's 10
    let path = scaler_path(ns, "queried");
    let s = wait_for(&mut op, kube, &path, "the queried limit", wait, |s| {
        condition(s, "ScalingLimited").0 == "UpstreamLimited" && s["status"]["desiredReplicas"] == 7
    });
    let (_, queried) = condition(&s, "ScalingLimited");
    assert!(
        queried.starts_with(
            "the upstream limit of metric requests (4200/min, read from its query) admits 7 replicas, 10 asked"
        ),
        "{queried}"
    );
    wait_for(&mut op, kube, &path, "the scale-up to 7", wait, |_| {
        kube.deployment_replicas(ns, "queried") == 7
    });

    let path = scaler_path(ns, "query-fails");
    let s = wait_for(&mut op, kube, &path, "the failing limit", wait, |s| {
        condition(s, "ScalingLimited").0 == "UpstreamLimited"
            && s["status"]["desiredReplicas"].is_i64()
    });
    let (_, failing) = condition(&s, "ScalingLimited");
    assert!(
        failing.starts_with(
            "the upstream limit of metric requests (3000/min, the static perMinute: its query \
             failed, InvalidQuery: "
        ) && failing.contains(
            "admits 5 replicas, 10 asked: the desired count 10 is capped at 8 (the current \
             count: a failing limit query never scales down)"
        ),
        "{failing}"
    );
    let small_path = scaler_path(ns, "query-small");
    let s = wait_for(&mut op, kube, &small_path, "the small limit", wait, |s| {
        condition(s, "ScalingLimited").0 == "UpstreamLimited"
            && s["status"]["desiredReplicas"].is_i64()
    });
    let (_, small) = condition(&s, "ScalingLimited");
    assert_eq!(
        small,
        "the upstream limit of metric requests (42/min, read from its query) admits 1 replicas, \
         10 asked: the desired count 10 is capped at 8 (the current count: a limit read by a \
         query never scales down on its own); more quota, not more replicas, would serve more"
    );
    // evaluations later (a 2 s sync interval) the count still stands at 8: not lowered to the
    // static 5 because the query fails, not raised to the forecast's 10 past the static quota;
    // and the small queried limit has not lowered its 8 either
    std::thread::sleep(Duration::from_secs(8));
    op.assert_running();
    let s = kube.get(&path);
    assert_eq!(s["status"]["desiredReplicas"], 8, "{}", s["status"]);
    assert_eq!(kube.deployment_replicas(ns, "query-fails"), 8);
    let s = kube.get(&small_path);
    assert_eq!(s["status"]["desiredReplicas"], 8, "{}", s["status"]);
    assert_eq!(kube.deployment_replicas(ns, "query-small"), 8);
    let metrics = scrape(&http);
    assert!(
        metrics.contains(&format!(
            "prescale_upstream_ceiling_replicas{{namespace=\"{ns}\",name=\"queried\",metric=\"requests\"}} 7"
        )),
        "{metrics}"
    );
    assert!(
        op.log().contains("upstream limit query failed"),
        "the failure is logged"
    );
    op.assert_never_forbidden();
    report(&format!(
        "[upstream] a limit gauge of 4200/min in Prometheus: 7 replicas ({queried}); an invalid \
         limit query: held at 8 ({failing})"
    ));
}
