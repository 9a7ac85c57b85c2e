//! The learned lead time of `scaleUp.leadTime: Auto`: how long the target took, after each
//! scale-up prescale made, to have that many ready replicas.
//!
//! Pure and clock-free: the controller tells the [`LeadTimeLearner`] when it scaled up
//! ([`LeadTimeLearner::record_scale`]) and how many replicas were ready at each evaluation
//! ([`LeadTimeLearner::observe_ready`]); [`LeadTimeLearner::lead_time`] is a high quantile of
//! the recent measurements, within bounds, or the default while there are none.
//!
//! A scale-up not ready within the upper bound is *censored*: all it says is that the start-up
//! took longer than the bound, or that the pods never became ready (a crash loop, an image
//! that cannot be pulled). It is dropped and counted ([`LeadTimeLearner::timed_out`]), never
//! taken for a start-up time: one such scale-up used to set the lead time to the bound.

use std::collections::VecDeque;
use std::time::Duration;

/// The lead time `Auto` plans with until it has measured a scale-up.
pub const DEFAULT_LEAD_TIME: Duration = Duration::from_secs(300);
/// The fewest seconds a learned lead time may be (a faster start still plans one minute ahead).
pub const MIN_LEAD_TIME: Duration = Duration::from_secs(60);
/// The most a learned lead time may be; a scale-up not ready after this long is not measured
/// (it timed out).
pub const MAX_LEAD_TIME: Duration = Duration::from_secs(1800);
/// The quantile of the measurements planned with: most scale-ups are ready within it.
pub const LEAD_TIME_QUANTILE: f64 = 0.9;
/// How many measurements are kept (the most recent).
pub const MAX_SAMPLES: usize = 20;

/// The bounds of a learned lead time for a scaler: [`MIN_LEAD_TIME`] to [`MAX_LEAD_TIME`], and
/// below the forecast horizon by one step (the forecast must reach past the lead window).
pub fn lead_time_bounds(horizon: Duration, step: Duration) -> (Duration, Duration) {
    let below_horizon = horizon.saturating_sub(step).max(Duration::from_secs(1));
    let max = MAX_LEAD_TIME.min(below_horizon);
    (MIN_LEAD_TIME.min(max), max)
}

/// Where the lead time in use comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadTimeSource {
    /// Measured scale-ups.
    Learned,
    /// No measurement yet: the default.
    Default,
}

/// A scale-up waiting for its replicas to be ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// When it was written (unix seconds).
    pub at: i64,
    /// The replica count it asked for.
    pub to: u32,
}

/// Scale-ups in flight and the measured durations of the recent ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeadTimeLearner {
    pending: Vec<Pending>,
    /// Measured durations, oldest first, at most [`MAX_SAMPLES`].
    samples: VecDeque<Duration>,
    /// Scale-ups in a row, the latest ones, not ready within the upper bound.
    timed_out: u32,
}

impl LeadTimeLearner {
    /// A learner that starts from stored measurements (a restart keeps its history).
    pub fn with_samples(samples: impl IntoIterator<Item = Duration>) -> Self {
        Self::restore(samples, [], 0)
    }

    /// A learner as a stored status left it: its measurements, the scale-ups still waiting
    /// (a restart measures them from their write, as if it had not happened) and the count of
    /// those that timed out.
    pub fn restore(
        samples: impl IntoIterator<Item = Duration>,
        pending: impl IntoIterator<Item = Pending>,
        timed_out: u32,
    ) -> Self {
        let mut learner = Self {
            pending: pending.into_iter().collect(),
            timed_out,
            ..Self::default()
        };
        for s in samples {
            learner.push(s);
        }
        learner
    }

