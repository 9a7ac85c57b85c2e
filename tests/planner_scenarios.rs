//! Table-driven scenarios for the pure planner, on a fixed clock with hand-made forecasts.

use std::time::Duration;

use prescale::{
    api::conditions::{limit_reason, reasons, unavailable_reason},
    planner::{
        Fallback, FittedModel, Forecast, ForecastSettings, MetricInput, ModelKind, NoForecast,
        PlannerState, Policy, Series, Unavailable, fit_forecast, plan, plan_dry_run, record_scale,
    },
};

const MIN: i64 = 60;
const T0: i64 = 1_700_000_000 / 60 * 60;

fn policy() -> Policy {
    Policy {
        min_replicas: 1,
        max_replicas: 100,
        lead_time: Duration::from_secs(5 * 60),
        interval: Duration::from_secs(60),
        max_replicas_per_minute: 0,
        stabilization_window: Duration::from_secs(15 * 60),
        max_percent_per_minute: 0,
        fallback: Fallback::Reactive,
        fallback_headroom: 1.0,
        schedules: Vec::new(),
        upstream: Vec::new(),
    }
}

/// A forecast from `start` over `len` minutes with `upper(t)`.
fn forecast(start: i64, len: usize, upper: impl Fn(i64) -> f64) -> Forecast {
    let up: Vec<f64> = (0..len).map(|i| upper(start + i as i64 * MIN)).collect();
    Forecast {
        start,
        step: MIN,
        point: up.clone(),
        upper: up,
        model: FittedModel::Constant,
        backtest_error: None,
        margins: None,
    }
}

fn metric<'a>(fc: &'a Forecast, observed: Option<f64>) -> MetricInput<'a> {
    MetricInput {
        name: "requests",
        target_per_replica: 10.0,
        observed,
        forecast: Ok(fc),
        duration: None,
    }
}

#[test]
fn the_rise_is_met_lead_time_before_the_forecast_peak() {
    let peak = T0 + 60 * MIN;
    // 100/s until the peak, 400/s for half an hour from it
    let fc = forecast(T0, 180, |t| {
        if (peak..peak + 30 * MIN).contains(&t) {
            400.0
        } else {
            100.0
        }
    });
    let p = policy();
    let mut state = PlannerState::default();
    let mut current = 10;
    let mut first_high = None;
    for now in (T0..peak + MIN).step_by(MIN as usize) {
        let d = plan(now, current, &p, &[metric(&fc, Some(100.0))], &mut state);
        if d.desired >= 40 && first_high.is_none() {
            first_high = Some(now);
        }
        current = d.desired;
    }
    let first_high = first_high.expect("scaled up for the peak");
    assert!(
        first_high <= peak - p.lead_time.as_secs() as i64,
        "scaled at {} s before the peak",
        peak - first_high
    );
    // and not absurdly early: lead + one interval
    assert_eq!(
        first_high,
        peak - (p.lead_time + p.interval).as_secs() as i64
    );
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let drop = T0 + 30 * MIN;
    let fc = forecast(T0, 180, |t| if t < drop { 400.0 } else { 100.0 });
    let p = policy();
    let mut state = PlannerState::default();
    let mut current = 40;
    let mut history = vec![];
    for now in (T0..T0 + 90 * MIN).step_by(MIN as usize) {
        let d = plan(now, current, &p, &[metric(&fc, Some(100.0))], &mut state);
        history.push((now, d.desired, d.stabilized));
        current = d.desired;
    }
    // capacity is needed until the drop: the last evaluation that sees 400 is one step before
    let last_high_rec = drop - MIN;
    for &(now, desired, stabilized) in &history {
        if now <= last_high_rec + 15 * MIN - MIN {
            assert_eq!(
                desired,
                40,
                "at +{} min still inside the window",
                (now - T0) / MIN
            );
            if now > last_high_rec {
                assert!(
                    stabilized,
                    "held by stabilisation at +{} min",
                    (now - T0) / MIN
                );
            }
        }
    }
    let (after, desired, _) = history
        .iter()
        .find(|(_, d, _)| *d < 40)
        .copied()
        .expect("eventually scales down");
    assert_eq!(
        after,
        last_high_rec + 15 * MIN,
        "scale-down exactly when the window has passed"
    );
    assert_eq!(desired, 10);
}

#[test]
fn the_reactive_floor_wins_over_a_low_forecast() {
    let fc = forecast(T0, 120, |_| 100.0);
    let d = plan(
        T0,
        10,
        &policy(),
        &[metric(&fc, Some(505.0))],
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 51);
    assert_eq!(d.metrics[0].reactive_replicas, Some(51));
    assert_eq!(d.metrics[0].forecast_replicas, Some(10));
}

