//! `prescale simulate`: read a trace (a CSV file, the bundled one, or history fetched from
//! Prometheus for `--query` or `--scaler`), replay it through the controller's forecaster and
//! planner ([`crate::sim`]), print the score table, write the plan CSV and a plot. How the plan
//! is scored: `docs/evaluation.md`.

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow, bail};

use crate::{
    api::{
        PredictiveScaler,
        duration::{format_duration, parse_duration},
        validate,
    },
    planner::{DEFAULT_BAND_QUANTILE, Fallback, ForecastSettings, Policy, Series, Sizing, choice},
    sim::{
        self, SimReport, SimSettings,
        plot::canvas::{Format, USE_SVG_OR_PNG},
        trace,
    },
};

/// Settings of a simulation, as flags. `--help` ends with how the plan is scored
/// (`docs/evaluation.md`).
#[derive(clap::Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("history").args(["input", "query", "scaler"]))]
#[command(after_help = "\
How the plan is scored (docs/evaluation.md in the repository): a replica ordered at a step \
serves after --startup; a violation step is one whose load exceeds the ready replicas times \
targetPerReplica / 0.8; cost is the sum of the replicas over the steps. prescale is compared \
with a reactive HPA-like baseline (the last load's replicas, 10% tolerance, 5-step \
scale-down window), with that baseline at the target that spends prescale's replica budget \
(equal budget), and with a perfect-foresight oracle.")]
pub struct SimulateArgs {
    /// Trace CSV: `timestamp,value...` (unix seconds or RFC 3339). Default: the bundled
    /// synthetic LLM-proxy trace.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Read the history from Prometheus instead: a PromQL query returning one series, from
    /// the source --source names (configured as for `run`: --source-url or --sources-file).
    #[arg(long)]
    pub query: Option<String>,
    /// Read the history and the settings of a PredictiveScaler (NAMESPACE/NAME, from the
    /// cluster kubeconfig points at): its first metric's query from its source, with the
    /// source's namespace rules, and its spec as with --spec.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub scaler: Option<String>,
    /// The source of --query, by name (the one --source-url defines is `default`).
    #[arg(long, default_value = "default")]
    pub source: String,
    /// History to read with --query or --scaler [default: 14d, or the scaler's].
    #[arg(long)]
    pub lookback: Option<String>,
    /// Resolution to read it at [default: 1m, or the scaler's].
    #[arg(long)]
    pub step: Option<String>,
    #[command(flatten)]
    pub sources: super::source_flags::SourceFlags,
    /// Value column (default: the second column).
    #[arg(long)]
    pub column: Option<String>,
    /// Load one replica should carry: a number or a Kubernetes quantity (`40`, `1.5k`, `500m`),
    /// as `targetPerReplica` in a spec. Default: the trace's peak / 25 (the summary says so).
    #[arg(long)]
    pub target_per_replica: Option<String>,
    /// A PredictiveScaler manifest whose spec gives the settings (flags given too win).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Time from scaling up to the replica serving, as the scaler assumes it. `Auto` (as in
    /// `scaleUp.leadTime: Auto`) plans with --startup, the value a learned lead time converges to.
    #[arg(long)]
    pub lead_time: Option<String>,
    /// Time a replica really takes to start, in the scored world.
    #[arg(long, default_value = "5m")]
    pub startup: String,
    /// The fewest replicas the plan may set, as `minReplicas` (default: the spec's, else 1).
    #[arg(long)]
    pub min_replicas: Option<u32>,
    /// The most replicas the plan may set, as `maxReplicas` (default: the spec's, else 1000).
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// How often to refit.
    #[arg(long)]
    pub refresh: Option<String>,
    /// Upper quantile to size for.
    #[arg(long)]
    pub quantile: Option<f64>,
    /// auto | mstl | ets | seasonal-naive
    #[arg(long)]
    pub model: Option<String>,
    /// Seasonal periods, e.g. 1d,7d (default: detect).
    #[arg(long, value_delimiter = ',')]
    pub seasonal_periods: Option<Vec<String>>,
    /// Scale-down stabilisation window.
    #[arg(long)]
    pub stabilization_window: Option<String>,
    /// Leading time left out of the score. Default: 7d when the trace spans 14 days or more.
    #[arg(long)]
    pub warmup: Option<String>,
    /// Write the per-step plan as CSV.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write a plot (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Worker threads for model fits (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the trace at several operating points (upper quantiles, comma-separated; given
    /// alone: 0.5,0.75,0.9,0.97) and print each one's cost and violations beside the
    /// reactive baseline's at the same replica budget; with --plot, draw both cost/violation
    /// curves in one chart.
    #[arg(long, value_delimiter = ',', num_args = 0.., value_name = "QUANTILES")]
    pub frontier: Option<Vec<f64>>,
    #[command(flatten)]
    pub concurrency: super::concurrency::ConcurrencyFlags,
    /// Forecast bottom-up, as a metric with `groupBy`: the trace columns to treat as the series
    /// (names, or prefixes ending in `*`, comma-separated, e.g. `client_*,other`). The load is
    /// their sum; each column is forecast on its own and the plan sizes for the combined
    /// forecast. Also prints the out-of-sample error of the lead window's forecast peak for the
    /// aggregate (the sum forecast as one series) and both ways to combine the bands. With
    /// `--frontier`, every operating point is planned bottom-up and scored on the sum.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "COLUMNS",
        requires = "input",
        conflicts_with = "duration_column"
    )]
    pub group_columns: Option<Vec<String>>,
    /// With --group-columns: how the columns' upper bands are combined for the plan:
    /// `independent` (sum of points + half-widths in quadrature, the controller's rule) or
    /// `comonotone` (sum of the upper quantiles).
    #[arg(long, default_value = "independent", requires = "group_columns")]
    pub combine: String,
    /// What replicas are sized with: `margin` (the calibrated lead-window margin, as the
    /// controller does) or `band` (the forecast's upper band alone, to compare forecasts).
    #[arg(long, default_value = "margin")]
    pub sizing: String,
    /// An upstream quota ceiling: the most load the provider admits, in the trace's unit (as
    /// --target-per-replica: a per-minute trace takes the quota per minute), or `pNN`, that
    /// percentile of the trace's load (`p95`). Replicas are capped at ceil(limit /
    /// targetPerReplica) and the summary shows the replica-steps saved and the violations it
    /// costs against the same run without it. Default: the spec's upstream limit of its first
    /// metric (its perMinute, read per its metricUnit).
    #[arg(long, value_name = "LIMIT|pNN")]
    pub upstream_limit: Option<String>,
}

