//! The frontier (`docs/evaluation.md`): a plan's cost/violation curve over its operating points
//! (the quantile it sizes for) beside the reactive family's (the HPA at other targets), so a
//! user picks the operating point for their own traffic.
//!
//! Each operating point is a full walk-forward [`simulate`](super::simulate) with only the
//! quantile changed; each is compared with the reactive baseline given the same replica budget.
//! CPU only, no IO.

use super::{
    Score, SimReport, SimSettings, reactive_family, simulate_observed, work_units as sim_units,
};
use crate::planner::Series;

/// The operating points `--frontier` runs when none are given.
pub const DEFAULT_QUANTILES: [f64; 4] = [0.5, 0.75, 0.9, 0.97];

/// Target factors of the reactive family drawn beside the plan's points: from the HPA with
/// two and a half times its default headroom to one with less.
pub const FAMILY_FACTORS: [f64; 12] = [
    0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1,
];

/// One operating point.
#[derive(Debug, Clone)]
pub struct FrontierPoint {
    /// `None`: the settings as given (the default budget unless a quantile was set).
    pub quantile: Option<f64>,
    pub report: SimReport,
}

impl FrontierPoint {
    /// `q0.9`, or `default` for the settings as given.
    pub fn label(&self) -> String {
        self.quantile
            .map_or_else(|| "default".to_string(), |q| format!("q{q}"))
    }

    /// The equal-budget ratio: violation steps of the plan over those of the reactive baseline
    /// that spends the same replica-steps. `None` when that baseline has no violations (the
    /// ratio is undefined; the counts still say how the two compare).
    pub fn ratio(&self) -> Option<f64> {
        let (_, same) = self.report.reactive_at_cost.as_ref()?;
        (same.violation_steps > 0)
            .then(|| self.report.prescale.violation_steps as f64 / same.violation_steps as f64)
    }

    /// Replica-steps relative to the reactive baseline at its default target.
    pub fn cost(&self) -> f64 {
        cost_ratio(&self.report.prescale, &self.report.reactive)
    }
}

/// The outcome of [`frontier`].
#[derive(Debug, Clone)]
pub struct Frontier {
    /// In the order of the quantiles asked for.
    pub points: Vec<FrontierPoint>,
    /// The reactive baseline at each of [`FAMILY_FACTORS`].
    pub family: Vec<(f64, Score)>,
    /// The reactive baseline at its default target.
    pub reactive: Score,
}

/// `plan`'s replica-steps over `reactive`'s (NaN when the baseline spends none).
pub fn cost_ratio(plan: &Score, reactive: &Score) -> f64 {
    if reactive.replica_steps == 0 {
        f64::NAN
    } else {
        plan.replica_steps as f64 / reactive.replica_steps as f64
    }
}

/// How many fits [`frontier`] makes: the length of its progress bar.
pub fn work_units(series: &Series, s: &SimSettings, quantiles: &[f64]) -> usize {
    sim_units(series, s) * (quantiles.len() + 1)
}

/// Runs `series` with the settings as given, then at each quantile (everything else as in
/// `s`), and the reactive family.
pub fn frontier(
    series: &Series,
    s: &SimSettings,
    quantiles: &[f64],
    progress: &(dyn Fn() + Sync),
) -> Frontier {
    frontier_by(series, s, quantiles, &|at| {
        simulate_observed(series, at, progress)
    })
}

/// [`frontier`] with each operating point planned by `plan` (e.g. bottom-up over the columns
/// whose sum is `series`, `sim::group`); `series` is what every point is scored on.
pub fn frontier_by(
    series: &Series,
    s: &SimSettings,
    quantiles: &[f64],
    plan: &dyn Fn(&SimSettings) -> SimReport,
) -> Frontier {
    let points: Vec<FrontierPoint> = std::iter::once(None)
        .chain(quantiles.iter().copied().map(Some))
        .map(|q| {
            let mut at = s.clone();
            if let Some(q) = q {
                at.forecast.quantile = q;
                at.policy.fallback_headroom = crate::planner::margin::fallback_headroom(Some(q));
                if let Some(sizing) = &mut at.forecast.sizing {
                    sizing.cost_ratio = None;
                }
            }
            FrontierPoint {
                quantile: q,
                report: plan(&at),
            }
        })
        .collect();
    let warm = s.warmup_steps.min(series.len());
    let family = reactive_family(s.scored(series), s, &FAMILY_FACTORS, warm);
    // the first point is the settings as given, always run: its reactive baseline is everyone's
    let reactive = points[0].report.reactive;
    Frontier {
        points,
        family,
        reactive,
    }
}