#[test]
fn clamps_to_min_and_max() {
    // (forecast load, current, desired, limit reason)
    let cases = [
        (5.0, 3, 2, reasons::TOO_FEW_REPLICAS),
        (5_000.0, 3, 20, reasons::TOO_MANY_REPLICAS),
        (100.0, 3, 10, reasons::DESIRED_WITHIN_RANGE),
    ];
    for (load, current, want, reason) in cases {
        let fc = forecast(T0, 120, |_| load);
        let p = Policy {
            min_replicas: 2,
            max_replicas: 20,
            stabilization_window: Duration::ZERO,
            ..policy()
        };
        let d = plan(
            T0,
            current,
            &p,
            &[metric(&fc, None)],
            &mut PlannerState::default(),
        );
        assert_eq!(
            (d.desired, limit_reason(d.limit)),
            (want, reason),
            "load {load}"
        );
    }
}

#[test]
fn scale_up_step_limit() {
    let fc = forecast(T0, 120, |_| 400.0);
    let p = Policy {
        max_replicas_per_minute: 5,
        ..policy()
    };
    let mut state = PlannerState::default();
    let mut current = 10;
    let mut seen = vec![];
    for now in (T0..T0 + 8 * MIN).step_by(MIN as usize) {
        let d = plan(now, current, &p, &[metric(&fc, None)], &mut state);
        seen.push(d.desired);
        if d.desired < 40 {
            assert_eq!(limit_reason(d.limit), reasons::SCALE_UP_LIMIT);
        }
        record_scale(&mut state, now, current, d.desired);
        current = d.desired;
    }
    assert_eq!(seen, [15, 20, 25, 30, 35, 40, 40, 40]);
    // two evaluations inside one minute share the budget
    let mut state = PlannerState::default();
    let a = plan(T0, 10, &p, &[metric(&fc, None)], &mut state);
    record_scale(&mut state, T0, 10, a.desired);
    let b = plan(T0 + 30, a.desired, &p, &[metric(&fc, None)], &mut state);
    assert_eq!((a.desired, b.desired), (15, 15));
}

#[test]
fn a_decision_that_was_not_written_spends_no_budget() {
    // the write of 10 -> 15 failed (a 409, a lost lease): the retry may still add 5 at once
    let fc = forecast(T0, 120, |_| 400.0);
    let p = Policy {
        max_replicas_per_minute: 5,
        ..policy()
    };
    let mut state = PlannerState::default();
    let a = plan(T0, 10, &p, &[metric(&fc, None)], &mut state);
    let b = plan(T0 + 10, 10, &p, &[metric(&fc, None)], &mut state);
    assert_eq!((a.desired, b.desired), (15, 15), "no phantom scale event");
    record_scale(&mut state, T0 + 10, 10, 15);
    let c = plan(T0 + 20, 15, &p, &[metric(&fc, None)], &mut state);
    assert_eq!(
        c.desired, 15,
        "the write that landed spent the minute's budget"
    );
}

#[test]
fn dry_run_follows_the_trajectory_active_would() {
    // load that needs 16 replicas, at 20, scaling down at most 10% a minute: Active goes
    // 20 -> 18 -> 17 -> 16 and stays; DryRun must report the same, not flap between 18 and 20
    let fc = forecast(T0, 120, |_| 155.0);
    let p = Policy {
        max_percent_per_minute: 10,
        stabilization_window: Duration::ZERO,
        ..policy()
    };
    let minutes = || (T0..T0 + 6 * MIN).step_by(MIN as usize);
    let mut active = PlannerState::default();
    let mut current = 20;
    let mut active_seen = vec![];
    for now in minutes() {
        let d = plan(now, current, &p, &[metric(&fc, None)], &mut active);
        record_scale(&mut active, now, current, d.desired);
        current = d.desired;
        active_seen.push(d.desired);
    }
    // 10% of 20 is 2, of 18 is 1
    assert_eq!(active_seen, [18, 17, 16, 16, 16, 16]);
    let mut dry = Default::default();
    let dry_seen: Vec<u32> = minutes()
        .map(|now| plan_dry_run(now, 20, &p, &[metric(&fc, None)], &[], &[], &mut dry).desired)
        .collect();
    assert_eq!(dry_seen, active_seen, "the target stays at 20 in DryRun");
    // someone else changes the target: the shadow starts again from the real count
    let d = plan_dry_run(
        T0 + 6 * MIN,
        30,
        &p,
        &[metric(&fc, None)],
        &[],
        &[],
        &mut dry,
    );
    assert_eq!(d.desired, 27);
}

