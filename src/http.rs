//! A small HTTP endpoint for probes: `/healthz` (the process runs), `/readyz` (the controller
//! has listed its PredictiveScalers) and `/metrics`.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{debug, info};

use crate::metrics::Metrics;

/// Serves the probe endpoints on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    info!(addr = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    loop {
        let (mut stream, _) = listener.accept().await?;
        let ready = ready.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/healthz" => (200, "ok\n".to_string()),
                "/readyz" if ready.load(Ordering::SeqCst) => (200, "ok\n".to_string()),
                "/readyz" => (503, "not ready\n".to_string()),
                "/metrics" => (200, metrics.encode()),
                _ => (404, "not found\n".to_string()),
            };
            let status = match code {
                200 => "200 OK",
                503 => "503 Service Unavailable",
                _ => "404 Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "probe response");
            }
        });
    }
}
