//! The evaluation behind `prescale simulate`: replay a load trace through the controller's own
//! forecaster and planner ([`planner::choice`], [`planner::plan`]), walking forward so the
//! decision for row `t` sees only the rows before it, and score the plan against a reactive
//! (HPA-like) baseline, that baseline given the plan's replica budget ([`reactive_at_cost`]),
//! and a perfect-foresight oracle. `docs/evaluation.md` describes the model and the scores.
//!
//! This file does no IO (fits run on worker threads). Of its modules, [`trace`] reads the trace
//! file and [`plot`] writes the image (and reads a font for PNG); [`synthetic`] and
//! [`frontier`] compute only. The CLI (`crate::cli::simulate`) fetches history from
//! Prometheus and writes the plan CSV.

pub mod concurrency;
pub mod frontier;
pub mod group;
pub mod plot;
pub mod synthetic;
pub mod trace;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::{
    api::conditions::{limit_reason, unavailable_reason},
    planner::{
        self, Forecast, ForecastSettings, MetricInput, ModelKind, NoForecast, PlannerState, Policy,
        Selection, Series, Unavailable, choice,
    },
};

/// Utilisation a reactive HPA is usually run at: capacity = targetPerReplica / 0.8.
pub const UTILISATION: f64 = 0.8;

/// How to run a simulation.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub target_per_replica: f64,
    /// Steps from asking for a replica to it serving.
    pub startup_steps: usize,
    /// Refit every this many steps.
    pub refresh_steps: usize,
    /// Leading rows left out of the score (they are still planned).
    pub warmup_steps: usize,
    /// Fits see at most this many of the latest rows (the spec's `history.lookback`).
    pub lookback_steps: usize,
    /// The scaler's policy; its `interval` is one step.
    pub policy: Policy,
    pub forecast: ForecastSettings,
    /// Worker threads for model fits (fits only see the past, so they can run ahead).
    pub threads: usize,
    /// The simulated scaler's `namespace/name`: `Auto`'s selection epochs are offset by it,
    /// as the controller's are ([`choice::selection_epoch`]).
    pub scaler: String,
    /// A trace with request durations: concurrency sizing, and scoring on the true
    /// concurrency ([`concurrency`]). `None`: the plan is sized and scored on the trace's values.
    pub concurrency: Option<concurrency::Concurrency>,
}

impl SimSettings {
    /// The load the plans are scored against: the true concurrency with
    /// [`SimSettings::concurrency`], else the trace's values.
    pub fn scored<'a>(&'a self, series: &'a Series) -> &'a [f64] {
        match &self.concurrency {
            Some(c) => &c.scored,
            None => &series.values,
        }
    }

    /// What one replica should carry of the scored load (capacity = this / [`UTILISATION`]).
    pub fn score_target(&self) -> f64 {
        self.concurrency
            .as_ref()
            .map_or(self.target_per_replica, |c| c.streams_per_replica)
    }
}

/// One row of the plan, for `--output`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub timestamp: i64,
    pub value: f64,
    /// The forecast in use for this step (point and upper quantile), if any.
    pub forecast: Option<f64>,
    pub upper: Option<f64>,
    pub desired: u32,
    pub reactive: u32,
    pub oracle: u32,
    pub reason: String,
}

/// How a plan fared (over the scored rows).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Score {
    pub violation_steps: usize,
    /// Load not served, as a percentage of all load.
    pub unserved_pct: f64,
    /// Sum of desired replicas.
    pub replica_steps: u64,
}

/// The outcome of [`simulate`].
#[derive(Debug, Clone)]
pub struct SimReport {
    pub rows: Vec<PlanRow>,
    pub prescale: Score,
    pub reactive: Score,
    pub oracle: Score,
    pub scored_rows: usize,
    pub fits: usize,
    /// Wall time of each fit.
    pub fit_times: Vec<Duration>,
    /// The models fitted, with how often each was chosen.
    pub models: Vec<(String, usize)>,
    /// Wall time of each `Auto` model selection.
    pub selection_times: Vec<Duration>,
    /// The quantile each fit's calibrated margin is for (chosen per fit under a budget).
    pub quantiles: Vec<f64>,
    /// The reactive baseline with its target lowered to spend prescale's replica-steps: the
    /// factor and its score (see [`reactive_at_cost`]).
    pub reactive_at_cost: Option<(f64, Score)>,
    /// With an upstream limit (`policy.upstream`): what its ceiling saved and cost.
    pub upstream: Option<UpstreamEffect>,
}

