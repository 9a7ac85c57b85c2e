//! Real-process test harness, shared by the integration tests (`mod support;`).
//!
//! - [`Prometheus`]: a real Prometheus 2.42 on 127.0.0.1, its TSDB backfilled from OpenMetrics text with `promtool`
//!   ([`openmetrics_gauge`] writes such text).
//! - [`cluster`]: a real control plane (etcd, kube-apiserver, kube-controller-manager) and a fault-injecting
//!   proxy in front of its API server.
//! - [`Controller`]: the `prescale` binary under test, its output in a log file that is printed when a test fails.
//! - [`wait_until`]: polling with a deadline, instead of sleeps.
//! - [`TestPki`], [`bcrypt_hash`]: certificates and password hashes for Prometheus's `--web.config.file`;
//!   [`AuthProxy`] (a bearer-token gate in front of Prometheus) and [`BlackHole`] (a listener that never answers).
//!
//! Only std + the package's own dependencies: HTTP is a minimal HTTP/1.1 client over `TcpStream`. Missing tools
//! are a panic that says to run `scripts/setup.sh`: these tests are mandatory, never skipped.
//!
//! Every child process is spawned by one long-lived harness thread with `setpriv --pdeathsig KILL` (util-linux),
//! so it dies with the test binary even when the binary is killed and no `Drop` runs.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cluster;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Lines of a child's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// Polls `f` every `poll` until it returns `Some`, or `timeout` has passed (then one last try, and `None`).
pub fn wait_until<T>(
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it before it is used).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The path of `name` on PATH, or a panic that says how to install it.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH. Run scripts/setup.sh (it installs Prometheus + promtool and the Python \
                 test venv); these tests are mandatory and are not skipped."
            )
        })
}

/// Prints a measurement (with `--nocapture`) and appends it to `<target>/tmp/test-timings.log`, which
/// `scripts/test.sh` prints after `cargo test`, so CI logs keep the figures.
pub fn report(msg: &str) {
    eprintln!("{msg}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-timings.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{msg}");
    }
}

/// The condition of `type_` in `obj.status.conditions`, if any.
pub fn find_condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

// === temporary directories ===

