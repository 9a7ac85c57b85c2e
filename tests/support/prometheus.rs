//! A real Prometheus on 127.0.0.1 (or another local address), its TSDB backfilled with `promtool` from OpenMetrics text.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{http_request, url_encode};
use super::process::{
    LOG_TAIL_LINES, Output, file_tail, kill, print_tail_if_panicking, spawn_with_output,
};
use super::tempdir::TestDir;
use super::{free_port, report, require_tool, wait_until};

/// How to start a [`Prometheus`] beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct PrometheusOptions {
    /// The content of a `--web.config.file` (`tls_server_config`, `basic_auth_users`). Relative file names in it
    /// are resolved next to it: write them with `files`.
    pub web_config: Option<String>,
    /// Files written into the Prometheus directory before it starts (name, content), e.g. certificates.
    pub files: Vec<(String, Vec<u8>)>,
    /// Log every query to a file ([`Prometheus::query_log`]).
    pub query_log: bool,
    /// More command-line arguments.
    pub extra_args: Vec<String>,
    /// The address it listens on (default 127.0.0.1), e.g. the node's bridge address, where pods
    /// reach it too.
    pub host: Option<String>,
    /// The `scrape_configs:` list, as YAML (default: none).
    pub scrape_configs: Option<String>,
    /// Another Prometheus binary than Debian's (which is built without Kubernetes service
    /// discovery), e.g. the one `scripts/build_k8s.sh node` builds.
    pub binary: Option<PathBuf>,
}

/// A real Prometheus on 127.0.0.1 with a private, backfilled TSDB. Killed on drop.
pub struct Prometheus {
    dir: TestDir,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    options: PrometheusOptions,
    /// How long `promtool` took to write the TSDB blocks.
    pub backfill_time: Duration,
    /// How long the last (re)start took until `/-/ready` answered 200.
    pub start_time: Duration,
}

impl Prometheus {
    /// Backfills `openmetrics` (see [`openmetrics_gauge`]) into a fresh TSDB with 24h blocks, then starts
    /// Prometheus on a free port with 400d retention (retention counts from the newest block) and waits for ready.
    /// End the history a little before "now".
    pub fn start_with_history(openmetrics: &str) -> Prometheus {
        Self::start_with(openmetrics, PrometheusOptions::default())
    }

    /// [`Prometheus::start_with_history`] with a web config (TLS, basic auth), a query log or more arguments.
    pub fn start_with(openmetrics: &str, options: PrometheusOptions) -> Prometheus {
        if options.binary.is_none() {
            require_tool("prometheus");
        }
        let promtool = require_tool("promtool");
        let dir = TestDir::new("prometheus");
        let history = dir.path().join("history.om");
        let data = dir.path().join("data");
        fs::write(&history, openmetrics).expect("write history.om");
        let query_log = if options.query_log {
            format!(
                "  query_log_file: {}\n",
                dir.path().join("query.log").display()
            )
        } else {
            String::new()
        };
        fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n{query_log}scrape_configs: {}\n",
                options.scrape_configs.as_deref().unwrap_or("[]")
            ),
        )
        .expect("write prometheus.yml");
        for (name, content) in &options.files {
            fs::write(dir.path().join(name), content)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        if let Some(web) = &options.web_config {
            fs::write(dir.path().join("web.yml"), web).expect("write web.yml");
        }

        let t = Instant::now();
        let out = Command::new(promtool)
            .args([
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
                "-q",
            ])
            .arg(&history)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let backfill_time = t.elapsed();
        let blocks = fs::read_dir(&data)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().join("meta.json").exists())
                    .count()
            })
            .unwrap_or(0);

        let mut prom = Prometheus {
            log: dir.path().join("prometheus.log"),
            dir,
            port: free_port(),
            child: None,
            options,
            backfill_time,
            start_time: Duration::ZERO,
        };
        prom.spawn_and_wait_ready();
        report(&format!(
            "[harness] prometheus: backfilled {} samples ({} KiB, {blocks} blocks) in {:.2?}; ready in {:.2?} at {}",
            openmetrics.lines().filter(|l| !l.starts_with('#')).count(),
            openmetrics.len() / 1024,
            prom.backfill_time,
            prom.start_time,
            prom.url()
        ));
        prom
    }

    /// `http://HOST:PORT` (`https://` when the web config has TLS)
    pub fn url(&self) -> String {
        let tls = self
            .options
            .web_config
            .as_deref()
            .is_some_and(|w| w.contains("tls_server_config"));
        format!("{}://{}", if tls { "https" } else { "http" }, self.addr())
    }

    /// `HOST:PORT` (127.0.0.1 unless `PrometheusOptions::host` says otherwise)
    pub fn addr(&self) -> String {
        let host = self.options.host.as_deref().unwrap_or("127.0.0.1");
        format!("{host}:{}", self.port)
    }

    /// The directory of its config, data and `files`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The query log (with `PrometheusOptions::query_log`): one JSON object per query Prometheus ran, with
    /// `params.query`, `params.start`, `params.end` (RFC 3339) and `params.step` (seconds).
    pub fn query_log(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.path().join("query.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Kills Prometheus (SIGKILL: no clean shutdown, like a crash or a network cut).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port with the same data, and waits for ready.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait_ready();
        eprintln!(
            "[harness] prometheus: restarted, ready in {:.2?}",
            self.start_time
        );
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// An instant query; returns `data.result`. Panics when the query fails.
    pub fn query(&self, promql: &str) -> Value {
        let url = format!("{}/api/v1/query?query={}", self.url(), url_encode(promql));
        let resp =
            http_request("GET", &url, None, None).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let v = resp.json();
        assert!(
            resp.status == 200 && v["status"] == "success",
            "query {promql:?} failed: {}",
            resp.body
        );
        v["data"]["result"].clone()
    }

    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log, n)
    }

    fn spawn_and_wait_ready(&mut self) {
        let d = self.dir.path();
        let mut args = vec![
            format!("--config.file={}", d.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", d.join("data").display()),
            "--storage.tsdb.retention.time=400d".to_string(),
            format!("--web.listen-address={}", self.addr()),
        ];
        if self.options.web_config.is_some() {
            args.push(format!("--web.config.file={}", d.join("web.yml").display()));
        }
        args.extend(self.options.extra_args.iter().cloned());
        let log_lines_before = fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let t = Instant::now();
        let binary = match &self.options.binary {
            Some(b) => b.clone(),
            None => require_tool("prometheus"),
        };
        self.child = Some(spawn_with_output(
            &binary,
            &args,
            &[],
            Output::File(self.log.clone()),
        ));
        let ready = format!("{}/-/ready", self.url());
        let web_config = self.options.web_config.is_some();
        let ok = wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
            if !self.is_running() {
                panic!(
                    "prometheus exited during start-up; its log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if web_config {
                // TLS and basic auth keep the plain client of this harness out: wait for the log line instead
                let text = fs::read_to_string(&self.log).unwrap_or_default();
                return text
                    .lines()
                    .skip(log_lines_before)
                    .any(|l| l.contains("Server is ready to receive web requests"))
                    .then_some(());
            }
            http_request("GET", &ready, None, None)
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
        assert!(
            ok.is_some(),
            "prometheus not ready after 60 s; its log:\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
        self.start_time = t.elapsed();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        kill(&mut self.child);
        print_tail_if_panicking("prometheus", &self.log);
    }
}
