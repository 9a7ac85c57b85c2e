//! The `prescale` binary under test, as a child process with its log.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::process::{
    LOG_TAIL_LINES, Output, file_tail, kill, print_tail_if_panicking, spawn_with_output,
};
use super::tempdir::TestDir;

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
        self.status_mib("VmHWM:")
    }

    /// The process's resident memory now (`VmRSS` of /proc/PID/status), in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        self.status_mib("VmRSS:")
    }

    /// A `kB` field of /proc/PID/status, in MiB.
    fn status_mib(&self, field: &str) -> Option<f64> {
        let pid = self.child.as_ref()?.id();
        let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(field))?
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
