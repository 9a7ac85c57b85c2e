//! Turns a `PredictiveScalerSpec` into a [`ScalerConfig`] of plain numbers, or says, in one
//! message a person can act on, what is wrong with it. Pure: no IO, no clock.
//!
//! The CRD's CEL rules reject most bad specs at the API server already; this covers what CEL
//! cannot say and objects that were stored before a rule existed.

use std::time::Duration;

use super::{
    Fallback, Mode, ModelKind, PredictiveScalerSpec,
    duration::{format_duration, parse_duration},
    quantity::parse_quantity,
};

/// A spec read into numbers, ready for the planner and the forecaster.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerConfig {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub mode: Mode,
    pub metrics: Vec<MetricConfig>,
    pub lookback: Duration,
    pub step: Duration,
    pub model: ModelKind,
    /// Seasonal periods given in the spec; empty means "detect".
    pub seasonal_periods: Vec<Duration>,
    pub horizon: Duration,
    pub refresh_interval: Duration,
    pub quantile: f64,
    pub lead_time: Duration,
    pub max_replicas_per_minute: u32,
    pub stabilization_window: Duration,
    pub max_percent_per_minute: u32,
    pub fallback: Fallback,
}

/// One metric of a [`ScalerConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    pub name: String,
    pub source: String,
    pub query: String,
    pub target_per_replica: f64,
}

/// Why a spec cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid spec: {0}")]
pub struct InvalidSpec(pub String);

