//! The `prescale` binary: `run` (the controller), `forecast` (one forecast, printed), `crd`
//! (print the CRD), `simulate` and `bench`. This file parses the flags, sets up logging and
//! wires `run` (sources, controller, HTTP endpoint); the other subcommands live in
//! `prescale::cli`.

use std::{io::IsTerminal, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;
use prescale::{
    api::{PredictiveScaler, duration::parse_duration},
    cli::source_flags::SourceFlags,
    controller::{self, ControllerConfig},
    sources::config::DEFAULT_SOURCE,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// jemalloc, with its background threads purging freed pages after its decay time (10 s):
/// the memory of a spike (a refit of many series) goes back to the OS, where glibc's malloc
/// kept it in its per-thread arenas for the life of the process.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "prescale",
    version,
    about = "Scale AI/LLM API proxies before their traffic arrives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kubeconfig or in-cluster config, as kubectl finds it).
    Run(Box<RunArgs>),
    /// Forecast one query (or a PredictiveScaler's metrics) now and print the forecast and the
    /// replicas it implies.
    Forecast(Box<prescale::cli::forecast::ForecastArgs>),
    /// Print the PredictiveScaler CustomResourceDefinition as YAML.
    Crd,
    /// Replay a recorded load trace through the forecaster and planner, against a reactive
    /// baseline and an oracle. With no arguments: the bundled example trace.
    Simulate(Box<prescale::cli::simulate::SimulateArgs>),
    /// Time model fits and a 14-day simulation, and print peak memory.
    Bench(prescale::cli::bench::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    sources: SourceFlags,
    /// The most history points kept in memory, all series together (about 2 bytes each, and
    /// ~1 KB a series); past it the least recently used series are dropped and fetched again
    /// when needed. 14 days at 1 minute is 20,161 points a metric.
    #[arg(long, default_value_t = prescale::sources::DEFAULT_MAX_POINTS)]
    history_cache_points: usize,
    /// How often each PredictiveScaler is evaluated.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    sync_interval: Duration,
    /// Reconciles running at once (per watched namespace with --namespaces); the others queue.
    /// Bounds the fetches and fits at a start or a failover.
    #[arg(long, env = "PRESCALE_MAX_CONCURRENT_RECONCILES", default_value_t = controller::DEFAULT_MAX_CONCURRENT_RECONCILES)]
    max_concurrent_reconciles: u16,
    /// Model fits running at once (CPU-bound, on blocking threads). Default: the cores available.
    #[arg(long, env = "PRESCALE_MAX_CONCURRENT_FITS")]
    max_concurrent_fits: Option<usize>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value = "plain")]
    log_format: LogFormat,
    /// Run several replicas: only the holder of a Lease reconciles and writes; the others
    /// wait and take over within the lease duration when it stops renewing.
    #[arg(long, env = "PRESCALE_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "prescale-leader")]
    leader_elect_lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_elect_namespace: Option<String>,
    /// How long the Lease is valid without renewal: the longest failover.
    #[arg(long, default_value = "15s", value_parser = parse_duration_arg)]
    leader_elect_lease_duration: Duration,
    /// Watch PredictiveScalers only in these namespaces (comma-separated). Default: all
    /// namespaces. With a list the operator needs only namespaced Roles.
    #[arg(
        long,
        env = "PRESCALE_NAMESPACES",
        value_delimiter = ',',
        value_parser = parse_namespace
    )]
    namespaces: Vec<String>,
    /// Reconcile only the PredictiveScalers whose labels match this selector, written as
    /// kubectl's -l takes it (`shard=a`, `shard in (a,b)`, `!canary`): one shard of a fleet, so
    /// that several operator releases (each with its own Lease) share it. Default: all.
    #[arg(long, env = "PRESCALE_SELECTOR", value_parser = parse_selector)]
    selector: Option<String>,
}

/// A label selector as given; the API server parses it (the first list refuses a bad one).
fn parse_selector(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains(['\n', '\r']) {
        return Err("a label selector is one line, e.g. shard=a".into());
    }
    Ok(s.to_string())
}

fn parse_namespace(s: &str) -> Result<String, String> {
    let s = s.trim();
    // an empty entry (say PRESCALE_NAMESPACES="") adds nothing
    if s.is_empty() || prescale::names::is_dns_label(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (lower case letters, digits and '-', at most 63)"
        ))
    }
}

/// The list without empty entries and repeats, in its order.
fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| !s.is_empty() && seen.insert(s.clone()));
    v
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // one line: the error and its causes
            eprintln!("error: {}", prescale::error::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            print!("{}", serde_yaml::to_string(&PredictiveScaler::crd())?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        Command::Forecast(args) => {
            // kube and reqwest share one rustls provider (aws-lc-rs)
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            prescale::cli::forecast::run(&args).await
        }
        Command::Simulate(args) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            prescale::cli::simulate::run(&args).await
        }
        Command::Bench(args) => {
            let table = match args.scalers {
                Some(n) => prescale::cli::fleet::run(n.max(1), args.rounds.max(1)).await?,
                None => prescale::cli::bench::run(&args)?,
            };
            print!("{table}");
            Ok(())
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    // kube and reqwest share one rustls provider (aws-lc-rs); install it before either runs
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let sources = args
        .sources
        .build()
        .context("configuring the metric sources")?;
    if sources.get(DEFAULT_SOURCE).is_err() {
        tracing::warn!(
            "no source named \"default\" (--prometheus-url or the sources file): PredictiveScalers that name no \
             source will report UnknownSource"
        );
    }
    tracing::info!(sources = ?sources.names(), "metric sources configured");

    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (kubeconfig or in-cluster)")?;
    let health = Arc::new(prescale::http::Health::default());
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "http listening");
    let metrics = Arc::new(prescale::metrics::Metrics::new());
    let http = tokio::spawn(prescale::http::serve(
        listener,
        health.clone(),
        metrics.clone(),
    ));
    let config = ControllerConfig {
        sync_interval: args.sync_interval,
        history_max_points: args.history_cache_points,
        namespaces: dedup(args.namespaces),
        max_concurrent_reconciles: args.max_concurrent_reconciles.max(1),
        max_concurrent_fits: args
            .max_concurrent_fits
            .unwrap_or_else(controller::default_max_concurrent_fits)
            .max(1),
        // an empty selector (say PRESCALE_SELECTOR="") selects every scaler
        selector: args.selector.filter(|s| !s.is_empty()),
    };
    let leader = args.leader_elect.then(|| controller::LeaderConfig {
        lease_name: args.leader_elect_lease_name.clone(),
        namespace: args
            .leader_elect_namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "prescale".into()),
                std::process::id()
            )
        }),
        lease_duration: args.leader_elect_lease_duration,
    });
    let result = controller::run(client, sources, config, health, metrics, leader).await;
    http.abort();
    result
}