/// What the upstream ceiling did in a run: the same run without it, scored on the same trace.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UpstreamEffect {
    /// The quota as load per step of the trace.
    pub limit: f64,
    /// The plan without the ceiling.
    pub uncapped: Score,
    /// Scored rows whose count the ceiling lowered.
    pub limited_steps: usize,
    /// Scored rows whose load is above the quota: the upstream refuses the excess whatever the
    /// replicas.
    pub over_quota_steps: usize,
    /// The load above the quota, as a percentage of all load.
    pub over_quota_pct: f64,
    /// The plan with and without the ceiling, scored against the load the quota admits
    /// (`min(load, limit)`): the service a user could really get.
    pub admitted: Score,
    pub admitted_uncapped: Score,
}

/// Replays `series` walk-forward.
pub fn simulate(series: &Series, s: &SimSettings) -> SimReport {
    simulate_observed(series, s, &|| {})
}

/// How many model fits and selections [`simulate`] makes on `series`: the length of a
/// progress bar fed by [`simulate_observed`].
pub fn work_units(series: &Series, s: &SimSettings) -> usize {
    let at = fit_rows(series, s);
    let selections = if s.forecast.model == ModelKind::Auto {
        selection_firsts(&at, |t| {
            choice::selection_epoch(&s.scaler, series.time_of(t))
        })
        .len()
    } else {
        0
    };
    at.len() + selections
}

/// [`simulate`], calling `progress` after each model fit or selection (from worker threads).
pub fn simulate_observed(
    series: &Series,
    s: &SimSettings,
    progress: &(dyn Fn() + Sync),
) -> SimReport {
    let fitted = fit_all(series, s, progress);
    report(series, s, fitted)
}

/// Walks `series` forward with the fits made already (`fitted`) and scores the plan.
fn report(series: &Series, s: &SimSettings, fitted: Fitted) -> SimReport {
    let n = series.len();
    let (mut rows, limited) = walk_forward(series, s, &fitted.fits);
    let loads = s.scored(series);
    let reactive = reactive_plan(loads, s);
    let oracle = oracle_plan(loads, s);
    for (row, (r, o)) in rows.iter_mut().zip(reactive.iter().zip(&oracle)) {
        row.reactive = *r;
        row.oracle = *o;
    }
    if s.concurrency.is_some() {
        // the plan CSV and plot show the load the plan is scored against
        for (row, load) in rows.iter_mut().zip(loads) {
            row.value = *load;
        }
    }
    let desired: Vec<u32> = rows.iter().map(|r| r.desired).collect();
    let capacity = s.score_target() / UTILISATION;
    let warm = s.warmup_steps.min(n);
    let fits = &fitted.fits;
    let forecasts = || fits.iter().filter_map(|f| f.forecast.as_ref().ok());
    let prescale = score(loads, &desired, capacity, s.startup_steps, warm);
    let upstream = upstream_effect(series, s, &fitted.fits, &desired, &limited);
    SimReport {
        upstream,
        reactive_at_cost: reactive_at_cost(loads, s, prescale.replica_steps, warm),
        prescale,
        reactive: score(loads, &reactive, capacity, s.startup_steps, warm),
        oracle: score(loads, &oracle, capacity, s.startup_steps, warm),
        scored_rows: n - warm,
        fits: fits.len(),
        fit_times: fits.iter().map(|f| f.took).collect(),
        models: tally_models(forecasts().map(|fc| &fc.model)),
        selection_times: fitted.selection_times,
        quantiles: forecasts()
            .filter_map(|fc| fc.margins.as_ref().map(|m| m.quantile))
            .collect(),
        rows,
    }
}

/// With an upstream limit on the simulated metric: the plan replayed without it on the same
/// fits, both scored against the whole load and against the load the quota admits.
fn upstream_effect(
    series: &Series,
    s: &SimSettings,
    fits: &[Fit],
    desired: &[u32],
    limited: &[bool],
) -> Option<UpstreamEffect> {
    let q = s.policy.upstream.iter().find(|q| q.metric == SIM_METRIC)?;
    let limit = q.unit.load_of(q.per_minute?);
    let free = SimSettings {
        policy: Policy {
            upstream: Vec::new(),
            ..s.policy.clone()
        },
        ..s.clone()
    };
    let (rows, _) = walk_forward(series, &free, fits);
    let uncapped: Vec<u32> = rows.iter().map(|r| r.desired).collect();
    let loads = s.scored(series);
    let capacity = s.score_target() / UTILISATION;
    let warm = s.warmup_steps.min(loads.len());
    let scored = |l: &[f64], plan: &[u32]| score(l, plan, capacity, s.startup_steps, warm);
    let admitted: Vec<f64> = loads.iter().map(|l| l.min(limit)).collect();
    let (mut over, mut total) = (0.0, 0.0);
    let mut over_quota_steps = 0;
    for &l in loads[warm..].iter().filter(|l| l.is_finite()) {
        total += l;
        if l > limit {
            over += l - limit;
            over_quota_steps += 1;
        }
    }
    Some(UpstreamEffect {
        limit,
        uncapped: scored(loads, &uncapped),
        limited_steps: limited[warm..].iter().filter(|b| **b).count(),
        over_quota_steps,
        over_quota_pct: if total > 0.0 {
            100.0 * over / total
        } else {
            0.0
        },
        admitted: scored(&admitted, desired),
        admitted_uncapped: scored(&admitted, &uncapped),
    })
}

