//! A synthetic but realistic load trace: requests per minute reaching an LLM API proxy, for
//! demos, docs and tests of `prescale simulate` when no recorded trace is at hand.
//!
//! The shape, all deterministic for a seed:
//! - a daily cycle: quiet at night (~15% of the peak), a morning ramp, a midday peak
//!   (~1,000 req/min on a weekday), an afternoon plateau and an evening shoulder;
//! - a weekly cycle: Saturdays and Sundays at ~45-50% of a weekday, Friday a little lower;
//! - day-to-day jitter (±7%), a slow wobble (AR(1), ~5%) and Poisson counting noise;
//! - slow growth (+3% a week);
//! - a few bursts (batch jobs, retries, a launch): minutes long, 1.5-3x the load around them.
//!
//! The generator only uses `+ - * /` and `sqrt` on `f64` (IEEE 754 correctly rounded), and its
//! own PRNG, so a seed gives the same trace byte for byte on every platform. No IO: the
//! bundled trace file is written by a test (`tests/bundled_trace.rs`).

use crate::planner::Series;

/// Unix seconds of the first sample: Monday 2026-03-02T00:00:00Z.
pub const START: i64 = 1_772_409_600;

/// Weekday load peak (requests per minute) at the start of the trace.
const PEAK: f64 = 1_000.0;
/// Growth per week, linear.
const GROWTH_PER_WEEK: f64 = 0.03;
/// Monday first.
const WEEKLY: [f64; 7] = [0.96, 1.0, 1.02, 1.0, 0.9, 0.48, 0.44];
/// The daily cycle as `(hour, share of the peak)`, interpolated smoothly; UTC.
const DAILY: [(f64, f64); 14] = [
    (0.0, 0.22),
    (3.0, 0.15),
    (5.5, 0.15),
    (7.0, 0.28),
    (9.0, 0.68),
    (10.5, 0.9),
    (12.5, 1.0),
    (14.0, 0.95),
    (16.0, 0.9),
    (17.5, 0.7),
    (19.0, 0.58),
    (21.0, 0.52),
    (22.5, 0.34),
    (24.0, 0.22),
];
/// Hours after midnight over which one day's weekly and jitter factors blend into the next.
const BLEND_HOURS: f64 = 6.0;
/// Expected bursts per day.
const BURSTS_PER_DAY: f64 = 0.4;

/// A deterministic load trace of `days` days at one sample every `step_s` seconds, starting
/// at [`START`] (a Monday, 00:00 UTC). Values are requests per minute: whole numbers at a
/// 60 s step, at most one decimal otherwise, never negative.
///
/// # Panics
/// If `step_s <= 0`.
pub fn synthetic_trace(seed: u64, days: u32, step_s: i64) -> Series {
    assert!(step_s > 0, "step must be positive");
    let step = step_s as f64;
    let n = (days as i64 * 86_400 / step_s) as usize;
    let bursts = bursts(seed, days);
    // Independent streams, so adding a burst does not move the noise and vice versa.
    let mut days_rng = SplitMix64::new(seed ^ 0x5EED_DA75);
    let jitter: Vec<f64> = (0..=days)
        .map(|_| 1.0 + 0.07 * (2.0 * days_rng.next_f64() - 1.0))
        .collect();
    let mut rng = SplitMix64::new(seed);
    // Slow wobble: AR(1) with a ~50 minute memory and a 5% standard deviation.
    let phi = (1.0 - 0.02 * step / 60.0).clamp(0.0, 0.999);
    let innovation = 0.05 * (1.0 - phi * phi).sqrt();
    let mut wobble = 0.0;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let secs = i as i64 * step_s;
        let day = (secs / 86_400) as usize;
        let hour = (secs % 86_400) as f64 / 3_600.0;
        // Today's weekly and jitter factors, blended in from yesterday's after midnight.
        let today = WEEKLY[day % 7] * jitter[day];
        let yesterday = if day == 0 {
            today
        } else {
            WEEKLY[(day - 1) % 7] * jitter[day - 1]
        };
        let w = smoothstep((hour / BLEND_HOURS).min(1.0));
        let level = yesterday + (today - yesterday) * w;
        let growth = 1.0 + GROWTH_PER_WEEK * secs as f64 / (7.0 * 86_400.0);
        wobble = phi * wobble + innovation * rng.normal();
        let burst = bursts.iter().map(|b| b.factor(secs)).fold(1.0, f64::max);
        let rate = PEAK * growth * level * daily(hour) * (1.0 + wobble).max(0.1) * burst;
        // Poisson-like counting noise on the requests of this step.
        let mean = rate * step / 60.0;
        let count = (mean + mean.sqrt() * rng.normal()).max(0.0).round();
        values.push(round1(count * 60.0 / step));
    }
    Series::new(START, step_s, values)
}

