//! Forecasting: a cleaned series in, a point forecast and an upper quantile band out, with the
//! fit's backtest error (the weighted absolute percentage error of the last two hours) and,
//! with a sizing, the calibrated margins ([`super::margin`]). Also `Auto`'s model selection
//! ([`select_model`]: the lowest pinball loss of the upper band in a rolling backtest).
//!
//! CPU only, no IO and no clock; the controller runs it on a blocking thread. augurs does the
//! modelling (MSTL decomposition with an AutoETS trend, or plain AutoETS); everything augurs
//! cannot take is guarded here first, because augurs answers bad input slowly rather than
//! quickly: a single NaN costs ~25 s of CPU before it fails, a constant series ~27 s.
//!
//! [`fit_forecast`] prepares the series (`Prepared`: gaps filled, fine steps averaged into
//! 5-minute blocks, the seasonal periods the history holds two cycles of), takes the model the
//! settings name (`model_for`), measures its recent backtest error, calibrates the margins
//! ([`super::margin`]) and draws the band at the series' step (`band`). [`select_model`] is
//! `Auto`'s choice among the models, backtested on the same prepared series. The forecast
//! names its model with a [`FittedModel`].

use std::borrow::Cow;

use augurs::{
    ets::{AutoETS, trend::AutoETSTrendModel},
    mstl::{FittedTrendModel, MSTLModel, TrendModel},
    prelude::*,
};

use super::{
    margin::{Margins, Sizing, margins},
    model::{FittedModel, ModelKind},
    series::{Series, format_duration},
};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// The two-sided level asked of augurs; the band for any quantile is derived from it.
const FIT_LEVEL: f64 = 0.8;

/// The band quantile when the spec sets none: what `prescale forecast` draws, and where a fit
/// sized by a budget (see [`super::margin`]) starts before it chooses its own.
pub const DEFAULT_BAND_QUANTILE: f64 = 0.9;

/// What to forecast and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastSettings {
    pub model: ModelKind,
    /// Seasonal periods in seconds; empty means daily and weekly when the history allows.
    pub periods: Vec<i64>,
    /// Number of steps to forecast.
    pub horizon: usize,
    /// Upper quantile of the band, in (0, 1).
    pub quantile: f64,
    /// The trend model is fitted on at most this many of the latest steps (0 = all). The
    /// seasonal decomposition always sees the whole history.
    pub trend_window: usize,
    /// How replicas are sized from the calibrated margin ([`super::margin`]); `None` leaves
    /// the margin out (the model's band is then what replicas are sized for).
    pub sizing: Option<Sizing>,
    /// The model [`select_model`] chose for `Auto`; `None` fits Auto's default (MSTL once the
    /// history holds two cycles of a period, ETS before).
    pub auto_choice: Option<ModelKind>,
}

impl ForecastSettings {
    /// Settings for a series step, with the default trend window of one day.
    pub fn new(
        model: ModelKind,
        periods: Vec<i64>,
        horizon: usize,
        quantile: f64,
        step: i64,
    ) -> Self {
        Self {
            model,
            periods,
            horizon,
            quantile,
            trend_window: (DAY / step.max(1)) as usize,
            sizing: None,
            auto_choice: None,
        }
    }
}

/// A forecast: `point[i]` and `upper[i]` are for unix second `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub start: i64,
    pub step: i64,
    pub point: Vec<f64>,
    pub upper: Vec<f64>,
    /// The model it came from.
    pub model: FittedModel,
    /// Recent forecast error (WAPE as a fraction: the backtest of [`fit_forecast`]), when measured.
    pub backtest_error: Option<f64>,
    /// The calibrated lead-window margins replicas are sized with, for decisions over the
    /// forecast's steps (with [`ForecastSettings::sizing`] and enough history).
    pub margins: Option<Margins>,
}

impl Forecast {
    /// Unix second just after the last forecast point.
    pub fn end(&self) -> i64 {
        self.start + self.point.len() as i64 * self.step
    }

    /// The point forecast for time `t`: the forecast step that holds `t`, or the first one when
    /// `t` falls in the step before the forecast starts (fresh data ends one step before `now`,
    /// so the forecast "now" is its first point). `None` outside that.
    pub fn point_at(&self, t: i64) -> Option<f64> {
        if t < self.start - self.step || t >= self.end() {
            return None;
        }
        let i = ((t - self.start).max(0) / self.step) as usize;
        self.point.get(i).copied()
    }

    /// The highest upper value of the whole forecast, from its first point (the fit) to its
    /// last, with its time (the first, on a tie). It changes at a refit only, not as time
    /// passes: what status reports as the forecast's peak. `None` for an empty forecast.
    pub fn peak(&self) -> Option<Point> {
        self.max_upper_in(self.start, self.end() - 1)
    }

    /// The highest upper value with its time, among points in `[from, to]`. `None` when the
    /// forecast does not reach `to`: a forecast that ends early cannot vouch for the window.
    pub fn max_upper_in(&self, from: i64, to: i64) -> Option<Point> {
        if to >= self.end() {
            return None;
        }
        let mut best: Option<Point> = None;
        for (i, &u) in self.upper.iter().enumerate() {
            let t = self.start + i as i64 * self.step;
            // a point may stand for the step before it (Prometheus rates) or after it (traces):
            // take every point whose step on either side overlaps the window
            if t + self.step <= from || t - self.step >= to {
                continue;
            }
            if best.is_none_or(|b| u > b.value) {
                best = Some(Point { at: t, value: u });
            }
        }
        best
    }
}