/// A fresh directory under the system temp dir, removed on drop (kept when the test panics, or when
/// `PRESCALE_KEEP_TEST_DIRS` is set, so logs and data can be inspected).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(what: &str) -> TestDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "prescale-{what}-{}-{}-{nanos:x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path, never removed by this value (someone else cleans it up).
    pub fn into_path_kept(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PRESCALE_KEEP_TEST_DIRS").is_some() {
            eprintln!("[harness] kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// === child processes ===

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// A command for `program` that runs under `setpriv --pdeathsig KILL` where util-linux has it (Debian: always).
fn command(program: &Path) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if Path::new(SETPRIV).exists() {
        let mut cmd = Command::new(SETPRIV);
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Spawns `cmd` from the harness thread, which lives as long as the test binary. `PR_SET_PDEATHSIG` fires when the
/// *thread* that forked a child exits, so forking from a test's own thread would kill a child shared between tests
/// (e.g. the shared control plane in a `static`) when the first test ends.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the harness thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap()
        .send((cmd, reply_tx))
        .expect("harness thread gone");
    reply_rx.recv().expect("harness thread gone")
}

/// Where a child's stdout/stderr go.
enum Output {
    /// Both appended to this file.
    File(PathBuf),
    /// stdout piped (read by the caller), stderr appended to this file.
    PipedStdout(PathBuf),
}

fn spawn_with_output(
    program: &Path,
    args: &[String],
    envs: &[(String, String)],
    out: Output,
) -> Child {
    let mut cmd = command(program);
    cmd.args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let open = |p: &Path| {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
    };
    match out {
        Output::File(log) => {
            let f = open(&log);
            let f2 = f.try_clone().expect("dup log file");
            cmd.stdout(f).stderr(f2);
        }
        Output::PipedStdout(log) => {
            cmd.stdout(Stdio::piped()).stderr(open(&log));
        }
    }
    spawn(cmd).unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The last `n` lines of a file (lossy UTF-8), or a note that it cannot be read.
pub fn file_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn print_tail_if_panicking(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "\n===== last {LOG_TAIL_LINES} lines of the {what} log ({}) =====\n{}\n===== end of the {what} log =====",
            log.display(),
            file_tail(log, LOG_TAIL_LINES)
        );
    }
}

// === HTTP ===

/// A response: status code and body text.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON (`Value::Null` when empty, `Value::String` when not JSON).
    pub fn json(&self) -> Value {
        if self.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A minimal HTTP/1.1 client (one request per connection) for `http://host:port/...` URLs.
pub fn http_request(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("only http:// URLs: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        let _ = write!(head, "Content-Type: {ct}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = |what: &str| std::io::Error::other(format!("bad HTTP response: {what}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("chunk size"))?;
            let size_text = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size {
                return Err(bad("truncated chunk"));
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// === OpenMetrics ===

/// OpenMetrics text for one gauge family with one series: `f(t)` at `start_unix, start_unix + step_s, ...,
/// <= end_unix` (ascending timestamps, in seconds), ending with `# EOF`. Input for `promtool tsdb
/// create-blocks-from openmetrics`.
pub fn openmetrics_gauge(
    name: &str,
    labels: &[(&str, &str)],
    start_unix: i64,
    end_unix: i64,
    step_s: i64,
    f: impl Fn(i64) -> f64,
) -> String {
    assert!(step_s > 0, "step_s must be > 0");
    assert!(end_unix >= start_unix, "end_unix before start_unix");
    let labels = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    let n = ((end_unix - start_unix) / step_s + 1) as usize;
    let mut out = String::with_capacity(n * (series.len() + 24) + 64);
    let _ = writeln!(out, "# TYPE {name} gauge");
    let mut t = start_unix;
    while t <= end_unix {
        let v = f(t);
        let v = if v.is_nan() {
            "NaN".to_string()
        } else if v.is_infinite() {
            if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
        } else {
            v.to_string()
        };
        let _ = writeln!(out, "{series} {v} {t}");
        t += step_s;
    }
    out.push_str("# EOF\n");
    out
}

// === Prometheus ===

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
        require_tool("prometheus");
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
                "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n{query_log}scrape_configs: []\n"
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

    /// `http://127.0.0.1:PORT` (`https://` when the web config has TLS)
    pub fn url(&self) -> String {
        let tls = self
            .options
            .web_config
            .as_deref()
            .is_some_and(|w| w.contains("tls_server_config"));
        format!(
            "{}://127.0.0.1:{}",
            if tls { "https" } else { "http" },
            self.port
        )
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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
            format!("--web.listen-address=127.0.0.1:{}", self.port),
        ];
        if self.options.web_config.is_some() {
            args.push(format!("--web.config.file={}", d.join("web.yml").display()));
        }
        args.extend(self.options.extra_args.iter().cloned());
        let log_lines_before = fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let t = Instant::now();
        self.child = Some(spawn_with_output(
            &require_tool("prometheus"),
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

// === the controller binary ===

/// The `prescale` binary of this package, running with `args`; stdout and stderr go to a log file whose tail is
/// printed when the test panics. Killed on drop.
pub struct Controller {
    dir: TestDir,
    child: Option<Child>,
    log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

impl Controller {
    /// Spawns `prescale ARGS` with `RUST_LOG=info` and `NO_COLOR=1` (unless `envs` sets them) plus `envs`, e.g.
    /// `("KUBECONFIG", cluster.kubeconfig_path())`.
    pub fn start<K: AsRef<str>, V: AsRef<std::ffi::OsStr>>(
        args: &[&str],
        envs: &[(K, V)],
    ) -> Controller {
        // PRESCALE_TEST_BIN: run the tests against another build (e.g. an older commit's, to see
        // a test fail where the defect it guards against is)
        let bin = std::env::var_os("PRESCALE_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_prescale")));
        let dir = TestDir::new("controller");
        let log = dir.path().join("controller.log");
        // NO_COLOR: tracing-subscriber writes ANSI colours even into a file otherwise.
        let mut all_envs = vec![
            ("RUST_LOG".to_string(), "info".to_string()),
            ("NO_COLOR".to_string(), "1".to_string()),
        ];
        for (k, v) in envs {
            all_envs.push((
                k.as_ref().to_string(),
                v.as_ref().to_string_lossy().into_owned(),
            ));
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        eprintln!("[harness] controller: {} {}", bin.display(), args.join(" "));
        let started = Instant::now();
        let child = spawn_with_output(&bin, &args, &all_envs, Output::File(log.clone()));
        Controller {
            dir,
            child: Some(child),
            log,
            started,
        }
    }

    /// Panics (with the log tail) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "the controller exited ({status}); its log:\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        file_tail(&self.log, n)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process's peak resident memory so far (`VmHWM` of /proc/PID/status), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// Panics if the API server refused the operator anything (its RBAC is short of a verb).
    pub fn assert_never_forbidden(&self) {
        let log = self.log();
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the API server refused the operator something (RBAC):\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
    }

    /// Sends SIGTERM (a graceful stop, as the kubelet does) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it now.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        kill(&mut self.child);
        print_tail_if_panicking("controller", &self.log);
    }
}

/// Joins OpenMetrics texts (each ending with `# EOF`, as [`openmetrics_gauge`] writes them) into one backfill input.
/// Each part must be a different metric family.
pub fn join_openmetrics(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(p.trim_end().strip_suffix("# EOF").unwrap_or(p).trim_end());
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

// === TLS and basic auth material ===

/// A test PKI made with rcgen: a CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
/// it, and a second, unrelated CA. All PEM.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub other_ca_pem: String,
}

impl TestPki {
    pub fn generate() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose, SanType,
        };
        let ca = |cn: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
        };
        let ca_issuer = ca("prescale test CA");
        let other = ca("some other CA");
        let leaf = |cn: &str, server: bool| {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .subject_alt_names
                .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
            params.extended_key_usages = vec![if server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca_issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf("prometheus", true);
        let (client_cert_pem, client_key_pem) = leaf("prescale", false);
        TestPki {
            ca_pem: ca_issuer.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            other_ca_pem: other.pem(),
        }
    }
}

/// A bcrypt hash of `password` for Prometheus's `basic_auth_users` (cost 4: fast, it is a test).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

// === misbehaving endpoints ===

/// A TCP listener that accepts connections and never answers: a source slower than any timeout.
pub struct BlackHole {
    port: u16,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream); // kept open, never read or written
            }
        });
        BlackHole { port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Reads an HTTP request's head (up to the blank line) from `client`, with a 30 s read
/// timeout; `None` when the client closed first.
fn read_request_head(client: &mut TcpStream) -> std::io::Result<Option<String>> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// One request the [`AuthProxy`] saw.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    pub path: String,
    /// Whether `Authorization: Bearer <token>` matched.
    pub authorized: bool,
    /// The request headers, lower-case names, with `authorization` left out.
    pub headers: Vec<(String, String)>,
}

/// A bearer-token gate in front of a real Prometheus, like kube-rbac-proxy or an OAuth proxy: it answers 401
/// unless `Authorization: Bearer <token>` matches, and forwards the request otherwise (one request per connection,
/// so every request is checked).
pub struct AuthProxy {
    port: u16,
    token: std::sync::Arc<Mutex<String>>,
    seen: std::sync::Arc<Mutex<Vec<ProxiedRequest>>>,
}

impl AuthProxy {
    pub fn start(upstream: &str, token: &str) -> AuthProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let token = std::sync::Arc::new(Mutex::new(token.to_string()));
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (t, s, up) = (token.clone(), seen.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (t, s, up) = (t.clone(), s.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &up, &t, &s);
                });
            }
        });
        AuthProxy { port, token, seen }
    }

    fn serve(
        mut client: TcpStream,
        upstream: &str,
        token: &Mutex<String>,
        seen: &Mutex<Vec<ProxiedRequest>>,
    ) -> std::io::Result<()> {
        let Some(text) = read_request_head(&mut client)? else {
            return Ok(());
        };
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let want = format!("Bearer {}", token.lock().unwrap());
        let mut authorized = false;
        let mut headers = Vec::new();
        let mut forward = format!("{request_line}\r\n");
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "authorization" {
                authorized = v == want;
                continue;
            }
            if k == "connection" {
                continue;
            }
            forward.push_str(&format!("{k}: {v}\r\n"));
            headers.push((k, v));
        }
        forward.push_str("connection: close\r\n\r\n");
        seen.lock().unwrap().push(ProxiedRequest {
            path,
            authorized,
            headers,
        });
        if !authorized {
            client.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nUnauthorized\n",
            )?;
            return Ok(());
        }
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(forward.as_bytes())?;
        std::io::copy(&mut up, &mut client)?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Accept only this token from now on (a rotation).
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap() = token.to_string();
    }

    pub fn seen(&self) -> Vec<ProxiedRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// A proxy in front of a real Prometheus that can be told to misbehave: `forward` (pass
