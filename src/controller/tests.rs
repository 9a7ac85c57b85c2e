//! Reconcile tests with a mocked API server (tower-test): each asserts the exact requests a
//! reconcile sends, in order, and their bodies.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

use super::{Context, ControllerConfig, reconcile};
use crate::{
    api::PredictiveScaler,
    sources::{MetricsSource, SourceError, Sources},
};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Serves a constant load for any range, or fails, and counts calls.
struct FakeSource {
    value: Option<f64>,
    calls: Mutex<u32>,
    /// The series stopped this many seconds before now (0: it is live).
    stopped_ago: i64,
}

impl MetricsSource for FakeSource {
    fn range<'a>(
        &'a self,
        _q: &'a str,
        start: i64,
        end: i64,
        step: i64,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
        *self.calls.lock().unwrap() += 1;
        let last = jiff::Timestamp::now().as_second() - self.stopped_ago;
        Box::pin(async move {
            match self.value {
                Some(v) => Ok((start..=end.min(last))
                    .step_by(step as usize)
                    .map(|t| (t, v))
                    .collect()),
                None => Err(SourceError::QueryFailed {
                    source_name: "default".into(),
                    message: "connection failed (is the source up?)".into(),
                }),
            }
        })
    }
}

/// The scaler every reconcile test reconciles, as an API server returns it: `mode` is
/// `"Active"` or `"DryRun"`; horizon and scale-down keep the CRD's defaults.
fn scaler(mode: &str, min: i32, max: i32) -> PredictiveScaler {
    PredictiveScaler::test("default", "llm-proxy")
        .stored(3, "u1", "7")
        .mode(serde_json::from_value(json!(mode)).expect("Active or DryRun"))
        .min_max(min, max)
        .metric("requests", "sum(rate(x[2m]))", "10")
        .history("1d", "5m")
        .horizon("2h")
        .scale_down("15m", 10)
        .build()
}

fn context(value: Option<f64>) -> (Arc<Context>, Handle, Arc<FakeSource>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let source = Arc::new(FakeSource {
        value,
        calls: Mutex::new(0),
        stopped_ago: 0,
    });
    let mut sources = Sources::default();
    sources.insert("default", source.clone());
    let ctx = Context::new(
        client,
        sources,
        ControllerConfig {
            sync_interval: Duration::from_secs(30),
            ..Default::default()
        },
    );
    (Arc::new(ctx), handle, source)
}

fn scale(replicas: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "llm-proxy", "namespace": "default"},
        "spec": {"replicas": replicas}, "status": {"replicas": replicas}
    })
}

async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Option<Value> {
    expect_status(handle, method, path, 200, reply).await
}

async fn expect_status(
    handle: &mut Handle,
    method: Method,
    path: &str,
    code: u16,
    reply: Value,
) -> Option<Value> {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
        .unwrap_or_else(|| panic!("no request; expected {method} {path}"));
    if request.method() != method {
        let uri = request.uri().clone();
        let b = request.into_body().collect_bytes().await.unwrap();
        panic!(
            "expected {method} {path}, got {uri}: {}",
            String::from_utf8_lossy(&b)
        );
    }
    assert_eq!(request.uri().path(), path);
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if path.ends_with("/status") {
        // the status is written as prescale: by server-side apply, forced (the whole status),
        // or a merge patch of what another manager kept (`leftovers_are_removed_after_the_apply`)
        let query = request.uri().query().unwrap_or_default();
        assert!(query.contains("fieldManager=prescale"), "{query}");
        let apply = content_type == "application/apply-patch+yaml";
        assert!(
            apply || content_type == "application/merge-patch+json",
            "status write {content_type}"
        );
        assert!(!apply || query.contains("force=true"), "{query}");
        if !apply {
            let bytes = request.into_body().collect_bytes().await.unwrap();
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            return Some(json!({ "mergePatch": body }));
        }
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&bytes).unwrap())
    };
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    body
}

