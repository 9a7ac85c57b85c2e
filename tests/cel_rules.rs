//! The CRD's CEL rules, evaluated locally with kube's `cel` feature, and on a real kube-apiserver.
//! Each rule is tried on a valid and an invalid spec, with every duration format the fields
//! accept, because a rule that errors makes a real API server reject the object. The last test
//! sends every refusal to the API server (`dryRun=All`) and checks the server's own message.

mod support;

use kube::{CustomResourceExt, core::cel::Validator};
use prescale::api::{PredictiveScaler, ScalerFixture};
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = serde_json::to_value(PredictiveScaler::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The chart's example scaler, every field spelt out: valid.
fn example() -> ScalerFixture {
    PredictiveScaler::test("ai-gateway", "llm-proxy")
        .min_max(2, 60)
        .metric("requests", "sum(rate(x[2m]))", "40")
        .history("14d", "1m")
        .horizon("2h")
        .quantile(0.9)
        .scale_down("15m", 10)
}

fn manifest() -> Value {
    example().json()
}

fn check(obj: &Value) -> Result<(), String> {
    Validator::new()
        .validate(&schema(), obj, None)
        .map_err(|e| format!("{e:?}"))
}

/// The example with the field at the JSON pointer `pointer` under `spec` set to `value`.
fn with(pointer: &str, value: Value) -> Value {
    example().with(&format!("/spec{pointer}"), value).json()
}

#[test]
fn the_example_is_valid() {
    check(&manifest()).unwrap();
}

#[test]
fn typed_validate_cel_accepts_defaults() {
    example().build().validate_cel().unwrap();
}

#[test]
fn min_must_not_exceed_max() {
    let err = check(&with("/minReplicas", json!(61))).unwrap_err();
    assert!(
        err.contains("minReplicas must be less than or equal to maxReplicas"),
        "{err}"
    );
    check(&with("/minReplicas", json!(60))).unwrap();
}

#[test]
fn floor_targets_pass_when_supported() {
    for (version, kind) in [
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("apps/v1", "Deployment"),
    ] {
        let target = json!({"apiVersion": version, "kind": kind, "name": "x"});
        check(&with("/scaleTargetRef", target)).unwrap();
    }
}

#[test]
fn min_must_not_be_negative_and_zero_needs_the_opt_in() {
    let err = check(&with("/minReplicas", json!(-1))).unwrap_err();
    assert!(err.contains("minReplicas must be 0 or more"), "{err}");
    let err = check(&with("/minReplicas", json!(0))).unwrap_err();
    assert!(
        err.contains("minReplicas 0 needs allowScaleToZero: true"),
        "{err}"
    );
    check(&example().min_max(0, 60).allow_scale_to_zero().json()).unwrap();
}

#[test]
fn quantile_is_strictly_between_0_and_1() {
    for bad in [0.0, 1.0, 1.5, -0.1] {
        let err = check(&with("/forecast/quantile", json!(bad))).unwrap_err();
        assert!(
            err.contains("quantile must be between 0 and 1"),
            "{bad}: {err}"
        );
    }
    check(&with("/forecast/quantile", json!(0.5))).unwrap();
    check(&with("/forecast/quantile", json!(0.99))).unwrap();
}

#[test]
fn at_least_one_metric() {
    let err = check(&with("/metrics", json!([]))).unwrap_err();
    assert!(err.contains("at least one metric is required"), "{err}");
}

#[test]
fn metric_names_are_unique() {
    let m = json!({"name": "requests", "query": "q", "targetPerReplica": "1"});
    let err = check(&with("/metrics", json!([m.clone(), m]))).unwrap_err();
    assert!(err.contains("metric names must be unique"), "{err}");
}

#[test]
fn target_per_replica_is_a_positive_quantity() {
    for good in [json!("40"), json!(40), json!("1.5k"), json!("500m")] {
        check(&with("/metrics/0/targetPerReplica", good.clone()))
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for bad in [json!("0"), json!("-3"), json!("abc")] {
        let err = check(&with("/metrics/0/targetPerReplica", bad.clone())).unwrap_err();
        assert!(
            err.contains("targetPerReplica must be a positive quantity"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn lead_time_shorter_than_horizon_in_every_duration_format() {
    // (leadTime, horizon, valid)
    let cases = [
        ("5m", "2h", true),
        ("90s", "2m", true),
        ("1h30m", "2h", true),
        ("1.5h", "2h", true),
        ("250ms", "1s", true),
        ("5m", "1d", true),
        ("1d", "2d", true),
        ("23h", "1d", true),
        ("2h", "2h", false),
        ("3h", "2h", false),
        ("1d", "2h", false),
        ("25h", "1d", false),
        ("2d", "1d", false),
    ];
    for (lead, horizon, valid) in cases {
        let result = check(&example().lead_time(lead).horizon(horizon).json());
        if valid {
            result
                .unwrap_or_else(|e| panic!("leadTime {lead} < horizon {horizon} should pass: {e}"));
        } else {
            let err =
                result.expect_err(&format!("leadTime {lead} vs horizon {horizon} should fail"));
            assert!(
                err.contains("scaleUp.leadTime must be shorter than forecast.horizon"),
                "{err}"
            );
        }
    }
}

#[test]
fn step_shorter_than_lookback() {
    check(&with("/history/step", json!("1d"))).unwrap();
    let err = check(&with("/history", json!({"lookback": "1h", "step": "1h"}))).unwrap_err();
    assert!(
        err.contains("history.step must be shorter than history.lookback"),
        "{err}"
    );
}

#[test]
fn malformed_durations_are_rejected_by_the_schema_pattern() {
    let crd = serde_json::to_value(PredictiveScaler::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let pattern = spec["history"]["properties"]["step"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, prescale::api::duration::DURATION_PATTERN);
    let re = regex::Regex::new(pattern).unwrap();
    for good in ["90s", "5m", "2h", "14d", "1h30m", "1.5h", "250ms"] {
        assert!(re.is_match(good), "{good} should match {pattern}");
        prescale::api::duration::parse_duration(good).unwrap();
    }
    for bad in ["", "5", "5 m", "-5m", "1d12h", "P1D", "5min"] {
        assert!(!re.is_match(bad), "{bad:?} should not match {pattern}");
    }
}

#[test]
fn lead_time_is_a_duration_or_auto() {
    let crd = serde_json::to_value(PredictiveScaler::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let pattern = spec["scaleUp"]["properties"]["leadTime"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, prescale::api::duration::LEAD_TIME_PATTERN);
    let re = regex::Regex::new(pattern).unwrap();
    for good in ["Auto", "90s", "5m", "1h30m", "14d"] {
        assert!(re.is_match(good), "{good} should match {pattern}");
    }
    for bad in ["auto", "AUTO", "Auto5m", "", "5min"] {
        assert!(!re.is_match(bad), "{bad:?} should not match {pattern}");
    }
    // Auto passes the leadTime < horizon rule whatever the horizon
    check(&example().lead_time("Auto").horizon("2h").json()).unwrap();
    check(&example().lead_time("Auto").horizon("90s").json()).unwrap();
}

/// A one-off window and a cron window, both valid.
fn launch() -> Value {
    json!({"name": "launch", "start": "2026-03-10T08:00:00+01:00",
           "end": "2026-03-10T20:00:00+01:00", "minReplicas": 20})
}

fn mornings() -> Value {
    json!({"name": "mornings", "cron": "45 7 * * 1-5", "duration": "3h",
           "timeZone": "Europe/Berlin", "minReplicas": 8, "maxReplicas": 30})
}

/// The example with `spec.schedules` set to `list`.
fn with_schedules(list: Value) -> Value {
    with("/schedules", list)
}

/// `mornings()` with `changes` merged in (a `null` removes the field).
fn mornings_with(changes: Value) -> Value {
    let mut s = mornings();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            s.as_object_mut().unwrap().remove(k);
        } else {
            s[k] = v.clone();
        }
    }
    s
}

/// One invalid schedule per rule, with the words the refusal must carry.
fn schedule_refusals() -> Vec<(&'static str, Value, &'static str)> {
    let mut inverted = launch();
    inverted["end"] = json!("2026-03-10T07:00:00+01:00");
    let mut equal = launch();
    equal["end"] = launch()["start"].clone();
    let mut start_only = launch();
    start_only.as_object_mut().unwrap().remove("end");
    let mut both = launch();
    both["cron"] = json!("0 8 * * *");
    both["duration"] = json!("1h");
    let mut zone_without_cron = launch();
    zone_without_cron["timeZone"] = json!("UTC");
    vec![
        (
            "two schedules with one name",
            with_schedules(json!([mornings(), mornings()])),
            "schedule names must be unique",
        ),
        (
            "a window that ends before it starts",
            with_schedules(json!([inverted])),
            "end must be after start",
        ),
        (
            "a window that ends as it starts",
            with_schedules(json!([equal])),
            "end must be after start",
        ),
        (
            "start without end",
            with_schedules(json!([start_only])),
            "start and end must be given together",
        ),
        (
            "start and end and cron",
            with_schedules(json!([both])),
            "a schedule has either start and end, or cron and duration",
        ),
        (
            "neither start and end nor cron",
            with_schedules(json!([{"name": "empty", "minReplicas": 3}])),
            "a schedule has either start and end, or cron and duration",
        ),
        (
            "cron without duration",
            with_schedules(json!([mornings_with(json!({"duration": null}))])),
            "cron and duration must be given together",
        ),
        (
            "a time zone on a one-off window",
            with_schedules(json!([zone_without_cron])),
            "timeZone applies to a cron schedule only",
        ),
        (
            "a schedule's minReplicas above its maxReplicas",
            with_schedules(json!([mornings_with(json!({"minReplicas": 31}))])),
            "a schedule's minReplicas must be less than or equal to its maxReplicas",
        ),
        (
            "a schedule's minReplicas below 0",
            with_schedules(json!([mornings_with(json!({"minReplicas": -1}))])),
            "a schedule's minReplicas must be 0 or more",
        ),
        (
            "a malformed duration",
            with_schedules(json!([mornings_with(json!({"duration": "3 hours"}))])),
            "spec.schedules[0].duration",
        ),
        (
            "a start that is not a time",
            with_schedules(json!([{"name": "launch", "start": "tomorrow",
                                   "end": "2026-03-10T20:00:00Z", "minReplicas": 2}])),
            "spec.schedules[0].start",
        ),
    ]
}

#[test]
fn schedules_pass_when_valid() {
    check(&with_schedules(json!([launch(), mornings()]))).unwrap();
    check(&with_schedules(json!([mornings_with(
        json!({"timeZone": null, "maxReplicas": null})
    )])))
    .unwrap();
}

#[test]
fn each_bad_schedule_is_refused_with_its_rules_message() {
    for (what, manifest, words) in schedule_refusals() {
        // the schema's own checks (pattern, format) are the API server's, not CEL's
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

fn p95() -> Value {
    json!({"name": "p95", "query": "histogram_quantile(0.95, x)", "threshold": 0.5})
}

/// `p95()` with `changes` merged in (a `null` removes the field).
fn p95_with(changes: Value) -> Value {
    let mut g = p95();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            g.as_object_mut().unwrap().remove(k);
        } else {
            g[k] = v.clone();
        }
    }
    g
}

/// One invalid guard per rule, with the words the refusal must carry.
fn guard_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "a guard without a threshold",
            with("/guards", json!([p95_with(json!({"threshold": null}))])),
            "spec.guards[0].threshold: Required value",
        ),
        (
            "two guards with one name",
            with("/guards", json!([p95(), p95()])),
            "guard names must be unique",
        ),
        (
            "a guard with addReplicas and addPercent",
            with(
                "/guards",
                json!([p95_with(json!({"addReplicas": 2, "addPercent": 10}))]),
            ),
            "a guard adds either addReplicas or addPercent, not both",
        ),
        (
            "a guard adding 0 replicas",
            with("/guards", json!([p95_with(json!({"addReplicas": 0}))])),
            "a guard's addReplicas must be 1 or more",
        ),
        (
            "a guard adding 5000 percent",
            with("/guards", json!([p95_with(json!({"addPercent": 5000}))])),
            "a guard's addPercent must be between 1 and 1000",
        ),
        (
            "a guard with an unknown direction",
            with(
                "/guards",
                json!([p95_with(json!({"direction": "Sideways"}))]),
            ),
            "spec.guards[0].direction: Unsupported value",
        ),
        (
            "a guard with a malformed holdWindow",
            with(
                "/guards",
                json!([p95_with(json!({"holdWindow": "a while"}))]),
            ),
            "spec.guards[0].holdWindow",
        ),
    ]
}

/// `spec.upstream` with these limits (the example's one metric is `requests`).
fn with_limits(limits: Value) -> Value {
    with("/upstream", json!({ "limits": limits }))
}

/// One invalid upstream limit per rule, with the words the refusal must carry.
fn upstream_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "an upstream limit of a metric that does not exist",
            with_limits(json!([{"metric": "tokens", "perMinute": "2M"}])),
            "every upstream limit must name a metric of spec.metrics",
        ),
        (
            "an upstream limit of 0 per minute",
            with_limits(json!([{"metric": "requests", "perMinute": "0"}])),
            "perMinute must be a positive quantity",
        ),
        (
            "a negative upstream limit",
            with_limits(json!([{"metric": "requests", "perMinute": "-100"}])),
            "perMinute must be a positive quantity",
        ),
        (
            "an upstream limit with neither perMinute nor query",
            with_limits(json!([{"metric": "requests"}])),
            "an upstream limit needs perMinute, query, or both",
        ),
        (
            "two upstream limits on one metric",
            with_limits(json!([
                {"metric": "requests", "perMinute": "6000"},
                {"metric": "requests", "perMinute": "3000"}
            ])),
            "one upstream limit per metric",
        ),
        (
            "no upstream limits",
            with_limits(json!([])),
            "upstream.limits needs at least one limit",
        ),
        (
            "an upstream limit with an unknown metricUnit",
            with_limits(
                json!([{"metric": "requests", "perMinute": "6000", "metricUnit": "PerHour"}]),
            ),
            "spec.upstream.limits[0].metricUnit: Unsupported value",
        ),
    ]
}

