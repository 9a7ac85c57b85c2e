//! `prescale simulate --duration-column`: concurrency sizing (Little's law) on a trace with
//! request durations, scored against its true concurrency, and with `--compare-rate` the same
//! trace sized on the arrival rate alone, for comparison. The engine is
//! [`crate::sim::concurrency`]; this module reads the extra columns, resolves the settings and
//! prints the comparison.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};

use super::simulate::Resolved;
use crate::{
    api::duration::format_duration,
    planner::Series,
    sim::{
        self, SimReport, UTILISATION,
        concurrency::{self as conc, Concurrency},
        trace,
    },
};

/// Flags of concurrency sizing in `simulate`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConcurrencyFlags {
    /// Size on concurrent requests (Little's law), as a metric with `concurrency` does: the
    /// column holding, per row, the summed duration in seconds of the requests the value
    /// column counts (e.g. `exec_seconds`). The value column is forecast as the arrivals;
    /// each decision sizes on arrivals x the mean duration of the --duration-window before it
    /// (the newest such mean of the last hour), with --target-per-replica in concurrent requests; every plan
    /// is scored against --score-column. Needs --input.
    #[arg(long)]
    pub duration_column: Option<String>,
    /// With --duration-column: the column of the true mean concurrency, what every plan is
    /// scored against (a violation: more in flight than ready replicas x
    /// targetPerReplica / 0.8) [default: concurrency].
    #[arg(long, requires = "duration_column")]
    pub score_column: Option<String>,
    /// With --duration-column: also size the same trace on the arrival rate alone (an HPA-style
    /// requests-per-replica target), scored against the same concurrency: at the target
    /// converted with the mean duration of the warm-up (targetPerReplica / mean duration), and
    /// at the target that spends concurrency sizing's replica-steps (bisection, 8 runs); print
    /// the comparison.
    #[arg(long, requires = "duration_column")]
    pub compare_rate: bool,
    /// With --duration-column: the window the mean duration is taken over, as the range of
    /// the duration query's rate() [default: 5m].
    #[arg(long, requires = "duration_column")]
    pub duration_window: Option<String>,
}

/// The extra columns of a trace with durations.
#[derive(Debug, Clone)]
pub struct DurationTrace {
    pub duration_column: String,
    /// Rows the mean duration is taken over.
    pub window: usize,
    pub score_column: String,
    /// The summed request durations of each row (seconds).
    pub busy: Vec<f64>,
    /// The true concurrency of each row, as a series (for the default target).
    pub scored: Series,
}

impl DurationTrace {
    /// The simulation's concurrency settings: sizing on the arrivals in `series` at the
    /// durations known at each row, scored on the true concurrency at `streams_per_replica`.
    pub fn sizing(&self, series: &Series, streams_per_replica: f64) -> Concurrency {
        Concurrency {
            durations: Some(
                conc::known_durations(&series.values, &self.busy, series.step, self.window).into(),
            ),
            scored: Arc::from(self.scored.values.as_slice()),
            streams_per_replica,
        }
    }
}

/// Reads the duration and score columns of `--input`, when `--duration-column` is given; they
/// must line up with `series` (the value column of the same file).
pub fn read(
    flags: &ConcurrencyFlags,
    input: Option<&std::path::Path>,
    series: &Series,
) -> anyhow::Result<Option<DurationTrace>> {
    let Some(duration_column) = &flags.duration_column else {
        return Ok(None);
    };
    let Some(path) = input else {
        bail!("--duration-column reads a trace file: give --input");
    };
    let score_column = flags
        .score_column
        .clone()
        .unwrap_or_else(|| "concurrency".into());
    let column = |name: &str| -> anyhow::Result<Series> {
        let t = trace::read_trace(path, Some(name))
            .with_context(|| format!("--duration-column/--score-column: {}", path.display()))?;
        if t.series.len() != series.len() || t.series.start != series.start {
            bail!("column {name} does not line up with the value column");
        }
        Ok(t.series)
    };
    let window = match &flags.duration_window {
        None => conc::DURATION_WINDOW_STEPS,
        Some(w) => {
            let w = crate::api::duration::parse_duration(w)
                .map_err(|e| anyhow::anyhow!("--duration-window: {e}"))?;
            let steps = w.as_secs() as i64 / series.step;
            if steps < 1 {
                bail!("--duration-window must be at least one step of the trace");
            }
            steps as usize
        }
    };
    Ok(Some(DurationTrace {
        window,
        busy: column(duration_column)?.values,
        scored: column(&score_column)?,
        duration_column: duration_column.clone(),
        score_column,
    }))
}

