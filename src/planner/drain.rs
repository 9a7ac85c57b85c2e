//! Drain-aware scale-in (`scaleDown.drainAware`): which `controller.kubernetes.io/pod-deletion-cost`
//! each pod of the target gets before a scale-down, and whether the scale-down may go ahead.
//! Pure: the controller lists the pods, reads their values and writes the annotations.
//!
//! The ReplicaSet controller removes pods in this order: unscheduled before scheduled, pending
//! before running, not ready before ready, then the **lowest deletion cost first**. So a cost
//! equal to the pod's in-flight requests (or active streams) makes it remove the idlest ready
//! pods and keep the streams of the busy ones.
//!
//! - [`plan_costs`]: each pod's cost from its value, and the annotations to write (only those
//!   that change, at most a bound per evaluation);
//! - [`gate`]: what a scale-down does when the values cannot be had: it waits up to `maxWait`
//!   from the first failed read, then goes ahead without costs.

use std::collections::HashMap;

/// The annotation the ReplicaSet controller ranks pods by (an int32 as a string).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The most annotations written in one evaluation; more wait for the next one (and hold the
/// scale-down until then).
pub const MAX_UPDATES_PER_EVALUATION: usize = 250;

/// A failed read counts as part of the same wait when the previous failed read was at most this
/// long before (seconds); after a longer quiet time a scale-down waits afresh.
pub const FORGET_MISSES_AFTER: i64 = 30 * 60;

/// One pod of the target, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    /// Its `controller.kubernetes.io/pod-deletion-cost` annotation now, if any.
    pub annotation: Option<String>,
}

/// A pod and the deletion cost it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCost {
    pub pod: String,
    pub cost: i32,
    /// False when the query had no value for it (it counts as busy as the busiest pod).
    pub measured: bool,
}

/// The costs of all the pods and the annotations to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostPlan {
    /// Every pod's cost, idlest first (ties by name).
    pub costs: Vec<PodCost>,
    /// The pods whose annotation differs from their cost, at most the bound, idlest first.
    pub updates: Vec<PodCost>,
    /// Pods whose annotation differs but are left for the next evaluation (over the bound).
    pub deferred: usize,
    /// Pods the query had no value for.
    pub unmeasured: usize,
}

/// Why no costs can be planned: the query has a value for none of the pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPodValues {
    /// How many pods the target has.
    pub pods: usize,
    /// How many series the query returned (with a finite value).
    pub series: usize,
}

/// A pod's deletion cost from its value: rounded up (a pod with any work costs more than an
/// idle one), clamped into `0..=i32::MAX` (a negative gauge reads as idle); `None` for NaN.
pub fn cost_of(value: f64) -> Option<i32> {
    if value.is_nan() {
        return None;
    }
    let clamped = value.ceil().clamp(0.0, f64::from(i32::MAX));
    Some(clamped as i32)
}

/// The costs of `pods` from `values` (the pod name and value of each series; several series of
/// one pod are summed, NaN ones skipped, series of other pods ignored), and the annotations to
/// write: those that differ, at most `max_updates`, idlest first. A pod without a value costs
/// as much as the busiest measured one: it may be new, or its metrics may be missing, and no
/// data is never read as idle (an unready pod goes first anyway, whatever its cost).
pub fn plan_costs(
    pods: &[Pod],
    values: &[(String, f64)],
    max_updates: usize,
) -> Result<CostPlan, NoPodValues> {
    let by_pod = sum_by_pod(values);
    let measured: HashMap<&str, i32> = pods
        .iter()
        .filter_map(|p| {
            let v = by_pod.get(p.name.as_str())?;
            Some((p.name.as_str(), cost_of(*v)?))
        })
        .collect();
    let Some(busiest) = measured.values().max().copied() else {
        return Err(NoPodValues {
            pods: pods.len(),
            series: by_pod.len(),
        });
    };
    let mut costs: Vec<PodCost> = pods
        .iter()
        .map(|p| match measured.get(p.name.as_str()) {
            Some(c) => PodCost {
                pod: p.name.clone(),
                cost: *c,
                measured: true,
            },
            None => PodCost {
                pod: p.name.clone(),
                cost: busiest,
                measured: false,
            },
        })
        .collect();
    costs.sort_by(|a, b| a.cost.cmp(&b.cost).then_with(|| a.pod.cmp(&b.pod)));
    let current: HashMap<&str, Option<&str>> = pods
        .iter()
        .map(|p| (p.name.as_str(), p.annotation.as_deref()))
        .collect();
    let changed: Vec<PodCost> = costs
        .iter()
        .filter(|c| current.get(c.pod.as_str()).copied().flatten() != Some(&c.cost.to_string()))
        .cloned()
        .collect();
    let deferred = changed.len().saturating_sub(max_updates);
    let unmeasured = costs.iter().filter(|c| !c.measured).count();
    Ok(CostPlan {
        updates: changed.into_iter().take(max_updates).collect(),
        costs,
        deferred,
        unmeasured,
    })
}

