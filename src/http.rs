//! A small HTTP endpoint for probes and metrics: `/healthz` (the process answers),
//! `/readyz` (the controller has listed its PredictiveScalers and its watch is not failing) and
//! `/metrics`. IO: a TCP listener.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::{debug, info};

use crate::metrics::Metrics;

/// What the probes answer from, shared by the controller and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// The PredictiveScalers were listed (or this is a standby, ready to take over).
    started: AtomicBool,
    /// `None` while the watch works.
    watch_failing: Mutex<Option<WatchFailure>>,
}

/// Since when the watch fails, and its last error.
#[derive(Debug)]
struct WatchFailure {
    since: Instant,
    last_error: String,
}

impl Health {
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// The watch delivered an event (or relisted): it works.
    pub fn watch_ok(&self) {
        let mut f = self.watch_failing.lock().expect("health lock");
        if f.take().is_some() {
            tracing::info!("the PredictiveScaler watch works again");
        }
    }

    /// The watch failed (it retries with backoff).
    pub fn watch_failed(&self, error: &str) {
        let mut f = self.watch_failing.lock().expect("health lock");
        match f.as_mut() {
            Some(failure) => failure.last_error = error.to_string(),
            None => {
                *f = Some(WatchFailure {
                    since: Instant::now(),
                    last_error: error.to_string(),
                })
            }
        }
    }

    /// `Ok`, or why this replica should get no traffic (and, as a leader, is not doing its job).
    pub fn ready(&self) -> Result<(), String> {
        if !self.started.load(Ordering::SeqCst) {
            return Err(
                "not started: waiting for the API server (PredictiveScalers not listed yet)".into(),
            );
        }
        match &*self.watch_failing.lock().expect("health lock") {
            Some(WatchFailure { since, last_error }) => Err(format!(
                "the PredictiveScaler watch has been failing for {}s: {last_error}",
                since.elapsed().as_secs()
            )),
            None => Ok(()),
        }
    }
}

/// Serves the probe endpoints on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    info!(addr = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(answer(stream, health.clone(), metrics.clone()));
    }
}

/// Reads one request from `stream` (waiting at most 5 seconds) and writes its answer.
async fn answer(mut stream: TcpStream, health: Arc<Health>, metrics: Arc<Metrics>) {
    let mut buf = [0u8; 2048];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
    {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = route(path, &health, &metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(response.as_bytes()).await {
        debug!(error = %e, "probe response");
    }
}

/// The status line and body of the answer to `path`.
fn route(path: &str, health: &Health, metrics: &Metrics) -> (&'static str, String) {
    const OK: &str = "200 OK";
    let probe = |r: Result<(), String>| match r {
        Ok(()) => (OK, "ok\n".to_string()),
        Err(why) => ("503 Service Unavailable", format!("{why}\n")),
    };
    match path {
        // the process answers: the controller loop ends the process when it stops
        "/healthz" => probe(Ok(())),
        "/readyz" => probe(health.ready()),
        "/metrics" => (OK, metrics.encode()),
        _ => ("404 Not Found", "not found\n".to_string()),
    }
}
