//! Instant queries whose series are told apart by one label (`/api/v1/query`): the per-pod
//! values of drain-aware scale-in. Only that label's value and the sample are kept of each
//! series; the answer is read with a size cap from the caller's bound on the series (twice
//! the target's pods), as range queries are.

use std::{collections::HashMap, sync::atomic::Ordering};

use reqwest::header::AUTHORIZATION;
use serde::Deserialize;

use super::{Auth, PrometheusSource, content_type, parse_value};
use crate::sources::SourceError;

/// Bytes allowed per series of the answer (a pod name label and a sample, with room for a few
/// more labels).
const BYTES_PER_SERIES: u64 = 512;
/// Bytes allowed for the envelope.
const ENVELOPE: u64 = 64 * 1024;

/// One labelled sample of an instant vector.
#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: HashMap<String, String>,
    value: (f64, String),
}

impl PrometheusSource {
    /// One instant query at `at`: each series' `label` value and sample value; more than
    /// `max_series` series (or their bytes) is an error.
    pub(super) async fn instant_by_label_once(
        &self,
        query: &str,
        label: &str,
        at: i64,
        max_series: usize,
    ) -> Result<Vec<(String, f64)>, SourceError> {
        let _slot = self.query_slot().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .client()
            .query(query)
            .at(at)
            .timeout(self.evaluation_timeout_ms());
        if let Some(value) = self.auth.as_ref().and_then(Auth::header) {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.get_raw().await.map_err(|e| self.request_error(e))?;
        let status = response.status();
        let content_type = content_type(&response);
        let limit = max_series as u64 * BYTES_PER_SERIES + ENVELOPE;
        let too_large = self.failed(format!(
            "the answer was larger than {limit} bytes; reading stopped there: the query must return one \
             series per pod (sum by (pod) (...))"
        ));
        let body = self.read_limited(response, limit, too_large).await?;
        let samples = self.labelled_samples(status, &content_type, &body, label, max_series)?;
        self.points
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        Ok(samples)
    }

    /// The samples of a successful vector answer, by label; or the error the answer tells.
    fn labelled_samples(
        &self,
        status: reqwest::StatusCode,
        content_type: &str,
        body: &[u8],
        label: &str,
        max_series: usize,
    ) -> Result<Vec<(String, f64)>, SourceError> {
        let all: Vec<VectorSample> = self.all_series(
            (status, content_type, body),
            "vector",
            max_series,
            |count| {
                self.failed(format!(
                    "the query returned {count} series, more than the {max_series} allowed (twice the \
                     target's pods, at least 5000): it must return one series per pod of the target \
                     (sum by (pod) (...))"
                ))
            },
        )?;
        Ok(all
            .into_iter()
            .filter_map(|s| {
                let value = parse_value(&s.value.1);
                s.metric.get(label).map(|pod| (pod.clone(), value))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use std::time::Duration;

    const MAX: usize = 7;

    fn source() -> PrometheusSource {
        PrometheusSource::new("prom", "http://127.0.0.1:9", Duration::from_secs(1)).unwrap()
    }

    fn answer(
        source: &PrometheusSource,
        status: StatusCode,
        body: &str,
    ) -> Result<Vec<(String, f64)>, SourceError> {
        source.labelled_samples(status, "application/json", body.as_bytes(), "pod", MAX)
    }

    #[test]
    fn each_series_gives_its_label_and_value() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"pod":"a","app":"x"},"value":[1764600000,"3"]},
            {"metric":{"app":"x"},"value":[1764600000,"9"]},
            {"metric":{"pod":"b"},"value":[1764600000,"NaN"]}]}}"#;
        let got = answer(&source(), StatusCode::OK, body).unwrap();
        assert_eq!(got.len(), 2, "the series without the label is skipped");
        assert_eq!(got[0], ("a".to_string(), 3.0));
        assert!(
            got[1].0 == "b" && got[1].1.is_nan(),
            "NaN stays NaN, never 0"
        );
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(answer(&source(), StatusCode::OK, empty).unwrap(), vec![]);
    }

    #[test]
    fn a_wrong_shape_an_error_or_too_many_series_is_an_error() {
        let s = source();
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        let e = answer(&s, StatusCode::OK, matrix).unwrap_err();
        assert_eq!(e.reason(), "InvalidQuery");
        assert!(
            e.to_string()
                .contains("expected an instant vector, got a matrix"),
            "{e}"
        );
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let e = answer(&s, StatusCode::BAD_REQUEST, bad).unwrap_err();
        assert_eq!(e.reason(), "InvalidQuery");
        let one = r#"{"metric":{"pod":"p"},"value":[1,"1"]}"#;
        let many = [one; MAX + 1].join(",");
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{many}]}}}}"#);
        let e = answer(&s, StatusCode::OK, &body).unwrap_err();
        assert!(
            e.to_string()
                .contains("returned 8 series, more than the 7 allowed"),
            "{e}"
        );
        let exactly = [one; MAX].join(",");
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{exactly}]}}}}"#
        );
        assert_eq!(answer(&s, StatusCode::OK, &body).unwrap().len(), MAX);
        let e = s
            .labelled_samples(StatusCode::BAD_GATEWAY, "text/html", b"<html>", "pod", MAX)
            .unwrap_err();
        assert_eq!(e.reason(), "MetricsSourceUnavailable");
    }
}
