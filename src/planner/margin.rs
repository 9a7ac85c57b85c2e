//! The calibrated lead-window margin: how much the load may grow over the lead window, learnt
//! from the same time of day in the history. Replicas are sized with it.
//!
//! For every past step `s` whose lead window lies in the history, the growth is
//! `g(s) = max(load[s .. s + window]) / (load[s - 1] + floor)`: the highest load of the lead
//! window after `s` relative to the last load seen before it, plus a floor (the mean load of
//! the last day) that keeps idle moments from dividing by zero and makes the margin additive
//! for sparse traffic. The margin for a decision at some time of day is a quantile of `g` over
//! the past steps within [`SLOT`] of that time of day on each of the last [`DAYS`] days (with
//! less than a day of history, over all of it). Replicas are then sized for
//! `margin * (load[now - 1] + floor)`: headroom that is wide where the history shows rises and
//! bursts at that time of day (the morning ramp, a busy hour) and narrow where it shows none,
//! instead of the same headroom all day. It is calibrated by construction: at that time of day
//! the load over the lead window stayed under it with the quantile's probability.
//!
//! The quantile is the spec's `forecast.quantile`; unset, it is chosen at each fit so that
//! sizing with it, replayed over the calibration history with the scale-down hold, would have
//! cost [`DEFAULT_COST_RATIO`] times the replica-steps of a reactive autoscaler at the same
//! target: the operating point is a budget, which means the same thing on smooth and on bursty
//! traffic, where a fixed quantile costs very different amounts.
//!
//! Pure and cheap: `O(history * window)` per fit, plus `O(history * hold)` per step of the
//! quantile search.

const DAY: i64 = 86_400;
/// Days of history the margin is calibrated on.
pub const DAYS: i64 = 7;
/// Half-width of the time-of-day slot on a daily cycle, in seconds; other cycles scale it
/// (a 48th of the period, at least one step).
pub const SLOT: i64 = 30 * 60;
/// Fewest samples a margin is computed from.
const MIN_SAMPLES: usize = 20;
/// The replica budget of the default operating point, relative to a reactive autoscaler at
/// the same target (see the module docs).
pub const DEFAULT_COST_RATIO: f64 = 1.15;
/// Steps a reactive autoscaler holds a higher count (the HPA's default five minutes at 1m).
const REACTIVE_HOLD: usize = 5;
/// The quantiles the budget search may choose from.
const QUANTILE_RANGE: (f64, f64) = (0.05, 0.995);

/// The headroom a metric without a forecast is sized with under `Fallback: Reactive`: with
/// the budget (`forecast.quantile` unset), the budget's [`DEFAULT_COST_RATIO`] on the latest
/// load. Without a forecast nothing says where a rise will come, and then the replicas the
/// budget buys are best spent as a reactive autoscaler with a lower target spends them:
/// uniformly, not left unspent (with none, prescale lost to that autoscaler at equal budget on
/// the first hour of a history, where it has no forecast yet). With a fixed quantile there is
/// no budget: none (1).
pub fn fallback_headroom(quantile: Option<f64>) -> f64 {
    if quantile.is_none() {
        DEFAULT_COST_RATIO
    } else {
        1.0
    }
}

/// How replicas are sized from the margin.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    /// Steps of the lead window: the lead time plus one decision interval.
    pub window: usize,
    pub target_per_replica: f64,
    /// Steps the planner holds a higher recommendation before scaling down (the
    /// stabilisation window), so the budget search counts what the plan will really spend.
    pub hold_steps: usize,
    /// Share of the replicas that may go per step, in (0, 1]: the scale-down rate limit.
    pub scale_down_per_step: f64,
    /// `None`: size for `ForecastSettings::quantile`; `Some(r)`: choose the quantile whose
    /// sizing costs `r` times a reactive autoscaler's replica-steps.
    pub cost_ratio: Option<f64>,
    /// The cycle "the same time of day" follows, in seconds: a day, or the shortest seasonal
    /// period the spec sets.
    pub period: i64,
}

