//! `prescale forecast`: fetch one query's history (or a PredictiveScaler's metrics) from a
//! source, fit the controller's forecaster on it, and print the forecast with the replicas it
//! implies, as a table and optionally a plot. The same fetch (chunked) and fit as `run`.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use kube::Api;
use plotters::prelude::*;

use crate::{
    api::{
        ForecastStatus, GroupConfig, PredictiveScaler, ScalerConfig, duration::format_duration,
        quantity::parse_quantity, validate,
    },
    planner::{
        DEFAULT_BAND_QUANTILE, FittedModel, Forecast, ForecastSettings, Series, choice,
        concurrency, group,
    },
    sim::plot::{
        PlotError,
        canvas::{self, BAND, FORECAST, Format, LOAD, PRESCALE, USE_SVG_OR_PNG, number},
    },
    sources::{HistoryKey, HistoryStore, Resolved, SourceError},
};

/// Flags of `prescale forecast`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["query", "scaler"]))]
pub struct ForecastArgs {
    #[command(flatten)]
    pub sources: super::source_flags::SourceFlags,
    /// A PredictiveScaler as NAMESPACE/NAME: forecast each of its metrics with its settings
    /// (read from the cluster, kubeconfig as kubectl finds it).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub scaler: Option<String>,
    /// A PromQL query returning one series, e.g. `sum(rate(requests_total[2m]))`.
    #[arg(long)]
    pub query: Option<String>,
    /// The source of --query, by name (the one --source-url defines is `default`).
    #[arg(long, default_value = "default")]
    pub source: String,
    /// History to fit on [default: 14d, or the scaler's].
    #[arg(long)]
    pub lookback: Option<String>,
    /// Resolution [default: 1m, or the scaler's].
    #[arg(long)]
    pub step: Option<String>,
    /// How far ahead [default: 2h, or the scaler's].
    #[arg(long)]
    pub horizon: Option<String>,
    /// Load one replica carries (a quantity); adds the replicas column to --query.
    #[arg(long)]
    pub target_per_replica: Option<String>,
    /// Concurrency sizing of --query (Little's law, as `concurrency.durationQuery`): a query of
    /// the request duration in seconds; --query is then the arrival rate per second and
    /// --target-per-replica is in concurrent requests.
    #[arg(long, requires = "query")]
    pub duration_query: Option<String>,
    /// Upper quantile of the band [default: 0.9, or the scaler's].
    #[arg(long)]
    pub quantile: Option<f64>,
    /// auto | mstl | ets | seasonal-naive [default: auto, or the scaler's].
    #[arg(long)]
    pub model: Option<String>,
    /// At most this many table rows; longer forecasts show the maximum of each block of steps.
    #[arg(long, default_value_t = 48)]
    pub rows: usize,
    /// Also draw the recent history, the forecast band and the replicas (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Forecast --query bottom-up, as a metric with `groupBy`: label names (comma-separated,
    /// e.g. `model`); prints the largest contributors to the peak.
    #[arg(long, value_delimiter = ',', value_name = "LABELS", requires = "query")]
    pub group_by: Option<Vec<String>>,
    /// With --group-by: the most series [default: 20].
    #[arg(long, requires = "group_by")]
    pub max_series: Option<usize>,
}

/// One metric to forecast.
struct Job {
    name: String,
    source: String,
    query: String,
    target: Option<f64>,
    /// Concurrency sizing: the query of the request duration.
    duration_query: Option<String>,
    /// With `--scaler`: its namespace, so the query goes out as the operator would send it
    /// (the source's allowed namespaces and namespace isolation).
    scope: Option<super::Scope>,
    /// The scaler's `namespace/name` ([`choice::UNNAMED_SCALER`] with `--query`): where `Auto`'s
    /// selection epochs start.
    scaler: String,
    /// The forecast the scaler's status reports for this metric: its model is `Auto`'s choice
    /// for the epoch, reused as the operator reuses it.
    remembered: Option<ForecastStatus>,
    /// `groupBy`: forecast bottom-up.
    group: Option<GroupConfig>,
}

