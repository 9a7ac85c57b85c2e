//! Prometheus sources as a cluster admin configures them, against real Prometheus 2.42 processes:
//!
//! - a plain Prometheus with 15 days of 1-minute history and a query log (every query with its range);
//! - a "secure" one with its own `--web.config.file`: TLS (a CA and server certificate made here with rcgen),
//!   client certificates required, and basic auth (a bcrypt hash made here);
//! - a bearer-token gate in front of the plain one (as kube-rbac-proxy or an OAuth proxy would be), a port where
//!   nothing listens, and a listener that never answers.
//!
//! The library is checked directly (chunking, the incremental cache, gaps, every failure's reason, credentials),
//! then the real `prescale run` binary against the Kubernetes API emulator (conditions, events, replicas never
//! lowered, the driving metric, no secret anywhere), then `prescale forecast`.
//!
//! The Prometheus processes are shared by the tests of this file while any of them runs. Needs
//! `scripts/setup.sh`. `cargo test --test prometheus_sources -- --nocapture` prints the figures.

mod support;

use std::{
    process::Command,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use prescale::{
    api::{PredictiveScaler, ScalerFixture},
    planner::{ForecastSettings, fit_forecast},
    sources::{
        HistoryKey, HistoryStore, MetricsSource, SourceError, build_sources, config::parse_sources,
        prometheus::PrometheusSource,
    },
};
use serde_json::{Value, json};
use support::cluster::KubeCluster;
use support::{
    AuthProxy, BlackHole, Controller, Prometheus, PrometheusOptions, TestDir, TestPki, bcrypt_hash,
    find_condition, free_port, http_request, join_openmetrics, openmetrics_gauge, report, unix_now,
    url_encode, wait_until,
};

const DAY: i64 = 86_400;
const USER: &str = "prescale";
const PASSWORD: &str = "pw-Very-Secret-1f3e";
const WRONG_PASSWORD: &str = "pw-Wrong-Secret-9c1d";
const TOKEN: &str = "tok-Very-Secret-77a0";
const WRONG_TOKEN: &str = "tok-Wrong-Secret-42b6";
/// Every secret of this file: none may appear in a log, an error, an event or a status.
const SECRETS: [&str; 4] = [PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN];

const LOAD: &str = r#"prescale_test_load{app="llm"}"#;
/// The namespace of the controller test's scalers (on the test binary's shared control plane).
const NS: &str = "sources-e2e";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/sources-e2e/deployments";
const SCALERS: &str = "/apis/prescale.dev/v1alpha1/namespaces/sources-e2e/predictivescalers";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/sources-e2e/events";
/// The namespace of the scaler `prescale forecast --scaler` reads.
const FORECAST_NS: &str = "sources-forecast";

/// The daily load of `prescale_test_load`: 100 +- 50 with a little deterministic noise.
fn load(t: i64) -> f64 {
    let day = (t.rem_euclid(DAY)) as f64 / DAY as f64;
    let noise = ((t / 60) % 7) as f64 - 3.0;
    100.0 + 50.0 * (2.0 * std::f64::consts::PI * day).sin() + noise
}

/// What the tests share: the Prometheus processes, the proxy and the credential files.
struct Env {
    plain: Prometheus,
    secure: Prometheus,
    proxy: AuthProxy,
    black_hole: BlackHole,
    files: TestDir,
    pki: TestPki,
    /// Time of the last backfilled sample.
    end: i64,
}

impl Env {
    fn file(&self, name: &str) -> String {
        self.files.path().join(name).display().to_string()
    }

    /// The sources file of the end-to-end test: every way a source can be right or wrong.
    fn sources_yaml(&self) -> String {
        let f = |n: &str| self.file(n);
        format!(
            r#"sources:
  - name: default
    url: {plain}
  - name: secure
    url: {secure}
    allowedNamespaces: ["*"]
    basicAuth: {{username: {USER}, passwordFile: {pw}}}
    tls: {{caFile: {ca}, certFile: {cert}, keyFile: {key}}}
  - name: proxied
    url: {proxy}
    allowedNamespaces: ["*"]
    bearerTokenFile: {token}
    headers: {{X-Scope-OrgID: team-a}}
  - name: wrong-password
    url: {secure}
    allowedNamespaces: ["*"]
    basicAuth: {{username: {USER}, passwordFile: {wrong_pw}}}
    tls: {{caFile: {ca}, certFile: {cert}, keyFile: {key}}}
  - name: wrong-ca
    url: {secure}
    allowedNamespaces: ["*"]
    basicAuth: {{username: {USER}, passwordFile: {pw}}}
    tls: {{caFile: {other_ca}, certFile: {cert}, keyFile: {key}}}
  - name: no-client-cert
    url: {secure}
    allowedNamespaces: ["*"]
    basicAuth: {{username: {USER}, passwordFile: {pw}}}
    tls: {{caFile: {ca}}}
  - name: wrong-token
    url: {proxy}
    allowedNamespaces: ["*"]
    bearerTokenFile: {wrong_token}
  - name: insecure
    url: {secure}
    allowedNamespaces: ["*"]
    basicAuth: {{username: {USER}, passwordFile: {pw}}}
    tls: {{certFile: {cert}, keyFile: {key}, insecureSkipVerify: true}}
  - name: down
    url: http://127.0.0.1:{down}
    allowedNamespaces: ["*"]
  - name: slow
    url: {slow}
    allowedNamespaces: ["*"]
    timeout: 1s
"#,
            plain = self.plain.url(),
            secure = self.secure.url(),
            proxy = self.proxy.url(),
            slow = self.black_hole.url(),
            down = free_port(),
            pw = f("password"),
            wrong_pw = f("wrong-password"),
            token = f("token"),
            wrong_token = f("wrong-token"),
            ca = f("ca.pem"),
            other_ca = f("other-ca.pem"),
            cert = f("client.pem"),
            key = f("client-key.pem"),
        )
    }
}

/// The shared environment, started by the first test that needs it and stopped after the last one.
fn env() -> Arc<Env> {
    static ENV: Mutex<Weak<Env>> = Mutex::new(Weak::new());
    let mut slot = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(env) = slot.upgrade() {
        return env;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let t = Instant::now();
    let now = unix_now();
    let end = (now - 120) / 60 * 60;
    let history = |name: &str, labels: &[(&str, &str)], days: i64, f: &dyn Fn(i64) -> f64| {
        openmetrics_gauge(name, labels, end - days * DAY, end, 60, f)
    };
    // two series of one family, one after the other
    let multi = {
        let a = history("prescale_test_multi", &[("pod", "a")], 1, &|_| 10.0);
        let b = history("prescale_test_multi", &[("pod", "b")], 1, &|_| 20.0);
        let b_samples: String = b
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        a.replace("# EOF\n", &format!("{b_samples}# EOF\n"))
    };
    // NaN samples every 17 minutes and no samples at all from 3h to 2.5h ago
    let gap = (end - 3 * 3_600, end - 3 * 3_600 + 1_800);
    let gappy = openmetrics_gauge(
        "prescale_test_gappy",
        &[("app", "llm")],
        end - DAY,
        end,
        60,
        |t| {
            if (t / 60) % 17 == 0 { f64::NAN } else { 50.0 }
        },
    )
    .lines()
    .filter(|l| {
        let ts = l.rsplit(' ').next().and_then(|t| t.parse::<i64>().ok());
        !ts.is_some_and(|ts| ts > gap.0 && ts < gap.1)
    })
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let plain_history = join_openmetrics(&[
        history("prescale_test_load", &[("app", "llm")], 15, &load),
        history("prescale_test_requests", &[("app", "llm")], 2, &|_| 30.0),
        multi,
        gappy,
    ]);
    let plain = Prometheus::start_with(
        &plain_history,
        PrometheusOptions {
            query_log: true,
            ..Default::default()
        },
    );

    let pki = TestPki::generate();
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: \
         RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  {USER}: {}\n",
        bcrypt_hash(PASSWORD)
    );
    let secure = Prometheus::start_with(
        &history("prescale_test_tokens", &[("app", "llm")], 2, &|_| 8_000.0),
        PrometheusOptions {
            web_config: Some(web),
            files: vec![
                (
                    "server.pem".into(),
                    pki.server_cert_pem.clone().into_bytes(),
                ),
                (
                    "server-key.pem".into(),
                    pki.server_key_pem.clone().into_bytes(),
                ),
                ("ca.pem".into(), pki.ca_pem.clone().into_bytes()),
            ],
            ..Default::default()
        },
    );
    let proxy = AuthProxy::start(&plain.addr(), TOKEN);
    let files = TestDir::new("sources");
    for (name, content) in [
        ("password", format!("{PASSWORD}\n")),
        ("wrong-password", WRONG_PASSWORD.to_string()),
        ("token", format!("{TOKEN}\n")),
        ("wrong-token", WRONG_TOKEN.to_string()),
        ("ca.pem", pki.ca_pem.clone()),
        ("other-ca.pem", pki.other_ca_pem.clone()),
        ("client.pem", pki.client_cert_pem.clone()),
        ("client-key.pem", pki.client_key_pem.clone()),
    ] {
        std::fs::write(files.path().join(name), content).expect("write a credential file");
    }
    report(&format!(
        "[sources] environment ready in {:.2?}: plain Prometheus {} (backfill {:.2?}), TLS+mTLS+basic-auth Prometheus \
         {} (backfill {:.2?}), bearer proxy {}",
        t.elapsed(),
        plain.url(),
        plain.backfill_time,
        secure.url(),
        secure.backfill_time,
        proxy.url()
    ));
    let env = Arc::new(Env {
        plain,
        secure,
        proxy,
        black_hole: BlackHole::start(),
        files,
        pki,
        end,
    });
    *slot = Arc::downgrade(&env);
    env
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Points of a query-log entry: `(end - start) / step + 1`.
fn logged_points(entry: &Value) -> i64 {
    let t = |k: &str| -> i64 {
        entry["params"][k]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
            .unwrap_or_else(|| panic!("no params.{k} in {entry}"))
    };
    let step = entry["params"]["step"].as_i64().expect("params.step");
    (t("end") - t("start")) / step + 1
}

fn log_entries_for(prom: &Prometheus, query: &str) -> Vec<Value> {
    prom.query_log()
        .into_iter()
        .filter(|e| e["params"]["query"] == query)
        .collect()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "a secret appears in {what}: {text}");
    }
}

