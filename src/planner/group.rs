//! Bottom-up forecasts of a metric with `groupBy`: one series per label set (per model, per
//! tenant), each forecast on its own with the same model rule as any metric
//! ([`super::choice`]), and the per-series forecasts combined into the total the replicas are
//! sized for.
//!
//! # How the bands are combined
//! The total's point forecast is the sum of the series' point forecasts. Its upper band adds
//! the series' half-widths (`upper - point`) in quadrature, as for independent errors:
//! `upper = sum(point_i) + sqrt(sum((upper_i - point_i)^2))` ([`Combine::Independent`], the
//! default). The comonotone sum of the upper quantiles, `sum(upper_i)`
//! ([`Combine::Comonotone`]), is the conservative bound (every series at its upper quantile
//! at once); it is wider by up to `sqrt(n)` and `prescale simulate --combine comonotone`
//! measures it. Each series' band is drawn for the quantile the total's fit chose (the
//! spec's `forecast.quantile`, or the one the budget chose, see [`super::margin`]).
//!
//! # And the calibrated margin
//! Replicas are still sized with the calibrated lead-window margin of the *summed* series
//! (the margin needs no model and is calibrated on what the total really did); the bottom-up
//! forecast is the band, the peak, the contributors, and what replicas are sized for when no
//! margin can be calibrated (too little history).
//!
//! # Series that come and go
//! - A series whose newest sample is older than [`vanished_after`] at the end of the total's
//!   history (a model retired, a tenant gone) is left out: its load stopped, and the total no
//!   longer holds it either. It is listed in [`GroupForecast::vanished`].
//! - A series the model cannot fit (a new model with minutes of history, too many gaps) is
//!   carried flat at its recent level: point = its newest value, upper = the highest value of
//!   its last hour ([`PartForecast::carried`]). It is never left out, so a new model's traffic
//!   is in the total from its first sample.
//!
//! CPU: one fit per series per refit (and with `Auto` one model selection per series per
//! selection epoch), plus the total's own fit for its margin: `n + 1` fits instead of one.
//!
//! Memory: the per-series forecasts live for the refit only. What status needs of them until
//! the next refit, each series at the combined forecast's peak, is kept as [`Contributions`].
//!
//! Pure: no IO and no clock.

use std::collections::BTreeMap;

use super::{
    choice,
    forecast::{Forecast, ForecastSettings, Selection},
    series::Series,
};

/// How many of the largest contributors status and `prescale forecast` show.
pub const TOP_CONTRIBUTORS: usize = 5;
/// The default cap on the series of a `groupBy` metric.
pub const DEFAULT_MAX_SERIES: usize = 20;
/// The highest cap a spec may set.
pub const MAX_MAX_SERIES: usize = 50;

/// How the per-series bands are combined into the total's (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Combine {
    /// Half-widths added in quadrature (independent errors).
    #[default]
    Independent,
    /// The upper quantiles summed (every series high at once): the conservative bound.
    Comonotone,
}

/// One series of a group and its label set, e.g. `model=gpt-4o`.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub labels: String,
    pub series: Series,
}

/// One series' forecast within a group: `point[i]`, `upper[i]` are for `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct PartForecast {
    pub labels: String,
    pub start: i64,
    pub step: i64,
    pub point: Vec<f64>,
    pub upper: Vec<f64>,
    /// The model's name, or `Recent` when carried flat.
    pub model: String,
    /// Why it was carried flat at its recent level instead of forecast (too little history).
    pub carried: Option<String>,
}

impl PartForecast {
    /// Point and upper at unix second `t`: the step holding it, the first before the start and
    /// the last after the end (a flat continuation).
    pub fn at(&self, t: i64) -> (f64, f64) {
        if self.point.is_empty() {
            return (0.0, 0.0);
        }
        let i = ((t - self.start).max(0) / self.step.max(1)) as usize;
        let i = i.min(self.point.len() - 1);
        (self.point[i], self.upper[i].max(self.point[i]))
    }
}

/// The per-series forecasts of a group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupForecast {
    pub parts: Vec<PartForecast>,
    /// Label sets left out because their series stopped (see the module docs).
    pub vanished: Vec<String>,
}