/// One value of a forecast and its time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix second.
    pub at: i64,
    pub value: f64,
}

/// Why no forecast could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("the series has no samples")]
    Empty,
    #[error("{have} usable samples of history, {need} needed ({why})")]
    InsufficientHistory {
        have: usize,
        need: usize,
        why: String,
    },
    #[error("only {finite} of {len} samples have values; too many gaps to forecast")]
    TooManyGaps { finite: usize, len: usize },
    #[error("model fit failed: {0}")]
    ModelFit(String),
}

/// Fits the configured model on `series` and forecasts `settings.horizon` steps after its
/// last finite sample.
///
/// Series finer than 5 minutes are fitted on 5-minute means (a day is then 288 points, which
/// MSTL and AutoETS fit in milliseconds instead of half a second) and the forecast is brought
/// back to the series' step by interpolation; the variation inside a 5-minute block is
/// measured on the fine data and added to the band, so the upper quantile stays honest.
///
/// `Auto` is MSTL+AutoETS once the history holds two cycles of a seasonal period, ETS before
/// that. Every model reports its backtest error: the weighted absolute percentage error of
/// forecasts an hour ahead from two origins in the last two hours.
pub fn fit_forecast(
    series: &Series,
    settings: &ForecastSettings,
) -> Result<Forecast, ForecastError> {
    let p = Prepared::new(series, settings)?;
    let horizon = settings.horizon.max(1);
    if let Some(level) = constant_level(&p.y) {
        // augurs takes ~27 s to fail on a constant series; its forecast is the constant
        return Ok(Forecast {
            start: p.start,
            step: p.step,
            point: vec![level; horizon],
            upper: vec![level; horizon],
            model: FittedModel::Constant,
            backtest_error: Some(0.0),
            margins: None,
        });
    }
    let model = model_for(settings, &p)?;
    let backtest_error = recent_backtest(&model, &p, horizon);
    // the margins first: with a budget they choose the quantile the band is drawn for too
    let calibrated = settings
        .sizing
        .as_ref()
        .and_then(|sizing| margins(&p.y, p.start, p.step, sizing, settings.quantile, horizon));
    let quantile = calibrated
        .as_ref()
        .map_or(settings.quantile, |m| m.quantile);
    let (point, upper) = band(&model, &p, horizon, quantile)?;
    Ok(Forecast {
        start: p.start,
        step: p.step,
        point,
        upper,
        model: model.fitted(p.coarse_step),
        backtest_error,
        margins: calibrated,
    })
}

/// A series made ready for the models: cleaned ([`clean`]), coarsened ([`coarsen`]), and the
/// seasonal periods it holds two cycles of. What [`fit_forecast`] and [`select_model`] fit on.
struct Prepared {
    /// The cleaned series, at `step` seconds.
    y: Vec<f64>,
    /// Unix second just after the last cleaned value: where a forecast starts.
    start: i64,
    step: i64,
    /// Fine steps per coarse step ([`coarsen_factor`]), and the coarse step in seconds.
    factor: usize,
    coarse_step: i64,
    /// The coarse series, and the spread of fine values around their block means.
    yc: Vec<f64>,
    fine_sigma: f64,
    /// Seasonal periods in coarse steps ([`choose_periods`]), shortest first.
    periods: Vec<usize>,
    /// [`ForecastSettings::trend_window`] in coarse steps.
    trend_window: usize,
}

impl Prepared {
    /// `e` with its counts in samples of the series: the models count coarse steps, and
    /// "7 usable samples, 8 needed" of a series of 35 one-minute samples is not true.
    fn in_samples(&self, e: ForecastError) -> ForecastError {
        match e {
            ForecastError::InsufficientHistory { need, why, .. } => {
                ForecastError::InsufficientHistory {
                    have: self.y.len(),
                    need: need * self.factor,
                    why,
                }
            }
            e => e,
        }
    }

    fn new(series: &Series, settings: &ForecastSettings) -> Result<Self, ForecastError> {
        let (y, first) = clean(series)?;
        let step = series.step;
        let start = series.time_of(first + y.len());
        let factor = coarsen_factor(step, &settings.periods);
        let coarse_step = step * factor as i64;
        let (yc, fine_sigma) = coarsen(&y, factor);
        let periods = choose_periods(&settings.periods, coarse_step, yc.len());
        Ok(Self {
            y,
            start,
            step,
            factor,
            coarse_step,
            yc,
            fine_sigma,
            periods,
            trend_window: (settings.trend_window / factor).max(1),
        })
    }
}

/// The level of a series that is constant (to 1e-9 of its size), which augurs cannot fit.
fn constant_level(y: &[f64]) -> Option<f64> {
    let (min, max) = y
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    (max - min <= 1e-9 * max.abs().max(1.0)).then_some(max)
}

/// The model to fit: the spec's, or for `Auto` the one [`select_model`] chose, and without a
/// choice MSTL once the history holds two cycles of a period, ETS before that. A backtest over
/// the last hours alone would prefer a flat model whenever those hours were quiet, and then
/// miss the daily peak that MSTL has learned. MSTL and seasonal naive asked for by name need
/// two cycles of a period.
fn model_for(settings: &ForecastSettings, p: &Prepared) -> Result<Model, ForecastError> {
    let kind = match (settings.model, settings.auto_choice) {
        (ModelKind::Auto, Some(chosen)) => chosen,
        (kind, _) => kind,
    };
    Ok(match (kind, p.periods.last()) {
        (ModelKind::Auto, None) | (ModelKind::Ets, _) => Model::Ets,
        (ModelKind::Auto | ModelKind::Mstl, Some(_)) => Model::Mstl(p.periods.clone()),
        (ModelKind::SeasonalNaive, Some(&longest)) => Model::SeasonalNaive(longest),
        (ModelKind::Mstl | ModelKind::SeasonalNaive, None) => {
            return Err(no_period(p, &settings.periods));
        }
    })
}

