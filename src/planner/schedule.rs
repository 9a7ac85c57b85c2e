//! Scheduled overrides: windows of time with a replica floor (and optionally a ceiling) of
//! their own, for load the history cannot foresee (a launch day) or that must be met before
//! it shows (a weekday-morning rush).
//!
//! Pure, like the rest of the planner: which windows are active is a function of `now`
//! ([`at`]), never of a clock. A window is `[start, end)`: active from its start, inclusive,
//! to its end, exclusive. A cron window starts at each occurrence of its expression in its
//! time zone (so a `0 9 * * 1-5` in `Europe/Berlin` starts at 09:00 Berlin time in winter
//! and in summer) and lasts its duration of elapsed time (so a 4h window from 22:00 on the
//! night the clocks spring forward ends at 03:00 local time, four real hours later). A start
//! in the hour the clocks skip is taken at the first instant after it; a start in the hour
//! they repeat, once, at its first pass (croner's rules, those of the Open Cron Pattern
//! Specification).
//! [`crate::api::validate`](mod@crate::api::validate) reads the spec into these types.

use std::time::Duration;

use croner::Cron;
use jiff::{Timestamp, tz::TimeZone};

/// One `spec.schedules[]` entry, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub window: Window,
    /// The fewest replicas while the window is active.
    pub min_replicas: u32,
    /// The most replicas while the window is active, if capped.
    pub max_replicas: Option<u32>,
}

/// When a schedule is active.
#[derive(Debug, Clone, PartialEq)]
pub enum Window {
    /// Once, `[start, end)` in unix seconds.
    Fixed { start: i64, end: i64 },
    /// At every occurrence of `cron` in `zone`, for `duration`.
    Cron {
        cron: Box<Cron>,
        zone: TimeZone,
        duration: Duration,
    },
}

/// One occurrence of a window, `[start, end)` in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    fn contains(&self, now: i64) -> bool {
        self.start <= now && now < self.end
    }
}

impl Window {
    /// The occurrence active at `now`, if any. For a cron window whose occurrences overlap
    /// (a duration longer than the gap between them), the latest one, which ends last.
    pub fn active_at(&self, now: i64) -> Option<Span> {
        match self {
            Window::Fixed { start, end } => Some(Span {
                start: *start,
                end: *end,
            })
            .filter(|s| s.contains(now)),
            Window::Cron {
                cron,
                zone,
                duration,
            } => {
                let at = Timestamp::from_second(now).ok()?.to_zoned(zone.clone());
                // inclusive: a window is active from its first second
                let start = cron.find_previous_occurrence(&at, true).ok()?.timestamp();
                let span = Span {
                    start: start.as_second(),
                    end: start.as_second().saturating_add(duration.as_secs() as i64),
                };
                Some(span).filter(|s| s.contains(now))
            }
        }
    }

    /// When the window next starts after `now` (exclusive), if it does.
    pub fn next_start_after(&self, now: i64) -> Option<i64> {
        match self {
            Window::Fixed { start, .. } => Some(*start).filter(|s| *s > now),
            Window::Cron { cron, zone, .. } => {
                let at = Timestamp::from_second(now).ok()?.to_zoned(zone.clone());
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(next.timestamp().as_second())
            }
        }
    }
}

/// A schedule active at `now`, with its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub name: String,
    pub span: Span,
    pub min_replicas: u32,
    pub max_replicas: Option<u32>,
}

/// The schedule that starts next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub name: String,
    /// Unix second of its start.
    pub start: i64,
}

/// The schedules at one instant: which are active, and which starts next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    /// In the order of the spec.
    pub active: Vec<Active>,
    /// The earliest start after now (the first in the spec's order on a tie).
    pub next: Option<Next>,
}

impl Schedules {
    /// The highest floor of the active schedules, and the schedule that set it (the first in
    /// the spec's order on a tie).
    pub fn floor(&self) -> Option<(u32, &str)> {
        self.active
            .iter()
            .rev()
            .max_by_key(|a| a.min_replicas)
            .map(|a| (a.min_replicas, a.name.as_str()))
    }

    /// The lowest ceiling of the active schedules, and the schedule that set it.
    pub fn ceiling(&self) -> Option<(u32, &str)> {
        self.active
            .iter()
            .filter_map(|a| a.max_replicas.map(|m| (m, a.name.as_str())))
            .min_by_key(|(m, _)| *m)
    }