/// The series as CSV: a `timestamp,<column>` header, then one `unix seconds,value` row per
/// sample; values are written as integers when whole, else with one decimal; a missing
/// sample is `NaN`.
pub fn write_csv(series: &Series, column: &str) -> String {
    let mut out = String::with_capacity(16 * (series.len() + 1));
    out.push_str("timestamp,");
    out.push_str(column);
    out.push('\n');
    for (i, v) in series.values.iter().enumerate() {
        let t = series.time_of(i);
        let v = round1(*v);
        if !v.is_finite() {
            out.push_str(&format!("{t},NaN\n"));
        } else if v.fract() == 0.0 {
            out.push_str(&format!("{t},{v:.0}\n"));
        } else {
            out.push_str(&format!("{t},{v:.1}\n"));
        }
    }
    out
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn smoothstep(s: f64) -> f64 {
    s * s * (3.0 - 2.0 * s)
}

/// The daily cycle at `hour` (0..24), as a share of the peak.
fn daily(hour: f64) -> f64 {
    let k = DAILY
        .windows(2)
        .position(|w| hour < w[1].0)
        .unwrap_or(DAILY.len() - 2);
    let ((h0, v0), (h1, v1)) = (DAILY[k], DAILY[k + 1]);
    v0 + (v1 - v0) * smoothstep(((hour - h0) / (h1 - h0)).clamp(0.0, 1.0))
}

/// A short spike: ramps up over a minute or two, holds, decays over a few minutes.
#[derive(Debug, Clone, Copy)]
struct Burst {
    /// Seconds from the start of the trace.
    start: i64,
    rise: i64,
    hold: i64,
    decay: i64,
    /// Multiplier at the top.
    factor: f64,
}

impl Burst {
    fn factor(&self, secs: i64) -> f64 {
        let d = secs - self.start;
        let env = if d < 0 || d >= self.rise + self.hold + self.decay {
            0.0
        } else if d < self.rise {
            (d + 1) as f64 / self.rise as f64
        } else if d < self.rise + self.hold {
            1.0
        } else {
            1.0 - (d - self.rise - self.hold) as f64 / self.decay as f64
        };
        1.0 + (self.factor - 1.0) * env
    }
}

fn bursts(seed: u64, days: u32) -> Vec<Burst> {
    let mut rng = SplitMix64::new(seed ^ 0xB0B5_7B0B);
    let mut out = Vec::new();
    for day in 0..days as i64 {
        // At most two a day: P(1+) = BURSTS_PER_DAY, P(2) = a quarter of that.
        let u = rng.next_f64();
        let count = if u < BURSTS_PER_DAY / 4.0 {
            2
        } else if u < BURSTS_PER_DAY {
            1
        } else {
            0
        };
        for _ in 0..count {
            // Mostly in working hours (batch jobs, launches), sometimes at any hour.
            let hour = if rng.next_f64() < 0.7 {
                8.0 + 12.0 * rng.next_f64()
            } else {
                24.0 * rng.next_f64()
            };
            out.push(Burst {
                start: day * 86_400 + (hour * 3_600.0) as i64,
                rise: 60 + (60.0 * rng.next_f64()) as i64,
                hold: 120 + (20.0 * 60.0 * rng.next_f64()) as i64,
                decay: 120 + (180.0 * rng.next_f64()) as i64,
                factor: 1.5 + 1.5 * rng.next_f64(),
            });
        }
    }
    out
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for synthetic data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Approximately standard normal (Irwin-Hall: the sum of 12 uniforms, minus 6), which
    /// needs no transcendental functions, so it is bit-exact everywhere.
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.next_f64()).sum::<f64>() - 6.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let a = synthetic_trace(7, 14, 60);
        assert_eq!(a, synthetic_trace(7, 14, 60));
        assert_ne!(a, synthetic_trace(8, 14, 60));
        assert_eq!(a.start, START);
        assert_eq!(a.len(), 14 * 1440);
        assert!(
            a.values
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0)
        );
        // Night is quiet, midday is busy (Tuesday of week 1).
        let day = &a.values[1440..2 * 1440];
        let mean = |r: std::ops::Range<usize>| day[r.clone()].iter().sum::<f64>() / r.len() as f64;
        let night = mean(3 * 60..5 * 60);
        let noon = mean(12 * 60..13 * 60);
        assert!((700.0..1300.0).contains(&noon), "noon {noon}");
        assert!(night < 0.25 * noon, "night {night} noon {noon}");
    }

    #[test]
    fn other_steps() {
        let s = synthetic_trace(1, 2, 300);
        assert_eq!(s.len(), 2 * 288);
        assert!(
            s.values
                .iter()
                .all(|v| *v >= 0.0 && (v * 10.0).fract() == 0.0)
        );
        let s = synthetic_trace(1, 1, 7);
        assert_eq!(s.len(), 86_400 / 7);
    }

    #[test]
    fn csv_format() {
        let s = Series::new(60, 60, vec![1.0, 2.25, f64::NAN, 0.0, 1234.5]);
        assert_eq!(
            write_csv(&s, "requests"),
            "timestamp,requests\n60,1\n120,2.3\n180,NaN\n240,0\n300,1234.5\n"
        );
    }

    #[test]
    fn daily_is_continuous() {
        for m in 0..(24 * 60) {
            let (a, b) = (daily(m as f64 / 60.0), daily((m + 1) as f64 / 60.0));
            assert!((a - b).abs() < 0.02, "{m}: {a} -> {b}");
        }
        assert_eq!(daily(0.0), daily(24.0));
    }
}
