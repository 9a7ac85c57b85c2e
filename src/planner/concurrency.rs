//! Concurrency sizing (Little's law): a metric whose load is how many requests run at once,
//! not how many arrive.
//!
//! Little's law says the mean number of requests in flight is the arrival rate times the mean
//! time a request stays: `streams = rate x duration`. A metric with `concurrency` forecasts its
//! arrival rate (what its query returns) and is sized on `forecast rate x duration /
//! targetPerReplica`, with `targetPerReplica` in streams per replica and the duration the
//! recent observed one ([`read_duration`]). The calibrated margin and the forecast band apply
//! to the rate as for any metric; the duration multiplies what they give. [`load`] is the one
//! place the rule is applied ([`super::plan`] sizes every value of a metric through it).
//!
//! Pure: no IO, no clock.

/// The longest a duration reading stays in use when no newer one comes (idle minutes make
/// `rate(_sum) / rate(_count)` NaN): an hour, in seconds.
pub const DURATION_MAX_AGE: i64 = 3600;

/// The load a metric's `value` stands for: `value` itself, or with a `duration` (the metric is
/// an arrival rate, the duration in the rate's time unit, seconds for a `rate()` query) the
/// concurrent requests of Little's law, `value x duration`.
pub fn load(value: f64, duration: Option<f64>) -> f64 {
    match duration {
        Some(d) => streams(value, d),
        None => value,
    }
}

/// Little's law: the mean number of requests in flight at arrival `rate` when each lasts
/// `duration` (in the rate's time unit).
pub fn streams(rate: f64, duration: f64) -> f64 {
    rate * duration
}

/// The arrival rate one replica carries at `streams_per_replica` when requests last
/// `duration`: the target, in the metric's own units, that the forecast's calibration
/// (`planner::margin`) counts replicas with.
pub fn rate_per_replica(streams_per_replica: f64, duration: f64) -> f64 {
    streams_per_replica / duration
}

/// Why no request duration can be used: the metric then holds the replica count (it is never
/// read as zero load).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DurationProblem {
    /// No finite reading within [`DURATION_MAX_AGE`] (no data, or only NaN).
    NoData,
    /// The newest reading is zero or negative: not a duration.
    NotPositive(f64),
}

impl std::fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoData => write!(
                f,
                "the duration query returned no value in the last hour (nothing, or only NaN); \
                 check its metric names and labels"
            ),
            Self::NotPositive(v) => write!(
                f,
                "the duration query's newest value is {v}; a request duration must be a positive \
                 number of seconds"
            ),
        }
    }
}

/// The duration to size with, from a duration query's readings `(unix second, value)` in time
/// order, at `now`: the newest finite reading of the last [`DURATION_MAX_AGE`] seconds (NaN
/// and infinite readings, such as idle minutes' `0 / 0`, are skipped). It must be positive.
pub fn read_duration(readings: &[(i64, f64)], now: i64) -> Result<f64, DurationProblem> {
    let newest = readings
        .iter()
        .rev()
        .filter(|(t, _)| *t > now - DURATION_MAX_AGE && *t <= now)
        .map(|(_, v)| *v)
        .find(|v| v.is_finite())
        .ok_or(DurationProblem::NoData)?;
    if newest > 0.0 {
        Ok(newest)
    } else {
        Err(DurationProblem::NotPositive(newest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn littles_law_multiplies_the_rate_by_the_duration() {
        // 2 requests/s lasting 30 s each: 60 in flight
        assert_eq!(streams(2.0, 30.0), 60.0);
        assert_eq!(load(2.0, Some(30.0)), 60.0);
        assert_eq!(load(2.0, None), 2.0, "a plain metric is its own load");
        // 8 streams per replica at 30 s: a replica carries 0.2667 requests/s
        assert!((rate_per_replica(8.0, 30.0) - 8.0 / 30.0).abs() < 1e-12);
    }

    #[test]
    fn the_newest_finite_reading_of_the_last_hour_is_used() {
        let now = 10_000;
        let r = [(now - 600, 20.0), (now - 120, 31.5), (now - 60, f64::NAN)];
        assert_eq!(read_duration(&r, now), Ok(31.5), "NaN (idle) is skipped");
        // older than an hour, or from the future: not used
        assert_eq!(
            read_duration(&[(now - 3600, 20.0)], now),
            Err(DurationProblem::NoData)
        );
        assert_eq!(
            read_duration(&[(now + 60, 20.0)], now),
            Err(DurationProblem::NoData)
        );
        assert_eq!(read_duration(&[], now), Err(DurationProblem::NoData));
        assert_eq!(
            read_duration(&[(now, f64::NAN), (now, f64::INFINITY)], now),
            Err(DurationProblem::NoData)
        );
    }

    #[test]
    fn a_duration_that_is_not_positive_is_refused_with_its_value() {
        let now = 10_000;
        assert_eq!(
            read_duration(&[(now - 120, 30.0), (now - 60, 0.0)], now),
            Err(DurationProblem::NotPositive(0.0)),
            "the newest reading counts, not an older good one"
        );
        let e = read_duration(&[(now, -2.0)], now).unwrap_err();
        assert!(e.to_string().contains("newest value is -2"), "{e}");
        assert!(
            DurationProblem::NoData
                .to_string()
                .contains("no value in the last hour")
        );
    }
}
