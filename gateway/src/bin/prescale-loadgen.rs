//! `prescale-loadgen`: replays a recorded trace's requests/s against the demo gateway's pods.
//! See docs/demo-gateway.md.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{ArgGroup, Parser};
use prescale_demo_gateway::{
    duration::parse_duration,
    loadgen::{self, Options, Targets},
    trace::read_trace,
};

/// Replays a trace (CSV: timestamp, requests/s) against gateway pods, one line per second.
#[derive(Debug, Parser)]
#[command(name = "prescale-loadgen", version)]
#[command(group(ArgGroup::new("to").required(true).args(["targets", "endpoints"])))]
struct Args {
    /// The trace: CSV with a header, first column `timestamp` (unix seconds or RFC 3339), a
    /// requests/s column (the second, or --column).
    #[arg(long, env = "PRESCALE_LOADGEN_TRACE")]
    trace: PathBuf,
    /// The trace's value column (default: the second).
    #[arg(long, env = "PRESCALE_LOADGEN_COLUMN")]
    column: Option<String>,
    /// Trace seconds per wall-clock second: 1 = real time, 60 = one trace minute per second.
    #[arg(long, env = "PRESCALE_LOADGEN_SPEED", default_value_t = 1.0)]
    speed: f64,
    /// Where in the trace to begin (e.g. 6h).
    #[arg(long, env = "PRESCALE_LOADGEN_START", default_value = "0s", value_parser = parse_duration)]
    start: Duration,
    /// How much of the trace to play, in trace time (e.g. 2h); default: to its end.
    #[arg(long, env = "PRESCALE_LOADGEN_DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Multiplies the trace's rate.
    #[arg(long, env = "PRESCALE_LOADGEN_SCALE", default_value_t = 1.0)]
    scale: f64,
    /// A target base URL, e.g. http://127.0.0.1:8080 (repeatable).
    #[arg(long = "target", value_name = "URL")]
    targets: Vec<String>,
    /// Send to the ready endpoints of this Service (NAMESPACE/SERVICE), listed every second.
    #[arg(
        long,
        value_name = "NAMESPACE/SERVICE",
        env = "PRESCALE_LOADGEN_ENDPOINTS"
    )]
    endpoints: Option<String>,
    /// The endpoints' port (with --endpoints).
    #[arg(long, env = "PRESCALE_LOADGEN_PORT", default_value_t = 8080)]
    port: u16,
    /// The path requested.
    #[arg(
        long,
        env = "PRESCALE_LOADGEN_PATH",
        default_value = "/v1/chat/completions"
    )]
    path: String,
    /// The most requests in flight; beyond it requests are skipped (and counted).
    #[arg(long, env = "PRESCALE_LOADGEN_MAX_IN_FLIGHT", default_value_t = 1000)]
    max_in_flight: usize,
    /// How long a request may take before it counts as unavailable.
    #[arg(long, env = "PRESCALE_LOADGEN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let trace = read_trace(&args.trace, args.column.as_deref())
        .map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let targets = match &args.endpoints {
        Some(spec) => {
            let (namespace, service) = spec
                .split_once('/')
                .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains('/'))
                .ok_or_else(|| format!("--endpoints {spec:?}: write NAMESPACE/SERVICE"))?;
            // kube uses rustls; install its crypto provider before the first connection
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let client = kube::Client::try_default()
                .await
                .map_err(|e| format!("connecting to Kubernetes (kubeconfig or in-cluster): {e}"))?;
            let urls = loadgen::ready_endpoints(&client, namespace, service, args.port)
                .await
                .map_err(|e| format!("listing the endpoints of {spec}: {e}"))?;
            eprintln!(
                "{spec}: {} ready endpoints now; listing them every second",
                urls.len()
            );
            let targets = Targets::new(urls);
            tokio::spawn(loadgen::watch_endpoints(
                client,
                namespace.to_string(),
                service.to_string(),
                args.port,
                targets.clone(),
            ));
            targets
        }
        None => Targets::new(
            args.targets
                .iter()
                .map(|t| base_url(t))
                .collect::<Result<_, _>>()?,
        ),
    };
    let opts = Options {
        trace,
        speed: args.speed,
        start: args.start,
        duration: args.duration,
        scale: args.scale,
        max_in_flight: args.max_in_flight,
        path: args.path,
        timeout: args.timeout,
    };
    let mut out = std::io::stdout();
    let summary = loadgen::run(&opts, targets, &mut out, async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("Ctrl-C received: stopping");
    })
    .await?;
    println!("{}", summary.describe());
    Ok(())
}

/// `http://host:port`, from that or from `host:port`; https is not supported.
fn base_url(t: &str) -> Result<String, String> {
    if t.starts_with("https://") {
        return Err(format!(
            "--target {t}: https is not supported (the demo gateway serves plain http)"
        ));
    }
    let url = if t.starts_with("http://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    url.parse::<hyper::Uri>()
        .map_err(|e| format!("--target {t}: not a URL: {e}"))?;
    Ok(url)
}
