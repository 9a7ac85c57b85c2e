//! The flags (and environment variables) that configure metric sources: the sources file and
//! the source named `default`, shared by `prescale run`, `prescale forecast` and
//! `prescale simulate`. They become [`SourceConfig`]s, which [`crate::sources`] checks and builds.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    api::duration::parse_duration,
    sources::{
        Sources, build_sources,
        config::{
            BasicAuthConfig, ConfigError, DEFAULT_SOURCE, SourceConfig, TlsConfig, check_names,
            read_sources_file,
        },
    },
};

/// Flags (and environment variables) for the source named `default`, and the sources file.
/// Shared by `prescale run`, `prescale forecast` and `prescale simulate`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourceFlags {
    /// A YAML file of named sources (`sources: [{name, url, timeout, bearerTokenFile,
    /// basicAuth, tls, headers}]`), e.g. mounted from a ConfigMap.
    #[arg(long, visible_alias = "sources", env = "PRESCALE_SOURCES_FILE")]
    pub sources_file: Option<PathBuf>,
    /// URL of the Prometheus HTTP API that defines the source named `default`.
    #[arg(long, visible_alias = "source-url", env = "PRESCALE_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Timeout of one request (the default of every source that sets none).
    #[arg(
        long,
        visible_alias = "timeout",
        env = "PRESCALE_PROMETHEUS_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration_arg
    )]
    pub prometheus_timeout: Duration,
    /// `default` source: a file holding a bearer token (re-read every minute).
    #[arg(
        long,
        visible_alias = "bearer-token-file",
        env = "PRESCALE_PROMETHEUS_BEARER_TOKEN_FILE"
    )]
    pub prometheus_bearer_token_file: Option<PathBuf>,
    /// `default` source: basic-auth user name (with --prometheus-password-file).
    #[arg(long, visible_alias = "username", env = "PRESCALE_PROMETHEUS_USERNAME")]
    pub prometheus_username: Option<String>,
    /// `default` source: a file holding the basic-auth password (re-read every minute).
    #[arg(
        long,
        visible_alias = "password-file",
        env = "PRESCALE_PROMETHEUS_PASSWORD_FILE"
    )]
    pub prometheus_password_file: Option<PathBuf>,
    /// `default` source: PEM CA certificate(s) to trust instead of the system's.
    #[arg(long, visible_alias = "ca-file", env = "PRESCALE_PROMETHEUS_CA_FILE")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// `default` source: PEM client certificate for mutual TLS.
    #[arg(
        long,
        visible_alias = "cert-file",
        env = "PRESCALE_PROMETHEUS_CERT_FILE"
    )]
    pub prometheus_cert_file: Option<PathBuf>,
    /// `default` source: PEM private key of the client certificate.
    #[arg(long, visible_alias = "key-file", env = "PRESCALE_PROMETHEUS_KEY_FILE")]
    pub prometheus_key_file: Option<PathBuf>,
    /// `default` source: accept any server certificate (insecure; logged as a warning).
    #[arg(
        long,
        visible_alias = "insecure-skip-verify",
        env = "PRESCALE_PROMETHEUS_INSECURE_SKIP_VERIFY"
    )]
    pub prometheus_insecure_skip_verify: bool,
    /// `default` source: an extra request header NAME=VALUE (repeatable; comma-separated in
    /// the environment), e.g. X-Scope-OrgID=team-a.
    #[arg(
        long = "prometheus-header",
        visible_alias = "header",
        value_name = "NAME=VALUE",
        env = "PRESCALE_PROMETHEUS_HEADERS",
        value_delimiter = ','
    )]
    pub prometheus_headers: Vec<String>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