/// through), `500` (HTTP 500), `garbage` (200 with a body that is not JSON), `slow` (answer
/// nothing for 60 s). One request per connection.
pub struct FaultProxy {
    port: u16,
    mode: std::sync::Arc<Mutex<String>>,
    requests: std::sync::Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = std::sync::Arc::new(Mutex::new("forward".to_string()));
        let requests = std::sync::Arc::new(AtomicUsize::new(0));
        let (m, r, up) = (mode.clone(), requests.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, up) = (m.lock().unwrap().clone(), up.clone());
                r.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = Self::serve(stream, &up, &m);
                });
            }
        });
        FaultProxy {
            port,
            mode,
            requests,
        }
    }

    fn serve(mut client: TcpStream, upstream: &str, mode: &str) -> std::io::Result<()> {
        let Some(text) = read_request_head(&mut client)? else {
            return Ok(());
        };
        let mut lines = text.split("\r\n");
        let mut forward = format!("{}\r\n", lines.next().unwrap_or_default());
        let mut length = 0usize;
        for l in lines.filter(|l| !l.is_empty()) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let k = k.trim().to_ascii_lowercase();
            if k == "connection" {
                continue;
            }
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
            forward.push_str(&format!("{k}: {}\r\n", v.trim()));
        }
        forward.push_str("connection: close\r\n\r\n");
        let mut body = vec![0u8; length];
        client.read_exact(&mut body)?;
        let reply = |client: &mut TcpStream, status: &str, body: &str| {
            client.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
        };
        match mode {
            "500" => reply(&mut client, "500 Internal Server Error", "internal error\n"),
            "garbage" => reply(&mut client, "200 OK", "<html>this is not JSON{{"),
            "slow" => {
                std::thread::sleep(Duration::from_secs(60));
                Ok(())
            }
            _ => {
                let mut up = TcpStream::connect(upstream)?;
                up.write_all(forward.as_bytes())?;
                up.write_all(&body)?;
                std::io::copy(&mut up, &mut client)?;
                Ok(())
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_mode(&self, mode: &str) {
        *self.mode.lock().unwrap() = mode.to_string();
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_shape() {
        let text = openmetrics_gauge("m", &[("a", "x\"y")], 60, 180, 60, |t| t as f64 / 60.0);
        assert_eq!(
            text,
            "# TYPE m gauge\nm{a=\"x\\\"y\"} 1 60\nm{a=\"x\\\"y\"} 2 120\nm{a=\"x\\\"y\"} 3 180\n# EOF\n"
        );
    }

    #[test]
    fn chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = parse_http_response(raw).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "abcde"));
    }
}