#[test]
fn upstream_limits_pass_when_valid() {
    check(&with_limits(
        json!([{"metric": "requests", "perMinute": "6000"}]),
    ))
    .unwrap();
    check(&with_limits(
        json!([{"metric": "requests", "perMinute": "2M",
        "metricUnit": "PerMinute", "query": "max(ratelimit_limit_requests)", "source": "gw"}]),
    ))
    .unwrap();
    check(&with_limits(
        json!([{"metric": "requests", "query": "max(x)"}]),
    ))
    .unwrap();
    let two = example()
        .metric("tokens", "sum(rate(t[2m]))", "5k")
        .with(
            "/spec/upstream",
            json!({"limits": [{"metric": "requests", "perMinute": "6000"},
                              {"metric": "tokens", "perMinute": "1.5M"}]}),
        )
        .json();
    check(&two).unwrap();
}

#[test]
fn each_bad_upstream_limit_is_refused_with_its_rules_message() {
    for (what, manifest, words) in upstream_refusals() {
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

#[test]
fn guards_pass_when_valid() {
    check(&with("/guards", json!([p95()]))).unwrap();
    let below = json!({"name": "ok", "source": "other", "query": "q", "threshold": 0.99,
        "direction": "Below", "addPercent": 20, "holdWindow": "10m"});
    check(&with("/guards", json!([p95(), below]))).unwrap();
}

#[test]
fn each_bad_guard_is_refused_with_its_rules_message() {
    for (what, manifest, words) in guard_refusals() {
        // the schema's own checks (required, enum, pattern) are the API server's, not CEL's
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

/// One invalid concurrency block per rule, with the words the refusal must carry.
fn concurrency_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "a concurrency metric whose durationQuery repeats its query",
            with(
                "/metrics/0/concurrency",
                json!({"durationQuery": "sum(rate(x[2m]))"}),
            ),
            "concurrency.durationQuery must read the request duration in seconds, not repeat the metric's query",
        ),
        (
            "a concurrency block without a durationQuery",
            with("/metrics/0/concurrency", json!({})),
            "spec.metrics[0].concurrency.durationQuery: Required value",
        ),
        (
            "an empty durationQuery",
            with("/metrics/0/concurrency", json!({"durationQuery": ""})),
            "spec.metrics[0].concurrency.durationQuery",
        ),
    ]
}

#[test]
fn a_concurrency_metric_passes_when_valid_and_each_bad_one_is_refused() {
    let dq = "sum(rate(x_duration_seconds_sum[5m])) / sum(rate(x_duration_seconds_count[5m]))";
    check(&with(
        "/metrics/0/concurrency",
        json!({"durationQuery": dq}),
    ))
    .unwrap();
    for (what, manifest, words) in concurrency_refusals() {
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

/// One invalid `scaleDown.drainAware` per rule, with the words the refusal must carry.
fn drain_aware_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "drainAware without podQuery",
            with("/scaleDown/drainAware", json!({"source": "default"})),
            "scaleDown.drainAware needs podQuery: a PromQL query returning one series per pod",
        ),
        (
            "drainAware with an empty podQuery",
            with("/scaleDown/drainAware", json!({"podQuery": ""})),
            "scaleDown.drainAware needs podQuery",
        ),
        (
            "drainAware on a StatefulSet",
            example()
                .target_ref("apps/v1", "StatefulSet", "db")
                .drain_aware("sum by (pod) (inflight)")
                .json(),
            "scaleDown.drainAware needs an apps/v1 Deployment or ReplicaSet target: a StatefulSet removes its highest ordinal and ignores pod-deletion-cost",
        ),
        (
            "drainAware in floor mode",
            example()
                .target_ref("autoscaling/v2", "HorizontalPodAutoscaler", "h")
                .drain_aware("sum by (pod) (inflight)")
                .json(),
            "scaleDown.drainAware needs an apps/v1 Deployment or ReplicaSet target",
        ),
        (
            "drainAware with a malformed maxWait",
            with(
                "/scaleDown/drainAware",
                json!({"podQuery": "q", "maxWait": "5min"}),
            ),
            "spec.scaleDown.drainAware.maxWait",
        ),
        (
            "drainAware with a podLabel that is no label name",
            with(
                "/scaleDown/drainAware",
                json!({"podQuery": "q", "podLabel": "pod-name"}),
            ),
            "spec.scaleDown.drainAware.podLabel",
        ),
    ]
}