/// What a metric gave.
struct Done {
    job: Job,
    history: Arc<Series>,
    forecast: Forecast,
    /// Concurrency sizing: the request duration (seconds) the replicas are sized with.
    duration: Option<f64>,
}

impl Done {
    /// The replicas `upper` of this metric needs (in concurrent requests with a duration).
    fn replicas(&self, upper: f64) -> Option<u32> {
        Some(replicas(
            concurrency::load(upper, self.duration),
            self.job.target?,
        ))
    }
}

/// Runs the subcommand: each metric fetched and fitted in turn (a failing one does not stop
/// the others), then the table and the plot of those that gave a forecast.
pub async fn run(args: &ForecastArgs) -> anyhow::Result<()> {
    let plan = match &args.scaler {
        Some(s) => from_scaler(args, s).await?,
        None => from_flags(args)?,
    };
    let sources = args.sources.build()?;
    let store = HistoryStore::new(usize::MAX);
    let now = jiff::Timestamp::now().as_second();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    println!("{}", plan.label);
    for job in plan.jobs {
        match forecast_one(job, &sources, &store, &plan.settings, now).await {
            Ok(d) => done.push(d),
            Err(message) => failed.push(message),
        }
    }
    if !done.is_empty() {
        print!("{}", table(&done, &plan.settings, plan.limits, args.rows));
        if let Some(path) = &args.plot {
            write_plot(path, &done, &plan.settings, plan.limits)
                .with_context(|| format!("writing the plot {}", path.display()))?;
            println!("plot written to {}", path.display());
        }
    }
    fail_with(failed)
}

/// One metric: its history fetched, the forecast fitted, both described on stdout. The error
/// is one line naming the metric.
async fn forecast_one(
    job: Job,
    sources: &crate::sources::Sources,
    store: &HistoryStore,
    settings: &Settings,
    now: i64,
) -> Result<Done, String> {
    let (history, fetched) = fetch_history(&job, sources, store, settings, now).await?;
    let t = Instant::now();
    let mut forecast = fit(&job, &history, settings, now)?;
    let group = match &job.group {
        Some(g) => {
            let read = read_group(&job, g, sources, &history, settings, now).await?;
            forecast = group::combine(&forecast, &read, group::Combine::default());
            Some(read)
        }
        None => None,
    };
    println!(
        "{}",
        describe(&job, &history, &forecast, settings, fetched, t.elapsed())
    );
    let duration = match &job.duration_query {
        Some(q) => {
            let d = read_duration(&job, q, sources, now).await?;
            let peak = forecast.upper.iter().copied().fold(f64::NAN, f64::max);
            println!(
                "  concurrency: request duration {} (newest value of the last hour of {q}); \
                 forecast peak {} concurrent requests",
                number(d) + "s",
                number(concurrency::streams(peak, d))
            );
            Some(d)
        }
        None => None,
    };
    if let Some(g) = &group {
        println!("{}", contributors_lines(g, &forecast));
    }
    Ok(Done {
        job,
        history,
        forecast,
        duration,
    })
}

/// The metric's history from its source (the total's, for a `groupBy` metric) through the
/// history store, and what reading it took.
async fn fetch_history(
    job: &Job,
    sources: &crate::sources::Sources,
    store: &HistoryStore,
    settings: &Settings,
    now: i64,
) -> Result<(Arc<Series>, Fetch), String> {
    let wanted = match &job.group {
        Some(_) => GroupConfig::total_query(&job.query),
        None => job.query.clone(),
    };
    let Resolved { source, query } = super::resolve_query(
        sources,
        &job.source,
        &wanted,
        job.scope.as_ref(),
    )
    .map_err(|e| match e {
        SourceError::UnknownSource { .. } => format!(
            "metric {}: the source {:?} is not configured (give --source-url, or --sources-file \
                     with a source of that name)",
            job.name, job.source
        ),
        e => format!("metric {}: {} ({})", job.name, e, e.reason()),
    })?;
    let key = HistoryKey {
        source: job.source.clone(),
        query,
        step: settings.step,
    };
    let before = source.requests().unwrap_or(0);
    let t = Instant::now();
    let history = store
        .update("forecast", source.as_ref(), &key, settings.lookback, now)
        .await
        .map_err(|e| format!("metric {}: {} ({})", job.name, e, e.reason()))?;
    let history = Arc::new(history.series());
    let fetched = Fetch {
        requests: source.requests().unwrap_or(0) - before,
        took: t.elapsed(),
    };
    Ok((history, fetched))
}