impl Sizing {
    /// The sizing a scaler's settings describe: the lead window is the lead time plus one
    /// decision interval, in steps of `step` seconds; `quantile` unset means the budget of
    /// [`DEFAULT_COST_RATIO`].
    pub fn new(
        lead_time: std::time::Duration,
        interval: std::time::Duration,
        stabilization_window: std::time::Duration,
        max_percent_per_minute: u32,
        step: i64,
        target_per_replica: f64,
        quantile: Option<f64>,
    ) -> Self {
        let step = step.max(1) as u64;
        let steps = |d: std::time::Duration| d.as_secs().div_ceil(step) as usize;
        Self {
            window: (steps(lead_time) + steps(interval)).max(1),
            target_per_replica,
            hold_steps: steps(stabilization_window),
            scale_down_per_step: if max_percent_per_minute == 0 {
                1.0
            } else {
                (max_percent_per_minute as f64 / 100.0 * step as f64 / 60.0).min(1.0)
            },
            cost_ratio: quantile.is_none().then_some(DEFAULT_COST_RATIO),
            period: DAY,
        }
    }
}

impl Sizing {
    /// "The same time of day" follows the shortest of `periods` (seconds), when the spec sets
    /// seasonal periods; a day otherwise.
    pub fn with_periods(mut self, periods: &[i64]) -> Self {
        if let Some(&p) = periods.iter().filter(|p| **p > 0).min() {
            self.period = p;
        }
        self
    }
}

/// Margins for decisions at `start + i * step`, `i < horizon`, the floor they apply to and the
/// quantile they are for.
#[derive(Debug, Clone, PartialEq)]
pub struct Margins {
    pub start: i64,
    pub step: i64,
    pub margin: Vec<f64>,
    pub floor: f64,
    pub quantile: f64,
}

impl Margins {
    /// The load to size for at `now`, after the last observed load `last`: the margin of the
    /// step holding `now` (the last one past the end) times `last + floor`.
    pub fn sized_load(&self, now: i64, last: f64) -> f64 {
        self.at(&self.margin, now) * (last.max(0.0) + self.floor)
    }

    fn at(&self, margins: &[f64], now: i64) -> f64 {
        let i = ((now - self.start).max(0) / self.step.max(1)) as usize;
        margins.get(i).or(margins.last()).copied().unwrap_or(1.0)
    }
}

/// Growth samples for one window length, and the slots they are drawn from.
struct Growth {
    /// `values[k]` is for step `k + 1` of the history, at unix second `t0 + k * step`.
    values: Vec<f64>,
    t0: i64,
    step: i64,
    oldest: i64,
    /// The cycle and the half-width of a slot in it, in seconds.
    period: i64,
    half_slot: i64,
    /// The history holds a whole cycle (else every sample is used).
    whole_cycle: bool,
}

impl Growth {
    fn new(
        y: &[f64],
        start: i64,
        step: i64,
        window: usize,
        floor: f64,
        period: i64,
    ) -> Option<Self> {
        let n = y.len();
        if n < 1 + window + MIN_SAMPLES {
            return None;
        }
        let values = (1..=n - window)
            .map(|s| {
                let future = y[s..s + window].iter().copied().fold(0.0, f64::max);
                future / (y[s - 1] + floor)
            })
            .collect();
        let period = period.max(step);
        let cycle_steps = (period / step) as usize;
        Some(Self {
            values,
            t0: start - (n - 1) as i64 * step,
            step,
            oldest: start - DAYS * DAY,
            period,
            half_slot: (SLOT * period / DAY).max(step),
            whole_cycle: n >= cycle_steps + 1 + window,
        })
    }

    /// Indices whose time lies in `[from, to]`, not before the oldest calibrated day.
    fn range(&self, from: i64, to: i64) -> Option<std::ops::RangeInclusive<usize>> {
        let last = self.values.len() as i64 - 1;
        let from = from.max(self.oldest);
        let lo = (from - self.t0 + self.step - 1)
            .div_euclid(self.step)
            .max(0);
        let hi = (to - self.t0).div_euclid(self.step).min(last);
        (lo <= hi).then_some(lo as usize..=hi as usize)
    }