#[test]
fn fourteen_days_at_one_minute_come_back_whole_where_one_query_is_refused() {
    let env = env();
    let rt = runtime();
    let src = PrometheusSource::new("default", &env.plain.url(), Duration::from_secs(30)).unwrap();
    let end = unix_now() / 60 * 60;
    let start = end - 14 * DAY;

    // one query_range over the whole window: Prometheus refuses it
    let url = format!(
        "{}/api/v1/query_range?query={}&start={start}&end={end}&step=60",
        env.plain.url(),
        url_encode(LOAD)
    );
    let t = Instant::now();
    let whole = http_request("GET", &url, None, None).expect("GET query_range");
    let refused_in = t.elapsed();
    assert_eq!(whole.status, 400, "{}", whole.body);
    assert!(
        whole
            .body
            .contains("exceeded maximum resolution of 11,000 points"),
        "{}",
        whole.body
    );

    let t = Instant::now();
    let samples = rt
        .block_on(src.range(LOAD, start, end, 60))
        .expect("chunked range");
    let took = t.elapsed();
    assert_eq!(
        samples.len(),
        20_161,
        "14 days at 1 minute, both ends included"
    );
    assert!(
        samples.windows(2).all(|w| w[1].0 - w[0].0 == 60),
        "contiguous, no duplicate at chunk edges"
    );
    assert_eq!((samples[0].0, samples[samples.len() - 1].0), (start, end));
    assert!(
        samples
            .iter()
            .all(|(t, v)| (v - load(*t).max(0.0)).abs() < 1e-9 || *t > env.end)
    );
    assert_eq!(
        src.requests(),
        3,
        "20,161 points in chunks of at most 10,000"
    );
    report(&format!(
        "[sources] chunking: one query over 14d at 1m refused by Prometheus in {refused_in:.2?} (HTTP 400 \
         bad_data, 11,000-point limit); chunked: {} points in {} requests in {took:.2?}",
        samples.len(),
        src.requests()
    ));
}

