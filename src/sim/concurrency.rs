//! Concurrency sizing in the simulation (`prescale simulate --duration-column`): a trace whose
//! rows hold the arrivals (the value column), the summed duration of those requests and the true
//! mean concurrency. The scaler forecasts the arrivals and sizes with the planner's Little's law
//! rule ([`crate::planner::concurrency`]) at the duration it would have read; every plan (and the
//! reactive baseline and the oracle) is scored against the true concurrency, with the
//! streams one replica should carry as the target. Rate sizing (no durations) can be scored the
//! same way, which is how the two are compared ([`rate_target_at_budget`]). CPU only.

use std::sync::Arc;

use super::{SimReport, SimSettings};
use crate::planner::{
    ForecastSettings, NoForecast, Unavailable,
    concurrency::{DURATION_MAX_AGE, rate_per_replica},
};

/// Steps of the window the mean duration of a row is taken over by default: 5, as the example
/// duration query's `rate(..._sum[5m]) / rate(..._count[5m])` at a 1-minute step.
pub const DURATION_WINDOW_STEPS: usize = 5;

/// A trace with request durations.
#[derive(Debug, Clone)]
pub struct Concurrency {
    /// Concurrency sizing: each row's mean request duration, in steps, as the scaler knows it
    /// at the row's start (`None` in a row: no duration, the metric holds). `None`: the plan is
    /// sized on the arrivals themselves (rate sizing), scored as below.
    pub durations: Option<Arc<[Option<f64>]>>,
    /// The true mean concurrency of each row: what every plan is scored against.
    pub scored: Arc<[f64]>,
    /// Concurrent requests one replica should carry (the scored capacity is this / 0.8).
    pub streams_per_replica: f64,
}

/// For row `t`: `None` without concurrency sizing; `Some(None)` when no duration is known at
/// its start; else `Some(Some(duration))`, in steps.
pub fn duration_at(s: &SimSettings, t: usize) -> Option<Option<f64>> {
    let durations = s.concurrency.as_ref()?.durations.as_ref()?;
    Some(durations.get(t).copied().flatten())
}

/// Why a row has no duration: the simulated metric holds, as the controller's does.
pub fn unknown_duration() -> Unavailable {
    Unavailable::new(
        NoForecast::DurationUnavailable,
        "no request in the last hour: no duration",
    )
}

/// The forecast settings of a fit at row `t`: with concurrency sizing, the calibrated margin
/// counts replicas of the arrivals at the newest duration known by then (as the controller
/// calibrates with the duration of the moment it fits).
pub fn fit_settings(s: &SimSettings, t: usize) -> ForecastSettings {
    let mut settings = s.forecast.clone();
    let known = s
        .concurrency
        .as_ref()
        .and_then(|c| c.durations.as_ref())
        .and_then(|d| {
            d[..=t.min(d.len().saturating_sub(1))]
                .iter()
                .rev()
                .find_map(|x| *x)
        });
    if let (Some(d), Some(sizing)) = (known, settings.sizing.as_mut()) {
        sizing.target_per_replica = rate_per_replica(sizing.target_per_replica, d);
    }
    settings
}

/// The duration the scaler knows at the start of each row, in steps: the mean of the `window`
/// rows before it (`busy / requests`, `busy` in seconds, rows of `step` seconds), or, when
/// those hold no request, the newest such mean of the last [`DURATION_MAX_AGE`]: the
/// controller's reading of `rate(_sum[w]) / rate(_count[w])` (`w` = 5m for
/// [`DURATION_WINDOW_STEPS`] at 1m).
/// (The durations of a row's requests are known at its end here; a histogram records each at
/// completion, so for requests longer than a step the simulation knows them a little early.)
pub fn known_durations(
    requests: &[f64],
    busy: &[f64],
    step: i64,
    window: usize,
) -> Vec<Option<f64>> {
    let n = requests.len().min(busy.len());
    let w = window.max(1);
    let max_age = (DURATION_MAX_AGE / step.max(1)).max(1) as usize;
    // means[e]: the mean over rows [e - w, e), known at the start of row e
    let means: Vec<Option<f64>> = (0..n)
        .map(|e| {
            let from = e.saturating_sub(w);
            let (r, b) = (from..e).fold((0.0, 0.0), |(r, b), i| {
                let ok = requests[i].is_finite() && busy[i].is_finite();
                if ok {
                    (r + requests[i], b + busy[i])
                } else {
                    (r, b)
                }
            });
            (r > 0.0 && b > 0.0).then(|| b / r / step as f64)
        })
        .collect();
    let mut newest: Option<(usize, f64)> = None;
    (0..n)
        .map(|t| {
            if let Some(m) = means[t] {
                newest = Some((t, m));
            }
            newest.filter(|(at, _)| t - at < max_age).map(|(_, m)| m)
        })
        .collect()
}

/// The mean request duration over `rows` (seconds): all the busy time over all the requests.
pub fn mean_duration(requests: &[f64], busy: &[f64]) -> Option<f64> {
    let (r, b) = requests
        .iter()
        .zip(busy)
        .filter(|(r, b)| r.is_finite() && b.is_finite())
        .fold((0.0, 0.0), |(r, b), (x, y)| (r + x, b + y));
    (r > 0.0 && b > 0.0).then_some(b / r)
}