/// The name of the simulated metric: an upstream limit applies to it when it names this.
pub const SIM_METRIC: &str = "load";

/// The plan, row by row: at row `t` the planner sees the load up to `t - 1` and the latest
/// fit made at or before `t`, and the simulated target takes its decision at once. Also
/// whether the upstream ceiling lowered each row's count.
fn walk_forward(series: &Series, s: &SimSettings, fits: &[Fit]) -> (Vec<PlanRow>, Vec<bool>) {
    let mut limited = Vec::with_capacity(series.len());
    let mut state = PlannerState::default();
    let mut current = s.policy.min_replicas;
    let mut rows = Vec::with_capacity(series.len());
    let mut fit_idx: Option<usize> = None;
    for t in 0..series.len() {
        while fits
            .get(fit_idx.map_or(0, |i| i + 1))
            .is_some_and(|f| f.at <= t)
        {
            fit_idx = Some(fit_idx.map_or(0, |i| i + 1));
        }
        let now = series.time_of(t);
        let forecast: Result<&Forecast, Unavailable> = match fit_idx {
            Some(i) => fits[i].forecast.as_ref().map_err(Clone::clone),
            None => Err(Unavailable::new(
                NoForecast::InsufficientHistory,
                "no fit yet",
            )),
        };
        let observed = t
            .checked_sub(1)
            .map(|i| series.values[i])
            .filter(|v| v.is_finite());
        let input = match concurrency::duration_at(s, t) {
            // a concurrency metric without a known duration holds, as in the controller
            Some(None) => MetricInput {
                name: SIM_METRIC,
                target_per_replica: s.target_per_replica,
                observed: None,
                forecast: Err(concurrency::unknown_duration()),
                duration: None,
            },
            duration => MetricInput {
                name: SIM_METRIC,
                target_per_replica: s.target_per_replica,
                observed,
                forecast: forecast.clone(),
                duration: duration.flatten(),
            },
        };
        let d = planner::plan(now, current, &s.policy, &[input], &mut state);
        // the simulated target takes every decision at once
        planner::record_scale(&mut state, now, current, d.desired);
        limited.push(d.upstream_limited);
        let (point, upper) = in_use(forecast.ok(), now);
        // with concurrency sizing, the forecast in concurrent requests (Little's law)
        let streams = |v: Option<f64>| match concurrency::duration_at(s, t) {
            Some(d) => v.zip(d).map(|(v, d)| planner::concurrency::streams(v, d)),
            None => v,
        };
        let (point, upper) = (streams(point), streams(upper));
        rows.push(PlanRow {
            timestamp: now,
            value: series.values[t],
            forecast: point,
            upper,
            desired: d.desired,
            reactive: 0,
            oracle: 0,
            reason: reason(&d),
        });
        current = d.desired;
    }
    (rows, limited)
}

/// The point and upper forecast for `now`, if `forecast` covers it.
fn in_use(forecast: Option<&Forecast>, now: i64) -> (Option<f64>, Option<f64>) {
    match forecast {
        Some(fc) if now >= fc.start && now < fc.end() => {
            let i = ((now - fc.start) / fc.step) as usize;
            (Some(fc.point[i]), Some(fc.upper[i]))
        }
        _ => (None, None),
    }
}

/// Each model with how often it occurs in `models`, in the order of first occurrence.
pub fn tally_models<T: ToString>(models: impl IntoIterator<Item = T>) -> Vec<(String, usize)> {
    let mut tally: Vec<(String, usize)> = Vec::new();
    for model in models {
        let model = model.to_string();
        match tally.iter_mut().find(|(m, _)| *m == model) {
            Some((_, c)) => *c += 1,
            None => tally.push((model, 1)),
        }
    }
    tally
}