#[test]
fn the_second_update_asks_only_for_the_new_minutes() {
    let env = env();
    let rt = runtime();
    let src = PrometheusSource::new("default", &env.plain.url(), Duration::from_secs(30)).unwrap();
    let store = HistoryStore::default();
    // a query of its own, to find it in the query log
    let query = r#"prescale_test_load{app="llm", app!="cache-test"}"#;
    let key = HistoryKey {
        source: "default".into(),
        query: query.into(),
        step: 60,
    };
    let now = unix_now();
    let t = Instant::now();
    let first = rt
        .block_on(store.update("default/a", &src, &key, 14 * DAY, now))
        .unwrap();
    let first_time = t.elapsed();
    let first_requests = src.requests();
    let first_points = src.points();
    assert_eq!(first.len(), 20_161);
    assert_eq!(first_requests, 3);

    // two minutes later
    let t = Instant::now();
    let second = rt
        .block_on(store.update("default/a", &src, &key, 14 * DAY, now + 120))
        .unwrap();
    let second_time = t.elapsed();
    let second_requests = src.requests() - first_requests;
    let second_points = src.points() - first_points;
    assert_eq!(second.len(), 20_161, "the window moved by two minutes");
    assert_eq!(second.start(), first.start() + 120);
    assert_eq!(second_requests, 1);

    // what Prometheus itself saw
    let log = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        Some(log_entries_for(&env.plain, query)).filter(|l| l.len() >= 4)
    })
    .unwrap_or_else(|| panic!("query log: {:?}", log_entries_for(&env.plain, query)));
    let points: Vec<i64> = log.iter().map(logged_points).collect();
    assert_eq!(points.len(), 4, "{points:?}");
    assert_eq!(points[..3].iter().sum::<i64>(), 20_161, "{points:?}");
    assert!(
        points[3] <= 8,
        "the second update asked for {} points: {points:?}",
        points[3]
    );
    report(&format!(
        "[sources] cache: first update {first_requests} requests, {first_points} points, {first_time:.2?}; two \
         minutes later {second_requests} request for {} points ({second_points} returned: the 2 new minutes and \
         5 refetched for late samples), {second_time:.2?}; Prometheus's query log: {points:?}",
        points[3]
    ));
}

