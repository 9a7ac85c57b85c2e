//! End to end, with real processes: a real Prometheus backfilled with 15 days of a daily traffic peak, a real
//! control plane (etcd, kube-apiserver, kube-controller-manager: tests/support/cluster.rs) with the CRD and
//! the RBAC installed by `helm install` of the chart, and the `prescale run` binary running as the chart's
//! ServiceAccount (a TokenRequest token), so a verb the chart forgot is a `forbidden` here.
//!
//! The scenario: the daily peak comes back in 8 minutes and the latest observed load is at its base, so a scale-up
//! before the peak can only come from the forecast (the reactive floor is minReplicas). What a user sees is
//! checked the way a user sees it: `kubectl get psc`, `kubectl wait --for=condition=Ready`, events.k8s.io Events.
//! Then Prometheus dies: the scaler must say so in its ForecastAvailable condition and must not scale down on
//! missing data.
//!
//! Needs `scripts/setup.sh` (Prometheus + promtool, helm + kubectl, the control plane). Run with
//! `cargo test --test e2e_prometheus -- --nocapture` to see the timings.

mod support;

use std::time::{Duration, Instant};

use prescale::api::{Fallback, Mode, ModelKind, PredictiveScaler};
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::{
    Controller, Prometheus, find_condition, free_port, http_request, openmetrics_gauge, report,
    unix_now, wait_until,
};

/// Where the proxy and its scaler live.
const NS: &str = "ai-gateway";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/ai-gateway/deployments";
const SCALERS: &str = "/apis/prescale.dev/v1alpha1/namespaces/ai-gateway/predictivescalers";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ai-gateway/events";
/// The chart's release (and so its ServiceAccount) and namespace.
const RELEASE: &str = "prescale";
const RELEASE_NS: &str = "prescale";
const METRIC: &str = "llm_proxy_requests_per_second";

/// Load between peaks (req/s); with targetPerReplica 10 it needs exactly minReplicas = 2.
const BASE: f64 = 20.0;
/// Height of the daily peak above BASE (req/s): at the top ~22 replicas.
const AMPLITUDE: f64 = 200.0;
/// Width of the peak (s); it is cut to zero beyond 3 sigma, so the last sample (10 min before the peak) is BASE.
const SIGMA: f64 = 180.0;
/// The peak comes back this long after the test starts (s).
const PEAK_IN: i64 = 8 * 60;
/// History ends this long before the test starts (s): Prometheus serves the last sample for 5 min.
const HISTORY_GAP: i64 = 120;
const HISTORY_DAYS: i64 = 15;
const DAY: i64 = 86_400;
/// spec.scaleUp.leadTime (s) and spec.metrics[0].targetPerReplica of the scaler below.
const LEAD_TIME: i64 = 300;
const TARGET_PER_REPLICA: f64 = 10.0;

/// The load at `t` for a peak at `peak` (and at the same time of every other day).
fn load(t: i64, peak: i64) -> f64 {
    support::scenario::daily_peak(t, peak, BASE, AMPLITUDE, SIGMA)
}