const SCALE: &str = "/apis/apps/v1/namespaces/default/deployments/llm-proxy/scale";
const STATUS: &str =
    "/apis/prescale.dev/v1alpha1/namespaces/default/predictivescalers/llm-proxy/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn scales_up_then_patches_status() {
    let (ctx, mut handle, _) = context(Some(95.0));
    let ps = Arc::new(scaler("Active", 2, 60));
    let task = tokio::spawn(reconcile(ps.clone(), ctx.clone()));
    expect(&mut handle, Method::GET, SCALE, scale(2)).await;
    let patch = expect(&mut handle, Method::PATCH, SCALE, scale(10)).await;
    assert_eq!(
        patch,
        Some(json!({"spec": {"replicas": 10}})),
        "95/s at 10 per replica"
    );
    let event = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(event["reason"], "ScaledUp");
    assert_eq!(event["type"], "Normal");
    assert!(
        event["note"].as_str().unwrap().contains("from 2 to 10"),
        "{event}"
    );
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    let s = &status["status"];
    assert_eq!(s["observedGeneration"], 3);
    assert_eq!(s["currentReplicas"], 10);
    assert_eq!(s["desiredReplicas"], 10);
    assert!(s["lastScaleTime"].is_string());
    assert_eq!(s["forecast"]["model"], "Constant");
    assert_eq!(s["forecast"]["metric"], "requests");
    assert_eq!(s["forecast"]["peak"]["replicas"], 10);
    assert_eq!(s["forecast"]["peak"]["value"], "95");
    for (type_, want, reason) in [
        ("Ready", "True", "ScalerActive"),
        ("ForecastAvailable", "True", "ForecastSucceeded"),
        ("AbleToScale", "True", "ReadyForNewScale"),
        ("ScalingLimited", "False", "DesiredWithinRange"),
    ] {
        let c = condition(&status, type_);
        assert_eq!(
            (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap()),
            (want, reason),
            "{type_}"
        );
        assert_eq!(c["observedGeneration"], 3);
        assert!(c["lastTransitionTime"].is_string() && c["message"].is_string());
    }
    assert_no_more_requests(&mut handle);
    // fresh data ends a step before now and the forecast starts after it: "now" is its first point
    let scraped = ctx.metrics.encode();
    assert!(
        scraped.contains(
            "prescale_scaler_forecast_load{namespace=\"default\",name=\"llm-proxy\",metric=\"requests\"} 95"
        ),
        "{scraped}"
    );
}

/// The object the mocked API server answers a status patch with.
fn stored() -> Value {
    serde_json::to_value(scaler("Active", 2, 60)).unwrap()
}

/// No request is waiting (the client may be gone: that is fine too).
fn assert_no_more_requests(handle: &mut Handle) {
    match futures::FutureExt::now_or_never(handle.next_request()) {
        None | Some(None) => {}
        Some(Some((request, _))) => {
            panic!("unexpected request {} {}", request.method(), request.uri())
        }
    }
}

#[tokio::test]
async fn no_patch_when_nothing_changes() {
    let (ctx, mut handle, _) = context(Some(95.0));
    // first reconcile: the target already has 10; status is written once
    let ps = scaler("Active", 2, 60);
    let task = tokio::spawn(reconcile(Arc::new(ps.clone()), ctx.clone()));
    expect(&mut handle, Method::GET, SCALE, scale(10)).await;
    let written = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    // second reconcile sees that status stored: no scale patch, no status patch
    let mut stored = ps;
    stored.status = Some(serde_json::from_value(written["status"].clone()).unwrap());
    let task = tokio::spawn(reconcile(Arc::new(stored), ctx));
    expect(&mut handle, Method::GET, SCALE, scale(10)).await;
    task.await.unwrap().unwrap();
    assert_no_more_requests(&mut handle);
}

#[tokio::test]
async fn dry_run_never_writes_the_target() {
    let (ctx, mut handle, _) = context(Some(300.0));
    let ps = Arc::new(scaler("DryRun", 2, 60));
    let task = tokio::spawn(reconcile(ps, ctx));
    expect(&mut handle, Method::GET, SCALE, scale(2)).await;
    let event = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(event["reason"], "DryRunScale");
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(status["status"]["desiredReplicas"], 30);
    assert_eq!(status["status"]["currentReplicas"], 2);
    let able = condition(&status, "AbleToScale");
    assert_eq!(
        (able["status"].as_str(), able["reason"].as_str()),
        (Some("True"), Some("DryRun"))
    );
    assert_no_more_requests(&mut handle);
}

#[tokio::test]
async fn invalid_spec_reports_and_never_reads_or_writes_the_target() {
    let (ctx, mut handle, source) = context(Some(95.0));
    let mut ps = scaler("Active", 2, 60);
    ps.spec.min_replicas = 70; // a spec stored before the CEL rule, or by a server without it
    let task = tokio::spawn(reconcile(Arc::new(ps), ctx));
    let warning = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (warning["type"].as_str(), warning["reason"].as_str()),
        (Some("Warning"), Some("InvalidSpec"))
    );
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("minReplicas (70) is greater than maxReplicas (60)")
    );
    assert_no_more_requests(&mut handle);
    assert_eq!(
        *source.calls.lock().unwrap(),
        0,
        "no metric queries for an invalid spec"
    );
}