/// [`Forecast::backtest_error`]: forecasts an hour ahead (the horizon, if shorter) from two
/// origins in the last two hours.
fn recent_backtest(model: &Model, p: &Prepared, horizon: usize) -> Option<f64> {
    let backtest_horizon = ((HOUR / p.coarse_step).max(1) as usize).min(horizon.div_ceil(p.factor));
    let origins: Vec<usize> = [2, 1]
        .iter()
        .filter_map(|k| p.yc.len().checked_sub(k * backtest_horizon))
        .collect();
    backtest(model, &p.yc, &origins, backtest_horizon, p.trend_window)
}

/// The point forecast and the `quantile` upper band over `horizon` steps of the series: the
/// model's coarse forecast interpolated back to the series' step, with the variation inside
/// a coarse block added to its sigma in quadrature.
fn band(
    model: &Model,
    p: &Prepared,
    horizon: usize,
    quantile: f64,
) -> Result<(Vec<f64>, Vec<f64>), ForecastError> {
    let factor = p.factor;
    let coarse_horizon = horizon.div_ceil(factor) + 1;
    let (pc, sc) = model
        .predict(&p.yc, coarse_horizon, p.trend_window)
        .map_err(|e| p.in_samples(e))?;
    let z = normal_quantile(quantile);
    let mut point = Vec::with_capacity(horizon);
    let mut upper = Vec::with_capacity(horizon);
    for j in 0..horizon {
        // coarse block k holds fine steps [k*f, (k+1)*f); its mean sits at its centre
        let pos = (j as f64 - (factor as f64 - 1.0) / 2.0) / factor as f64;
        let (pt, sig) = interpolate(&pc, &sc, pos);
        let sigma = (sig * sig + p.fine_sigma * p.fine_sigma).sqrt();
        point.push(pt.max(0.0));
        upper.push((pt + z * sigma).max(0.0));
    }
    if point.iter().chain(&upper).any(|v| !v.is_finite()) {
        return Err(ForecastError::ModelFit(
            "the model produced non-finite values".into(),
        ));
    }
    Ok((point, upper))
}

const HOUR: i64 = 3_600;
/// Coarse series hold at most this many points a day.
const POINTS_PER_DAY: i64 = 288;

/// How many fine steps make one coarse step: 5 minutes' worth for fine series, when every
/// configured period is a whole number of coarse steps, at least two (a period of one coarse
/// step is no season: a `5m` period at a `1m` step is fitted on the minutes).
fn coarsen_factor(step: i64, periods: &[i64]) -> usize {
    let per_day = DAY / step.max(1);
    if per_day <= POINTS_PER_DAY {
        return 1;
    }
    let f = (per_day / POINTS_PER_DAY).max(1);
    let coarse = f * step;
    if periods.iter().all(|p| p % coarse == 0 && p / coarse >= 2) && DAY % coarse == 0 {
        f as usize
    } else {
        1
    }
}

/// Block means of `factor` values, blocks aligned to the end (a partial first block is
/// dropped), and the standard deviation of values around their block mean over the last
/// 1,440 blocks (5 days at 1 minute).
fn coarsen(y: &[f64], factor: usize) -> (Vec<f64>, f64) {
    if factor <= 1 {
        return (y.to_vec(), 0.0);
    }
    let skip = y.len() % factor;
    let blocks: Vec<f64> = y[skip..]
        .chunks_exact(factor)
        .map(|c| c.iter().sum::<f64>() / factor as f64)
        .collect();
    let recent = (y.len() - skip).min(factor * (DAY as usize / 60).max(1));
    let from = y.len() - recent;
    let mut ss = 0.0;
    for (i, v) in y[from..].iter().enumerate() {
        let b = (from - skip + i) / factor;
        ss += (v - blocks[b]).powi(2);
    }
    let sigma = if recent > 1 {
        (ss / (recent - 1) as f64).sqrt()
    } else {
        0.0
    };
    (blocks, sigma)
}

/// Linear interpolation of (point, sigma) at fractional index `pos` (extrapolated before 0).
fn interpolate(p: &[f64], s: &[f64], pos: f64) -> (f64, f64) {
    if p.len() == 1 {
        return (p[0], s[0]);
    }
    let i = (pos.floor().max(0.0) as usize).min(p.len() - 2);
    let f = pos - i as f64;
    (
        p[i] + (p[i + 1] - p[i]) * f,
        (s[i] + (s[i + 1] - s[i]) * f).max(0.0),
    )
}

/// Weighted absolute percentage error of `model` forecasting `h` ahead from each of
/// `origins` (indices into `y`, each with `h` actual points after it); `None` when the model
/// cannot be fitted at some origin.
fn backtest(
    model: &Model,
    y: &[f64],
    origins: &[usize],
    h: usize,
    trend_window: usize,
) -> Option<f64> {
    backtest_losses(model, y, origins, h, trend_window, None).map(|l| l.wape)
}

/// The upper band a backtest charges the pinball loss of: `point + z(quantile) * sigma`, with
/// `fine_sigma` added to sigma in quadrature.
#[derive(Debug, Clone, Copy)]
struct BandSpec {
    quantile: f64,
    fine_sigma: f64,
}

