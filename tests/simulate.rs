//! `prescale simulate`: walk-forward (no decision sees its own row or later), the CLI's
//! outputs, and one-line errors on bad input.

use std::{path::PathBuf, process::Command, time::Duration};

use prescale::{
    planner::{Fallback, ForecastSettings, ModelKind, Policy, Series},
    sim::{SimSettings, simulate, synthetic::synthetic_trace},
};

fn settings(step: i64) -> SimSettings {
    SimSettings {
        target_per_replica: 40.0,
        startup_steps: 1,
        refresh_steps: 6,
        warmup_steps: 0,
        lookback_steps: (14 * 86_400 / step) as usize,
        policy: Policy {
            min_replicas: 1,
            max_replicas: 500,
            lead_time: Duration::from_secs(5 * 60),
            interval: Duration::from_secs(step as u64),
            max_replicas_per_minute: 0,
            stabilization_window: Duration::from_secs(15 * 60),
            max_percent_per_minute: 10,
            fallback: Fallback::Reactive,
            fallback_headroom: 1.0,
            schedules: Vec::new(),
            upstream: Vec::new(),
        },
        forecast: ForecastSettings::new(ModelKind::Auto, vec![], 24, 0.9, step),
        threads: 2,
        scaler: prescale::planner::choice::UNNAMED_SCALER.into(),
        concurrency: None,
    }
}

/// Three days at 5 minutes: enough for a daily model, quick to fit.
fn trace() -> Series {
    let fine = synthetic_trace(7, 3, 300);
    assert_eq!(fine.step, 300);
    fine
}

#[test]
fn changing_rows_from_t_on_leaves_decisions_up_to_t_unchanged() {
    let base = trace();
    let s = settings(base.step);
    let before = simulate(&base, &s);
    for t in [5, 600, base.len() - 1] {
        let mut changed = base.clone();
        for (i, v) in changed.values.iter_mut().enumerate().skip(t) {
            *v = if i % 7 == 0 {
                f64::NAN
            } else {
                *v * 3.0 + 100.0
            };
        }
        let after = simulate(&changed, &s);
        let a: Vec<u32> = before.rows[..=t].iter().map(|r| r.desired).collect();
        let b: Vec<u32> = after.rows[..=t].iter().map(|r| r.desired).collect();
        assert_eq!(
            a, b,
            "desired_replicas[0..={t}] changed when rows >= {t} changed"
        );
        // and the change is visible later, so the test could fail
        if t + 2 < base.len() {
            assert_ne!(
                before.rows[t + 2..]
                    .iter()
                    .map(|r| r.desired)
                    .collect::<Vec<_>>(),
                after.rows[t + 2..]
                    .iter()
                    .map(|r| r.desired)
                    .collect::<Vec<_>>(),
                "rows after {t} should react to the change"
            );
        }
    }
}

#[test]
fn scores_follow_the_evaluation_model() {
    let base = trace();
    let s = settings(base.step);
    let r = simulate(&base, &s);
    assert_eq!(r.rows.len(), base.len());
    assert_eq!(r.oracle.violation_steps, 0, "the oracle never violates");
    assert!(r.oracle.replica_steps <= r.reactive.replica_steps);
    assert!(r.fits > 0 && r.fit_times.len() == r.fits);
    // the plan follows the daily cycle: more replicas at the busiest hour than the quietest
    let by_hour = |h: i64| {
        r.rows
            .iter()
            .filter(|row| (row.timestamp / 3600) % 24 == h)
            .map(|row| row.desired as f64)
            .sum::<f64>()
    };
    let busiest = (0..24)
        .max_by(|a, b| by_hour(*a).total_cmp(&by_hour(*b)))
        .unwrap();
    let quietest = (0..24)
        .min_by(|a, b| by_hour(*a).total_cmp(&by_hour(*b)))
        .unwrap();
    assert!(by_hour(busiest) > 2.0 * by_hour(quietest));
}

/// A fresh directory for one test (`<tag>-<pid>` in the system's temp dir) holding `csv` as
/// the file `name`: the directory, which the test removes at its end, and the file.
fn trace_file(tag: &str, name: &str, csv: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(name);
    std::fs::write(&input, csv).unwrap();
    (dir, input)
}

fn prescale() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
}