#[tokio::test]
async fn an_oversized_spec_is_refused_before_anything_is_fetched_or_allocated() {
    // 1h of history at 1 s and a 365-day horizon at 1 s: 31.5 million forecast points
    let (ctx, mut handle, source) = context(Some(95.0));
    let mut ps = scaler("Active", 2, 60);
    ps.spec.history.lookback = "1h".into();
    ps.spec.history.step = "1s".into();
    ps.spec.forecast.horizon = "365d".into();
    let task = tokio::spawn(reconcile(Arc::new(ps), ctx));
    let warning = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(warning["reason"], "InvalidSpec");
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    let message = condition(&status, "Ready")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("forecast.horizon / history.step is 31536000 points")
            && message.contains("at most 20000"),
        "{message}"
    );
    assert_no_more_requests(&mut handle);
    assert_eq!(*source.calls.lock().unwrap(), 0, "nothing was fetched");
}

#[tokio::test]
async fn a_series_that_stopped_an_hour_ago_is_stale_and_never_scales() {
    // the source still answers, but the newest sample is an hour old: its forecast (which
    // would ask for 10) must not drive the target, in either direction
    for current in [2, 30] {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let source = Arc::new(FakeSource {
            value: Some(95.0),
            calls: Mutex::new(0),
            stopped_ago: 3600,
        });
        let mut sources = Sources::default();
        sources.insert("default", source.clone());
        let ctx = Arc::new(Context::new(
            Client::new(service, "default"),
            sources,
            ControllerConfig::default(),
        ));
        let task = tokio::spawn(reconcile(Arc::new(scaler("Active", 2, 60)), ctx.clone()));
        expect(&mut handle, Method::GET, SCALE, scale(current)).await;
        let event = expect(&mut handle, Method::POST, EVENTS, json!({})).await;
        let status = match event {
            Some(e) if e["reason"] == "StaleMetric" => {
                assert_eq!(e["type"], "Warning");
                expect(&mut handle, Method::PATCH, STATUS, stored())
                    .await
                    .unwrap()
            }
            other => panic!("expected a StaleMetric warning, got {other:?}"),
        };
        task.await.unwrap().unwrap();
        let fa = condition(&status, "ForecastAvailable");
        assert_eq!(
            (fa["status"].as_str(), fa["reason"].as_str()),
            (Some("False"), Some("StaleMetric"))
        );
        let message = fa["message"].as_str().unwrap();
        // an hour and the seconds the history's step grid and the test took, in whole
        // minutes: "1h" when that rounds down to exactly an hour, else "60m" to "69m"
        let age_shown = message.contains("newest sample is 1h old")
            || (60..70).any(|m| message.contains(&format!("newest sample is {m}m old")));
        assert!(
            age_shown
                && message.contains("(stale past 15m)")
                && message.contains(&format!("holding {current}")),
            "{message}"
        );
        assert_eq!(
            status["status"]["desiredReplicas"], current,
            "held at {current}"
        );
        assert_no_more_requests(&mut handle);
    }
}

#[tokio::test]
async fn missing_target_is_a_condition_not_a_write() {
    let (ctx, mut handle, _) = context(Some(95.0));
    let task = tokio::spawn(reconcile(Arc::new(scaler("Active", 2, 60)), ctx));
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "deployments.apps \"llm-proxy\" not found"});
    expect_status(&mut handle, Method::GET, SCALE, 404, not_found).await;
    let warning = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (warning["type"].as_str(), warning["reason"].as_str()),
        (Some("Warning"), Some("TargetNotFound"))
    );
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    let able = condition(&status, "AbleToScale");
    assert_eq!(
        (able["status"].as_str(), able["reason"].as_str()),
        (Some("False"), Some("TargetNotFound"))
    );
    // a target that is gone has no current count: the applied status has none, so the field
    // is cleared, not left as it was
    assert!(
        !status["status"]
            .as_object()
            .unwrap()
            .contains_key("currentReplicas"),
        "no currentReplicas in the applied status: {status}"
    );
    assert_eq!(
        (
            &status["apiVersion"],
            &status["kind"],
            &status["metadata"]["name"]
        ),
        (
            &json!("prescale.dev/v1alpha1"),
            &json!("PredictiveScaler"),
            &json!("llm-proxy")
        )
    );
    assert_no_more_requests(&mut handle);
}