/// The request duration of a concurrency metric, read as the operator reads it: the newest
/// finite value of the last hour ([`concurrency::read_duration`]).
async fn read_duration(
    job: &Job,
    query: &str,
    sources: &crate::sources::Sources,
    now: i64,
) -> Result<f64, String> {
    let unavailable = |why: String| {
        format!(
            "metric {}: no request duration (DurationUnavailable): {why}",
            job.name
        )
    };
    let Resolved { source, query } =
        super::resolve_query(sources, &job.source, query, job.scope.as_ref())
            .map_err(|e| unavailable(format!("{e} ({})", e.reason())))?;
    let points = source
        .range(&query, now - concurrency::DURATION_MAX_AGE + 60, now, 60)
        .await
        .map_err(|e| unavailable(format!("the duration query failed ({}): {e}", e.reason())))?;
    concurrency::read_duration(&points, now).map_err(|p| unavailable(p.to_string()))
}

/// A `groupBy` job's series, read as the operator reads them (`sum by (...)`, at most
/// `maxSeries`) and forecast each for the band quantile of the total's fit.
async fn read_group(
    job: &Job,
    g: &GroupConfig,
    sources: &crate::sources::Sources,
    history: &Series,
    settings: &Settings,
    now: i64,
) -> Result<group::GroupForecast, String> {
    let fail = |e: SourceError| format!("metric {}: {} ({})", job.name, e, e.reason());
    let Resolved { source, query } = super::resolve_query(
        sources,
        &job.source,
        &g.series_query(&job.query),
        job.scope.as_ref(),
    )
    .map_err(fail)?;
    let parts = crate::sources::read_group(
        source.as_ref(),
        &query,
        &g.labels,
        settings.lookback,
        now,
        settings.step,
        g.max_series,
    )
    .await
    .map_err(fail)?;
    let epoch = choice::selection_epoch(&job.scaler, now);
    let fitted = group::fit_group(
        history,
        &parts,
        &settings.forecast,
        epoch,
        (None, &Default::default()),
    );
    Ok(fitted.group)
}

/// The largest contributors to the peak of a `groupBy` forecast, one line each.
fn contributors_lines(g: &group::GroupForecast, forecast: &Forecast) -> String {
    let Some(peak) = forecast.max_upper_in(forecast.start, forecast.end() - 1) else {
        return "  contributors: none (the forecast is empty)".into();
    };
    let mut out = format!(
        "  bottom-up over {} series{}; top contributors at the peak {} ({}):",
        g.parts.len(),
        if g.vanished.is_empty() {
            String::new()
        } else {
            format!(" ({} stopped, left out)", g.vanished.len())
        },
        time(peak.at),
        number(peak.value)
    );
    for c in group::contributors(g, peak.at, group::TOP_CONTRIBUTORS) {
        let carried = g
            .parts
            .iter()
            .any(|p| p.labels == c.labels && p.carried.is_some());
        out.push_str(&format!(
            "\n    {:<40} {:>12} {:>5.1}%{}",
            c.labels,
            number(c.value),
            c.share * 100.0,
            if carried {
                "  (new: carried at its recent level)"
            } else {
                ""
            }
        ));
    }
    out
}

/// How a history was fetched: requests sent and wall time.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    requests: u64,
    took: Duration,
}

/// The forecast of `history`. `Auto`'s model: the operator's choice for this epoch if the
/// scaler's status has one, else chosen now by the same rule.
fn fit(job: &Job, history: &Series, settings: &Settings, now: i64) -> Result<Forecast, String> {
    let epoch = choice::selection_epoch(&job.scaler, now);
    let previous = job.remembered.as_ref().and_then(|f| {
        choice::remembered_choice(
            FittedModel::kind_of_name(&f.model),
            f.generated_at.0.as_second(),
            epoch,
        )
    });
    let (fitted, _) = choice::fit_with_choice(history, &settings.forecast, epoch, previous);
    fitted.map_err(|e| {
        if history.finite_count() == 0 {
            format!(
                "metric {}: the query returned no data in the last {} (EmptyQueryResult)",
                job.name,
                format_duration(Duration::from_secs(settings.lookback as u64))
            )
        } else {
            format!("metric {}: no forecast: {e}", job.name)
        }
    })
}

