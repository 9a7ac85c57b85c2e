//! Drain-aware scale-in (`scaleDown.drainAware`): which pods of the target go in a scale-down,
//! the `controller.kubernetes.io/pod-deletion-cost` annotations that make the ReplicaSet remove
//! exactly those, and whether the scale-down may go ahead. Pure: the controller lists the pods,
//! reads their values and writes the annotations.
//!
//! The ReplicaSet controller removes pods in this order: unscheduled before scheduled, pending
//! before running, not ready before ready, then the **lowest deletion cost first** (a pod
//! without the annotation costs 0). So the idlest pods, given the lowest costs, go, and the
//! streams of the busy ones are kept. Only the pods that go are written: each gets a cost from
//! the bottom of the int32 range ([`GOING_COST`] plus its rank), below the 0 of every pod that
//! stays; a pod that stays is written only when it still holds a cost that low (from an earlier
//! scale-down whose pods the ReplicaSet did not all take), and then its annotation is removed.
//!
//! - [`plan_costs`]: the pods ranked by their value, how many of the idlest go now (all that
//!   must, or fewer when their writes would pass the bound of one evaluation) and the writes;
//! - [`gate`]: what a scale-down does when the values cannot be had: it waits up to `maxWait`
//!   from the first failed read, then goes ahead without costs.

use std::collections::HashMap;

/// The annotation the ReplicaSet controller ranks pods by (an int32 as a string).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The most annotations written in one evaluation. A scale-down whose pods need more goes in
/// steps: the idlest pods whose writes fit go now, the others at the next evaluation.
pub const MAX_UPDATES_PER_EVALUATION: usize = 250;

/// The deletion cost of the idlest pod that goes; the pod at rank `i` (0: the idlest) of those
/// that go gets `GOING_COST + i`. The bottom of the int32 range: below the cost of any pod that
/// stays (0 without the annotation) unless it holds one this low itself.
pub const GOING_COST: i32 = i32::MIN;

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

impl Pod {
    /// The cost the ReplicaSet ranks it by: its annotation, 0 without one (or with one that is
    /// not an int32, as the ReplicaSet reads it).
    fn cost(&self) -> i32 {
        self.annotation
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or(0)
    }
}

/// A pod and its work, as ranked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedPod {
    pub pod: String,
    /// Its value as a cost ([`cost_of`]): what ranks it.
    pub load: i32,
    /// False when the query had no value for it (it counts as busy as the busiest pod).
    pub measured: bool,
}

/// One annotation to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostWrite {
    pub pod: String,
    /// The cost to set; `None`: remove the annotation (a pod that stays holding a cost as low
    /// as those of the pods that go).
    pub cost: Option<i32>,
}

/// Which pods go and the annotations to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostPlan {
    /// Every pod, idlest first (ties by name).
    pub ranked: Vec<RankedPod>,
    /// How many of the idlest pods go now: all that must, or fewer when the writes they need
    /// would pass the bound (the rest go at the next evaluation). 0 while pods that stay with
    /// too low a cost are cleared first.
    pub going: usize,
    /// The writes, at most the bound: the pods that stay whose cost is as low as one of the
    /// going pods' (removed), then the going pods that lack their cost, idlest first.
    pub writes: Vec<CostWrite>,
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

/// A pod's load from its value: rounded up (a pod with any work ranks above an idle one),
/// clamped into `0..=i32::MAX` (a negative gauge reads as idle); `None` for NaN.
pub fn cost_of(value: f64) -> Option<i32> {
    if value.is_nan() {
        return None;
    }
    let clamped = value.ceil().clamp(0.0, f64::from(i32::MAX));
    Some(clamped as i32)
}

