//! `prescale simulate --group-columns`: a multi-column trace replayed bottom-up, as the
//! controller runs a metric with `groupBy` ([`planner::group::fit_group`]): at each refit the
//! summed series is fitted (its calibrated margin sizes the replicas) and every column is
//! fitted on its own; the plan uses the combined forecast. The same fits also give the
//! out-of-sample error of the forecast peak over the lead window, for the total's own
//! forecast (the aggregate) and for both ways to combine the columns' bands, so one run
//! answers "does bottom-up beat forecasting the sum?".
//!
//! CPU only; fits run on worker threads, one selection epoch per task (the first fit of an
//! epoch chooses `Auto`'s model for the total and every column, the others reuse it, as in the
//! controller).

use std::{collections::BTreeMap, time::Instant};

use super::{Fit, Fitted, SimReport, SimSettings, fit_rows, par_map, report};
use crate::planner::{
    Forecast, ModelKind, Series, Unavailable, choice,
    group::{self, Combine, GroupForecast, Part},
};

/// The outcome of [`simulate_grouped`].
#[derive(Debug, Clone)]
pub struct GroupReport {
    /// The plan made with the combined forecast, scored on the summed load.
    pub report: SimReport,
    /// The forecast peak's error per way of forecasting, in the order of [`VARIANTS`].
    pub errors: Vec<PeakError>,
    /// Columns fitted (live, not vanished) per refit, on average.
    pub mean_series: f64,
}

/// The ways of forecasting the total that [`GroupReport::errors`] compares.
pub const VARIANTS: [&str; 3] = [
    "aggregate (forecast the sum)",
    "bottom-up, independent (default)",
    "bottom-up, comonotone",
];

/// How well a forecast saw the peak of the lead window coming, over the scored rows: at each
/// row `t`, the actual peak `a = max(load[t ..= t + startup])` against the forecast's highest
/// point `p` and highest upper band `u` over the same steps.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PeakError {
    pub rows: usize,
    /// `sum |a - p| / sum a`.
    pub point_wape: f64,
    /// Pinball loss of `u` at the band's quantile, over `sum a` (lower is better).
    pub pinball: f64,
    /// Share of rows with `a <= u` (the band's quantile, when calibrated).
    pub coverage: f64,
    /// Mean `u` over mean `a`: how much headroom the band carries.
    pub upper_ratio: f64,
}

/// One refit of the group: the row it is made at, the total's own forecast and the columns'.
struct GroupFitAt {
    at: usize,
    total: Option<Forecast>,
    group: GroupForecast,
}

/// Replays the sum of `parts` (all on one grid) walk-forward, planning with the columns'
/// forecasts combined by `rule`, and measures every variant's peak error.
pub fn simulate_grouped(
    parts: &[Part],
    s: &SimSettings,
    rule: Combine,
    progress: &(dyn Fn() + Sync),
) -> Option<GroupReport> {
    let total = group::sum_parts(parts)?;
    let (fitted, groups) = fit_all_grouped(&total, parts, s, rule, progress);
    let mean_series = if groups.is_empty() {
        0.0
    } else {
        groups.iter().map(|g| g.group.parts.len()).sum::<usize>() as f64 / groups.len() as f64
    };
    let errors = VARIANTS
        .iter()
        .enumerate()
        .map(|(i, _)| {
            peak_error(&total, s, &groups, |g| match i {
                0 => g.total.clone(),
                1 => g
                    .total
                    .as_ref()
                    .map(|t| group::combine(t, &g.group, Combine::Independent)),
                _ => g
                    .total
                    .as_ref()
                    .map(|t| group::combine(t, &g.group, Combine::Comonotone)),
            })
        })
        .collect();
    Some(GroupReport {
        report: report(&total, s, fitted),
        errors,
        mean_series,
    })
}

/// Every refit of the run, one selection epoch per task.
fn fit_all_grouped(
    total: &Series,
    parts: &[Part],
    s: &SimSettings,
    rule: Combine,
    progress: &(dyn Fn() + Sync),
) -> (Fitted, Vec<GroupFitAt>) {
    let at = fit_rows(total, s);
    let epoch_of = |t: usize| choice::selection_epoch(&s.scaler, total.time_of(t));
    let mut epochs: Vec<Vec<usize>> = Vec::new();
    for &t in &at {
        match epochs.last_mut() {
            Some(e) if epoch_of(e[0]) == epoch_of(t) => e.push(t),
            _ => epochs.push(vec![t]),
        }
    }
    let cut = |series: &Series, t: usize| {
        let from = t.saturating_sub(s.lookback_steps.max(1));
        Series::new(
            series.time_of(from),
            series.step,
            series.values[from..t].to_vec(),
        )
    };
    let done = par_map(&epochs, s.threads, |rows| {
        let mut previous = (None, BTreeMap::new());
        let mut out = Vec::with_capacity(rows.len());
        for &t in rows {
            let began = Instant::now();
            let history: Vec<Part> = parts
                .iter()
                .map(|p| Part {
                    labels: p.labels.clone(),
                    series: cut(&p.series, t),
                })
                .collect();
            let g = group::fit_group(
                &cut(total, t),
                &history,
                &s.forecast,
                epoch_of(t),
                (previous.0.clone(), &previous.1),
            );
            if s.forecast.model == ModelKind::Auto {
                previous = (g.selection.clone(), g.part_selections.clone());
            }
            let forecast = g
                .forecast(rule)
                .map_err(|e| Unavailable::from_forecast_error(&e));
            progress();
            out.push((
                Fit {
                    at: t,
                    forecast,
                    took: began.elapsed(),
                },
                GroupFitAt {
                    at: t,
                    total: g.total.ok(),
                    group: g.group,
                },
            ));
        }
        out
    });
    let (fits, groups) = done.into_iter().flatten().unzip();
    (
        Fitted {
            fits,
            selection_times: Vec::new(),
        },
        groups,
    )
}

