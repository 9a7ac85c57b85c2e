//! End to end on a real cluster (kind in hosted CI, `.github/workflows/e2e-kind.yml`): the chart's
//! operator, a real Prometheus, a demo proxy and a load generator whose rate follows a day
//! compressed into 11 minutes (`tests/e2e/`). The test applies the PredictiveScaler, waits with
//! `kubectl wait --for=condition=Ready` until prescale has a seasonal forecast (two cycles of
//! history, ~22 minutes), then watches the proxy's replicas through the next cycle and checks
//! that they reached the peak's count **before** the peak, while the load Prometheus saw was
//! still too low for a reactive autoscaler to ask for them.
//!
//! Runs when `KUBECONFIG` is set, against a cluster where `tests/e2e/install.sh` installed the
//! chart; otherwise it says SKIPPED and passes. `KUBECTL` names the kubectl binary (default
//! `kubectl`). The offline tests below run everywhere: the manifests agree with the schedule
//! here, and `prescale simulate` with the e2e's scaler on that schedule rises before each ramp.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

// The load generator's schedule (tests/e2e/demo.yaml), in seconds into each cycle.
const PERIOD_S: i64 = 660;
const BASE_RPS: f64 = 2.0;
const PEAK_RPS: f64 = 24.0;
const RAMP_START_S: i64 = 360;
const PEAK_START_S: i64 = 390;
const PEAK_END_S: i64 = 480;
const FALL_END_S: i64 = 510;
// The scaler (tests/e2e/predictivescaler.yaml).
const TARGET_PER_REPLICA: f64 = 4.0;
const STEP_S: i64 = 10;
const NAMESPACE: &str = "prescale-e2e";
const SCALER: &str = "demo-proxy";
const QUERY: &str = r#"sum(rate(proxy_requests_total{job="demo-proxy"}[1m]))"#;

/// The replicas the peak needs, with 10% slack for the band's noise: ceil(0.9 * 24 / 4) = 6.
fn peak_replicas() -> u32 {
    (0.9 * PEAK_RPS / TARGET_PER_REPLICA).ceil() as u32
}

