//! Guards (`spec.guards`): the gateway's health read now (a p95 latency, an error ratio, a
//! queue depth) overrides the forecast. A guard is never forecast; it reacts:
//! - **breached** (its value above, or below, its threshold): the recommendation is raised to
//!   at least the current count plus the guard's step (replicas, or a percentage of the current
//!   count), at most `maxReplicas`, at every evaluation while it stays breached;
//! - **holding**: healthy again, but breached less than `holdWindow` ago: no scale-down;
//! - **unavailable** (its query failed, no data, a stale series): no scale-down, never a
//!   scale-down because of it, and the reason is reported, as for a metric.
//!
//! [`apply`] is one step of [`super::plan`], after the schedules and before the stabilisation
//! window: what it recommends is what the window remembers, and the rate limits still apply.

use std::{collections::BTreeMap, time::Duration};

/// Which side of the threshold is unhealthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Direction {
    /// Breached when the value is above the threshold (latency, errors, queue depth).
    #[default]
    Above,
    /// Breached when the value is below the threshold (a success ratio, free capacity).
    Below,
}

/// What a breach adds over the current count, per evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardStep {
    /// This many replicas.
    Replicas(u32),
    /// This percentage of the current count, rounded up, at least one replica.
    Percent(u32),
}

impl GuardStep {
    /// The replicas this step adds to `current`.
    pub fn added(self, current: u32) -> u32 {
        match self {
            GuardStep::Replicas(n) => n,
            GuardStep::Percent(p) => {
                let add = (current as u64 * p as u64).div_ceil(100).max(1);
                add.min(u32::MAX as u64) as u32
            }
        }
    }
}

/// One guard of the spec, in numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub name: String,
    pub threshold: f64,
    pub direction: Direction,
    pub step: GuardStep,
    /// How long the guard must be healthy after a breach before a scale-down.
    pub hold_window: Duration,
}

impl Guard {
    /// Whether `value` is on the unhealthy side of the threshold (equal is healthy).
    pub fn breached_by(&self, value: f64) -> bool {
        match self.direction {
            Direction::Above => value > self.threshold,
            Direction::Below => value < self.threshold,
        }
    }
}

/// Why a guard has no value: the condition reason of the edge that read it, and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardFailure {
    pub reason: &'static str,
    pub message: String,
}

/// What the planner knows about one guard at `now`.
#[derive(Debug, Clone)]
pub struct GuardInput<'a> {
    pub guard: &'a Guard,
    /// Its latest value, or why there is none.
    pub reading: Result<f64, GuardFailure>,
}

/// A guard's state in one decision.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardState {
    /// Healthy, and not breached within its hold window.
    Healthy,
    /// On the unhealthy side of its threshold now.
    Breached,
    /// Healthy, but breached less than its hold window ago: no scale-down until `until`.
    Holding { until: i64 },
    /// No value: no scale-down, and why.
    Unavailable(GuardFailure),
}

/// One guard's part in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardDecision {
    pub name: String,
    pub value: Option<f64>,
    pub state: GuardState,
}

impl GuardDecision {
    pub fn breached(&self) -> bool {
        self.state == GuardState::Breached
    }
}

/// When each guard was last breached (unix seconds), for the hold window.
pub type Breaches = BTreeMap<String, i64>;

/// What the guards did to a recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub count: u32,
    /// What limited it, in the order breach, unavailable, hold (first of each wins).
    pub limit: Option<(GuardLimit, String)>,
    pub guards: Vec<GuardDecision>,
}

/// Why the guards changed a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuardLimit {
    /// A guard is breached (raised, or held at `maxReplicas`), or holds a scale-down after one.
    Breached,
    /// A guard's query failed: no scale-down.
    Unavailable,
}