#[test]
fn drain_aware_passes_when_valid() {
    check(&example().drain_aware("sum by (pod) (inflight)").json()).unwrap();
    let all = json!({"source": "other", "podQuery": "q", "podLabel": "kubernetes_pod_name", "maxWait": "0s"});
    check(&with("/scaleDown/drainAware", all)).unwrap();
    let rs = example()
        .target_ref("apps/v1", "ReplicaSet", "r")
        .drain_aware("q")
        .json();
    check(&rs).unwrap();
}

#[test]
fn each_bad_drain_aware_is_refused_with_its_rules_message() {
    for (what, manifest, words) in drain_aware_refusals() {
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

/// The example's metric with `changes` merged in (`groupBy`, `maxSeries`).
fn grouped(changes: Value) -> Value {
    let mut m = json!({"name": "requests", "query": "sum by (model) (rate(x[2m]))",
        "targetPerReplica": "40", "groupBy": ["model"]});
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    with("/metrics", json!([m]))
}

fn group_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "maxSeries without groupBy",
            grouped(json!({"groupBy": null, "maxSeries": 5})),
            "maxSeries applies to a metric with groupBy only",
        ),
        (
            "maxSeries 0",
            grouped(json!({"maxSeries": 0})),
            "maxSeries must be between 1 and 50",
        ),
        (
            "maxSeries 51",
            grouped(json!({"maxSeries": 51})),
            "maxSeries must be between 1 and 50",
        ),
        (
            "groupBy naming a label twice",
            grouped(json!({"groupBy": ["model", "model"]})),
            "groupBy label names must be unique",
        ),
        (
            "groupBy with a label that is not a label name",
            grouped(json!({"groupBy": ["model-name"]})),
            "spec.metrics[0].groupBy[0]",
        ),
    ]
}