#[test]
fn entries_from_the_future_are_dropped_when_the_clock_steps_back() {
    // a scale-up recorded, then the clock steps back an hour: the hour-old "future" entries
    // must neither hold a scale-down nor spend the scale-up budget
    let p = Policy {
        max_replicas_per_minute: 5,
        ..policy()
    };
    let high = forecast(T0 - 2 * 3600, 5 * 60, |_| 400.0);
    let low = forecast(T0 - 2 * 3600, 5 * 60, |_| 50.0);
    let mut state = PlannerState::default();
    let d = plan(T0, 35, &p, &[metric(&high, None)], &mut state);
    record_scale(&mut state, T0, 35, d.desired);
    assert_eq!(d.desired, 40);
    let back = T0 - 3600;
    let up = plan(back, 10, &p, &[metric(&high, None)], &mut state);
    assert_eq!(
        up.desired, 15,
        "the budget of the future minute is not spent now"
    );
    let mut state = PlannerState::default();
    plan(T0, 40, &p, &[metric(&high, None)], &mut state);
    let down = plan(back, 40, &p, &[metric(&low, None)], &mut state);
    assert_eq!(down.desired, 40, "stabilised by the window seeded now...");
    let mut last = down.desired;
    for now in (back + MIN..=back + 16 * MIN).step_by(MIN as usize) {
        last = plan(now, 40, &p, &[metric(&low, None)], &mut state).desired;
    }
    assert_eq!(last, 5, "...but not by a recommendation from the future");
}

#[test]
fn scale_down_percent_limit() {
    let fc = forecast(T0, 120, |_| 100.0);
    let p = Policy {
        max_percent_per_minute: 10,
        stabilization_window: Duration::ZERO,
        ..policy()
    };
    let mut state = PlannerState::default();
    let d = plan(T0, 40, &p, &[metric(&fc, None)], &mut state);
    assert_eq!(
        (d.desired, limit_reason(d.limit)),
        (36, reasons::SCALE_DOWN_LIMIT)
    );
    // small targets still scale down, one replica a minute
    let d = plan(
        T0,
        3,
        &p,
        &[metric(&forecast(T0, 120, |_| 0.0), None)],
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 2);
}

#[test]
fn no_data_holds_never_zero() {
    // empty, all-NaN and too-short histories: no forecast
    let settings = ForecastSettings::new(ModelKind::Auto, vec![], 120, 0.9, 60);
    let histories = [
        Series::empty(T0, 60),
        Series::new(T0, 60, vec![f64::NAN; 3000]),
        Series::new(T0, 60, vec![5.0, 6.0, 7.0, 8.0]),
    ];
    for (i, series) in histories.iter().enumerate() {
        let err = fit_forecast(series, &settings).expect_err("no forecast");
        let unavailable = Unavailable::from_forecast_error(&err);
        for fallback in [Fallback::Reactive, Fallback::Hold] {
            let p = Policy {
                fallback,
                ..policy()
            };
            let input = MetricInput {
                name: "requests",
                target_per_replica: 10.0,
                observed: None,
                forecast: Err(unavailable.clone()),
                duration: None,
            };
            let mut state = PlannerState::default();
            for minute in 0..30 {
                let d = plan(
                    T0 + minute * MIN,
                    17,
                    &p,
                    std::slice::from_ref(&input),
                    &mut state,
                );
                assert_eq!(
                    d.desired, 17,
                    "history {i}, {fallback:?}, +{minute} min: holds the current count"
                );
            }
            let d = plan(T0, 17, &p, &[input], &mut PlannerState::default());
            assert!(d.metrics[0].unavailable.is_some());
        }
    }
    let reason = |i: usize| {
        let e = fit_forecast(&histories[i], &settings).unwrap_err();
        unavailable_reason(Unavailable::from_forecast_error(&e).cause)
    };
    assert_eq!(reason(0), reasons::EMPTY_QUERY_RESULT);
    assert_eq!(reason(2), reasons::INSUFFICIENT_HISTORY);
}