/// The plan for a scale-down that removes `leaving` of `pods` (the pods are ranked by
/// `values`: the pod name and value of each series; several series of one pod are summed, NaN
/// ones skipped, series of other pods ignored): the `leaving` idlest go, each written its cost
/// [`GOING_COST`] + rank unless it has it already, and a pod that stays is written only when
/// its cost is as low as one of theirs (its annotation removed). When that is more than
/// `max_writes`, fewer pods go: the most whose writes fit. A pod without a value counts as busy
/// as the busiest measured one: it may be new, or its metrics may be missing, and no data is
/// never read as idle (an unready pod goes first anyway, whatever its cost).
pub fn plan_costs(
    pods: &[Pod],
    values: &[(String, f64)],
    leaving: usize,
    max_writes: usize,
) -> Result<CostPlan, NoPodValues> {
    let (order, ranked): (Vec<&Pod>, Vec<RankedPod>) = rank(pods, values)?.into_iter().unzip();
    let leaving = leaving.min(order.len());
    // the writes grow with the pods that go: the most that fit, by bisection
    let (mut fits, mut over) = (0, leaving + 1);
    while over - fits > 1 {
        let mid = fits + (over - fits) / 2;
        if count_writes(&order, mid) <= max_writes {
            fits = mid;
        } else {
            over = mid;
        }
    }
    let writes = match fits {
        // pods that stay hold the lowest cost: clear them first, none goes yet
        0 if leaving > 0 => writes_for(&order, 1)
            .into_iter()
            .filter(|w| w.cost.is_none())
            .take(max_writes)
            .collect(),
        going => writes_for(&order, going),
    };
    let unmeasured = ranked.iter().filter(|r| !r.measured).count();
    Ok(CostPlan {
        ranked,
        going: fits,
        writes,
        unmeasured,
    })
}

/// The cost of the pod at `rank` of those that go.
fn going_cost(rank: usize) -> i32 {
    i32::try_from(i64::from(GOING_COST) + rank as i64).unwrap_or(i32::MAX)
}

/// Whether a pod that stays would be taken before one of the `going` pods: its cost is not
/// above the highest of theirs.
fn stays_too_low(pod: &Pod, going: usize) -> bool {
    going > 0 && pod.cost() <= going_cost(going - 1)
}

/// How many writes it takes for the `going` first pods of `order` to go.
fn count_writes(order: &[&Pod], going: usize) -> usize {
    let (go, stay) = order.split_at(going);
    let set = go
        .iter()
        .enumerate()
        .filter(|(i, p)| !has_cost(p, going_cost(*i)))
        .count();
    set + stay.iter().filter(|p| stays_too_low(p, going)).count()
}

/// The writes for the `going` first pods of `order` to go: the pods that stay with too low a
/// cost cleared, then the going pods' costs set, idlest first.
fn writes_for(order: &[&Pod], going: usize) -> Vec<CostWrite> {
    let (go, stay) = order.split_at(going);
    let clear = stay
        .iter()
        .filter(|p| stays_too_low(p, going))
        .map(|p| CostWrite {
            pod: p.name.clone(),
            cost: None,
        });
    let set = go
        .iter()
        .enumerate()
        .filter(|(i, p)| !has_cost(p, going_cost(*i)))
        .map(|(i, p)| CostWrite {
            pod: p.name.clone(),
            cost: Some(going_cost(i)),
        });
    clear.chain(set).collect()
}

/// Whether the pod's annotation already reads `cost`.
fn has_cost(pod: &Pod, cost: i32) -> bool {
    pod.annotation.as_deref().and_then(|a| a.parse().ok()) == Some(cost)
}