/// A metric's lines: its query, its history and how it was fetched, the model and its fit.
fn describe(
    job: &Job,
    history: &Series,
    forecast: &Forecast,
    settings: &Settings,
    fetched: Fetch,
    fit: Duration,
) -> String {
    format!(
        "metric {}: {} from source {:?}\n  history: {} points ({} with values) over {} at {} in {} request{}, {:.2?}; \
         latest {}\n  model: {} (fit {:.0?}){}",
        job.name,
        job.query,
        job.source,
        history.len(),
        history.finite_count(),
        format_duration(Duration::from_secs(settings.lookback as u64)),
        format_duration(Duration::from_secs(settings.step as u64)),
        fetched.requests,
        if fetched.requests == 1 { "" } else { "s" },
        fetched.took,
        history
            .last_finite()
            .map(|(t, v)| format!("{} at {}", number(v), time(t)))
            .unwrap_or_else(|| "-".into()),
        forecast.model,
        fit,
        forecast
            .backtest_error
            .map(|e| format!(", backtest error {e:.3}"))
            .unwrap_or_default(),
    )
}

/// The outcome of a run with these metrics' errors: every one but the last on stderr, the
/// last as the error.
fn fail_with(mut failed: Vec<String>) -> anyhow::Result<()> {
    let Some(last) = failed.pop() else {
        return Ok(());
    };
    for f in &failed {
        eprintln!("error: {f}");
    }
    Err(anyhow!("{last}"))
}

/// Settings shared by all metrics of a run.
struct Settings {
    lookback: i64,
    step: i64,
    horizon: i64,
    forecast: ForecastSettings,
}

/// What a run forecasts: `--scaler`'s metrics or `--query`.
struct Plan {
    jobs: Vec<Job>,
    settings: Settings,
    /// The scaler's replica range, which the replicas column is clamped to.
    limits: Option<ReplicaRange>,
    /// The line that introduces the output.
    label: String,
}

/// A scaler's `[minReplicas, maxReplicas]`.
#[derive(Debug, Clone, Copy)]
struct ReplicaRange {
    min: u32,
    max: u32,
}

fn settings(args: &ForecastArgs, base: Option<&ScalerConfig>) -> anyhow::Result<Settings> {
    let dur = |flag: &str, value: Option<&str>, from, default: &str| {
        super::duration_flag(flag, value, from, default).map(|d| d.as_secs() as i64)
    };
    let lookback = dur(
        "lookback",
        args.lookback.as_deref(),
        base.map(|c| c.lookback),
        "14d",
    )?;
    let step = dur("step", args.step.as_deref(), base.map(|c| c.step), "1m")?;
    let horizon = dur(
        "horizon",
        args.horizon.as_deref(),
        base.map(|c| c.horizon),
        "2h",
    )?;
    if step < 1 || step >= lookback {
        bail!("--step must be at least 1s and shorter than --lookback");
    }
    if horizon < step {
        bail!("--horizon must be at least one --step");
    }
    let quantile = super::quantile_flag(
        args.quantile
            .or(base.and_then(|c| c.quantile))
            .unwrap_or(DEFAULT_BAND_QUANTILE),
    )?;
    let model = super::model_flag(args.model.as_deref(), base.map(|c| c.model))?;
    let periods = base
        .map(|c| {
            c.seasonal_periods
                .iter()
                .map(|p| p.as_secs() as i64)
                .collect()
        })
        .unwrap_or_default();
    Ok(Settings {
        lookback,
        step,
        horizon,
        forecast: ForecastSettings::new(
            model,
            periods,
            (horizon / step).max(1) as usize,
            quantile,
            step,
        ),
    })
}

