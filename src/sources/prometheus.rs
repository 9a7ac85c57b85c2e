//! A [`MetricsSource`] over the Prometheus HTTP API (Prometheus, Thanos, Mimir, Cortex,
//! VictoriaMetrics...), with `query_range` split into chunks under Prometheus's limit of
//! 11,000 points per series, and the credentials and TLS settings of a configured source.
//!
//! Every failure is classified, so the condition says what to fix: credentials
//! ([`SourceError::AuthFailed`], also for TLS handshake failures), the network or the server
//! ([`SourceError::Unavailable`], [`SourceError::Timeout`]), or the PromQL
//! ([`SourceError::InvalidQuery`]). Messages never carry credentials, and URLs only without
//! their query string.
//!
//! IO: the HTTP requests, and the source's files: its TLS files (checked for changes every
//! minute) and its secret files (through [`super::secret`]).

use std::{
    collections::BTreeMap,
    error::Error as StdError,
    fmt,
    path::PathBuf,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use base64::Engine as _;
use futures::future::BoxFuture;
use prometheus_http_query::Client;
use reqwest::{
    StatusCode, Url,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};
use serde::{Deserialize, de::DeserializeOwned};
use tracing::{debug, info, warn};

use super::{
    GroupSeries, GroupWindow, MetricsSource, SourceError,
    config::{ConfigError, DEFAULT_MAX_CONCURRENT_QUERIES, SourceConfig, TlsConfig},
    secret::{SECRET_REFRESH, SecretFile, io_reason},
    slots::{QuerySlots, SlotPermit, current_namespace},
};
use crate::{
    api::duration::{format_duration, parse_duration},
    planner::series::Series,
};

mod labelled;

/// Prometheus refuses more than 11,000 points per series in one range query.
const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// How often the TLS files are checked for changes (a changed file rebuilds the client, so new
/// connections use the rotated certificate).
const TLS_RELOAD_CHECK: Duration = Duration::from_secs(60);

/// Headers a source may not set through `headers`.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "connection",
    "transfer-encoding",
];

/// How a source authenticates.
enum Auth {
    Bearer(SecretFile),
    Basic {
        username: String,
        password: SecretFile,
    },
}

impl Auth {
    /// The credentials `c` configures (`bearerTokenFile` or `basicAuth`), read now.
    fn from_config(c: &SourceConfig) -> Result<Option<Self>, String> {
        match (&c.bearer_token_file, &c.basic_auth) {
            (Some(_), Some(_)) => Err("use either bearerTokenFile or basicAuth, not both".into()),
            (Some(path), None) => Ok(Some(Auth::Bearer(
                SecretFile::open(path, SECRET_REFRESH)
                    .map_err(|e| format!("bearerTokenFile: {e}"))?,
            ))),
            (None, Some(b)) => {
                if b.username.is_empty() || b.username.contains(':') {
                    return Err("basicAuth.username must be non-empty and without ':'".into());
                }
                Ok(Some(Auth::Basic {
                    username: b.username.clone(),
                    password: SecretFile::open(&b.password_file, SECRET_REFRESH)
                        .map_err(|e| format!("basicAuth.passwordFile: {e}"))?,
                }))
            }
            (None, None) => Ok(None),
        }
    }

