//! Safe on a shared cluster, with real processes: a real Prometheus holding 6,000+ series, the real
//! control plane (tests/support/cluster.rs) and the `prescale run` binary as the chart's ServiceAccount.
//!
//! - A catch-all query is refused as `QueryTooLarge` (reading stops at what one series can need) while
//!   the operator's peak RSS stays small; a query over a few series is refused with their count only,
//!   never their labels.
//! - Sources per namespace: a `team-b` scaler cannot use a source allowed only to `team-a` (by name or
//!   by namespace label), and under `enforceNamespaceLabel` a `team-a` query reads only `team-a`'s
//!   series, while one naming `namespace="team-b"` is refused.
//! - 100 well-behaved scalers beside a deliberately slow one: their reconcile latency, p50/p99, with
//!   and without it (reported, not asserted: figures, not timings, are what tests give here).
//!
//! The oversized-spec refusals (the 365-day horizon at 1 s) are in `cel_rules.rs` (the API server)
//! and the controller's unit tests (refused before anything is fetched).

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prescale::api::PredictiveScaler;
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::{Controller, Prometheus, find_condition, report, unix_now, wait_until};

/// Series of the `load` family: each a scaler's own load, and together what a catch-all query hits.
const SERIES: usize = 6_000;
/// A label value no message, status, event or log line may ever show.
const SECRET: &str = "s3cr3t";
/// `proxy_rps` of each tenant (req/s).
const TEAM_A_RPS: f64 = 40.0;
const TEAM_B_RPS: f64 = 400.0;

/// One Prometheus for the tests of this binary: `load{id, secret_label}` (6,000 series, 12 h at 5 min,
/// value 10) and `proxy_rps{namespace}` for two tenants (1 day at 1 min).
fn prometheus() -> Arc<Prometheus> {
    static PROM: Mutex<Weak<Prometheus>> = Mutex::new(Weak::new());
    let mut slot = PROM.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.upgrade() {
        return p;
    }
    let end = (unix_now() - 120) / 60 * 60;
    let mut om = String::with_capacity(70 * SERIES * 145);
    om.push_str("# TYPE load gauge\n");
    for id in 0..SERIES {
        for t in (end - 12 * 3600..=end).step_by(300) {
            let _ = writeln!(
                om,
                "load{{id=\"{id}\",secret_label=\"{SECRET}-{id}\"}} 10 {t}"
            );
        }
    }
    om.push_str("# TYPE proxy_rps gauge\n");
    for (ns, v) in [("team-a", TEAM_A_RPS), ("team-b", TEAM_B_RPS)] {
        for t in (end - 86_400..=end).step_by(60) {
            let _ = writeln!(om, "proxy_rps{{namespace=\"{ns}\"}} {v} {t}");
        }
    }
    om.push_str("# EOF\n");
    let t = Instant::now();
    let prom = Arc::new(Prometheus::start_with_history(&om));
    report(&format!(
        "[security] Prometheus with {SERIES} load series ({} MB of OpenMetrics) backfilled and started in {:.1?}",
        om.len() / 1_000_000,
        t.elapsed()
    ));
    *slot = Arc::downgrade(&prom);
    prom
}

fn deployment(ns: &str, name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "p", "image": "example/proxy:1"}]}}}
    })
}

fn create_pair(kube: &KubeCluster, ns: &str, name: &str, source: &str, query: &str, tpr: &str) {
    kube.create(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        deployment(ns, name, 3),
    );
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
        PredictiveScaler::test(ns, name)
            .metric("requests", query, tpr)
            .source(source)
            .json(),
    );
}

fn get_scaler(kube: &KubeCluster, ns: &str, name: &str) -> Value {
    kube.get(&format!(
        "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers/{name}"
    ))
}

