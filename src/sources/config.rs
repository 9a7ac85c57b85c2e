//! The metric sources a cluster admin configures: a YAML file (`--sources-file`) and/or flags
//! for a single source named `default` (the flags themselves are `cli::source_flags`; this
//! module checks and holds what they and the file say). A PredictiveScaler only names a source; it can never
//! give a URL or credentials.
//!
//! ```yaml
//! sources:
//!   - name: default
//!     url: https://prometheus.monitoring.svc:9090
//!     timeout: 30s
//!     bearerTokenFile: /var/run/secrets/prometheus/token
//!     tls:
//!       caFile: /etc/prescale/ca.crt
//!   - name: mimir-team-a
//!     url: https://mimir.example.com/prometheus
//!     basicAuth: {username: prescale, passwordFile: /etc/prescale/mimir-password}
//!     headers: {X-Scope-OrgID: team-a}
//! ```
//!
//! Everything is checked at start-up, with one line naming the source and the key at fault.
//! IO: [`read_sources_file`] reads the file; building the sources opens their secret and TLS
//! files (through [`super::prometheus`]). Parsing ([`parse_sources`]) is pure.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::access::{NamespaceSelector, SourceAccess};
use crate::names::{is_dns_label, is_prometheus_label_name};

/// The name a PredictiveScaler's metric uses when it names no source.
pub const DEFAULT_SOURCE: &str = "default";

/// A configuration problem, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The sources file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourcesFile {
    pub sources: Vec<SourceConfig>,
}

/// One source: a Prometheus HTTP API (Prometheus, Thanos, Mimir, Cortex, VictoriaMetrics).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceConfig {
    /// What PredictiveScalers call it (`metrics[].source`): lower case letters, digits and
    /// `-`, at most 63 characters.
    pub name: String,
    /// The API root, e.g. `http://prometheus.monitoring:9090` or
    /// `https://mimir.example.com/prometheus`. No credentials, no query string.
    pub url: String,
    /// Per request, e.g. `30s` (default: `--prometheus-timeout`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// A file holding a bearer token, re-read every minute.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Extra request headers, e.g. `X-Scope-OrgID: team-a` for Mimir/Cortex tenants. Not for
    /// credentials: `Authorization` is refused here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Namespaces whose PredictiveScalers may use this source: names, or `"*"` for every
    /// namespace. With neither this nor `allowedNamespaceSelector`, the source named `default`
    /// is open to every namespace (as before these keys existed) and any other source to none.
    #[serde(default)]
    pub allowed_namespaces: Option<Vec<String>>,
    /// Namespaces whose labels match this selector may use the source too (`matchLabels`,
    /// `matchExpressions`). The operator then reads Namespaces (RBAC: namespaces get).
    #[serde(default)]
    pub allowed_namespace_selector: Option<NamespaceSelector>,
    /// Confine each scaler's queries to its own namespace: every vector selector gets
    /// `<label>="<the scaler's namespace>"` (e.g. `namespace`), as prom-label-proxy does, and a
    /// query that matches that label with anything else is refused.
    #[serde(default)]
    pub enforce_namespace_label: Option<String>,
    /// At most this many queries in flight to this source at once (default 8); a query waits
    /// for a slot at most the source's timeout.
    #[serde(default)]
    pub max_concurrent_queries: Option<usize>,
}

/// Queries in flight to one source at once, when its config sets no `maxConcurrentQueries`.
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 8;

impl SourceConfig {
    /// Who may use this source, from `allowedNamespaces`, `allowedNamespaceSelector` and
    /// `enforceNamespaceLabel`; checked.
    pub fn access(&self) -> Result<SourceAccess, ConfigError> {
        let bad = |what: String| ConfigError(format!("source {:?}: {what}", self.name));
        let mut access = SourceAccess {
            enforce_namespace_label: self.enforce_namespace_label.clone(),
            ..Default::default()
        };
        if let Some(label) = &self.enforce_namespace_label
            && !is_prometheus_label_name(label)
        {
            return Err(bad(format!(
                "enforceNamespaceLabel {label:?} is not a Prometheus label name"
            )));
        }
        match (&self.allowed_namespaces, &self.allowed_namespace_selector) {
            (None, None) => access.all_namespaces = self.name == DEFAULT_SOURCE,
            (names, selector) => {
                for n in names.iter().flatten() {
                    if n == "*" {
                        access.all_namespaces = true;
                    } else if is_dns_label(n) {
                        access.namespaces.push(n.clone());
                    } else {
                        return Err(bad(format!(
                            "allowedNamespaces: {n:?} is not a namespace name (or \"*\" for all)"
                        )));
                    }
                }
                if let Some(sel) = selector {
                    sel.check()
                        .map_err(|e| bad(format!("allowedNamespaceSelector: {e}")))?;
                    access.selector = Some(sel.clone());
                }
            }
        }
        Ok(access)
    }
}

