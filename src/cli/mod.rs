//! Subcommands besides `run`: `forecast` (one forecast now), `simulate` (a replay, scored),
//! `bench` (speed figures). `bench` and `simulate` of a trace file need no cluster;
//! `forecast` and `simulate --query`/`--scaler` read Prometheus, and `--scaler` the cluster.

pub mod bench;
pub mod concurrency;
pub mod fleet;
pub mod forecast;
pub mod simulate;
pub mod source_flags;

use std::time::Duration;

use crate::{
    api::duration::parse_duration,
    planner::ModelKind,
    sources::{Resolved, SourceError, Sources, access::NamespaceLabels},
};

/// A duration flag: its value if given, else the spec's (or scaler's), else `default`.
pub(crate) fn duration_flag(
    flag: &str,
    value: Option<&str>,
    from: Option<Duration>,
    default: &str,
) -> anyhow::Result<Duration> {
    match (value, from) {
        (Some(v), _) => parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}")),
        (None, Some(d)) => Ok(d),
        (None, None) => Ok(parse_duration(default).expect("valid default")),
    }
}

/// `--quantile` (or a spec's): an upper quantile, strictly between 0 and 1.
pub(crate) fn quantile_flag(q: f64) -> anyhow::Result<f64> {
    if !(q > 0.0 && q < 1.0) {
        anyhow::bail!("--quantile must be between 0 and 1, exclusive; got {q}");
    }
    Ok(q)
}

/// `--model`: its value if given, else the spec's, else `Auto`.
pub(crate) fn model_flag(
    value: Option<&str>,
    from: Option<ModelKind>,
) -> anyhow::Result<ModelKind> {
    Ok(match value {
        None => from.unwrap_or(ModelKind::Auto),
        Some("auto") => ModelKind::Auto,
        Some("mstl") => ModelKind::Mstl,
        Some("ets") => ModelKind::Ets,
        Some("seasonal-naive") => ModelKind::SeasonalNaive,
        Some(other) => {
            anyhow::bail!("--model must be auto, mstl, ets or seasonal-naive; got {other:?}")
        }
    })
}

/// The `p` quantile (0 to 1) of durations sorted ascending, by the nearest rank; zero if
/// there are none.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get((sorted.len().saturating_sub(1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Models with how often each was fitted: `ETS x3, MSTL(1d)+AutoETS x5` (empty if none).
pub(crate) fn models_line(models: &[(String, usize)]) -> String {
    models
        .iter()
        .map(|(m, c)| format!("{m} x{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A PredictiveScaler's namespace and that namespace's labels: the operator sends its queries
/// under the source's rules for them (allowed namespaces, namespace isolation).
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub namespace: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `query` as it goes to the source named `source`: under a scaler's `scope` as the operator
/// sends it, else as given.
pub(crate) fn resolve_query(
    sources: &Sources,
    source: &str,
    query: &str,
    scope: Option<&Scope>,
) -> Result<Resolved, SourceError> {
    match scope {
        Some(s) => sources.resolve(
            &s.namespace,
            &NamespaceLabels::Read(s.labels.clone()),
            source,
            query,
        ),
        None => sources.get(source).map(|source| Resolved {
            source,
            query: query.to_string(),
        }),
    }
}