/// One of the largest contributors to a forecast peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributor {
    pub labels: String,
    /// Its upper-quantile forecast at the peak.
    pub value: f64,
    /// `value` over the sum of every series' upper-quantile forecast at the peak, in [0, 1].
    pub share: f64,
}

/// How long a series may be silent at the end of the history before it counts as vanished:
/// ten minutes or three steps, as for a metric's staleness.
pub fn vanished_after(step: i64) -> i64 {
    (10 * 60).max(3 * step)
}

/// The sum of `parts` on the grid of the first: at each step the sum of the series that have a
/// value there, `NaN` where none has (as `sum()` over the series would read). `None` without
/// parts or when their steps differ.
pub fn sum_parts(parts: &[Part]) -> Option<Series> {
    let first = parts.first()?;
    let step = first.series.step;
    if parts.iter().any(|p| p.series.step != step) {
        return None;
    }
    let start = parts.iter().map(|p| p.series.start).min()?;
    let end = parts.iter().map(|p| p.series.end()).max()?;
    let n = ((end - start) / step).max(0) as usize;
    let mut values = vec![f64::NAN; n];
    for p in parts {
        let offset = ((p.series.start - start) / step) as usize;
        for (i, v) in p.series.values.iter().enumerate() {
            if v.is_finite() {
                let slot = &mut values[offset + i];
                *slot = if slot.is_finite() { *slot + v } else { *v };
            }
        }
    }
    Some(Series::new(start, step, values))
}

/// The settings a group's series are fitted with: the total's, without the margin (that is
/// calibrated on the total), for the band quantile the total's fit used.
pub fn part_settings(total: &ForecastSettings, total_fit: Option<&Forecast>) -> ForecastSettings {
    let quantile = total_fit
        .and_then(|f| f.margins.as_ref())
        .map_or(total.quantile, |m| m.quantile);
    ForecastSettings {
        sizing: None,
        quantile,
        ..total.clone()
    }
}

/// Forecasts each live series of `parts` (see the module docs for vanished and carried ones)
/// from unix second `end` (where the total's history ends), with `Auto`'s choice per series
/// for `epoch` (`previous` holds the choices already made, by label set). Returns the
/// forecasts and the choices to pass back next time.
pub fn fit_parts(
    parts: &[Part],
    settings: &ForecastSettings,
    end: i64,
    epoch: i64,
    previous: &BTreeMap<String, Selection>,
) -> (GroupForecast, BTreeMap<String, Selection>) {
    let mut out = GroupForecast::default();
    let mut selections = BTreeMap::new();
    for part in parts {
        let s = &part.series;
        let Some((last_at, last)) = s.last_finite() else {
            out.vanished.push(part.labels.clone());
            continue;
        };
        if last_at < end - s.step - vanished_after(s.step) {
            out.vanished.push(part.labels.clone());
            continue;
        }
        let previous = previous.get(&part.labels).cloned();
        let (fit, selection) = choice::fit_with_choice(s, settings, epoch, previous);
        if let Some(sel) = selection {
            selections.insert(part.labels.clone(), sel);
        }
        out.parts.push(match fit {
            Ok(fc) => PartForecast {
                labels: part.labels.clone(),
                start: fc.start,
                step: fc.step,
                point: fc.point,
                upper: fc.upper,
                model: fc.model.to_string(),
                carried: None,
            },
            Err(e) => carried(part, last, settings.horizon.max(1), end, e.to_string()),
        });
    }
    (out, selections)
}

/// A group's fit: the total's (for its margin, model and error) and the per-series forecasts;
/// [`GroupFit::forecast`] combines them into what the planner sizes with.
#[derive(Debug, Clone)]
pub struct GroupFit {
    /// The fit of the summed series, or why it could not be fitted.
    pub total: Result<Forecast, super::ForecastError>,
    /// `Auto`'s choice for the total.
    pub selection: Option<Selection>,
    pub group: GroupForecast,
    /// `Auto`'s choice per series, by label set.
    pub part_selections: BTreeMap<String, Selection>,
}

impl GroupFit {
    /// The combined forecast: [`combine`] of the per-series forecasts onto the total's fit.
    pub fn forecast(&self, rule: Combine) -> Result<Forecast, super::ForecastError> {
        self.total
            .as_ref()
            .map(|f| combine(f, &self.group, rule))
            .map_err(Clone::clone)
    }
}

