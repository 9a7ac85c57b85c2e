//! `prescale forecast`: fetch one query's history (or a PredictiveScaler's metrics) from a
//! source, fit the controller's forecaster on it, and print the forecast with the replicas it
//! implies, as a table and optionally a plot. The same fetch (chunked) and fit as `run`.

use std::{path::PathBuf, sync::Arc, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use kube::Api;
use plotters::prelude::*;

use crate::{
    api::{
        ForecastStatus, PredictiveScaler, ScalerConfig, duration::format_duration,
        quantity::parse_quantity, validate,
    },
    planner::{
        DEFAULT_BAND_QUANTILE, Forecast, ForecastSettings, Series, choice, forecast::kind_of,
    },
    sim::plot::{
        PlotError,
        canvas::{self, Format, USE_SVG_OR_PNG, number},
    },
    sources::{HistoryKey, HistoryStore, Resolved, SourceError, config::SourceFlags},
};

/// Flags of `prescale forecast`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["query", "scaler"]))]
pub struct ForecastArgs {
    #[command(flatten)]
    pub sources: SourceFlags,
    /// A PredictiveScaler as NAMESPACE/NAME: forecast each of its metrics with its settings
    /// (read from the cluster, kubeconfig as kubectl finds it).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub scaler: Option<String>,
    /// A PromQL query returning one series, e.g. 'sum(rate(requests_total[2m]))'.
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
}

/// One metric to forecast.
struct Job {
    name: String,
    source: String,
    query: String,
    target: Option<f64>,
    /// With `--scaler`: its namespace, so the query goes out as the operator would send it
    /// (the source's allowed namespaces and namespace isolation).
    scope: Option<super::Scope>,
    /// The scaler's `namespace/name` ([`choice::UNNAMED_SCALER`] with `--query`): where `Auto`'s
    /// selection epochs start.
    scaler: String,
    /// The forecast the scaler's status reports for this metric: its model is `Auto`'s choice
    /// for the epoch, reused as the operator reuses it.
    remembered: Option<ForecastStatus>,
}

/// What a metric gave.
struct Done {
    job: Job,
    history: Arc<Series>,
    forecast: Forecast,
}

pub async fn run(args: &ForecastArgs) -> anyhow::Result<()> {
    let (jobs, settings, limits, label) = match &args.scaler {
        Some(s) => from_scaler(args, s).await?,
        None => from_flags(args)?,
    };
    let sources = args.sources.build()?;
    let store = HistoryStore::new(usize::MAX);
    let now = jiff::Timestamp::now().as_second();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    println!("{label}");
    for job in jobs {
        let resolved = super::resolve_query(&sources, &job.source, &job.query, job.scope.as_ref());
        let Resolved { source, query } = match resolved {
            Ok(r) => r,
            Err(SourceError::UnknownSource { .. }) => {
                failed.push(format!(
                    "metric {}: the source {:?} is not configured (give --source-url, or --sources-file \
                     with a source of that name)",
                    job.name, job.source
                ));
                continue;
            }
            Err(e) => {
                failed.push(format!("metric {}: {} ({})", job.name, e, e.reason()));
                continue;
            }
        };
        let key = HistoryKey {
            source: job.source.clone(),
            query,
            step: settings.step,
        };
        let before = source.requests().unwrap_or(0);
        let t = Instant::now();
        let history = match store
            .update("forecast", source.as_ref(), &key, settings.lookback, now)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                failed.push(format!("metric {}: {} ({})", job.name, e, e.reason()));
                continue;
            }
        };
        let fetch = t.elapsed();
        let requests = source.requests().unwrap_or(0) - before;
        let t = Instant::now();
        // Auto's model: the operator's choice for this epoch if its status has one, else
        // chosen now by the same rule
        let epoch = choice::selection_epoch(&job.scaler, now);
        let previous = job.remembered.as_ref().and_then(|f| {
            choice::remembered_choice(kind_of(&f.model), f.generated_at.0.as_second(), epoch)
        });
        let (fitted, _) = choice::fit_with_choice(&history, &settings.forecast, epoch, previous);
        let forecast = match fitted {
            Ok(f) => f,
            Err(e) if history.finite_count() == 0 => {
                let _ = e;
                failed.push(format!(
                    "metric {}: the query returned no data in the last {} (EmptyQueryResult)",
                    job.name,
                    format_duration(std::time::Duration::from_secs(settings.lookback as u64))
                ));
                continue;
            }
            Err(e) => {
                failed.push(format!("metric {}: no forecast: {e}", job.name));
                continue;
            }
        };
        let fit = t.elapsed();
        println!(
            "metric {}: {} from source {:?}\n  history: {} points ({} with values) over {} at {} in {} request{}, {:.2?}; \
             latest {}\n  model: {} (fit {:.0?}){}",
            job.name,
            job.query,
            job.source,
            history.len(),
            history.finite_count(),
            format_duration(std::time::Duration::from_secs(settings.lookback as u64)),
            format_duration(std::time::Duration::from_secs(settings.step as u64)),
            requests,
            if requests == 1 { "" } else { "s" },
            fetch,
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
        );
        done.push(Done {
            job,
            history,
            forecast,
        });
    }
    if !done.is_empty() {
        print!("{}", table(&done, &settings, limits, args.rows));
        if let Some(path) = &args.plot {
            write_plot(path, &done, &settings, limits)
                .with_context(|| format!("writing the plot {}", path.display()))?;
            println!("plot written to {}", path.display());
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => Err(anyhow!("{}", failed[0])),
        _ => {
            for f in &failed[..failed.len() - 1] {
                eprintln!("error: {f}");
            }
            Err(anyhow!("{}", failed[failed.len() - 1]))
        }
    }
}