    /// The measured durations, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = Duration> + '_ {
        self.samples.iter().copied()
    }

    /// The scale-ups waiting for their replicas, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = Pending> + '_ {
        self.pending.iter().copied()
    }

    /// The latest scale-ups in a row that were not ready within the upper bound (0 once one
    /// is measured again).
    pub fn timed_out(&self) -> u32 {
        self.timed_out
    }

    /// A scale from `from` to `to` replicas written at `at`. A scale-up waits for its count to
    /// be ready; a scale-down drops the waiting scale-ups above its count (they will never be
    /// ready, and measuring them would count the scale-down as slowness).
    pub fn record_scale(&mut self, at: i64, from: u32, to: u32) {
        if to > from {
            self.pending.push(Pending { at, to });
        } else {
            self.pending.retain(|p| p.to <= to);
        }
    }

    /// `ready` replicas at `at`: each waiting scale-up whose count is ready is measured (from
    /// its write to now); one waiting `max` or longer is censored: dropped and counted as
    /// timed out, not measured.
    pub fn observe_ready(&mut self, at: i64, ready: Option<u32>, max: Duration) {
        let mut measured = Vec::new();
        let mut timed_out = 0;
        self.pending.retain(|p| {
            let waited = Duration::from_secs((at - p.at).max(0) as u64);
            if ready.is_some_and(|r| r >= p.to) {
                measured.push(waited);
                false
            } else if waited >= max {
                timed_out += 1;
                false
            } else {
                true
            }
        });
        if !measured.is_empty() {
            self.timed_out = 0;
        }
        self.timed_out = self.timed_out.saturating_add(timed_out);
        for m in measured {
            self.push(m);
        }
    }

    fn push(&mut self, sample: Duration) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The lead time to plan with: the `quantile` of the measurements (nearest rank) within
    /// `bounds`, or `default` (also within them) while there are none.
    pub fn lead_time(
        &self,
        default: Duration,
        bounds: (Duration, Duration),
        quantile: f64,
    ) -> (Duration, LeadTimeSource) {
        let clamp = |d: Duration| d.clamp(bounds.0, bounds.1.max(bounds.0));
        if self.samples.is_empty() {
            return (clamp(default), LeadTimeSource::Default);
        }
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort();
        let rank = (quantile * sorted.len() as f64).ceil() as usize;
        let value = sorted[rank.clamp(1, sorted.len()) - 1];
        (clamp(value), LeadTimeSource::Learned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: (Duration, Duration) = (MIN_LEAD_TIME, MAX_LEAD_TIME);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn without_measurements_the_default_is_used() {
        let l = LeadTimeLearner::default();
        assert_eq!(
            l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9),
            (DEFAULT_LEAD_TIME, LeadTimeSource::Default)
        );
        // a scale-up still waiting is no measurement
        let mut l = LeadTimeLearner::default();
        l.record_scale(0, 2, 5);
        l.observe_ready(100, Some(4), MAX_LEAD_TIME);
        assert_eq!(l.samples().count(), 0);
        assert_eq!(
            l.lead_time(secs(300), BOUNDS, 0.9).1,
            LeadTimeSource::Default
        );
    }

    #[test]
    fn a_scale_up_is_measured_when_its_count_is_ready() {
        let mut l = LeadTimeLearner::default();
        l.record_scale(1000, 2, 5);
        l.observe_ready(1100, Some(4), MAX_LEAD_TIME);
        l.observe_ready(1200, Some(5), MAX_LEAD_TIME);
        assert_eq!(l.samples().collect::<Vec<_>>(), vec![secs(200)]);
        assert_eq!(
            l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9),
            (secs(200), LeadTimeSource::Learned)
        );
        // measured once only
        l.observe_ready(1300, Some(5), MAX_LEAD_TIME);
        assert_eq!(l.samples().count(), 1);
    }

    #[test]
    fn the_lead_time_is_a_high_quantile_of_the_measurements() {
        let l = LeadTimeLearner::with_samples((1..=10).map(|i| secs(60 * i)));
        assert_eq!(l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9).0, secs(540));
        assert_eq!(l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.5).0, secs(300));
        assert_eq!(l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 1.0).0, secs(600));
    }

    #[test]
    fn the_learned_value_stays_within_the_bounds() {
        let fast = LeadTimeLearner::with_samples([secs(4), secs(5)]);
        assert_eq!(
            fast.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9).0,
            MIN_LEAD_TIME
        );
        let slow = LeadTimeLearner::with_samples([secs(7200)]);
        assert_eq!(
            slow.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9).0,
            MAX_LEAD_TIME
        );
        // the default is bounded too (a horizon shorter than it)
        let bounds = lead_time_bounds(secs(240), secs(60));
        assert_eq!(bounds, (secs(60), secs(180)));
        let none = LeadTimeLearner::default();
        assert_eq!(none.lead_time(DEFAULT_LEAD_TIME, bounds, 0.9).0, secs(180));
    }

    #[test]
    fn a_scale_up_superseded_by_a_scale_down_is_dropped() {
        let mut l = LeadTimeLearner::default();
        l.record_scale(0, 2, 8);
        l.record_scale(60, 8, 4);
        l.observe_ready(120, Some(4), MAX_LEAD_TIME);
        l.observe_ready(5000, Some(4), MAX_LEAD_TIME);
        assert_eq!(l.samples().count(), 0);
        // one to a count still below the scale-down's is kept
        l.record_scale(200, 4, 6);
        l.record_scale(210, 6, 10);
        l.record_scale(220, 10, 8);
        l.observe_ready(300, Some(8), MAX_LEAD_TIME);
        assert_eq!(l.samples().collect::<Vec<_>>(), vec![secs(100)]);
    }

    #[test]
    fn a_scale_up_never_ready_times_out_at_the_upper_bound_and_is_no_sample() {
        let mut l = LeadTimeLearner::default();
        l.record_scale(0, 1, 3);
        l.observe_ready(1799, Some(2), MAX_LEAD_TIME);
        assert_eq!((l.samples().count(), l.timed_out()), (0, 0));
        l.observe_ready(1800, None, MAX_LEAD_TIME);
        // censored: not a start-up time of 30m (one such sample made the lead time the bound)
        assert_eq!((l.samples().count(), l.timed_out()), (0, 1));
        assert_eq!(l.pending().count(), 0);
        assert_eq!(
            l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9),
            (DEFAULT_LEAD_TIME, LeadTimeSource::Default)
        );
        l.observe_ready(4000, Some(3), MAX_LEAD_TIME);
        assert_eq!(l.samples().count(), 0);
        // the same with a bound below the horizon: 9m
        let mut l = LeadTimeLearner::with_samples([secs(120)]);
        l.record_scale(0, 1, 3);
        l.record_scale(10, 3, 5);
        l.observe_ready(550, Some(1), secs(540));
        assert_eq!((l.samples().count(), l.timed_out()), (1, 2));
        assert_eq!(l.lead_time(DEFAULT_LEAD_TIME, BOUNDS, 0.9).0, secs(120));
        // a scale-up measured again resets the count
        l.record_scale(600, 1, 2);
        l.observe_ready(700, Some(2), secs(540));
        assert_eq!((l.samples().count(), l.timed_out()), (2, 0));
    }

    #[test]
    fn a_restored_learner_measures_its_pending_scale_ups_from_their_write() {
        let mut l = LeadTimeLearner::default();
        l.record_scale(1000, 2, 6);
        l.observe_ready(1030, Some(3), MAX_LEAD_TIME);
        // the operator restarts: what the status kept
        let samples: Vec<_> = l.samples().collect();
        let pending: Vec<_> = l.pending().collect();
        assert_eq!(pending, vec![Pending { at: 1000, to: 6 }]);
        let mut restored = LeadTimeLearner::restore(samples, pending, l.timed_out());
        assert_eq!(restored, l);
        restored.observe_ready(1090, Some(6), MAX_LEAD_TIME);
        assert_eq!(restored.samples().collect::<Vec<_>>(), vec![secs(90)]);
        assert_eq!(restored.pending().count(), 0);
    }

    #[test]
    fn only_the_most_recent_measurements_are_kept() {
        let l = LeadTimeLearner::with_samples((1..=30).map(secs));
        let kept: Vec<_> = l.samples().collect();
        assert_eq!(kept.len(), MAX_SAMPLES);
        assert_eq!(kept[0], secs(11));
    }

    #[test]
    fn each_of_two_scale_ups_is_measured_from_its_own_write() {
        let mut l = LeadTimeLearner::default();
        l.record_scale(0, 2, 4);
        l.record_scale(30, 4, 6);
        l.observe_ready(90, Some(4), MAX_LEAD_TIME);
        l.observe_ready(150, Some(6), MAX_LEAD_TIME);
        assert_eq!(l.samples().collect::<Vec<_>>(), vec![secs(90), secs(120)]);
    }
}