    /// The `Authorization` header, marked sensitive (hidden from `Debug` output by `http`).
    fn header(&self) -> Option<HeaderValue> {
        let text = match self {
            Auth::Bearer(token) => format!("Bearer {}", token.get().expose()),
            Auth::Basic { username, password } => {
                let raw = format!("{username}:{}", password.get().expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            }
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    fn kind(&self) -> &'static str {
        match self {
            Auth::Bearer(_) => "bearer token",
            Auth::Basic { .. } => "basic auth",
        }
    }
}

/// The HTTP client and the TLS file times it was built from.
struct Built {
    client: Client,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// One configured Prometheus endpoint.
pub struct PrometheusSource {
    name: String,
    url: Url,
    timeout: Duration,
    auth: Option<Auth>,
    tls: Option<TlsConfig>,
    headers: HeaderMap,
    built: Mutex<Built>,
    /// Queries in flight at once (`maxConcurrentQueries`), shared fairly among namespaces.
    slots: std::sync::Arc<QuerySlots>,
    requests: AtomicU64,
    points: AtomicU64,
}

impl fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .field("auth", &self.auth.as_ref().map(Auth::kind))
            .field("tls", &self.tls)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PrometheusSource {
    /// A source named `name` at `url` without credentials, with a per-request `timeout`.
    pub fn new(name: impl Into<String>, url: &str, timeout: Duration) -> Result<Self, ConfigError> {
        Self::from_config(
            &SourceConfig {
                name: name.into(),
                url: url.to_string(),
                ..Default::default()
            },
            timeout,
        )
    }

    /// Checks a configured source and builds its client: reads the secret files, the CA and
    /// the client certificate now, so a mistake stops the start-up with one clear line.
    pub fn from_config(c: &SourceConfig, default_timeout: Duration) -> Result<Self, ConfigError> {
        let bad = |what: String| ConfigError(format!("source {:?}: {what}", c.name));
        let url = parse_url(&c.url).map_err(|e| bad(format!("url: {e}")))?;
        let timeout = timeout_of(c, default_timeout).map_err(bad)?;
        let auth = Auth::from_config(c).map_err(bad)?;
        check_tls(&url, c.tls.as_ref()).map_err(bad)?;
        let headers = header_map(&c.headers).map_err(bad)?;
        let max_concurrent = max_concurrent_of(c).map_err(bad)?;
        let tls = c.tls.clone();
        let built = build_client(&url, timeout, tls.as_ref(), &headers).map_err(bad)?;
        let source = Self {
            name: c.name.clone(),
            url,
            timeout,
            auth,
            tls,
            headers,
            built: Mutex::new(built),
            slots: QuerySlots::new(max_concurrent),
            requests: AtomicU64::new(0),
            points: AtomicU64::new(0),
        };
        source.log_configured();
        Ok(source)
    }

    /// Logs the source at start-up, with a warning when it does not verify certificates.
    fn log_configured(&self) {
        if self.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
            warn!(
                source = %self.name,
                "TLS certificate verification is OFF for this source (tls.insecureSkipVerify): anyone on the \
                 network path can read its credentials and forge its metrics; use tls.caFile instead"
            );
        }
        info!(source = %self.name, "{}", self.describe());
    }

    /// One line for the start-up log: URL, timeout, auth kind, TLS files, header names (never
    /// values or secrets).
    fn describe(&self) -> String {
        let mut s = format!(
            "source {:?}: {} (timeout {}",
            self.name,
            self.url,
            format_duration(self.timeout)
        );
        if let Some(a) = &self.auth {
            s.push_str(", ");
            s.push_str(a.kind());
        }
        if let Some(t) = &self.tls {
            if t.ca_file.is_some() {
                s.push_str(", custom CA");
            }
            if t.cert_file.is_some() {
                s.push_str(", client certificate");
            }
            if t.insecure_skip_verify {
                s.push_str(", INSECURE: no certificate verification");
            }
        }
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
            s.push_str(&format!(", headers {}", names.join(",")));
        }
        s.push(')');
        s
    }

    /// HTTP requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Samples received so far.
    pub fn points(&self) -> u64 {
        self.points.load(Ordering::Relaxed)
    }

    /// The client; rebuilt when the TLS files changed (checked at most once a minute).
    fn client(&self) -> Client {
        let mut built = self.built.lock().expect("client lock");
        if let Some(tls) = &self.tls
            && built.checked.elapsed() >= TLS_RELOAD_CHECK
        {
            built.checked = Instant::now();
            if tls_stamps(tls) != built.stamps {
                match build_client(&self.url, self.timeout, Some(tls), &self.headers) {
                    Ok(new) => {
                        info!(source = %self.name, "TLS files changed; new connections use them");
                        built.client = new.client;
                        built.stamps = new.stamps;
                    }
                    Err(e) => {
                        warn!(source = %self.name, error = %e, "TLS files changed but cannot be used; keeping the old ones")
                    }
                }
            }
        }
        built.client.clone()
    }

    async fn range_chunked(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<(i64, f64)>, SourceError> {
        let mut out = Vec::new();
        let mut chunk_start = start;
        while chunk_start <= end {
            let chunk_end = (chunk_start + (MAX_POINTS_PER_QUERY - 1) * step).min(end);
            let began = Instant::now();
            let samples = self.range_once(query, chunk_start, chunk_end, step).await?;
            debug!(
                source = %self.name,
                chunk_start,
                chunk_end,
                points = samples.len(),
                elapsed_ms = began.elapsed().as_millis() as u64,
                "query_range"
            );
            out.extend(samples);
            chunk_start = chunk_end + step;
        }
        Ok(out)
    }

    /// One `query_range` request.
    async fn range_once(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<(i64, f64)>, SourceError> {
        let _slot = self.query_slot().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.send(query, start, end, step).await?;
        let status = response.status();
        let content_type = content_type(&response);
        let points = (end - start) / step + 1;
        let body = self.read_capped(response, points).await?;
        let data = self.answer_data(status, &content_type, &body)?;
        drop(body);
        let samples = self.samples_in(data, start, end)?;
        self.points
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        Ok(samples)
    }

    /// The evaluation `timeout` sent with each query, in milliseconds ([`evaluation_timeout`]).
    fn evaluation_timeout_ms(&self) -> i64 {
        (evaluation_timeout(self.timeout).as_millis() as i64).max(1)
    }

    /// One of the `maxConcurrentQueries` slots, for the namespace the request is made for
    /// ([`super::slots`]: shared fairly among namespaces): a slow or heavy query holds one for
    /// at most its timeout; the others go on.
    async fn query_slot(&self) -> Result<SlotPermit, SourceError> {
        let namespace = current_namespace();
        tokio::time::timeout(self.timeout, self.slots.acquire(namespace))
            .await
            .map_err(|_| SourceError::Timeout {
                source_name: self.name.clone(),
                message: format!(
                    "no free query slot within {} ({} queries in flight: maxConcurrentQueries)",
                    format_duration(self.timeout),
                    self.slots.capacity()
                ),
            })?
            .map_err(|_| self.failed("the source is shutting down".into()))
    }

    /// Sends the `query_range` request, with the credentials, and returns the response as it
    /// starts to arrive.
    async fn send(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<reqwest::Response, SourceError> {
        let mut request = self
            .client()
            .query_range(query, start, end, step as f64)
            .timeout(self.evaluation_timeout_ms());
        if let Some(value) = self.auth.as_ref().and_then(Auth::header) {
            request = request.header(AUTHORIZATION, value);
        }
        request.get_raw().await.map_err(|e| self.request_error(e))
    }

    /// The error of a request that got no answer to classify: the transport's, or the client
    /// library's.
    fn request_error(&self, e: prometheus_http_query::Error) -> SourceError {
        match e {
            prometheus_http_query::Error::Client(c) => match c.inner() {
                Some(r) => self.transport_error(r),
                None => self.failed(c.to_string()),
            },
            other => self.failed(other.to_string()),
        }
    }

    /// The `data` of a successful API answer; or the error the answer (or the HTTP status, when
    /// it is not API JSON) tells.
    fn answer_data(
        &self,
        status: StatusCode,
        content_type: &str,
        body: &[u8],
    ) -> Result<AnswerData, SourceError> {
        let answer = content_type
            .starts_with("application/json")
            .then(|| serde_json::from_slice::<Answer>(body).ok())
            .flatten();
        match answer {
            Some(Answer {
                status: s,
                data: Some(data),
                ..
            }) if s == "success" => Ok(data),
            Some(Answer {
                error_type: Some(kind),
                error,
                ..
            }) => Err(self.api_error(status, &kind, error.as_deref().unwrap_or(""))),
            _ => Err(self.http_error(status, content_type)),
        }
    }

    /// The samples of the one series of `data` (none if it has none) from `start` to `end`.
    fn samples_in(
        &self,
        data: AnswerData,
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, f64)>, SourceError> {
        match (data.result_type.as_str(), data.result) {
            (_, FirstSeries { first: None, .. }) => Ok(Vec::new()),
            (
                "matrix",
                FirstSeries {
                    count: 1,
                    first: Some(first),
                },
            ) => {
                let series: MatrixSeries =
                    serde_json::from_value(first).map_err(|_| self.not_json())?;
                // an answer outside the asked range (a bogus or intercepted source) is not stored
                Ok(series
                    .values
                    .into_iter()
                    .map(|(t, v)| (t.round() as i64, parse_value(&v)))
                    .filter(|(t, _)| (start..=end).contains(t))
                    .collect())
            }
            ("matrix", FirstSeries { count, .. }) => Err(SourceError::MultipleSeries { count }),
            (other, _) => Err(self.wrong_shape("matrix", other)),
        }
    }

    /// Every series of a successful answer whose `resultType` is `want`, each read as `T` (the
    /// labels it needs and its samples). Past `max` series, counted before any is read, the
    /// answer is refused with `too_many(count)`.
    fn all_series<T: DeserializeOwned>(
        &self,
        answer: (StatusCode, &str, &[u8]),
        want: &str,
        max: usize,
        too_many: impl FnOnce(usize) -> SourceError,
    ) -> Result<Vec<T>, SourceError> {
        let (status, content_type, body) = answer;
        let data = self.answer_data(status, content_type, body)?;
        if data.result_type != want {
            return Err(self.wrong_shape(want, &data.result_type));
        }
        if data.result.count > max {
            return Err(too_many(data.result.count));
        }
        let all: AllSeries<T> = serde_json::from_slice(body).map_err(|_| self.not_json())?;
        Ok(all.data.result)
    }

    /// A successful answer of another `resultType` than `want` (`matrix`, `vector`).
    fn wrong_shape(&self, want: &str, got: &str) -> SourceError {
        let want = match want {
            "matrix" => "a range vector",
            "vector" => "an instant vector",
            other => other,
        };
        SourceError::InvalidQuery {
            source_name: self.name.clone(),
            message: format!("expected {want}, got a {got}"),
        }
    }

    fn not_json(&self) -> SourceError {
        self.failed("the answer was not valid Prometheus JSON".into())
    }

    /// The body, read as it arrives, refused as soon as it is larger than one series of
    /// `points` can need ([`answer_limit`]): a query over many series never fills memory.
    async fn read_capped(
        &self,
        response: reqwest::Response,
        points: i64,
    ) -> Result<Vec<u8>, SourceError> {
        let limit = answer_limit(points);
        let too_large = SourceError::TooLarge {
            source_name: self.name.clone(),
            limit_bytes: limit,
            points,
        };
        self.read_limited(response, limit, too_large).await
    }

    /// The body, read as it arrives, refused with `too_large` as soon as it passes `limit`
    /// bytes.
    async fn read_limited(
        &self,
        mut response: reqwest::Response,
        limit: u64,
        too_large: SourceError,
    ) -> Result<Vec<u8>, SourceError> {
        let too_large = || too_large.clone();
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn failed(&self, message: String) -> SourceError {
        SourceError::QueryFailed {
            source_name: self.name.clone(),
            message,
        }
    }

    /// A Prometheus API error (`{"status":"error","errorType":...}`).
    fn api_error(&self, status: StatusCode, kind: &str, message: &str) -> SourceError {
        let source_name = self.name.clone();
        let message = format!("{kind}: {}", self.redact(message));
        match kind {
            "bad_data" => SourceError::InvalidQuery {
                source_name,
                message,
            },
            "timeout" | "canceled" => SourceError::Timeout {
                source_name,
                message: format!("the source gave up evaluating the query ({message})"),
            },
            "unavailable" => SourceError::Unavailable {
                source_name,
                message,
            },
            _ if matches!(status.as_u16(), 401 | 403) => SourceError::AuthFailed {
                source_name,
                message: format!("HTTP {status} ({message})"),
            },
            _ => SourceError::QueryFailed {
                source_name,
                message,
            },
        }
    }

    /// A non-API answer (a proxy's or the web server's own page).
    fn http_error(&self, status: StatusCode, content_type: &str) -> SourceError {
        let source_name = self.name.clone();
        match status.as_u16() {
            401 | 403 => SourceError::AuthFailed {
                source_name,
                message: format!("HTTP {status}: the source refused the credentials configured for it"),
            },
            408 | 504 => SourceError::Timeout {
                source_name,
                message: format!("HTTP {status}"),
            },
            429 | 502 | 503 => SourceError::Unavailable {
                source_name,
                message: format!("HTTP {status}"),
            },
            300..=399 => self.failed(format!(
                "HTTP {status}: redirects are not followed; configure the final URL"
            )),
            200..=299 => self.failed(format!(
                "the answer is not Prometheus API JSON (content type {content_type:?}); is the URL the root of \
                 a Prometheus HTTP API?"
            )),
            404 => self.failed(format!(
                "HTTP {status}: is the URL the root of a Prometheus HTTP API?"
            )),
            _ => self.failed(format!("HTTP {status}")),
        }
    }

    /// A failure below HTTP: connect, TLS, timeout, a broken connection.
    fn transport_error(&self, e: &reqwest::Error) -> SourceError {
        let source_name = self.name.clone();
        if e.is_timeout() {
            return SourceError::Timeout {
                source_name,
                message: format!("no answer within {}", format_duration(self.timeout)),
            };
        }
        if let Some(tls) = tls_cause(e) {
            return SourceError::AuthFailed {
                source_name,
                message: format!(
                    "TLS handshake failed: {tls} (check tls.caFile and tls.certFile/keyFile)"
                ),
            };
        }
        let cause = self.redact(&root_cause(e));
        if e.is_connect() {
            SourceError::Unavailable {
                source_name,
                message: format!("cannot connect: {cause}"),
            }
        } else if e.is_decode() {
            self.failed("the answer was not valid Prometheus JSON".into())
        } else {
            SourceError::Unavailable {
                source_name,
                message: format!("the request failed: {cause}"),
            }
        }
    }

    /// Removes this source's URL from a text (it may name internal hosts; a query string
    /// could carry tokens).
    fn redact(&self, text: &str) -> String {
        text.replace(self.url.as_str(), "<source URL>")
    }
}

/// A grouped read (`groupBy`): every series of the answer with its group labels, each folded
/// into its series on the window's grid as its chunk arrives.
impl PrometheusSource {
    async fn range_grouped_chunked(
        &self,
        query: &str,
        labels: &[String],
        w: GroupWindow,
    ) -> Result<Vec<GroupSeries>, SourceError> {
        // the read holds the series (8 bytes a point) and one chunk's answer, never every
        // chunk's samples
        let mut by: BTreeMap<Vec<String>, Series> = BTreeMap::new();
        let chunk_points = group_chunk_points(w.max_series);
        let mut chunk_start = w.start;
        while chunk_start <= w.end {
            let chunk_end = (chunk_start + (chunk_points - 1) * w.step).min(w.end);
            let chunk = GroupWindow {
                start: chunk_start,
                end: chunk_end,
                ..w
            };
            for (key, samples) in self.range_grouped_once(query, labels, chunk).await? {
                by.entry(key).or_insert_with(|| w.grid()).upsert(&samples);
            }
            if by.len() > w.max_series {
                return Err(SourceError::TooManySeries {
                    count: Some(by.len()),
                    max: w.max_series,
                });
            }
            chunk_start = chunk_end + w.step;
        }
        Ok(by
            .into_iter()
            .map(|(values, series)| GroupSeries { values, series })
            .collect())
    }

    /// One `query_range` request of a grouped read: refused past `max_series` series (counted
    /// before any is kept) or past the bytes that many series can need.
    async fn range_grouped_once(
        &self,
        query: &str,
        labels: &[String],
        w: GroupWindow,
    ) -> Result<Vec<(Vec<String>, Vec<(i64, f64)>)>, SourceError> {
        let _slot = self.query_slot().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = self.send(query, w.start, w.end, w.step).await?;
        let status = response.status();
        let content_type = content_type(&response);
        let points = (w.end - w.start) / w.step + 1;
        let limit = answer_limit(points) * w.max_series as u64;
        let too_many = SourceError::TooManySeries {
            count: None,
            max: w.max_series,
        };
        let body = self.read_limited(response, limit, too_many).await?;
        let all: Vec<LabeledSeries> = self.all_series(
            (status, &content_type, &body),
            "matrix",
            w.max_series,
            |n| SourceError::TooManySeries {
                count: Some(n),
                max: w.max_series,
            },
        )?;
        drop(body);
        let mut out = Vec::with_capacity(all.len());
        for series in all {
            let key = labels
                .iter()
                .map(|l| series.metric.get(l).cloned().unwrap_or_default())
                .collect();
            let samples: Vec<(i64, f64)> = series
                .values
                .into_iter()
                .map(|(t, v)| (t.round() as i64, v.0))
                .filter(|(t, _)| (w.start..=w.end).contains(t))
                .collect();
            self.points
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            out.push((key, samples));
        }
        Ok(out)
    }
}

/// The most samples one request of a grouped read asks for, all series together (a ~5 MB
/// answer): its chunks are `MAX_GROUP_SAMPLES_PER_QUERY / maxSeries` steps (4,000 with 50
/// series, 10,000 with 20), so one chunk's answer and its parsed samples stay a few MB
/// whatever the cap.
const MAX_GROUP_SAMPLES_PER_QUERY: i64 = 200_000;

/// The steps of one chunk of a grouped read of at most `max_series` series.
fn group_chunk_points(max_series: usize) -> i64 {
    (MAX_GROUP_SAMPLES_PER_QUERY / max_series.max(1) as i64).clamp(1, MAX_POINTS_PER_QUERY)
}

/// A successful answer with every series read as `T` ([`PrometheusSource::all_series`]).
#[derive(Deserialize)]
struct AllSeries<T> {
    data: AllSeriesData<T>,
}

#[derive(Deserialize)]
struct AllSeriesData<T> {
    #[serde(default = "Vec::new")]
    result: Vec<T>,
}

/// One series of a matrix with its labels (a grouped read).
#[derive(Deserialize)]
struct LabeledSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, SampleValue)>,
}

/// A sample's value, read from its JSON string ([`parse_value`]) without keeping the string.
struct SampleValue(f64);

impl<'de> Deserialize<'de> for SampleValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SampleValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sample value as a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SampleValue, E> {
                Ok(SampleValue(parse_value(s)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl MetricsSource for PrometheusSource {
    fn range<'a>(
        &'a self,
        query: &'a str,
        start: i64,
        end: i64,
        step: i64,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
        Box::pin(self.range_chunked(query, start, end, step))
    }

    fn instant_by_label<'a>(
        &'a self,
        query: &'a str,
        label: &'a str,
        at: i64,
        max_series: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, SourceError>> {
        Box::pin(self.instant_by_label_once(query, label, at, max_series))
    }

    fn range_grouped<'a>(
        &'a self,
        query: &'a str,
        labels: &'a [String],
        window: GroupWindow,
    ) -> BoxFuture<'a, Result<Vec<GroupSeries>, SourceError>> {
        Box::pin(self.range_grouped_chunked(query, labels, window))
    }

    fn requests(&self) -> Option<u64> {
        Some(PrometheusSource::requests(self))
    }
}

/// The `Content-Type` of a response, "" without one.
fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The JSON envelope of the Prometheus HTTP API.
#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: FirstSeries,
}

/// The first element of `result` and how many there are: the others are skipped as they are
/// parsed, never kept (their labels may belong to other tenants, and there may be thousands).
struct FirstSeries {
    first: Option<serde_json::Value>,
    count: usize,
}

impl<'de> Deserialize<'de> for FirstSeries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FirstSeries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of series")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FirstSeries, A::Error> {
                let first: Option<serde_json::Value> = seq.next_element()?;
                let mut count = usize::from(first.is_some());
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(FirstSeries { first, count })
            }
        }
        d.deserialize_seq(Visitor)
    }
}

