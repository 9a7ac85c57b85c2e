//! A [`MetricsSource`] over the Prometheus HTTP API (Prometheus, Thanos, Mimir,
//! VictoriaMetrics...), with `query_range` split into chunks under Prometheus's limit of
//! 11,000 points per series.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_http_query::{Client, response::Data};
use tracing::debug;

use super::{MetricsSource, SourceError};

/// Prometheus refuses more than 11,000 points per series in one range query.
pub const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// One configured Prometheus endpoint.
pub struct PrometheusSource {
    name: String,
    client: Client,
    requests: std::sync::atomic::AtomicU64,
}

impl PrometheusSource {
    /// A source named `name` at `url`, with a per-request `timeout`.
    pub fn new(name: impl Into<String>, url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let name = name.into();
        let bad = |message: String| SourceError::QueryFailed {
            source_name: name.clone(),
            message,
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| bad(format!("building HTTP client: {e}")))?;
        let client = Client::from(http, url).map_err(|e| bad(format!("invalid URL: {e}")))?;
        Ok(Self {
            name,
            client,
            requests: Default::default(),
        })
    }

    /// HTTP requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
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
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = self
                .client
                .query_range(query, chunk_start, chunk_end, step as f64)
                .get()
                .await
                .map_err(|e| self.query_error(e))?;
            debug!(source = %self.name, chunk_start, chunk_end, elapsed_ms = began.elapsed().as_millis() as u64, "query_range");
            match result.data() {
                Data::Matrix(series) => match series.len() {
                    0 => {}
                    1 => out.extend(
                        series[0]
                            .samples()
                            .iter()
                            .map(|s| (s.timestamp().round() as i64, s.value())),
                    ),
                    count => return Err(SourceError::MultipleSeries { count }),
                },
                Data::Vector(v) if v.is_empty() => {}
                other => {
                    return Err(SourceError::QueryFailed {
                        source_name: self.name.clone(),
                        message: format!("expected a range vector, got {}", data_kind(other)),
                    });
                }
            }
            chunk_start = chunk_end + step;
        }
        Ok(out)
    }

    fn query_error(&self, e: prometheus_http_query::Error) -> SourceError {
        use prometheus_http_query::Error;
        let message = match &e {
            Error::Prometheus(p) => {
                format!("Prometheus answered {:?}: {}", p.error_type(), p.message())
            }
            Error::Client(c) => match c.inner() {
                Some(r) if r.is_timeout() => "timed out".to_string(),
                Some(r) if r.is_connect() => "connection failed (is the source up?)".to_string(),
                Some(r) if r.status().is_some() => format!("HTTP {}", r.status().expect("checked")),
                Some(r) if r.is_decode() => "the answer was not valid Prometheus JSON".to_string(),
                // reqwest's text names the URL, which may carry credentials: replace it
                Some(r) => match r.url() {
                    Some(u) => r.to_string().replace(u.as_str(), "<source URL>"),
                    None => r.to_string(),
                },
                None => "request failed".to_string(),
            },
            other => other.to_string(),
        };
        SourceError::QueryFailed {
            source_name: self.name.clone(),
            message,
        }
    }
}

fn data_kind(d: &Data) -> &'static str {
    match d {
        Data::Vector(_) => "an instant vector",
        Data::Matrix(_) => "a range vector",
        Data::Scalar(_) => "a scalar",
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
}