/// [`PeakError`] of the forecasts `forecast_of` draws from each refit, over the scored rows
/// whose lead window lies in the trace.
fn peak_error(
    load: &Series,
    s: &SimSettings,
    groups: &[GroupFitAt],
    forecast_of: impl Fn(&GroupFitAt) -> Option<Forecast>,
) -> PeakError {
    let n = load.len();
    let window = s.startup_steps + 1;
    let (mut rows, mut abs, mut actual, mut pinball, mut covered, mut upper) =
        (0usize, 0.0, 0.0, 0.0, 0usize, 0.0);
    for (k, g) in groups.iter().enumerate() {
        let Some(fc) = forecast_of(g) else { continue };
        let q = fc
            .margins
            .as_ref()
            .map_or(s.forecast.quantile, |m| m.quantile);
        let until = groups.get(k + 1).map_or(n, |next| next.at);
        for t in g.at.max(s.warmup_steps)..until {
            if t + window > n {
                break;
            }
            let a = load.values[t..t + window]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .fold(f64::NAN, f64::max);
            let i = t - g.at;
            if !a.is_finite() || i + window > fc.point.len() {
                continue;
            }
            let p = fc.point[i..i + window].iter().copied().fold(0.0, f64::max);
            let u = fc.upper[i..i + window].iter().copied().fold(0.0, f64::max);
            rows += 1;
            abs += (a - p).abs();
            actual += a;
            upper += u;
            pinball += if a > u {
                q * (a - u)
            } else {
                (1.0 - q) * (u - a)
            };
            covered += usize::from(a <= u);
        }
    }
    let per = |x: f64| if actual > 0.0 { x / actual } else { 0.0 };
    PeakError {
        rows,
        point_wape: per(abs),
        pinball: per(pinball),
        coverage: if rows > 0 {
            covered as f64 / rows as f64
        } else {
            0.0
        },
        upper_ratio: per(upper),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        planner::{ForecastSettings, Policy},
        sim::simulate,
    };

    fn daily(days: usize, level: f64, phase: f64) -> Series {
        let n = days * 288;
        let v = (0..n)
            .map(|i| {
                let x = i as f64 / 288.0 * std::f64::consts::TAU + phase;
                level * (1.5 + x.sin()) + (i % 5) as f64
            })
            .collect();
        Series::new(0, 300, v)
    }

    fn settings(step: i64) -> SimSettings {
        SimSettings {
            target_per_replica: 40.0,
            startup_steps: 1,
            refresh_steps: 12,
            warmup_steps: 288,
            lookback_steps: 288 * 3,
            policy: Policy {
                min_replicas: 1,
                max_replicas: 100,
                lead_time: std::time::Duration::from_secs(300),
                interval: std::time::Duration::from_secs(step as u64),
                max_replicas_per_minute: 0,
                stabilization_window: std::time::Duration::from_secs(900),
                max_percent_per_minute: 0,
                fallback: Default::default(),
                fallback_headroom: 1.0,
                schedules: vec![],
                upstream: vec![],
            },
            forecast: ForecastSettings::new(ModelKind::Ets, vec![], 24, 0.9, step),
            threads: 2,
            concurrency: None,
            scaler: choice::UNNAMED_SCALER.into(),
        }
    }

    #[test]
    fn a_grouped_run_plans_on_the_sum_and_scores_every_variant() {
        let parts = vec![
            Part {
                labels: "model=a".into(),
                series: daily(2, 100.0, 0.0),
            },
            Part {
                labels: "model=b".into(),
                series: daily(2, 50.0, 2.0),
            },
        ];
        let s = settings(300);
        let g = simulate_grouped(&parts, &s, Combine::Independent, &|| {}).unwrap();
        let total = group::sum_parts(&parts).unwrap();
        assert_eq!(g.report.rows.len(), total.len());
        assert_eq!(g.errors.len(), VARIANTS.len());
        assert!(
            g.errors
                .iter()
                .all(|e| e.rows > 0 && e.point_wape.is_finite())
        );
        assert_eq!(g.mean_series, 2.0);
        // the comonotone band is never narrower than the independent one
        assert!(g.errors[2].upper_ratio >= g.errors[1].upper_ratio - 1e-9);
        // the plan is scored on the same load as a plain run of the sum
        let plain = simulate(&total, &s);
        assert_eq!(g.report.reactive, plain.reactive);
        assert_eq!(g.report.oracle, plain.oracle);
    }
}