/// The reason a decision gives, in one word for the plan CSV.
fn reason(d: &planner::Decision) -> String {
    let m = &d.metrics[0];
    if d.stabilized {
        return "stabilized".into();
    }
    if d.is_limited() {
        return limit_reason(d.limit).to_string();
    }
    match (m.forecast_replicas, m.reactive_replicas, &m.unavailable) {
        (Some(f), r, _) if f >= r.unwrap_or(0) => "forecast".into(),
        (Some(_), Some(_), _) => "reactive-floor".into(),
        (None, _, Some(u)) => format!("fallback:{}", unavailable_reason(u.cause)),
        _ => "hold".into(),
    }
}

/// A fit made at a row.
struct Fit {
    /// The row it is made at: it sees rows before it only.
    at: usize,
    /// The forecast, or why there is none.
    forecast: Result<Forecast, Unavailable>,
    /// Its wall time.
    took: Duration,
}

/// Every fit of a run, in row order, and the wall time of each `Auto` model selection.
struct Fitted {
    fits: Vec<Fit>,
    selection_times: Vec<Duration>,
}

/// Fits at every `refresh_steps`, in parallel: a fit at row `t` sees rows `0..t` only. With
/// `Auto`, the model is chosen once per selection epoch ([`choice::selection_epoch`] of
/// [`SimSettings::scaler`]) on the history of the epoch's first fit, and reused by the
/// epoch's other fits: the controller's rule.
fn fit_all(series: &Series, s: &SimSettings, progress: &(dyn Fn() + Sync)) -> Fitted {
    let at = fit_rows(series, s);
    let history = |t: usize| {
        let from = t.saturating_sub(s.lookback_steps.max(1));
        Series::new(
            series.time_of(from),
            series.step,
            series.values[from..t].to_vec(),
        )
    };
    let epoch_of = |t: usize| choice::selection_epoch(&s.scaler, series.time_of(t));
    let firsts = if s.forecast.model == ModelKind::Auto {
        selection_firsts(&at, epoch_of)
    } else {
        Vec::new()
    };
    let selections: Vec<(Selection, Duration)> = par_map(&firsts, s.threads, |&t| {
        let began = Instant::now();
        let sel = choice::choose_model(&history(t), &s.forecast, epoch_of(t), None);
        progress();
        sel.map(|sel| (sel, began.elapsed()))
    })
    .into_iter()
    .flatten()
    .collect();
    let fits = par_map(&at, s.threads, |&t| {
        let selection = selections
            .iter()
            .map(|(sel, _)| sel)
            .find(|sel| sel.epoch == epoch_of(t));
        let began = Instant::now();
        let settings = concurrency::fit_settings(s, t);
        let forecast = choice::fit_chosen(&history(t), &settings, selection)
            .map_err(|e| Unavailable::from_forecast_error(&e));
        progress();
        Fit {
            at: t,
            forecast,
            took: began.elapsed(),
        }
    });
    Fitted {
        fits,
        selection_times: selections.into_iter().map(|(_, d)| d).collect(),
    }
}

/// The rows a fit is made at: every `refresh_steps`.
fn fit_rows(series: &Series, s: &SimSettings) -> Vec<usize> {
    let refresh = s.refresh_steps.max(1);
    (refresh..series.len()).step_by(refresh).collect()
}

/// The first fit row of each `Auto` selection epoch: where the model choice is made.
fn selection_firsts(at: &[usize], epoch_of: impl Fn(usize) -> i64) -> Vec<usize> {
    let mut firsts: Vec<usize> = Vec::new();
    for &t in at {
        if firsts.last().is_none_or(|&f| epoch_of(f) != epoch_of(t)) {
            firsts.push(t);
        }
    }
    firsts
}

/// `f` over `items` on `threads` workers, results in the order of `items`.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("simulate worker panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The reactive baseline of docs/evaluation.md (HPA defaults): `want = ceil(load[t-1] / target)`,
/// unchanged within a 10% tolerance, scale-down only to the highest want of the last 5 steps,
/// no scale-up limit, clamped to [min, max]. A missing load holds.
pub fn reactive_plan(loads: &[f64], s: &SimSettings) -> Vec<u32> {
    reactive_plan_for(loads, s, s.score_target())
}