    /// When the schedules next change after the instant they were taken at: the earliest of
    /// the next start and the active windows' ends (unix second). The controller evaluates
    /// again then if the sync interval would come later, so no window is missed.
    pub fn next_change(&self) -> Option<i64> {
        let ends = self.active.iter().map(|a| a.span.end);
        self.next.iter().map(|n| n.start).chain(ends).min()
    }

    /// The names of the active schedules.
    pub fn active_names(&self) -> Vec<String> {
        self.active.iter().map(|a| a.name.clone()).collect()
    }
}

/// The schedules at unix second `now`: each active one with its occurrence, and the one that
/// starts next.
pub fn at(schedules: &[Schedule], now: i64) -> Schedules {
    let active = schedules
        .iter()
        .filter_map(|s| {
            s.window.active_at(now).map(|span| Active {
                name: s.name.clone(),
                span,
                min_replicas: s.min_replicas,
                max_replicas: s.max_replicas,
            })
        })
        .collect();
    let next = schedules
        .iter()
        .filter_map(|s| s.window.next_start_after(now).map(|start| (start, s)))
        .min_by_key(|(start, _)| *start)
        .map(|(start, s)| Next {
            name: s.name.clone(),
            start,
        });
    Schedules { active, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ts(s: &str) -> i64 {
        Timestamp::from_str(s).unwrap().as_second()
    }

    fn cron(expr: &str, zone: &str, hours: u64) -> Window {
        Window::Cron {
            cron: Box::new(
                croner::parser::CronParser::builder()
                    .seconds(croner::parser::Seconds::Disallowed)
                    .build()
                    .parse(expr)
                    .unwrap(),
            ),
            zone: TimeZone::get(zone).unwrap(),
            duration: Duration::from_secs(hours * 3600),
        }
    }

    fn schedule(name: &str, window: Window, min: u32, max: Option<u32>) -> Schedule {
        Schedule {
            name: name.into(),
            window,
            min_replicas: min,
            max_replicas: max,
        }
    }

    #[test]
    fn a_fixed_window_starts_inclusive_and_ends_exclusive() {
        let w = Window::Fixed {
            start: 1000,
            end: 2000,
        };
        assert_eq!(w.active_at(999), None);
        let span = Span {
            start: 1000,
            end: 2000,
        };
        assert_eq!(w.active_at(1000), Some(span));
        assert_eq!(w.active_at(1999), Some(span));
        assert_eq!(w.active_at(2000), None);
        assert_eq!(w.next_start_after(999), Some(1000));
        assert_eq!(w.next_start_after(1000), None, "started, not next");
    }

    #[test]
    fn a_cron_window_runs_across_midnight_in_its_zone() {
        // 22:00 Berlin (CET, UTC+1 in January) for 4 hours: 21:00Z to 01:00Z
        let w = cron("0 22 * * *", "Europe/Berlin", 4);
        assert_eq!(w.active_at(ts("2026-01-14T20:59:59Z")), None);
        let span = Span {
            start: ts("2026-01-14T21:00:00Z"),
            end: ts("2026-01-15T01:00:00Z"),
        };
        assert_eq!(w.active_at(ts("2026-01-14T21:00:00Z")), Some(span));
        assert_eq!(w.active_at(ts("2026-01-15T00:59:59Z")), Some(span));
        assert_eq!(w.active_at(ts("2026-01-15T01:00:00Z")), None);
        assert_eq!(
            w.next_start_after(ts("2026-01-15T01:00:00Z")),
            Some(ts("2026-01-15T21:00:00Z"))
        );
    }

    #[test]
    fn a_cron_window_follows_daylight_saving_time_in_its_zone() {
        // weekdays 09:00 Berlin for 2 hours: 08:00Z in winter, 07:00Z in summer
        let w = cron("0 9 * * 1-5", "Europe/Berlin", 2);
        // Friday 2026-03-27, CET
        assert!(w.active_at(ts("2026-03-27T08:00:00Z")).is_some());
        assert!(w.active_at(ts("2026-03-27T07:30:00Z")).is_none());
        // the clocks spring forward on Sunday 2026-03-29; Monday 30th is CEST
        assert_eq!(
            w.next_start_after(ts("2026-03-27T12:00:00Z")),
            Some(ts("2026-03-30T07:00:00Z")),
            "the weekend is skipped and 09:00 is now 07:00Z"
        );
        assert!(w.active_at(ts("2026-03-30T07:00:00Z")).is_some());
        assert!(w.active_at(ts("2026-03-30T08:59:59Z")).is_some());
        assert!(w.active_at(ts("2026-03-30T09:00:00Z")).is_none());

        // 22:00 Saturday before the change, 4 elapsed hours: ends 03:00 CEST (01:00Z)
        let night = cron("0 22 * * *", "Europe/Berlin", 4);
        let span = night.active_at(ts("2026-03-29T00:30:00Z")).unwrap();
        assert_eq!(
            span,
            Span {
                start: ts("2026-03-28T21:00:00Z"),
                end: ts("2026-03-29T01:00:00Z"),
            }
        );
    }

    #[test]
    fn a_cron_start_in_the_skipped_or_repeated_hour_starts_once() {
        // 02:30 Berlin does not exist on 2026-03-29 (02:00 CET -> 03:00 CEST, at 01:00Z):
        // the window starts at 03:00 CEST, 01:00Z
        let w = cron("30 2 * * *", "Europe/Berlin", 1);
        assert_eq!(
            w.next_start_after(ts("2026-03-28T23:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        // 02:30 Berlin happens twice on 2026-10-25 (03:00 CEST -> 02:00 CET, at 01:00Z): the
        // first, 00:30Z, and then not again until the next night
        let first = w.next_start_after(ts("2026-10-24T23:00:00Z"));
        assert_eq!(first, Some(ts("2026-10-25T00:30:00Z")));
        assert_eq!(
            w.next_start_after(first.unwrap()),
            Some(ts("2026-10-26T01:30:00Z"))
        );
        assert!(w.active_at(ts("2026-10-25T01:45:00Z")).is_none());
    }

    #[test]
    fn at_lists_the_active_schedules_and_the_next_start() {
        let schedules = vec![
            schedule(
                "launch",
                Window::Fixed {
                    start: 1000,
                    end: 5000,
                },
                10,
                None,
            ),
            schedule(
                "quiet",
                Window::Fixed {
                    start: 2000,
                    end: 3000,
                },
                2,
                Some(6),
            ),
            schedule(
                "later",
                Window::Fixed {
                    start: 4000,
                    end: 6000,
                },
                12,
                Some(8),
            ),
        ];
        let s = at(&schedules, 500);
        assert!(s.active.is_empty());
        assert_eq!(
            s.next,
            Some(Next {
                name: "launch".into(),
                start: 1000
            })
        );
        assert_eq!((s.floor(), s.ceiling()), (None, None));

        let s = at(&schedules, 2500);
        assert_eq!(s.active_names(), vec!["launch", "quiet"]);
        assert_eq!(s.floor(), Some((10, "launch")), "the highest floor wins");
        assert_eq!(s.ceiling(), Some((6, "quiet")));
        assert_eq!(s.next.map(|n| n.start), Some(4000));

        let s = at(&schedules, 4500);
        assert_eq!(s.active_names(), vec!["launch", "later"]);
        assert_eq!(s.floor(), Some((12, "later")));
        assert_eq!(s.ceiling(), Some((8, "later")));
        assert_eq!(s.next, None);
    }

    #[test]
    fn the_next_change_is_the_next_start_or_an_active_end() {
        let fixed = |name: &str, start, end| schedule(name, Window::Fixed { start, end }, 5, None);
        // a 20 s window inside a 30 s sync interval: its start, then its end
        let short = vec![fixed("burst", 1010, 1030)];
        assert_eq!(at(&short, 1000).next_change(), Some(1010));
        assert_eq!(at(&short, 1010).next_change(), Some(1030));
        assert_eq!(at(&short, 1029).next_change(), Some(1030));
        assert_eq!(
            at(&short, 1030).next_change(),
            None,
            "over: nothing to come"
        );
        // an active window that ends before the next one starts, and one that ends after it
        let two = vec![fixed("a", 0, 500), fixed("b", 800, 900)];
        assert_eq!(at(&two, 100).next_change(), Some(500));
        let overlapping = vec![fixed("a", 0, 2000), fixed("b", 800, 900)];
        assert_eq!(at(&overlapping, 100).next_change(), Some(800));
        assert_eq!(at(&overlapping, 850).next_change(), Some(900));
        // a cron window: the end of this occurrence, then the next start
        let daily = vec![schedule("daily", cron("0 9 * * *", "UTC", 1), 5, None)];
        let nine = ts("2026-01-05T09:00:00Z");
        assert_eq!(at(&daily, nine + 60).next_change(), Some(nine + 3600));
        assert_eq!(at(&daily, nine + 3600).next_change(), Some(nine + 86_400));
        assert_eq!(at(&[], 0).next_change(), None);
    }
}
