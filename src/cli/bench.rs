//! `prescale bench`: prints the figures the speed goals are judged by: fit time per scaler
//! (median, p95), the time of a 14-day simulation, and peak memory. Figures, not assertions.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use augurs::{ets::AutoETS, mstl::MSTLModel, prelude::*};

use crate::{
    cli::simulate::{self, SimulateArgs},
    planner::{ForecastSettings, ModelKind, Series, fit_forecast, select_model},
    sim::synthetic::synthetic_trace,
};

/// Flags of `prescale bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// How many fits to time per model.
    #[arg(long, default_value_t = 30)]
    pub fits: usize,
    /// Skip the 14-day simulation (the slow part).
    #[arg(long)]
    pub no_simulate: bool,
    /// Also time augurs' stock MSTL+AutoETS on the full 1-minute series (~0.5 s a fit).
    #[arg(long)]
    pub baseline: bool,
    /// Instead: the operator's work for this many PredictiveScalers (history, fits, steady
    /// reconciles, memory), e.g. 1000.
    #[arg(long)]
    pub scalers: Option<usize>,
    /// Steady reconcile rounds over the fleet, with --scalers.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// The median and p95 of `v`, in milliseconds.
fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| super::percentile(&v, p).as_secs_f64() * 1e3;
    (at(0.5), at(0.95))
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    proc_status_mib("VmHWM:")
}

/// A memory field of /proc/self/status (e.g. `VmRSS:`, `VmHWM:`), in MiB (Linux only).
pub fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time this process has used so far, all threads, user and system, in seconds (Linux
/// only): on a shared machine a wall time says little, the CPU time of a phase says what it
/// would take on idle cores.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the fields after the command name (which may hold spaces), from field 3 on
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s on Linux
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// A day of 1-minute steps.
const DAY: usize = 1440;

/// Runs the benchmark and returns the table.
pub fn run(args: &BenchArgs) -> anyhow::Result<String> {
    let mut out = String::new();
    let series = synthetic_trace(42, 21, 60);
    let n = args.fits.max(2);
    let _ = writeln!(
        out,
        "prescale bench: 14 days of 1-minute history (20,160 points), {n} fits each, {} threads available",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  {:<44} {:>12} {:>12}",
        "fit (history -> forecast of 2h)", "median ms", "p95 ms"
    );
    let mut row = |label: &str, (median, p95): (f64, f64)| {
        let _ = writeln!(out, "  {label:<44} {median:>12.1} {p95:>12.1}");
    };
    for (label, model) in [
        ("Auto (default MSTL, backtest, margin)", ModelKind::Auto),
        ("MSTL(1d,7d)+AutoETS", ModelKind::Mstl),
        ("SeasonalNaive", ModelKind::SeasonalNaive),
        ("ETS", ModelKind::Ets),
    ] {
        row(label, stats(time_fits(&series, model, n, label)?));
    }
    row(
        "Auto model selection (once per 6 h)",
        stats(time_selections(&series, n.min(10))),
    );
    if args.baseline {
        row(
            "augurs stock MSTL+AutoETS, full 1-min (3 fits)",
            stats(time_augurs(&series)?),
        );
    }
    if !args.no_simulate {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", time_simulation(&series)?);
    }
    let _ = writeln!(
        out,
        "  peak memory (VmHWM): {}",
        peak_rss_mib()
            .map(|m| format!("{m:.1} MiB"))
            .unwrap_or_else(|| "n/a".into())
    );
    Ok(out)
}

/// The `k`th 14-day window of `series`: each a little later, so no two fits are alike.
fn window(series: &Series, k: usize) -> Series {
    let end = 14 * DAY + k * 37;
    Series::new(
        series.time_of(end - 14 * DAY),
        60,
        series.values[end - 14 * DAY..end].to_vec(),
    )
}

/// `n` fits of `model`, as the controller fits: with the calibrated margin, the default
/// budget, a 5m lead at 30s evaluations, 15m stabilisation, 10%/min down, and a target of a
/// twenty-fifth of the peak.
fn time_fits(
    series: &Series,
    model: ModelKind,
    n: usize,
    label: &str,
) -> anyhow::Result<Vec<Duration>> {
    let peak = series.values.iter().copied().fold(0.0, f64::max);
    let settings = ForecastSettings {
        sizing: Some(crate::planner::Sizing::new(
            Duration::from_secs(300),
            Duration::from_secs(30),
            Duration::from_secs(900),
            10,
            60,
            (peak / 25.0).max(1e-9),
            None,
        )),
        ..ForecastSettings::new(model, vec![], 120, 0.9, 60)
    };
    let mut times = Vec::with_capacity(n);
    for k in 0..n {
        let s = window(series, k);
        let began = Instant::now();
        fit_forecast(&s, &settings).map_err(|e| anyhow::anyhow!("{label}: {e}"))?;
        times.push(began.elapsed());
    }
    Ok(times)
}

/// `n` of `Auto`'s model selections: run once per 6-hour epoch, not per fit.
fn time_selections(series: &Series, n: usize) -> Vec<Duration> {
    let settings = ForecastSettings::new(ModelKind::Auto, vec![], 120, 0.9, 60);
    (0..n)
        .map(|k| {
            let s = window(series, k);
            let began = Instant::now();
            select_model(&s, &settings, 0);
            began.elapsed()
        })
        .collect()
}

/// Three fits of augurs' stock MSTL+AutoETS on the full 1-minute series.
fn time_augurs(series: &Series) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for k in 0..3 {
        let s = window(series, k);
        let began = Instant::now();
        let model = MSTLModel::new(
            vec![1440, 10080],
            AutoETS::non_seasonal().into_trend_model(),
        );
        let fitted = model
            .fit(&s.values)
            .map_err(|e| anyhow::anyhow!("augurs: {e}"))?;
        fitted
            .predict(120, 0.8)
            .map_err(|e| anyhow::anyhow!("augurs: {e}"))?;
        times.push(began.elapsed());
    }
    Ok(times)
}