fn from_flags(args: &ForecastArgs) -> anyhow::Result<Plan> {
    let query = args
        .query
        .clone()
        .expect("clap requires --query or --scaler");
    let target = args
        .target_per_replica
        .as_deref()
        .map(|t| {
            parse_quantity(t)
                .map_err(|e| anyhow!("--target-per-replica: {e}"))
                .and_then(|v| {
                    if v > 0.0 {
                        Ok(v)
                    } else {
                        Err(anyhow!("--target-per-replica must be positive"))
                    }
                })
        })
        .transpose()?;
    let settings = settings(args, None)?;
    let label = format!(
        "forecast of one query for {} at {} (quantile {})",
        format_duration(Duration::from_secs(settings.horizon as u64)),
        format_duration(Duration::from_secs(settings.step as u64)),
        settings.forecast.quantile
    );
    let job = Job {
        name: "query".into(),
        source: args.source.clone(),
        query,
        target,
        duration_query: args.duration_query.clone(),
        scope: None,
        scaler: choice::UNNAMED_SCALER.to_string(),
        remembered: None,
        group: group_flag(args)?,
    };
    Ok(Plan {
        jobs: vec![job],
        settings,
        limits: None,
        label,
    })
}

/// `--group-by` and `--max-series`, checked as the spec's `groupBy` and `maxSeries` are.
fn group_flag(args: &ForecastArgs) -> anyhow::Result<Option<GroupConfig>> {
    use crate::planner::group::{DEFAULT_MAX_SERIES, MAX_MAX_SERIES};
    let Some(labels) = &args.group_by else {
        return Ok(None);
    };
    if let Some(l) = labels
        .iter()
        .find(|l| !crate::names::is_prometheus_label_name(l))
    {
        bail!("--group-by: {l:?} is not a Prometheus label name");
    }
    let max_series = args.max_series.unwrap_or(DEFAULT_MAX_SERIES);
    if !(1..=MAX_MAX_SERIES).contains(&max_series) {
        bail!("--max-series must be between 1 and {MAX_MAX_SERIES}");
    }
    Ok(Some(GroupConfig {
        labels: labels.clone(),
        max_series,
    }))
}