#[test]
fn reactive_fallback_follows_the_observed_load_up() {
    let input = MetricInput {
        name: "requests",
        target_per_replica: 10.0,
        observed: Some(300.0),
        forecast: Err(Unavailable::new(NoForecast::InsufficientHistory, "short")),
        duration: None,
    };
    let d = plan(
        T0,
        5,
        &policy(),
        std::slice::from_ref(&input),
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 30);
    // with the default budget the fallback spends it as a reactive autoscaler with a lower
    // target would: 300/s x 1.15 at 10 per replica
    let budget = Policy {
        fallback_headroom: prescale::planner::margin::fallback_headroom(None),
        ..policy()
    };
    let d = plan(
        T0,
        5,
        &budget,
        std::slice::from_ref(&input),
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 35);
    assert_eq!(d.metrics[0].reactive_replicas, Some(30));
    let hold = Policy {
        fallback: Fallback::Hold,
        ..budget
    };
    let d = plan(T0, 50, &hold, &[input], &mut PlannerState::default());
    assert_eq!(d.desired, 50, "Hold never lowers on a missing forecast");
}

#[test]
fn a_stale_forecast_is_not_trusted() {
    // the forecast ends before now + lead + interval
    let fc = forecast(T0 - 120 * MIN, 122, |_| 1.0);
    let d = plan(
        T0,
        12,
        &policy(),
        &[metric(&fc, None)],
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 12);
    assert_eq!(
        unavailable_reason(d.metrics[0].unavailable.as_ref().unwrap().cause),
        reasons::STALE_FORECAST
    );
}

#[test]
fn the_max_over_metrics_drives() {
    let low = forecast(T0, 120, |_| 100.0);
    let high = forecast(T0, 120, |_| 900.0);
    let metrics = [
        MetricInput {
            name: "requests",
            target_per_replica: 10.0,
            observed: None,
            forecast: Ok(&low),
            duration: None,
        },
        MetricInput {
            name: "tokens",
            target_per_replica: 30.0,
            observed: None,
            forecast: Ok(&high),
            duration: None,
        },
    ];
    let d = plan(T0, 5, &policy(), &metrics, &mut PlannerState::default());
    assert_eq!(d.desired, 30);
    assert_eq!(d.driving_metric.as_deref(), Some("tokens"));
}

#[test]
fn a_window_no_longer_than_the_sync_interval_holds_only_the_cold_start() {
    // issue 21 item 4: a 30 s window at a 30 s sync interval held 6 replicas wanting 3 for
    // ever (the window is empty at every evaluation, and was taken for a cold start)
    let fc = forecast(T0, 120, |_| 30.0); // wants 3
    for window in [15, 30] {
        let p = Policy {
            interval: Duration::from_secs(30),
            stabilization_window: Duration::from_secs(window),
            ..policy()
        };
        let mut state = PlannerState::default();
        let mut current = 6;
        let mut counts = vec![];
        for now in (T0..T0 + 120).step_by(30) {
            let d = plan(now, current, &p, &[metric(&fc, Some(30.0))], &mut state);
            record_scale(&mut state, now, current, d.desired);
            current = d.desired;
            counts.push(current);
        }
        assert_eq!(counts, vec![6, 3, 3, 3], "a {window} s window");
    }
}

#[test]
fn bounds_edited_below_the_current_count_apply_at_once() {
    // current 10, maxReplicas lowered to 6: straight to 6, not 10% a minute nor after the
    // stabilization window (as the HPA does); raised minReplicas likewise
    let fc = forecast(T0, 120, |_| 100.0); // wants 10
    let p = Policy {
        max_replicas: 6,
        max_percent_per_minute: 10,
        ..policy()
    };
    let mut state = PlannerState::default();
    let d = plan(T0, 10, &p, &[metric(&fc, Some(100.0))], &mut state);
    assert_eq!(
        (d.desired, limit_reason(d.limit)),
        (6, reasons::TOO_MANY_REPLICAS)
    );
    assert!(!d.stabilized);
    let p = Policy {
        min_replicas: 12,
        max_replicas_per_minute: 1,
        ..policy()
    };
    let d = plan(
        T0,
        10,
        &p,
        &[metric(&fc, Some(100.0))],
        &mut PlannerState::default(),
    );
    assert_eq!(
        (d.desired, limit_reason(d.limit)),
        (12, reasons::TOO_FEW_REPLICAS)
    );
    // within the bounds the limits still apply
    let p = Policy {
        max_percent_per_minute: 10,
        stabilization_window: Duration::ZERO,
        ..policy()
    };
    let low = forecast(T0, 120, |_| 10.0);
    let d = plan(
        T0,
        10,
        &p,
        &[metric(&low, Some(10.0))],
        &mut PlannerState::default(),
    );
    assert_eq!(
        (d.desired, limit_reason(d.limit)),
        (9, reasons::SCALE_DOWN_LIMIT)
    );
}