#[test]
fn group_by_passes_when_valid() {
    check(&grouped(json!({}))).unwrap();
    check(&grouped(
        json!({"groupBy": ["model", "tenant"], "maxSeries": 50}),
    ))
    .unwrap();
    check(&grouped(json!({"maxSeries": 1}))).unwrap();
}

#[test]
fn each_bad_group_by_is_refused_with_its_rules_message() {
    for (what, manifest, words) in group_refusals() {
        // the schema's own checks (pattern) are the API server's, not CEL's
        if words.starts_with("spec.") {
            continue;
        }
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

/// `n` metrics of `groupBy: [model]` with `maxSeries` (the default without), the last `plain`
/// of them without `groupBy`, over `lookback` and `horizon` at 1m.
fn capped(n: usize, plain: usize, max_series: Option<i64>, lookback: &str, horizon: &str) -> Value {
    let metrics: Vec<Value> = (0..n)
        .map(|i| {
            let mut m = json!({"name": format!("m{i}"), "query": "sum by (model) (rate(x[2m]))",
                "targetPerReplica": "40"});
            if i < n - plain {
                m["groupBy"] = json!(["model"]);
                if let Some(max) = max_series {
                    m["maxSeries"] = json!(max);
                }
            }
            m
        })
        .collect();
    example()
        .with("/spec/metrics", json!(metrics))
        .history(lookback, "1m")
        .horizon(horizon)
        .json()
}

fn bound_refusals() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "every cap at once: 8 groupBy metrics of 50 series, 34d of history, a 13d horizon",
            capped(8, 0, Some(50), "34d", "13d"),
            "must be at most 4000000 points per PredictiveScaler: lower maxSeries",
        ),
        (
            "four groupBy metrics of 50 series over 14d, 2h ahead (4,056,000 points)",
            capped(4, 0, Some(50), "14d", "2h"),
            "the metrics' series (1 per metric, maxSeries per groupBy metric, default 20) x (history.lookback + forecast.horizon) / history.step must be at most 4000000 points",
        ),
        (
            "eight groupBy metrics at the default maxSeries (20) over 34d",
            capped(8, 0, None, "34d", "2h"),
            "must be at most 4000000 points per PredictiveScaler",
        ),
        (
            "a refresh interval of 1s",
            with("/forecast/refreshInterval", json!("1s")),
            "spec.forecast.refreshInterval: Invalid value: forecast.refreshInterval must be at least 1m",
        ),
    ]
}

