//! Scheduled overrides (`spec.schedules`) on the real control plane (tests/support/cluster.rs),
//! with a real Prometheus and the `prescale run` binary as the chart's ServiceAccount: a window
//! raises the Deployment's replicas at its start, not before, says so in `status.schedules`,
//! the `ScalingLimited` condition and one `ScheduleStarted` event, and at its end lets go as
//! the scale-down stabilisation window allows, with one `ScheduleEnded` event. The edges of a
//! window, cron and time zones are unit tests (`planner::schedule`).

mod support;

use std::time::Duration;

use prescale::api::PredictiveScaler;
use serde_json::json;
use support::cluster::KubeCluster;
use support::scenario::{
    FLAT_LOAD_REPLICAS, create_scaler, flat_load, scaler_path, start_operator, wait_for,
};
use support::{find_condition, report, unix_now, wait_until};

/// Flat load 100 at the fixture's targetPerReplica 10: 10 replicas.
const WANT: i64 = FLAT_LOAD_REPLICAS;
/// The window's floor.
const FLOOR: i64 = 25;

#[test]
fn a_schedule_window_raises_replicas_at_its_start_and_lets_go_at_its_end() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let (ns, name) = ("sched-window", "launch");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    // the window opens 40 s from now (time for the first forecast) for 20 s
    let start = unix_now() + 40;
    let end = start + 20;
    let rfc3339 = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_string();
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .scale_down("20s", 10)
        .with(
            "/spec/schedules",
            json!([{"name": "launch-day", "start": rfc3339(start), "end": rfc3339(end),
                    "minReplicas": FLOOR}]),
        )
        .json();
    create_scaler(kube, scaler);
    let (mut op, _) = start_operator(kube, ns, &prom.url(), None, "1s");
    let path = scaler_path(ns, name);
    let wait = Duration::from_secs(60);

    // before the window: the forecast's count, and the window as the next
    let s = wait_for(&mut op, kube, &path, "the forecast's count", wait, |s| {
        s["status"]["desiredReplicas"] == WANT && kube.deployment_replicas(ns, name) == WANT
    });
    assert!(
        unix_now() < start,
        "the first forecast took longer than the 40 s before the window: {}",
        s["status"]
    );
    assert_eq!(
        s["status"]["schedules"],
        json!({"active": [], "next": {"name": "launch-day", "start": rfc3339(start)}}),
    );

    // at its start: raised to the floor, not before
    let s = wait_for(&mut op, kube, &path, "the window's floor", wait, |_| {
        kube.deployment_replicas(ns, name) == FLOOR
    });
    let raised_at = unix_now();
    assert!(raised_at >= start, "raised {}s early", start - raised_at);
    let s = if s["status"]["schedules"]["active"] == json!(["launch-day"]) {
        s
    } else {
        wait_for(&mut op, kube, &path, "status.schedules", wait, |s| {
            s["status"]["schedules"]["active"] == json!(["launch-day"])
        })
    };
    let limited = find_condition(&s, "ScalingLimited").expect("ScalingLimited");
    assert_eq!(limited["reason"], "ScheduledMinimum", "{limited}");
    assert_eq!(
        limited["message"],
        format!(
            "the desired count {WANT} is raised to {FLOOR} by schedule launch-day (minReplicas)"
        )
    );

    // at its end: ScheduleEnded, and the count held by the 20 s stabilisation window, then
    // lowered by 10% a minute (25 -> 23)
    wait_for(&mut op, kube, &path, "the window's end", wait, |s| {
        s["status"].get("schedules").is_none()
    });
    let ended_at = unix_now();
    assert!(ended_at >= end);
    assert_eq!(
        kube.deployment_replicas(ns, name),
        FLOOR,
        "held at the window's end"
    );
    wait_for(&mut op, kube, &path, "the scale-down", wait, |_| {
        kube.deployment_replicas(ns, name) < FLOOR
    });
    let lowered_at = unix_now();
    assert!(
        lowered_at >= end + 15,
        "lowered {}s after the end, within the 20 s stabilisation window",
        lowered_at - end
    );
    assert_eq!(kube.deployment_replicas(ns, name), 23);

    // one event per transition (the Recorder would fold a repeat into a series)
    for reason in ["ScheduleStarted", "ScheduleEnded"] {
        let got = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            Some(kube.events_about(ns, name, reason)).filter(|e| !e.is_empty())
        })
        .unwrap_or_default();
        assert_eq!(got.len(), 1, "one {reason} event: {got:#?}");
        assert_eq!(got[0]["type"], "Normal");
        assert!(got[0]["series"].is_null(), "{reason} repeated: {got:#?}");
        assert!(
            got[0]["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("schedule launch-day ")),
            "{:?}",
            got[0]["note"]
        );
    }
    op.assert_never_forbidden();
    report(&format!(
        "[schedules] a window {start}..{end}: {WANT} -> {FLOOR} replicas {}s after its start, held \
         {}s past its end by the stabilisation window, one ScheduleStarted and one ScheduleEnded event",
        raised_at - start,
        lowered_at - end
    ));
}

