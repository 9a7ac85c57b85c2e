//! The demo gateway: an HTTP server that stands in for an LLM API proxy pod. It is not ready
//! for a warm-up period, then serves up to `capacity` requests/s (a token bucket, burst =
//! capacity) with a fixed latency each and answers 429 above that. IO: a TCP listener.

use std::{
    convert::Infallible,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::Body,
    header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{rt::TokioIo, server::graceful::GracefulShutdown};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::metrics::{Metrics, Outcome};

/// How long a shutdown waits for in-flight requests before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The largest request body read (a chat completion request is a few kB).
const MAX_BODY: usize = 1 << 20;

/// How a pod behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Requests per second one pod serves (also the burst).
    pub capacity: f64,
    /// How long after start the pod is not ready.
    pub warmup: Duration,
    /// The simulated work per served request.
    pub latency: Duration,
}

/// A pod's state: its clock, its token bucket and its metrics.
pub struct Gateway {
    config: Config,
    started: Instant,
    bucket: Mutex<Bucket>,
    pub metrics: Metrics,
}

/// A token bucket: `tokens` left at `last`, refilled at the capacity per second up to the burst.
struct Bucket {
    tokens: f64,
    last: Instant,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response with a small body.
pub type Resp = Response<Full<Bytes>>;

impl Gateway {
    /// A pod whose warm-up starts now.
    pub fn new(config: Config) -> Arc<Self> {
        let now = Instant::now();
        let metrics = Metrics::new(config.capacity);
        let gateway = Gateway {
            bucket: Mutex::new(Bucket {
                tokens: burst(config.capacity),
                last: now,
            }),
            config,
            started: now,
            metrics,
        };
        gateway.update_ready();
        Arc::new(gateway)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How long the warm-up still lasts, or `None` once the pod is ready.
    pub fn warmup_left(&self) -> Option<Duration> {
        self.config
            .warmup
            .checked_sub(self.started.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Sets the `gateway_ready` gauge from the clock.
    fn update_ready(&self) {
        self.metrics
            .ready
            .set(i64::from(self.warmup_left().is_none()));
    }

    /// Takes a token if one is left (refilling the bucket first).
    fn admit(&self) -> bool {
        let mut b = self.bucket.lock().expect("bucket lock");
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * self.config.capacity;
        b.tokens = (b.tokens + refill).min(burst(self.config.capacity));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Answers one request.
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Result<Resp, Infallible>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let resp = match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok".into()),
            "/readyz" => match self.warmup_left() {
                Some(left) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("warming up: ready in {} s", ceil_secs(left)),
                ),
                None => text(
                    StatusCode::OK,
                    format!(
                        "ready: this pod serves {} requests/s",
                        rate(self.config.capacity)
                    ),
                ),
            },
            "/metrics" => {
                self.update_ready();
                let mut resp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            _ => self.api(req).await,
        };
        Ok(resp)
    }

    /// An API request (any path but the probes and `/metrics`).
    async fn api<B>(&self, req: Request<B>) -> Resp
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        self.metrics.in_flight.inc();
        let start = Instant::now();
        // read the body, so the connection can be reused
        let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
        let resp = if let Some(left) = self.warmup_left() {
            self.metrics.count(Outcome::Warming);
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "warming up: this pod serves no requests yet (ready in {} s)",
                    ceil_secs(left)
                ),
            )
        } else if self.admit() {
            tokio::time::sleep(self.config.latency).await;
            self.metrics.count(Outcome::Served);
            self.metrics.duration.observe(start.elapsed().as_secs_f64());
            completion()
        } else {
            self.metrics.count(Outcome::Rejected);
            let mut resp = text(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "over capacity: this pod serves {} requests/s",
                    rate(self.config.capacity)
                ),
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        };
        self.metrics.in_flight.dec();
        resp
    }
}

/// The bucket's size: the capacity, at least one request.
fn burst(capacity: f64) -> f64 {
    capacity.max(1.0)
}

/// Whole seconds, rounded up (`ready in 1 s` until the very end).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil() as u64
}

/// A rate as people write it: `10`, `2.5`.
pub fn rate(r: f64) -> String {
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

/// A plain-text response: one sentence and a newline.
fn text(status: StatusCode, sentence: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(sentence + "\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A small chat completion, as an OpenAI-compatible API answers.
fn completion() -> Resp {
    let body = serde_json::json!({
        "object": "chat.completion",
        "model": "prescale-demo",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Serves `gateway` on `listener` until `shutdown` completes; then stops accepting and waits
/// (up to [`SHUTDOWN_GRACE`]) for the requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    // say when the pod becomes ready
    let ready_task = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            if let Some(left) = gateway.warmup_left() {
                tokio::time::sleep(left).await;
            }
            gateway.update_ready();
            info!(
                "warm-up done: the pod on {addr} is ready and serves {} requests/s",
                rate(gateway.config.capacity)
            );
        })
    };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // e.g. too many open files: wait for some to close
                        warn!("cannot accept a connection on {addr}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let gateway = gateway.clone();
                let conn = http1::Builder::new().serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| gateway.clone().handle(req)),
                );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!("the connection from {peer} ended with an error: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    ready_task.abort();
    drop(listener);
    info!(
        "shutting down: accepting no more connections, finishing {} requests in flight",
        gateway.metrics.in_flight.get()
    );
    tokio::select! {
        () = graceful.shutdown() => info!("every connection is closed; exiting"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => warn!(
            "{} requests still in flight after {} s; exiting anyway",
            gateway.metrics.in_flight.get(),
            SHUTDOWN_GRACE.as_secs()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_print_as_people_write_them() {
        assert_eq!(rate(10.0), "10");
        assert_eq!(rate(2.5), "2.5");
    }

    #[test]
    fn the_bucket_admits_the_burst_then_refuses() {
        let gw = Gateway::new(Config {
            capacity: 3.0,
            warmup: Duration::ZERO,
            latency: Duration::ZERO,
        });
        let admitted = (0..10).filter(|_| gw.admit()).count();
        // 3 at once, plus at most a fraction refilled while the loop ran
        assert_eq!(admitted, 3);
    }
}