/// The bundled example trace, generated by `prescale::sim::synthetic` (see tests/bundled_trace.rs).
pub const BUNDLED_TRACE: &str = "examples/traces/llm-proxy-21d.csv";

/// Everything a run needs, resolved from flags, spec and defaults.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub label: String,
    pub column: String,
    pub series: Series,
    /// With `--group-columns`: the columns, whose sum is `series`.
    pub parts: Vec<crate::planner::group::Part>,
    pub settings: SimSettings,
    pub lead_time: Duration,
    pub refresh: Duration,
    pub warmup: Duration,
    /// The target per replica is the trace's peak / 25: neither a flag nor a spec gave one.
    pub target_derived: bool,
    /// `--duration-column`: the trace's durations and true concurrency.
    pub durations: Option<super::concurrency::DurationTrace>,
}

/// A history read from Prometheus, with the scaler it belongs to (`--scaler`).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub label: String,
    pub series: Series,
    pub scaler: Option<crate::api::ScalerConfig>,
}

/// Reads `--query`'s or `--scaler`'s history from its source, as the controller reads it
/// (chunked under Prometheus' point limit, the source's namespace rules for a scaler).
pub async fn fetch(args: &SimulateArgs) -> anyhow::Result<Fetched> {
    use crate::sources::{HistoryKey, HistoryStore, Resolved};
    let scaler = match &args.scaler {
        Some(which) => Some(crate::cli::forecast::read_scaler(which).await?),
        None => None,
    };
    let config = scaler.as_ref().map(|s| &s.config);
    let dur = super::duration_flag;
    let lookback = dur(
        "lookback",
        args.lookback.as_deref(),
        config.map(|c| c.lookback),
        "14d",
    )?;
    let step = dur("step", args.step.as_deref(), config.map(|c| c.step), "1m")?;
    if step.as_secs() < 1 || step >= lookback {
        bail!("--step must be at least 1s and shorter than --lookback");
    }
    let sources = args.sources.build()?;
    let wanted = wanted_query(args, scaler.as_ref())?;
    let source_name = &wanted.source;
    let Resolved { source, query } =
        super::resolve_query(&sources, source_name, &wanted.query, wanted.scope.as_ref())
            .map_err(|e| anyhow!("source {source_name:?}: {e} ({})", e.reason()))?;
    let key = HistoryKey {
        source: source_name.clone(),
        query: query.clone(),
        step: step.as_secs() as i64,
    };
    let now = jiff::Timestamp::now().as_second();
    let history = HistoryStore::new(usize::MAX)
        .update(
            "simulate",
            source.as_ref(),
            &key,
            lookback.as_secs() as i64,
            now,
        )
        .await
        .map_err(|e| anyhow!("{e} ({})", e.reason()))?;
    if history.finite_count() == 0 {
        bail!(
            "the query returned no data in the last {} (EmptyQueryResult)",
            format_duration(lookback)
        );
    }
    let label = match &args.scaler {
        Some(which) => format!("PredictiveScaler {which}: {query} from source {source_name:?}"),
        None => format!("{query} from source {source_name:?}"),
    };
    Ok(Fetched {
        label,
        series: history.series(),
        scaler: scaler.map(|s| s.config),
    })
}

/// The query `fetch` sends: `--scaler`'s first metric's, or `--query` to `--source`.
struct WantedQuery {
    source: String,
    query: String,
    /// With `--scaler`: its namespace, for the source's rules.
    scope: Option<super::Scope>,
}

fn wanted_query(
    args: &SimulateArgs,
    scaler: Option<&crate::cli::forecast::ScalerRead>,
) -> anyhow::Result<WantedQuery> {
    Ok(match (scaler, &args.query) {
        (Some(scaler), _) => {
            let m = scaler
                .config
                .metrics
                .first()
                .context("the scaler has no metrics")?;
            WantedQuery {
                source: m.source.clone(),
                query: m.query.clone(),
                scope: Some(super::Scope {
                    namespace: scaler.namespace.clone(),
                    labels: scaler.labels.clone(),
                }),
            }
        }
        (None, Some(q)) => WantedQuery {
            source: args.source.clone(),
            query: q.clone(),
            scope: None,
        },
        (None, None) => bail!("give --query or --scaler"),
    })
}

/// Reads the trace and resolves the settings.
pub fn resolve(args: &SimulateArgs) -> anyhow::Result<Resolved> {
    resolve_with(args, None)
}