/// The summary's line about concurrency sizing.
pub fn write_settings(out: &mut String, r: &Resolved) {
    let (Some(d), Some(c)) = (&r.durations, &r.settings.concurrency) else {
        return;
    };
    let _ = writeln!(
        out,
        "  concurrency sizing: {} x mean duration ({}, {}-step mean, held up to 1h), {} streams/replica; \
         scored against {} (capacity {:.3} streams/replica)",
        r.column,
        d.duration_column,
        d.window,
        c.streams_per_replica,
        d.score_column,
        c.streams_per_replica / UTILISATION
    );
}

/// `--compare-rate`: concurrency sizing, then rate sizing at the mean-duration target and at
/// concurrency sizing's budget, all scored against the true concurrency; prints the table.
pub fn run_comparison(r: &Resolved) -> anyhow::Result<()> {
    let Some(d) = &r.durations else {
        bail!("--compare-rate needs --duration-column");
    };
    let started = std::time::Instant::now();
    let s = &r.settings;
    let streams = s.score_target();
    let by_concurrency = sim::simulate(&r.series, s);
    let warm = s.warmup_steps.min(r.series.len());
    let rows = if warm > 0 { warm } else { r.series.len() };
    let mean = conc::mean_duration(&r.series.values[..rows], &d.busy[..rows])
        .context("no request in the rows the mean duration is taken from")?;
    let step = r.series.step as f64;
    // a replica carries `streams` requests at once; at the mean duration that is this many
    // arrivals per step
    let converted = streams / (mean / step);
    let rate = |target: f64| {
        let mut at = s.clone();
        at.target_per_replica = target;
        if let Some(c) = &mut at.concurrency {
            c.durations = None;
        }
        if let Some(sizing) = &mut at.forecast.sizing {
            sizing.target_per_replica = target;
        }
        sim::simulate(&r.series, &at)
    };
    let by_mean = rate(converted);
    let budget = by_concurrency.prescale.replica_steps;
    let at_budget =
        conc::rate_target_at_budget(budget, (converted / 8.0, converted * 8.0), 6, rate);
    let mut out = String::new();
    let c = Comparison {
        r,
        d,
        mean,
        converted,
        by_concurrency: &by_concurrency,
        by_mean: &by_mean,
        at_budget: &at_budget,
    };
    c.write(&mut out);
    let _ = writeln!(out, "  total {:.1} s", started.elapsed().as_secs_f64());
    print!("{out}");
    Ok(())
}

/// Everything the comparison table shows.
struct Comparison<'a> {
    r: &'a Resolved,
    d: &'a DurationTrace,
    /// The mean duration (seconds) the converted target uses.
    mean: f64,
    /// The rate target (arrivals per step) of the mean-duration conversion.
    converted: f64,
    by_concurrency: &'a SimReport,
    by_mean: &'a SimReport,
    at_budget: &'a [(f64, SimReport)],
}

