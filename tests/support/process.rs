//! Child processes: spawned from one long-lived harness thread under `setpriv --pdeathsig KILL`,
//! so they die with the test binary, their output in log files whose tail a failing test prints.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};

/// Lines of a child's log printed when a test fails.
pub(super) const LOG_TAIL_LINES: usize = 80;

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
pub(super) enum Output {
    /// Both appended to this file.
    File(PathBuf),
    /// stdout piped (read by the caller), stderr appended to this file.
    PipedStdout(PathBuf),
}

pub(super) fn spawn_with_output(
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

/// Kills the child, if any, and reaps it.
pub(super) fn kill(child: &mut Option<Child>) {
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

/// Prints the tail of `log` when the current thread is panicking (a test failing).
pub(super) fn print_tail_if_panicking(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "\n===== last {LOG_TAIL_LINES} lines of the {what} log ({}) =====\n{}\n===== end of the {what} log =====",
            log.display(),
            file_tail(log, LOG_TAIL_LINES)
        );
    }
}