#[test]
fn nan_samples_and_gaps_stay_gaps_and_the_fit_bridges_them() {
    let env = env();
    let rt = runtime();
    let src = PrometheusSource::new("default", &env.plain.url(), Duration::from_secs(30)).unwrap();
    let store = HistoryStore::default();
    let key = HistoryKey {
        source: "default".into(),
        query: r#"prescale_test_gappy{app="llm"}"#.into(),
        step: 60,
    };
    let s = rt
        .block_on(store.update("default/g", &src, &key, DAY - 3_600, env.end))
        .unwrap()
        .series();
    let at = |t: i64| s.values[((t - s.start) / 60) as usize];
    let nan_sample = (s.start / 60 + 17 - (s.start / 60) % 17) * 60;
    assert!(
        at(nan_sample).is_nan(),
        "a NaN sample is a gap, not a value"
    );
    assert!(!at(nan_sample).eq(&0.0));
    // inside the 30-minute hole, after Prometheus's 5-minute lookback: no points
    let hole = env.end - 3 * 3_600 + 15 * 60;
    assert!(at(hole).is_nan(), "a missing stretch is a gap");
    assert!(
        s.values.iter().all(|v| v.is_nan() || *v == 50.0),
        "never zero"
    );
    let gaps = s.values.iter().filter(|v| v.is_nan()).count();
    assert!(gaps > 100, "{gaps} gaps");
    let fc = fit_forecast(
        &s,
        &ForecastSettings::new(Default::default(), vec![], 60, 0.9, 60),
    )
    .expect("fit");
    assert!(
        fc.upper.iter().all(|u| (*u - 50.0).abs() < 1e-6),
        "{:?}",
        &fc.upper[..3]
    );
    report(&format!(
        "[sources] gaps: {} of {} points are gaps (NaN samples, a 30-minute hole); the fit bridged them ({})",
        gaps,
        s.len(),
        fc.model
    ));
}

#[test]
fn each_failure_has_its_own_reason() {
    let env = env();
    let rt = runtime();
    let sources = build_sources(
        &parse_sources(&env.sources_yaml()).unwrap().sources,
        Duration::from_secs(10),
    )
    .unwrap();
    let end = unix_now() / 60 * 60;
    let range = |source: &str, query: &str| {
        let src = sources.get(source).unwrap();
        let t = Instant::now();
        let r = rt.block_on(src.range(query, end - 3_600, end, 60));
        (r, t.elapsed())
    };
    let mut figures = Vec::new();
    let mut expect = |case: &str, source: &str, query: &str, reason: &str, text: &str| {
        let (r, took) = range(source, query);
        let e = r.expect_err(case);
        assert_eq!(e.reason(), reason, "{case}: {e}");
        assert!(e.to_string().contains(text), "{case}: {text:?} not in {e}");
        assert_no_secret(case, &format!("{e} {e:?}"));
        figures.push(format!("{case} -> {reason} in {took:.0?}"));
        e
    };
    let multi = expect(
        "multi-series",
        "default",
        "prescale_test_multi",
        "QueryReturnedManySeries",
        "must return one series: wrap it in sum()",
    );
    // the count only: the other series' labels may be another team's
    assert!(multi.to_string().contains("returned 2 series"), "{multi}");
    assert!(!multi.to_string().contains(r#"pod="#), "{multi}");
    expect(
        "syntax error",
        "default",
        "sum(rate(prescale_test_load[5m])",
        "InvalidQuery",
        "bad_data",
    );
    expect(
        "down",
        "down",
        LOAD,
        "MetricsSourceUnavailable",
        "cannot connect",
    );
    let (r, took) = range("slow", LOAD);
    assert!(matches!(r, Err(SourceError::Timeout { .. })), "{r:?}");
    assert!(
        took < Duration::from_secs(5),
        "the 1s timeout took {took:?}"
    );
    figures.push(format!(
        "slower than its 1s timeout -> MetricsQueryTimeout in {took:.2?}"
    ));
    let (empty, _) = range("default", r#"prescale_test_nothing{app="none"}"#);
    assert_eq!(empty, Ok(vec![]), "an empty result is no data, never zeros");
    assert!(matches!(
        sources.get("http://evil.example"),
        Err(SourceError::UnknownSource { .. })
    ));
    report(&format!(
        "[sources] failure reasons: {}",
        figures.join("; ")
    ));
}

#[test]
fn basic_auth_tls_and_bearer_tokens() {
    let env = env();
    let rt = runtime();
    let sources = build_sources(
        &parse_sources(&env.sources_yaml()).unwrap().sources,
        Duration::from_secs(10),
    )
    .unwrap();
    let end = unix_now() / 60 * 60;
    let range = |source: &str, query: &str| {
        let t = Instant::now();
        let r = rt.block_on(
            sources
                .get(source)
                .unwrap()
                .range(query, end - 3_600, end, 60),
        );
        (r, t.elapsed())
    };
    let tokens = r#"prescale_test_tokens{app="llm"}"#;
    let mut figures = Vec::new();
    for source in ["secure", "insecure"] {
        let (r, took) = range(source, tokens);
        let samples = r.unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(samples.len(), 61, "{source}");
        assert!(samples.iter().all(|(_, v)| *v == 8_000.0));
        figures.push(format!("{source}: 61 points in {took:.0?}"));
    }
    let (r, _) = range("proxied", LOAD);
    assert_eq!(r.expect("bearer token accepted").len(), 61);
    let seen = env.proxy.seen();
    let ok = seen
        .iter()
        .rev()
        .find(|r| r.authorized)
        .expect("an authorized request");
    assert!(
        ok.headers
            .iter()
            .any(|(k, v)| k == "x-scope-orgid" && v == "team-a"),
        "extra header sent: {ok:?}"
    );
    for (source, text) in [
        ("wrong-password", "HTTP 401"),
        ("wrong-token", "HTTP 401"),
        ("wrong-ca", "TLS handshake failed"),
        ("no-client-cert", "TLS handshake failed"),
    ] {
        let query = if source == "wrong-token" {
            LOAD
        } else {
            tokens
        };
        let (r, took) = range(source, query);
        let e = r.expect_err(source);
        assert_eq!(e.reason(), "MetricsAuthFailed", "{source}: {e}");
        assert!(
            e.to_string().contains(text),
            "{source}: {text:?} not in {e}"
        );
        assert_no_secret(source, &format!("{e} {e:?}"));
        figures.push(format!("{source}: MetricsAuthFailed in {took:.0?} ({e})"));
    }
    report(&format!("[sources] auth: {}", figures.join("; ")));
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "proxy", "image": "registry.example/llm-proxy:1.0"}]}
            }
        }
    })
}