impl Comparison<'_> {
    /// The whole table: the settings, a row per sizing, the baselines, the budget line.
    fn write(&self, out: &mut String) {
        self.write_header(out);
        self.write_rows(out);
        self.write_footer(out);
    }

    /// What was compared, with the mean-duration conversion.
    fn write_header(&self, out: &mut String) {
        let r = self.r;
        let s = &r.settings;
        let streams = s.score_target();
        let step = format_duration(Duration::from_secs(r.series.step as u64));
        let _ = writeln!(out, "prescale simulate --compare-rate: {}", r.label);
        let _ = writeln!(
            out,
            "  arrivals {}, durations {} ({}-step mean), scored against {} at {streams} streams/replica (capacity {:.3}); \
             lead {}, startup {} steps, {} rows at {step}, {} scored after {} warm-up",
            r.column,
            self.d.duration_column,
            self.d.window,
            self.d.score_column,
            streams / UTILISATION,
            format_duration(r.lead_time),
            s.startup_steps,
            r.series.len(),
            self.by_concurrency.scored_rows,
            format_duration(r.warmup),
        );
        let _ = writeln!(
            out,
            "  rate targets in arrivals per {step}; mean duration {:.2} s over {} -> \
             {streams} streams / {:.2} s = {:.4} arrivals per {step} per replica",
            self.mean,
            if r.warmup.is_zero() {
                "the whole trace".to_string()
            } else {
                format!("the {} warm-up", format_duration(r.warmup))
            },
            self.mean,
            self.converted
        );
    }

    /// A row per sizing with its equal-budget ratio, then the reactive baseline and the oracle.
    fn write_rows(&self, out: &mut String) {
        let streams = self.r.settings.score_target();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<34} {:>12} {:>11} {:>11} {:>14} {:>14}",
            "sizing", "target", "violations", "unserved %", "replica-steps", "equal-budget"
        );
        let row = |out: &mut String, name: &str, target: String, rep: &SimReport| {
            let p = &rep.prescale;
            let ratio = match &rep.reactive_at_cost {
                Some((_, same)) if same.violation_steps > 0 => format!(
                    "{:.2}x",
                    p.violation_steps as f64 / same.violation_steps as f64
                ),
                Some(_) => "n/a".into(),
                None => "out of range".into(),
            };
            let _ = writeln!(
                out,
                "  {:<34} {:>12} {:>11} {:>11.3} {:>14} {:>14}",
                name, target, p.violation_steps, p.unserved_pct, p.replica_steps, ratio
            );
        };
        row(
            out,
            "concurrency (Little's law)",
            format!("{streams} str"),
            self.by_concurrency,
        );
        row(
            out,
            "rate, mean-duration target",
            format!("{:.4}", self.converted),
            self.by_mean,
        );
        for (i, (target, rep)) in self.at_budget.iter().enumerate() {
            let name = if i == 0 {
                "rate, nearest the same budget"
            } else {
                "rate, other side of the budget"
            };
            row(out, name, format!("{target:.4}"), rep);
        }
        let base = &self.by_concurrency;
        for (name, sc) in [
            ("reactive on concurrency", &base.reactive),
            ("oracle", &base.oracle),
        ] {
            let _ = writeln!(
                out,
                "  {:<34} {:>12} {:>11} {:>11.3} {:>14}",
                name,
                format!("{streams} str"),
                sc.violation_steps,
                sc.unserved_pct,
                sc.replica_steps
            );
        }
    }

    /// The comparison at concurrency sizing's budget, and what equal-budget means.
    fn write_footer(&self, out: &mut String) {
        let base = &self.by_concurrency;
        let budget = base.prescale.replica_steps;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  at concurrency sizing's budget ({budget} replica-steps): concurrency {} violation steps, \
             rate {:.1} (interpolated between the two rate runs around it)",
            base.prescale.violation_steps,
            conc::interpolate_violations(self.at_budget, budget)
        );
        let _ = writeln!(
            out,
            "  equal-budget = violation steps / those of the reactive baseline on the true concurrency \
             (an HPA on in-flight requests) given the same replica-steps; below 1.0: more safety per replica"
        );
    }
}