/// The guards applied to `count` (the recommendation so far) with the target at `current`:
/// a breach raises it to `current + step` (at most `max_replicas`), a failing or holding guard
/// keeps it from going below `current`. Records breaches in `breaches` and forgets those of
/// guards no longer in the spec, past their hold window or from the future (the clock stepped
/// back).
pub fn apply(
    now: i64,
    current: u32,
    count: u32,
    max_replicas: u32,
    guards: &[GuardInput<'_>],
    breaches: &mut Breaches,
) -> Guarded {
    breaches.retain(|name, at| {
        *at <= now
            && guards
                .iter()
                .any(|g| &g.guard.name == name && now - *at < g.guard.hold_window.as_secs() as i64)
    });
    let no_lower = count.max(current.min(max_replicas));
    let mut out = Guarded {
        count,
        limit: None,
        guards: Vec::with_capacity(guards.len()),
    };
    for g in guards {
        let (value, state) = evaluate(now, g, breaches);
        let (count, why) = match &state {
            GuardState::Healthy => (count, None),
            GuardState::Breached => {
                let add = g.guard.step.added(current);
                let raised = current.saturating_add(add).min(max_replicas);
                let message = format!(
                    "guard {} is breached ({} {} threshold {}): at least {raised} replicas \
                     (the current {current} + {add}, at most maxReplicas {max_replicas})",
                    g.guard.name,
                    fmt_value(value),
                    side(g.guard.direction),
                    g.guard.threshold
                );
                (raised.max(no_lower), Some((GuardLimit::Breached, message)))
            }
            GuardState::Holding { until } => {
                let message = format!(
                    "guard {} was breached {}s ago: no scale-down below {current} until it has \
                     been healthy for its holdWindow (at {until})",
                    g.guard.name,
                    now - breaches.get(&g.guard.name).copied().unwrap_or(now),
                );
                let held = count < no_lower;
                (no_lower, held.then_some((GuardLimit::Breached, message)))
            }
            GuardState::Unavailable(f) => {
                let message = format!(
                    "guard {} has no value ({}: {}): no scale-down below {current} until it \
                     can be read",
                    g.guard.name, f.reason, f.message
                );
                (no_lower, Some((GuardLimit::Unavailable, message)))
            }
        };
        out.count = out.count.max(count);
        if let Some(why) = why
            && out.limit.as_ref().is_none_or(|(l, _)| why.0 < *l)
        {
            out.limit = Some(why);
        }
        out.guards.push(GuardDecision {
            name: g.guard.name.clone(),
            value,
            state,
        });
    }
    out
}

/// One guard's value and state at `now`; a breach is recorded in `breaches`.
fn evaluate(now: i64, g: &GuardInput<'_>, breaches: &mut Breaches) -> (Option<f64>, GuardState) {
    match &g.reading {
        Err(f) => (None, GuardState::Unavailable(f.clone())),
        Ok(v) if !v.is_finite() => (
            None,
            GuardState::Unavailable(GuardFailure {
                // the planner knows no CRD: the `ForecastAvailable` reason of an empty answer
                reason: "EmptyQueryResult",
                message: format!("the value is {v}"),
            }),
        ),
        Ok(v) if g.guard.breached_by(*v) => {
            breaches.insert(g.guard.name.clone(), now);
            (Some(*v), GuardState::Breached)
        }
        Ok(v) => match breaches.get(&g.guard.name) {
            Some(at) => {
                let until = at + g.guard.hold_window.as_secs() as i64;
                (Some(*v), GuardState::Holding { until })
            }
            None => (Some(*v), GuardState::Healthy),
        },
    }
}

fn side(direction: Direction) -> &'static str {
    match direction {
        Direction::Above => "above",
        Direction::Below => "below",
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or_else(|| "none".into(), |v| format!("{v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(step: GuardStep) -> Guard {
        Guard {
            name: "p95".into(),
            threshold: 0.5,
            direction: Direction::Above,
            step,
            hold_window: Duration::from_secs(300),
        }
    }

    fn at(g: &Guard, v: f64) -> GuardInput<'_> {
        GuardInput {
            guard: g,
            reading: Ok(v),
        }
    }

    #[test]
    fn a_breach_adds_its_step_or_percent_over_the_current_count_up_to_max() {
        let mut b = Breaches::new();
        let g = guard(GuardStep::Replicas(2));
        let out = apply(100, 5, 4, 20, &[at(&g, 0.9)], &mut b);
        assert_eq!(out.count, 7);
        assert_eq!(out.limit.map(|l| l.0), Some(GuardLimit::Breached));
        assert!(out.guards[0].breached());
        assert_eq!(b.get("p95"), Some(&100));
        // a higher need stands
        assert_eq!(apply(130, 5, 12, 20, &[at(&g, 0.9)], &mut b).count, 12);
        // bounded by maxReplicas
        assert_eq!(apply(160, 19, 19, 20, &[at(&g, 0.9)], &mut b).count, 20);
        assert_eq!(apply(190, 20, 20, 20, &[at(&g, 0.9)], &mut b).count, 20);
        // a percentage of the current count, rounded up, at least one
        let p = guard(GuardStep::Percent(25));
        assert_eq!(apply(100, 10, 3, 40, &[at(&p, 0.9)], &mut b).count, 13);
        assert_eq!(apply(100, 1, 1, 40, &[at(&p, 0.9)], &mut b).count, 2);
        // below: breached under the threshold; equal is healthy
        let below = Guard {
            direction: Direction::Below,
            ..guard(GuardStep::Replicas(1))
        };
        assert_eq!(apply(100, 5, 5, 20, &[at(&below, 0.4)], &mut b).count, 6);
        let mut fresh = Breaches::new();
        assert_eq!(
            apply(100, 5, 3, 20, &[at(&below, 0.5)], &mut fresh).count,
            3
        );
    }

    #[test]
    fn after_a_breach_no_scale_down_until_healthy_for_the_hold_window() {
        let mut b = Breaches::new();
        let g = guard(GuardStep::Replicas(1));
        apply(1000, 5, 5, 20, &[at(&g, 0.9)], &mut b);
        // healthy now, the need lower: held at the current count
        let out = apply(1030, 6, 2, 20, &[at(&g, 0.1)], &mut b);
        assert_eq!(out.count, 6);
        assert_eq!(out.guards[0].state, GuardState::Holding { until: 1300 });
        assert_eq!(out.limit.map(|l| l.0), Some(GuardLimit::Breached));
        // a scale-up is not held, and not reported as limited
        let out = apply(1060, 6, 9, 20, &[at(&g, 0.1)], &mut b);
        assert_eq!((out.count, out.limit), (9, None));
        // still holding just before the window ends; free at its end
        assert_eq!(apply(1299, 6, 2, 20, &[at(&g, 0.1)], &mut b).count, 6);
        let out = apply(1300, 6, 2, 20, &[at(&g, 0.1)], &mut b);
        assert_eq!((out.count, out.limit.is_none()), (2, true));
        assert_eq!(out.guards[0].state, GuardState::Healthy);
        assert!(b.is_empty());
        // a new breach restarts the window
        apply(2000, 6, 2, 20, &[at(&g, 0.9)], &mut b);
        apply(2200, 7, 2, 20, &[at(&g, 0.9)], &mut b);
        assert_eq!(apply(2450, 8, 2, 20, &[at(&g, 0.1)], &mut b).count, 8);
    }

    #[test]
    fn a_failing_guard_never_scales_down_and_never_up_and_says_why() {
        let mut b = Breaches::new();
        let g = guard(GuardStep::Replicas(3));
        let failing = GuardInput {
            guard: &g,
            reading: Err(GuardFailure {
                reason: "MetricsSourceUnavailable",
                message: "connection refused".into(),
            }),
        };
        let out = apply(100, 6, 2, 20, std::slice::from_ref(&failing), &mut b);
        assert_eq!(out.count, 6);
        let (limit, message) = out.limit.unwrap();
        assert_eq!(limit, GuardLimit::Unavailable);
        assert!(message.contains("MetricsSourceUnavailable"), "{message}");
        // a higher need still scales up; the guard itself adds nothing
        assert_eq!(
            apply(100, 6, 9, 20, std::slice::from_ref(&failing), &mut b).count,
            9
        );
        // NaN is no value either
        let nan = at(&g, f64::NAN);
        assert_eq!(apply(100, 6, 2, 20, &[nan], &mut b).count, 6);
        // a breach of another guard is named first
        let h = Guard {
            name: "errors".into(),
            ..guard(GuardStep::Replicas(1))
        };
        let out = apply(100, 6, 2, 20, &[failing, at(&h, 0.9)], &mut b);
        assert_eq!(out.count, 7);
        assert_eq!(out.limit.map(|l| l.0), Some(GuardLimit::Breached));
    }

    #[test]
    fn a_healthy_guard_changes_nothing_and_stale_breaches_are_forgotten() {
        let mut b = Breaches::new();
        let g = guard(GuardStep::Replicas(3));
        let out = apply(100, 6, 2, 20, &[at(&g, 0.2)], &mut b);
        assert_eq!((out.count, out.limit), (2, None));
        assert_eq!(out.guards[0].state, GuardState::Healthy);
        // a guard removed from the spec, or a breach from the future, holds nothing
        b.insert("gone".into(), 90);
        b.insert("p95".into(), 500);
        let out = apply(100, 6, 2, 20, &[at(&g, 0.2)], &mut b);
        assert_eq!(out.count, 2);
        assert!(b.is_empty());
    }
}