/// [`resolve`] for a history already read from a source (`fetched`), or the trace file.
/// Each setting is the flag's if given, else the spec's (`--spec`, or `--scaler`'s), else the
/// CRD's default; they are checked in this order, so the first bad flag is the one reported.
pub fn resolve_with(args: &SimulateArgs, fetched: Option<Fetched>) -> anyhow::Result<Resolved> {
    // fail before a long simulation, not after it
    if let Some(plot) = &args.plot {
        Format::of(plot).map_err(|_| anyhow!("--plot {}: {USE_SVG_OR_PNG}", plot.display()))?;
    }
    let input = args.input.as_deref().filter(|_| fetched.is_none());
    let history = load_history(args, fetched)?;
    let parts = group_columns(args)?;
    let (series, column) = replayed(history.trace, &parts)?;
    let step = series.step;
    let durations = super::concurrency::read(&args.concurrency, input, &series)?;
    let spec = read_spec(args, history.scaler)?;
    let sc = spec.config.as_ref();
    let defaults = crd_defaults();
    let times = Times::resolve(args, sc, &defaults)?;
    let quantile = quantile(args, sc)?;
    let model = super::model_flag(args.model.as_deref(), sc.map(|c| c.model))?;
    let periods = seasonal_periods(args, sc, step)?;
    check_durations_given(durations.as_ref(), sc)?;
    // with durations the target is in concurrent requests, the default from their peak
    let sized = durations.as_ref().map_or(&series, |d| &d.scored);
    let (target_per_replica, target_derived) = target_per_replica(args, sc, sized)?;
    let replicas = ReplicaRange::resolve(args, sc)?;
    let warmup = warmup(args, &series)?;
    times.check_horizon(step)?;
    let upstream = upstream_quota(args, sc, &series)?;
    let policy = Policy {
        upstream: upstream.into_iter().collect(),
        ..policy(&times, replicas, step, quantile, sc, &defaults)
    };
    let mut forecast = forecast_settings(
        &times,
        &policy,
        model,
        periods,
        quantile,
        target_per_replica,
        step,
    );
    match args.sizing.as_str() {
        "margin" => {}
        "band" => forecast.sizing = None,
        other => bail!("--sizing must be margin or band, not {other:?}"),
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let steps = |d: Duration| steps_of(d, step);
    Ok(Resolved {
        target_derived,
        label: history.label,
        column,
        parts,
        settings: SimSettings {
            target_per_replica,
            startup_steps: steps(times.startup),
            refresh_steps: steps(times.refresh).max(1),
            warmup_steps: steps(warmup),
            lookback_steps: steps(times.lookback),
            policy,
            forecast,
            threads,
            scaler: spec.scaler,
            concurrency: durations
                .as_ref()
                .map(|d| d.sizing(&series, target_per_replica)),
        },
        series,
        lead_time: times.lead_time,
        refresh: times.refresh,
        warmup,
        durations,
    })
}

/// The series replayed and its name: the trace's column, or with `--group-columns` the sum of
/// those columns (the bottom-up total).
fn replayed(
    trace: trace::Trace,
    parts: &[crate::planner::group::Part],
) -> anyhow::Result<(Series, String)> {
    if parts.is_empty() {
        return Ok((trace.series, trace.column));
    }
    let total = crate::planner::group::sum_parts(parts)
        .context("--group-columns: the columns do not share one grid")?;
    let names: Vec<&str> = parts.iter().map(|p| p.labels.as_str()).collect();
    Ok((total, format!("sum of {} (bottom-up)", names.join(","))))
}

/// A spec whose metric sizes on concurrency needs the trace's request durations.
fn check_durations_given(
    durations: Option<&super::concurrency::DurationTrace>,
    sc: Option<&crate::api::ScalerConfig>,
) -> anyhow::Result<()> {
    if durations.is_none()
        && let Some(m) = sc.and_then(|c| c.metrics.first())
        && m.duration_query.is_some()
    {
        bail!(
            "metric {} sizes on concurrency (its targetPerReplica is in concurrent requests): \
             replay a trace with request durations, --input FILE --duration-column COLUMN",
            m.name
        );
    }
    Ok(())
}

/// The `--group-columns` of the `--input` trace, each a series named by its column.
fn group_columns(args: &SimulateArgs) -> anyhow::Result<Vec<crate::planner::group::Part>> {
    let (Some(patterns), Some(path)) = (&args.group_columns, &args.input) else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let traces =
        trace::parse_columns(&text, patterns).map_err(|e| anyhow!("--group-columns: {e}"))?;
    Ok(traces
        .into_iter()
        .map(|t| crate::planner::group::Part {
            labels: t.column,
            series: t.series,
        })
        .collect())
}

/// The `--combine` rule.
fn combine_rule(args: &SimulateArgs) -> anyhow::Result<crate::planner::group::Combine> {
    use crate::planner::group::Combine;
    match args.combine.as_str() {
        "independent" => Ok(Combine::Independent),
        "comonotone" => Ok(Combine::Comonotone),
        other => bail!("--combine must be independent or comonotone, not {other:?}"),
    }
}

/// Whole steps of `step` seconds in `d`.
fn steps_of(d: Duration, step: i64) -> usize {
    (d.as_secs() as i64 / step).max(0) as usize
}

/// The history to replay and where it came from.
struct History {
    label: String,
    trace: trace::Trace,
    /// The settings of `--scaler`, when the history is its metric's.
    scaler: Option<crate::api::ScalerConfig>,
}

/// The history: `fetched` from a source, else `--input`, else the bundled trace.
fn load_history(args: &SimulateArgs, fetched: Option<Fetched>) -> anyhow::Result<History> {
    Ok(match (&args.input, fetched) {
        (_, Some(f)) => {
            if f.series.len() < trace::MIN_ROWS {
                bail!(
                    "the source returned {} points; at least {} are needed",
                    f.series.len(),
                    trace::MIN_ROWS
                );
            }
            History {
                label: f.label,
                trace: trace::Trace {
                    column: "value".into(),
                    series: f.series,
                },
                scaler: f.scaler,
            }
        }
        (Some(path), None) => History {
            label: path.display().to_string(),
            trace: trace::read_trace(path, args.column.as_deref())?,
            scaler: None,
        },
        (None, None) => History {
            label: format!(
                "{BUNDLED_TRACE} (bundled synthetic trace; pass --input FILE for your own)"
            ),
            trace: trace::parse_trace(BUNDLED_TEXT, args.column.as_deref())?,
            scaler: None,
        },
    })
}

/// The scaler being simulated: its settings, if any, and its identity.
struct Spec {
    config: Option<crate::api::ScalerConfig>,
    /// `namespace/name`: it offsets `Auto`'s selection epochs, as in the controller.
    scaler: String,
}

/// The settings of `--spec`'s manifest if given (it wins over `--scaler`'s, `from_scaler`).
fn read_spec(
    args: &SimulateArgs,
    from_scaler: Option<crate::api::ScalerConfig>,
) -> anyhow::Result<Spec> {
    let mut spec = Spec {
        config: from_scaler,
        scaler: args
            .scaler
            .clone()
            .unwrap_or_else(|| choice::UNNAMED_SCALER.to_string()),
    };
    let Some(path) = &args.spec else {
        return Ok(spec);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ps: PredictiveScaler = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not a PredictiveScaler manifest", path.display()))?;
    if let Some(name) = &ps.metadata.name {
        let namespace = ps.metadata.namespace.as_deref().unwrap_or("default");
        spec.scaler = format!("{namespace}/{name}");
    }
    spec.config = Some(validate(&ps.spec).map_err(|e| anyhow!("{}: {e}", path.display()))?);
    Ok(spec)
}

/// A spec with the CRD's defaults: what a setting is when neither a flag nor a spec gives it.
fn crd_defaults() -> crate::api::PredictiveScalerSpec {
    crate::api::PredictiveScalerSpec {
        scale_target_ref: crate::api::ScaleTargetRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "x".into(),
        },
        min_replicas: 1,
        allow_scale_to_zero: false,
        max_replicas: 1000,
        mode: Default::default(),
        metrics: vec![],
        history: Default::default(),
        forecast: Default::default(),
        scale_up: Default::default(),
        scale_down: Default::default(),
        fallback: crate::api::Fallback::Reactive,
        schedules: Vec::new(),
        guards: Vec::new(),
        upstream: None,
        floor: None,
    }
}

/// The durations a run uses.
struct Times {
    lead_time: Duration,
    /// How long a replica really takes to start (the scored world; flag only).
    startup: Duration,
    refresh: Duration,
    stabilization: Duration,
    /// Spec only: how much history a fit sees, and how far it forecasts.
    lookback: Duration,
    horizon: Duration,
}

impl Times {
    fn resolve(
        args: &SimulateArgs,
        sc: Option<&crate::api::ScalerConfig>,
        defaults: &crate::api::PredictiveScalerSpec,
    ) -> anyhow::Result<Times> {
        let dur = super::duration_flag;
        let default = |d: &str| parse_duration(d).expect("valid default");
        let startup = dur("startup", Some(&args.startup), None, "5m")?;
        // `Auto` (flag or spec) learns the lead time from the real scale-ups; the simulation
        // does not learn: it plans with the true --startup, what `Auto` converges to
        let auto = match args.lead_time.as_deref() {
            Some(v) => v == "Auto",
            None => sc.is_some_and(|c| c.lead_time_auto),
        };
        let lead_time = if auto {
            startup
        } else {
            dur(
                "lead-time",
                args.lead_time.as_deref(),
                sc.map(|c| c.lead_time),
                &defaults.scale_up.lead_time,
            )?
        };
        Ok(Times {
            lead_time,
            startup,
            refresh: dur(
                "refresh",
                args.refresh.as_deref(),
                sc.map(|c| c.refresh_interval),
                &defaults.forecast.refresh_interval,
            )?,
            stabilization: dur(
                "stabilization-window",
                args.stabilization_window.as_deref(),
                sc.map(|c| c.stabilization_window),
                &defaults.scale_down.stabilization_window,
            )?,
            lookback: sc
                .map(|c| c.lookback)
                .unwrap_or(default(&defaults.history.lookback)),
            horizon: sc
                .map(|c| c.horizon)
                .unwrap_or(default(&defaults.forecast.horizon)),
        })
    }

    /// Each forecast must last until the next refit, plus the lead time and one step.
    fn check_horizon(&self, step: i64) -> anyhow::Result<()> {
        if self.lead_time + Duration::from_secs(step as u64) + self.refresh > self.horizon {
            bail!(
                "the forecast horizon ({}) must cover the refresh interval ({}) plus the lead time ({}) and one step",
                format_duration(self.horizon),
                format_duration(self.refresh),
                format_duration(self.lead_time)
            );
        }
        Ok(())
    }
}

/// The quantile to size for; unset: the default budget (planner::margin).
fn quantile(
    args: &SimulateArgs,
    sc: Option<&crate::api::ScalerConfig>,
) -> anyhow::Result<Option<f64>> {
    args.quantile
        .or(sc.and_then(|c| c.quantile))
        .map(super::quantile_flag)
        .transpose()
}

/// The seasonal periods in seconds (none: detect), each a whole number (>= 2) of steps.
fn seasonal_periods(
    args: &SimulateArgs,
    sc: Option<&crate::api::ScalerConfig>,
    step: i64,
) -> anyhow::Result<Vec<i64>> {
    let periods: Vec<i64> = match &args.seasonal_periods {
        Some(ps) => ps
            .iter()
            .map(|p| {
                parse_duration(p)
                    .map(|d| d.as_secs() as i64)
                    .map_err(|e| anyhow!("--seasonal-periods: {e}"))
            })
            .collect::<anyhow::Result<_>>()?,
        None => sc
            .map(|c| {
                c.seasonal_periods
                    .iter()
                    .map(|d| d.as_secs() as i64)
                    .collect()
            })
            .unwrap_or_default(),
    };
    for &p in &periods {
        if p % step != 0 || p / step < 2 {
            bail!(
                "seasonal period {}s is not a whole number (>= 2) of the trace step {step}s",
                p
            );
        }
    }
    Ok(periods)
}

/// The load one replica carries: the flag, the spec's first metric's, or the trace's peak / 25.
fn target_per_replica(
    args: &SimulateArgs,
    sc: Option<&crate::api::ScalerConfig>,
    series: &Series,
) -> anyhow::Result<(f64, bool)> {
    let given = args
        .target_per_replica
        .as_deref()
        .map(|t| {
            crate::api::quantity::parse_quantity(t)
                .map_err(|e| anyhow!("--target-per-replica: {e}"))
        })
        .transpose()?;
    let derived = given.is_none() && sc.and_then(|c| c.metrics.first()).is_none();
    let target = match (given, sc.and_then(|c| c.metrics.first())) {
        (Some(t), _) => t,
        (None, Some(m)) => m.target_per_replica,
        (None, None) => {
            let peak = series
                .values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            if peak <= 0.0 {
                bail!("the trace has no load; give --target-per-replica");
            }
            peak / 25.0
        }
    };
    if !(target > 0.0 && target.is_finite()) {
        bail!("--target-per-replica must be positive; got {target}");
    }
    Ok((target, derived))
}

/// The replicas the scaler may set.
#[derive(Debug, Clone, Copy)]
struct ReplicaRange {
    min: u32,
    max: u32,
}

impl ReplicaRange {
    fn resolve(
        args: &SimulateArgs,
        sc: Option<&crate::api::ScalerConfig>,
    ) -> anyhow::Result<ReplicaRange> {
        let min = args
            .min_replicas
            .or(sc.map(|c| c.min_replicas))
            .unwrap_or(1);
        let max = args
            .max_replicas
            .or(sc.map(|c| c.max_replicas))
            .unwrap_or(1000);
        if min > max {
            bail!("--min-replicas ({min}) is greater than --max-replicas ({max})");
        }
        Ok(ReplicaRange { min, max })
    }
}

/// Leading time left out of the score: the flag, else 7d when the trace spans 14 days or more.
fn warmup(args: &SimulateArgs, series: &Series) -> anyhow::Result<Duration> {
    let span = Duration::from_secs((series.len() as i64 * series.step) as u64);
    Ok(match &args.warmup {
        Some(w) => parse_duration(w).map_err(|e| anyhow!("--warmup: {e}"))?,
        None if span >= Duration::from_secs(14 * 86_400) => Duration::from_secs(7 * 86_400),
        None => Duration::ZERO,
    })
}

/// The scaler's policy; its interval is one step of the trace.
fn policy(
    times: &Times,
    replicas: ReplicaRange,
    step: i64,
    quantile: Option<f64>,
    sc: Option<&crate::api::ScalerConfig>,
    defaults: &crate::api::PredictiveScalerSpec,
) -> Policy {
    Policy {
        min_replicas: replicas.min,
        max_replicas: replicas.max,
        lead_time: times.lead_time,
        interval: Duration::from_secs(step as u64),
        max_replicas_per_minute: sc.map(|c| c.max_replicas_per_minute).unwrap_or(0),
        stabilization_window: times.stabilization,
        max_percent_per_minute: sc
            .map(|c| c.max_percent_per_minute)
            .unwrap_or(defaults.scale_down.max_percent_per_minute as u32),
        fallback: sc.map(|c| c.fallback).unwrap_or(Fallback::Reactive),
        fallback_headroom: crate::planner::margin::fallback_headroom(quantile),
        schedules: sc.map(|c| c.schedules.clone()).unwrap_or_default(),
        upstream: Vec::new(),
    }
}

/// The upstream quota of the simulated metric: `--upstream-limit` (in the trace's unit, or a
/// percentile of its load), else the spec's limit of its first metric (its static
/// `perMinute`; a limit read only by a query needs the flag).
fn upstream_quota(
    args: &SimulateArgs,
    sc: Option<&crate::api::ScalerConfig>,
    series: &Series,
) -> anyhow::Result<Option<crate::planner::Quota>> {
    use crate::planner::{MetricUnit, Quota};
    let quota = |per_minute: f64, unit: MetricUnit| Quota {
        metric: sim::SIM_METRIC.into(),
        per_minute: Some(per_minute),
        unit,
        queried: false,
    };
    if let Some(flag) = &args.upstream_limit {
        let limit = upstream_limit_flag(flag, series)?;
        // in the trace's own unit: per step, so no conversion
        return Ok(Some(quota(limit, MetricUnit::PerMinute)));
    }
    let Some(c) = sc else { return Ok(None) };
    let Some(first) = c.metrics.first() else {
        return Ok(None);
    };
    let Some(u) = c.upstream.iter().find(|u| u.quota.metric == first.name) else {
        return Ok(None);
    };
    match u.quota.per_minute {
        Some(per_minute) => Ok(Some(quota(per_minute, u.quota.unit))),
        None => bail!(
            "the spec's upstream limit of metric {} is read by its query only: give --upstream-limit",
            first.name
        ),
    }
}

/// `--upstream-limit`: a positive number, or `pNN` (0 < NN <= 100), that percentile of the
/// trace's finite load.
fn upstream_limit_flag(flag: &str, series: &Series) -> anyhow::Result<f64> {
    let bad = || anyhow!("--upstream-limit {flag:?}: give a positive number, or pNN (e.g. p95)");
    let limit = match flag.strip_prefix('p') {
        Some(p) => {
            let p: f64 = p.parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad());
            }
            let mut loads: Vec<f64> = series
                .values
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            loads.sort_by(f64::total_cmp);
            let i = ((p / 100.0) * loads.len() as f64).ceil() as usize;
            *loads
                .get(i.saturating_sub(1))
                .context("the trace has no load")?
        }
        None => flag.parse().map_err(|_| bad())?,
    };
    if !(limit > 0.0 && limit.is_finite()) {
        bail!("--upstream-limit must be positive; {flag} is {limit}");
    }
    Ok(limit)
}

