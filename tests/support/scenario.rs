//! What the end-to-end scaler tests share: where scalers and Deployments live on the API
//! server, the fixture's flat load in a real Prometheus, creating a scaler, the operator started
//! as the chart's ServiceAccount for one namespace, and waiting on an object while it runs.

use std::time::Duration;

use serde_json::Value;

use super::cluster::KubeCluster;
use super::{
    Controller, Prometheus, find_condition, free_port, http_request, openmetrics_gauge, unix_now,
    wait_until,
};

/// What the fixture's scaler (`PredictiveScaler::test`: `proxy_rps` at 10 per replica) wants on
/// [`flat_load`]: 100 / 10 replicas.
pub const FLAT_LOAD_REPLICAS: i64 = 10;

/// A real Prometheus holding `proxy_rps` at 100 every minute of the last day.
pub fn flat_load() -> Prometheus {
    steady_load(100.0)
}

/// A real Prometheus holding `proxy_rps` at `rps` every minute of the last day (the fixture's
/// scaler wants `rps / 10` replicas).
pub fn steady_load(rps: f64) -> Prometheus {
    let now = unix_now();
    Prometheus::start_with_history(&openmetrics_gauge(
        "proxy_rps",
        &[],
        now - 86_400,
        now - 60,
        60,
        |_| rps,
    ))
}

/// A daily peak: `base` between peaks, `base + amplitude` at `peak` and at the same time of every
/// other day, a Gaussian of width `sigma` seconds cut to `base` beyond 3 sigma.
pub fn daily_peak(t: i64, peak: i64, base: f64, amplitude: f64, sigma: f64) -> f64 {
    const DAY: i64 = 86_400;
    let mut dt = (t - peak).rem_euclid(DAY);
    if dt > DAY / 2 {
        dt -= DAY;
    }
    let dt = dt as f64;
    if dt.abs() > 3.0 * sigma {
        base
    } else {
        base + amplitude * (-dt * dt / (2.0 * sigma * sigma)).exp()
    }
}

/// The collection of PredictiveScalers in `ns`.
pub fn scalers_path(ns: &str) -> String {
    format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers")
}

/// The PredictiveScaler `ns/name`.
pub fn scaler_path(ns: &str, name: &str) -> String {
    format!("{}/{name}", scalers_path(ns))
}

/// The collection of Deployments in `ns`.
pub fn deployments_path(ns: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/deployments")
}

/// Creates `scaler` (e.g. `PredictiveScaler::test(ns, name).json()`) in its own namespace.
pub fn create_scaler(kube: &KubeCluster, scaler: Value) -> Value {
    let ns = scaler["metadata"]["namespace"]
        .as_str()
        .expect("the scaler has a namespace")
        .to_string();
    kube.create(&scalers_path(&ns), scaler)
}

/// `prescale run` for namespace `ns` as the chart's ServiceAccount (the chart rendered with
/// `values`, YAML, where a feature needs more RBAC), reading `prom_url` and evaluating every
/// `sync_interval`. Returns the operator and the address of its probes and `/metrics`.
pub fn start_operator(
    kube: &KubeCluster,
    ns: &str,
    prom_url: &str,
    values: Option<&str>,
    sync_interval: &str,
) -> (Controller, String) {
    let kubeconfig = match values {
        None => kube.operator_kubeconfig(ns, None),
        Some(yaml) => {
            let file =
                std::env::temp_dir().join(format!("prescale-values-{ns}-{}.yaml", free_port()));
            std::fs::write(&file, yaml).expect("write the chart values");
            kube.operator_kubeconfig_for(ns, &[ns], None, Some(&file))
        }
    };
    let http = format!("127.0.0.1:{}", free_port());
    let args = [
        "run",
        "--prometheus-url",
        prom_url,
        "--http-addr",
        &http,
        "--sync-interval",
        sync_interval,
        "--namespaces",
        ns,
    ];
    let op = Controller::start(&args, &[("KUBECONFIG", &kubeconfig)]);
    (op, http)
}

/// The sources file the chart gives the operator (its ConfigMap's `sources.yaml`), rendered by
/// `helm template` with `values` (`--set` pairs, e.g. `prometheus.url=...`).
pub fn chart_sources_file(kube: &KubeCluster, values: &[&str]) -> String {
    let chart = super::repo_root().join("charts/prescale");
    let chart = chart.display().to_string();
    let mut args = vec![
        "template",
        "prescale",
        chart.as_str(),
        "--show-only",
        "templates/configmap.yaml",
    ];
    for v in values {
        args.extend(["--set", v]);
    }
    let out = kube.helm(&args);
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm: Value = serde_yaml::from_slice(&out.stdout).expect("the sources ConfigMap as YAML");
    cm["data"]["sources.yaml"]
        .as_str()
        .expect("data.sources.yaml")
        .to_string()
}

/// The operator's `/metrics` page at `http` (from [`start_operator`]).
pub fn scrape(http: &str) -> String {
    http_request("GET", &format!("http://{http}/metrics"), None, None)
        .expect("GET /metrics")
        .body
}

/// Waits up to `timeout` for `f` on the object at `path` (the operator must stay up); panics
/// with the object's status and the operator's log otherwise.
pub fn wait_for(
    op: &mut Controller,
    kube: &KubeCluster,
    path: &str,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&Value) -> bool,
) -> Value {
    wait_until(timeout, Duration::from_millis(200), || {
        op.assert_running();
        kube.try_get(path).filter(|s| f(s))
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not within {timeout:?}\nobject status: {}\n{}",
            kube.try_get(path)
                .map(|s| s["status"].clone())
                .unwrap_or_default(),
            op.log_tail(40)
        )
    })
}

/// The `reason` and `message` of the scaler's condition `kind` ("" for what it lacks).
pub fn condition(scaler: &Value, kind: &str) -> (String, String) {
    let c = find_condition(scaler, kind).cloned().unwrap_or_default();
    let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (field("reason"), field("message"))
}

/// `prescale forecast --source-url PROM_URL ARGS` (the build under test, or
/// `PRESCALE_TEST_BIN`), which must succeed: its stdout.
pub fn prescale_forecast(prom_url: &str, args: &[&str]) -> String {
    let bin = std::env::var_os("PRESCALE_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_prescale").into());
    let out = std::process::Command::new(bin)
        .args(["forecast", "--source-url", prom_url])
        .args(args)
        .env_remove("PRESCALE_PROMETHEUS_URL")
        .env_remove("PRESCALE_SOURCES_FILE")
        .output()
        .expect("run prescale forecast");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "prescale forecast {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