impl SourceFlags {
    /// The `default` source the flags describe, if a URL is given. Auth/TLS flags without a
    /// URL are an error.
    pub fn default_source(&self) -> Result<Option<SourceConfig>, ConfigError> {
        let Some(url) = &self.prometheus_url else {
            if self.any_default_source_setting() {
                return Err(ConfigError(
                    "authentication, TLS and header flags apply to --prometheus-url, which is not set"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let tls = self.tls();
        Ok(Some(SourceConfig {
            name: DEFAULT_SOURCE.into(),
            url: url.clone(),
            timeout: None,
            bearer_token_file: self.prometheus_bearer_token_file.clone(),
            basic_auth: self.basic_auth()?,
            tls: (tls != TlsConfig::default()).then_some(tls),
            headers: self.headers()?,
            ..Default::default()
        }))
    }

    /// Whether any flag of the `default` source besides its URL is given.
    fn any_default_source_setting(&self) -> bool {
        self.prometheus_bearer_token_file.is_some()
            || self.prometheus_username.is_some()
            || self.prometheus_password_file.is_some()
            || self.prometheus_ca_file.is_some()
            || self.prometheus_cert_file.is_some()
            || self.prometheus_key_file.is_some()
            || self.prometheus_insecure_skip_verify
            || !self.prometheus_headers.is_empty()
    }

    /// `--prometheus-username` with `--prometheus-password-file`: both or neither.
    fn basic_auth(&self) -> Result<Option<BasicAuthConfig>, ConfigError> {
        match (&self.prometheus_username, &self.prometheus_password_file) {
            (Some(u), Some(p)) => Ok(Some(BasicAuthConfig {
                username: u.clone(),
                password_file: p.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err(ConfigError(
                "--prometheus-username and --prometheus-password-file go together".into(),
            )),
        }
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_file: self.prometheus_ca_file.clone(),
            cert_file: self.prometheus_cert_file.clone(),
            key_file: self.prometheus_key_file.clone(),
            insecure_skip_verify: self.prometheus_insecure_skip_verify,
        }
    }

    /// `--prometheus-header NAME=VALUE`s, trimmed.
    fn headers(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut headers = BTreeMap::new();
        for h in &self.prometheus_headers {
            let Some((k, v)) = h.split_once('=') else {
                return Err(ConfigError(format!(
                    "--prometheus-header {h:?}: expected NAME=VALUE"
                )));
            };
            headers.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(headers)
    }

    /// Every configured source: the file's and the flags' `default`, checked.
    pub fn configs(&self) -> Result<Vec<SourceConfig>, ConfigError> {
        let mut all = match &self.sources_file {
            Some(path) => read_sources_file(path)?.sources,
            None => Vec::new(),
        };
        if let Some(d) = self.default_source()? {
            if all.iter().any(|s| s.name == DEFAULT_SOURCE) {
                return Err(ConfigError(format!(
                    "the source \"default\" is defined twice: by --prometheus-url (or \
                     PRESCALE_PROMETHEUS_URL) and in {}; keep one",
                    self.sources_file
                        .as_deref()
                        .unwrap_or(Path::new("the sources file"))
                        .display()
                )));
            }
            all.insert(0, d);
        }
        check_names(&all)?;
        Ok(all)
    }

    /// Builds every configured source (reading certificates and secret files now).
    pub fn build(&self) -> Result<Sources, ConfigError> {
        build_sources(&self.configs()?, self.prometheus_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_define_default_and_clash_with_the_file() {
        let flags = SourceFlags {
            prometheus_url: Some("http://p:9090".into()),
            prometheus_headers: vec!["X-Scope-OrgID=t1".into()],
            ..Default::default()
        };
        let d = flags.default_source().unwrap().unwrap();
        assert_eq!(
            (d.name.as_str(), d.url.as_str()),
            ("default", "http://p:9090")
        );
        assert_eq!(d.headers["X-Scope-OrgID"], "t1");
        assert!(d.tls.is_none());

        let dir = std::env::temp_dir().join(format!("prescale-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sources.yaml");
        std::fs::write(&file, "sources:\n- name: default\n  url: http://q\n").unwrap();
        let both = SourceFlags {
            sources_file: Some(file.clone()),
            ..flags.clone()
        };
        let e = both.configs().unwrap_err().0;
        assert!(e.contains("\"default\" is defined twice"), "{e}");
        let file_only = SourceFlags {
            sources_file: Some(file),
            ..Default::default()
        };
        assert_eq!(file_only.configs().unwrap()[0].url, "http://q");

        let orphan = SourceFlags {
            prometheus_ca_file: Some("/ca".into()),
            ..Default::default()
        };
        assert!(orphan.default_source().unwrap_err().0.contains("not set"));
        let half = SourceFlags {
            prometheus_url: Some("http://p".into()),
            prometheus_username: Some("u".into()),
            ..Default::default()
        };
        assert!(half.default_source().unwrap_err().0.contains("go together"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