/// The forecaster's settings, with the sizing the controller derives from the policy.
fn forecast_settings(
    times: &Times,
    policy: &Policy,
    model: crate::planner::ModelKind,
    periods: Vec<i64>,
    quantile: Option<f64>,
    target_per_replica: f64,
    step: i64,
) -> ForecastSettings {
    let mut forecast = ForecastSettings::new(
        model,
        periods,
        steps_of(times.horizon, step).max(1),
        quantile.unwrap_or(DEFAULT_BAND_QUANTILE),
        step,
    );
    forecast.sizing = Some(
        Sizing::new(
            times.lead_time,
            policy.interval,
            times.stabilization,
            policy.max_percent_per_minute,
            step,
            target_per_replica,
            quantile,
        )
        .with_periods(&forecast.periods),
    );
    forecast
}

/// The bundled trace, compiled in so `prescale simulate` works from any directory.
const BUNDLED_TEXT: &str = include_str!("../../examples/traces/llm-proxy-21d.csv");

/// Runs the subcommand.
pub async fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let fetched = if args.query.is_some() || args.scaler.is_some() {
        Some(fetch(args).await?)
    } else {
        None
    };
    let r = resolve_with(args, fetched)?;
    if args.concurrency.compare_rate {
        return super::concurrency::run_comparison(&r);
    }
    if let Some(quantiles) = &args.frontier {
        return run_frontier(args, &r, quantiles);
    }
    let started = std::time::Instant::now();
    let (report, grouped) = if r.parts.is_empty() {
        let bar = progress_bar(sim::work_units(&r.series, &r.settings));
        let report = sim::simulate_observed(&r.series, &r.settings, &|| bar.inc(1));
        bar.finish_and_clear();
        (report, None)
    } else {
        let rule = combine_rule(args)?;
        let bar = progress_bar(r.series.len() / r.settings.refresh_steps.max(1));
        let g = sim::group::simulate_grouped(&r.parts, &r.settings, rule, &|| bar.inc(1))
            .context("--group-columns: no columns")?;
        bar.finish_and_clear();
        let table = group_table(&r, &g);
        (g.report, Some(table))
    };
    let elapsed = started.elapsed();
    print!("{}", summary(&r, &report, elapsed));
    if let Some(table) = grouped {
        print!("{table}");
    }
    if let Some(path) = &args.output {
        std::fs::write(path, plan_csv(&report))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("plan written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let capacity = r.settings.score_target() / sim::UTILISATION;
        sim::plot::write_plot(
            path,
            &report.rows,
            &format!("prescale simulate: {}", r.label),
            capacity,
            r.settings.startup_steps,
        )?; // the plot error names the path already
        println!("plot written to {}", path.display());
    }
    println!("{}", verdict(&report));
    Ok(())
}