/// Settings shared by all metrics of a run.
struct Settings {
    lookback: i64,
    step: i64,
    horizon: i64,
    forecast: ForecastSettings,
}

type Plan = (Vec<Job>, Settings, Option<(u32, u32)>, String);

fn settings(args: &ForecastArgs, base: Option<&ScalerConfig>) -> anyhow::Result<Settings> {
    let dur = |flag: &str, value: &Option<String>, from, default: &str| {
        super::duration_flag(flag, value, from, default).map(|d| d.as_secs() as i64)
    };
    let lookback = dur("lookback", &args.lookback, base.map(|c| c.lookback), "14d")?;
    let step = dur("step", &args.step, base.map(|c| c.step), "1m")?;
    let horizon = dur("horizon", &args.horizon, base.map(|c| c.horizon), "2h")?;
    if step < 1 || step >= lookback {
        bail!("--step must be at least 1s and shorter than --lookback");
    }
    if horizon < step {
        bail!("--horizon must be at least one --step");
    }
    let quantile = args
        .quantile
        .or(base.and_then(|c| c.quantile))
        .unwrap_or(DEFAULT_BAND_QUANTILE);
    if !(quantile > 0.0 && quantile < 1.0) {
        bail!("--quantile must be between 0 and 1, exclusive; got {quantile}");
    }
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
        format_duration(std::time::Duration::from_secs(settings.horizon as u64)),
        format_duration(std::time::Duration::from_secs(settings.step as u64)),
        settings.forecast.quantile
    );
    let job = Job {
        name: "query".into(),
        source: args.source.clone(),
        query,
        target,
        scope: None,
        scaler: choice::UNNAMED_SCALER.to_string(),
        remembered: None,
    };
    Ok((vec![job], settings, None, label))
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
            scope: Some(super::Scope {
                namespace: namespace.clone(),
                labels: labels.clone(),
            }),
            scaler: which.to_string(),
            remembered: remembered.clone().filter(|f| f.metric == m.name),
        })
        .collect();
    let label = format!(
        "PredictiveScaler {which}: {} metric{}, forecast for {} at {} (quantile {}), replicas in [{}, {}]",
        config.metrics.len(),
        if config.metrics.len() == 1 { "" } else { "s" },
        format_duration(std::time::Duration::from_secs(settings.horizon as u64)),
        format_duration(std::time::Duration::from_secs(settings.step as u64)),
        settings.forecast.quantile,
        config.min_replicas,
        config.max_replicas
    );
    Ok((
        jobs,
        settings,
        Some((config.min_replicas, config.max_replicas)),
        label,
    ))
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
fn combined(done: &[Done], i: usize, limits: Option<(u32, u32)>) -> Option<u32> {
    let r = done
        .iter()
        .filter_map(|d| Some(replicas(*d.forecast.upper.get(i)?, d.job.target?)))
        .max()?;
    Some(match limits {
        Some((lo, hi)) => r.clamp(lo, hi),
        None => r,
    })
}

