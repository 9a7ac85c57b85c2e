//! Concurrency sizing (`metrics[].concurrency`, Little's law) on the real control plane
//! (tests/support/cluster.rs), with a real Prometheus backfilled with a request-duration
//! histogram's `_sum` and `_count` and the `prescale run` binary as the chart's
//! ServiceAccount.
//!
//! Requests arrive at 2/s and each lasts 30 s: 60 in flight. At 8 streams per replica the
//! Deployment goes to ceil(2 x 30 / 8) = 8 replicas, where sizing the same rate at the same
//! target (2 / 8) would ask for 1. Two more scalers read a duration query that returns nothing
//! and one whose value is 0: each holds its Deployment at 20 replicas (never read as zero
//! load), with `ForecastAvailable=False`, reason `DurationUnavailable` (and a Warning event).
//! `prescale forecast --duration-query` on the same Prometheus sizes the same way.

mod support;

use std::{fmt::Write as _, time::Duration};

use prescale::api::PredictiveScaler;
use serde_json::Value;
use support::cluster::KubeCluster;
use support::scenario::{
    condition, create_scaler, prescale_forecast, scaler_path, scrape, start_operator, wait_for,
};
use support::{Prometheus, find_condition, report, unix_now, wait_until};

const HISTOGRAM: &str = "llm_request_duration_seconds";
/// Requests per second, and the seconds each lasts.
const RATE: f64 = 2.0;
const DURATION: f64 = 30.0;
const ARRIVALS: &str = "sum(rate(llm_request_duration_seconds_count[5m]))";
const MEAN_DURATION: &str = "sum(rate(llm_request_duration_seconds_sum[5m])) / sum(rate(llm_request_duration_seconds_count[5m]))";

/// OpenMetrics text of a histogram with one `+Inf` bucket whose requests arrive at `rate` per
/// second and last `duration` seconds each, every `step_s` from `start` to `end`: the
/// `_bucket`, `_sum` and `_count` series a proxy exports (counters since `start`).
fn histogram(start: i64, end: i64, step_s: i64, rate: f64, duration: f64) -> String {
    let mut out = format!("# TYPE {HISTOGRAM} histogram\n");
    let mut t = start;
    while t <= end {
        let count = rate * (t - start) as f64;
        let _ = writeln!(out, "{HISTOGRAM}_bucket{{le=\"+Inf\"}} {count} {t}");
        let _ = writeln!(out, "{HISTOGRAM}_sum {} {t}", count * duration);
        let _ = writeln!(out, "{HISTOGRAM}_count {count} {t}");
        t += step_s;
    }
    out.push_str("# EOF\n");
    out
}