/// The generated load at unix second `t`, as loadgen.py computes it.
fn rate(t: f64) -> f64 {
    let p = t.rem_euclid(PERIOD_S as f64);
    let (r0, r1, d0, d1) = (
        RAMP_START_S as f64,
        PEAK_START_S as f64,
        PEAK_END_S as f64,
        FALL_END_S as f64,
    );
    if p < r0 || p >= d1 {
        BASE_RPS
    } else if p < r1 {
        BASE_RPS + (PEAK_RPS - BASE_RPS) * (p - r0) / (r1 - r0)
    } else if p < d0 {
        PEAK_RPS
    } else {
        PEAK_RPS - (PEAK_RPS - BASE_RPS) * (p - d0) / (d1 - d0)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn the_manifests_follow_this_schedule() {
    let docs = yaml_docs("tests/e2e/demo.yaml");
    let loadgen = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "loadgen")
        .expect("a loadgen Deployment");
    let env = loadgen["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let get = |name: &str| -> f64 {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("loadgen has no env {name}"))
            .parse()
            .unwrap()
    };
    assert_eq!(get("PERIOD_S"), PERIOD_S as f64);
    assert_eq!(get("BASE_RPS"), BASE_RPS);
    assert_eq!(get("PEAK_RPS"), PEAK_RPS);
    assert_eq!(get("RAMP_START_S"), RAMP_START_S as f64);
    assert_eq!(get("PEAK_START_S"), PEAK_START_S as f64);
    assert_eq!(get("PEAK_END_S"), PEAK_END_S as f64);
    assert_eq!(get("FALL_END_S"), FALL_END_S as f64);

    let ps = &yaml_docs("tests/e2e/predictivescaler.yaml")[0];
    let spec = &ps["spec"];
    assert_eq!(ps["metadata"]["name"], SCALER);
    assert_eq!(ps["metadata"]["namespace"], NAMESPACE);
    assert_eq!(spec["metrics"][0]["query"], QUERY);
    assert_eq!(spec["metrics"][0]["targetPerReplica"], "4");
    assert_eq!(spec["history"]["step"], "10s");
    assert_eq!(spec["forecast"]["seasonalPeriods"][0], "11m");
    assert_eq!(11 * 60, PERIOD_S);
    assert!(
        (spec["maxReplicas"].as_u64().unwrap() as u32) > peak_replicas(),
        "maxReplicas must leave room above the peak's count"
    );
}

/// The series Prometheus would return for `QUERY`: the mean over the last minute (what
/// `rate(...[1m])` gives), with a little deterministic noise.
fn e2e_trace(start: i64, rows: usize) -> String {
    let mut csv = String::from("timestamp,value\n");
    let mut seed: u64 = 42;
    for i in 0..rows {
        let t = start + i as i64 * STEP_S;
        let mean = (0..60).map(|s| rate((t - s) as f64)).sum::<f64>() / 60.0;
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.06; // +-3%
        csv.push_str(&format!("{t},{:.4}\n", mean * (1.0 + noise)));
    }
    csv
}

#[test]
fn offline_the_e2e_scaler_rises_before_each_ramp() {
    // five cycles at 10 s, starting 30 s into a cycle as a real Prometheus would
    let start = 1_700_000_000 / PERIOD_S * PERIOD_S + 30;
    let rows = (5 * PERIOD_S / STEP_S) as usize;
    let dir = std::env::temp_dir().join(format!("prescale-e2e-offline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("trace.csv"), dir.join("plan.csv"));
    std::fs::write(&input, e2e_trace(start, rows)).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .arg("simulate")
        .arg("--input")
        .arg(&input)
        .arg("--spec")
        .arg(root().join("tests/e2e/predictivescaler.yaml"))
        .args(["--startup", "2m", "--threads", "1", "--output"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "prescale simulate failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let plan = std::fs::read_to_string(&output).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let desired: Vec<(i64, u32)> = plan
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    let need = peak_replicas();
    let first_cycle = start.div_euclid(PERIOD_S) + 1;
    // cycles that start after two full cycles of history: the forecast is seasonal there
    let mut checked = 0;
    for cycle in (first_cycle + 2)..(first_cycle + 5) {
        let c = cycle * PERIOD_S;
        let ramp = c + RAMP_START_S;
        if ramp > desired.last().unwrap().0 {
            break;
        }
        let low_before = desired
            .iter()
            .any(|&(t, d)| t >= c && t < ramp - 120 && d < need);
        let rise = desired
            .iter()
            .find(|&&(t, d)| t >= c && t < ramp && d >= need);
        let rise = rise.unwrap_or_else(|| {
            panic!("cycle at {c}: replicas never reached {need} before the ramp at {ramp}:\n{plan}")
        });
        println!(
            "cycle at {c}: {} replicas {} s before the ramp (the load was still at its base)",
            rise.1,
            ramp - rise.0
        );
        assert!(
            low_before,
            "cycle at {c}: replicas were never low before the rise"
        );
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} cycles checked");
}

// === on a real cluster ===

fn kubectl_bin() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

fn kubectl(args: &[&str]) -> Result<String, String> {
    let out = Command::new(kubectl_bin())
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("running {} {args:?}: {e}", kubectl_bin()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn must(args: &[&str]) -> String {
    kubectl(args).unwrap_or_else(|e| {
        diagnostics();
        panic!("{e}")
    })
}

/// What to look at when the test fails.
fn diagnostics() {
    println!("\n===== diagnostics =====");
    for args in [
        &["get", "pods", "-A", "-o", "wide"][..],
        &["-n", NAMESPACE, "describe", "psc", SCALER],
        &["-n", NAMESPACE, "get", "events", "--sort-by=.lastTimestamp"],
        &[
            "-n",
            "prescale-system",
            "logs",
            "deploy/prescale",
            "--tail=300",
        ],
        &[
            "-n",
            "prescale-system",
            "get",
            "networkpolicy",
            "-o",
            "yaml",
        ],
    ] {
        println!("--- kubectl {}", args.join(" "));
        match kubectl(args) {
            Ok(s) => println!("{s}"),
            Err(e) => println!("{e}"),
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The load Prometheus saw at unix second `t`, through the API server's service proxy.
fn observed_load(t: f64) -> Result<f64, String> {
    let path = format!(
        "/api/v1/namespaces/monitoring/services/prometheus:9090/proxy/api/v1/query?query={}&time={t:.3}",
        percent_encode(QUERY)
    );
    let body = kubectl(&["get", "--raw", &path])?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no value in {body}"))
}

/// Streams the target's `spec.replicas` as (unix second, replicas) from a `kubectl get -w`.
fn watch_replicas() -> (mpsc::Receiver<(f64, u32)>, std::process::Child) {
    let mut child = Command::new(kubectl_bin())
        .args([
            "-n",
            NAMESPACE,
            "get",
            "deployment",
            SCALER,
            "--watch",
            "-o=jsonpath={.spec.replicas}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting kubectl get --watch");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(n) = line.trim().parse::<u32>()
                && tx.send((unix_now(), n)).is_err()
            {
                break;
            }
        }
    });
    (rx, child)
}

#[test]
fn on_a_cluster_replicas_rise_before_the_generated_peak() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!(
            "SKIPPED: set KUBECONFIG to run against a cluster (install the chart with \
             tests/e2e/install.sh first; .github/workflows/e2e-kind.yml does it on kind)"
        );
        return;
    }
    let started = unix_now();
    if let Err(e) = kubectl(&["get", "crd", "predictivescalers.prescale.dev"]) {
        panic!("the PredictiveScaler CRD is not installed; run tests/e2e/install.sh first: {e}");
    }
    // idempotent: the workflow applies these early so history builds up while it builds
    must(&[
        "apply",
        "-f",
        "tests/e2e/prometheus.yaml",
        "-f",
        "tests/e2e/demo.yaml",
    ]);
    for (ns, deploy) in [
        ("monitoring", "prometheus"),
        (NAMESPACE, "loadgen"),
        (NAMESPACE, "demo-proxy"),
        ("prescale-system", "prescale"),
    ] {
        must(&[
            "-n",
            ns,
            "rollout",
            "status",
            &format!("deploy/{deploy}"),
            "--timeout=5m",
        ]);
    }
    must(&["apply", "-f", "tests/e2e/predictivescaler.yaml"]);
    println!(
        "waiting for psc/{SCALER} Ready: a seasonal forecast needs two {PERIOD_S} s cycles of \
         history (up to ~25 min after the load started)"
    );
    if let Err(e) = kubectl(&[
        "-n",
        NAMESPACE,
        "wait",
        "--for=condition=Ready",
        &format!("psc/{SCALER}"),
        "--timeout=40m",
    ]) {
        diagnostics();
        panic!("psc/{SCALER} never became Ready: {e}");
    }
    let ready_at = unix_now();
    println!(
        "Ready after {:.0} s: {}",
        ready_at - started,
        must(&["-n", NAMESPACE, "get", "psc", SCALER, "-o", "wide"])
    );

    // the first cycle whose rise is still ahead: prescale rises about leadTime before the
    // ramp, so start watching at least 3 minutes before the ramp
    let mut cycle = (ready_at as i64).div_euclid(PERIOD_S) * PERIOD_S;
    while (cycle + RAMP_START_S - 180) as f64 <= ready_at {
        cycle += PERIOD_S;
    }
    let ramp = (cycle + RAMP_START_S) as f64;
    let peak = (cycle + PEAK_START_S) as f64;
    let need = peak_replicas();
    println!(
        "watching replicas until the peak of the cycle starting at {cycle}: ramp in {:.0} s, \
         peak in {:.0} s; the peak needs {need} replicas",
        ramp - unix_now(),
        peak - unix_now()
    );
    let mut seen: Vec<(f64, u32)> = Vec::new();
    let deadline = peak + 30.0;
    let mut failed_watches = 0;
    'watch: while unix_now() < deadline {
        let (rx, mut child) = watch_replicas();
        let mut lines = 0;
        loop {
            let left = deadline - unix_now();
            let next = if left > 0.0 {
                rx.recv_timeout(Duration::from_secs_f64(left))
            } else {
                Err(mpsc::RecvTimeoutError::Timeout)
            };
            match next {
                Ok(obs) => {
                    println!(
                        "  {:+7.1} s from the ramp: {} replicas",
                        obs.0 - ramp,
                        obs.1
                    );
                    seen.push(obs);
                    lines += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    child.kill().ok();
                    child.wait().ok();
                    break 'watch;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // the API server ended the watch: watch again (it starts with the current
                    // value); a watch that cannot even start is an error
                    child.wait().ok();
                    failed_watches = if lines == 0 { failed_watches + 1 } else { 0 };
                    if failed_watches >= 3 {
                        diagnostics();
                        panic!("kubectl get --watch keeps failing");
                    }
                    break;
                }
            }
        }
    }
    println!(
        "{}",
        kubectl(&["-n", NAMESPACE, "get", "psc", SCALER, "-o", "yaml"]).unwrap_or_default()
    );

    let rise = seen.iter().find(|&&(t, n)| t < peak && n >= need).copied();
    let Some((t_rise, n_rise)) = rise else {
        diagnostics();
        panic!("replicas never reached {need} before the peak at {peak}: {seen:?}");
    };
    let low_before = seen.iter().any(|&(t, n)| t < t_rise && n < need);
    if !low_before {
        diagnostics();
        panic!(
            "replicas were already at {need} or more when the watch began: the rise was not \
             observed ({seen:?})"
        );
    }
    let load = observed_load(t_rise).unwrap_or_else(|e| {
        diagnostics();
        panic!("asking Prometheus for the load at the rise: {e}")
    });
    let reactive = (load / TARGET_PER_REPLICA).ceil() as u32;
    println!(
        "rose to {n_rise} replicas {:.0} s before the ramp ({:.0} s before the peak), when \
         Prometheus saw {load:.2} requests/s (a reactive autoscaler would ask for {reactive})",
        ramp - t_rise,
        peak - t_rise
    );
    assert!(
        reactive < need,
        "at the rise the observed load ({load:.2}/s) already asked for {reactive} replicas: \
         that is reactive scaling, not a forecast"
    );
}
