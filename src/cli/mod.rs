//! Subcommands besides `run`: `forecast` (one forecast now), `simulate` (a replay, scored),
//! `bench` (speed figures). `bench` and `simulate` of a trace file need no cluster;
//! `forecast` and `simulate --query`/`--scaler` read Prometheus, and `--scaler` the cluster.

pub mod bench;
pub mod fleet;
pub mod forecast;
pub mod simulate;
pub mod source_flags;

use std::time::Duration;

use crate::{api::duration::parse_duration, planner::ModelKind};

/// A duration flag: its value if given, else the spec's (or scaler's), else `default`.
pub(crate) fn duration_flag(
    flag: &str,
    value: &Option<String>,
    from: Option<Duration>,
    default: &str,
) -> anyhow::Result<Duration> {
    match (value, from) {
        (Some(v), _) => parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}")),
        (None, Some(d)) => Ok(d),
        (None, None) => Ok(parse_duration(default).expect("valid default")),
    }
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