/// Bytes of JSON per sample allowed for (`[1764600000.123,"1.2345678901234567e-05"]` is 44).
const BYTES_PER_POINT: u64 = 64;
/// Bytes allowed for the envelope and one series' labels.
const ANSWER_OVERHEAD: u64 = 64 * 1024;

/// The most bytes an answer of one series of `points` samples may have.
fn answer_limit(points: i64) -> u64 {
    points.max(1) as u64 * BYTES_PER_POINT + ANSWER_OVERHEAD
}

/// One series of a matrix; its labels are not read.
#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`. Anything
/// unreadable is a gap (NaN), never zero.
fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

/// The evaluation `timeout` sent to the server with each query: the source's `timeout` less
/// a tenth (at most 2 s less). The server's deadline thus passes before prescale stops waiting,
/// so the server gives up an expensive query and says so (`errorType: timeout`) instead of
/// evaluating on for a client that has gone; a black-holed request still ends at `timeout`.
pub fn evaluation_timeout(timeout: Duration) -> Duration {
    timeout - (timeout / 10).min(Duration::from_secs(2))
}

/// The source's `timeout`, else `default_timeout`; more than 0.
fn timeout_of(c: &SourceConfig, default_timeout: Duration) -> Result<Duration, String> {
    let timeout = match &c.timeout {
        Some(t) => parse_duration(t).map_err(|e| format!("timeout: {e}"))?,
        None => default_timeout,
    };
    if timeout.is_zero() {
        return Err("timeout must be more than 0".into());
    }
    Ok(timeout)
}