/// What [`backtest_losses`] measures, both relative to the actual load.
#[derive(Debug, Clone, Copy)]
struct Losses {
    /// Weighted absolute percentage error of the point forecast.
    wape: f64,
    /// Pinball loss of the band (0 without a [`BandSpec`]).
    pinball: f64,
}

/// [`backtest`]'s error, and with `band` also the pinball (quantile) loss of its upper band,
/// relative to the actual load:
/// it charges a band that is too low by `q` per unit missed and one that is too high by
/// `1 - q` per unit of idle capacity, the trade a scaler sizing for that quantile makes.
fn backtest_losses(
    model: &Model,
    y: &[f64],
    origins: &[usize],
    h: usize,
    trend_window: usize,
    band: Option<BandSpec>,
) -> Option<Losses> {
    if origins.is_empty() {
        return None;
    }
    let (mut abs_err, mut abs_val, mut pinball) = (0.0, 0.0, 0.0);
    for &origin in origins {
        if origin + h > y.len() {
            return None;
        }
        let model = model.at_origin(origin)?;
        let (p, sigma) = model.predict(&y[..origin], h, trend_window).ok()?;
        for (i, &actual) in y[origin..origin + h].iter().enumerate() {
            abs_err += (actual - p[i].max(0.0)).abs();
            abs_val += actual.abs();
            if let Some(BandSpec {
                quantile: q,
                fine_sigma,
            }) = band
            {
                let sd = (sigma[i] * sigma[i] + fine_sigma * fine_sigma).sqrt();
                let upper = (p[i] + normal_quantile(q) * sd).max(0.0);
                pinball += if actual > upper {
                    q * (actual - upper)
                } else {
                    (1.0 - q) * (upper - actual)
                };
            }
        }
    }
    let scale = if abs_val > 0.0 {
        abs_val
    } else {
        (origins.len() * h) as f64
    };
    Some(Losses {
        wape: abs_err / scale,
        pinball: pinball / scale,
    })
}

/// How often `Auto` runs its model selection again: selections are made for six-hour epochs
/// (`align_down(now, SELECTION_INTERVAL)`), and fits within an epoch reuse the choice.
pub const SELECTION_INTERVAL: i64 = 6 * HOUR;
/// Origins of the selection backtest: every four hours over the last day, so the daily peak
/// and the night are both judged, not just the latest quiet (or busy) hours.
const SELECTION_ORIGINS: usize = 6;
const SELECTION_SPACING: i64 = 4 * HOUR;

/// The outcome of [`select_model`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The model chosen (never `Auto`).
    pub model: ModelKind,
    /// The candidates' backtest scores, MSTL, ETS, seasonal naive; empty when only ETS could
    /// be fitted.
    pub scores: Vec<Score>,
    /// The selection epoch it was made for.
    pub epoch: i64,
}

/// One candidate's rolling-backtest loss in a [`Selection`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub model: ModelKind,
    /// The pinball loss of its upper quantile band, relative to the load; `None`: it could
    /// not be fitted at every origin.
    pub loss: Option<f64>,
}