/// The stdout of a `prescale` run that must have succeeded (else its stdout and stderr).
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The last line of a `simulate` summary is a verdict, and it says what the counts above it
/// say: prescale's violation steps against the reactive baseline's at the same replica budget.
fn assert_verdict(stdout: &str) {
    let count = |prefix: &str| -> usize {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{stdout}"));
        line.split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"))
    };
    let ours = count("prescale  ");
    let budget = stdout
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("reactive with prescale's replica budget")
        })
        .unwrap_or_else(|| panic!("no equal-budget line:\n{stdout}"));
    let theirs: usize = budget
        .split("): ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no count in {budget:?}"));
    let verdict = stdout.trim_end().lines().last().unwrap_or_default();
    if (ours, theirs) == (0, 0) {
        assert!(
            verdict.starts_with("verdict: ") && verdict.contains("neither"),
            "{verdict:?}"
        );
        return;
    }
    let said = format!("({ours} violation steps against {theirs}, ");
    assert!(
        verdict.starts_with("verdict: ") && verdict.contains(&said),
        "the verdict must end the summary and carry {said}:\n{stdout}"
    );
    let word = match ours.cmp(&theirs) {
        std::cmp::Ordering::Less => "fewer violation steps",
        std::cmp::Ordering::Equal => "does no better",
        std::cmp::Ordering::Greater if theirs == 0 => "at the same cost has none",
        std::cmp::Ordering::Greater => "more violation steps",
    };
    assert!(
        verdict.contains(word),
        "{verdict:?} for {ours} against {theirs}"
    );
}