/// A scaler of the Deployment `name` in `ns` on `lookback` of history: up to 60 replicas, and
/// scale-down after a minute, by as much as needed. Its metrics are the caller's.
fn scaler_fixture(ns: &str, name: &str, lookback: &str) -> ScalerFixture {
    PredictiveScaler::test(ns, name)
        .min_max(1, 60)
        .history(lookback, "1m")
        .scale_down("1m", 100)
}

/// `requests` from the source `proxied` and `tokens` from `secure`.
fn requests_and_tokens(scaler: ScalerFixture) -> ScalerFixture {
    scaler
        .metric("requests", r#"prescale_test_requests{app="llm"}"#, "10")
        .source("proxied")
        .metric("tokens", r#"prescale_test_tokens{app="llm"}"#, "1k")
        .source("secure")
}

fn replicas_of(kube: &KubeCluster, name: &str) -> i64 {
    kube.get(&format!("{DEPLOYMENTS}/{name}"))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

#[test]
fn controller_reports_each_source_failure_never_scales_down_and_names_the_driving_metric() {
    let env = env();
    let t0 = Instant::now();
    let kube = KubeCluster::shared();
    let kubeconfig = kube.operator_kubeconfig(NS, None);
    let cache_query = r#"prescale_test_load{app="llm", app!="e2e-cache"}"#;
    // (scaler, source, query, expected ForecastAvailable reason)
    let failures = [
        (
            "multi",
            "default",
            "prescale_test_multi",
            "QueryReturnedManySeries",
        ),
        (
            "empty",
            "default",
            r#"prescale_test_nothing{app="none"}"#,
            "EmptyQueryResult",
        ),
        (
            "syntax",
            "default",
            "sum(rate(prescale_test_load[5m])",
            "InvalidQuery",
        ),
        ("down", "down", LOAD, "MetricsSourceUnavailable"),
        ("slow", "slow", LOAD, "MetricsQueryTimeout"),
        (
            "wrong-password",
            "wrong-password",
            "prescale_test_tokens",
            "MetricsAuthFailed",
        ),
        (
            "wrong-ca",
            "wrong-ca",
            "prescale_test_tokens",
            "MetricsAuthFailed",
        ),
        ("unknown", "nope", LOAD, "UnknownSource"),
    ];
    for (name, source, query, _) in failures {
        kube.create(DEPLOYMENTS, deployment(name, 5));
        kube.create(
            SCALERS,
            scaler_fixture(NS, name, "1d")
                .metric("requests", query, "10")
                .source(source)
                .json(),
        );
    }
    kube.create(DEPLOYMENTS, deployment("two-metrics", 2));
    kube.create(
        SCALERS,
        requests_and_tokens(scaler_fixture(NS, "two-metrics", "1d")).json(),
    );
    kube.create(DEPLOYMENTS, deployment("cache", 5));
    kube.create(
        SCALERS,
        scaler_fixture(NS, "cache", "14d")
            .metric("requests", cache_query, "10")
            .source("default")
            .json(),
    );

    let sources_file = env.files.path().join("sources-e2e.yaml");
    std::fs::write(&sources_file, env.sources_yaml()).unwrap();
    let sources_arg = sources_file.display().to_string();
    let mut ctrl = Controller::start(
        &[
            "run",
            "--sources-file",
            &sources_arg,
            "--http-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "2s",
            "--namespaces",
            NS,
        ],
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            (
                "RUST_LOG",
                "info,prescale=debug,reqwest=debug,hyper_util=debug".to_string(),
            ),
        ],
    );

    // 1. every failing scaler says why, each with its own reason
    let mut figures = Vec::new();
    for (name, _, _, reason) in failures {
        let c = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            ctrl.assert_running();
            let s = kube.get(&format!("{SCALERS}/{name}"));
            find_condition(&s, "ForecastAvailable")
                .filter(|c| c["status"] == "False" && c["reason"] == reason)
                .cloned()
        })
        .unwrap_or_else(|| {
            panic!(
                "{name}: ForecastAvailable never became False/{reason}: {}",
                kube.get(&format!("{SCALERS}/{name}"))["status"]
            )
        });
        let message = c["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("holding 5 replicas"), "{name}: {message}");
        figures.push(format!(
            "{name}={reason} after {:.1?}",
            ctrl.started.elapsed()
        ));
        eprintln!("[e2e] {name}: {reason}: {message}");
    }
    let messages: Vec<(String, String)> = failures
        .iter()
        .map(|(name, ..)| {
            let s = kube.get(&format!("{SCALERS}/{name}"));
            let m = find_condition(&s, "ForecastAvailable").unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string();
            (name.to_string(), m)
        })
        .collect();
    let msg = |n: &str| messages.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert!(
        msg("multi").contains("wrap it in sum()"),
        "{}",
        msg("multi")
    );
    assert!(msg("empty").contains("no data"), "{}", msg("empty"));
    assert!(
        msg("wrong-password").contains("HTTP 401"),
        "{}",
        msg("wrong-password")
    );
    assert!(
        msg("wrong-ca").contains("TLS handshake failed"),
        "{}",
        msg("wrong-ca")
    );
    assert!(
        msg("unknown").contains("not configured"),
        "{}",
        msg("unknown")
    );

    // 2. two metrics: the second drives the decision
    let scaled = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        ctrl.assert_running();
        Some(replicas_of(kube, "two-metrics")).filter(|r| *r == 8)
    });
    assert_eq!(
        scaled,
        Some(8),
        "requests need 3, tokens 8: {}",
        kube.get(&format!("{SCALERS}/two-metrics"))["status"]
    );
    let two = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        Some(kube.get(&format!("{SCALERS}/two-metrics")))
            .filter(|s| s.pointer("/status/forecast/metric").is_some())
    })
    .expect("status.forecast of two-metrics");
    assert_eq!(
        two["status"]["forecast"]["metric"], "tokens",
        "{}",
        two["status"]
    );
    let fa = find_condition(&two, "ForecastAvailable").unwrap();
    assert!(
        fa["message"]
            .as_str()
            .unwrap()
            .contains("tokens drives the decision"),
        "{fa}"
    );

    // 3. none of the failing scalers moved its target, over several more evaluations
    let hold = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    for (name, ..) in failures {
        assert_eq!(replicas_of(kube, name), 5, "{name} changed its target");
        let s = kube.get(&format!("{SCALERS}/{name}"));
        assert_eq!(s["status"]["desiredReplicas"], 5, "{name}: {}", s["status"]);
    }
    let held_for = hold.elapsed() + Duration::from_secs(2);

    // 4. events: a Warning per failure, and the scale-up names its metric
    let events = kube.get(EVENTS)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let event_for = |name: &str, reason: &str| {
        events
            .iter()
            .find(|e| e["regarding"]["name"] == name && e["reason"] == reason)
            .cloned()
    };
    for (name, _, _, reason) in failures {
        let e = event_for(name, reason).unwrap_or_else(|| panic!("no {reason} event for {name}"));
        assert_eq!(e["type"], "Warning", "{e}");
    }
    let up = event_for("two-metrics", "ScaledUp").expect("a ScaledUp event");
    let note = up["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("from 2 to 8") && note.contains("driven by metric tokens"),
        "{note}"
    );

    // 5. the incremental cache, as Prometheus saw it
    let cache_log = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        Some(log_entries_for(&env.plain, cache_query)).filter(|l| l.len() >= 6)
    })
    .unwrap_or_else(|| {
        panic!(
            "cache queries: {:?}",
            log_entries_for(&env.plain, cache_query)
        )
    });
    let points: Vec<i64> = cache_log.iter().map(logged_points).collect();
    assert_eq!(
        points[..3].iter().sum::<i64>(),
        20_161,
        "first reconcile: {points:?}"
    );
    assert!(
        points[3..].iter().all(|p| *p <= 8),
        "later reconciles fetch only new points: {points:?}"
    );

    // 6. the bearer token and the tenant header reached the proxy
    let seen = env.proxy.seen();
    assert!(
        seen.iter().any(|r| r.authorized
            && r.headers
                .iter()
                .any(|(k, v)| k == "x-scope-orgid" && v == "team-a")),
        "no authorized request with the tenant header"
    );

    // 7. no secret in logs, events or status; the insecure source was announced
    let log = ctrl.log();
    assert!(
        log.contains("TLS certificate verification is OFF"),
        "no warning for insecureSkipVerify"
    );
    assert!(!log.contains("panicked"), "the controller panicked");
    ctrl.assert_never_forbidden();
    assert_no_secret("the controller log", &log);
    assert_no_secret("events", &serde_json::to_string(&events).unwrap());
    assert_no_secret("scalers", &kube.get(SCALERS).to_string());
    let basic = base64_of(&format!("{USER}:{PASSWORD}"));
    assert!(
        !log.contains(&basic),
        "the basic-auth header appears in the log"
    );
    let key_line = env.pki.client_key_pem.lines().nth(1).unwrap();
    assert!(!log.contains(key_line), "the client key appears in the log");

    report(&format!(
        "[e2e sources] conditions: {}; failing targets held at 5 for {held_for:.1?}; two-metrics 2 -> 8 driven by \
         tokens; cache: {} query_range requests, points per request {:?}; log {} KiB; test {:.1?}",
        figures.join(", "),
        points.len(),
        points,
        log.len() / 1024,
        t0.elapsed()
    ));
}