/// HTTP basic authentication; the password comes from a file, re-read every minute.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BasicAuthConfig {
    pub username: String,
    pub password_file: PathBuf,
}

/// TLS settings for an `https://` source.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    /// PEM CA certificate(s) to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `keyFile`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `certFile` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Off by default; logged as a warning at start-up.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Reads and parses a sources file (unknown keys are errors).
pub fn read_sources_file(path: &Path) -> Result<SourcesFile, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "reading the sources file {shown}: {}",
            super::secret::io_reason(&e)
        ))
    })?;
    parse_sources(&text).map_err(|e| ConfigError(format!("sources file {shown}: {}", e.0)))
}

/// Parses the YAML of a sources file.
pub fn parse_sources(yaml: &str) -> Result<SourcesFile, ConfigError> {
    let file: SourcesFile =
        serde_yaml::from_str(yaml).map_err(|e| ConfigError(super::one_line(&e.to_string())))?;
    check_names(&file.sources)?;
    Ok(file)
}

/// Every source has a name PredictiveScalers can give (a DNS label), and no name is used twice.
pub fn check_names(sources: &[SourceConfig]) -> Result<(), ConfigError> {
    for (i, s) in sources.iter().enumerate() {
        if !is_dns_label(&s.name) {
            return Err(ConfigError(format!(
                "sources[{i}].name {:?}: use lower case letters, digits and '-' (at most 63), as \
                 PredictiveScalers name it in metrics[].source",
                s.name
            )));
        }
        if sources[..i].iter().any(|o| o.name == s.name) {
            return Err(ConfigError(format!(
                "the source {:?} is defined twice",
                s.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sources::build_sources;

    fn err(yaml: &str) -> String {
        match parse_sources(yaml) {
            Ok(f) => match build_sources(&f.sources, Duration::from_secs(5)) {
                Ok(_) => panic!("accepted: {yaml}"),
                Err(e) => e.0,
            },
            Err(e) => e.0,
        }
    }

    #[test]
    fn full_file_parses() {
        let f = parse_sources(
            r#"
sources:
  - name: default
    url: http://prometheus:9090
  - name: mimir-a
    url: https://mimir.example.com/prometheus
    timeout: 10s
    bearerTokenFile: /t
    tls: {caFile: /ca, certFile: /c, keyFile: /k, insecureSkipVerify: false}
    headers: {X-Scope-OrgID: team-a}
  - name: thanos
    url: https://thanos:10902
    basicAuth: {username: u, passwordFile: /p}
"#,
        )
        .unwrap();
        assert_eq!(f.sources.len(), 3);
        let m = &f.sources[1];
        assert_eq!(m.timeout.as_deref(), Some("10s"));
        assert_eq!(
            m.tls.as_ref().unwrap().ca_file.as_deref(),
            Some(Path::new("/ca"))
        );
        assert_eq!(m.headers["X-Scope-OrgID"], "team-a");
        assert_eq!(
            f.sources[2].basic_auth.as_ref().unwrap().username,
            "u".to_string()
        );
    }

    #[test]
    fn who_may_use_a_source() {
        let f = parse_sources(
            r#"
sources:
  - {name: default, url: "http://p:9090"}
  - {name: closed, url: "http://p:9090"}
  - {name: all, url: "http://p:9090", allowedNamespaces: ["*"], enforceNamespaceLabel: namespace}
  - {name: two, url: "http://p:9090", allowedNamespaces: [team-a, team-b]}
  - name: labelled
    url: "http://p:9090"
    allowedNamespaces: [ops]
    allowedNamespaceSelector: {matchLabels: {tier: paid}}
"#,
        )
        .unwrap();
        let access = |n: &str| {
            f.sources
                .iter()
                .find(|s| s.name == n)
                .unwrap()
                .access()
                .unwrap()
        };
        let paid: BTreeMap<String, String> = [("tier".to_string(), "paid".to_string())].into();
        assert!(
            access("default").allows("anyone", None),
            "default stays open"
        );
        assert!(
            !access("closed").allows("anyone", None),
            "others are closed without a list"
        );
        assert!(access("all").allows("anyone", None));
        assert_eq!(
            access("all").enforce_namespace_label.as_deref(),
            Some("namespace")
        );
        assert!(access("two").allows("team-b", None) && !access("two").allows("team-c", None));
        let l = access("labelled");
        assert!(l.needs_labels());
        assert!(l.allows("ops", None) && l.allows("x", Some(&paid)));
        assert!(!l.allows("x", Some(&BTreeMap::new())) && !l.allows("x", None));
        // a configured `default` is as closed as any other
        let d = parse_sources(
            "sources:\n- {name: default, url: \"http://p\", allowedNamespaces: [a]}\n",
        )
        .unwrap();
        assert!(!d.sources[0].access().unwrap().allows("b", None));
    }

    #[test]
    fn the_example_file_parses() {
        let f = parse_sources(include_str!("../../examples/sources.yaml")).unwrap();
        let names: Vec<&str> = f.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["default", "mimir-team-a", "thanos", "victoria"]);
        for s in &f.sources {
            crate::sources::prometheus::parse_url(&s.url).unwrap();
        }
    }

    #[test]
    fn each_mistake_is_one_clear_line() {
        let dir = std::env::temp_dir().join(format!("prescale-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret-password\n").unwrap();
        let pw = pw.display();
        let cases = [
            (
                "sources:\n- name: a\n  url: http://x\n  tokenFile: /t\n",
                "unknown field `tokenFile`",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  tls: {caFile: /c, verify: no}\n",
                "unknown field `verify`",
            ),
            (
                "sources:\n- name: A_b\n  url: http://x\n",
                "sources[0].name \"A_b\"",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  allowedNamespaces: [Team_A]\n",
                "allowedNamespaces: \"Team_A\" is not a namespace name",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  enforceNamespaceLabel: \"name space\"\n",
                "enforceNamespaceLabel \"name space\" is not a Prometheus label name",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  allowedNamespaceSelector: {}\n",
                "an empty selector would select every namespace",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  maxConcurrentQueries: 0\n",
                "maxConcurrentQueries must be 1 or more",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n- name: a\n  url: http://y\n",
                "defined twice",
            ),
            (
                "sources:\n- name: a\n  url: not a url\n",
                "source \"a\": url",
            ),
            (
                "sources:\n- name: a\n  url: ftp://x\n",
                "http:// or https://",
            ),
            (
                "sources:\n- name: a\n  url: http://u:p@x\n",
                "credentials in the URL",
            ),
            (
                "sources:\n- name: a\n  url: http://x?token=1\n",
                "query string",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  timeout: 5 minutes\n",
                "source \"a\": timeout",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  bearerTokenFile: /nonexistent/token\n",
                "/nonexistent/token",
            ),
            (
                &format!(
                    "sources:\n- name: a\n  url: http://x\n  bearerTokenFile: {pw}\n  basicAuth: {{username: u, passwordFile: {pw}}}\n"
                ),
                "either bearerTokenFile or basicAuth",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  tls: {caFile: /nonexistent/ca}\n",
                "tls is set but the URL is http://",
            ),
            (
                "sources:\n- name: a\n  url: https://x\n  tls: {caFile: /nonexistent/ca}\n",
                "tls.caFile: cannot read /nonexistent/ca",
            ),
            (
                "sources:\n- name: a\n  url: https://x\n  tls: {certFile: /c}\n",
                "certFile and keyFile go together",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  headers: {Authorization: Bearer x}\n",
                "headers.Authorization",
            ),
            (
                "sources:\n- name: a\n  url: http://x\n  headers: {\"bad header\": x}\n",
                "headers.bad header",
            ),
            ("sources: []\nextra: 1\n", "unknown field `extra`"),
        ];
        for (yaml, want) in cases {
            let e = err(yaml);
            assert!(e.contains(want), "{want:?} not in {e:?} for\n{yaml}");
            assert!(!e.contains('\n'), "one line: {e:?}");
            assert!(!e.contains("s3cret"), "no secret in {e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