#[test]
fn a_calibrated_margin_sizes_on_the_latest_load_and_the_model_band_is_the_fallback() {
    use prescale::planner::margin::Margins;
    // the model's band says 100; the margin says the load may grow 1.5x over the lead window
    // at 09:00 (index 0) and 1.0x from 09:01
    let mut fc = forecast(T0, 180, |_| 100.0);
    fc.margins = Some(Margins {
        start: T0,
        step: MIN,
        margin: [vec![1.5], vec![1.0; 179]].concat(),
        floor: 20.0,
        quantile: 0.8,
    });
    let p = Policy {
        stabilization_window: std::time::Duration::ZERO,
        ..policy()
    };
    let mut state = PlannerState::default();
    // 1.5 * (200 + 20) = 330 -> 33 replicas at 10 each, not the band's 10
    let d = plan(T0, 10, &p, &[metric(&fc, Some(200.0))], &mut state);
    assert_eq!(d.metrics[0].forecast_replicas, Some(33), "{d:?}");
    assert_eq!(d.desired, 33);
    // a minute later the margin is 1.0: (200 + 20) / 10 = 22, still above the floor of 20
    let d = plan(T0 + MIN, 33, &p, &[metric(&fc, Some(200.0))], &mut state);
    assert_eq!(d.metrics[0].forecast_replicas, Some(22));
    // without a fresh observation the margin has nothing to scale: the model's band sizes
    let d = plan(T0 + 2 * MIN, 22, &p, &[metric(&fc, None)], &mut state);
    assert_eq!(d.metrics[0].forecast_replicas, Some(10));
}

/// A concurrency metric (Little's law): 2 requests/s forecast, requests lasting 30 s, 8 streams
/// per replica: ceil(2 x 30 / 8) = 8 replicas, where the same rate sized as requests at the
/// same target would ask for 1.
#[test]
fn a_concurrency_metric_sizes_on_rate_times_duration() {
    let fc = forecast(T0, 60, |_| 2.0);
    let streams = |duration: Option<f64>| MetricInput {
        name: "streams",
        target_per_replica: 8.0,
        observed: Some(2.0),
        forecast: Ok(&fc),
        duration,
    };
    let d = plan(
        T0,
        3,
        &policy(),
        &[streams(Some(30.0))],
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 8);
    let m = &d.metrics[0];
    assert_eq!(
        (m.forecast_replicas, m.reactive_replicas),
        (Some(8), Some(8))
    );
    assert_eq!(m.duration, Some(30.0));
    let peak = m.peak.expect("a peak");
    assert_eq!(
        (peak.value, peak.replicas),
        (2.0, 8),
        "the peak value stays a rate"
    );
    // the duration doubles: twice the streams
    let d = plan(
        T0,
        3,
        &policy(),
        &[streams(Some(60.0))],
        &mut PlannerState::default(),
    );
    assert_eq!(d.desired, 15);
    // without a duration the rate is the load
    let d = plan(
        T0,
        1,
        &policy(),
        &[streams(None)],
        &mut PlannerState::default(),
    );
    assert_eq!((d.desired, d.metrics[0].forecast_replicas), (1, Some(1)));
}

/// A concurrency metric whose duration is not usable holds the current count: never a
/// scale-down, never zero load, with `DurationUnavailable`.
#[test]
fn a_concurrency_metric_without_a_usable_duration_holds() {
    let fc = forecast(T0, 60, |_| 0.1);
    for duration in [f64::NAN, 0.0, -1.0, f64::INFINITY] {
        let input = MetricInput {
            name: "streams",
            target_per_replica: 8.0,
            observed: Some(0.1),
            forecast: Ok(&fc),
            duration: Some(duration),
        };
        let d = plan(T0, 12, &policy(), &[input], &mut PlannerState::default());
        assert_eq!(d.desired, 12, "duration {duration}: holds");
        let m = &d.metrics[0];
        assert_eq!(m.replicas, None);
        let u = m.unavailable.as_ref().expect("unavailable");
        assert_eq!(unavailable_reason(u.cause), reasons::DURATION_UNAVAILABLE);
    }
    // as the controller passes it: no observation, the cause as the forecast's error
    let input = MetricInput {
        name: "streams",
        target_per_replica: 8.0,
        observed: None,
        forecast: Err(Unavailable::new(
            NoForecast::DurationUnavailable,
            "no value",
        )),
        duration: None,
    };
    let d = plan(T0, 12, &policy(), &[input], &mut PlannerState::default());
    assert_eq!(d.desired, 12);
}