/// TLS settings need an `https://` URL, and a client certificate its key.
fn check_tls(url: &Url, tls: Option<&TlsConfig>) -> Result<(), String> {
    if let Some(tls) = tls {
        if url.scheme() != "https" {
            return Err("tls is set but the URL is http://; use https://".into());
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err("tls.certFile and keyFile go together".into());
        }
    }
    Ok(())
}

/// The source's extra `headers`, checked: valid, and none of [`RESERVED_HEADERS`].
fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("headers.{k}: not a valid header name"))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "headers.{k}: not allowed here; credentials go in bearerTokenFile or basicAuth"
            ));
        }
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("headers.{k}: not a valid header value"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// `maxConcurrentQueries`, else [`DEFAULT_MAX_CONCURRENT_QUERIES`]; 1 or more.
fn max_concurrent_of(c: &SourceConfig) -> Result<usize, String> {
    let max_concurrent = c
        .max_concurrent_queries
        .unwrap_or(DEFAULT_MAX_CONCURRENT_QUERIES);
    if max_concurrent == 0 {
        return Err("maxConcurrentQueries must be 1 or more".into());
    }
    Ok(max_concurrent)
}

/// Checks a source URL: http(s), a host, no credentials, no query string or fragment. The
/// path is kept (e.g. `/prometheus` for Mimir), without a trailing `/`.
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?} must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials in the URL are not allowed; use basicAuth or bearerTokenFile".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query string or fragment".into());
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(if path.is_empty() { "/" } else { &path });
    Ok(url)
}