/// Everything a refit of a `groupBy` metric does, the one rule the controller and `simulate`
/// share: the total (`total`, the summed series) fitted as any metric (its margin sizes the
/// replicas) and each series fitted for the total's band quantile ([`fit_parts`]).
pub fn fit_group(
    total: &Series,
    parts: &[Part],
    settings: &ForecastSettings,
    epoch: i64,
    previous: (Option<Selection>, &BTreeMap<String, Selection>),
) -> GroupFit {
    let (fit, selection) = choice::fit_with_choice(total, settings, epoch, previous.0);
    let part_settings = part_settings(settings, fit.as_ref().ok());
    let (group, part_selections) = fit_parts(parts, &part_settings, total.end(), epoch, previous.1);
    GroupFit {
        total: fit,
        selection,
        group,
        part_selections,
    }
}

/// A series carried flat from `end`: its newest value, and the highest of its last hour above.
fn carried(part: &Part, last: f64, horizon: usize, end: i64, why: String) -> PartForecast {
    let s = &part.series;
    let hour = (3_600 / s.step.max(1)).max(1) as usize;
    let recent = &s.values[s.len().saturating_sub(hour)..];
    let high = recent
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(last, f64::max);
    PartForecast {
        labels: part.labels.clone(),
        start: end,
        step: s.step,
        point: vec![last.max(0.0); horizon],
        upper: vec![high.max(0.0); horizon],
        model: "Recent".into(),
        carried: Some(why),
    }
}

/// The total's forecast from its series' forecasts, on the grid of `total` (the fit of the
/// summed series, whose model name, backtest error and calibrated margins it keeps): the point
/// is the sum of the series' points, the upper band as `rule` combines them. With no live
/// series, `total` unchanged.
pub fn combine(total: &Forecast, group: &GroupForecast, rule: Combine) -> Forecast {
    if group.parts.is_empty() {
        return total.clone();
    }
    let mut out = total.clone();
    for i in 0..total.point.len() {
        let t = total.start + i as i64 * total.step;
        let (mut point, mut upper, mut squares) = (0.0, 0.0, 0.0);
        for p in &group.parts {
            let (pt, up) = p.at(t);
            point += pt;
            upper += up;
            squares += (up - pt).powi(2);
        }
        out.point[i] = point;
        out.upper[i] = match rule {
            Combine::Independent => point + squares.sqrt(),
            Combine::Comonotone => upper,
        };
    }
    out
}

/// The largest `k` contributors to the total at unix second `at`, largest first: each series'
/// upper-quantile forecast there and its share of their sum.
pub fn contributors(group: &GroupForecast, at: i64, k: usize) -> Vec<Contributor> {
    rank(group.parts.iter().map(|p| (&p.labels, p.at(at).1)), k)
}

/// What status needs of a group's per-series forecasts while a fit serves: each live series'
/// upper forecast at the combined forecast's [peak](Forecast::peak) only, instead of every
/// series over the whole horizon (50 series of a 13-day horizon at 1 minute held 16 MB a
/// metric).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contributions {
    /// The live series' label sets, in the group's order.
    labels: Vec<String>,
    /// The combined forecast's peak time (`None`: it has no points).
    at: Option<i64>,
    /// `uppers[j]`: series `j`'s upper forecast at `at` (`f32`: status shows three significant
    /// digits).
    uppers: Vec<f32>,
}

impl Contributions {
    /// Each series of `group` at the peak of `combined` (its combination).
    pub fn of(group: &GroupForecast, combined: &Forecast) -> Self {
        let at = combined.peak().map(|p| p.at);
        let uppers = at.map_or_else(Vec::new, |t| {
            group.parts.iter().map(|p| p.at(t).1 as f32).collect()
        });
        Self {
            labels: group.parts.iter().map(|p| p.labels.clone()).collect(),
            at,
            uppers,
        }
    }

    /// How many series the forecast combined.
    pub fn series(&self) -> usize {
        self.labels.len()
    }