#[test]
fn the_largest_scalers_within_the_bound_pass() {
    // one groupBy metric of 50 series at every per-metric cap beside 7 single-series ones
    check(&capped(8, 7, Some(50), "34d", "13d")).unwrap();
    // three of 50 series over 14 days, 2h ahead (3,042,000 points)
    check(&capped(3, 0, Some(50), "14d", "2h")).unwrap();
    // every metric single-series at every cap (8 x 67,680 points)
    check(&capped(8, 8, None, "34d", "13d")).unwrap();
    check(&with("/forecast/refreshInterval", json!("1m"))).unwrap();
}

#[test]
fn each_spec_over_the_bounds_is_refused_with_its_rules_message() {
    for (what, manifest, words) in bound_refusals() {
        // the field before "Invalid value: " is the API server's prefix
        let words = words.rsplit("Invalid value: ").next().unwrap_or(words);
        let err = check(&manifest).expect_err(what);
        assert!(err.contains(words), "{what}: {words:?} not in {err}");
    }
}

/// One invalid spec per rule of the CRD (CEL and schema), with the words the refusal must carry.
fn refusals() -> Vec<(&'static str, Value, &'static str)> {
    let metric = json!({"name": "requests", "query": "q", "targetPerReplica": "1"});
    let mut refusals = vec![
        (
            "minReplicas > maxReplicas",
            with("/minReplicas", json!(61)),
            "spec.minReplicas: Invalid value: minReplicas must be less than or equal to maxReplicas",
        ),
        (
            "minReplicas < 0",
            with("/minReplicas", json!(-1)),
            "minReplicas must be 0 or more",
        ),
        (
            "minReplicas 0 without the opt-in",
            with("/minReplicas", json!(0)),
            "spec.minReplicas: Invalid value: minReplicas 0 needs allowScaleToZero: true",
        ),
        (
            "maxReplicas 0",
            with("/maxReplicas", json!(0)),
            "maxReplicas must be 1 or more",
        ),
        (
            "quantile 1",
            with("/forecast/quantile", json!(1.0)),
            "quantile must be between 0 and 1",
        ),
        (
            "no metric",
            with("/metrics", json!([])),
            "at least one metric is required",
        ),
        (
            "two metrics with one name",
            with("/metrics", json!([metric.clone(), metric])),
            "metric names must be unique",
        ),
        (
            "targetPerReplica 0",
            with("/metrics/0/targetPerReplica", json!("0")),
            "targetPerReplica must be a positive quantity",
        ),
        (
            "leadTime = horizon, in days",
            with("/scaleUp/leadTime", json!("1d")),
            "spec.scaleUp.leadTime: Invalid value: scaleUp.leadTime must be shorter than forecast.horizon",
        ),
        (
            "step = lookback",
            with("/history", json!({"lookback": "1h", "step": "1h"})),
            "spec.history.step: Invalid value: history.step must be shorter than history.lookback",
        ),
        (
            "maxPercentPerMinute 101",
            with("/scaleDown/maxPercentPerMinute", json!(101)),
            "maxPercentPerMinute must be between 0 and 100",
        ),
        (
            "a malformed duration",
            with("/scaleUp/leadTime", json!("5min")),
            "spec.scaleUp.leadTime",
        ),
        (
            "a URL as source",
            with("/metrics/0/source", json!("http://prometheus:9090")),
            "spec.metrics[0].source",
        ),
        (
            "a 365-day horizon at a 1m step",
            with("/forecast/horizon", json!("365d")),
            "spec.forecast.horizon: Invalid value: forecast.horizon / history.step must be at most 20000 points",
        ),
        (
            "ten years of history at 1 s",
            with("/history", json!({"lookback": "3650d", "step": "1s"})),
            "spec.history.lookback: Invalid value: history.lookback / history.step must be at most 50000 points",
        ),
        (
            "a step below one second",
            with("/history/step", json!("500ms")),
            "spec.history.step: Invalid value: history.step must be at least 1s",
        ),
        (
            "a metric name with a newline",
            with("/metrics/0/name", json!("req\nfake")),
            "spec.metrics[0].name",
        ),
        (
            "an autoscaling/v1 HPA as the floor target",
            with(
                "/scaleTargetRef",
                json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "name": "h"}),
            ),
            "spec.scaleTargetRef: Invalid value: a HorizontalPodAutoscaler target (floor mode) must be autoscaling/v2",
        ),
        (
            "a KEDA ScaledJob as the floor target",
            with(
                "/scaleTargetRef",
                json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "name": "j"}),
            ),
            "spec.scaleTargetRef: Invalid value: the only KEDA target (floor mode) is a keda.sh/v1alpha1 ScaledObject",
        ),
        (
            "an unknown field",
            with("/maxReplica", json!(3)),
            "unknown field \"spec.maxReplica\"",
        ),
    ];
    refusals.extend(schedule_refusals());
    refusals.extend(guard_refusals());
    refusals.extend(concurrency_refusals());
    refusals.extend(drain_aware_refusals());
    refusals.extend(group_refusals());
    refusals.extend(upstream_refusals());
    refusals.extend(bound_refusals());
    refusals
}