fn tls_stamps(tls: &TlsConfig) -> Vec<Option<SystemTime>> {
    [&tls.ca_file, &tls.cert_file, &tls.key_file]
        .into_iter()
        .map(|p| {
            p.as_ref()
                .and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        })
        .collect()
}

fn read_file(what: &str, path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("{what}: cannot read {}: {}", path.display(), io_reason(&e)))
}

/// The HTTP client of a source: timeouts, TLS roots and identity, extra headers, no redirects.
fn build_client(
    url: &Url,
    timeout: Duration,
    tls: Option<&TlsConfig>,
    headers: &HeaderMap,
) -> Result<Built, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("prescale/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers.clone());
    let mut stamps = Vec::new();
    if let Some(tls) = tls {
        stamps = tls_stamps(tls);
        if let Some(ca) = &tls.ca_file {
            let pem = read_file("tls.caFile", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| format!("tls.caFile: {} holds no PEM certificate", ca.display()))?;
            // like Prometheus's own ca_file: these roots only, not the system's
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read_file("tls.certFile", cert)?;
            pem.push(b'\n');
            pem.extend(read_file("tls.keyFile", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                format!(
                    "tls.certFile/keyFile: {} and {} are not a PEM certificate and its private key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        if tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
    }
    let http = builder
        .build()
        .map_err(|e| format!("building the HTTP client: {}", root_cause(&e)))?;
    let client = Client::from(http, url.as_str()).map_err(|e| format!("url: {e}"))?;
    Ok(Built {
        client,
        stamps,
        checked: Instant::now(),
    })
}

/// The innermost error's text.
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The TLS error somewhere in `e`'s causes, if any. `io::Error` hides its payload from
/// `source()` (and hyper nests one in another), so payloads are searched too.
fn tls_cause(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = tls_cause(inner)
        {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A source on 127.0.0.1 that answers every request with `body` (JSON), with a
    /// Content-Length or chunked; its URL.
    async fn bogus_source(body: String, chunked: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let head = if chunked {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        )
                    };
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if chunked {
                        for part in body.as_bytes().chunks(8192) {
                            let chunk = format!("{:x}\r\n", part.len());
                            if conn.write_all(chunk.as_bytes()).await.is_err()
                                || conn.write_all(part).await.is_err()
                                || conn.write_all(b"\r\n").await.is_err()
                            {
                                return; // the client stopped reading
                            }
                        }
                        let _ = conn.write_all(b"0\r\n\r\n").await;
                    } else {
                        let _ = conn.write_all(body.as_bytes()).await;
                    }
                });
            }
        });
        url
    }

    fn matrix(series: &[(&str, Vec<(i64, &str)>)]) -> String {
        let result: Vec<serde_json::Value> = series
            .iter()
            .map(|(label, values)| {
                serde_json::json!({"metric": {"secret_label": label}, "values": values
                    .iter()
                    .map(|(t, v)| serde_json::json!([t, v]))
                    .collect::<Vec<_>>()})
            })
            .collect();
        serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}})
            .to_string()
    }

    #[tokio::test]
    async fn samples_outside_the_asked_range_are_dropped() {
        let body = matrix(&[(
            "x",
            vec![
                (500, "1"),
                (1_000, "2"),
                (1_060, "3"),
                (1_120, "4"),
                (9_999_999, "5"),
            ],
        )]);
        let src = PrometheusSource::new(
            "default",
            &bogus_source(body, false).await,
            Duration::from_secs(5),
        )
        .unwrap();
        let got = src.range("q", 1_000, 1_120, 60).await.unwrap();
        assert_eq!(got, vec![(1_000, 2.0), (1_060, 3.0), (1_120, 4.0)]);
    }

    #[tokio::test]
    async fn many_series_are_counted_never_named() {
        let body = matrix(&[
            ("s3cr3t-a", vec![(0, "1")]),
            ("s3cr3t-b", vec![(0, "1")]),
            ("s3cr3t-c", vec![]),
        ]);
        let src = PrometheusSource::new(
            "default",
            &bogus_source(body, true).await,
            Duration::from_secs(5),
        )
        .unwrap();
        let e = src.range("q", 0, 60, 60).await.unwrap_err();
        assert_eq!(e, SourceError::MultipleSeries { count: 3 });
        assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e}");
    }

    #[tokio::test]
    async fn a_grouped_read_keeps_each_series_by_its_group_labels_up_to_the_cap() {
        // the group label is `secret_label` here; other labels are never kept
        let body = matrix(&[
            ("a", vec![(0, "1"), (60, "2")]),
            ("b", vec![(60, "5"), (9_999, "7")]),
        ]);
        let url = bogus_source(body, false).await;
        let src = PrometheusSource::new("default", &url, Duration::from_secs(5)).unwrap();
        let labels = vec!["secret_label".to_string(), "missing".to_string()];
        let w = GroupWindow {
            start: 0,
            end: 60,
            step: 60,
            max_series: 2,
        };
        let got = src.range_grouped("q", &labels, w).await.unwrap();
        let read: Vec<(Vec<String>, i64, Vec<String>)> = got
            .iter()
            .map(|g| {
                let values = g.series.values.iter().map(|v| v.to_string()).collect();
                (g.values.clone(), g.series.start, values)
            })
            .collect();
        // each series on the window's grid, NaN where it has no sample
        assert_eq!(
            read,
            vec![
                (
                    vec!["a".into(), String::new()],
                    0,
                    vec!["1".into(), "2".into()]
                ),
                (
                    vec!["b".into(), String::new()],
                    0,
                    vec!["NaN".into(), "5".into()]
                ),
            ]
        );
        let e = src
            .range_grouped("q", &labels, GroupWindow { max_series: 1, ..w })
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SourceError::TooManySeries {
                count: Some(2),
                max: 1
            }
        );
        assert_eq!(e.reason(), "TooManySeries");
        assert!(
            e.to_string()
                .contains("returned 2 series, more than maxSeries 1"),
            "{e}"
        );
    }

    #[test]
    fn a_grouped_read_asks_for_at_most_200000_samples_a_request() {
        // 50 series: 4,000 steps a chunk (13 requests for 50,000 steps); 20 or fewer: the
        // single-series chunk of 10,000 steps
        assert_eq!(group_chunk_points(50), 4_000);
        assert_eq!(group_chunk_points(20), 10_000);
        assert_eq!(group_chunk_points(1), 10_000);
        assert_eq!(group_chunk_points(0), 10_000);
    }

    #[tokio::test]
    async fn an_answer_larger_than_one_series_can_be_is_not_read_further() {
        // 2,000 series of 61 points: ~2.9 MB where one series of 61 points may have ~70 KB
        let values: Vec<(i64, &str)> = (0..61).map(|i| (i * 60, "12345.678")).collect();
        let series: Vec<(String, Vec<(i64, &str)>)> = (0..2_000)
            .map(|i| (format!("s3cr3t-{i}"), values.clone()))
            .collect();
        let refs: Vec<(&str, Vec<(i64, &str)>)> = series
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        let body = matrix(&refs);
        assert!(body.len() > 2_000_000);
        for chunked in [false, true] {
            let url = bogus_source(body.clone(), chunked).await;
            let src = PrometheusSource::new("default", &url, Duration::from_secs(5)).unwrap();
            let e = src.range("q", 0, 3_600, 60).await.unwrap_err();
            assert_eq!(e.reason(), "QueryTooLarge", "{e}");
            assert!(e.to_string().contains(&answer_limit(61).to_string()), "{e}");
            assert!(!e.to_string().contains("s3cr3t"));
        }
        assert_eq!(answer_limit(61), 61 * 64 + 65_536);
    }

    #[test]
    fn urls_are_checked_and_normalised() {
        assert_eq!(
            parse_url("https://mimir.example.com/prometheus/")
                .unwrap()
                .as_str(),
            "https://mimir.example.com/prometheus"
        );
        assert_eq!(
            parse_url("http://p:9090").unwrap().as_str(),
            "http://p:9090/"
        );
        assert!(
            parse_url("http://u:p@h")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(
            parse_url("file:///etc/passwd")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_url("http://h/?x=1").unwrap_err().contains("query"));
    }

    #[test]
    fn the_server_gives_up_before_prescale_stops_waiting() {
        let ms = |t: u64| evaluation_timeout(Duration::from_millis(t)).as_millis();
        assert_eq!(ms(30_000), 28_000, "at most 2 s less");
        assert_eq!(ms(10_000), 9_000, "a tenth less");
        assert_eq!(ms(3_000), 2_700);
        assert_eq!(ms(100), 90);
    }

    #[test]
    fn values_as_prometheus_writes_them() {
        assert!(parse_value("NaN").is_nan());
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert_eq!(parse_value("-Inf"), f64::NEG_INFINITY);
        assert_eq!(parse_value("1.5e3"), 1500.0);
        assert!(
            parse_value("garbage").is_nan(),
            "unreadable is a gap, not 0"
        );
    }

    #[test]
    fn changed_tls_files_rebuild_the_client_and_bad_ones_keep_the_old() {
        let dir = std::env::temp_dir().join(format!("prescale-tlsre-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let pem = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::new(vec![cn.to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap()
                .pem()
        };
        std::fs::write(&ca, pem("a")).unwrap();
        let s = PrometheusSource::from_config(
            &SourceConfig {
                name: "t".into(),
                url: "https://127.0.0.1:1".into(),
                tls: Some(TlsConfig {
                    ca_file: Some(ca.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Duration::from_secs(1),
        )
        .unwrap();
        let first = s.built.lock().unwrap().stamps.clone();
        let age = |s: &PrometheusSource| {
            let mut b = s.built.lock().unwrap();
            b.checked = Instant::now()
                .checked_sub(TLS_RELOAD_CHECK)
                .unwrap_or(b.checked);
        };
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&ca, "not a certificate").unwrap();
        age(&s);
        let _ = s.client();
        assert_eq!(
            s.built.lock().unwrap().stamps,
            first,
            "a bad file keeps the old client"
        );
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&ca, pem("b")).unwrap();
        age(&s);
        let _ = s.client();
        let now = s.built.lock().unwrap().stamps.clone();
        assert_ne!(now, first, "a good new file is used");
        assert_eq!(now, tls_stamps(s.tls.as_ref().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = std::env::temp_dir().join(format!("prescale-psrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "tok-very-secret").unwrap();
        let s = PrometheusSource::from_config(
            &SourceConfig {
                name: "a".into(),
                url: "http://127.0.0.1:1".into(),
                bearer_token_file: Some(token),
                headers: [("X-Scope-OrgID".to_string(), "t".to_string())].into(),
                ..Default::default()
            },
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{s:?} {}", s.describe());
        assert!(!shown.contains("tok-very-secret"), "{shown}");
        assert!(
            shown.contains("bearer token") && shown.contains("x-scope-orgid"),
            "{shown}"
        );
        let header = s.auth.as_ref().unwrap().header().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(format!("{header:?}"), "Sensitive");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