/// `--group-columns`: each way of forecasting the total, with its peak error.
fn group_table(r: &Resolved, g: &sim::group::GroupReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nbottom-up over {} columns ({:.1} fitted per refit on average); forecast peak of the lead window ({} steps), out of sample, {} scored rows:",
        r.parts.len(),
        g.mean_series,
        r.settings.startup_steps + 1,
        g.errors.first().map_or(0, |e| e.rows),
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>10} {:>10} {:>9} {:>11}",
        "forecast", "point WAPE", "pinball", "coverage", "upper/peak"
    );
    for (name, e) in sim::group::VARIANTS.iter().zip(&g.errors) {
        let _ = writeln!(
            out,
            "  {:<34} {:>10.4} {:>10.4} {:>9.3} {:>11.3}",
            name, e.point_wape, e.pinball, e.coverage, e.upper_ratio
        );
    }
    out
}

/// A progress bar on stderr for `len` model fits; hidden when stderr is not a terminal, so
/// logs and pipes get only the result.
fn progress_bar(len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("  fitting {bar:40} {pos}/{len} fits, {eta} left")
            .expect("a valid template"),
    );
    bar
}

/// `--frontier`: every operating point, its table, and the chart.
fn run_frontier(args: &SimulateArgs, r: &Resolved, quantiles: &[f64]) -> anyhow::Result<()> {
    let quantiles: Vec<f64> = if quantiles.is_empty() {
        sim::frontier::DEFAULT_QUANTILES.to_vec()
    } else {
        quantiles.to_vec()
    };
    if let Some(q) = quantiles.iter().find(|q| !(**q > 0.0 && **q < 1.0)) {
        bail!("--frontier: quantiles must be between 0 and 1, exclusive; got {q}");
    }
    if args.output.is_some() {
        bail!("--output writes one plan; run without --frontier (or with --quantile) for it");
    }
    let started = std::time::Instant::now();
    let f = if r.parts.is_empty() {
        let units = sim::frontier::work_units(&r.series, &r.settings, &quantiles);
        let bar = progress_bar(units);
        let f = sim::frontier::frontier(&r.series, &r.settings, &quantiles, &|| bar.inc(1));
        bar.finish_and_clear();
        f
    } else {
        // every operating point bottom-up over the columns, scored on their sum
        let rule = combine_rule(args)?;
        let refits = r.series.len() / r.settings.refresh_steps.max(1);
        let bar = progress_bar(refits * (quantiles.len() + 1));
        let f = sim::frontier::frontier_by(&r.series, &r.settings, &quantiles, &|at| {
            sim::group::simulate_grouped(&r.parts, at, rule, &|| bar.inc(1))
                .expect("the columns were summed when the trace was read")
                .report
        });
        bar.finish_and_clear();
        f
    };
    print!("{}", frontier_table(r, &f, started.elapsed()));
    if let Some(path) = &args.plot {
        write_frontier_plot(path, r, &f)?;
        println!("plot written to {}", path.display());
    }
    // the first point is the settings as given
    if let Some(default) = f.points.first() {
        println!("{}", verdict(&default.report));
    }
    Ok(())
}

