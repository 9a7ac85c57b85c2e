//! When `Auto` chooses its model, and the fit with that choice: the one rule the controller,
//! `prescale simulate`, `prescale forecast` and the fleet benchmark all follow.
//!
//! `Auto` backtests its candidates ([`select_model`]) once per *selection epoch* of
//! [`SELECTION_INTERVAL`] (six hours) and reuses the choice for every fit within it. Epochs
//! are offset per scaler by a stable hash of its key (`namespace/name`), so a fleet's choices
//! spread over the interval instead of all falling at one instant. A fixed model (`MSTL`,
//! `ETS`, `SeasonalNaive`) makes no choice.

use super::{
    forecast::{Forecast, ForecastError, ForecastSettings, Selection, fit_forecast, select_model},
    model::ModelKind,
    series::{Series, align_down},
};

pub use super::forecast::SELECTION_INTERVAL;

/// The key of a scaler that has no name: a trace `prescale simulate` replays without `--spec`
/// or `--scaler`, a `prescale forecast --query`.
pub const UNNAMED_SCALER: &str = "default/unnamed";

/// The start of the selection epoch `now` falls in, for the scaler `key` (`namespace/name`).
/// Epochs are [`SELECTION_INTERVAL`] long and start at an offset in `[0, SELECTION_INTERVAL)`
/// that depends on `key` only.
pub fn selection_epoch(key: &str, now: i64) -> i64 {
    let offset = (stable_hash(key) % SELECTION_INTERVAL as u64) as i64;
    align_down(now - offset, SELECTION_INTERVAL) + offset
}

/// FNV-1a of `s`: stable across processes and releases (std's hasher is not).
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `Auto`'s choice for `epoch`: `previous` if it was made for that epoch, else a new
/// [`select_model`] on `series`. `None` for a fixed model.
pub fn choose_model(
    series: &Series,
    settings: &ForecastSettings,
    epoch: i64,
    previous: Option<Selection>,
) -> Option<Selection> {
    if settings.model != ModelKind::Auto {
        return None;
    }
    Some(match previous.filter(|s| s.epoch == epoch) {
        Some(s) => s,
        None => select_model(series, settings, epoch),
    })
}

/// Fits `series` with the model `selection` chose (for `Auto`) or the spec's fixed model.
pub fn fit_chosen(
    series: &Series,
    settings: &ForecastSettings,
    selection: Option<&Selection>,
) -> Result<Forecast, ForecastError> {
    if settings.model == ModelKind::Auto && selection.is_some() {
        let mut settings = settings.clone();
        settings.auto_choice = selection.map(|s| s.model);
        fit_forecast(series, &settings)
    } else {
        fit_forecast(series, settings)
    }
}

/// A fit as the operator makes it: [`choose_model`] for `epoch`, then [`fit_chosen`].
/// Returns the forecast and, for `Auto`, the choice to pass back as `previous` next time.
pub fn fit_with_choice(
    series: &Series,
    settings: &ForecastSettings,
    epoch: i64,
    previous: Option<Selection>,
) -> (Result<Forecast, ForecastError>, Option<Selection>) {
    let selection = choose_model(series, settings, epoch, previous);
    (fit_chosen(series, settings, selection.as_ref()), selection)
}

/// The choice a fit made at `made_at` with the model `kind` stands for, if that fit was in
/// `epoch`: how an operator that restarted (or a new leader) reuses the choice its status
/// remembers instead of running every scaler's selection at once. `Auto` itself and fits
/// before the epoch give `None`.
pub fn remembered_choice(kind: Option<ModelKind>, made_at: i64, epoch: i64) -> Option<Selection> {
    let model = kind.filter(|k| *k != ModelKind::Auto)?;
    (made_at >= epoch).then(|| Selection {
        model,
        scores: vec![],
        epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn daily(days: usize) -> Series {
        let values = (0..days * 288)
            .map(|i| 100.0 + 80.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin())
            .collect();
        Series::new(1_767_225_600, 300, values)
    }

    #[test]
    fn selection_epochs_are_stable_per_scaler_and_spread_over_the_interval() {
        let now = 1_767_225_600 + 12_345;
        let a = selection_epoch("ns/a", now);
        assert_eq!(a, selection_epoch("ns/a", now), "stable");
        assert!(a <= now && now < a + SELECTION_INTERVAL);
        // the same epoch until its end, then the next one
        assert_eq!(selection_epoch("ns/a", a + SELECTION_INTERVAL - 1), a);
        assert_eq!(
            selection_epoch("ns/a", a + SELECTION_INTERVAL),
            a + SELECTION_INTERVAL
        );
        // a fleet's epochs start at many different times
        let starts: std::collections::BTreeSet<i64> = (0..100)
            .map(|i| selection_epoch(&format!("ns/s{i}"), now) % SELECTION_INTERVAL)
            .collect();
        assert!(starts.len() > 90, "{} distinct starts", starts.len());
    }

    #[test]
    fn a_choice_is_reused_within_its_epoch_and_made_again_in_the_next() {
        let s = daily(8);
        let settings = ForecastSettings::new(ModelKind::Auto, vec![DAY], 24, 0.9, 300);
        let epoch = selection_epoch("ns/a", s.end());
        // a choice from this epoch is kept as it is, even one the backtest would not make
        let kept = Selection {
            model: ModelKind::Ets,
            scores: vec![],
            epoch,
        };
        let (fc, sel) = fit_with_choice(&s, &settings, epoch, Some(kept.clone()));
        assert_eq!(sel, Some(kept));
        assert!(fc.expect("fit").model.to_string().starts_with("ETS"));
        // one from the epoch before is made again, with its backtest scores
        let stale = Selection {
            model: ModelKind::Ets,
            scores: vec![],
            epoch: epoch - SELECTION_INTERVAL,
        };
        let (fc, sel) = fit_with_choice(&s, &settings, epoch, Some(stale));
        let sel = sel.expect("Auto chooses");
        assert_eq!(sel.epoch, epoch);
        assert_eq!(sel.scores.len(), 3, "{sel:?}");
        assert_ne!(sel.model, ModelKind::Auto);
        assert!(fc.is_ok());
    }

    #[test]
    fn a_fixed_model_makes_no_choice() {
        let s = daily(8);
        let settings = ForecastSettings::new(ModelKind::SeasonalNaive, vec![DAY], 24, 0.9, 300);
        let (fc, sel) = fit_with_choice(&s, &settings, 0, None);
        assert_eq!(sel, None);
        assert!(
            fc.expect("fit")
                .model
                .to_string()
                .starts_with("SeasonalNaive")
        );
    }

    #[test]
    fn a_remembered_choice_counts_only_in_its_epoch_and_for_a_real_model() {
        let epoch = 1_767_225_600;
        let got = remembered_choice(Some(ModelKind::SeasonalNaive), epoch + 60, epoch);
        assert_eq!(
            got.map(|s| (s.model, s.epoch)),
            Some((ModelKind::SeasonalNaive, epoch))
        );
        assert_eq!(
            remembered_choice(Some(ModelKind::Ets), epoch - 1, epoch),
            None
        );
        assert_eq!(
            remembered_choice(Some(ModelKind::Auto), epoch + 1, epoch),
            None
        );
        assert_eq!(remembered_choice(None, epoch + 1, epoch), None);
    }
}
