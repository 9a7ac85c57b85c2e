//! The gateway served in-process on 127.0.0.1: probes, warm-up, capacity, metrics, shutdown.

mod support;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use support::{call, client, get, metric, post, start};

#[tokio::test]
async fn readyz_is_503_while_warming_up_then_200() {
    let gw = start(5.0, Duration::from_secs(1), Duration::ZERO).await;
    let (status, body) = get(&gw.url("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "warming up: ready in 1 s\n");
    // liveness does not wait for the warm-up
    assert_eq!(get(&gw.url("/healthz")).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get(&gw.url("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "ready: this pod serves 5 requests/s\n");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_during_the_warm_up_get_503_then_200() {
    let gw = start(5.0, Duration::from_secs(1), Duration::from_millis(20)).await;
    let (status, body) = post(&gw.url("/v1/chat/completions")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.starts_with("warming up:"), "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = post(&gw.url("/v1/chat/completions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["choices"][0]["message"]["content"], "ok");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn above_capacity_some_get_429_and_served_stays_within_the_bucket() {
    let capacity = 5.0;
    let gw = start(capacity, Duration::ZERO, Duration::ZERO).await;
    let client = client();
    let started = Instant::now();
    // 20 requests/s for 2 s, 4x the capacity, evenly spaced
    let mut tasks = Vec::new();
    for i in 0..40u64 {
        tokio::time::sleep_until((started + Duration::from_millis(50 * i)).into()).await;
        let (client, url) = (client.clone(), gw.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            call(&client, Method::POST, &url).await
        }));
    }
    let mut served = 0;
    let mut rejected = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body, "over capacity: this pod serves 5 requests/s\n");
                rejected += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(rejected > 0, "served {served}, none rejected");
    let bound = capacity * elapsed + capacity;
    assert!(
        served as f64 <= bound,
        "served {served} in {elapsed:.2} s, more than capacity*elapsed+burst = {bound:.1}"
    );
    // the bucket is full at start: the burst at least is served
    assert!(served >= 5, "served only {served}");
    assert_eq!(
        gw.gateway
            .metrics
            .requests(prescale_demo_gateway::metrics::Outcome::Rejected),
        rejected
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_show_the_counters_with_their_values() {
    let gw = start(5.0, Duration::from_millis(500), Duration::from_millis(10)).await;
    let text = get(&gw.url("/metrics")).await.1;
    assert_eq!(metric(&text, "gateway_ready"), 0.0);
    for _ in 0..2 {
        assert_eq!(
            post(&gw.url("/v1/chat/completions")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 8 at once: the burst (5) is served, the rest rejected (a refill of a few ms adds none)
    let client = client();
    let answers = futures_join(
        (0..8)
            .map(|_| {
                let (client, url) = (client.clone(), gw.url("/v1/chat/completions"));
                tokio::spawn(async move { call(&client, Method::POST, &url).await.0 })
            })
            .collect(),
    )
    .await;
    let served = answers.iter().filter(|s| **s == StatusCode::OK).count();
    let rejected = answers
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(served + rejected, 8, "{answers:?}");
    assert!((5..=6).contains(&served), "served {served}");

    let (status, text) = get(&gw.url("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("# TYPE gateway_requests_total counter"),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"gateway_requests_total{outcome="served"}"#),
        served as f64
    );
    assert_eq!(
        metric(&text, r#"gateway_requests_total{outcome="rejected"}"#),
        rejected as f64
    );
    assert_eq!(
        metric(&text, r#"gateway_requests_total{outcome="warming"}"#),
        2.0
    );
    assert_eq!(metric(&text, "gateway_in_flight_requests"), 0.0);
    assert_eq!(metric(&text, "gateway_capacity_requests_per_second"), 5.0);
    assert_eq!(metric(&text, "gateway_ready"), 1.0);
    assert_eq!(
        metric(&text, "gateway_request_duration_seconds_count"),
        served as f64
    );
    // each served request slept 10 ms
    assert!(metric(&text, "gateway_request_duration_seconds_sum") >= 0.01 * served as f64);
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_requests_in_flight_and_stops_accepting() {
    let gw = start(5.0, Duration::ZERO, Duration::from_millis(500)).await;
    let url = gw.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move { post(&url).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(gw.gateway.metrics.in_flight.get(), 1);
    let addr = gw.addr;
    let started = Instant::now();
    gw.shutdown().await.unwrap();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // it waited for the request, not for the grace period
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting connections after shutdown"
    );
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
