//! The one data shape the planner sees: a regular time series with a fixed step, where a
//! missing sample is `NaN` (never zero: no data is not zero load).

/// A regularly spaced series. `values[i]` is the sample at `start + i * step` (unix seconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Unix seconds of `values[0]`.
    pub start: i64,
    /// Seconds between samples, > 0.
    pub step: i64,
    /// Samples; `NaN` marks a missing one.
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(start: i64, step: i64, values: Vec<f64>) -> Self {
        assert!(step > 0, "series step must be positive");
        Self {
            start,
            step,
            values,
        }
    }

    /// An empty series whose first sample would be at `start`.
    pub fn empty(start: i64, step: i64) -> Self {
        Self::new(start, step, Vec::new())
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Unix seconds of sample `i`.
    pub fn time_of(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Unix seconds one step after the last sample (where the next sample would go).
    pub fn end(&self) -> i64 {
        self.time_of(self.values.len())
    }

    /// Number of finite samples.
    pub fn finite_count(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }

    /// The latest finite sample, as `(time, value)`.
    pub fn last_finite(&self) -> Option<(i64, f64)> {
        self.values
            .iter()
            .enumerate()
            .rev()
            .find(|(_, v)| v.is_finite())
            .map(|(i, v)| (self.time_of(i), *v))
    }

    /// The samples strictly before unix second `t` (walk-forward views).
    pub fn before(&self, t: i64) -> Series {
        let n = if t <= self.start {
            0
        } else {
            (((t - self.start) + self.step - 1) / self.step).min(self.values.len() as i64) as usize
        };
        Series::new(self.start, self.step, self.values[..n].to_vec())
    }

    /// Keeps only samples at or after unix second `t`.
    pub fn trim_before(&mut self, t: i64) {
        if t <= self.start {
            return;
        }
        let drop =
            (((t - self.start) + self.step - 1) / self.step).min(self.values.len() as i64) as usize;
        self.values.drain(..drop);
        self.start += drop as i64 * self.step;
    }

    /// Writes `(time, value)` samples into the series, growing it (with `NaN` gaps) as needed.
    /// Samples before `start` or off the step grid are rounded to the nearest slot; earlier
    /// slots than `start` are ignored.
    pub fn upsert(&mut self, samples: &[(i64, f64)]) {
        for &(t, v) in samples {
            let offset = t - self.start;
            if offset < 0 {
                continue;
            }
            let i = ((offset + self.step / 2) / self.step) as usize;
            if i >= self.values.len() {
                self.values.resize(i + 1, f64::NAN);
            }
            self.values[i] = v;
        }
    }

    /// Pads with `NaN` so the series reaches (but does not include) unix second `end`.
    pub fn extend_to(&mut self, end: i64) {
        if end > self.end() {
            let n = ((end - self.start) + self.step - 1) / self.step;
            self.values.resize(n as usize, f64::NAN);
        }
    }
}

/// Rounds `t` down to a multiple of `step`.
pub fn align_down(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// Formats a duration compactly (`14d`, `2h`, `5m`, `90s`), the inverse of
/// `crate::api::duration::parse_duration` for whole seconds.
pub fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_fills_gaps_with_nan() {
        let mut s = Series::empty(0, 60);
        s.upsert(&[(0, 1.0), (180, 4.0)]);
        assert_eq!(s.len(), 4);
        assert!(s.values[1].is_nan() && s.values[2].is_nan());
        assert_eq!(s.last_finite(), Some((180, 4.0)));
        s.upsert(&[(60, 2.0)]);
        assert_eq!(s.values[1], 2.0);
    }

    #[test]
    fn trim_and_before() {
        let mut s = Series::new(0, 60, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.before(120).values, vec![1.0, 2.0]);
        assert_eq!(s.before(121).values, vec![1.0, 2.0, 3.0]);
        s.trim_before(100);
        assert_eq!(s.start, 120);
        assert_eq!(s.values, vec![3.0, 4.0]);
    }
}
