//! The load generator: replays a trace's requests/s against the gateway's pods, evenly spaced
//! within each wall-clock second, round-robin over the targets that are ready, with a bound on
//! the requests in flight. Prints one line per second and a summary. IO: HTTP requests, the
//! Kubernetes API (for `--endpoints`), and the `out` writer.

use std::{
    future::Future,
    io::Write,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, header::CONTENT_TYPE};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use tokio::sync::Semaphore;

use crate::{duration::format_offset, trace::Trace};

/// The request each call sends: a small chat completion request.
const REQUEST_BODY: &str =
    r#"{"model":"prescale-demo","messages":[{"role":"user","content":"Say ok."}]}"#;

/// How a trace is replayed.
#[derive(Clone, Debug)]
pub struct Options {
    pub trace: Trace,
    /// Trace seconds per wall-clock second (1 = real time, 60 = a trace minute per second).
    pub speed: f64,
    /// Where in the trace to begin.
    pub start: Duration,
    /// How much of the trace to play (trace time), at most to its end; `None` = to the end.
    pub duration: Option<Duration>,
    /// Multiplies the trace's rate.
    pub scale: f64,
    /// The most requests in flight; a request that would exceed it is skipped.
    pub max_in_flight: usize,
    /// The path requested on every target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// How long a request may take before it counts as unavailable.
    pub timeout: Duration,
}

impl Options {
    /// The trace span played: from `start` to `start + duration` or the trace's end.
    pub fn window(&self) -> Result<(Duration, Duration), String> {
        let span = self.trace.span();
        if self.start >= span {
            return Err(format!(
                "--start {} is past the trace's end ({} long)",
                format_offset(self.start, true),
                format_offset(span, true)
            ));
        }
        let end = match self.duration {
            Some(d) => (self.start + d).min(span),
            None => span,
        };
        Ok((self.start, end))
    }
}

/// The targets requests go to (base URLs such as `http://10.1.2.3:8080`), taken in turn.
#[derive(Debug, Default)]
pub struct Targets {
    urls: RwLock<Vec<String>>,
    next: AtomicUsize,
}

impl Targets {
    pub fn new(urls: Vec<String>) -> Arc<Self> {
        let t = Arc::new(Targets::default());
        t.set(urls);
        t
    }

    /// Replaces the targets (trailing slashes are dropped).
    pub fn set(&self, urls: Vec<String>) {
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        *self.urls.write().expect("targets lock") = urls;
    }

