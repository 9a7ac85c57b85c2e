//! Stage 3, for a metric with `concurrency`: its request duration, read through the same
//! sources layer as its query (the source's access rules and the namespace isolation of
//! queries). Which reading is used and what sizing does with it is the planner's rule
//! ([`crate::planner::concurrency`]).

use tracing::warn;

use super::{Run, recent_points};
use crate::sources::access::NamespaceLabels;
use crate::{
    api::MetricConfig,
    planner::{
        NoForecast, Unavailable,
        concurrency::{DURATION_MAX_AGE, read_duration},
    },
};

/// The step of the duration's range query over the last [`DURATION_MAX_AGE`].
const STEP: i64 = 60;

/// The request duration of `m` (seconds) to size with now, or why there is none
/// (`DurationUnavailable`): the query failed, returned nothing or only NaN in the last hour,
/// or its newest value is not positive.
pub(super) async fn duration(
    run: &Run<'_>,
    labels: &NamespaceLabels,
    m: &MetricConfig,
    duration_query: &str,
) -> Result<f64, Unavailable> {
    let unavailable = |message: String| {
        warn!(metric = %m.name, source = %m.source, error = %message, "no request duration");
        Unavailable::new(NoForecast::DurationUnavailable, message)
    };
    let failed = |e: crate::sources::SourceError| {
        unavailable(format!("the duration query failed ({}): {e}", e.reason()))
    };
    let window = DURATION_MAX_AGE - STEP;
    let points = recent_points(run, labels, (&m.source, duration_query), window, STEP)
        .await
        .map_err(failed)?;
    read_duration(&points, run.now_s()).map_err(|p| unavailable(p.to_string()))
}