/// Rate sizing at a replica budget: the plan with the arrival-rate target whose replica-steps
/// come nearest `budget`, searched by bisection (on a log scale, `iterations` runs of `run`)
/// between `lo` and `hi` (a higher target spends fewer replicas). Returns the two runs that
/// bracket the budget, nearest first, with their targets (one when the range does not reach
/// it), so the violations at the budget can be interpolated ([`interpolate_violations`]).
pub fn rate_target_at_budget(
    budget: u64,
    (mut lo, mut hi): (f64, f64),
    iterations: usize,
    run: impl Fn(f64) -> SimReport,
) -> Vec<(f64, SimReport)> {
    let cost = |r: &SimReport| r.prescale.replica_steps;
    let (mut at_lo, mut at_hi) = (run(lo), run(hi));
    if cost(&at_lo) < budget {
        return vec![(lo, at_lo)];
    }
    if cost(&at_hi) > budget {
        return vec![(hi, at_hi)];
    }
    for _ in 0..iterations {
        let mid = (lo * hi).sqrt();
        let r = run(mid);
        if cost(&r) >= budget {
            (lo, at_lo) = (mid, r);
        } else {
            (hi, at_hi) = (mid, r);
        }
    }
    let gap = |r: &SimReport| cost(r).abs_diff(budget);
    if gap(&at_lo) <= gap(&at_hi) {
        vec![(lo, at_lo), (hi, at_hi)]
    } else {
        vec![(hi, at_hi), (lo, at_lo)]
    }
}

/// The violation steps at `budget` replica-steps, linear between the two bracketing runs of
/// [`rate_target_at_budget`] (the one run's own with one).
pub fn interpolate_violations(runs: &[(f64, SimReport)], budget: u64) -> f64 {
    match runs {
        [(_, a), (_, b), ..] => {
            let (ca, cb) = (
                a.prescale.replica_steps as f64,
                b.prescale.replica_steps as f64,
            );
            let (va, vb) = (
                a.prescale.violation_steps as f64,
                b.prescale.violation_steps as f64,
            );
            if (cb - ca).abs() < f64::EPSILON {
                va
            } else {
                va + (budget as f64 - ca) / (cb - ca) * (vb - va)
            }
        }
        [(_, a)] => a.prescale.violation_steps as f64,
        [] => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_known_at_a_row_is_the_mean_of_the_five_before_held_for_an_hour() {
        // one request of 120 s in row 0, then nothing; 2 requests of 30 s each in row 70
        let mut requests = vec![0.0; 80];
        let mut busy = vec![0.0; 80];
        requests[0] = 1.0;
        busy[0] = 120.0;
        requests[70] = 2.0;
        busy[70] = 60.0;
        let d = known_durations(&requests, &busy, 60, DURATION_WINDOW_STEPS);
        assert_eq!(d[0], None, "nothing is known before the first row ends");
        assert_eq!(d[1], Some(2.0), "120 s is two steps of a minute");
        assert_eq!(d[5], Some(2.0), "in the five rows' mean until row 5");
        assert_eq!(d[64], Some(2.0), "then held while idle...");
        assert_eq!(d[65], None, "...for an hour");
        assert_eq!(d[71], Some(0.5));
        assert_eq!(d[75], Some(0.5));
    }

    fn report(replica_steps: u64, violation_steps: usize) -> SimReport {
        let score = super::super::Score {
            violation_steps,
            unserved_pct: 0.0,
            replica_steps,
        };
        SimReport {
            rows: Vec::new(),
            prescale: score,
            reactive: score,
            oracle: score,
            scored_rows: 0,
            fits: 0,
            fit_times: Vec::new(),
            models: Vec::new(),
            selection_times: Vec::new(),
            quantiles: Vec::new(),
            reactive_at_cost: None,
            upstream: None,
        }
    }

    #[test]
    fn the_rate_target_at_a_budget_is_bracketed_and_its_violations_interpolated() {
        // cost 1000 / target replica-steps, violations 10 x target
        let run = |target: f64| report((1000.0 / target) as u64, (10.0 * target) as usize);
        let runs = rate_target_at_budget(400, (1.0, 10.0), 20, run);
        assert_eq!(runs.len(), 2);
        assert!((runs[0].0 - 2.5).abs() < 0.01, "{}", runs[0].0);
        let v = interpolate_violations(&runs, 400);
        // (whole replica-steps and violations: within one of the exact 25)
        assert!((v - 25.0).abs() <= 1.0, "{v}");
        // out of range: the end of the range, alone
        let runs = rate_target_at_budget(5000, (1.0, 10.0), 20, run);
        assert_eq!((runs.len(), runs[0].0), (1, 1.0));
    }

    #[test]
    fn the_mean_duration_is_all_the_busy_time_over_all_the_requests() {
        assert_eq!(mean_duration(&[1.0, 3.0], &[10.0, 30.0]), Some(10.0));
        assert_eq!(mean_duration(&[0.0], &[0.0]), None);
        assert_eq!(mean_duration(&[f64::NAN, 2.0], &[5.0, 8.0]), Some(4.0));
    }
}