#[test]
fn a_concurrency_metric_scales_on_rate_times_duration_and_a_missing_duration_holds() {
    let now = unix_now();
    let prom =
        Prometheus::start_with_history(&histogram(now - 12 * 3600, now + 600, 15, RATE, DURATION));
    let kube = KubeCluster::shared();
    let ns = "concurrency";
    kube.create_namespace(ns);
    let scalers = [
        ("llm-proxy", MEAN_DURATION, 3),
        (
            "no-duration",
            "sum(rate(llm_missing_seconds_sum[5m])) / sum(rate(llm_missing_seconds_count[5m]))",
            20,
        ),
        ("zero-duration", "vector(0)", 20),
    ];
    for (name, duration_query, replicas) in scalers {
        kube.create_deployment(ns, name, replicas);
        let scaler = PredictiveScaler::test(ns, name)
            .min_max(1, 40)
            .metric("streams", ARRIVALS, "8")
            .concurrency(duration_query)
            .history("12h", "1m")
            .scale_down("1s", 100)
            .json();
        create_scaler(kube, scaler);
    }
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "1s");
    let mut wait = |name: &str, what: &str, f: &dyn Fn(&Value) -> bool| -> Value {
        let path = scaler_path(ns, name);
        wait_for(&mut op, kube, &path, what, Duration::from_secs(90), f)
    };

    // 2/s x 30 s / 8 streams = 7.5: 8 replicas (rate sizing at 8 per replica would want 1); a
    // forecast margin may add a little, never the 1 of rate sizing
    let s = wait("llm-proxy", "the scale-up to rate x duration", &|s| {
        s["status"]["desiredReplicas"]
            .as_i64()
            .is_some_and(|d| d >= 8)
    });
    let replicas = kube.deployment_replicas(ns, "llm-proxy");
    assert!((8..=10).contains(&replicas), "{replicas}: {}", s["status"]);
    let c = &s["status"]["concurrency"][0];
    assert_eq!(c["metric"], "streams", "{}", s["status"]);
    assert_eq!(c["duration"], "30s", "{}", s["status"]);
    let peak: f64 = c["peakStreams"].as_str().unwrap().parse().unwrap();
    assert!((55.0..=80.0).contains(&peak), "peak streams {peak}");
    assert_eq!(condition(&s, "ForecastAvailable").0, "ForecastSucceeded");
    let metrics = scrape(&http);
    let gauge = format!(
        "prescale_scaler_request_duration_seconds{{namespace=\"{ns}\",name=\"llm-proxy\",metric=\"streams\"}} "
    );
    let value: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&gauge))
        .unwrap_or_else(|| panic!("no {gauge} in {metrics}"))
        .parse()
        .unwrap();
    assert!((value - DURATION).abs() < 0.01, "{value}");

    // no duration: held at 20 (the forecast alone would lower it to 8 at once: a 1 s window,
    // no scale-down limit), with the reason and why
    let mut held = Vec::new();
    for (name, want) in [
        (
            "no-duration",
            "the duration query returned no value in the last hour",
        ),
        ("zero-duration", "the duration query's newest value is 0"),
    ] {
        let s = wait(name, "DurationUnavailable", &|s| {
            condition(s, "ForecastAvailable").0 == "DurationUnavailable"
        });
        let (_, message) = condition(&s, "ForecastAvailable");
        assert!(
            message.starts_with(&format!("metric streams: {want}"))
                && message.ends_with("holding 20 replicas"),
            "{message}"
        );
        let ready = find_condition(&s, "Ready").cloned().unwrap_or_default();
        assert_eq!(ready["reason"], "DurationUnavailable");
        assert_eq!(s["status"]["concurrency"][0]["metric"], "streams");
        assert!(s["status"]["concurrency"][0].get("duration").is_none());
        held.push(message);
    }
    // ten evaluations later (a 1 s sync interval) both still stand at 20
    std::thread::sleep(Duration::from_secs(10));
    op.assert_running();
    for name in ["no-duration", "zero-duration"] {
        assert_eq!(kube.deployment_replicas(ns, name), 20, "{name}");
        let s = kube.get(&scaler_path(ns, name));
        assert_eq!(s["status"]["desiredReplicas"], 20, "{}", s["status"]);
    }
    // a Warning event names the reason once
    let events = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        Some(kube.events_about(ns, "no-duration", "DurationUnavailable")).filter(|e| !e.is_empty())
    })
    .unwrap_or_default();
    assert_eq!(
        events.len(),
        1,
        "one DurationUnavailable event: {events:#?}"
    );
    assert_eq!(events[0]["type"], "Warning");
    op.assert_never_forbidden();

    // `prescale forecast` sizes the same way: 2/s x 30 s / 8
    let stdout = prescale_forecast(
        &prom.url(),
        &[
            "--query",
            ARRIVALS,
            "--duration-query",
            MEAN_DURATION,
            "--target-per-replica",
            "8",
            "--lookback",
            "12h",
            "--horizon",
            "1h",
        ],
    );
    assert!(
        stdout.contains("concurrency: request duration 30s"),
        "{stdout}"
    );
    let forecast_peak: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("peak: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak line: {stdout}"));
    assert!((8..=10).contains(&forecast_peak), "{stdout}");
    report(&format!(
        "[concurrency] {RATE}/s x {DURATION}s / 8 streams: 3 -> {replicas} replicas (peak {peak} streams; \
         prescale forecast: peak {forecast_peak} replicas); without a duration held at 20: {}",
        held.join(" | ")
    ));
}