    /// The sorted sample a decision at `at` is calibrated on.
    fn sample(&self, at: i64, into: &mut Vec<f64>) {
        into.clear();
        if self.whole_cycle {
            let mut centre = at;
            while centre + self.half_slot >= self.oldest.max(self.t0) {
                if let Some(r) = self.range(centre - self.half_slot, centre + self.half_slot) {
                    into.extend_from_slice(&self.values[r]);
                }
                centre -= self.period;
            }
        } else if let Some(r) = self.range(self.oldest, i64::MAX / 2) {
            into.extend_from_slice(&self.values[r]);
        }
        into.sort_by(f64::total_cmp);
    }

    /// The margin at each of `horizon` steps from `start`; `None` if a sample is too small.
    fn margins(&self, start: i64, horizon: usize, quantile: f64) -> Option<Vec<f64>> {
        let mut sample = Vec::new();
        (0..horizon)
            .map(|i| {
                self.sample(start + i as i64 * self.step, &mut sample);
                (sample.len() >= MIN_SAMPLES).then(|| quantile_of(&sample, quantile))
            })
            .collect()
    }
}

/// The margins over `y` (cleaned and finite, at `step` seconds, its last value at
/// `start - step`), for `quantile` or the quantile `sizing.cost_ratio` chooses. `None` when
/// the history is too short for `MIN_SAMPLES` (20) samples.
pub fn margins(
    y: &[f64],
    start: i64,
    step: i64,
    sizing: &Sizing,
    quantile: f64,
    horizon: usize,
) -> Option<Margins> {
    let n = y.len();
    let step = step.max(1);
    let day_steps = (DAY / step) as usize;
    let recent_from = n.saturating_sub(day_steps);
    if recent_from >= n {
        return None;
    }
    let floor =
        (y[recent_from..].iter().sum::<f64>() / (n - recent_from) as f64).max(f64::MIN_POSITIVE);
    let lead = Growth::new(y, start, step, sizing.window.max(1), floor, sizing.period)?;
    let quantile = match sizing.cost_ratio {
        None => quantile,
        Some(ratio) => budget_quantile(y, floor, sizing, ratio, &lead)?,
    };
    Some(Margins {
        start,
        step,
        margin: lead.margins(start, horizon, quantile)?,
        floor,
        quantile,
    })
}