fn base64_of(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs `prescale ARGS` to completion: (exit code, stdout, stderr).
fn prescale(args: &[&str], envs: &[(&str, String)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env_remove("PRESCALE_PROMETHEUS_URL")
        .env_remove("PRESCALE_SOURCES_FILE")
        .output()
        .expect("run prescale");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn forecast_command_prints_the_forecast_and_the_replicas() {
    let env = env();
    let dir = TestDir::new("forecast-cli");
    let plot = dir.path().join("forecast.svg");
    let plot_arg = plot.display().to_string();

    // 1. a query, from a URL
    let t = Instant::now();
    let (code, out, err) = prescale(
        &[
            "forecast",
            "--source-url",
            &env.plain.url(),
            "--query",
            LOAD,
            "--lookback",
            "14d",
            "--step",
            "1m",
            "--horizon",
            "2h",
            "--target-per-replica",
            "10",
            "--plot",
            &plot_arg,
        ],
        &[],
    );
    let took = t.elapsed();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    eprintln!("{out}");
    assert!(
        out.contains("20161 points") && out.contains("3 requests"),
        "{out}"
    );
    let header = out
        .lines()
        .find(|l| l.starts_with("time"))
        .expect("a table header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["time", "point", "upper", "replicas"]
    );
    assert!(
        out.contains("each row: the maximum over 3 steps"),
        "120 steps in at most 48 rows: {out}"
    );
    assert!(out.contains("\npeak: "), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 40, "{out}");
    for r in &rows {
        let cells: Vec<f64> = r
            .split_whitespace()
            .skip(1)
            .map(|c| c.parse().unwrap())
            .collect();
        let (point, upper, replicas) = (cells[0], cells[1], cells[2]);
        assert!(
            (40.0..170.0).contains(&point) && upper >= point - 1e-9,
            "{r}"
        );
        assert_eq!(replicas, (upper / 10.0).ceil(), "{r}");
    }
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert!(
        svg.starts_with("<svg") && svg.len() > 5_000,
        "{} bytes",
        svg.len()
    );

    // 2. a TLS source with a client certificate and basic auth, from flags
    let (code, out, err) = prescale(
        &[
            "forecast",
            "--source-url",
            &env.secure.url(),
            "--ca-file",
            &env.file("ca.pem"),
            "--cert-file",
            &env.file("client.pem"),
            "--key-file",
            &env.file("client-key.pem"),
            "--username",
            USER,
            "--password-file",
            &env.file("password"),
            "--query",
            "prescale_test_tokens",
            "--lookback",
            "1d",
            "--horizon",
            "30m",
            "--target-per-replica",
            "1k",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("model: Constant") && out.contains("\npeak: 8 replicas"),
        "{out}"
    );

    // 3. wrong credentials, a dead source: one line, exit 1, no secret
    let (code, out, err) = prescale(
        &[
            "forecast",
            "--source-url",
            &env.secure.url(),
            "--ca-file",
            &env.file("ca.pem"),
            "--cert-file",
            &env.file("client.pem"),
            "--key-file",
            &env.file("client-key.pem"),
            "--username",
            USER,
            "--password-file",
            &env.file("wrong-password"),
            "--query",
            "prescale_test_tokens",
            "--lookback",
            "1d",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: metric query: source \"default\": authentication failed: HTTP 401"),
        "{err}"
    );
    assert!(err.contains("(MetricsAuthFailed)"), "{err}");
    assert_no_secret("forecast stderr", &format!("{out}{err}"));
    let (code, _, err) = prescale(
        &[
            "forecast",
            "--source-url",
            &format!("http://127.0.0.1:{}", free_port()),
            "--query",
            LOAD,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("MetricsSourceUnavailable") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = prescale(
        &["forecast", "--source-url", "ftp://x", "--query", LOAD],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("must start with http:// or https://") && err.lines().count() == 1,
        "{err}"
    );

    // 4. a PredictiveScaler from the cluster, its sources by name from the sources file
    let kube = KubeCluster::shared();
    kube.create_namespace(FORECAST_NS);
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{FORECAST_NS}/predictivescalers"),
        requests_and_tokens(scaler_fixture(FORECAST_NS, "llm-proxy", "1d")).json(),
    );
    let sources_file = dir.path().join("sources.yaml");
    std::fs::write(&sources_file, env.sources_yaml()).unwrap();
    let (code, out, err) = prescale(
        &[
            "forecast",
            "--scaler",
            &format!("{FORECAST_NS}/llm-proxy"),
            "--sources-file",
            &sources_file.display().to_string(),
        ],
        &[("KUBECONFIG", kube.kubeconfig_path().display().to_string())],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    eprintln!("{out}");
    assert!(
        out.starts_with(&format!(
            "PredictiveScaler {FORECAST_NS}/llm-proxy: 2 metrics"
        )),
        "{out}"
    );
    let header = out
        .lines()
        .find(|l| l.starts_with("time"))
        .expect("a table header");
    assert!(
        header.contains("requests upper")
            && header.contains("tokens replicas")
            && header.ends_with(" replicas"),
        "{header}"
    );
    assert!(out.contains("\npeak: 8 replicas"), "{out}");
    let (code, _, err) = prescale(
        &[
            "forecast",
            "--scaler",
            &format!("{FORECAST_NS}/missing"),
            "--sources-file",
            &sources_file.display().to_string(),
        ],
        &[("KUBECONFIG", kube.kubeconfig_path().display().to_string())],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error: reading PredictiveScaler {FORECAST_NS}/missing"
        )) && err.lines().count() == 1,
        "{err}"
    );
    report(&format!(
        "[sources] prescale forecast: 14d at 1m fetched, fitted and printed with a plot in {took:.2?}; TLS+basic \
         auth from flags; --scaler with two metrics from two sources"
    ));
}

#[test]
fn simulate_reads_its_history_from_prometheus_by_query_and_by_scaler() {
    let env = env();
    let dir = TestDir::new("simulate-prometheus");
    // 1. a query from a URL, 3 days at 1m, scored as a trace would be
    let (code, out, err) = prescale(
        &[
            "simulate",
            "--source-url",
            &env.plain.url(),
            "--query",
            LOAD,
            "--lookback",
            "3d",
            "--target-per-replica",
            "10",
            "--refresh",
            "1h",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.starts_with(&format!(
            "prescale simulate: {LOAD} from source \"default\""
        )),
        "{out}"
    );
    assert!(out.contains("4321 rows at 1m"), "{out}");
    assert!(out.contains("prescale / reactive"), "{out}");
    // the same history at two operating points
    let (code, out, err) = prescale(
        &[
            "simulate",
            "--source-url",
            &env.plain.url(),
            "--query",
            LOAD,
            "--lookback",
            "3d",
            "--target-per-replica",
            "10",
            "--refresh",
            "1h",
            "--frontier",
            "0.9",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("2 operating points"), "{out}");

    // 2. a PredictiveScaler: its query, source and settings
    let kube = KubeCluster::shared();
    let ns = "sources-simulate";
    kube.create_namespace(ns);
    kube.create(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
        scaler_fixture(ns, "llm", "2d")
            .metric("requests", LOAD, "10")
            .source("default")
            .json(),
    );
    let sources_file = dir.path().join("sources.yaml");
    std::fs::write(&sources_file, env.sources_yaml()).unwrap();
    let kubeconfig = ("KUBECONFIG", kube.kubeconfig_path().display().to_string());
    let (code, out, err) = prescale(
        &[
            "simulate",
            "--scaler",
            &format!("{ns}/llm"),
            "--sources-file",
            &sources_file.display().to_string(),
            "--refresh",
            "30m",
        ],
        std::slice::from_ref(&kubeconfig),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.starts_with(&format!("prescale simulate: PredictiveScaler {ns}/llm: ")),
        "{out}"
    );
    // the scaler's lookback (2d at 1m), its targetPerReplica and its lead time
    assert!(out.contains("2881 rows at 1m"), "{out}");
    assert!(
        out.contains("targetPerReplica 10.000") && out.contains("lead 5m"),
        "{out}"
    );

    // 3. a dead source or a missing scaler: one line, exit 1
    let (code, _, err) = prescale(
        &[
            "simulate",
            "--source-url",
            &format!("http://127.0.0.1:{}", free_port()),
            "--query",
            LOAD,
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("MetricsSourceUnavailable") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = prescale(
        &[
            "simulate",
            "--scaler",
            &format!("{ns}/missing"),
            "--sources-file",
            &sources_file.display().to_string(),
        ],
        &[kubeconfig],
    );
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("error: reading PredictiveScaler {ns}/missing"))
            && err.lines().count() == 1,
        "{err}"
    );
}