impl Selection {
    /// e.g. `MSTL 0.12, ETS 0.31, SeasonalNaive 0.18`.
    pub fn describe(&self) -> String {
        self.scores
            .iter()
            .map(|s| match s.loss {
                Some(e) => format!("{} {e:.3}", s.model.name()),
                None => format!("{} n/a", s.model.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `Auto`'s model choice: MSTL+AutoETS, ETS and seasonal naive (over the longest period) are
/// each backtested over the forecast horizon (one to six hours) from six origins spread over
/// the series' last day, and the one whose upper quantile band has the lowest pinball loss
/// wins (MSTL on ties): the band is what replicas are sized for, so a model with a good point
/// forecast but a needlessly wide band loses to a slightly worse but sharper one. Before the
/// history holds two cycles of a period only ETS can be fitted, and it is chosen without a
/// backtest. Costs about six fits of each model; made once per [`SELECTION_INTERVAL`].
pub fn select_model(series: &Series, settings: &ForecastSettings, epoch: i64) -> Selection {
    let only_ets = || Selection {
        model: ModelKind::Ets,
        scores: vec![],
        epoch,
    };
    let Ok(p) = Prepared::new(series, settings) else {
        return only_ets();
    };
    let Some(&longest) = p.periods.last() else {
        return only_ets();
    };
    // judged over the horizon the scaler asks for (its status reports the peak over it), at
    // least an hour and at most six
    let h = settings.horizon.div_ceil(p.factor).clamp(
        (HOUR / p.coarse_step).max(1) as usize,
        (6 * HOUR / p.coarse_step).max(1) as usize,
    );
    let spacing = (SELECTION_SPACING / p.coarse_step).max(1) as usize;
    let origins: Vec<usize> = (1..=SELECTION_ORIGINS)
        .filter_map(|k| p.yc.len().checked_sub(h + (k - 1) * spacing))
        .filter(|&o| o > 0)
        .collect();
    let candidates = [
        (ModelKind::Mstl, Model::Mstl(p.periods.clone())),
        (ModelKind::Ets, Model::Ets),
        (ModelKind::SeasonalNaive, Model::SeasonalNaive(longest)),
    ];
    let band = BandSpec {
        quantile: settings.quantile,
        fine_sigma: p.fine_sigma,
    };
    let scores: Vec<Score> = candidates
        .iter()
        .map(|(kind, model)| Score {
            model: *kind,
            loss: backtest_losses(model, &p.yc, &origins, h, p.trend_window, Some(band))
                .map(|l| l.pinball),
        })
        .collect();
    Selection {
        model: lowest_loss(&scores),
        scores,
        epoch,
    }
}

/// The model with the lowest finite loss, the first of equals; MSTL when none has one.
fn lowest_loss(scores: &[Score]) -> ModelKind {
    scores
        .iter()
        .filter_map(|s| s.loss.filter(|e| e.is_finite()).map(|e| (s.model, e)))
        .fold(None, |best: Option<(ModelKind, f64)>, (k, e)| match best {
            Some((_, b)) if b <= e => best,
            _ => Some((k, e)),
        })
        .map_or(ModelKind::Mstl, |(k, _)| k)
}

/// Why MSTL or seasonal naive, asked for by name, has no period to fit: the shortest period
/// (of `configured`, or a day and a week) that is a whole number of at least two coarse steps
/// needs two cycles of history, counted in samples of the series; or no period is such a
/// number of steps.
fn no_period(p: &Prepared, configured: &[i64]) -> ForecastError {
    let candidates: &[i64] = if configured.is_empty() {
        &[DAY, WEEK]
    } else {
        configured
    };
    let fitting = candidates
        .iter()
        .copied()
        .filter(|&c| c % p.coarse_step == 0 && c / p.coarse_step >= 2)
        .min();
    let fmt = |secs: i64| format_duration(std::time::Duration::from_secs(secs.max(0) as u64));
    match fitting {
        Some(period) => ForecastError::InsufficientHistory {
            have: p.y.len(),
            need: (2 * period / p.step) as usize,
            why: format!("seasonal models need two full cycles of {}", fmt(period)),
        },
        None => ForecastError::ModelFit(format!(
            "no seasonal period ({}) is a whole number of {} steps, at least two",
            candidates
                .iter()
                .map(|&c| fmt(c))
                .collect::<Vec<_>>()
                .join(", "),
            fmt(p.coarse_step)
        )),
    }
}

/// Seasonal periods in steps that the history can support: two full cycles of each. With no
/// periods configured: a day, and a week too, when they are whole numbers of steps.
fn choose_periods(configured: &[i64], step: i64, len: usize) -> Vec<usize> {
    let candidates: Vec<i64> = if configured.is_empty() {
        vec![DAY, WEEK]
    } else {
        configured.to_vec()
    };
    let mut out: Vec<usize> = candidates
        .into_iter()
        .filter(|&p| p % step == 0 && p / step >= 2)
        .map(|p| (p / step) as usize)
        .filter(|&p| len >= 2 * p)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Strips leading and trailing gaps, fills interior gaps linearly, clamps negatives to 0.
/// Returns the cleaned values and the index in `series` of the first one.
fn clean(series: &Series) -> Result<(Vec<f64>, usize), ForecastError> {
    let v = &zero_runs_as_missing(&series.values);
    let Some(first) = v.iter().position(|x| x.is_finite()) else {
        return Err(ForecastError::Empty);
    };
    let last = v
        .iter()
        .rposition(|x| x.is_finite())
        .expect("a finite value exists");
    let raw = &v[first..=last];
    let finite = raw.iter().filter(|x| x.is_finite()).count();
    if finite * 2 < raw.len() {
        return Err(ForecastError::TooManyGaps {
            finite,
            len: raw.len(),
        });
    }
    let mut y = Vec::with_capacity(raw.len());
    let mut prev = 0usize; // index of the last finite value
    for (i, &x) in raw.iter().enumerate() {
        if x.is_finite() {
            if i > prev + 1 {
                let (a, b) = (raw[prev].max(0.0), x.max(0.0));
                for j in prev + 1..i {
                    let f = (j - prev) as f64 / (i - prev) as f64;
                    y.push(a + (b - a) * f);
                }
            }
            y.push(x.max(0.0));
            prev = i;
        }
    }
    debug_assert_eq!(y.len(), raw.len());
    Ok((y, first))
}

/// A run of at least this many zeros after steady load is an outage or a collection gap.
const ZERO_RUN: usize = 10;
/// Steps before such a run that must all be non-zero for it to count as sudden.
const STEADY_BEFORE: usize = 60;

/// Sudden all-zero runs as missing data: a run of [`ZERO_RUN`] or more zeros right after
/// [`STEADY_BEFORE`] steps that all carried load is an outage or a gap in collection, not idle
/// traffic (idle traffic thins out before it stops). Sparse series, whose zeros are spread
/// out, are left as they are.
fn zero_runs_as_missing(v: &[f64]) -> Vec<f64> {
    let mut out = v.to_vec();
    let mut i = 0;
    while i < v.len() {
        if v[i] != 0.0 {
            i += 1;
            continue;
        }
        let end = v[i..]
            .iter()
            .position(|x| *x != 0.0)
            .map_or(v.len(), |k| i + k);
        let steady = i >= STEADY_BEFORE
            && v[i - STEADY_BEFORE..i]
                .iter()
                .all(|x| x.is_finite() && *x > 0.0);
        if end - i >= ZERO_RUN && steady {
            out[i..end].fill(f64::NAN);
        }
        i = end;
    }
    out
}

/// A model to fit, its periods in steps of the series it is fitted on.
#[derive(Clone)]
enum Model {
    Mstl(Vec<usize>),
    Ets,
    SeasonalNaive(usize),
}

impl Model {
    /// The model a backtest fits on the first `origin` values: a history of exactly two
    /// cycles of a period has too little left before the origins, so MSTL keeps the periods
    /// that fit there (`None` when none does); other models are as they are.
    fn at_origin(&self, origin: usize) -> Option<Cow<'_, Model>> {
        match self {
            Model::Mstl(periods) => {
                let fit: Vec<usize> = periods
                    .iter()
                    .copied()
                    .filter(|&p| origin >= 2 * p)
                    .collect();
                (!fit.is_empty()).then_some(Cow::Owned(Model::Mstl(fit)))
            }
            m => Some(Cow::Borrowed(m)),
        }
    }

    /// What the model is called in a [`Forecast`], its periods of `step` seconds each.
    fn fitted(&self, step: i64) -> FittedModel {
        match self {
            Model::Mstl(ps) => FittedModel::Mstl {
                periods: ps.iter().map(|&p| p as i64 * step).collect(),
            },
            Model::Ets => FittedModel::Ets,
            Model::SeasonalNaive(p) => FittedModel::SeasonalNaive {
                period: *p as i64 * step,
            },
        }
    }

    /// Point forecast and its standard deviation per step.
    fn predict(
        &self,
        y: &[f64],
        horizon: usize,
        trend_window: usize,
    ) -> Result<(Vec<f64>, Vec<f64>), ForecastError> {
        let fit_err = |e: &dyn std::fmt::Display| ForecastError::ModelFit(e.to_string());
        let trend = TailTrend::new(trend_window);
        let fc = match self {
            Model::Mstl(periods) => {
                if periods.iter().any(|&p| y.len() < 2 * p) {
                    return Err(ForecastError::InsufficientHistory {
                        have: y.len(),
                        need: 2 * periods.iter().max().copied().unwrap_or(0),
                        why: "MSTL needs two full cycles of each period".into(),
                    });
                }
                let fitted = MSTLModel::new(periods.clone(), trend)
                    .fit(y)
                    .map_err(|e| fit_err(&e))?;
                fitted
                    .predict(horizon, FIT_LEVEL)
                    .map_err(|e| fit_err(&e))?
            }
            Model::Ets => {
                if y.len() < 8 {
                    return Err(ForecastError::InsufficientHistory {
                        have: y.len(),
                        need: 8,
                        why: "too short for the ETS model".into(),
                    });
                }
                let fitted = trend.fit(y).map_err(|e| fit_err(&e))?;
                fitted
                    .predict(horizon, Some(FIT_LEVEL))
                    .map_err(|e| fit_err(&e))?
            }
            Model::SeasonalNaive(p) => return seasonal_naive(y, *p, horizon),
        };
        let z_fit = normal_quantile(0.5 + FIT_LEVEL / 2.0);
        let sigma = match &fc.intervals {
            Some(iv) => fc
                .point
                .iter()
                .zip(&iv.upper)
                .map(|(p, u)| ((u - p) / z_fit).max(0.0))
                .collect(),
            None => vec![0.0; fc.point.len()],
        };
        if fc.point.iter().chain(&sigma).any(|v| !v.is_finite()) {
            return Err(ForecastError::ModelFit(
                "the model produced non-finite values".into(),
            ));
        }
        Ok((fc.point, sigma))
    }
}

/// The value one period ago; sigma is the spread of past seasonal differences (last 4 periods).
fn seasonal_naive(
    y: &[f64],
    period: usize,
    horizon: usize,
) -> Result<(Vec<f64>, Vec<f64>), ForecastError> {
    let n = y.len();
    if n < period {
        return Err(ForecastError::InsufficientHistory {
            have: n,
            need: period,
            why: "seasonal naive needs one full cycle".into(),
        });
    }
    let point: Vec<f64> = (0..horizon).map(|h| y[n - period + (h % period)]).collect();
    let from = n.saturating_sub(4 * period).max(period);
    let diffs: Vec<f64> = (from..n).map(|i| y[i] - y[i - period]).collect();
    let sigma = if diffs.len() > 1 {
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (diffs.len() - 1) as f64).sqrt()
    } else {
        0.0
    };
    Ok((point, vec![sigma; horizon]))
}

/// AutoETS on the tail of the deseasonalised series. MSTL hands the trend model the whole
/// history, and AutoETS's model search costs time in proportion to its length (~0.5 s for
/// 14 days at 1 minute), while a forecast hours ahead depends on the recent level and slope.
#[derive(Debug)]
struct TailTrend {
    window: usize,
    inner: AutoETSTrendModel,
}

impl TailTrend {
    fn new(window: usize) -> Self {
        Self {
            window,
            inner: AutoETS::non_seasonal().into_trend_model(),
        }
    }
}

impl TrendModel for TailTrend {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("AutoETS")
    }

    fn fit(
        &self,
        y: &[f64],
    ) -> Result<
        Box<dyn FittedTrendModel + Sync + Send>,
        Box<dyn std::error::Error + Send + Sync + 'static>,
    > {
        let tail = if self.window > 0 && y.len() > self.window {
            &y[y.len() - self.window..]
        } else {
            y
        };
        self.inner.fit(tail)
    }
}

/// The standard normal quantile function (Acklam's rational approximation, |error| < 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(days: usize, step: i64) -> Series {
        let n = days * (DAY / step) as usize;
        let values = (0..n)
            .map(|i| {
                let t = i as f64 * step as f64;
                100.0
                    + 50.0 * (2.0 * std::f64::consts::PI * t / DAY as f64).sin()
                    + ((i * 7919) % 13) as f64
            })
            .collect();
        Series::new(0, step, values)
    }

    #[test]
    fn a_sudden_zero_run_is_missing_data_and_sparse_zeros_are_load() {
        // steady load, then 15 zeros (an outage), then load again
        let mut v = vec![50.0; 100];
        v.extend([0.0; 15]);
        v.extend([50.0; 20]);
        let out = zero_runs_as_missing(&v);
        assert!(out[100..115].iter().all(|x| x.is_nan()));
        assert_eq!(out[..100], v[..100]);
        // a short pause, or zeros in sparse traffic, are real
        let mut short = vec![50.0; 100];
        short.extend([0.0; 5]);
        assert_eq!(zero_runs_as_missing(&short), short);
        let sparse: Vec<f64> = (0..300)
            .map(|i| if i % 7 == 0 { 3.0 } else { 0.0 })
            .collect();
        assert_eq!(zero_runs_as_missing(&sparse), sparse);
        // the fit interpolates the outage instead of learning a drop to zero
        let mut s = daily(3, 300);
        let n = s.values.len();
        for x in &mut s.values[n - 300..n - 100] {
            *x = 0.0;
        }
        let fc = fit_forecast(
            &s,
            &ForecastSettings::new(ModelKind::Ets, vec![], 12, 0.9, 300),
        )
        .unwrap();
        assert!(fc.point.iter().all(|p| *p > 20.0), "{:?}", fc.point);
    }

    #[test]
    fn normal_quantile_matches_tables() {
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.9) - 1.281_551_565_5).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.01) + 2.326_347_874).abs() < 1e-6);
    }

    #[test]
    fn periods_need_two_cycles() {
        assert_eq!(choose_periods(&[], 60, 2 * 1440 - 1), Vec::<usize>::new());
        assert_eq!(choose_periods(&[], 60, 2 * 1440), vec![1440]);
        assert_eq!(choose_periods(&[], 60, 14 * 1440), vec![1440, 10080]);
        assert_eq!(choose_periods(&[], 300, 14 * 288), vec![288, 2016]);
        assert_eq!(choose_periods(&[3600], 60, 200), vec![60]);
    }

    #[test]
    fn mstl_forecast_follows_the_daily_cycle() {
        let s = daily(3, 300);
        let fc = fit_forecast(
            &s,
            &ForecastSettings::new(ModelKind::Mstl, vec![], 288, 0.9, 300),
        )
        .unwrap();
        assert_eq!(fc.model.to_string(), "MSTL(1d)+AutoETS");
        assert_eq!(fc.start, s.end());
        assert_eq!(fc.point.len(), 288);
        // the sine peaks a quarter day into the cycle, at 150 + noise
        let peak = fc.point[72];
        assert!((130.0..175.0).contains(&peak), "peak {peak}");
        let trough = fc.point[216];
        assert!((30.0..75.0).contains(&trough), "trough {trough}");
        assert!(fc.upper.iter().zip(&fc.point).all(|(u, p)| u >= p));
    }

    #[test]
    fn gaps_are_interpolated_not_zero() {
        let mut s = daily(3, 300);
        for i in 100..110 {
            s.values[i] = f64::NAN;
        }
        s.values.push(f64::NAN); // a missing last point must not cost 25 s
        let fc = fit_forecast(
            &s,
            &ForecastSettings::new(ModelKind::Mstl, vec![], 12, 0.9, 300),
        )
        .unwrap();
        assert_eq!(
            fc.start,
            s.end() - 300,
            "forecast starts after the last finite sample"
        );
        assert!(fc.point.iter().all(|p| p.is_finite() && *p > 20.0));
    }

    #[test]
    fn bad_series_give_errors_quickly() {
        let settings = ForecastSettings::new(ModelKind::Auto, vec![], 12, 0.9, 60);
        assert_eq!(
            fit_forecast(&Series::empty(0, 60), &settings),
            Err(ForecastError::Empty)
        );
        let all_nan = Series::new(0, 60, vec![f64::NAN; 5000]);
        assert_eq!(fit_forecast(&all_nan, &settings), Err(ForecastError::Empty));
        let short = Series::new(0, 60, vec![1.0, 2.0, 3.0]);
        assert!(matches!(
            fit_forecast(&short, &settings),
            Err(ForecastError::InsufficientHistory { .. })
        ));
        let mut holey = Series::new(0, 60, vec![f64::NAN; 4000]);
        holey.values[0] = 1.0;
        holey.values[3999] = 1.0;
        assert!(matches!(
            fit_forecast(&holey, &settings),
            Err(ForecastError::TooManyGaps { .. })
        ));
    }

    #[test]
    fn an_insufficient_history_message_is_true_in_samples_of_the_series() {
        // issue 21: "61 usable samples of history, 10 needed" for MSTL with a 5m period at a 1m
        // step: the series was fitted on 5-minute means, where a 5m period is one step, so no
        // period was left, and the error blamed the history. A 5m period is now fitted on the
        // minutes.
        let wave = |n: usize| {
            let values = (0..n)
                .map(|i| 100.0 + [0.0, 20.0, 40.0, 20.0, 0.0][i % 5] + (i % 3) as f64)
                .collect();
            Series::new(0, 60, values)
        };
        let mstl = ForecastSettings::new(ModelKind::Mstl, vec![300], 10, 0.9, 60);
        let fc = fit_forecast(&wave(61), &mstl).expect("61 samples hold twelve 5m cycles");
        assert_eq!(fc.model.to_string(), "MSTL(5m)+AutoETS");
        // too short: the counts are the series' samples, and have < need
        assert_eq!(
            fit_forecast(&wave(9), &mstl).unwrap_err().to_string(),
            "9 usable samples of history, 10 needed (seasonal models need two full cycles of 5m)"
        );
        // a daily period on 1m data is fitted on 5-minute means: still counted in minutes
        let daily_mstl = ForecastSettings::new(ModelKind::Mstl, vec![], 10, 0.9, 60);
        assert_eq!(
            fit_forecast(&wave(600), &daily_mstl)
                .unwrap_err()
                .to_string(),
            "600 usable samples of history, 2880 needed (seasonal models need two full cycles of 1d)"
        );
        // ETS on 5-minute means of 35 one-minute samples (7 means): 40 samples needed, not 8
        let ets = ForecastSettings::new(ModelKind::Ets, vec![], 10, 0.9, 60);
        assert_eq!(
            fit_forecast(&wave(35), &ets).unwrap_err().to_string(),
            "35 usable samples of history, 40 needed (too short for the ETS model)"
        );
        // a period that is no whole number of steps says so, not "insufficient history"
        let odd = Series::new(0, 500, (0..600).map(|i| (i % 7) as f64).collect());
        let e = fit_forecast(
            &odd,
            &ForecastSettings::new(ModelKind::Mstl, vec![], 10, 0.9, 500),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "model fit failed: no seasonal period (1d, 7d) is a whole number of 500s steps, at \
             least two"
        );
    }

    #[test]
    fn constant_and_zero_series_are_flat() {
        let settings = ForecastSettings::new(ModelKind::Auto, vec![], 5, 0.9, 60);
        let zeros = Series::new(0, 60, vec![0.0; 3000]);
        let fc = fit_forecast(&zeros, &settings).unwrap();
        assert_eq!(fc.model, FittedModel::Constant);
        assert_eq!(fc.upper, vec![0.0; 5]);
    }

    #[test]
    fn seasonal_naive_repeats_last_cycle() {
        let s = daily(2, 3600);
        let fc = fit_forecast(
            &s,
            &ForecastSettings::new(ModelKind::SeasonalNaive, vec![], 24, 0.9, 3600),
        )
        .unwrap();
        assert_eq!(fc.point, s.values[24..48].to_vec());
        assert_eq!(fc.model.to_string(), "SeasonalNaive(1d)");
    }

    #[test]
    fn max_upper_in_needs_coverage() {
        let fc = Forecast {
            start: 600,
            step: 60,
            point: vec![1.0; 10],
            upper: vec![1.0, 2.0, 9.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            model: FittedModel::Ets,
            backtest_error: None,
            margins: None,
        };
        let max = |from, to| fc.max_upper_in(from, to).map(|p| (p.at, p.value));
        assert_eq!(max(600, 700), Some((720, 9.0)), "720 covers (660, 720]");
        assert_eq!(max(600, 660), Some((660, 2.0)));
        assert_eq!(max(630, 720), Some((720, 9.0)));
        assert_eq!(max(900, 1000), Some((900, 1.0)));
        assert_eq!(
            fc.max_upper_in(600, 1200),
            None,
            "window beyond the forecast"
        );
    }

    #[test]
    fn auto_selection_prefers_a_seasonal_model_on_a_daily_cycle() {
        // a strong daily cycle: a flat ETS forecast misses the swing over a 2-hour horizon
        let s = daily(4, 300);
        let settings = ForecastSettings::new(ModelKind::Auto, vec![], 24, 0.9, 300);
        let sel = select_model(&s, &settings, 42);
        assert_eq!(sel.epoch, 42);
        assert_eq!(sel.scores.len(), 3, "{sel:?}");
        assert!(sel.scores.iter().all(|s| s.loss.is_some()), "{sel:?}");
        assert_ne!(sel.model, ModelKind::Ets, "{}", sel.describe());
        let ets = sel.scores[1].loss.unwrap();
        let best = sel
            .scores
            .iter()
            .filter_map(|s| s.loss)
            .fold(f64::MAX, f64::min);
        assert!(best < ets, "{}", sel.describe());
        // the fit honours the choice
        let mut chosen = settings.clone();
        chosen.auto_choice = Some(sel.model);
        let fc = fit_forecast(&s, &chosen).unwrap();
        let expect = if sel.model == ModelKind::Mstl {
            "MSTL"
        } else {
            "SeasonalNaive"
        };
        assert!(
            fc.model.to_string().starts_with(expect),
            "{} for {:?}",
            fc.model,
            sel.model
        );
    }

    #[test]
    fn auto_selection_prefers_ets_when_the_level_drifts_without_a_cycle() {
        // a random walk: yesterday's shape says nothing, the latest level says most
        let mut x: f64 = 1000.0;
        let mut seed: u64 = 7;
        let values = (0..4 * 288)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                x = (x + ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 40.0).max(10.0);
                x
            })
            .collect();
        let s = Series::new(0, 300, values);
        let settings = ForecastSettings::new(ModelKind::Auto, vec![], 24, 0.9, 300);
        let sel = select_model(&s, &settings, 0);
        assert_ne!(sel.model, ModelKind::SeasonalNaive, "{}", sel.describe());
    }

    #[test]
    fn auto_selection_without_two_cycles_is_ets_without_a_backtest() {
        let s = daily(1, 300);
        let settings = ForecastSettings::new(ModelKind::Auto, vec![], 24, 0.9, 300);
        let sel = select_model(&s, &settings, 0);
        assert_eq!(sel.model, ModelKind::Ets);
        assert!(sel.scores.is_empty());
        let empty = Series::new(0, 300, vec![f64::NAN; 10]);
        assert_eq!(select_model(&empty, &settings, 0).model, ModelKind::Ets);
    }
}