/// The quantile whose sizing, replayed over the last [`DAYS`] days of `y` the way the planner
/// sizes (the reactive floor, the stabilisation hold, the scale-down rate limit),
/// spends `ratio` times the replica-steps of a reactive autoscaler at the same target: a
/// bisection over [`QUANTILE_RANGE`] (the replay's cost rises with the quantile).
fn budget_quantile(
    y: &[f64],
    floor: f64,
    sizing: &Sizing,
    ratio: f64,
    lead: &Growth,
) -> Option<f64> {
    let replay = Replay::new(y, floor, sizing, lead)?;
    if replay.reactive <= 0.0 {
        return Some(QUANTILE_RANGE.0);
    }
    let (mut lo, mut hi) = QUANTILE_RANGE;
    if replay.cost(hi) <= ratio {
        return Some(hi);
    }
    if replay.cost(lo) >= ratio {
        return Some(lo);
    }
    for _ in 0..12 {
        let mid = (lo + hi) / 2.0;
        if replay.cost(mid) <= ratio {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The last [`DAYS`] days of a history, replayed as the planner would size them.
struct Replay<'a> {
    y: &'a [f64],
    floor: f64,
    sizing: &'a Sizing,
    /// The first replayed step (decided after load `y[from - 1]`).
    from: usize,
    /// The growth sample of each half-slot the replay passes through, and the half-slot of
    /// each replayed step: margins change slowly with the time of day, so they are looked up
    /// once per half-slot ([`SLOT`] on a daily cycle), not per step.
    slots: Vec<Vec<f64>>,
    slot_of: Vec<usize>,
    /// Replica-steps of the reactive autoscaler over the replay: the latest load's count,
    /// held for [`REACTIVE_HOLD`] steps.
    reactive: f64,
}

impl<'a> Replay<'a> {
    /// `None` when a half-slot's sample is too small.
    fn new(y: &'a [f64], floor: f64, sizing: &'a Sizing, lead: &Growth) -> Option<Self> {
        let n = y.len();
        let step = lead.step;
        let from = n
            .saturating_sub(DAYS as usize * (DAY / step) as usize)
            .max(1);
        // step s is decided at unix second time(s), after load y[s - 1]
        let time = |s: usize| lead.t0 + (s as i64 - 1) * step;
        let mut slots: Vec<Vec<f64>> = Vec::new();
        let mut slot_of = Vec::with_capacity(n - from);
        let mut current = None;
        for s in from..n {
            let key = time(s).div_euclid(lead.half_slot);
            if current != Some(key) {
                let mut sample = Vec::new();
                lead.sample(key * lead.half_slot + lead.half_slot / 2, &mut sample);
                if sample.len() < MIN_SAMPLES {
                    return None;
                }
                slots.push(sample);
                current = Some(key);
            }
            slot_of.push(slots.len() - 1);
        }
        let replicas = |load: f64| replicas_of(load, sizing.target_per_replica);
        let reactive: f64 = (from..n)
            .map(|s| {
                y[s.saturating_sub(REACTIVE_HOLD).max(1) - 1..s]
                    .iter()
                    .map(|&v| replicas(v))
                    .fold(0.0, f64::max)
            })
            .sum();
        Some(Self {
            y,
            floor,
            sizing,
            from,
            slots,
            slot_of,
            reactive,
        })
    }

    /// Replica-steps of sizing with the `q` margins, relative to the reactive autoscaler's:
    /// each step wants the margin's count (at least the latest load's), holds the highest
    /// want of the stabilisation window and scales down at most at the rate limit.
    fn cost(&self, q: f64) -> f64 {
        let (y, from) = (self.y, self.from);
        let replicas = |load: f64| replicas_of(load, self.sizing.target_per_replica);
        let hold_steps = self.sizing.hold_steps.max(1);
        let margins: Vec<f64> = self.slots.iter().map(|v| quantile_of(v, q)).collect();
        let mut wanted: Vec<f64> = Vec::with_capacity(y.len() - from);
        let mut current: f64 = 0.0;
        let mut total = 0.0;
        for s in from..y.len() {
            let last = y[s - 1];
            let margin = margins[self.slot_of[s - from]];
            let want = replicas(margin * (last + self.floor)).max(replicas(last));
            wanted.push(want);
            let held = wanted[wanted.len().saturating_sub(hold_steps)..]
                .iter()
                .copied()
                .fold(0.0, f64::max);
            current = if held >= current {
                held
            } else {
                let allowed = (current * self.sizing.scale_down_per_step).floor().max(1.0);
                held.max(current - allowed)
            };
            total += current;
        }
        total / self.reactive
    }
}

/// Replicas for `load` at `target_per_replica`, as a float (the replay sums them).
fn replicas_of(load: f64, target_per_replica: f64) -> f64 {
    (load.max(0.0) / target_per_replica).ceil()
}

/// The empirical `q`-quantile of sorted `v` (linear between order statistics).
fn quantile_of(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let i = pos.floor() as usize;
    let f = pos - i as f64;
    if i + 1 < v.len() {
        v[i] + (v[i + 1] - v[i]) * f
    } else {
        v[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;

    /// `days` of per-minute load: a level of 100 with deterministic noise, and from 09:00 to
    /// 09:30 each day a ramp to 300.
    fn trace(days: usize) -> Vec<f64> {
        let mut seed: u64 = 11;
        (0..days * 1440)
            .map(|i| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 20.0;
                let minute = i % 1440;
                let ramp = if (540..570).contains(&minute) {
                    200.0 * (minute - 540) as f64 / 30.0
                } else if (570..600).contains(&minute) {
                    200.0
                } else {
                    0.0
                };
                100.0 + ramp + noise
            })
            .collect()
    }

    /// Lead 5m at 1m decisions, a 15m hold, 10%/min down, 10 per replica; a budget or none.
    fn sizing(cost_ratio: Option<f64>) -> Sizing {
        let mut s = Sizing::new(
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(900),
            10,
            MIN,
            10.0,
            Some(0.9),
        );
        assert_eq!((s.window, s.hold_steps, s.cost_ratio), (6, 15, None));
        s.cost_ratio = cost_ratio;
        s
    }

    #[test]
    fn the_margin_is_wide_before_the_daily_ramp_and_narrow_elsewhere() {
        let y = trace(8);
        let start = y.len() as i64 * MIN; // the history starts at 0, a midnight
        let m = margins(&y, start, MIN, &sizing(None), 0.9, 24 * 60).unwrap();
        assert_eq!(m.margin.len(), 1440);
        assert_eq!(m.quantile, 0.9);
        // at 09:00 the next six minutes rise ~40 above the last value; at 03:00 only noise
        let (ramp, night) = (m.margin[540], m.margin[180]);
        assert!(ramp > night * 1.1, "ramp {ramp} vs night {night}");
        let sized = |i: usize| m.sized_load(start + i as i64 * MIN, 100.0);
        assert!(sized(540) > sized(180));
        // the floor is the mean load of the last day
        assert!((104.0..109.0).contains(&m.floor), "floor {}", m.floor);
    }

    #[test]
    fn the_margin_covers_the_next_day_as_often_as_asked() {
        let y = trace(9);
        let day = 1440;
        let history = &y[..8 * day];
        let start = history.len() as i64 * MIN;
        for q in [0.5, 0.9] {
            let m = margins(history, start, MIN, &sizing(None), q, day).unwrap();
            // out of sample: the ninth day's lead windows against its margins
            let (mut covered, mut total) = (0, 0);
            for i in 1..day - 6 {
                let s = 8 * day + i;
                let need = m.sized_load(start + i as i64 * MIN, y[s - 1]);
                let future = y[s..s + 6].iter().copied().fold(0.0, f64::max);
                covered += usize::from(future <= need);
                total += 1;
            }
            let coverage = covered as f64 / total as f64;
            assert!((coverage - q).abs() < 0.06, "q {q}: coverage {coverage}");
        }
    }

    #[test]
    fn a_budget_chooses_the_quantile_and_a_bigger_one_buys_a_higher_quantile() {
        let y = trace(8);
        let start = y.len() as i64 * MIN;
        let at = |r: f64| {
            margins(&y, start, MIN, &sizing(Some(r)), 0.9, 60)
                .unwrap()
                .quantile
        };
        let (low, high) = (at(1.05), at(1.4));
        assert!(low < high, "{low} vs {high}");
        assert!(
            (QUANTILE_RANGE.0..=QUANTILE_RANGE.1).contains(&low),
            "{low}"
        );
        // a budget below what even the lowest quantile costs gets the lowest
        assert_eq!(at(0.1), QUANTILE_RANGE.0);
    }

    #[test]
    fn short_or_idle_histories_give_no_margin_or_a_finite_one() {
        assert_eq!(margins(&[1.0; 10], 600, MIN, &sizing(None), 0.9, 5), None);
        let idle = vec![0.0; 3000];
        let m = margins(&idle, 3000 * MIN, MIN, &sizing(Some(1.15)), 0.9, 5).unwrap();
        assert!(m.margin.iter().all(|v| v.is_finite()));
        assert!(m.sized_load(3000 * MIN, 0.0) < 1e-6);
    }

    #[test]
    fn the_fallback_headroom_is_the_budget_or_none() {
        assert_eq!(fallback_headroom(None), DEFAULT_COST_RATIO);
        assert_eq!(fallback_headroom(Some(0.9)), 1.0);
    }
}
