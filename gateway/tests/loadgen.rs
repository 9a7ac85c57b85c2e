//! The load generator: the trace parser on the bundled trace, and replays against a gateway served
//! in-process (or against no target at all).

mod support;

use std::{path::PathBuf, time::Duration};

use prescale_demo_gateway::{
    loadgen::{self, Options, Summary, Targets},
    metrics::Outcome,
    trace::{Trace, parse_trace, read_trace},
};
use support::start;

fn bundled_trace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/traces/llm-proxy-21d.csv")
}

/// A trace of `values` one `step` apart.
fn trace(step: i64, values: &[f64]) -> Trace {
    let mut text = String::from("timestamp,requests\n");
    for (i, v) in values.iter().enumerate() {
        text += &format!("{},{v}\n", 1_772_409_600 + step * i as i64);
    }
    parse_trace(&text, None).unwrap()
}

fn options(trace: Trace, speed: f64, start: Duration, duration: Duration) -> Options {
    Options {
        trace,
        speed,
        start,
        duration: Some(duration),
        scale: 1.0,
        max_in_flight: 1000,
        path: "/v1/chat/completions".into(),
        timeout: Duration::from_secs(5),
    }
}

async fn replay(opts: &Options, targets: std::sync::Arc<Targets>) -> (Summary, Vec<String>) {
    let mut out = Vec::new();
    let summary = loadgen::run(opts, targets, &mut out, std::future::pending())
        .await
        .unwrap();
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    (summary, lines)
}

#[test]
fn the_parser_reads_the_bundled_trace() {
    let t = read_trace(&bundled_trace(), None).unwrap();
    assert_eq!(t.column, "requests");
    assert_eq!(t.start, 1_772_409_600);
    assert_eq!(t.step, 60);
    assert_eq!(t.values.len(), 21 * 24 * 60);
    assert_eq!(t.span(), Duration::from_secs(21 * 86_400));
    assert_eq!(&t.values[..3], &[206.0, 188.0, 237.0]);
    assert!(t.values.iter().all(|v| v.is_finite() && *v >= 0.0));
    // the quick start's numbers (docs/quick-start.md): the daily rise begins near 06:00
    let peak = t.values.iter().cloned().fold(0.0, f64::max);
    assert!((2000.0..3000.0).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn loadgen_counts_ok_and_rejected_as_the_gateway_does() {
    let gw = start(5.0, Duration::ZERO, Duration::from_millis(10)).await;
    let targets = Targets::new(vec![format!("http://{}", gw.addr)]);
    let opts = options(
        trace(60, &[20.0; 10]),
        1.0,
        Duration::ZERO,
        Duration::from_secs(3),
    );
    let (summary, lines) = replay(&opts, targets).await;
    let c = summary.totals;
    assert_eq!(c.sent, 60, "{c:?}");
    assert_eq!(c.ok + c.rejected, c.sent, "{c:?}");
    assert_eq!((c.unavailable, c.failed, c.skipped), (0, 0, 0), "{c:?}");
    // the loadgen saw what the gateway counted
    let m = &gw.gateway.metrics;
    assert_eq!(c.ok, m.requests(Outcome::Served));
    assert_eq!(c.rejected, m.requests(Outcome::Rejected));
    // 3 s at 5/s plus a burst of 5 (and a little slack for the clock)
    assert!(c.ok <= 21 && c.ok >= 15, "{c:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("t=+0h00m00s rate=20/s sent=20 ok="),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("t=+0h00m01s "), "{lines:?}");
    assert!(lines.iter().all(|l| l.ends_with(" targets=1")), "{lines:?}");
    let per_line: u64 = lines.iter().map(|l| field(l, "ok")).sum();
    assert!(per_line <= c.ok, "{lines:?}");
    let text = summary.describe();
    assert!(
        text.contains(&format!("sent 60, ok {}, rejected {}", c.ok, c.rejected)),
        "{text}"
    );
    let lost = format!(
        "rejected+unavailable: {:.2}%",
        100.0 * c.rejected as f64 / 60.0
    );
    assert!(text.contains(&lost), "{text}");
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn speed_and_start_pick_the_trace_rate_and_no_target_is_unavailable() {
    // one row a minute: 10, 20, 30, 40 requests/s; from minute 1, two minutes at 60x: 2 s
    let opts = options(
        trace(60, &[10.0, 20.0, 30.0, 40.0]),
        60.0,
        Duration::from_secs(60),
        Duration::from_secs(120),
    );
    let (summary, lines) = replay(&opts, Targets::new(vec![])).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        "t=+0h01m rate=20/s sent=20 ok=0 rejected=0 unavailable=20 targets=0"
    );
    assert_eq!(
        lines[1],
        "t=+0h02m rate=30/s sent=30 ok=0 rejected=0 unavailable=30 targets=0"
    );
    assert_eq!(summary.totals.unavailable, 50);
    assert_eq!(
        (summary.from, summary.to),
        (Duration::from_secs(60), Duration::from_secs(180))
    );
    assert!(summary.describe().contains("rejected+unavailable: 100.00%"));
}

#[tokio::test]
async fn a_start_past_the_end_is_an_error() {
    let opts = options(
        trace(60, &[1.0, 1.0]),
        1.0,
        Duration::from_secs(3600),
        Duration::from_secs(1),
    );
    let mut out = Vec::new();
    let err = loadgen::run(
        &opts,
        Targets::new(vec![]),
        &mut out,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("past the trace's end"), "{err}");
}

#[test]
fn the_binaries_replay_against_each_other() {
    // a free port for the gateway binary
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut gateway = std::process::Command::new(env!("CARGO_BIN_EXE_prescale-demo-gateway"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PRESCALE_GATEWAY_CAPACITY", "4")
        .env("PRESCALE_GATEWAY_WARMUP", "0s")
        .env("PRESCALE_GATEWAY_LATENCY", "5ms")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until it answers
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = std::env::temp_dir().join(format!("prescale-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("trace.csv");
    std::fs::write(&csv, "timestamp,requests\n0,10\n60,10\n120,10\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prescale-loadgen"))
        .arg("--trace")
        .arg(&csv)
        .args(["--duration", "2s", "--target", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("t=+0h00m00s rate=10/s sent=10 "),
        "{stdout}"
    );
    assert!(stdout.contains("sent 20, ok "), "{stdout}");
    assert!(stdout.contains("rejected+unavailable: "), "{stdout}");
    // SIGTERM: the gateway exits 0 and says why
    let term = std::process::Command::new("kill")
        .args(["-TERM", &gateway.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = gateway.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(gateway.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!log.contains("{ "), "a Debug dump in the log: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The number after ` name=` in a per-second line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    line.split(' ')
        .find_map(|w| w.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .parse()
        .unwrap()
}