fn replicas(kube: &KubeCluster, ns: &str, name: &str) -> i64 {
    kube.get(&format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

/// Waits for `ForecastAvailable` of `ns/name` to be False with `reason`; its message.
fn wait_refused(
    kube: &KubeCluster,
    ctrl: &mut Controller,
    ns: &str,
    name: &str,
    reason: &str,
) -> String {
    wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        ctrl.assert_running();
        let s = get_scaler(kube, ns, name);
        find_condition(&s, "ForecastAvailable")
            .filter(|c| c["status"] == "False" && c["reason"] == reason)
            .and_then(|c| c["message"].as_str().map(str::to_string))
    })
    .unwrap_or_else(|| {
        panic!(
            "{ns}/{name}: no ForecastAvailable=False/{reason}: {}\n{}",
            get_scaler(kube, ns, name)["status"],
            ctrl.log_tail(30)
        )
    })
}

fn start_operator(kubeconfig: &Path, args: &[&str], rust_log: &str) -> Controller {
    let mut all = vec!["run", "--http-addr", "127.0.0.1:0", "--sync-interval", "2s"];
    all.extend_from_slice(args);
    Controller::start(
        &all,
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("RUST_LOG", rust_log.to_string()),
        ],
    )
}

#[test]
fn a_catch_all_query_is_refused_in_bounded_memory_and_never_shows_other_series() {
    let prom = prometheus();
    let kube = KubeCluster::shared();
    let ns = "sec-big";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    create_pair(kube, ns, "catch-all", "default", "load", "10");
    create_pair(kube, ns, "three", "default", r#"load{id=~"1|2|3"}"#, "10");
    let started = Instant::now();
    let mut ctrl = start_operator(
        &kubeconfig,
        &["--prometheus-url", &prom.url(), "--namespaces", ns],
        "info",
    );
    let too_large = wait_refused(kube, &mut ctrl, ns, "catch-all", "QueryTooLarge");
    let refused_in = started.elapsed();
    let many = wait_refused(kube, &mut ctrl, ns, "three", "QueryReturnedManySeries");
    assert!(many.contains("returned 3 series"), "{many}");
    assert!(too_large.contains("larger than"), "{too_large}");
    // a few more evaluations (backed off), then the peak memory
    std::thread::sleep(Duration::from_secs(8));
    ctrl.assert_running();
    let peak = ctrl.peak_rss_mib().expect("VmHWM of the operator");
    assert!(
        peak < 200.0,
        "the operator peaked at {peak:.1} MiB answering a catch-all query"
    );
    for name in ["catch-all", "three"] {
        assert_eq!(
            replicas(kube, ns, name),
            3,
            "{name}: no data is not zero load"
        );
    }
    // nothing of the other series leaks: not in status, events or the log
    let statuses = kube
        .get(&format!(
            "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"
        ))
        .to_string();
    let events = kube
        .get(&format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"))
        .to_string();
    for (what, text) in [
        ("status", statuses),
        ("events", events),
        ("log", ctrl.log()),
    ] {
        assert!(
            !text.contains(SECRET),
            "another series' label value in the {what}"
        );
    }
    report(&format!(
        "[security] a catch-all query over {SERIES} series: QueryTooLarge {refused_in:.2?} after start ({too_large}); \
         three series: {many}; operator peak RSS {peak:.1} MiB"
    ));
}

#[test]
fn sources_are_per_namespace_and_isolated_queries_read_only_their_namespace() {
    let prom = prometheus();
    let kube = KubeCluster::shared();
    kube.create_namespace("team-a");
    kube.create_namespace("team-b");
    kube.kubectl_ok(&[
        "label",
        "namespace",
        "team-a",
        "prescale.dev/metrics=allowed",
        "--overwrite",
    ]);
    let dir = support::TestDir::new("security-sources");
    let sources = dir.path().join("sources.yaml");
    std::fs::write(
        &sources,
        format!(
            r#"sources:
  - name: default
    url: {url}
    allowedNamespaces: ["*"]
    enforceNamespaceLabel: namespace
  - name: team-a-only
    url: {url}
    allowedNamespaces: [team-a]
  - name: labelled
    url: {url}
    allowedNamespaceSelector:
      matchLabels: {{prescale.dev/metrics: allowed}}
"#,
            url = prom.url()
        ),
    )
    .unwrap();
    // the chart's values with the same sources: the selector adds `get namespaces` to the Roles
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "sources:\n  - {name: team-a-only, url: \"http://p:9090\", allowedNamespaces: [team-a]}\n  - name: labelled\n    url: \"http://p:9090\"\n    allowedNamespaceSelector: {matchLabels: {prescale.dev/metrics: allowed}}\n",
    )
    .unwrap();
    let kubeconfig =
        kube.operator_kubeconfig_for("sec-tenants", &["team-a", "team-b"], None, Some(&values));
    // team-a reads its own series through the isolating source, whatever its query says
    create_pair(kube, "team-a", "iso", "default", "sum(proxy_rps)", "10");
    create_pair(
        kube,
        "team-a",
        "peek",
        "default",
        r#"sum(proxy_rps{namespace="team-b"})"#,
        "10",
    );
    create_pair(kube, "team-b", "iso", "default", "sum(proxy_rps)", "100");
    // a source only team-a may use, by name and by namespace label
    create_pair(
        kube,
        "team-a",
        "own",
        "team-a-only",
        r#"proxy_rps{namespace="team-a"}"#,
        "10",
    );
    create_pair(
        kube,
        "team-b",
        "steal",
        "team-a-only",
        r#"proxy_rps{namespace="team-a"}"#,
        "10",
    );
    create_pair(
        kube,
        "team-a",
        "sel",
        "labelled",
        r#"proxy_rps{namespace="team-a"}"#,
        "10",
    );
    create_pair(
        kube,
        "team-b",
        "sel",
        "labelled",
        r#"proxy_rps{namespace="team-a"}"#,
        "10",
    );
    let mut ctrl = start_operator(
        &kubeconfig,
        &[
            "--sources-file",
            &sources.display().to_string(),
            "--namespaces",
            "team-a,team-b",
        ],
        "info",
    );
    // 40 req/s of team-a at 10 per replica: 4 (without isolation: 440 req/s, 44 replicas)
    let want_a = (TEAM_A_RPS / 10.0).ceil() as i64;
    let want_b = (TEAM_B_RPS / 100.0).ceil() as i64;
    for (ns, name, want) in [
        ("team-a", "iso", want_a),
        ("team-b", "iso", want_b),
        ("team-a", "own", want_a),
        ("team-a", "sel", want_a),
    ] {
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            ctrl.assert_running();
            (replicas(kube, ns, name) == want).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{ns}/{name} not at {want}: {} replicas, {}\n{}",
                replicas(kube, ns, name),
                get_scaler(kube, ns, name)["status"],
                ctrl.log_tail(30)
            )
        });
    }
    let peek = wait_refused(kube, &mut ctrl, "team-a", "peek", "QueryNotAllowed");
    assert!(peek.contains("may only read its own series"), "{peek}");
    let steal = wait_refused(kube, &mut ctrl, "team-b", "steal", "SourceNotAllowed");
    assert!(
        steal.contains("namespace \"team-b\" may not use source \"team-a-only\""),
        "{steal}"
    );
    let sel = wait_refused(kube, &mut ctrl, "team-b", "sel", "SourceNotAllowed");
    for (ns, name) in [("team-a", "peek"), ("team-b", "steal"), ("team-b", "sel")] {
        assert_eq!(replicas(kube, ns, name), 3, "{ns}/{name} held its replicas");
    }
    // what Prometheus ran for team-a's isolated scaler: its namespace matcher added
    let iso = get_scaler(kube, "team-a", "iso");
    let peak = iso
        .pointer("/status/forecast/peak/value")
        .cloned()
        .unwrap_or(Value::Null);
    ctrl.assert_never_forbidden();
    report(&format!(
        "[security] tenants: team-a `sum(proxy_rps)` through the isolating source -> {want_a} replicas (peak {peak}, \
         team-a's 40 req/s only); team-a naming team-b -> QueryNotAllowed ({peek}); team-b on a team-a source -> \
         SourceNotAllowed ({steal}); by label -> team-a allowed, team-b SourceNotAllowed ({sel})"
    ));
}