/// A `prescale simulate` of the first 14 days of `series`, as the CLI resolves it for a
/// trace file: its time, in one line.
fn time_simulation(series: &Series) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("prescale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("14d.csv");
    let fourteen = Series::new(series.start, 60, series.values[..14 * DAY].to_vec());
    std::fs::write(
        &path,
        crate::sim::synthetic::write_csv(&fourteen, "requests"),
    )?;
    let r = simulate::resolve(&trace_file_args(path))?;
    let began = Instant::now();
    let report = crate::sim::simulate(&r.series, &r.settings);
    let elapsed = began.elapsed();
    std::fs::remove_dir_all(&dir).ok();
    Ok(format!(
        "  simulate 14 days at 1 minute, refresh 10m: {:.1} s ({} fits on {} threads)",
        elapsed.as_secs_f64(),
        report.fits,
        r.settings.threads
    ))
}

/// `prescale simulate --input PATH` with every other flag at its default.
fn trace_file_args(path: std::path::PathBuf) -> SimulateArgs {
    SimulateArgs {
        input: Some(path),
        column: None,
        target_per_replica: None,
        spec: None,
        lead_time: None,
        startup: "5m".into(),
        min_replicas: None,
        max_replicas: None,
        refresh: None,
        quantile: None,
        model: None,
        seasonal_periods: None,
        stabilization_window: None,
        warmup: None,
        output: None,
        plot: None,
        threads: None,
        frontier: None,
        upstream_limit: None,
        query: None,
        scaler: None,
        source: "default".into(),
        lookback: None,
        step: None,
        sources: Default::default(),
        concurrency: Default::default(),
        group_columns: None,
        combine: "independent".into(),
        sizing: "margin".into(),
    }
}