/// The last line of `simulate` and `simulate --frontier`: the plan against the reactive
/// baseline given the same replica budget ([`sim::reactive_at_cost`]), in one plain sentence
/// with both violation counts.
pub fn verdict(report: &SimReport) -> String {
    let p = report.prescale.violation_steps;
    let Some((factor, same)) = &report.reactive_at_cost else {
        return format!(
            "verdict: no reactive target spends prescale's {} replica-steps on this trace, so the two cannot be \
             compared at the same cost",
            report.prescale.replica_steps
        );
    };
    let r = same.violation_steps;
    let counts = format!(
        "({p} violation steps against {r}, the reactive autoscaler at target x{factor:.2})"
    );
    if p == 0 && r == 0 {
        return format!(
            "verdict: on this trace neither prescale nor a reactive autoscaler at the same cost has a violation \
             step; prescale costs {} the reactive autoscaler at its own target",
            ratio(
                report.prescale.replica_steps as f64,
                report.reactive.replica_steps as f64
            )
        );
    }
    match p.cmp(&r) {
        std::cmp::Ordering::Less => format!(
            "verdict: prescale buys {:.0}% fewer violation steps than a reactive autoscaler at the same cost {counts}",
            100.0 * (1.0 - p as f64 / r as f64)
        ),
        std::cmp::Ordering::Equal => format!(
            "verdict: on this trace prescale does no better than a reactive autoscaler at the same cost {counts}"
        ),
        std::cmp::Ordering::Greater if r == 0 => format!(
            "verdict: on this trace prescale has {p} violation steps where a reactive autoscaler at the same cost \
             has none {counts}"
        ),
        std::cmp::Ordering::Greater => format!(
            "verdict: on this trace prescale has {:.0}% more violation steps than a reactive autoscaler at the same \
             cost {counts}",
            100.0 * (p as f64 / r.max(1) as f64 - 1.0)
        ),
    }
}

