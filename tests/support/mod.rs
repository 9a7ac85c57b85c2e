//! Real-process test harness, shared by the integration tests (`mod support;`). One module per concern;
//! what the tests use is re-exported here, so a test imports `support::X`:
//!
//! - [`prometheus`]: [`Prometheus`], a real Prometheus 2.42 on 127.0.0.1, its TSDB backfilled from OpenMetrics
//!   text with `promtool` ([`openmetrics`]: [`openmetrics_gauge`] and [`join_openmetrics`] write such text).
//! - [`cluster`]: a real control plane (etcd, kube-apiserver, kube-controller-manager) and a fault-injecting
//!   proxy in front of its API server.
//! - [`node`]: [`node::NodeCluster`], a cluster with a real node (containerd, a kubelet) from
//!   `scripts/cluster.sh up`, and the images of `scripts/image.sh` loaded into it.
//! - [`controller`]: [`Controller`], the `prescale` binary under test, its output in a log file that is printed
//!   when a test fails.
//! - [`tls`]: [`TestPki`], [`bcrypt_hash`]: certificates and password hashes for Prometheus's
//!   `--web.config.file`.
//! - [`misbehaving`]: [`AuthProxy`] (a bearer-token gate in front of Prometheus), [`FaultProxy`] (a proxy told to
//!   fail) and [`BlackHole`] (a listener that never answers).
//! - [`http`]: a minimal HTTP/1.1 client over `TcpStream` ([`http_request`]).
//! - [`scenario`]: what the end-to-end scaler tests share (paths, the fixture's flat load, the operator
//!   as the chart's ServiceAccount, waiting on an object while it runs).
//! - [`process`]: how every child process is spawned; [`tempdir`]: [`TestDir`].
//! - Here: [`wait_until`] (polling with a deadline, instead of sleeps), [`free_port`], [`report`] and the like.
//!
//! Only std + the package's own dependencies. Missing tools are a panic that says to run `scripts/setup.sh`:
//! these tests are mandatory, never skipped.
//!
//! Every child process is spawned by one long-lived harness thread with `setpriv --pdeathsig KILL` (util-linux),
//! so it dies with the test binary even when the binary is killed and no `Drop` runs.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cluster;
mod controller;
mod http;
mod misbehaving;
pub mod node;
mod openmetrics;
mod process;
mod prometheus;
pub mod scenario;
mod tempdir;
mod tls;

// what the tests use, as `support::X`; each test binary uses a different part of it
#[allow(unused_imports)]
pub use self::{
    controller::Controller,
    http::{HttpResponse, http_request, url_encode},
    misbehaving::{AuthProxy, BlackHole, FaultProxy, ProxiedRequest},
    openmetrics::{join_openmetrics, openmetrics_gauge},
    process::file_tail,
    prometheus::{Prometheus, PrometheusOptions},
    tempdir::TestDir,
    tls::{TestPki, bcrypt_hash},
};

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

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
