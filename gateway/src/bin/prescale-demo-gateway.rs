//! `prescale-demo-gateway`: a stand-in for an LLM API proxy pod in prescale's end-to-end demo.
//! See docs/demo-gateway.md.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::Parser;
use prescale_demo_gateway::{
    duration::parse_duration,
    server::{self, Config, Gateway, rate},
};

/// A demo AI gateway pod: not ready for a warm-up, then serves up to CAPACITY requests/s (any
/// path but /healthz, /readyz and /metrics) and answers 429 above that.
#[derive(Debug, Parser)]
#[command(name = "prescale-demo-gateway", version)]
struct Args {
    /// The address to serve on.
    #[arg(long, env = "PRESCALE_GATEWAY_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Requests per second this pod serves (and its burst); above it, requests get 429.
    #[arg(long, env = "PRESCALE_GATEWAY_CAPACITY", default_value_t = 10.0, value_parser = positive)]
    capacity: f64,
    /// How long after start the pod is not ready (e.g. 60s, 2m, 0s).
    #[arg(long, env = "PRESCALE_GATEWAY_WARMUP", default_value = "60s", value_parser = parse_duration)]
    warmup: Duration,
    /// The simulated work per served request (e.g. 50ms).
    #[arg(long, env = "PRESCALE_GATEWAY_LATENCY", default_value = "50ms", value_parser = parse_duration)]
    latency: Duration,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "{s:?} is not a rate: give a number of requests/s above 0"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    tracing::info!(
        "listening on {addr}: ready after a warm-up of {} s, then serves {} requests/s taking {} ms each",
        args.warmup.as_secs_f64(),
        rate(args.capacity),
        args.latency.as_millis()
    );
    let gateway = Gateway::new(Config {
        capacity: args.capacity,
        warmup: args.warmup,
        latency: args.latency,
    });
    match server::serve(listener, gateway, terminated()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: serving on {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM ({e}); only Ctrl-C stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
    }
}
