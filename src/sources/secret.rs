//! Credentials read from files: a [`Secret`] never shows its value in `Debug` or `Display`,
//! and a [`SecretFile`] re-reads its file at most once per interval, so rotated tokens (e.g.
//! projected service-account tokens) are picked up without a restart. IO: reads those files.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::{info, warn};

/// How often a secret file is read again by default.
pub const SECRET_REFRESH: Duration = Duration::from_secs(60);

/// A credential. Its value is only reachable through [`Secret::expose`]; `Debug` prints
/// `<redacted>` and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret file cannot be used. Names the file, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
}

/// Why a file cannot be read, in a few words (no path, no content).
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        kind => kind.to_string(),
    }
}

/// Reads a secret file: the content without the trailing newline (as Kubernetes secrets and
/// `echo` write them). An empty file is an error.
fn read_secret_file(path: &Path) -> Result<Secret, SecretFileError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SecretFileError::Read {
        path: shown.clone(),
        message: io_reason(&e),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        path: shown.clone(),
    })?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(SecretFileError::Empty { path: shown });
    }
    Ok(Secret::new(value))
}

/// A secret kept in a file, read at start-up and again at most every `refresh`. When a
/// re-read fails, the last good value stays in use (and a warning is logged).
#[derive(Debug)]
pub struct SecretFile {
    path: PathBuf,
    refresh: Duration,
    last: Mutex<LastRead>,
}

/// The value a [`SecretFile`] holds, and when its file was last read.
#[derive(Debug)]
struct LastRead {
    secret: Secret,
    at: Instant,
}

impl SecretFile {
    /// Reads `path` now; fails when it cannot be read or is empty.
    pub fn open(path: impl Into<PathBuf>, refresh: Duration) -> Result<Self, SecretFileError> {
        let path = path.into();
        let secret = read_secret_file(&path)?;
        Ok(Self {
            path,
            refresh,
            last: Mutex::new(LastRead {
                secret,
                at: Instant::now(),
            }),
        })
    }

    /// The current value, re-read from the file when the last read is older than `refresh`.
    pub fn get(&self) -> Secret {
        let mut last = self.last.lock().expect("secret lock");
        if last.at.elapsed() >= self.refresh {
            last.at = Instant::now();
            match read_secret_file(&self.path) {
                Ok(s) if s != last.secret => {
                    info!(file = %self.path.display(), "secret file changed; using the new value");
                    last.secret = s;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "re-reading a secret file failed; keeping the last value")
                }
            }
        }
        last.secret.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_is_read_again_after_the_interval_and_keeps_the_last_good_value() {
        let dir = std::env::temp_dir().join(format!("prescale-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "one\n").unwrap();
        let f = SecretFile::open(&path, Duration::from_millis(50)).unwrap();
        assert_eq!(f.get().expose(), "one", "trailing newline removed");
        std::fs::write(&path, "two").unwrap();
        assert_eq!(f.get().expose(), "one", "not re-read before the interval");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(f.get().expose(), "two", "re-read after the interval");
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            f.get().expose(),
            "two",
            "a missing file keeps the last value"
        );
        assert!(!format!("{f:?}").contains("two"), "{f:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_and_empty_files_are_errors_that_name_the_file() {
        let dir = std::env::temp_dir().join(format!("prescale-secret-e-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = SecretFile::open(&empty, SECRET_REFRESH).unwrap_err();
        assert!(e.to_string().ends_with("empty is empty"), "{e}");
        let e = SecretFile::open(dir.join("nope"), SECRET_REFRESH).unwrap_err();
        assert!(
            e.to_string().contains("nope") && e.to_string().contains("no such file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