/// p50 and p99 of `v` (sorted in place).
fn percentiles(v: &mut [u64]) -> (u64, u64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99))
}

/// Reconcile durations (µs) of the scalers named `fleet-*` in the log from byte `from` on, and how
/// many reconciles each had.
fn fleet_latencies(log: &str, from: usize) -> (Vec<u64>, std::collections::HashMap<String, usize>) {
    let re = regex::Regex::new(r"name=(fleet-\d+)\}.*reconciled elapsed_us=(\d+)").unwrap();
    let mut all = Vec::new();
    let mut per = std::collections::HashMap::new();
    for line in log[from.min(log.len())..].lines() {
        if let Some(c) = re.captures(line) {
            all.push(c[2].parse().unwrap());
            *per.entry(c[1].to_string()).or_insert(0) += 1;
        }
    }
    (all, per)
}

#[test]
fn a_hundred_scalers_keep_reconciling_beside_a_deliberately_slow_one() {
    const FLEET: usize = 100;
    const WINDOW: Duration = Duration::from_secs(30);
    let prom = prometheus();
    let kube = KubeCluster::shared();
    let ns = "fleet";
    let kubeconfig = kube.operator_kubeconfig(ns, None);
    for i in 0..FLEET {
        let name = format!("fleet-{i}");
        kube.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            deployment(ns, &name, 1),
        );
        kube.create(
            &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
            PredictiveScaler::test(ns, &name)
                .metric("requests", &format!("load{{id=\"{i}\"}}"), "10")
                .source("default")
                .json(),
        );
    }
    // the deliberately slow source: in front of the same Prometheus, it never answers
    let proxy = support::FaultProxy::start(&prom.addr());
    proxy.set_mode("slow");
    let dir = support::TestDir::new("security-fleet");
    let sources = dir.path().join("sources.yaml");
    std::fs::write(
        &sources,
        format!(
            "sources:\n  - {{name: default, url: \"{}\"}}\n  - {{name: slow, url: \"{}\", timeout: 5s, allowedNamespaces: [\"*\"]}}\n",
            prom.url(),
            proxy.url()
        ),
    )
    .unwrap();
    let mut ctrl = start_operator(
        &kubeconfig,
        &[
            "--sources-file",
            &sources.display().to_string(),
            "--namespaces",
            ns,
            "--max-concurrent-reconciles",
            "4",
        ],
        "info,prescale::controller::reconcile=debug",
    );
    // every scaler fitted and reported once
    let ready = wait_until(Duration::from_secs(180), Duration::from_millis(500), || {
        ctrl.assert_running();
        let list = kube.get(&format!(
            "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"
        ));
        let done = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| find_condition(s, "Ready").is_some_and(|c| c["status"] == "True"))
            .count();
        (done == FLEET).then(|| ctrl.started.elapsed())
    })
    .unwrap_or_else(|| panic!("the fleet never became Ready:\n{}", ctrl.log_tail(30)));
    let measure = |ctrl: &mut Controller| {
        let from = ctrl.log().len();
        let t = Instant::now();
        while t.elapsed() < WINDOW {
            ctrl.assert_running();
            std::thread::sleep(Duration::from_millis(500));
        }
        let (mut all, per) = fleet_latencies(&ctrl.log(), from);
        assert_eq!(per.len(), FLEET, "every scaler reconciled in the window");
        let fewest = per.values().min().copied().unwrap_or(0);
        assert!(
            fewest >= 5,
            "a scaler reconciled only {fewest} times in {WINDOW:?}"
        );
        let (p50, p99) = percentiles(&mut all);
        (p50, p99, all.len(), fewest)
    };
    let (p50, p99, n, fewest) = measure(&mut ctrl);
    // the deliberately slow one: every query of it waits out its source's 5 s timeout
    kube.create(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        deployment(ns, "slow", 1),
    );
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
        PredictiveScaler::test(ns, "slow")
            .metric("requests", r#"load{id="0"}"#, "10")
            .source("slow")
            .json(),
    );
    let slow = wait_refused(kube, &mut ctrl, ns, "slow", "MetricsQueryTimeout");
    let (p50s, p99s, ns_, fewest_s) = measure(&mut ctrl);
    let slow_tries = proxy.requests();
    ctrl.assert_never_forbidden();
    // a start reconciles the whole fleet, at most 4 at once
    let in_flight = regex::Regex::new(r"reconcile started in_flight=(\d+)").unwrap();
    let most = in_flight
        .captures_iter(&ctrl.log())
        .map(|c| c[1].parse::<u32>().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        (1..=4).contains(&most),
        "{most} reconciles at once, at most 4 allowed"
    );
    report(&format!(
        "[security] {FLEET} scalers at a 2 s sync interval (all Ready {ready:.1?} after start): reconcile latency \
         p50 {:.2} ms, p99 {:.2} ms over {n} reconciles (each scaler >= {fewest}); beside a slow one \
         (MetricsQueryTimeout: {slow}): p50 {:.2} ms, p99 {:.2} ms over {ns_} reconciles (each >= {fewest_s}); the \
         slow scaler's requests to its source in all: {slow_tries} (backed off); at most {most} reconciles at \
         once (--max-concurrent-reconciles 4)",
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        p50s as f64 / 1000.0,
        p99s as f64 / 1000.0,
    ));
}

