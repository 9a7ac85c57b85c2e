//! `groupBy` (bottom-up forecasts per model) on the real control plane
//! (tests/support/cluster.rs), with a real Prometheus backfilled with one series per model and
//! the `prescale run` binary as the chart's ServiceAccount:
//! - a metric whose query returns three series (`sum by (model) (...)`) with `groupBy: [model]`
//!   scales the Deployment to what their total needs and shows the largest models in
//!   `status.forecast.topContributors`, with their share of the peak;
//! - the same with more series than `maxSeries` is refused (`ForecastAvailable=False`,
//!   `TooManySeries`, the count in the message) and the Deployment keeps its replicas.
//!
//! - the largest grouped scaler the per-scaler bound accepts (one metric of 50 series over 34
//!   days with a 13-day horizon at 1 minute, beside 7 single-series metrics) is evaluated with
//!   the operator's peak RSS under 200 MiB, and its memory is returned once it is deleted.
//!
//! The combination rule, new and vanished series are unit tests (`planner::group`).

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::scenario::{
    create_scaler, prescale_forecast, scaler_path, scrape, start_operator, wait_for,
};
use support::{Prometheus, find_condition, openmetrics_gauge, report, unix_now, wait_until};

const METRIC: &str = "litellm_requests_per_second";

/// One gauge family with a series per `(model, load)`, flat over the last day: the backfill.
fn per_model(now: i64, models: &[(&str, f64)]) -> String {
    let mut out = format!("# TYPE {METRIC} gauge\n");
    for (model, load) in models {
        let text = openmetrics_gauge(
            METRIC,
            &[("model", model), ("namespace", "default")],
            now - 86_400,
            now - 60,
            60,
            |_| *load,
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A scaler on `proxy` with one `groupBy: [model]` metric at 10 per replica.
fn scaler(ns: &str, name: &str, max_series: Option<i64>) -> Value {
    let mut metric = json!({
        "name": "requests",
        "query": format!("sum by (model) ({METRIC})"),
        "targetPerReplica": "10",
        "groupBy": ["model"],
    });
    if let Some(m) = max_series {
        metric["maxSeries"] = json!(m);
    }
    PredictiveScaler::test(ns, name)
        .min_max(1, 30)
        .history("12h", "1m")
        .scale_down("1s", 100)
        .with("/spec/metrics", json!([metric]))
        .json()
}

#[test]
fn a_group_by_metric_scales_on_the_total_and_shows_the_top_contributors() {
    let now = unix_now();
    // 60 + 30 + 10 = 100 req/s: 10 replicas at 10 per replica
    let models = [("gpt-4o", 60.0), ("claude", 30.0), ("llama", 10.0)];
    let prom = Prometheus::start_with_history(&per_model(now, &models));
    let series = prom.query(&format!("sum by (model) ({METRIC})"));
    assert_eq!(series.as_array().map(Vec::len), Some(3), "{series}");
    let kube = KubeCluster::shared();
    let (ns, name) = ("group-by", "llm-proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    create_scaler(kube, scaler(ns, name, None));
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "1s");
    let path = scaler_path(ns, name);
    let wait = Duration::from_secs(90);
    let s = wait_for(&mut op, kube, &path, "ten replicas", wait, |s| {
        kube.deployment_replicas(ns, name) == 10
            && s["status"]["forecast"]["topContributors"].is_array()
    });
    let forecast = &s["status"]["forecast"];
    assert_eq!(forecast["metric"], "requests", "{forecast}");
    assert_eq!(forecast["series"], 3, "{forecast}");
    let top: Vec<(String, String)> = forecast["topContributors"]
        .as_array()
        .expect("topContributors")
        .iter()
        .map(|c| {
            (
                c["labels"].as_str().unwrap_or_default().to_string(),
                c["share"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        top,
        [
            ("model=gpt-4o".to_string(), "0.60".to_string()),
            ("model=claude".to_string(), "0.30".to_string()),
            ("model=llama".to_string(), "0.10".to_string()),
        ],
        "{forecast}"
    );
    assert_eq!(forecast["topContributors"][0]["value"], "60", "{forecast}");
    assert!(
        find_condition(&s, "ForecastAvailable").is_some_and(|c| c["status"] == "True"),
        "{}",
        s["status"]
    );
    // the series count is on /metrics, for an alert before maxSeries
    let gauge = format!(
        "prescale_scaler_group_series{{namespace=\"{ns}\",name=\"{name}\",metric=\"requests\"}} 3"
    );
    let metrics = scrape(&http);
    assert!(metrics.contains(&gauge), "no {gauge} in {metrics}");
    op.assert_never_forbidden();
    // `prescale forecast --group-by` lists the same contributors, read from the same Prometheus
    let query = format!("{METRIC}{{namespace=\"default\"}}");
    let stdout = prescale_forecast(
        &prom.url(),
        &[
            "--query",
            &query,
            "--group-by",
            "model",
            "--lookback",
            "12h",
            "--step",
            "1m",
            "--horizon",
            "1h",
            "--target-per-replica",
            "10",
        ],
    );
    assert!(stdout.contains("bottom-up over 3 series"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("model=")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("model=gpt-4o") && lines[0].ends_with("60.0%"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("model=llama") && lines[2].ends_with("10.0%"),
        "{stdout}"
    );
    report(&format!(
        "[groupBy] three models (60/30/10 req/s) forecast bottom-up: 3 -> 10 replicas; top contributors {top:?}"
    ));
}

#[test]
fn more_series_than_max_series_is_refused_and_does_not_scale() {
    let now = unix_now();
    let models = [("a", 40.0), ("b", 30.0), ("c", 20.0), ("d", 10.0)];
    let prom = Prometheus::start_with_history(&per_model(now, &models));
    let kube = KubeCluster::shared();
    let (ns, name) = ("group-by-cap", "llm-proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    create_scaler(kube, scaler(ns, name, Some(3)));
    let (mut op, _) = start_operator(kube, ns, &prom.url(), None, "1s");
    let path = scaler_path(ns, name);
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "TooManySeries",
        Duration::from_secs(90),
        |s| find_condition(s, "ForecastAvailable").is_some_and(|c| c["reason"] == "TooManySeries"),
    );
    let c = find_condition(&s, "ForecastAvailable").expect("condition");
    assert_eq!(c["status"], "False");
    let message = c["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("the query returned 4 series, more than maxSeries 3"),
        "{message}"
    );
    // eight evaluations later (a 1 s sync interval) the Deployment still has its 3 replicas,
    // where the total (100 req/s) would ask for 10
    std::thread::sleep(Duration::from_secs(8));
    op.assert_running();
    assert_eq!(kube.deployment_replicas(ns, name), 3);
    let s = kube.get(&path);
    assert_eq!(s["status"]["desiredReplicas"], 3, "{}", s["status"]);
    op.assert_never_forbidden();
    report(&format!(
        "[groupBy] four series with maxSeries 3: held at 3 replicas: {message}"
    ));
}

/// `n` models over the last 34 days and an hour, one sample every 5 minutes (Prometheus fills
/// the 1-minute steps between from its 5-minute lookback): model `i` carries `i + 1` req/s on
/// a daily cycle of +-50%, each model at its own phase.
fn many_models(now: i64, n: usize) -> String {
    let start = now - 34 * 86_400 - 3_600;
    let mut out = format!("# TYPE {METRIC} gauge\n");
    for i in 0..n {
        let model = format!("m{i:02}");
        let base = (i + 1) as f64;
        let phase = i as f64 / n as f64;
        let text = openmetrics_gauge(
            METRIC,
            &[("model", &model), ("namespace", "default")],
            start,
            now - 60,
            300,
            |t| {
                let day = (t % 86_400) as f64 / 86_400.0;
                base * (1.0 + 0.5 * (std::f64::consts::TAU * (day + phase)).sin())
            },
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The largest grouped scaler within the bound of `validate::MAX_SCALER_POINTS`: `groupBy:
/// [model]` with `maxSeries: 50` at every per-metric cap (34 days of history at 1 minute, a
/// 13-day horizon), beside 7 single-series metrics over the same windows: 57 series x 67,680
/// points = 3,857,760 of the 4,000,000. The grouped metric drives (10 req/s a replica); the
/// others ask for one replica.
fn largest_accepted(ns: &str, name: &str) -> Value {
    let mut metrics = vec![json!({
        "name": "requests",
        "query": format!("sum by (model) ({METRIC})"),
        "targetPerReplica": "10",
        "groupBy": ["model"],
        "maxSeries": 50,
    })];
    for k in 0..7 {
        metrics.push(json!({
            "name": format!("model-{k}"),
            "query": format!("sum({METRIC}{{model=\"m{k:02}\"}})"),
            "targetPerReplica": "1000000",
        }));
    }
    PredictiveScaler::test(ns, name)
        .min_max(1, 2_000)
        .history("34d", "1m")
        .horizon("13d")
        .scale_down("1s", 100)
        .with("/spec/metrics", json!(metrics))
        .json()
}

/// The bound a scaler at every cap must stay under (issue 21: one object OOM-killed the
/// operator under the chart's 256 MiB limit).
const PEAK_RSS_BOUND_MIB: f64 = 200.0;

#[test]
fn the_largest_accepted_grouped_scaler_is_evaluated_within_200_mib_and_memory_returns() {
    let now = unix_now();
    let prom = Prometheus::start_with_history(&many_models(now, 50));
    let kube = KubeCluster::shared();
    let (ns, name) = ("group-by-largest", "llm-proxy");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 1);
    let (mut op, http) = start_operator(kube, ns, &prom.url(), None, "10s");
    // the operator idle, before the scaler
    std::thread::sleep(Duration::from_secs(3));
    let idle = op.rss_mib().expect("VmRSS of the operator");
    create_scaler(kube, largest_accepted(ns, name));
    let path = scaler_path(ns, name);
    let began = std::time::Instant::now();
    let s = wait_for(
        &mut op,
        kube,
        &path,
        "the grouped forecast of 50 series",
        Duration::from_secs(900),
        |s| s["status"]["forecast"]["series"] == 50,
    );
    let evaluated = began.elapsed();
    // every metric was forecast: each has its peak on /metrics
    let metrics = scrape(&http);
    for m in std::iter::once("requests".to_string()).chain((0..7).map(|k| format!("model-{k}"))) {
        let peak = format!(
            "prescale_scaler_forecast_peak{{namespace=\"{ns}\",name=\"{name}\",metric=\"{m}\"}}"
        );
        assert!(metrics.contains(&peak), "no {peak} in {metrics}");
    }
    let top = s["status"]["forecast"]["topContributors"]
        .as_array()
        .cloned();
    assert_eq!(top.map(|t| t.len()), Some(5), "{}", s["status"]);
    // the next evaluations reuse the fits: the peak so far is the refit's
    std::thread::sleep(Duration::from_secs(25));
    op.assert_running();
    let peak = op.peak_rss_mib().expect("VmHWM of the operator");
    let held = op.rss_mib().expect("VmRSS of the operator");
    // deleted: its fits and history go, and the allocator gives the pages back
    kube.delete(&path);
    wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        kube.try_get(&path).is_none().then_some(())
    })
    .expect("the scaler is deleted");
    std::thread::sleep(Duration::from_secs(30));
    op.assert_running();
    let after = op.rss_mib().expect("VmRSS of the operator");
    op.assert_never_forbidden();
    report(&format!(
        "[groupBy] largest accepted scaler (1 x 50 series + 7 metrics, 34d at 1m, 13d ahead): evaluated in \
         {evaluated:.0?}; operator RSS idle {idle:.0} MiB, peak {peak:.0} MiB (bound {PEAK_RSS_BOUND_MIB:.0}), \
         {held:.0} MiB while it serves, {after:.0} MiB 30 s after it was deleted"
    ));
    assert!(
        peak <= PEAK_RSS_BOUND_MIB,
        "the operator's peak RSS was {peak:.0} MiB evaluating the largest accepted scaler, over {PEAK_RSS_BOUND_MIB} MiB"
    );
    // at least half of the spike went back to the OS (glibc's malloc kept all of it: 82 MiB
    // after, for a peak of 82 MiB)
    assert!(
        after <= idle + (peak - idle) / 2.0,
        "the operator still held {after:.0} MiB 30 s after the scaler was deleted (idle {idle:.0} MiB, peak {peak:.0} MiB)"
    );
}