#[test]
fn the_api_server_refuses_each_invalid_spec_with_the_rules_message() {
    let cluster = support::cluster::KubeCluster::shared();
    let ns = "cel-rules";
    cluster.create_namespace(ns);
    let path = format!(
        "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers?dryRun=All&fieldValidation=Strict"
    );
    let with_ns = |mut m: Value| {
        m["metadata"]["namespace"] = json!(ns);
        m
    };
    let accepted = cluster.request(
        "POST",
        &path,
        Some("application/json"),
        Some(&with_ns(manifest())),
    );
    assert_eq!(
        accepted.status, 201,
        "the valid manifest: {}",
        accepted.body
    );
    let scheduled = with_schedules(json!([launch(), mornings()]));
    let accepted = cluster.request(
        "POST",
        &path,
        Some("application/json"),
        Some(&with_ns(scheduled)),
    );
    assert_eq!(
        accepted.status, 201,
        "the valid manifest with schedules: {}",
        accepted.body
    );
    let mut seen = Vec::new();
    for (what, manifest, words) in refusals() {
        let resp = cluster.request(
            "POST",
            &path,
            Some("application/json"),
            Some(&with_ns(manifest)),
        );
        let message = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // an unknown field fails decoding (400 BadRequest), every rule validation (422 Invalid)
        let code = if what == "an unknown field" { 400 } else { 422 };
        assert_eq!(
            resp.status, code,
            "{what}: the server should refuse it with {code}: {}",
            resp.body
        );
        assert!(
            message.contains(words),
            "{what}: the server's message should contain {words:?}: {message}"
        );
        seen.push(format!("{what}: {message}"));
    }
    support::report(&format!(
        "[cel] the API server refused {} invalid specs, each with its rule's message:\n  {}",
        seen.len(),
        seen.join("\n  ")
    ));
}