/// `pods` ranked by their summed values, idlest first (ties by name); a pod without a value
/// ranks as the busiest measured one.
fn rank<'a>(
    pods: &'a [Pod],
    values: &[(String, f64)],
) -> Result<Vec<(&'a Pod, RankedPod)>, NoPodValues> {
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
    let mut ranked: Vec<(&Pod, RankedPod)> = pods
        .iter()
        .map(|p| {
            let value = measured.get(p.name.as_str()).copied();
            let ranked = RankedPod {
                pod: p.name.clone(),
                load: value.unwrap_or(busiest),
                measured: value.is_some(),
            };
            (p, ranked)
        })
        .collect();
    ranked.sort_by(|(_, a), (_, b)| a.load.cmp(&b.load).then_with(|| a.pod.cmp(&b.pod)));
    Ok(ranked)
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

    const MIN: i32 = GOING_COST;

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
        plan.ranked
            .iter()
            .map(|c| (c.pod.as_str(), c.load))
            .collect()
    }

    fn writes(plan: &CostPlan) -> Vec<(&str, Option<i32>)> {
        plan.writes
            .iter()
            .map(|w| (w.pod.as_str(), w.cost))
            .collect()
    }

    /// `pods` after `plan`'s writes landed.
    fn written(pods: &[Pod], plan: &CostPlan) -> Vec<Pod> {
        let mut pods = pods.to_vec();
        for w in &plan.writes {
            let p = pods.iter_mut().find(|p| p.name == w.pod).unwrap();
            p.annotation = w.cost.map(|c| c.to_string());
        }
        pods
    }

    #[test]
    fn the_idlest_pods_rank_first() {
        let p = pods(&[("a", None), ("b", None), ("c", None)]);
        let plan = plan_costs(&p, &values(&[("a", 12.0), ("b", 0.0), ("c", 3.0)]), 3, 10).unwrap();
        assert_eq!(order(&plan), vec![("b", 0), ("c", 3), ("a", 12)]);
        assert_eq!(plan.going, 3);
        assert_eq!(
            writes(&plan),
            vec![("b", Some(MIN)), ("c", Some(MIN + 1)), ("a", Some(MIN + 2))]
        );
        assert_eq!(plan.unmeasured, 0);
    }

    #[test]
    fn only_the_pods_that_go_are_written_and_a_second_plan_writes_nothing() {
        // 100 pods, pod i carrying i streams; 7 go
        let names: Vec<String> = (0..100).map(|i| format!("p{i:03}")).collect();
        let p: Vec<Pod> = names
            .iter()
            .map(|n| Pod {
                name: n.clone(),
                annotation: None,
            })
            .collect();
        let v: Vec<(String, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as f64))
            .collect();
        let plan = plan_costs(&p, &v, 7, MAX_UPDATES_PER_EVALUATION).unwrap();
        assert_eq!(plan.going, 7);
        let expected: Vec<(String, Option<i32>)> = (0..7)
            .map(|i| (format!("p{i:03}"), Some(MIN + i)))
            .collect();
        let got: Vec<(String, Option<i32>)> = plan
            .writes
            .iter()
            .map(|w| (w.pod.clone(), w.cost))
            .collect();
        assert_eq!(
            got, expected,
            "the 7 idlest, lowest cost first; no other pod"
        );
        // the writes landed: the same scale-down needs none, whatever the values now
        let after = written(&p, &plan);
        let again = plan_costs(&after, &v, 7, MAX_UPDATES_PER_EVALUATION).unwrap();
        assert_eq!((again.going, again.writes.len()), (7, 0));
        // nothing goes: nothing is written
        let none = plan_costs(&p, &v, 0, MAX_UPDATES_PER_EVALUATION).unwrap();
        assert_eq!((none.going, none.writes.len()), (0, 0));
        // more than there are: all of them
        let all = plan_costs(&p[..3], &v, 9, MAX_UPDATES_PER_EVALUATION).unwrap();
        assert_eq!((all.going, all.writes.len()), (3, 3));
    }

    #[test]
    fn a_pod_that_stays_is_written_only_when_its_cost_is_as_low_as_a_going_ones() {
        // an earlier scale-down left MIN+1 on b and MIN+5 on d (the ReplicaSet took unready
        // pods instead); e carries a cost of its own, f is not an int32
        let p = pods(&[
            ("a", None),
            ("b", Some(&(MIN + 1).to_string())),
            ("c", Some("7")),
            ("d", Some(&(MIN + 5).to_string())),
            ("e", Some("-3")),
            ("f", Some("x")),
        ]);
        let v = values(&[
            ("a", 0.0),
            ("b", 9.0),
            ("c", 1.0),
            ("d", 8.0),
            ("e", 7.0),
            ("f", 6.0),
        ]);
        let plan = plan_costs(&p, &v, 2, 10).unwrap();
        assert_eq!(plan.going, 2);
        assert_eq!(
            writes(&plan),
            vec![("b", None), ("a", Some(MIN)), ("c", Some(MIN + 1))],
            "b's MIN+1 would tie c's: removed; d's MIN+5, e's -3 and f are above: left"
        );
        // a going pod that already holds its cost is not written again
        let p = pods(&[("a", Some(&MIN.to_string())), ("c", None)]);
        let plan = plan_costs(&p, &values(&[("a", 0.0), ("c", 1.0)]), 2, 10).unwrap();
        assert_eq!(writes(&plan), vec![("c", Some(MIN + 1))]);
    }

    #[test]
    fn past_the_bound_fewer_pods_go_and_the_next_evaluation_takes_the_rest() {
        let names: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
        let p: Vec<Pod> = names
            .iter()
            .map(|n| Pod {
                name: n.clone(),
                annotation: None,
            })
            .collect();
        let v: Vec<(String, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as f64))
            .collect();
        let plan = plan_costs(&p, &v, 12, 5).unwrap();
        assert_eq!(plan.going, 5, "the 5 idlest go now");
        assert_eq!(plan.writes.len(), 5);
        assert_eq!(plan.writes[0].pod, "p00");
        // the ReplicaSet removed them; 7 more to go
        let rest: Vec<Pod> = written(&p, &plan).into_iter().skip(5).collect();
        let next = plan_costs(&rest, &v, 7, 5).unwrap();
        assert_eq!(next.going, 5);
        assert_eq!(
            next.writes[0],
            CostWrite {
                pod: "p05".into(),
                cost: Some(MIN)
            }
        );
        // pods that stay holding the lowest cost are cleared first, within the bound
        let low: Vec<Pod> = (0..8)
            .map(|i| Pod {
                name: format!("p{i:02}"),
                annotation: Some(MIN.to_string()),
            })
            .collect();
        let v: Vec<(String, f64)> = (0..8)
            .map(|i| (format!("p{i:02}"), if i == 7 { 0.0 } else { 5.0 }))
            .collect();
        let plan = plan_costs(&low, &v, 1, 3).unwrap();
        assert_eq!(plan.ranked[0].pod, "p07", "the idlest would go");
        assert_eq!(
            plan.going, 0,
            "none goes while 7 pods that stay cost as little"
        );
        assert_eq!(
            writes(&plan),
            vec![("p00", None), ("p01", None), ("p02", None)]
        );
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
        let plan = plan_costs(&p, &values(&[("idle", 1.0), ("busy", 7.0)]), 1, 10).unwrap();
        assert_eq!(order(&plan), vec![("idle", 1), ("busy", 7), ("new", 7)]);
        assert_eq!(plan.unmeasured, 1);
        let new = plan.ranked.iter().find(|c| c.pod == "new").unwrap();
        assert!(!new.measured);
        // a NaN series is no value
        let plan = plan_costs(&p, &values(&[("idle", 1.0), ("new", f64::NAN)]), 1, 10).unwrap();
        assert_eq!(order(&plan), vec![("busy", 1), ("idle", 1), ("new", 1)]);
        assert_eq!(plan.unmeasured, 2);
    }

    #[test]
    fn no_value_for_any_pod_is_an_error_not_all_idle() {
        let p = pods(&[("a", None), ("b", None)]);
        let err = plan_costs(&p, &values(&[("other", 3.0)]), 1, 10).unwrap_err();
        assert_eq!(err, NoPodValues { pods: 2, series: 1 });
        let err = plan_costs(&p, &[], 1, 10).unwrap_err();
        assert_eq!(err, NoPodValues { pods: 2, series: 0 });
        assert!(plan_costs(&[], &values(&[("a", 1.0)]), 1, 10).is_err());
    }

    #[test]
    fn ties_are_ordered_by_name_and_series_of_one_pod_are_summed() {
        let p = pods(&[("b", None), ("a", None), ("c", None)]);
        let v = values(&[("b", 2.0), ("a", 2.0), ("c", 1.0), ("c", 1.5), ("zzz", 9.0)]);
        let plan = plan_costs(&p, &v, 1, 10).unwrap();
        assert_eq!(order(&plan), vec![("a", 2), ("b", 2), ("c", 3)]);
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