    /// The largest `k` contributors at the peak, as [`contributors`] ranks them.
    pub fn contributors(&self, k: usize) -> Vec<Contributor> {
        if self.at.is_none() {
            return Vec::new();
        }
        rank(
            self.labels
                .iter()
                .zip(&self.uppers)
                .map(|(l, v)| (l, f64::from(*v))),
            k,
        )
    }
}

/// The largest `k` of `(labels, value)`, largest first, each with its share of the sum.
fn rank<'a>(values: impl Iterator<Item = (&'a String, f64)>, k: usize) -> Vec<Contributor> {
    let mut all: Vec<Contributor> = values
        .map(|(labels, value)| Contributor {
            labels: labels.clone(),
            value,
            share: 0.0,
        })
        .collect();
    let total: f64 = all.iter().map(|c| c.value).sum();
    for c in &mut all {
        c.share = if total > 0.0 { c.value / total } else { 0.0 };
    }
    all.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| a.labels.cmp(&b.labels))
    });
    all.truncate(k);
    all
}

/// A label set as status shows it: `model=gpt-4o,region=eu`, in the given order of names.
pub fn label_set(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{FittedModel, ModelKind};

    const STEP: i64 = 300;

    fn forecast(start: i64, point: Vec<f64>, upper: Vec<f64>) -> Forecast {
        Forecast {
            start,
            step: STEP,
            point,
            upper,
            model: FittedModel::Ets,
            backtest_error: Some(0.1),
            margins: None,
        }
    }

    fn part(labels: &str, start: i64, point: Vec<f64>, upper: Vec<f64>) -> PartForecast {
        PartForecast {
            labels: labels.into(),
            start,
            step: STEP,
            point,
            upper,
            model: "ETS".into(),
            carried: None,
        }
    }

    #[test]
    fn points_add_and_half_widths_add_in_quadrature_or_comonotone() {
        let total = forecast(0, vec![0.0; 2], vec![0.0; 2]);
        let group = GroupForecast {
            parts: vec![
                part("model=a", 0, vec![10.0, 20.0], vec![13.0, 20.0]),
                part("model=b", 0, vec![5.0, 5.0], vec![9.0, 5.0]),
            ],
            vanished: vec![],
        };
        let ind = combine(&total, &group, Combine::Independent);
        assert_eq!(ind.point, vec![15.0, 25.0]);
        // sqrt(3^2 + 4^2) = 5
        assert!((ind.upper[0] - 20.0).abs() < 1e-9, "{:?}", ind.upper);
        assert_eq!(ind.upper[1], 25.0);
        let co = combine(&total, &group, Combine::Comonotone);
        assert_eq!(co.upper, vec![22.0, 25.0]);
        // the total's model, error and margins are kept
        assert_eq!(ind.model, FittedModel::Ets);
        assert_eq!(ind.backtest_error, Some(0.1));
    }

    #[test]
    fn a_part_that_starts_later_or_ends_early_is_continued_flat() {
        let total = forecast(0, vec![0.0; 3], vec![0.0; 3]);
        let group = GroupForecast {
            parts: vec![part("model=a", STEP, vec![10.0], vec![10.0])],
            vanished: vec![],
        };
        assert_eq!(
            combine(&total, &group, Combine::Independent).point,
            vec![10.0; 3]
        );
        // no live parts: the total's own forecast
        let none = GroupForecast::default();
        assert_eq!(combine(&total, &none, Combine::Independent), total);
    }

    #[test]
    fn contributors_are_the_largest_with_their_share_of_the_sum() {
        let group = GroupForecast {
            parts: vec![
                part("model=a", 0, vec![1.0], vec![10.0]),
                part("model=b", 0, vec![1.0], vec![30.0]),
                part("model=c", 0, vec![1.0], vec![60.0]),
            ],
            vanished: vec![],
        };
        let top = contributors(&group, 0, 2);
        assert_eq!(
            top.iter().map(|c| c.labels.as_str()).collect::<Vec<_>>(),
            ["model=c", "model=b"]
        );
        assert!((top[0].share - 0.6).abs() < 1e-9);
        assert!((top[1].share - 0.3).abs() < 1e-9);
        assert_eq!(top[0].value, 60.0);
    }

    #[test]
    fn contributions_keep_each_series_at_the_peak_only() {
        let n = 2_000;
        let rising = |level: f64| (0..n).map(|i| level + i as f64).collect::<Vec<f64>>();
        let group = GroupForecast {
            parts: vec![
                part("model=a", 0, rising(10.0), rising(10.0)),
                part("model=b", 0, rising(30.0), rising(30.0)),
            ],
            vanished: vec![],
        };
        let total = forecast(0, vec![0.0; n], vec![0.0; n]);
        let combined = combine(&total, &group, Combine::Comonotone);
        let kept = Contributions::of(&group, &combined);
        // a rising forecast peaks at its end: one time of 2,000, a value per series
        assert_eq!(kept.at, Some((n as i64 - 1) * STEP));
        assert_eq!(kept.uppers.len(), 2);
        assert_eq!(kept.series(), 2);
        let at = combined.peak().unwrap().at;
        assert_eq!(
            kept.contributors(TOP_CONTRIBUTORS),
            contributors(&group, at, TOP_CONTRIBUTORS)
        );
        let none = Contributions::default();
        assert!(none.contributors(5).is_empty());
    }

    #[test]
    fn the_sum_skips_gaps_and_is_nan_only_where_every_series_is() {
        let a = Part {
            labels: "a".into(),
            series: Series::new(0, 60, vec![1.0, f64::NAN, 3.0]),
        };
        let b = Part {
            labels: "b".into(),
            series: Series::new(60, 60, vec![f64::NAN, 4.0, 5.0]),
        };
        let s = sum_parts(&[a, b]).unwrap();
        assert_eq!(s.start, 0);
        assert_eq!(s.values[0], 1.0);
        assert!(s.values[1].is_nan());
        assert_eq!(&s.values[2..], &[7.0, 5.0]);
        assert!(sum_parts(&[]).is_none());
    }

    /// A daily-ish series with noise, long enough for ETS.
    fn wave(n: usize, level: f64, step: i64) -> Series {
        let v = (0..n)
            .map(|i| level * (1.0 + 0.3 * ((i as f64) / 12.0).sin()) + (i % 7) as f64)
            .collect();
        Series::new(0, step, v)
    }

    #[test]
    fn new_series_are_carried_flat_and_stopped_ones_are_left_out() {
        let step = 300;
        let n = 600;
        let end = n as i64 * step;
        let long = Part {
            labels: "model=old".into(),
            series: wave(n, 100.0, step),
        };
        // a new model: three samples at the end
        let mut fresh = vec![f64::NAN; n];
        fresh[n - 3..].copy_from_slice(&[4.0, 9.0, 6.0]);
        let new = Part {
            labels: "model=new".into(),
            series: Series::new(0, step, fresh),
        };
        // a retired model: nothing in the last two hours
        let mut gone = wave(n, 50.0, step).values;
        for v in &mut gone[n - 24..] {
            *v = f64::NAN;
        }
        let retired = Part {
            labels: "model=retired".into(),
            series: Series::new(0, step, gone),
        };
        let settings = ForecastSettings::new(ModelKind::Ets, vec![], 12, 0.9, step);
        let (group, _) = fit_parts(&[long, new, retired], &settings, end, 0, &BTreeMap::new());
        assert_eq!(group.vanished, vec!["model=retired".to_string()]);
        let labels: Vec<&str> = group.parts.iter().map(|p| p.labels.as_str()).collect();
        assert_eq!(labels, ["model=old", "model=new"]);
        let new = &group.parts[1];
        assert!(new.carried.is_some());
        assert_eq!(new.at(end + step), (6.0, 9.0));
        assert!(group.parts[0].carried.is_none());
    }

    #[test]
    fn parts_are_fitted_for_the_totals_quantile_without_a_margin() {
        let s = ForecastSettings::new(ModelKind::Auto, vec![], 12, 0.9, 60);
        let p = part_settings(&s, None);
        assert_eq!((p.quantile, p.sizing.is_none()), (0.9, true));
    }

    #[test]
    fn label_sets_read_as_name_equals_value() {
        let pairs = vec![
            ("model".to_string(), "gpt-4o".to_string()),
            ("region".to_string(), "eu".to_string()),
        ];
        assert_eq!(label_set(&pairs), "model=gpt-4o,region=eu");
    }
}