/// [`reactive_plan`] with another target per replica (in units of the scored load).
fn reactive_plan_for(loads: &[f64], s: &SimSettings, target_per_replica: f64) -> Vec<u32> {
    let (min, max) = (s.policy.min_replicas, s.policy.max_replicas);
    let mut out = Vec::with_capacity(loads.len());
    let mut current = min;
    let mut wants: Vec<u32> = Vec::new();
    for t in 0..loads.len() {
        if t > 0 && loads[t - 1].is_finite() {
            let load = loads[t - 1];
            let mut want = (load / target_per_replica).ceil() as u32;
            if current > 0 && (load / (current as f64 * target_per_replica) - 1.0).abs() <= 0.1 {
                want = current;
            }
            wants.push(want);
            let recent = &wants[wants.len().saturating_sub(5)..];
            if want < current {
                want = *recent.iter().max().expect("non-empty");
            }
            current = want.clamp(min, max);
        }
        out.push(current);
    }
    out
}

/// Target factors [`reactive_at_cost`] searches: from 20x the headroom (x0.05) to a quarter of
/// the replicas (x4).
const FACTOR_RANGE: (f64, f64) = (0.05, 4.0);

/// The reactive baseline given the same replica budget as a plan (docs/evaluation.md's equal-budget
/// comparison): the HPA with its target scaled by a factor (below 1: more headroom, above 1:
/// less) until its replica-steps reach `budget`. It answers "would a reactive autoscaler with
/// more headroom have done as well for the same money?". Returns the largest factor whose cost
/// reaches the budget, and its score; `None` when no factor in the searched range gets there.
pub fn reactive_at_cost(
    loads: &[f64],
    s: &SimSettings,
    budget: u64,
    warm: usize,
) -> Option<(f64, Score)> {
    let capacity = s.score_target() / UTILISATION;
    let run = |f: f64| {
        let plan = reactive_plan_for(loads, s, s.score_target() * f);
        score(loads, &plan, capacity, s.startup_steps, warm)
    };
    let at_default = run(1.0);
    if at_default.replica_steps == budget {
        return Some((1.0, at_default));
    }
    // cost falls as the factor rises; find the largest factor whose cost reaches the budget
    let (mut lo, mut hi) = if at_default.replica_steps > budget {
        (1.0, FACTOR_RANGE.1)
    } else {
        (FACTOR_RANGE.0, 1.0)
    };
    if run(lo).replica_steps < budget {
        return None;
    }
    if run(hi).replica_steps >= budget {
        return Some((hi, run(hi)));
    }
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if run(mid).replica_steps >= budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some((lo, run(lo)))
}

/// The reactive family: the baseline at each target factor, for the frontier chart.
pub fn reactive_family(
    loads: &[f64],
    s: &SimSettings,
    factors: &[f64],
    warm: usize,
) -> Vec<(f64, Score)> {
    let capacity = s.score_target() / UTILISATION;
    factors
        .iter()
        .map(|&f| {
            let plan = reactive_plan_for(loads, s, s.score_target() * f);
            (f, score(loads, &plan, capacity, s.startup_steps, warm))
        })
        .collect()
}

/// The oracle of docs/evaluation.md: `need[t] = ceil(load[t] / capacity)`,
/// `oracle[t] = max(need[t ..= t + startup])`.
pub fn oracle_plan(loads: &[f64], s: &SimSettings) -> Vec<u32> {
    let capacity = s.score_target() / UTILISATION;
    let need: Vec<u32> = loads
        .iter()
        .map(|&l| {
            if l.is_finite() {
                (l / capacity).ceil() as u32
            } else {
                0
            }
        })
        .collect();
    (0..need.len())
        .map(|t| {
            need[t..(t + s.startup_steps + 1).min(need.len())]
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Scores a plan: `ready[t] = min(desired[t-startup ..= t])`, a violation when
/// `load[t] > ready[t] * capacity`; rows before `warm` are not scored.
pub fn score(loads: &[f64], desired: &[u32], capacity: f64, startup: usize, warm: usize) -> Score {
    let mut sc = Score::default();
    let (mut unserved, mut total) = (0.0, 0.0);
    for t in warm..loads.len() {
        let ready = desired[t.saturating_sub(startup)..=t]
            .iter()
            .copied()
            .min()
            .unwrap_or(0);
        sc.replica_steps += desired[t] as u64;
        let load = loads[t];
        if !load.is_finite() {
            continue;
        }
        total += load;
        let served = ready as f64 * capacity;
        if load > served + 1e-9 {
            sc.violation_steps += 1;
            unserved += load - served;
        }
    }
    sc.unserved_pct = if total > 0.0 {
        100.0 * unserved / total
    } else {
        0.0
    };
    sc
}