fn replicas(kube: &KubeCluster) -> i64 {
    kube.get(&format!("{DEPLOYMENTS}/llm-proxy"))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

fn get_scaler(kube: &KubeCluster) -> Value {
    kube.get(&format!("{SCALERS}/llm-proxy"))
}

fn condition_is(obj: &Value, type_: &str, status: &str) -> bool {
    find_condition(obj, type_).is_some_and(|c| c["status"] == status)
}

/// A Quantity-like value ("690", "690.5", 690) as f64.
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

#[test]
fn scales_before_the_daily_peak_and_holds_when_prometheus_goes_away() {
    let t0 = Instant::now();
    let now = unix_now();
    let peak = now + PEAK_IN;
    let end = (now - HISTORY_GAP) / 60 * 60;
    let start = end - HISTORY_DAYS * DAY;
    assert_eq!(
        load(end, peak),
        BASE,
        "the latest sample must be the base load"
    );

    // --- Prometheus with 15 days of history ---
    let om = openmetrics_gauge(
        METRIC,
        &[("app", "llm-proxy"), ("namespace", "default")],
        start,
        end,
        60,
        |t| load(t, peak),
    );
    let mut prom = Prometheus::start_with_history(&om);
    let latest = prom.query(&format!("{METRIC}{{app=\"llm-proxy\"}}"));
    assert_eq!(
        latest.as_array().map(Vec::len),
        Some(1),
        "one series expected: {latest}"
    );
    assert_eq!(latest[0]["value"][1], "20", "latest value: {latest}");
    let yesterday = prom.query(&format!(
        "max_over_time({METRIC}[20m] offset {}s)",
        DAY - PEAK_IN - 600
    ));
    let yesterday_peak = number(&yesterday[0]["value"][1]).unwrap_or(0.0);
    assert!(
        yesterday_peak > 190.0,
        "yesterday's peak should be in the TSDB: {yesterday}"
    );

    // --- a control plane with the chart installed: the CRD, the RBAC, the ServiceAccount ---
    let kube = KubeCluster::start_without_crd();
    let installed = install_chart(&kube, &prom.url());
    kube.create_namespace(NS);
    kube.create(
        DEPLOYMENTS,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llm-proxy", "namespace": NS, "labels": {"app": "llm-proxy"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "llm-proxy"}},
                "template": {
                    "metadata": {"labels": {"app": "llm-proxy"}},
                    "spec": {"containers": [{"name": "proxy", "image": "registry.example/llm-proxy:1.0"}]}
                }
            }
        }),
    );
    kube.create(
        SCALERS,
        PredictiveScaler::test(NS, "llm-proxy")
            .min_max(2, 60)
            .mode(Mode::Active)
            .metric("requests", &format!("{METRIC}{{app=\"llm-proxy\"}}"), "10")
            .history("14d", "1m")
            .model(ModelKind::Auto)
            .quantile(0.9)
            .lead_time("5m")
            .scale_down("15m", 10)
            .fallback(Fallback::Reactive)
            .json(),
    );
    let setup_time = t0.elapsed();

    // --- the controller, as the chart's ServiceAccount ---
    let operator_kubeconfig = kube.service_account_kubeconfig(RELEASE_NS, RELEASE);
    let prom_url = prom.url();
    let controller_start = unix_now();
    let http_addr = format!("127.0.0.1:{}", free_port());
    let mut ctrl = Controller::start(
        &[
            "run",
            "--prometheus-url",
            &prom_url,
            "--http-addr",
            &http_addr,
            "--sync-interval",
            "5s",
            "--log-format",
            "plain",
        ],
        &[("KUBECONFIG", operator_kubeconfig.as_path())],
    );

    // 1. It scales up before the peak, from the forecast alone.
    let until_peak = Duration::from_secs((peak - unix_now()).max(0) as u64);
    let first_scale = wait_until(until_peak, Duration::from_millis(500), || {
        ctrl.assert_running();
        let r = replicas(&kube);
        (r > 2).then_some(r)
    });
    let first_scale = first_scale.unwrap_or_else(|| {
        panic!(
            "the Deployment was not scaled above 2 replicas before the peak ({}s after the controller started); \
             scaler: {}",
            ctrl.started.elapsed().as_secs(),
            get_scaler(&kube)
        )
    });
    let time_to_scale = ctrl.started.elapsed();
    let before_peak = peak - unix_now();
    assert!(before_peak > 0, "scaled only after the peak");
    report(&format!(
        "[e2e] scaled 2 -> {first_scale} replicas {time_to_scale:.2?} after the controller started, {before_peak}s \
         before the peak (setup incl. backfill {:.2?}, prometheus backfill {:.2?}, prometheus start {:.2?})",
        setup_time, prom.backfill_time, prom.start_time
    ));

    // 1b. The operator's own metrics show the scale-up and the scaler's numbers.
    let metrics_url = format!("http://{http_addr}/metrics");
    let scraped = wait_until(Duration::from_secs(30), Duration::from_millis(300), || {
        let text = http_request("GET", &metrics_url, None, None).ok()?.body;
        let scaled = text.contains(
            "prescale_scale_operations_total{namespace=\"ai-gateway\",name=\"llm-proxy\",direction=\"up\"} ",
        );
        let desired = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "prescale_scaler_desired_replicas{namespace=\"ai-gateway\",name=\"llm-proxy\"} ",
                )
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok());
        (scaled && desired.is_some_and(|d| d > 2)).then_some(text)
    })
    .unwrap_or_else(|| panic!("/metrics never showed the scale-up; log:\n{}", ctrl.log_tail(40)));
    for name in [
        "prescale_reconcile_duration_seconds_bucket",
        "prescale_prometheus_query_duration_seconds_count{source=\"default\",result=\"ok\"}",
        "prescale_scaler_condition{namespace=\"ai-gateway\",name=\"llm-proxy\",type=\"Ready\",status=\"True\",reason=\"ScalerActive\"} 1",
        "prescale_forecast_fit_duration_seconds_count{model=",
        "prescale_scaler_forecast_peak{namespace=\"ai-gateway\",name=\"llm-proxy\",metric=",
        "prescale_build_info{version=",
    ] {
        assert!(
            scraped.contains(name),
            "{name} missing from /metrics:\n{scraped}"
        );
    }

    // 2. Its status says why: Ready, a forecast with the coming peak, desired replicas, observed generation.
    let status_complete = |s: &Value| {
        condition_is(s, "Ready", "True")
            && condition_is(s, "ForecastAvailable", "True")
            && s.pointer("/status/forecast/peak/at").is_some()
            && s.pointer("/status/desiredReplicas").is_some()
            && s.pointer("/status/observedGeneration").is_some()
    };
    let status = wait_until(Duration::from_secs(60), Duration::from_millis(500), || {
        ctrl.assert_running();
        Some(get_scaler(&kube)).filter(status_complete)
    })
    .unwrap_or_else(|| {
        panic!(
            "the scaler's status never became complete: {}",
            get_scaler(&kube)
        )
    });
    eprintln!("[e2e] status: {}", status["status"]);
    let st = &status["status"];
    assert_eq!(
        st["observedGeneration"], status["metadata"]["generation"],
        "observedGeneration"
    );
    let peak_forecast = &st["forecast"]["peak"];
    let peak_value = number(&peak_forecast["value"]).expect("forecast.peak.value is a number");
    let peak_replicas = peak_forecast["replicas"]
        .as_i64()
        .expect("forecast.peak.replicas is an integer");
    let peak_at: jiff::Timestamp = peak_forecast["at"]
        .as_str()
        .expect("forecast.peak.at")
        .parse()
        .expect("RFC 3339");
    let peak_offset = peak_at.as_second() - peak;
    report(&format!(
        "[e2e] forecast peak {peak_value} req/s -> {peak_replicas} replicas at {peak_at} ({peak_offset:+}s from the \
         real peak)"
    ));
    assert!(
        peak_value > BASE + AMPLITUDE / 2.0,
        "the forecast missed the peak: {peak_forecast}"
    );
    assert!(
        peak_offset.abs() <= 10 * 60,
        "the forecast peak is at the wrong time: {peak_forecast}"
    );
    assert!(
        (peak_value / 10.0).ceil() as i64 <= peak_replicas,
        "peak.replicas should cover peak.value at 10 per replica: {peak_forecast}"
    );
    assert!(
        (3..=60).contains(&peak_replicas),
        "peak.replicas out of range: {peak_forecast}"
    );
    let desired = st["desiredReplicas"].as_i64().expect("desiredReplicas");
    assert!((3..=60).contains(&desired), "desiredReplicas: {desired}");
    for type_ in ["AbleToScale", "ScalingLimited"] {
        let c =
            find_condition(&status, type_).unwrap_or_else(|| panic!("no {type_} condition: {st}"));
        assert!(
            c["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{type_} has no reason: {c}"
        );
    }
    for c in st["conditions"].as_array().expect("conditions") {
        for field in ["type", "status", "reason", "lastTransitionTime"] {
            assert!(c.get(field).is_some(), "condition without {field}: {c}");
        }
    }

    // 2b. What a user sees: `kubectl get psc` with the DESIRED column, `kubectl wait`, a ScaledUp event.
    let table = kube.kubectl_ok(&["get", "psc", "-n", NS]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "TARGET", "MIN", "MAX", "CURRENT", "DESIRED", "MODE", "VIA", "READY",
            "LIMITED", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..3], ["llm-proxy", "llm-proxy", "2"], "{table}");
    let shown_desired: i64 = row[5]
        .parse()
        .unwrap_or_else(|_| panic!("DESIRED: {table}"));
    assert!(
        (3..=60).contains(&shown_desired),
        "DESIRED {shown_desired}: {table}"
    );
    // MODE, VIA (a Deployment is scaled through /scale, not as an autoscaler's floor), READY
    assert_eq!(
        (row[6], row[7], row[8]),
        ("Active", "Scale", "True"),
        "{table}"
    );
    let waited = Instant::now();
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=60s",
        "-n",
        NS,
        "psc/llm-proxy",
    ]);
    let events = kube.get(EVENTS)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scaled_up = events
        .iter()
        .find(|e| e["reason"] == "ScaledUp" && e["regarding"]["name"] == "llm-proxy")
        .unwrap_or_else(|| panic!("no ScaledUp event in events.k8s.io/v1: {events:?}"));
    assert_eq!(scaled_up["type"], "Normal", "{scaled_up}");
    assert_eq!(
        scaled_up["regarding"]["kind"], "PredictiveScaler",
        "{scaled_up}"
    );
    assert!(
        scaled_up["note"]
            .as_str()
            .is_some_and(|n| n.contains("from 2 to")),
        "{scaled_up}"
    );
    report(&format!(
        "[e2e] kubectl get psc: {}; kubectl wait Ready returned in {:.2?}; ScaledUp event: {}",
        table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        waited.elapsed(),
        scaled_up["note"]
    ));

    // 2c. The chart's ServiceAccount can do what the operator does and nothing more.
    assert_least_privilege(&kube, &operator_kubeconfig);
    assert!(
        !ctrl.log().to_lowercase().contains("forbidden"),
        "the operator was refused something the chart should grant:\n{}",
        ctrl.log_tail(40)
    );

    // 3. Prometheus goes away: the scaler reports it and keeps its replicas.
    // How much: by the end of the first lead window (now + leadTime 5m, + the 5 s interval) the real load is far
    // above the base, so a forecast that saw the peak asks for most of it. The bound is taken one forecast step
    // (1m) earlier, since the last whole step may end up to a step before the window does, and at 2/3 of that
    // need, to leave room for the model; a reactive scaler would still be at 2.
    let reached = replicas(&kube);
    let window_end = controller_start + LEAD_TIME + 5;
    let lead_window_load = load(window_end, peak);
    let expected = (lead_window_load / TARGET_PER_REPLICA).ceil() as i64;
    let lower_bound = (2.0 * load(window_end - 60, peak) / TARGET_PER_REPLICA / 3.0).ceil() as i64;
    report(&format!(
        "[e2e] replicas before Prometheus stops: {reached} (real load at the end of the first lead window: \
         {lead_window_load:.0} req/s = {expected} replicas; lower bound {lower_bound})"
    ));
    assert!(
        (lower_bound..=60).contains(&reached),
        "scaled to {reached}, expected about {expected} replicas for {lead_window_load:.0} req/s (at least \
         {lower_bound})"
    );
    prom.stop();
    let stopped = Instant::now();
    let failed = wait_until(Duration::from_secs(90), Duration::from_millis(500), || {
        ctrl.assert_running();
        let s = get_scaler(&kube);
        find_condition(&s, "ForecastAvailable")
            .filter(|c| c["status"] == "False" && c["reason"] == "MetricsSourceUnavailable")
            .cloned()
    })
    .unwrap_or_else(|| {
        panic!("ForecastAvailable did not become False/MetricsSourceUnavailable within 90 s of Prometheus stopping: {}", {
            get_scaler(&kube)["status"].clone()
        })
    });
    report(&format!(
        "[e2e] ForecastAvailable=False/MetricsSourceUnavailable {:.2?} after Prometheus stopped: {failed}",
        stopped.elapsed()
    ));
    assert!(
        failed["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty()),
        "MetricsSourceUnavailable needs a message: {failed}"
    );
    assert!(
        replicas(&kube) >= reached,
        "replicas dropped when the metrics went away"
    );

    let hold = Instant::now();
    let dropped = wait_until(Duration::from_secs(20), Duration::from_millis(500), || {
        ctrl.assert_running();
        let r = replicas(&kube);
        (r < reached).then_some(r)
    });
    assert!(
        dropped.is_none(),
        "replicas dropped from {reached} to {dropped:?} without metrics"
    );
    assert!(
        !ctrl.log().to_lowercase().contains("forbidden"),
        "forbidden in the operator's log:\n{}",
        ctrl.log_tail(40)
    );
    report(&format!(
        "[e2e] replicas held at >= {reached} for {:.2?} without Prometheus; control plane up in {:.2?}, helm \
         install {installed:.2?}; test total {:.2?}",
        hold.elapsed(),
        kube.start_time,
        t0.elapsed()
    ));
}