/// Reads a PredictiveScaler (`NAMESPACE/NAME`) from the cluster kubeconfig points at, and
/// validates it: its namespace, settings and namespace labels (for the sources' rules).
pub async fn read_scaler(which: &str) -> anyhow::Result<ScalerRead> {
    let Some((namespace, name)) = which.split_once('/') else {
        bail!("--scaler must be NAMESPACE/NAME, got {which:?}");
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (kubeconfig or in-cluster)")?;
    let api: Api<PredictiveScaler> = Api::namespaced(client.clone(), namespace);
    let ps = api
        .get(name)
        .await
        .with_context(|| format!("reading PredictiveScaler {namespace}/{name}"))?;
    // a source may admit namespaces by label; without the right to read them, by name only
    let labels = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .get_metadata(namespace)
        .await
        .ok()
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    let config = validate(&ps.spec).map_err(|e| anyhow!("PredictiveScaler {which}: {e}"))?;
    Ok(ScalerRead {
        namespace: namespace.to_string(),
        config,
        labels,
        remembered: ps.status.and_then(|s| s.forecast),
    })
}

/// A PredictiveScaler as `--scaler` reads it.
pub struct ScalerRead {
    pub namespace: String,
    pub config: ScalerConfig,
    /// The namespace's labels (empty without the right to read them).
    pub labels: std::collections::BTreeMap<String, String>,
    /// The forecast its status reports: the operator's model choice for the current epoch.
    pub remembered: Option<ForecastStatus>,
}

async fn from_scaler(args: &ForecastArgs, which: &str) -> anyhow::Result<Plan> {
    if args.target_per_replica.is_some() {
        bail!("--target-per-replica comes from the scaler's metrics with --scaler");
    }
    let ScalerRead {
        namespace,
        config,
        labels,
        remembered,
    } = read_scaler(which).await?;
    let settings = settings(args, Some(&config))?;
    let jobs = config
        .metrics
        .iter()
        .map(|m| Job {
            name: m.name.clone(),
            source: m.source.clone(),
            query: m.query.clone(),
            target: Some(m.target_per_replica),
            duration_query: m.duration_query.clone(),
            scope: Some(super::Scope {
                namespace: namespace.clone(),
                labels: labels.clone(),
            }),
            scaler: which.to_string(),
            remembered: remembered.clone().filter(|f| f.metric == m.name),
            group: m.group.clone(),
        })
        .collect();
    let label = format!(
        "PredictiveScaler {which}: {} metric{}, forecast for {} at {} (quantile {}), replicas in [{}, {}]",
        config.metrics.len(),
        if config.metrics.len() == 1 { "" } else { "s" },
        format_duration(Duration::from_secs(settings.horizon as u64)),
        format_duration(Duration::from_secs(settings.step as u64)),
        settings.forecast.quantile,
        config.min_replicas,
        config.max_replicas
    );
    let label = format!("{label}{}", upstream_note(&config));
    Ok(Plan {
        jobs,
        settings,
        limits: Some(ReplicaRange {
            min: config.min_replicas,
            max: config.max_replicas,
        }),
        label,
    })
}

/// The scaler's upstream limits in words, for the forecast's heading: what each static limit
/// admits (the replica columns are not capped by it; the controller caps the count).
fn upstream_note(config: &ScalerConfig) -> String {
    let limits: Vec<String> = config
        .upstream
        .iter()
        .filter_map(|u| {
            let m = config.metrics.iter().find(|m| m.name == u.quota.metric)?;
            let query = if u.query.is_some() {
                ", or what its query reads"
            } else {
                ""
            };
            Some(match u.quota.per_minute {
                Some(l) => format!(
                    "{} {}/min admits {} replicas{query}",
                    m.name,
                    crate::planner::upstream::fmt_limit(l),
                    replicas(u.quota.unit.load_of(l), m.target_per_replica)
                ),
                None => format!("{}: read by its query", m.name),
            })
        })
        .collect();
    if limits.is_empty() {
        String::new()
    } else {
        format!("; upstream limits: {}", limits.join(", "))
    }
}

fn time(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn replicas(upper: f64, target: f64) -> u32 {
    (upper.max(0.0) / target).ceil().min(u32::MAX as f64) as u32
}

/// The replicas the forecast implies at each forecast step: the maximum over metrics,
/// clamped to the scaler's range.
fn combined(done: &[Done], i: usize, limits: Option<ReplicaRange>) -> Option<u32> {
    let r = done
        .iter()
        .filter_map(|d| d.replicas(*d.forecast.upper.get(i)?))
        .max()?;
    Some(match limits {
        Some(range) => r.clamp(range.min, range.max),
        None => r,
    })
}

/// The forecast table: one row per step (or the maximum over blocks of steps), then the peak.
fn table(done: &[Done], settings: &Settings, limits: Option<ReplicaRange>, rows: usize) -> String {
    let n = done
        .iter()
        .map(|d| d.forecast.point.len())
        .min()
        .unwrap_or(0);
    let block = n.div_ceil(rows.max(1)).max(1);
    let columns = Columns {
        many: done.len() > 1,
        any_target: done.iter().any(|d| d.job.target.is_some()),
    };
    let start = done[0].forecast.start;
    let mut lines = vec![columns.header(done)];
    for b in (0..n).step_by(block) {
        let steps = b..(b + block).min(n);
        let mut row = vec![time(start + b as i64 * settings.step)];
        row.extend(columns.cells(done, steps, limits));
        lines.push(row);
    }
    let mut out = String::from("\n");
    if block > 1 {
        out.push_str(&format!(
            "each row: the maximum over {block} steps ({})\n",
            format_duration(Duration::from_secs((block as i64 * settings.step) as u64))
        ));
    }
    out.push_str(&aligned(&lines));
    if columns.any_target
        && let Some((i, r)) = (0..n)
            .filter_map(|i| combined(done, i, limits).map(|r| (i, r)))
            .max_by_key(|(i, r)| (*r, std::cmp::Reverse(*i)))
    {
        out.push_str(&format!(
            "\npeak: {r} replicas at {} (replicas = ceil(upper / targetPerReplica){}; prescale sets them \
             leadTime before)\n",
            time(start + i as i64 * settings.step),
            if columns.many {
                ", the maximum over metrics"
            } else {
                ""
            }
        ));
    }
    out
}

/// The table's columns after the time: per metric its point and upper forecast (and its
/// replicas when there are several metrics), then the replicas they imply together.
struct Columns {
    many: bool,
    any_target: bool,
}

impl Columns {
    fn header(&self, done: &[Done]) -> Vec<String> {
        let mut header = vec!["time".to_string()];
        for d in done {
            let p = if self.many {
                format!("{} ", d.job.name)
            } else {
                String::new()
            };
            header.push(format!("{p}point"));
            header.push(format!("{p}upper"));
            if self.many && d.job.target.is_some() {
                header.push(format!("{p}replicas"));
            }
        }
        if self.any_target {
            header.push("replicas".into());
        }
        header
    }

    /// The cells of a row: the maximum of each column over `steps`.
    fn cells(
        &self,
        done: &[Done],
        steps: std::ops::Range<usize>,
        limits: Option<ReplicaRange>,
    ) -> Vec<String> {
        let mut row = Vec::new();
        for d in done {
            let max = |v: &[f64]| steps.clone().map(|i| v[i]).fold(f64::NAN, f64::max);
            row.push(format!("{:.2}", max(&d.forecast.point)));
            let upper = max(&d.forecast.upper);
            row.push(format!("{upper:.2}"));
            if self.many
                && let Some(r) = d.replicas(upper)
            {
                row.push(r.to_string());
            }
        }
        if self.any_target {
            let r = steps.filter_map(|i| combined(done, i, limits)).max();
            row.push(r.map(|r| r.to_string()).unwrap_or_default());
        }
        row
    }
}

/// `lines` as text columns: the first left-aligned, the others right-aligned.
fn aligned(lines: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A chart: per metric, the recent history with the forecast and its band; below, the
/// replicas the forecast implies.
fn write_plot(
    path: &std::path::Path,
    done: &[Done],
    settings: &Settings,
    limits: Option<ReplicaRange>,
) -> anyhow::Result<()> {
    let format = Format::of(path).map_err(|_| anyhow!(USE_SVG_OR_PNG))?;
    let size = (1200, 300 + 260 * done.len() as u32);
    canvas::render(
        path,
        size,
        format,
        |root, family| draw(root, done, settings, limits, family).map_err(|e| e.to_string()),
        |root, family| draw(root, done, settings, limits, family).map_err(|e| e.to_string()),
    )
    .map_err(|e| match e {
        // the caller's context names the path already
        PlotError::Draw { message, .. } => anyhow!(message),
        e => e.into(),
    })
}

/// The time axis every panel shares: as much history as 3 horizons (at least 6 hours) before
/// the forecast, to its end.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: f64,
    to: f64,
}

/// An x label: the UTC month, day and time.
fn time_tick(x: &f64) -> String {
    jiff::Timestamp::from_second(*x as i64)
        .map(|t| t.strftime("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// One panel per metric, then the replicas panel below them.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    done: &[Done],
    settings: &Settings,
    limits: Option<ReplicaRange>,
    family: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.margin(10, 10, 16, 16);
    let start_fc = done[0].forecast.start;
    let end = done
        .iter()
        .map(|d| d.forecast.end())
        .max()
        .unwrap_or(start_fc);
    let shown = (3 * settings.horizon).max(6 * 3_600);
    let span = Span {
        from: (start_fc - shown) as f64,
        to: end as f64,
    };
    let mut panels = root.split_evenly((done.len() + 1, 1));
    let replicas_panel = panels.pop().expect("one more than metrics");
    for (d, area) in done.iter().zip(&panels) {
        draw_metric(area, d, span, family)?;
    }
    draw_replicas(&replicas_panel, done, settings, limits, span, family)
}

/// A panel's title row, and the area below it.
fn titled<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    family: &str,
) -> Result<DrawingArea<DB, plotters::coord::Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    // text is placed, never measured: SVG output needs no font
    let (head, area) = area.split_vertically(24);
    let style = TextStyle::from((family, 15.0).into_font()).color(&BLACK);
    head.draw_text(title, &style, (60, 4))?;
    Ok(area)
}

/// A metric's panel: its recent history, the forecast and its band.
fn draw_metric<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    d: &Done,
    span: Span,
    family: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let area = titled(
        area,
        &format!("{} ({}): {}", d.job.name, d.forecast.model, d.job.query),
        family,
    )?;
    let hist: Vec<(f64, f64)> = (0..d.history.len())
        .map(|i| (d.history.time_of(i) as f64, d.history.values[i]))
        .filter(|(t, v)| *t >= span.from && v.is_finite())
        .collect();
    let fc: Vec<(f64, f64, f64)> = (0..d.forecast.point.len())
        .map(|i| {
            (
                (d.forecast.start + i as i64 * d.forecast.step) as f64,
                d.forecast.point[i],
                d.forecast.upper[i],
            )
        })
        .collect();
    let ymax = hist
        .iter()
        .map(|p| p.1)
        .chain(fc.iter().map(|p| p.2))
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.08;
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(24)
        .y_label_area_size(60)
        .build_cartesian_2d(span.from..span.to, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&time_tick)
        .y_label_formatter(&|y| number(*y))
        .label_style((family, 12.0).into_font())
        .light_line_style(TRANSPARENT)
        .draw()?;
    let mut band: Vec<(f64, f64)> = fc.iter().map(|p| (p.0, p.1)).collect();
    band.extend(fc.iter().rev().map(|p| (p.0, p.2.max(p.1))));
    chart.draw_series(std::iter::once(Polygon::new(band, BAND.mix(0.3).filled())))?;
    chart.draw_series(LineSeries::new(hist, LOAD.stroke_width(1)))?;
    chart.draw_series(LineSeries::new(
        fc.iter().map(|p| (p.0, p.1)),
        FORECAST.stroke_width(2),
    ))?;
    Ok(())
}

/// The replicas the forecast implies, as a step line.
fn draw_replicas<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    done: &[Done],
    settings: &Settings,
    limits: Option<ReplicaRange>,
    span: Span,
    family: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let start_fc = done[0].forecast.start;
    let reps: Vec<(f64, u32)> = (0..done[0].forecast.point.len())
        .filter_map(|i| {
            combined(done, i, limits).map(|r| ((start_fc + i as i64 * settings.step) as f64, r))
        })
        .collect();
    let rmax = reps.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let area = titled(area, "replicas the forecast implies", family)?;
    let mut chart = ChartBuilder::on(&area)
        .x_label_area_size(24)
        .y_label_area_size(60)
        .build_cartesian_2d(span.from..span.to, 0.0..rmax)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&time_tick)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((family, 12.0).into_font())
        .light_line_style(TRANSPARENT)
        .draw()?;
    let mut steps = Vec::with_capacity(reps.len() * 2);
    for (i, (t, r)) in reps.iter().enumerate() {
        if i > 0 {
            steps.push((*t, reps[i - 1].1 as f64));
        }
        steps.push((*t, *r as f64));
    }
    chart.draw_series(LineSeries::new(steps, PRESCALE.stroke_width(2)))?;
    Ok(())
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    #[test]
    fn the_heading_says_what_each_upstream_limit_admits() {
        let spec: crate::api::PredictiveScalerSpec = serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 60,
            "metrics": [
                {"name": "requests", "query": "q", "targetPerReplica": "40"},
                {"name": "tokens", "query": "t", "targetPerReplica": "5k"},
            ],
            "upstream": {"limits": [
                {"metric": "requests", "perMinute": "6000"},
                {"metric": "tokens", "perMinute": "2M", "query": "max(limit)"},
            ]},
        }))
        .unwrap();
        let config = crate::api::validate(&spec).unwrap();
        assert_eq!(
            upstream_note(&config),
            "; upstream limits: requests 6000/min admits 3 replicas, tokens 2000000/min admits 7 \
             replicas, or what its query reads"
        );
        let none = crate::api::ScalerConfig {
            upstream: Vec::new(),
            ..config
        };
        assert_eq!(upstream_note(&none), "");
    }
}