/// Reads and checks a spec.
pub fn validate(spec: &PredictiveScalerSpec) -> Result<ScalerConfig, InvalidSpec> {
    let bad = |msg: String| Err(InvalidSpec(msg));
    let dur = |field: &str, value: &str| {
        parse_duration(value).map_err(|e| InvalidSpec(format!("{field}: {e}")))
    };
    if spec.min_replicas < 0 {
        return bad(format!(
            "minReplicas is {}, must be 0 or more",
            spec.min_replicas
        ));
    }
    if spec.max_replicas < 1 {
        return bad(format!(
            "maxReplicas is {}, must be 1 or more",
            spec.max_replicas
        ));
    }
    if spec.min_replicas > spec.max_replicas {
        return bad(format!(
            "minReplicas ({}) is greater than maxReplicas ({})",
            spec.min_replicas, spec.max_replicas
        ));
    }
    if spec.metrics.is_empty() {
        return bad("at least one metric is required".into());
    }
    let mut metrics = Vec::with_capacity(spec.metrics.len());
    for (i, m) in spec.metrics.iter().enumerate() {
        if m.name.is_empty() {
            return bad(format!("metrics[{i}].name is empty"));
        }
        if spec.metrics[..i].iter().any(|o| o.name == m.name) {
            return bad(format!("metric name {:?} is used twice", m.name));
        }
        if !crate::sources::config::is_valid_source_name(&m.source) {
            return bad(format!(
                "metrics[{i}] ({}).source {:?} is not a source name (lower case letters, digits, '-'); \
                 sources are configured in the operator, never given as a URL",
                m.name, m.source
            ));
        }
        if m.query.trim().is_empty() {
            return bad(format!("metrics[{i}] ({}): query is empty", m.name));
        }
        let target = parse_quantity(&m.target_per_replica.0)
            .map_err(|e| InvalidSpec(format!("metrics[{i}] ({}).targetPerReplica: {e}", m.name)))?;
        if target <= 0.0 {
            return bad(format!(
                "metrics[{i}] ({}).targetPerReplica must be positive, got {}",
                m.name, m.target_per_replica.0
            ));
        }
        metrics.push(MetricConfig {
            name: m.name.clone(),
            source: m.source.clone(),
            query: m.query.clone(),
            target_per_replica: target,
        });
    }
    let lookback = dur("history.lookback", &spec.history.lookback)?;
    let step = dur("history.step", &spec.history.step)?;
    if step < Duration::from_secs(1) {
        return bad(format!(
            "history.step is {}, must be at least 1s",
            spec.history.step
        ));
    }
    if step >= lookback {
        return bad(format!(
            "history.step ({}) must be shorter than history.lookback ({})",
            spec.history.step, spec.history.lookback
        ));
    }
    let horizon = dur("forecast.horizon", &spec.forecast.horizon)?;
    let refresh_interval = dur("forecast.refreshInterval", &spec.forecast.refresh_interval)?;
    let lead_time = dur("scaleUp.leadTime", &spec.scale_up.lead_time)?;
    let stabilization_window = dur(
        "scaleDown.stabilizationWindow",
        &spec.scale_down.stabilization_window,
    )?;
    if lead_time >= horizon {
        return bad(format!(
            "scaleUp.leadTime ({}) must be shorter than forecast.horizon ({})",
            spec.scale_up.lead_time, spec.forecast.horizon
        ));
    }
    if horizon < step {
        return bad(format!(
            "forecast.horizon ({}) must be at least one history.step ({})",
            spec.forecast.horizon, spec.history.step
        ));
    }
    let q = spec.forecast.quantile;
    if !(q > 0.0 && q < 1.0) {
        return bad(format!(
            "forecast.quantile is {q}, must be between 0 and 1, exclusive"
        ));
    }
    let mut seasonal_periods = Vec::new();
    for (i, p) in spec.forecast.seasonal_periods.iter().enumerate() {
        let d = dur(&format!("forecast.seasonalPeriods[{i}]"), p)?;
        if d.as_secs() < 2 * step.as_secs() || d.as_secs() % step.as_secs() != 0 {
            return bad(format!(
                "forecast.seasonalPeriods[{i}] ({p}) must be a whole number of steps ({}), at least two",
                format_duration(step)
            ));
        }
        seasonal_periods.push(d);
    }
    if spec.scale_up.max_replicas_per_minute < 0 {
        return bad("scaleUp.maxReplicasPerMinute must be 0 or more".into());
    }
    if !(0..=100).contains(&spec.scale_down.max_percent_per_minute) {
        return bad("scaleDown.maxPercentPerMinute must be between 0 and 100".into());
    }
    Ok(ScalerConfig {
        min_replicas: spec.min_replicas as u32,
        max_replicas: spec.max_replicas as u32,
        mode: spec.mode,
        metrics,
        lookback,
        step,
        model: spec.forecast.model,
        seasonal_periods,
        horizon,
        refresh_interval,
        quantile: q,
        lead_time,
        max_replicas_per_minute: spec.scale_up.max_replicas_per_minute as u32,
        stabilization_window,
        max_percent_per_minute: spec.scale_down.max_percent_per_minute as u32,
        fallback: spec.fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PredictiveScalerSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "minReplicas": 2,
            "maxReplicas": 60,
            "metrics": [{"name": "requests", "query": "q", "targetPerReplica": "1.5k"}],
        }))
        .unwrap()
    }

    #[test]
    fn defaults_read_into_numbers() {
        let c = validate(&spec()).unwrap();
        assert_eq!(c.metrics[0].target_per_replica, 1500.0);
        assert_eq!(c.metrics[0].source, "default");
        assert_eq!(c.lookback, Duration::from_secs(14 * 86_400));
        assert_eq!(c.step, Duration::from_secs(60));
        assert_eq!(c.lead_time, Duration::from_secs(300));
        assert_eq!((c.quantile, c.max_percent_per_minute), (0.9, 10));
    }

    #[test]
    fn each_problem_has_a_message() {
        type Case = (fn(&mut PredictiveScalerSpec), &'static str);
        let cases: Vec<Case> = vec![
            (
                |s| s.min_replicas = 61,
                "minReplicas (61) is greater than maxReplicas (60)",
            ),
            (|s| s.min_replicas = -1, "minReplicas is -1"),
            (|s| s.metrics.clear(), "at least one metric"),
            (
                |s| s.metrics[0].target_per_replica.0 = "0".into(),
                "must be positive",
            ),
            (
                |s| s.metrics[0].target_per_replica.0 = "lots".into(),
                "invalid quantity",
            ),
            (|s| s.metrics[0].query = " ".into(), "query is empty"),
            (
                |s| s.history.step = "5x".into(),
                "history.step: invalid duration",
            ),
            (
                |s| s.scale_up.lead_time = "3h".into(),
                "must be shorter than forecast.horizon",
            ),
            (|s| s.forecast.quantile = 1.0, "between 0 and 1"),
            (
                |s| s.forecast.seasonal_periods = vec!["90s".into()],
                "whole number of steps",
            ),
            (|s| s.metrics.push(s.metrics[0].clone()), "used twice"),
            (
                |s| s.metrics[0].source = "http://evil.example:9090".into(),
                "is not a source name",
            ),
        ];
        for (change, want) in cases {
            let mut s = spec();
            change(&mut s);
            let err = validate(&s).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