/// Scalers in [`a_thousand_scalers_on_the_real_api_server`].
const THOUSAND: usize = 1_000;

/// `fleet_load{id}` for [`THOUSAND`] scalers: a day at 1 minute each, a daily cycle of ±5% around
/// 100 with a phase and a little noise per series (so every fit is a real one, not a constant),
/// too small to move a count of 3 at 40 per replica.
fn thousand_loads(end: i64) -> String {
    let mut om = String::with_capacity(THOUSAND * 1_441 * 40);
    om.push_str("# TYPE fleet_load gauge\n");
    for id in 0..THOUSAND {
        let phase = id as f64 / THOUSAND as f64 * std::f64::consts::TAU;
        for t in (end - 86_400..=end).step_by(60) {
            let day = t as f64 / 86_400.0 * std::f64::consts::TAU + phase;
            let noise = ((t / 60) as u64 * 2_654_435_761 + id as u64) % 100;
            let v = 100.0 + 5.0 * day.sin() + noise as f64 / 100.0;
            let _ = writeln!(om, "fleet_load{{id=\"{id}\"}} {v:.3} {t}");
        }
    }
    om.push_str("# EOF\n");
    om
}

/// The PredictiveScalers in `ns`.
fn scalers(kube: &KubeCluster, ns: &str) -> Vec<Value> {
    kube.get(&format!(
        "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"
    ))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many of the PredictiveScalers in `ns` have a status for their generation (observed
/// generation current and a Ready condition).
fn reconciled(kube: &KubeCluster, ns: &str) -> usize {
    scalers(kube, ns)
        .iter()
        .filter(|s| {
            s["status"]["observedGeneration"] == s["metadata"]["generation"]
                && find_condition(s, "Ready").is_some()
        })
        .count()
}

/// The leaves of `v` as `path = value` (array items by index, conditions by type).
fn leaves(v: &Value, path: String, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                leaves(x, format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let key = x["type"].as_str().map_or(i.to_string(), str::to_string);
                leaves(x, format!("{path}[{key}]"), out);
            }
        }
        _ => {
            out.insert(path, v.to_string());
        }
    }
}