/// Issue 21 item 12: a window shorter than the sync interval was missed (4 of 4): the next
/// evaluation was always one sync interval later, never the window's start. Here a 30 s sync
/// interval and a 6 s window starting 8 s after the last evaluation: the operator evaluates
/// at its start (raised to the floor) and at its end (`status.schedules` cleared), both long
/// before the next sync.
#[test]
fn a_window_shorter_than_the_sync_interval_is_applied() {
    let prom = flat_load();
    let kube = KubeCluster::shared();
    let (ns, name) = ("sched-short", "burst");
    kube.create_namespace(ns);
    kube.create_deployment(ns, name, 3);
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .scale_down("1m", 0)
        .json();
    create_scaler(kube, scaler);
    let (mut op, _) = start_operator(kube, ns, &prom.url(), None, "30s");
    let path = scaler_path(ns, name);
    let wait = Duration::from_secs(60);
    wait_for(&mut op, kube, &path, "the forecast's count", wait, |s| {
        s["status"]["desiredReplicas"] == WANT && kube.deployment_replicas(ns, name) == WANT
    });
    // the spec change is evaluated at once (a new generation); the window starts 8 s later
    let rfc3339 = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_string();
    let start = unix_now() + 8;
    let end = start + 6;
    kube.patch_merge(
        &path,
        json!({"spec": {"schedules": [{"name": "burst", "start": rfc3339(start),
                                       "end": rfc3339(end), "minReplicas": FLOOR}]}}),
    );
    wait_for(&mut op, kube, &path, "the window as the next", wait, |s| {
        s["status"]["schedules"]["next"]["name"] == "burst"
    });
    assert!(unix_now() < start, "the spec change was evaluated late");
    let s = wait_for(&mut op, kube, &path, "the window's floor", wait, |_| {
        kube.deployment_replicas(ns, name) == FLOOR
    });
    let raised_at = unix_now();
    assert!(raised_at >= start, "raised {}s early", start - raised_at);
    assert!(
        raised_at < end,
        "raised {}s after the window's start, at or after its end: {}",
        raised_at - start,
        s["status"]
    );
    wait_for(&mut op, kube, &path, "the window's end", wait, |s| {
        s["status"].get("schedules").is_none()
    });
    let ended_at = unix_now();
    assert!(
        ended_at >= end && ended_at < end + 10,
        "the end evaluated {}s after it (the sync interval is 30 s)",
        ended_at - end
    );
    op.assert_never_forbidden();
    report(&format!(
        "[schedules] a 6 s window at a 30 s sync interval: raised to {FLOOR} {}s after its start, \
         its end seen {}s after it",
        raised_at - start,
        ended_at - end
    ));
}
