//! `groupBy` (bottom-up forecasts per model) on the real control plane
//! (tests/support/cluster.rs), with a real Prometheus backfilled with one series per model and
//! the `prescale run` binary as the chart's ServiceAccount:
//! - a metric whose query returns three series (`sum by (model) (...)`) with `groupBy: [model]`
//!   scales the Deployment to what their total needs and shows the largest models in
//!   `status.forecast.topContributors`, with their share of the peak;
//! - the same with more series than `maxSeries` is refused (`ForecastAvailable=False`,
//!   `TooManySeries`, the count in the message) and the Deployment keeps its replicas.
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
use support::{Prometheus, find_condition, openmetrics_gauge, report, unix_now};

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