#[tokio::test]
async fn failed_query_holds_and_says_why() {
    let (ctx, mut handle, _) = context(None);
    let task = tokio::spawn(reconcile(Arc::new(scaler("Active", 2, 60)), ctx));
    expect(&mut handle, Method::GET, SCALE, scale(12)).await;
    let event = expect(&mut handle, Method::POST, EVENTS, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("MetricsQueryFailed"))
    );
    let status = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        status["status"]["desiredReplicas"], 12,
        "held, not scaled to zero load"
    );
    let fa = condition(&status, "ForecastAvailable");
    assert_eq!(
        (fa["status"].as_str(), fa["reason"].as_str()),
        (Some("False"), Some("MetricsQueryFailed"))
    );
    assert!(
        fa["message"]
            .as_str()
            .unwrap()
            .contains("holding 12 replicas"),
        "{fa}"
    );
    assert_no_more_requests(&mut handle);
}

/// Serves the controller's start-up: empty lists, and watches that end at once. Records every
/// request as `METHOD path?query` until each of `namespaces` (or the cluster scope) has been
/// watched, then returns them.
async fn requests_of_a_controller_start(namespaces: &[&str]) -> Vec<String> {
    requests_of_a_controller_start_with(ControllerConfig {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
}

/// [`requests_of_a_controller_start`] of a controller with `config`.
async fn requests_of_a_controller_start_with(config: ControllerConfig) -> Vec<String> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let scopes = config.namespaces.len().max(1);
    let health = Arc::new(crate::http::Health::default());
    let controller = tokio::spawn(super::run(
        client,
        Sources::default(),
        config,
        health,
        Default::default(),
        None,
    ));
    let mut seen = Vec::new();
    let mut watched = std::collections::HashSet::new();
    while watched.len() < scopes {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out; requests so far: {seen:#?}"))
            .expect("the controller stopped");
        let uri = request.uri().clone();
        let query = uri.query().unwrap_or("");
        seen.push(format!("{} {}?{query}", request.method(), uri.path()));
        let body = if query.contains("watch=true") {
            if uri.path().ends_with("/predictivescalers") {
                watched.insert(uri.path().to_string());
            }
            Vec::new() // the watch ends at once; the watcher simply watches again
        } else {
            serde_json::to_vec(&json!({
                "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScalerList",
                "metadata": {"resourceVersion": "1"}, "items": []
            }))
            .unwrap()
        };
        send.send_response(Response::builder().body(Body::from(body)).unwrap());
    }
    controller.abort();
    seen
}

#[tokio::test]
async fn a_namespaced_operator_never_reads_cluster_wide() {
    let seen = requests_of_a_controller_start(&["team-a", "team-b"]).await;
    for r in &seen {
        let inside = ["team-a", "team-b"].iter().any(|ns| {
            r.starts_with(&format!(
                "GET /apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers?"
            )) || r.starts_with(&format!(
                "GET /apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers?"
            ))
        });
        assert!(
            inside,
            "a request outside the watched namespaces: {r}\nall: {seen:#?}"
        );
    }
    for ns in ["team-a", "team-b"] {
        let path = format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers?");
        let of_ns: Vec<&String> = seen.iter().filter(|r| r.contains(&path)).collect();
        assert!(
            of_ns.iter().any(|r| !r.contains("watch=true")),
            "no list in {ns}: {seen:#?}"
        );
        assert!(
            of_ns.iter().any(|r| r.contains("watch=true")),
            "no watch in {ns}: {seen:#?}"
        );
    }
}

#[tokio::test]
async fn a_selector_is_on_every_list_and_watch_of_predictivescalers() {
    let seen = requests_of_a_controller_start_with(ControllerConfig {
        selector: Some("shard in (a,b),!canary".into()),
        ..Default::default()
    })
    .await;
    let scalers: Vec<&String> = seen
        .iter()
        .filter(|r| r.contains("/predictivescalers?"))
        .collect();
    assert!(
        scalers.iter().any(|r| r.contains("watch=true"))
            && scalers.iter().any(|r| !r.contains("watch=true")),
        "a list and a watch: {seen:#?}"
    );
    for r in scalers {
        assert!(
            r.contains("labelSelector=shard+in+%28a%2Cb%29%2C%21canary")
                || r.contains("labelSelector=shard%20in%20%28a%2Cb%29%2C%21canary"),
            "a read of PredictiveScalers without the selector: {r}"
        );
    }
}

#[tokio::test]
async fn by_default_the_operator_watches_all_namespaces() {
    let seen = requests_of_a_controller_start(&[]).await;
    assert!(
        seen.iter().all(
            |r| r.starts_with("GET /apis/prescale.dev/v1alpha1/predictivescalers?")
                || r.starts_with("GET /apis/autoscaling/v2/horizontalpodautoscalers?")
        ),
        "{seen:#?}"
    );
}

#[test]
fn start_up_retries_back_off_from_half_a_second_to_thirty() {
    let delays: Vec<u128> = (0..9)
        .map(|a| super::startup_retry_delay(a).as_millis())
        .collect();
    assert_eq!(
        delays,
        vec![500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
    );
    assert_eq!(
        super::startup_retry_delay(u32::MAX),
        Duration::from_secs(30)
    );
}

#[tokio::test]
async fn the_sweep_forgets_every_scaler_the_caches_no_longer_hold() {
    let (ctx, _handle, _) = context(Some(95.0));
    for key in ["ns/kept", "ns/gone"] {
        ctx.put_state(key.into(), Default::default());
        ctx.failures.lock().unwrap().insert(key.into(), 4);
        let (ns, name) = key.split_once('/').unwrap();
        ctx.metrics
            .set_scaler_metrics(ns, name, &["requests".into()]);
        ctx.metrics
            .set_conditions(ns, name, &[("Ready", "False", "InvalidSpec")]);
    }
    let existing: std::collections::HashSet<String> = ["ns/kept".to_string()].into();
    assert_eq!(ctx.forget_all_but(&existing), 1);
    assert_eq!(ctx.known_keys(), existing);
    let text = ctx.metrics.encode();
    assert!(!text.contains("name=\"gone\""), "{text}");
    assert!(text.contains("name=\"kept\""), "{text}");
    assert!(
        !ctx.failures.lock().unwrap().contains_key("ns/gone"),
        "its backoff too"
    );
}

#[tokio::test]
async fn a_new_target_does_not_inherit_the_old_ones_rate_budget() {
    // 5 replicas a minute at most: the first target spends the minute's budget going 2 -> 7;
    // retargeted at once, the new target (also at 2) may still get 5 more
    let (ctx, mut handle, _) = context(Some(95.0));
    let mut ps = scaler("Active", 2, 60);
    ps.spec.scale_up.max_replicas_per_minute = 5;
    let task = tokio::spawn(reconcile(Arc::new(ps.clone()), ctx.clone()));
    expect(&mut handle, Method::GET, SCALE, scale(2)).await;
    let patch = expect(&mut handle, Method::PATCH, SCALE, scale(7)).await;
    assert_eq!(patch, Some(json!({"spec": {"replicas": 7}})));
    expect(&mut handle, Method::POST, EVENTS, json!({})).await;
    expect(&mut handle, Method::PATCH, STATUS, stored()).await;
    task.await.unwrap().unwrap();
    ps.spec.scale_target_ref.name = "other".into();
    let task = tokio::spawn(reconcile(Arc::new(ps), ctx));
    let other = "/apis/apps/v1/namespaces/default/deployments/other/scale";
    expect(&mut handle, Method::GET, other, scale(2)).await;
    let patch = expect(&mut handle, Method::PATCH, other, scale(7)).await;
    assert_eq!(
        patch,
        Some(json!({"spec": {"replicas": 7}})),
        "a fresh budget for a new target"
    );
    expect(&mut handle, Method::POST, EVENTS, json!({})).await;
    expect(&mut handle, Method::PATCH, STATUS, stored()).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn leftovers_are_removed_after_the_apply() {
    // the stored status still has fields the applied one lacks (an earlier prescale wrote them
    // by merge patch, so its entry in managedFields keeps them): one merge patch removes them
    let (ctx, mut handle, _) = context(Some(95.0));
    let ps = Arc::new(scaler("Active", 2, 60));
    let task = tokio::spawn(reconcile(ps.clone(), ctx.clone()));
    expect(&mut handle, Method::GET, SCALE, scale(10)).await;
    let applied = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    assert!(applied.get("mergePatch").is_none(), "{applied}");
    assert_no_more_requests(&mut handle);
    // the API server answers the next apply with what it stored: the applied status and two
    // fields more
    let mut kept = stored();
    kept["status"] = applied["status"].clone();
    kept["status"]["concurrency"] = json!([{"metric": "requests", "replicas": 3}]);
    kept["status"]["forecast"]["series"] = json!(4);
    let task = tokio::spawn(reconcile(ps, ctx));
    expect(&mut handle, Method::GET, SCALE, scale(10)).await;
    expect(&mut handle, Method::PATCH, STATUS, kept).await;
    let merge = expect(&mut handle, Method::PATCH, STATUS, stored())
        .await
        .unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(
        merge,
        json!({"mergePatch": {"status": {"concurrency": null, "forecast": {"series": null}}}})
    );
    assert_no_more_requests(&mut handle);
}
