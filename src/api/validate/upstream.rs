//! `spec.upstream`: the provider's limits, read into the planner's [`planner::Quota`]s and
//! where each limit's query is read.

use super::{InvalidSpec, MetricConfig, PredictiveScalerSpec, bad};
use crate::api::{UpstreamMetricUnit, quantity::parse_quantity};
use crate::names::is_dns_label;
use crate::planner;

/// One upstream limit of the spec: where its query is read (if it has one), and the planner's
/// quota.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub source: String,
    pub query: Option<String>,
    pub quota: planner::Quota,
}

/// `spec.upstream.limits`: at least one, each naming a metric of `metrics` once, with a
/// positive `perMinute`, a query, or both. Every message names the limit.
pub(super) fn read_upstream(
    spec: &PredictiveScalerSpec,
    metrics: &[MetricConfig],
) -> Result<Vec<UpstreamConfig>, InvalidSpec> {
    let Some(upstream) = &spec.upstream else {
        return Ok(Vec::new());
    };
    if upstream.limits.is_empty() {
        return bad("upstream.limits needs at least one limit (or leave upstream out)".into());
    }
    let mut out = Vec::with_capacity(upstream.limits.len());
    for (i, l) in upstream.limits.iter().enumerate() {
        let at = format!("upstream.limits[{i}] ({})", l.metric);
        if !metrics.iter().any(|m| m.name == l.metric) {
            let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
            return bad(format!(
                "{at}: there is no metric {:?} in spec.metrics (they are: {})",
                l.metric,
                names.join(", ")
            ));
        }
        if upstream.limits[..i].iter().any(|o| o.metric == l.metric) {
            return bad(format!(
                "upstream.limits: metric {:?} has two limits; give one (the sum, for quotas that add up)",
                l.metric
            ));
        }
        let per_minute = match &l.per_minute {
            Some(q) => {
                let v = parse_quantity(&q.0)
                    .map_err(|e| InvalidSpec(format!("{at}.perMinute: {e}")))?;
                if !(v > 0.0 && v.is_finite()) {
                    return bad(format!("{at}.perMinute must be positive, got {}", q.0));
                }
                Some(v)
            }
            None => None,
        };
        let query = l.query.clone().filter(|q| !q.trim().is_empty());
        if l.query.is_some() && query.is_none() {
            return bad(format!("{at}.query is empty"));
        }
        if per_minute.is_none() && query.is_none() {
            return bad(format!("{at}: give perMinute, query, or both"));
        }
        if !is_dns_label(&l.source) {
            return bad(format!(
                "{at}.source {:?} is not a source name (lower case letters, digits, '-'); \
                 sources are configured in the operator, never given as a URL",
                l.source
            ));
        }
        out.push(UpstreamConfig {
            source: l.source.clone(),
            quota: planner::Quota {
                metric: l.metric.clone(),
                per_minute,
                unit: match l.metric_unit {
                    UpstreamMetricUnit::PerSecond => planner::MetricUnit::PerSecond,
                    UpstreamMetricUnit::PerMinute => planner::MetricUnit::PerMinute,
                },
                queried: query.is_some(),
            },
            query,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;
    use serde_json::{Value, json};

    fn spec(upstream: Value) -> PredictiveScalerSpec {
        serde_json::from_value(json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "maxReplicas": 60,
            "metrics": [
                {"name": "requests", "query": "q", "targetPerReplica": "40"},
                {"name": "tokens", "query": "t", "targetPerReplica": "5k"},
            ],
            "upstream": upstream,
        }))
        .unwrap()
    }

    #[test]
    fn limits_read_into_quotas() {
        let c = validate(&spec(json!({"limits": [
            {"metric": "requests", "perMinute": "6000"},
            {"metric": "tokens", "perMinute": "2M", "metricUnit": "PerMinute",
             "query": "max(provider_ratelimit_limit_tokens)", "source": "gw"},
        ]})))
        .unwrap();
        let u = &c.upstream;
        assert_eq!(
            u[0],
            UpstreamConfig {
                source: "default".into(),
                query: None,
                quota: planner::Quota {
                    metric: "requests".into(),
                    per_minute: Some(6000.0),
                    unit: planner::MetricUnit::PerSecond,
                    queried: false,
                },
            }
        );
        assert_eq!(u[1].quota.per_minute, Some(2e6));
        assert_eq!(u[1].quota.unit, planner::MetricUnit::PerMinute);
        assert!(u[1].quota.queried);
        assert_eq!(u[1].source, "gw");
        assert_eq!(
            c.policy(std::time::Duration::from_secs(30)).upstream.len(),
            2
        );
        // no upstream: no quotas
        let mut none = spec(json!({"limits": []}));
        none.upstream = None;
        assert!(validate(&none).unwrap().upstream.is_empty());
    }

    #[test]
    fn each_problem_has_a_message_naming_the_limit() {
        for (upstream, want) in [
            (
                json!({"limits": [{"metric": "gpu", "perMinute": "10"}]}),
                "upstream.limits[0] (gpu): there is no metric \"gpu\" in spec.metrics (they are: requests, tokens)",
            ),
            (
                json!({"limits": [{"metric": "requests", "perMinute": "0"}]}),
                "upstream.limits[0] (requests).perMinute must be positive, got 0",
            ),
            (
                json!({"limits": [{"metric": "requests", "perMinute": "-5"}]}),
                "perMinute must be positive",
            ),
            (
                json!({"limits": [{"metric": "requests", "perMinute": "lots"}]}),
                "upstream.limits[0] (requests).perMinute",
            ),
            (
                json!({"limits": [{"metric": "requests"}]}),
                "give perMinute, query, or both",
            ),
            (
                json!({"limits": [{"metric": "requests", "query": " "}]}),
                "(requests).query is empty",
            ),
            (
                json!({"limits": [{"metric": "requests", "perMinute": "1"},
                                  {"metric": "requests", "perMinute": "2"}]}),
                "metric \"requests\" has two limits",
            ),
            (
                json!({"limits": [{"metric": "requests", "query": "q", "source": "http://x"}]}),
                "is not a source name",
            ),
            (
                json!({"limits": []}),
                "upstream.limits needs at least one limit",
            ),
        ] {
            let err = validate(&spec(upstream)).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