#[test]
fn cli_writes_plan_csv_and_plot() {
    let (dir, input) = trace_file(
        "prescale-sim",
        "trace.csv",
        &prescale::sim::synthetic::write_csv(&trace(), "requests"),
    );
    let (csv, svg) = (dir.join("plan.csv"), dir.join("plan.svg"));
    let out = prescale()
        .args([
            "simulate",
            "--input",
            input.to_str().unwrap(),
            "--target-per-replica",
            "40",
            "--refresh",
            "30m",
        ])
        .args([
            "--output",
            csv.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    for want in [
        "violation steps",
        "unserved %",
        "replica-steps",
        "prescale",
        "reactive",
        "oracle",
        "prescale / reactive",
    ] {
        assert!(stdout.contains(want), "summary lacks {want:?}:\n{stdout}");
    }
    assert_verdict(&stdout);
    let plan = std::fs::read_to_string(&csv).unwrap();
    let mut lines = plan.lines();
    assert_eq!(
        lines.next(),
        Some(
            "timestamp,value,forecast,upper,desired_replicas,reactive_replicas,oracle_replicas,reason"
        )
    );
    assert_eq!(lines.count(), trace().len(), "one row per input row");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `--lead-time Auto` (as `scaleUp.leadTime: Auto`) plans with `--startup`, what a learned lead
/// time converges to: the same plan as `--lead-time` set to it, another than the default 5m.
#[test]
fn cli_lead_time_auto_plans_with_the_startup() {
    let (dir, input) = trace_file(
        "prescale-sim-auto",
        "trace.csv",
        &prescale::sim::synthetic::write_csv(&trace(), "requests"),
    );
    let run = |lead: &str| {
        let csv = dir.join(format!("plan-{lead}.csv"));
        let out = prescale()
            .args(["simulate", "--input", input.to_str().unwrap()])
            .args(["--target-per-replica", "40", "--refresh", "30m"])
            .args(["--startup", "20m", "--lead-time", lead])
            .args(["--output", csv.to_str().unwrap()])
            .output()
            .unwrap();
        succeeded(&out);
        std::fs::read_to_string(&csv).unwrap()
    };
    let auto = run("Auto");
    assert_eq!(auto, run("20m"), "Auto plans with --startup");
    assert_ne!(auto, run("5m"), "the lead time changes the plan");
    std::fs::remove_dir_all(&dir).ok();
}

/// `simulate --spec` plans with the spec's schedules: the same planner as the controller.
#[test]
fn cli_spec_schedules_raise_the_plan_in_their_window() {
    let series = trace();
    let (dir, input) = trace_file(
        "prescale-sim-sched",
        "trace.csv",
        &prescale::sim::synthetic::write_csv(&series, "requests"),
    );
    // a window from 03:00 to 05:00 on the trace's third day, in its quiet hours
    let day = series.time_of(0) - series.time_of(0) % 86_400 + 2 * 86_400;
    let (start, end) = (day + 3 * 3600, day + 5 * 3600);
    let rfc3339 = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_string();
    let spec = dir.join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "apiVersion: prescale.dev/v1alpha1\nkind: PredictiveScaler\nmetadata: {{name: sim}}\n\
             spec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: sim}}\n  \
             maxReplicas: 200\n  metrics: [{{name: requests, query: q, targetPerReplica: \"40\"}}]\n  \
             forecast: {{refreshInterval: 30m}}\n  \
             schedules: [{{name: night-batch, start: \"{}\", end: \"{}\", minReplicas: 60}}]\n",
            rfc3339(start),
            rfc3339(end)
        ),
    )
    .unwrap();
    let csv = dir.join("plan.csv");
    let out = prescale()
        .args(["simulate", "--input", input.to_str().unwrap()])
        .args(["--spec", spec.to_str().unwrap()])
        .args(["--output", csv.to_str().unwrap()])
        .output()
        .unwrap();
    succeeded(&out);
    let plan = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<(i64, u32, String)> = plan
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap(), f[7].into())
        })
        .collect();
    let inside: Vec<&(i64, u32, String)> = rows
        .iter()
        .filter(|(t, _, _)| (start..end).contains(t))
        .collect();
    assert_eq!(inside.len(), 24, "two hours at 5 minutes");
    for (t, desired, reason) in &inside {
        assert!(*desired >= 60, "{t}: {desired} below the window's floor");
        assert_eq!(reason, "ScheduledMinimum", "{t}");
    }
    let before = rows.iter().rfind(|(t, _, _)| *t < start).unwrap();
    assert!(
        before.1 < 60,
        "the quiet hour before the window needs fewer: {before:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_frontier_prints_each_point_beside_the_same_budget_reactive_and_plots_both() {
    let (dir, input) = trace_file(
        "prescale-frontier",
        "trace.csv",
        &prescale::sim::synthetic::write_csv(&trace(), "requests"),
    );
    let svg = dir.join("frontier.svg");
    let run = |extra: &[&str]| {
        prescale()
            .args(["simulate", "--input", input.to_str().unwrap()])
            .args(["--target-per-replica", "40", "--refresh", "30m"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--frontier", "0.6,0.95", "--plot", svg.to_str().unwrap()]);
    let stdout = succeeded(&out);
    assert!(stdout.contains("reactive at the same budget"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("q0.6 ") || l.starts_with("q0.95 ") || l.starts_with("default ")
        })
        .collect();
    assert_eq!(rows.len(), 3, "one row per operating point:\n{stdout}");
    assert!(rows.iter().all(|r| r.contains("(target x")), "{rows:?}");
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("verdict: ")),
        "--frontier ends with its default point's verdict:\n{stdout}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.contains("<svg")
            && plot.contains("\nq0.95\n")
            && plot.contains("\nx1\n")
            && plot.contains("\ndefault\n")
    );
    // alone, --frontier runs the default operating points
    let out = run(&["--frontier"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 operating points"), "{stdout}");
    // a quantile out of range is refused before any work
    let out = run(&["--frontier", "0.5,1.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0 and 1"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_group_columns_plan_bottom_up_and_the_frontier_takes_them_too() {
    // three models sharing the week's shape at 60%, 30% and 10% of the load, and a column that
    // is not a model
    let base = trace();
    let mut csv = String::from("timestamp,model_a,model_b,model_c,errors\n");
    for (i, v) in base.values.iter().enumerate() {
        let t = base.time_of(i);
        csv.push_str(&format!(
            "{t},{:.1},{:.1},{:.1},1\n",
            v * 0.6,
            v * 0.3,
            v * 0.1
        ));
    }
    let (dir, input) = trace_file("prescale-group", "models.csv", &csv);
    let run = |extra: &[&str]| {
        let out = prescale()
            .args(["simulate", "--input", input.to_str().unwrap()])
            .args(["--group-columns", "model_*"])
            .args(["--target-per-replica", "40", "--refresh", "30m"])
            .args(extra)
            .output()
            .unwrap();
        succeeded(&out)
    };
    let stdout = run(&[]);
    assert!(
        stdout.contains("sum of model_a,model_b,model_c (bottom-up)"),
        "{stdout}"
    );
    assert!(stdout.contains("bottom-up over 3 columns"), "{stdout}");
    for variant in prescale::sim::group::VARIANTS {
        assert!(stdout.contains(variant), "{variant}: {stdout}");
    }
    // --frontier plans every operating point bottom-up, scored on the sum
    let stdout = run(&["--frontier", "0.9"]);
    assert!(stdout.contains("reactive at the same budget"), "{stdout}");
    let rows = stdout
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("q0.9 ") || l.starts_with("default ")
        })
        .count();
    assert_eq!(rows, 2, "one row per operating point:\n{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_bad_input_is_one_line_and_nonzero() {
    let dir = std::env::temp_dir().join(format!("prescale-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ok_rows = String::from("timestamp,requests\n");
    for i in 0..20 {
        ok_rows.push_str(&format!("{},{}\n", 60 * i, 10 + i));
    }
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing", String::new(), "cannot read"),
        ("empty.csv", String::new(), "empty"),
        ("noheader.csv", "0,1\n60,2\n".into(), "timestamp column"),
        (
            "ts.csv",
            ok_rows.replace("120,12", "soon,12"),
            "unparsable timestamp",
        ),
        (
            "steps.csv",
            ok_rows.replace("120,12", "150,12"),
            "equally spaced",
        ),
        (
            "negative.csv",
            ok_rows.replace("120,12", "120,-12"),
            "negative",
        ),
        (
            "short.csv",
            "timestamp,requests\n0,1\n60,2\n".into(),
            "at least 10",
        ),
    ];
    for (name, content, want) in cases {
        let path = dir.join(name);
        if name != "missing" {
            std::fs::write(&path, content).unwrap();
        }
        let out = prescale()
            .args([
                "simulate",
                "--input",
                path.to_str().unwrap(),
                "--target-per-replica",
                "5",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: should fail");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: an error exit, not a panic (101)"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: one line, got {stderr:?}"
        );
        assert!(stderr.contains(want), "{name}: {want:?} not in {stderr:?}");
    }
    let out = prescale()
        .args([
            "simulate",
            "--input",
            dir.join("steps.csv").to_str().unwrap(),
            "--quantile",
            "1.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reactive_at_prescale_cost_spends_the_same_budget() {
    use prescale::sim::{UTILISATION, reactive_at_cost, reactive_plan, score};
    let base = trace();
    let s = settings(base.step);
    let capacity = s.target_per_replica / UTILISATION;
    let baseline = score(
        &base.values,
        &reactive_plan(&base.values, &s),
        capacity,
        s.startup_steps,
        0,
    );
    // a budget 30% above the baseline's buys a lower target, more replicas, fewer violations
    let budget = baseline.replica_steps * 13 / 10;
    let (factor, sc) = reactive_at_cost(&base.values, &s, budget, 0).expect("costs more");
    assert!(factor < 1.0 && factor > 0.5, "factor {factor}");
    assert!(
        sc.replica_steps >= budget,
        "{} < {budget}",
        sc.replica_steps
    );
    assert!(
        sc.replica_steps <= budget + budget / 20,
        "the budget is met closely: {} vs {budget}",
        sc.replica_steps
    );
    assert!(sc.violation_steps <= baseline.violation_steps);
    // the baseline's own budget is the baseline
    let (factor, sc) = reactive_at_cost(&base.values, &s, baseline.replica_steps, 0).unwrap();
    assert_eq!((factor, sc), (1.0, baseline));
    // a plan cheaper than the baseline is compared with a reactive one with less headroom
    let budget = baseline.replica_steps * 8 / 10;
    let (factor, sc) = reactive_at_cost(&base.values, &s, budget, 0).expect("in range");
    assert!(factor > 1.0 && factor < 2.0, "factor {factor}");
    assert!(sc.replica_steps >= budget && sc.replica_steps <= budget + budget / 20);
    assert!(sc.violation_steps >= baseline.violation_steps);
    // a budget no reactive target in the searched range reaches has no comparison
    assert_eq!(
        reactive_at_cost(&base.values, &s, baseline.replica_steps * 100, 0),
        None
    );
}

#[test]
fn frontier_trades_replicas_for_violations_at_each_quantile() {
    use prescale::sim::frontier::{FAMILY_FACTORS, frontier};
    let base = trace();
    let s = settings(base.step);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let f = frontier(&base, &s, &[0.5, 0.97], &|| {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        calls.into_inner(),
        prescale::sim::frontier::work_units(&base, &s, &[0.5, 0.97]),
        "the progress bar reaches its end"
    );
    assert_eq!(
        f.points.len(),
        3,
        "the settings as given, then each quantile"
    );
    assert_eq!(f.points[0].label(), "default");
    let (low, high) = (&f.points[1], &f.points[2]);
    assert_eq!((low.quantile, high.quantile), (Some(0.5), Some(0.97)));
    // a higher quantile buys more replicas and no more violations
    assert!(
        high.report.prescale.replica_steps > low.report.prescale.replica_steps,
        "{:?} vs {:?}",
        high.report.prescale,
        low.report.prescale
    );
    assert!(high.report.prescale.violation_steps <= low.report.prescale.violation_steps);
    // each point is compared with the reactive baseline spending its budget
    for p in &f.points {
        let (_, same) = p.report.reactive_at_cost.expect("in range");
        assert!(same.replica_steps >= p.report.prescale.replica_steps);
        assert_eq!(f.reactive, p.report.reactive);
    }
    // the reactive family: more headroom, more replicas
    assert_eq!(f.family.len(), FAMILY_FACTORS.len());
    assert!(
        f.family
            .windows(2)
            .all(|w| w[0].1.replica_steps >= w[1].1.replica_steps)
    );
}

/// A trace with request durations: `trace()`'s arrivals (per 5-minute row), each request lasting
/// 600 s in the first half of every day and 1200 s in the second, and the true concurrency by
/// Little's law (arrivals per second x duration).
fn durations_csv() -> (String, f64) {
    let t = trace();
    let mut csv = String::from("timestamp,requests,exec_seconds,concurrency\n");
    let mut peak: f64 = 0.0;
    for (i, r) in t.values.iter().enumerate() {
        let d = if i % 288 < 144 { 600.0 } else { 1200.0 };
        let c = r / t.step as f64 * d;
        peak = peak.max(c);
        csv.push_str(&format!("{},{r},{},{c}\n", t.time_of(i), r * d));
    }
    (csv, peak)
}

#[test]
fn cli_duration_column_sizes_on_concurrency_and_scores_against_it() {
    let (csv, peak) = durations_csv();
    let (dir, input) = trace_file("prescale-conc", "busy.csv", &csv);
    let plan = dir.join("plan.csv");
    let target = format!("{}", (peak / 20.0).ceil());
    let out = prescale()
        .args(["simulate", "--input", input.to_str().unwrap()])
        .args(["--duration-column", "exec_seconds", "--target-per-replica"])
        .args([target.as_str(), "--refresh", "30m", "--output"])
        .arg(plan.to_str().unwrap())
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("concurrency sizing: requests x mean duration (exec_seconds, 5-step mean")
            && stdout.contains("scored against concurrency"),
        "{stdout}"
    );
    // the plan CSV shows the load it is scored against: the true concurrency
    let concurrency: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().to_string())
        .collect();
    let values: Vec<String> = std::fs::read_to_string(&plan)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(values.len(), concurrency.len());
    for (v, c) in values.iter().zip(&concurrency) {
        let (v, c): (f64, f64) = (v.parse().unwrap(), c.parse().unwrap());
        assert!((v - c).abs() < 1e-6 * c.max(1.0), "{v} vs {c}");
    }
    // the comparison with rate sizing, on the same scored concurrency
    let out = prescale()
        .args(["simulate", "--input", input.to_str().unwrap()])
        .args(["--duration-column", "exec_seconds", "--target-per-replica"])
        .args([target.as_str(), "--refresh", "1h", "--model", "ets"])
        .arg("--compare-rate")
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    for want in [
        "concurrency (Little's law)",
        "rate, mean-duration target",
        "rate, nearest the same budget",
        "reactive on concurrency",
        // 600 s or 1200 s per request: their mean, weighted by the requests, in between
        "mean duration 9",
        " s over the whole trace",
        "at concurrency sizing's budget",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_duration_column_bad_input_is_one_line() {
    let (dir, input) = trace_file("prescale-conc-bad", "busy.csv", &durations_csv().0);
    let input = input.to_str().unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/concurrency.yaml");
    for (args, want) in [
        (
            vec!["--input", input, "--spec", spec],
            "metric streams sizes on concurrency (its targetPerReplica is in concurrent requests)",
        ),
        (
            vec!["--duration-column", "exec_seconds"],
            "--duration-column reads a trace file: give --input",
        ),
        (
            vec!["--input", input, "--duration-column", "busy_seconds"],
            "no column \"busy_seconds\"",
        ),
        (
            vec![
                "--input",
                input,
                "--duration-column",
                "exec_seconds",
                "--score-column",
                "inflight",
            ],
            "no column \"inflight\"",
        ),
        (
            vec![
                "--input",
                input,
                "--duration-column",
                "exec_seconds",
                "--duration-window",
                "10s",
            ],
            "--duration-window must be at least one step",
        ),
    ] {
        let out = prescale()
            .arg("simulate")
            .args(&args)
            .args(["--target-per-replica", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?}: {want:?} not in {stderr:?}"
        );
    }
    // --score-column and --compare-rate need --duration-column (a usage error)
    let out = prescale()
        .args(["simulate", "--input", input, "--compare-rate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_upstream_ceiling_caps_the_plan_and_reports_what_it_saved() {
    let series = trace();
    let peak = series.values.iter().copied().fold(0.0, f64::max);
    // a quota at 60% of the peak, per step of the trace: ceil(0.6 * peak / 40) replicas
    let limit = (0.6 * peak).round();
    let cap = (limit / 40.0).ceil() as u32;
    let mut s = settings(series.step);
    s.policy.upstream = vec![prescale::planner::Quota {
        metric: prescale::sim::SIM_METRIC.into(),
        per_minute: Some(limit),
        unit: prescale::planner::MetricUnit::PerMinute,
        queried: false,
    }];
    let capped = simulate(&series, &s);
    let free = simulate(&series, &settings(series.step));
    assert!(capped.rows.iter().all(|r| r.desired <= cap), "above {cap}");
    assert!(
        free.rows.iter().any(|r| r.desired > cap),
        "the test could fail"
    );
    let u = capped.upstream.expect("an upstream effect with a limit");
    assert!(free.upstream.is_none());
    assert_eq!(u.limit, limit);
    // the replay without the ceiling is the plain run, on the same fits
    assert_eq!(u.uncapped, free.prescale);
    assert!(u.limited_steps > 0);
    assert!(capped.prescale.replica_steps < u.uncapped.replica_steps);
    // above the quota the load is refused anyway: against what it admits, the ceiling costs
    // (almost) nothing, while against all the load it costs violations
    assert!(u.over_quota_steps > 0);
    assert!(capped.prescale.violation_steps >= u.uncapped.violation_steps);
    assert!(u.admitted.violation_steps <= capped.prescale.violation_steps);
    assert!(
        capped.rows.iter().any(|r| r.reason == "UpstreamLimited"),
        "the plan CSV names the ceiling"
    );
}

#[test]
fn cli_upstream_limit_from_the_spec_or_the_flag_prints_the_trade() {
    let series = trace();
    let (dir, input) = trace_file(
        "prescale-sim-upstream",
        "trace.csv",
        &prescale::sim::synthetic::write_csv(&series, "requests"),
    );
    // the trace counts per step (5 minutes): a per-minute metric, quota 2000 a minute
    let spec = dir.join("spec.yaml");
    std::fs::write(
        &spec,
        "apiVersion: prescale.dev/v1alpha1\nkind: PredictiveScaler\nmetadata: {name: sim}\n\
         spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: sim}\n  \
         maxReplicas: 200\n  metrics: [{name: requests, query: q, targetPerReplica: \"40\"}]\n  \
         forecast: {refreshInterval: 30m}\n  \
         upstream: {limits: [{metric: requests, perMinute: \"2000\", metricUnit: PerMinute}]}\n",
    )
    .unwrap();
    let csv = dir.join("plan.csv");
    let run = |extra: &[&str]| {
        let out = prescale()
            .args(["simulate", "--input", input.to_str().unwrap()])
            .args(["--spec", spec.to_str().unwrap()])
            .args(["--output", csv.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stdout = succeeded(&out);
        let plan = std::fs::read_to_string(&csv).unwrap();
        let max = plan
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(4).unwrap().parse::<u32>().unwrap())
            .max()
            .unwrap();
        (stdout, max)
    };
    let (stdout, max) = run(&[]);
    assert!(
        stdout.contains("upstream ceiling: limit 2000 per step admits 50 replicas"),
        "{stdout}"
    );
    assert!(stdout.contains("replica-steps saved: "), "{stdout}");
    assert!(stdout.contains("load above the quota in "), "{stdout}");
    assert!(max <= 50, "{max}");
    // the flag wins, in the trace's unit or as a percentile of its load
    let (stdout, max) = run(&["--upstream-limit", "1200"]);
    assert!(
        stdout.contains("limit 1200 per step admits 30 replicas"),
        "{stdout}"
    );
    assert!(max <= 30, "{max}");
    let (stdout, _) = run(&["--upstream-limit", "p90"]);
    assert!(stdout.contains("upstream ceiling: limit "), "{stdout}");
    for bad in ["p0", "p101", "lots", "-5", "0"] {
        let out = prescale()
            .args(["simulate", "--input", input.to_str().unwrap()])
            .arg(format!("--upstream-limit={bad}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {stderr}");
        assert!(stderr.contains("--upstream-limit"), "{bad}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// An hour-old history has no forecast yet (too short for a model that is not constant):
/// with the default budget the reactive fallback carries the budget's headroom, so a rise of
/// 40% in one step (~100 -> 140 at 10 per
/// replica, capacity 12.5) finds 12 replicas ready where the HPA's 10 serve 125; with a
/// fixed quantile there is no budget and no headroom.
#[test]
fn cli_without_a_forecast_the_default_budget_is_a_headroom_on_the_observed_load() {
    let rows: String = (0..60)
        .map(|i| format!("{},{}\n", i * 60, if i < 35 { 99 + i % 3 } else { 140 }))
        .collect();
    let (dir, input) = trace_file(
        "prescale-sim-fallback",
        "hour.csv",
        &format!("timestamp,requests\n{rows}"),
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--input",
            input.to_str().unwrap(),
            "--target-per-replica",
            "10",
            "--startup",
            "5m",
            "--lead-time",
            "5m",
            "--warmup",
            "10m",
            "--threads",
            "1",
        ];
        args.extend_from_slice(extra);
        succeeded(&prescale().args(&args).output().unwrap())
    };
    let violations = |stdout: &str, plan: &str| -> usize {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{plan}  ")))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {plan} line:\n{stdout}"))
    };
    let budget = run(&[]);
    assert_eq!(violations(&budget, "prescale"), 0, "{budget}");
    assert!(violations(&budget, "reactive") >= 5, "{budget}");
    assert!(
        budget.contains("prescale / reactive: violations 0.00x"),
        "{budget}"
    );
    assert_verdict(&budget);
    let fixed = run(&["--quantile", "0.9"]);
    assert_eq!(
        violations(&fixed, "prescale"),
        violations(&fixed, "reactive"),
        "{fixed}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `--target-per-replica` takes a Kubernetes quantity as a spec's `targetPerReplica` does (and
/// as `prescale forecast` does), and a target derived from the trace says so.
#[test]
fn cli_target_per_replica_is_a_quantity_and_a_derived_one_is_named() {
    let rows: String = (0..60)
        .map(|i| format!("{},{}\n", i * 60, 1000 + i % 7))
        .collect();
    let (dir, input) = trace_file(
        "prescale-sim-quantity",
        "hour.csv",
        &format!("timestamp,requests\n{rows}"),
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--input",
            input.to_str().unwrap(),
            "--threads",
            "1",
        ];
        args.extend_from_slice(extra);
        prescale().args(&args).output().unwrap()
    };
    let given = succeeded(&run(&["--target-per-replica", "0.1k"]));
    assert!(
        given.contains("targetPerReplica 100.000 (capacity"),
        "{given}"
    );
    let derived = succeeded(&run(&[]));
    assert!(
        derived.contains("(the trace's peak / 25: set yours with --target-per-replica)"),
        "{derived}"
    );
    let bad = run(&["--target-per-replica", "1.5x"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--target-per-replica: invalid quantity"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