/// The frontier chart: the plan's operating points, and the reactive family over their cost
/// range (and a little beyond), so the two curves are compared where they overlap.
fn write_frontier_plot(
    path: &std::path::Path,
    r: &Resolved,
    f: &sim::frontier::Frontier,
) -> anyhow::Result<()> {
    let mark = |label: String, sc: &sim::Score| sim::plot::FrontierMark {
        cost: sim::frontier::cost_ratio(sc, &f.reactive),
        violations: sc.violation_steps as f64,
        label,
    };
    let plan: Vec<_> = f
        .points
        .iter()
        .map(|p| mark(p.label(), &p.report.prescale))
        .collect();
    let widest = plan
        .iter()
        .map(|m| m.cost)
        .filter(|c| c.is_finite())
        .fold(1.0, f64::max);
    let family: Vec<_> = f
        .family
        .iter()
        .map(|(factor, sc)| mark(format!("x{factor}"), sc))
        .filter(|m| m.cost <= widest * 1.15)
        .collect();
    sim::plot::write_frontier_plot(
        path,
        &format!("prescale simulate --frontier: {}", r.label),
        &format!(
            "lead {}, startup {} steps, {} scored rows; lower at the same cost is better",
            format_duration(r.lead_time),
            r.settings.startup_steps,
            f.points.first().map_or(0, |p| p.report.scored_rows)
        ),
        &plan,
        &family,
    )?;
    Ok(())
}