/// The forecast table: one row per step (or the maximum over blocks of steps).
fn table(done: &[Done], settings: &Settings, limits: Option<(u32, u32)>, rows: usize) -> String {
    let n = done
        .iter()
        .map(|d| d.forecast.point.len())
        .min()
        .unwrap_or(0);
    let block = n.div_ceil(rows.max(1)).max(1);
    let many = done.len() > 1;
    let any_target = done.iter().any(|d| d.job.target.is_some());
    let mut header = vec!["time".to_string()];
    for d in done {
        let p = if many {
            format!("{} ", d.job.name)
        } else {
            String::new()
        };
        header.push(format!("{p}point"));
        header.push(format!("{p}upper"));
        if many && d.job.target.is_some() {
            header.push(format!("{p}replicas"));
        }
    }
    if any_target {
        header.push("replicas".into());
    }
    let mut lines = vec![header];
    let start = done[0].forecast.start;
    for b in (0..n).step_by(block) {
        let idx = b..(b + block).min(n);
        let mut row = vec![time(start + b as i64 * settings.step)];
        for d in done {
            let max = |v: &[f64]| idx.clone().map(|i| v[i]).fold(f64::NAN, f64::max);
            row.push(format!("{:.2}", max(&d.forecast.point)));
            let upper = max(&d.forecast.upper);
            row.push(format!("{upper:.2}"));
            if many && let Some(t) = d.job.target {
                row.push(replicas(upper, t).to_string());
            }
        }
        if any_target {
            let r = idx.clone().filter_map(|i| combined(done, i, limits)).max();
            row.push(r.map(|r| r.to_string()).unwrap_or_default());
        }
        lines.push(row);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::from("\n");
    if block > 1 {
        out.push_str(&format!(
            "each row: the maximum over {block} steps ({})\n",
            format_duration(std::time::Duration::from_secs(
                (block as i64 * settings.step) as u64
            ))
        ));
    }
    for l in &lines {
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
    if any_target
        && let Some((i, r)) = (0..n)
            .filter_map(|i| combined(done, i, limits).map(|r| (i, r)))
            .max_by_key(|(i, r)| (*r, std::cmp::Reverse(*i)))
    {
        out.push_str(&format!(
            "\npeak: {r} replicas at {} (replicas = ceil(upper / targetPerReplica){}; prescale sets them \
             leadTime before)\n",
            time(start + i as i64 * settings.step),
            if done.len() > 1 {
                ", the maximum over metrics"
            } else {
                ""
            }
        ));
    }
    out
}

/// A chart: per metric, the recent history with the forecast and its band; below, the
/// replicas the forecast implies.
fn write_plot(
    path: &std::path::Path,
    done: &[Done],
    settings: &Settings,
    limits: Option<(u32, u32)>,
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

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    done: &[Done],
    settings: &Settings,
    limits: Option<(u32, u32)>,
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
    // as much history as 3 horizons, at least 6 hours
    let shown = (3 * settings.horizon).max(6 * 3_600);
    let from = (start_fc - shown) as f64;
    let to = end as f64;
    let fmt_x = |x: &f64| {
        jiff::Timestamp::from_second(*x as i64)
            .map(|t| t.strftime("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let mut panels = root.split_evenly((done.len() + 1, 1));
    let replicas_panel = panels.pop().expect("one more than metrics");
    let font = |size: f64| (family, size).into_font();
    let title = TextStyle::from((family, 15.0).into_font()).color(&BLACK);
    for (d, area) in done.iter().zip(&panels) {
        // text is placed, never measured: SVG output needs no font
        let (head, area) = area.split_vertically(24);
        head.draw_text(
            &format!("{} ({}): {}", d.job.name, d.forecast.model, d.job.query),
            &title,
            (60, 4),
        )?;
        let hist: Vec<(f64, f64)> = (0..d.history.len())
            .map(|i| (d.history.time_of(i) as f64, d.history.values[i]))
            .filter(|(t, v)| *t >= from && v.is_finite())
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
            .build_cartesian_2d(from..to, 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&fmt_x)
            .y_label_formatter(&|y| number(*y))
            .label_style(font(12.0))
            .light_line_style(TRANSPARENT)
            .draw()?;
        let mut band: Vec<(f64, f64)> = fc.iter().map(|p| (p.0, p.1)).collect();
        band.extend(fc.iter().rev().map(|p| (p.0, p.2.max(p.1))));
        chart.draw_series(std::iter::once(Polygon::new(
            band,
            RGBColor(245, 160, 60).mix(0.3).filled(),
        )))?;
        chart.draw_series(LineSeries::new(hist, RGBColor(40, 40, 40).stroke_width(1)))?;
        chart.draw_series(LineSeries::new(
            fc.iter().map(|p| (p.0, p.1)),
            RGBColor(230, 120, 0).stroke_width(2),
        ))?;
    }
    let reps: Vec<(f64, u32)> = (0..done[0].forecast.point.len())
        .filter_map(|i| {
            combined(done, i, limits).map(|r| ((start_fc + i as i64 * settings.step) as f64, r))
        })
        .collect();
    let rmax = reps.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let (head, replicas_panel) = replicas_panel.split_vertically(24);
    head.draw_text("replicas the forecast implies", &title, (60, 4))?;
    let mut chart = ChartBuilder::on(&replicas_panel)
        .x_label_area_size(24)
        .y_label_area_size(60)
        .build_cartesian_2d(from..to, 0.0..rmax)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(font(12.0))
        .light_line_style(TRANSPARENT)
        .draw()?;
    let mut steps = Vec::with_capacity(reps.len() * 2);
    for (i, (t, r)) in reps.iter().enumerate() {
        if i > 0 {
            steps.push((*t, reps[i - 1].1 as f64));
        }
        steps.push((*t, *r as f64));
    }
    chart.draw_series(LineSeries::new(
        steps,
        RGBColor(31, 119, 180).stroke_width(2),
    ))?;
    Ok(())
}