/// The finite values summed per pod name.
fn sum_by_pod(values: &[(String, f64)]) -> HashMap<&str, f64> {
    let mut by_pod: HashMap<&str, f64> = HashMap::new();
    for (pod, v) in values.iter().filter(|(_, v)| !v.is_nan()) {
        *by_pod.entry(pod.as_str()).or_insert(0.0) += v;
    }
    by_pod
}

/// What the scaler remembers of failed reads of the per-pod values (in memory).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainMemory {
    /// The first failed read of the current run of failures (unix seconds).
    missing_since: Option<i64>,
    /// The latest failed read.
    last_missed: Option<i64>,
}

/// What a scale-down does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The costs are set: scale down.
    Proceed,
    /// The values are missing: hold the current count until `until` (unix seconds) at most.
    Wait { until: i64 },
    /// The values have been missing for `maxWait` since `since`: scale down without them.
    GiveUp { since: i64 },
}

/// Whether a scale-down at `now` goes ahead, after a read of the per-pod values that succeeded
/// (`read_ok`) or not. A failed read waits at most `max_wait` (seconds) from the first failure
/// of a run of failures; while they go on, later scale-downs go ahead at once. A successful
/// read ends the run, and so do [`FORGET_MISSES_AFTER`] seconds without a failed read.
pub fn gate(memory: &mut DrainMemory, now: i64, read_ok: bool, max_wait: i64) -> Gate {
    if read_ok {
        *memory = DrainMemory::default();
        return Gate::Proceed;
    }
    let fresh = memory
        .last_missed
        .is_none_or(|last| now - last > FORGET_MISSES_AFTER);
    let since = match memory.missing_since {
        Some(since) if !fresh => since,
        _ => now,
    };
    *memory = DrainMemory {
        missing_since: Some(since),
        last_missed: Some(now),
    };
    if now - since >= max_wait {
        Gate::GiveUp { since }
    } else {
        Gate::Wait {
            until: since + max_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(names: &[(&str, Option<&str>)]) -> Vec<Pod> {
        names
            .iter()
            .map(|(n, a)| Pod {
                name: n.to_string(),
                annotation: a.map(str::to_string),
            })
            .collect()
    }

    fn values(v: &[(&str, f64)]) -> Vec<(String, f64)> {
        v.iter().map(|(p, x)| (p.to_string(), *x)).collect()
    }

    fn order(plan: &CostPlan) -> Vec<(&str, i32)> {
        plan.costs
            .iter()
            .map(|c| (c.pod.as_str(), c.cost))
            .collect()
    }

    #[test]
    fn the_idlest_pods_cost_least() {
        let p = pods(&[("a", None), ("b", None), ("c", None)]);
        let plan = plan_costs(&p, &values(&[("a", 12.0), ("b", 0.0), ("c", 3.0)]), 10).unwrap();
        assert_eq!(order(&plan), vec![("b", 0), ("c", 3), ("a", 12)]);
        assert_eq!(plan.updates.len(), 3);
        assert_eq!(plan.deferred, 0);
        assert_eq!(plan.unmeasured, 0);
    }

    #[test]
    fn values_round_up_and_clamp_into_int32() {
        assert_eq!(cost_of(0.0), Some(0));
        assert_eq!(cost_of(0.2), Some(1), "any work costs more than none");
        assert_eq!(cost_of(2.0), Some(2));
        assert_eq!(cost_of(-3.0), Some(0), "a negative gauge reads as idle");
        assert_eq!(cost_of(1e12), Some(i32::MAX));
        assert_eq!(cost_of(f64::INFINITY), Some(i32::MAX));
        assert_eq!(cost_of(f64::NEG_INFINITY), Some(0));
        assert_eq!(cost_of(f64::NAN), None);
    }

    #[test]
    fn a_pod_without_a_value_counts_as_busy_as_the_busiest() {
        let p = pods(&[("new", None), ("idle", None), ("busy", None)]);
        let plan = plan_costs(&p, &values(&[("idle", 1.0), ("busy", 7.0)]), 10).unwrap();
        assert_eq!(order(&plan), vec![("idle", 1), ("busy", 7), ("new", 7)]);
        assert_eq!(plan.unmeasured, 1);
        let new = plan.costs.iter().find(|c| c.pod == "new").unwrap();
        assert!(!new.measured);
        // a NaN series is no value
        let plan = plan_costs(&p, &values(&[("idle", 1.0), ("new", f64::NAN)]), 10).unwrap();
        assert_eq!(order(&plan), vec![("busy", 1), ("idle", 1), ("new", 1)]);
        assert_eq!(plan.unmeasured, 2);
    }

    #[test]
    fn no_value_for_any_pod_is_an_error_not_all_idle() {
        let p = pods(&[("a", None), ("b", None)]);
        let err = plan_costs(&p, &values(&[("other", 3.0)]), 10).unwrap_err();
        assert_eq!(err, NoPodValues { pods: 2, series: 1 });
        let err = plan_costs(&p, &[], 10).unwrap_err();
        assert_eq!(err, NoPodValues { pods: 2, series: 0 });
        assert!(plan_costs(&[], &values(&[("a", 1.0)]), 10).is_err());
    }

    #[test]
    fn ties_are_ordered_by_name_and_series_of_one_pod_are_summed() {
        let p = pods(&[("b", None), ("a", None), ("c", None)]);
        let v = values(&[("b", 2.0), ("a", 2.0), ("c", 1.0), ("c", 1.5), ("zzz", 9.0)]);
        let plan = plan_costs(&p, &v, 10).unwrap();
        assert_eq!(order(&plan), vec![("a", 2), ("b", 2), ("c", 3)]);
    }

    #[test]
    fn only_changed_annotations_are_written_at_most_the_bound() {
        let p = pods(&[
            ("a", Some("0")),
            ("b", Some("9")),
            ("c", None),
            ("d", Some("x")),
        ]);
        let v = values(&[("a", 0.0), ("b", 4.0), ("c", 5.0), ("d", 6.0)]);
        let plan = plan_costs(&p, &v, 10).unwrap();
        let updates: Vec<(&str, i32)> = plan
            .updates
            .iter()
            .map(|c| (c.pod.as_str(), c.cost))
            .collect();
        assert_eq!(
            updates,
            vec![("b", 4), ("c", 5), ("d", 6)],
            "a is already 0"
        );
        let plan = plan_costs(&p, &v, 2).unwrap();
        assert_eq!(plan.updates.len(), 2);
        assert_eq!(plan.deferred, 1);
        assert_eq!(plan.updates[0].pod, "b", "idlest first");
    }

    #[test]
    fn a_failed_read_waits_max_wait_from_the_first_failure_then_gives_up() {
        let mut m = DrainMemory::default();
        assert_eq!(gate(&mut m, 1000, false, 300), Gate::Wait { until: 1300 });
        assert_eq!(gate(&mut m, 1030, false, 300), Gate::Wait { until: 1300 });
        assert_eq!(gate(&mut m, 1300, false, 300), Gate::GiveUp { since: 1000 });
        // while failures go on, later scale-downs go ahead at once
        assert_eq!(gate(&mut m, 1360, false, 300), Gate::GiveUp { since: 1000 });
        // a success ends the run
        assert_eq!(gate(&mut m, 1420, true, 300), Gate::Proceed);
        assert_eq!(gate(&mut m, 1480, false, 300), Gate::Wait { until: 1780 });
        // a long quiet time without failed reads starts a new wait
        let later = 1480 + FORGET_MISSES_AFTER + 1;
        assert_eq!(
            gate(&mut m, later, false, 300),
            Gate::Wait { until: later + 300 }
        );
    }

    #[test]
    fn max_wait_zero_never_waits() {
        let mut m = DrainMemory::default();
        assert_eq!(gate(&mut m, 50, false, 0), Gate::GiveUp { since: 50 });
        assert_eq!(gate(&mut m, 60, true, 0), Gate::Proceed);
    }
}