/// The status fields that differ between two lists of the same scalers, with how many scalers
/// each changed in.
fn changed_fields(before: &[Value], after: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let by_name = |l: &[Value]| -> std::collections::HashMap<String, Value> {
        l.iter()
            .map(|s| {
                (
                    s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    s["status"].clone(),
                )
            })
            .collect()
    };
    let (b, a) = (by_name(before), by_name(after));
    let mut tally = std::collections::BTreeMap::new();
    for (name, old) in &b {
        let (mut x, mut y) = (Default::default(), Default::default());
        leaves(old, String::new(), &mut x);
        leaves(&a[name], String::new(), &mut y);
        let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
        for k in keys {
            if x.get(k) != y.get(k) {
                *tally.entry(k.clone()).or_insert(0) += 1;
            }
        }
    }
    tally
}

/// The fleet goal on the real API server (README "A fleet"): 1,000 PredictiveScalers and their
/// Deployments, a real Prometheus with a series for each, `prescale run` at its defaults (30 s
/// sync interval, 16 reconciles at once) through a counting proxy. Figures: the time from the
/// start until every scaler is reconciled (goal <= 60 s), the API writes in a steady minute after
/// that (goal: none), the operator's peak RSS. Too long for CI (about 4 minutes, most of it
/// creating 2,000 objects). By hand, with a release build of the operator:
/// `cargo build --release && PRESCALE_TEST_BIN=target/release/prescale cargo test --test security
/// -- --ignored --nocapture thousand`.
#[test]
#[ignore = "about 3 minutes: run by hand for the fleet figures"]
fn a_thousand_scalers_on_the_real_api_server() {
    let end = (unix_now() - 60) / 60 * 60;
    let prom = Prometheus::start_with_history(&thousand_loads(end));
    let kube = KubeCluster::shared();
    let ns = "fleet-1k";
    let proxy = support::cluster::ApiProxy::start(kube);
    let kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
    let t = Instant::now();
    for i in 0..THOUSAND {
        let name = format!("s{i}");
        kube.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            deployment(ns, &name, 3),
        );
        kube.create(
            &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
            PredictiveScaler::test(ns, &name)
                .metric("requests", &format!("fleet_load{{id=\"{i}\"}}"), "40")
                .json(),
        );
    }
    let created = t.elapsed();
    let mut ctrl = Controller::start(
        &[
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--prometheus-url",
            &prom.url(),
            "--namespaces",
            ns,
        ],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    let mut progress = Vec::new();
    let all = wait_until(Duration::from_secs(300), Duration::from_secs(1), || {
        ctrl.assert_running();
        let done = reconciled(kube, ns);
        progress.push((ctrl.started.elapsed().as_secs(), done));
        (done == THOUSAND).then(|| ctrl.started.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "not every scaler reconciled: {progress:?}\n{}",
            ctrl.log_tail(30)
        )
    });
    let rss_start = ctrl.peak_rss_mib();
    // a steady minute, after the first sync interval's reconciles have settled
    std::thread::sleep(Duration::from_secs(30));
    let before = scalers(kube, ns);
    let from = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_secs(60));
    let to = std::time::SystemTime::now();
    let changed = changed_fields(&before, &scalers(kube, ns));
    ctrl.assert_running();
    let in_minute: Vec<String> = proxy
        .timed_log()
        .into_iter()
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, l)| l)
        .collect();
    let writes: Vec<&String> = in_minute
        .iter()
        .filter(|l| !l.starts_with("GET "))
        .collect();
    let reads = in_minute.len() - writes.len();
    // the load never moves a count of 3: no scale write, no event; only a status may change
    let not_status: Vec<&&String> = writes.iter().filter(|w| !w.contains("/status?")).collect();
    assert!(
        not_status.is_empty(),
        "writes other than a status in a steady minute: {not_status:?}"
    );
    ctrl.assert_never_forbidden();
    let first_all = progress.iter().find(|(_, d)| *d > 0).map_or(0, |(s, _)| *s);
    report(&format!(
        "[security] {THOUSAND} scalers (a day of 1-minute history each; {created:.0?} to create them and their \
         Deployments): all reconciled {all:.1?} after the operator started (first status at ~{first_all} s; progress \
         by second: {:?}); in a steady minute after that: {} API writes{}, {reads} reads; peak RSS {:.1} MiB \
         when all were reconciled, {:.1} MiB after the steady minute; status fields changed in the minute \
         (scalers): {changed:?}",
        progress.iter().step_by(5).collect::<Vec<_>>(),
        writes.len(),
        if writes.is_empty() {
            String::new()
        } else {
            format!(" (first: {:?})", writes.iter().take(5).collect::<Vec<_>>())
        },
        rss_start.unwrap_or(f64::NAN),
        ctrl.peak_rss_mib().unwrap_or(f64::NAN),
    ));
}