/// The frontier table: one row per operating point, with the equal-budget comparison.
pub fn frontier_table(r: &Resolved, f: &sim::frontier::Frontier, elapsed: Duration) -> String {
    let s = &r.settings;
    let mut out = String::new();
    let _ = writeln!(out, "prescale simulate --frontier: {}", r.label);
    let _ = writeln!(
        out,
        "  column {}, {} rows at {}, {} warm-up; targetPerReplica {:.3}, lead {}, startup {} steps",
        r.column,
        r.series.len(),
        format_duration(Duration::from_secs(r.series.step as u64)),
        format_duration(r.warmup),
        s.target_per_replica,
        format_duration(r.lead_time),
        s.startup_steps,
    );
    let _ = writeln!(
        out,
        "  reactive baseline at its default target: {} violation steps, {:.3}% unserved, {} replica-steps",
        f.reactive.violation_steps, f.reactive.unserved_pct, f.reactive.replica_steps
    );
    let _ = writeln!(out);
    write_points(&mut out, f);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  cost = replica-steps / the reactive baseline's at its default; equal-budget = violation steps / those \
         of the reactive baseline with its target changed to spend the same replica-steps (below 1.0: more safety per replica)"
    );
    let _ = writeln!(
        out,
        "  reactive family (target factor: violations @ cost): {}",
        f.family
            .iter()
            .map(|(k, sc)| format!(
                "x{k}: {} @ {:.2}x",
                sc.violation_steps,
                sim::frontier::cost_ratio(sc, &f.reactive)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "  {} operating points in {:.1} s",
        f.points.len(),
        elapsed.as_secs_f64()
    );
    out
}

/// The frontier's rows: each operating point beside the reactive baseline at its budget.
fn write_points(out: &mut String, f: &sim::frontier::Frontier) {
    let _ = writeln!(
        out,
        "  {:>8} {:>11} {:>11} {:>6}   {:>27}   {:>14}",
        "point", "violations", "unserved %", "cost", "reactive at the same budget", "equal-budget"
    );
    for p in &f.points {
        let same = match &p.report.reactive_at_cost {
            Some((factor, sc)) => format!("{} (target x{factor:.2})", sc.violation_steps),
            None => "out of range".into(),
        };
        let ratio = match p.ratio() {
            Some(x) => format!("{x:.2}x"),
            None => "n/a".into(),
        };
        let _ = writeln!(
            out,
            "  {:>8} {:>11} {:>11.3} {:>5.2}x   {:>27}   {:>14}",
            p.label(),
            p.report.prescale.violation_steps,
            p.report.prescale.unserved_pct,
            p.cost(),
            same,
            ratio
        );
    }
}

/// The plan as CSV, one row per step (`--output`).
pub fn plan_csv(report: &SimReport) -> String {
    let mut out = String::from(
        "timestamp,value,forecast,upper,desired_replicas,reactive_replicas,oracle_replicas,reason\n",
    );
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    for row in &report.rows {
        let value = if row.value.is_finite() {
            format!("{}", row.value)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            row.timestamp,
            value,
            f(row.forecast),
            f(row.upper),
            row.desired,
            row.reactive,
            row.oracle,
            row.reason
        );
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        if a == 0.0 {
            "1.00x".into()
        } else {
            "inf".into()
        }
    } else {
        format!("{:.2}x", a / b)
    }
}

/// The operating point in words: a fixed quantile, or the budget and the quantiles it chose.
fn operating_point(s: &SimSettings, chosen: &[f64]) -> String {
    match s.forecast.sizing.as_ref().and_then(|z| z.cost_ratio) {
        None => format!("quantile {}", s.forecast.quantile),
        Some(ratio) => {
            let mut q = chosen.to_vec();
            q.sort_by(f64::total_cmp);
            match (q.first(), q.get(q.len() / 2), q.last()) {
                (Some(lo), Some(mid), Some(hi)) => format!(
                    "budget {ratio}x reactive (quantile chosen per fit: median {mid:.2}, {lo:.2}-{hi:.2})"
                ),
                _ => format!("budget {ratio}x reactive"),
            }
        }
    }
}

/// The summary table.
pub fn summary(r: &Resolved, report: &SimReport, elapsed: Duration) -> String {
    let mut out = String::new();
    write_settings(&mut out, r, report);
    super::concurrency::write_settings(&mut out, r);
    let _ = writeln!(out);
    write_scores(&mut out, report);
    let _ = writeln!(out);
    write_comparisons(&mut out, report);
    if let Some(u) = &report.upstream {
        write_upstream(&mut out, r, report, u);
    }
    write_timings(&mut out, r, report, elapsed);
    out
}

/// The summary's head: the trace and the settings it ran with.
fn write_settings(out: &mut String, r: &Resolved, report: &SimReport) {
    let s = &r.settings;
    let _ = writeln!(out, "prescale simulate: {}", r.label);
    let _ = writeln!(
        out,
        "  column {}, {} rows at {}, {} scored after {} warm-up",
        r.column,
        r.series.len(),
        format_duration(Duration::from_secs(r.series.step as u64)),
        report.scored_rows,
        format_duration(r.warmup)
    );
    let _ = writeln!(
        out,
        "  targetPerReplica {:.3}{} (capacity {:.3}/replica), lead {}, startup {} steps, refresh {}, {}, model {:?}, replicas [{}, {}]",
        s.target_per_replica,
        if r.target_derived {
            " (the trace's peak / 25: set yours with --target-per-replica)"
        } else {
            ""
        },
        s.target_per_replica / sim::UTILISATION,
        format_duration(r.lead_time),
        s.startup_steps,
        format_duration(r.refresh),
        operating_point(s, &report.quantiles),
        s.forecast.model,
        s.policy.min_replicas,
        s.policy.max_replicas
    );
}

/// One row per plan: violation steps, unserved load and replica-steps.
fn write_scores(out: &mut String, report: &SimReport) {
    let _ = writeln!(
        out,
        "  {:<10} {:>16} {:>12} {:>15}",
        "plan", "violation steps", "unserved %", "replica-steps"
    );
    for (name, sc) in [
        ("prescale", &report.prescale),
        ("reactive", &report.reactive),
        ("oracle", &report.oracle),
    ] {
        let _ = writeln!(
            out,
            "  {:<10} {:>16} {:>12.3} {:>15}",
            name, sc.violation_steps, sc.unserved_pct, sc.replica_steps
        );
    }
}

/// Prescale against the reactive baseline (at its default and at prescale's budget) and the
/// oracle.
fn write_comparisons(out: &mut String, report: &SimReport) {
    let p = &report.prescale;
    let _ = writeln!(
        out,
        "  prescale / reactive: violations {}, unserved {}, cost {}",
        ratio(
            p.violation_steps as f64,
            report.reactive.violation_steps as f64
        ),
        ratio(p.unserved_pct, report.reactive.unserved_pct),
        ratio(p.replica_steps as f64, report.reactive.replica_steps as f64)
    );
    if let Some((factor, sc)) = &report.reactive_at_cost {
        let _ = writeln!(
            out,
            "  reactive with prescale's replica budget (target x{factor:.2}): {} violation steps, {:.3}% unserved; prescale {}",
            sc.violation_steps,
            sc.unserved_pct,
            ratio(p.violation_steps as f64, sc.violation_steps as f64)
        );
    }
    let _ = writeln!(
        out,
        "  prescale / oracle:   cost {}",
        ratio(p.replica_steps as f64, report.oracle.replica_steps as f64)
    );
}

/// What the upstream ceiling saved (replica-steps) and cost (violations, unserved load)
/// against the same run without it.
fn write_upstream(out: &mut String, r: &Resolved, report: &SimReport, u: &sim::UpstreamEffect) {
    let (with, without) = (&report.prescale, &u.uncapped);
    let saved = without.replica_steps.saturating_sub(with.replica_steps);
    let admits = (u.limit / r.settings.target_per_replica).ceil();
    let _ = writeln!(
        out,
        "  upstream ceiling: limit {} per step admits {admits} replicas; it capped {} of {} scored steps",
        crate::planner::upstream::fmt_limit(u.limit),
        u.limited_steps,
        report.scored_rows
    );
    let pct = |a: u64, b: u64| {
        if b > 0 {
            100.0 * a as f64 / b as f64
        } else {
            0.0
        }
    };
    let _ = writeln!(
        out,
        "    replica-steps saved: {saved} ({:.1}% of {} without the ceiling)",
        pct(saved, without.replica_steps),
        without.replica_steps
    );
    let _ = writeln!(
        out,
        "    against all the load: violation steps {} -> {}, unserved {:.3}% -> {:.3}% (without -> with)",
        without.violation_steps, with.violation_steps, without.unserved_pct, with.unserved_pct
    );
    let _ = writeln!(
        out,
        "    load above the quota in {} steps ({:.3}% of the load): the upstream refuses it whatever the replicas",
        u.over_quota_steps, u.over_quota_pct
    );
    let _ = writeln!(
        out,
        "    against the load the quota admits: violation steps {} -> {}, unserved {:.3}% -> {:.3}%",
        u.admitted_uncapped.violation_steps,
        u.admitted.violation_steps,
        u.admitted_uncapped.unserved_pct,
        u.admitted.unserved_pct
    );
}

/// How long the fits and `Auto`'s model selections took, and the models fitted.
fn write_timings(out: &mut String, r: &Resolved, report: &SimReport, elapsed: Duration) {
    let mut times: Vec<Duration> = report.fit_times.clone();
    times.sort();
    let ms = |p: f64| super::percentile(&times, p).as_secs_f64() * 1e3;
    let models = super::models_line(&report.models);
    let _ = writeln!(
        out,
        "  fits: {} (median {:.1} ms, p95 {:.1} ms) on {} threads; models: {}; total {:.1} s",
        report.fits,
        ms(0.5),
        ms(0.95),
        r.settings.threads,
        if models.is_empty() { "none" } else { &models },
        elapsed.as_secs_f64()
    );
    if !report.selection_times.is_empty() {
        let mut sel = report.selection_times.clone();
        sel.sort();
        let _ = writeln!(
            out,
            "  Auto model selections: {} (one per 6 h, median {:.0} ms)",
            sel.len(),
            sel[sel.len() / 2].as_secs_f64() * 1e3
        );
    }
}