    pub fn len(&self) -> usize {
        self.urls.read().expect("targets lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next target, round-robin; `None` when there is none.
    pub fn pick(&self) -> Option<String> {
        let urls = self.urls.read().expect("targets lock");
        if urls.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % urls.len();
        Some(urls[i].clone())
    }
}

/// The ready endpoints of a Service, as `http://ADDRESS:port` (from its EndpointSlices, labelled
/// `kubernetes.io/service-name`). An endpoint is ready unless its `ready` condition is false (the
/// API reads a missing condition as ready).
pub async fn ready_endpoints(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    port: u16,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let slices = api.list(&params).await?;
    Ok(endpoint_urls(&slices.items, port))
}

/// The URLs of the slices' ready endpoints, sorted, each once.
pub fn endpoint_urls(slices: &[EndpointSlice], port: u16) -> Vec<String> {
    let mut urls: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .map(|a| {
            if a.contains(':') {
                format!("http://[{a}]:{port}")
            } else {
                format!("http://{a}:{port}")
            }
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// Lists the Service's ready endpoints every second into `targets`, for ever. A failed list
/// keeps the targets it had and says why (once until a list works again).
pub async fn watch_endpoints(
    client: kube::Client,
    namespace: String,
    service: String,
    port: u16,
    targets: Arc<Targets>,
) {
    let mut failing = false;
    loop {
        match ready_endpoints(&client, &namespace, &service, port).await {
            Ok(urls) => {
                if failing {
                    eprintln!("listing the endpoints of {namespace}/{service} works again");
                    failing = false;
                }
                targets.set(urls);
            }
            Err(e) => {
                if !failing {
                    eprintln!(
                        "cannot list the endpoints of {namespace}/{service} (keeping the {} targets \
                         known): {e}",
                        targets.len()
                    );
                    failing = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Requests counted by what became of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent, or counted as unavailable for want of a target.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 429 (the pod was over capacity).
    pub rejected: u64,
    /// No target was ready, the target answered 503, or it could not be reached in time.
    pub unavailable: u64,
    /// Answered another status.
    pub failed: u64,
    /// Not sent: the bound on requests in flight was reached.
    pub skipped: u64,
}

impl Counts {
    fn minus(self, o: Counts) -> Counts {
        Counts {
            sent: self.sent - o.sent,
            ok: self.ok - o.ok,
            rejected: self.rejected - o.rejected,
            unavailable: self.unavailable - o.unavailable,
            failed: self.failed - o.failed,
            skipped: self.skipped - o.skipped,
        }
    }

    /// The share of sent requests that were rejected or unavailable, 0 when none were sent.
    pub fn lost_fraction(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            (self.rejected + self.unavailable) as f64 / self.sent as f64
        }
    }
}

/// The counters the request tasks add to, and the last error seen.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Tally {
    fn snapshot(&self) -> Counts {
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            sent: g(&self.sent),
            ok: g(&self.ok),
            rejected: g(&self.rejected),
            unavailable: g(&self.unavailable),
            failed: g(&self.failed),
            skipped: g(&self.skipped),
        }
    }

    fn error(&self, e: String) {
        *self.last_error.lock().expect("tally lock") = Some(e);
    }
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub totals: Counts,
    /// The trace span played (offsets into the trace).
    pub from: Duration,
    pub to: Duration,
    /// How long it took.
    pub wall: Duration,
}

impl Summary {
    /// The summary as a few plain lines.
    pub fn describe(&self) -> String {
        let c = &self.totals;
        let mut s = format!(
            "played the trace from {} to {} in {:.0} s: sent {}, ok {}, rejected {}, unavailable {}",
            format_offset(self.from, true),
            format_offset(self.to, true),
            self.wall.as_secs_f64(),
            c.sent,
            c.ok,
            c.rejected,
            c.unavailable
        );
        if c.failed > 0 {
            s += &format!(", failed {}", c.failed);
        }
        if c.skipped > 0 {
            s += &format!(
                ", and {} not sent (more than --max-in-flight were in flight)",
                c.skipped
            );
        }
        s += &format!(
            "\nrejected+unavailable: {:.2}% of the requests sent",
            100.0 * c.lost_fraction()
        );
        s
    }
}

/// Replays `opts.trace` against `targets` until the window ends or `stop` completes, writing one
/// line per second to `out`; then waits for the requests in flight (up to the timeout) and
/// returns the totals. Errors only if the window is empty (e.g. `--start` past the end).
pub async fn run(
    opts: &Options,
    targets: Arc<Targets>,
    out: &mut (dyn Write + Send),
    stop: impl Future<Output = ()>,
) -> Result<Summary, String> {
    let (from, to) = opts.window()?;
    if !(opts.speed > 0.0 && opts.speed.is_finite()) {
        return Err(format!("--speed must be above 0, not {}", opts.speed));
    }
    if !(opts.scale >= 0.0 && opts.scale.is_finite()) {
        return Err(format!("--scale must be 0 or more, not {}", opts.scale));
    }
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let tally = Arc::new(Tally::default());
    let limit = opts.max_in_flight.max(1);
    let permits = Arc::new(Semaphore::new(limit));
    let wall_total = (to - from).as_secs_f64() / opts.speed;
    let show_seconds = opts.speed < 60.0;
    let t0 = tokio::time::Instant::now();
    let started = Instant::now();
    let mut carry = 0.0;
    let mut before = Counts::default();
    tokio::pin!(stop);
    let mut k: u64 = 0;
    'seconds: while (k as f64) < wall_total {
        let sec = k as f64;
        let window = (wall_total - sec).min(1.0);
        let offset = from + Duration::from_secs_f64(sec * opts.speed);
        let rate = opts.trace.rate_at(offset) * opts.scale;
        let exact = rate * window + carry;
        let n = exact.floor() as u64;
        carry = exact - n as f64;
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(sec + window * i as f64 / n as f64);
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = &mut stop => break 'seconds,
            }
            send(opts, &client, &targets, &tally, &permits);
        }
        tokio::select! {
            () = tokio::time::sleep_until(t0 + Duration::from_secs_f64(sec + window)) => {}
            () = &mut stop => break 'seconds,
        }
        let now = tally.snapshot();
        let c = now.minus(before);
        before = now;
        let mut line = format!(
            "t={} rate={}/s sent={} ok={} rejected={} unavailable={} targets={}",
            format_offset(offset, show_seconds),
            if rate >= 10.0 {
                format!("{rate:.0}")
            } else {
                format!("{rate:.1}")
            },
            c.sent,
            c.ok,
            c.rejected,
            c.unavailable,
            targets.len()
        );
        if c.failed > 0 {
            line += &format!(" failed={}", c.failed);
        }
        if c.skipped > 0 {
            line += &format!(" skipped={}", c.skipped);
        }
        if let Some(e) = tally.last_error.lock().expect("tally lock").take() {
            line += &format!(" (last error: {e})");
        }
        let _ = writeln!(out, "{line}");
        k += 1;
    }
    // wait for the requests in flight
    let _ = tokio::time::timeout(
        opts.timeout + Duration::from_secs(1),
        permits.acquire_many(limit as u32),
    )
    .await;
    let played = Duration::from_secs_f64(
        (started.elapsed().as_secs_f64() * opts.speed).min((to - from).as_secs_f64()),
    );
    Ok(Summary {
        totals: tally.snapshot(),
        from,
        to: from + played,
        wall: started.elapsed(),
    })
}

/// Sends one request to the next target (in a task), or counts why it cannot.
fn send(
    opts: &Options,
    client: &Client<HttpConnector, Full<Bytes>>,
    targets: &Targets,
    tally: &Arc<Tally>,
    permits: &Arc<Semaphore>,
) {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        tally.skipped.fetch_add(1, Ordering::SeqCst);
        return;
    };
    tally.sent.fetch_add(1, Ordering::SeqCst);
    let Some(target) = targets.pick() else {
        tally.unavailable.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let uri = format!("{target}{}", opts.path);
    let request = match Request::post(&uri)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(REQUEST_BODY.as_bytes())))
    {
        Ok(r) => r,
        Err(e) => {
            tally.failed.fetch_add(1, Ordering::SeqCst);
            tally.error(format!("{uri} is not a valid URL: {e}"));
            return;
        }
    };
    let (client, tally, timeout) = (client.clone(), tally.clone(), opts.timeout);
    tokio::spawn(async move {
        let answer = tokio::time::timeout(timeout, async {
            let resp = client.request(request).await?;
            let status = resp.status();
            // read the body, so the connection can be reused
            let _ = resp.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(status)
        })
        .await;
        let counter = match answer {
            Ok(Ok(s)) if s.is_success() => &tally.ok,
            Ok(Ok(StatusCode::TOO_MANY_REQUESTS)) => &tally.rejected,
            Ok(Ok(StatusCode::SERVICE_UNAVAILABLE)) => &tally.unavailable,
            Ok(Ok(s)) => {
                tally.error(format!("{uri} answered {s}"));
                &tally.failed
            }
            Ok(Err(e)) => {
                tally.error(format!("{uri}: {}", chain(&e)));
                &tally.unavailable
            }
            Err(_) => {
                tally.error(format!(
                    "{uri} did not answer within {} s",
                    timeout.as_secs_f64()
                ));
                &tally.unavailable
            }
        };
        counter.fetch_add(1, Ordering::SeqCst);
        drop(permit);
    });
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s += &format!(": {c}");
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    use super::*;

    fn endpoint(addr: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![addr.to_string()],
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_endpoints_are_targets() {
        let slices = vec![
            EndpointSlice {
                endpoints: vec![
                    endpoint("10.0.0.2", Some(true)),
                    endpoint("10.0.0.3", Some(false)),
                    endpoint("10.0.0.1", None),
                ],
                ..Default::default()
            },
            EndpointSlice {
                endpoints: vec![
                    endpoint("fd00::1", Some(true)),
                    endpoint("10.0.0.2", Some(true)),
                ],
                ..Default::default()
            },
        ];
        assert_eq!(
            endpoint_urls(&slices, 8080),
            vec![
                "http://10.0.0.1:8080",
                "http://10.0.0.2:8080",
                "http://[fd00::1]:8080"
            ]
        );
    }

    #[test]
    fn targets_are_taken_in_turn() {
        let t = Targets::new(vec!["http://a/".into(), "http://b".into()]);
        let picks: Vec<String> = (0..4).filter_map(|_| t.pick()).collect();
        assert_eq!(picks, ["http://a", "http://b", "http://a", "http://b"]);
        t.set(vec![]);
        assert_eq!(t.pick(), None);
    }
}