/// `helm install` of the chart (CRD, RBAC, ServiceAccount, the operator's Deployment, whose pod stays
/// Pending: there is no scheduler) and the CRD Established; how long it took.
fn install_chart(kube: &KubeCluster, prometheus_url: &str) -> Duration {
    let t = Instant::now();
    let chart = support::repo_root().join("charts/prescale");
    let out = kube.helm(&[
        "install",
        RELEASE,
        &chart.display().to_string(),
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "--set",
        &format!("prometheus.url={prometheus_url}"),
    ]);
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    kube.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{}", support::cluster::CRD),
    ]);
    t.elapsed()
}

/// What the chart's ServiceAccount may do, asked of the API server with its own token: the `/scale`
/// subresource and the scalers, never Secrets, never the Deployments themselves.
fn assert_least_privilege(kube: &KubeCluster, sa_kubeconfig: &std::path::Path) {
    let sa = sa_kubeconfig.display().to_string();
    let can = |args: &[&str]| -> bool {
        let mut all = vec!["--kubeconfig", sa.as_str(), "auth", "can-i"];
        all.extend_from_slice(args);
        let out = kube.kubectl(&all);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    };
    for allowed in [
        &["patch", "deployments", "--subresource=scale", "-n", NS][..],
        &["get", "deployments", "--subresource=scale", "-n", NS],
        &["list", "predictivescalers.prescale.dev", "--all-namespaces"],
        &[
            "patch",
            "predictivescalers.prescale.dev",
            "--subresource=status",
            "-n",
            NS,
        ],
        &["create", "events.events.k8s.io", "-n", NS],
    ] {
        assert!(
            can(allowed),
            "the chart's ServiceAccount should be allowed: {allowed:?}"
        );
    }
    for refused in [
        &["get", "secrets", "-n", NS][..],
        &["list", "secrets", "--all-namespaces"],
        &["get", "deployments", "-n", NS],
        &["patch", "deployments", "-n", NS],
        &["delete", "deployments", "-n", NS],
        &["update", "predictivescalers.prescale.dev", "-n", NS],
        &["create", "customresourcedefinitions.apiextensions.k8s.io"],
    ] {
        assert!(
            !can(refused),
            "the chart's ServiceAccount must not be allowed: {refused:?}"
        );
    }
    // and the real request, not only the review
    let out = kube.kubectl(&["--kubeconfig", &sa, "get", "secrets", "-n", NS]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "reading Secrets should be forbidden: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kube.kubectl(&[
        "--kubeconfig",
        &sa,
        "delete",
        "deployment",
        "llm-proxy",
        "-n",
        NS,
        "--dry-run=server",
    ]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "deleting the Deployment should be forbidden: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A daily peak that repeats exactly (a ramp from 20 to 90 req/s over 8 minutes, every day at
/// the same time, 4 days of it in a real Prometheus), and a scaler with the default settings
/// but `targetPerReplica` and the lead time (15m), as a user would write it: the peak needs 9
/// replicas, and the operator must set them before the peak comes, from the forecast alone (the
/// last sample is the base load). The default operating point is a replica budget, which must
/// not cap a confident forecast below the peak's need (issue 22).
#[test]
fn the_default_settings_reach_an_exactly_repeating_peak_before_it() {
    const NS: &str = "repeating";
    const BASE: f64 = 20.0;
    const TOP: f64 = 90.0;
    const RAMP: i64 = 8 * 60;
    // the peak comes back this long after the start; the history ends 2 minutes before the
    // start, before the ramp begins
    const PEAK_IN: i64 = RAMP + 4 * 60;
    let ramp = |t: i64, peak: i64| {
        let dt = ((t - peak).rem_euclid(DAY) + DAY / 2).rem_euclid(DAY) - DAY / 2;
        if dt.abs() >= RAMP {
            BASE
        } else {
            let x = std::f64::consts::PI * dt as f64 / RAMP as f64;
            BASE + (TOP - BASE) * 0.5 * (1.0 + x.cos())
        }
    };
    let now = unix_now();
    let peak = now + PEAK_IN;
    let end = (now - 120) / 60 * 60;
    assert_eq!(
        ramp(end, peak),
        BASE,
        "the last sample must be the base load"
    );
    let prom = Prometheus::start_with_history(&openmetrics_gauge(
        "gateway_rps",
        &[("app", "gateway")],
        end - 4 * DAY,
        end,
        60,
        |t| ramp(t, peak),
    ));
    let kube = KubeCluster::start();
    kube.create_namespace(NS);
    kube.create_deployment(NS, "gateway", 2);
    let scaler = json!({
        "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
        "metadata": {"name": "gateway", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"},
            "minReplicas": 2, "maxReplicas": 30,
            "metrics": [{"name": "requests", "query": "gateway_rps{app=\"gateway\"}", "targetPerReplica": "10"}],
            "scaleUp": {"leadTime": "15m"}
        }
    });
    support::scenario::create_scaler(&kube, scaler);
    let (mut op, _http) = support::scenario::start_operator(&kube, NS, &prom.url(), None, "5s");
    let deployment = format!("/apis/apps/v1/namespaces/{NS}/deployments/gateway");
    let need = (TOP / 10.0).ceil() as i64;
    let reached = wait_until(
        Duration::from_secs((peak - unix_now()).max(0) as u64),
        Duration::from_millis(500),
        || {
            op.assert_running();
            let r = kube.get(&deployment)["spec"]["replicas"].as_i64()?;
            (r >= need).then_some(r)
        },
    );
    let scaler = kube.get(&support::scenario::scaler_path(NS, "gateway"));
    let before = peak - unix_now();
    let reached = reached.unwrap_or_else(|| {
        panic!(
            "the default settings did not reach the peak's {need} replicas before it (now {}): {}\n{}",
            kube.get(&deployment)["spec"]["replicas"],
            scaler["status"],
            op.log_tail(30)
        )
    });
    report(&format!(
        "[e2e] default settings: {reached} replicas {before}s before an exactly repeating peak that needs \
         {need}"
    ));
    op.stop();
}
