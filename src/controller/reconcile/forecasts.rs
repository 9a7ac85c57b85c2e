//! Stage 3 of a reconcile: each metric's history brought up to date (IO), then its forecast
//! fitted or reused (CPU, on a blocking thread), one metric after the other.
//!
//! Per metric: [`update_history`] (resolve the query for its source, fetch what is new, and
//! refuse an empty or stale series), [`fit_settings`], then [`fit_or_reuse`] (the last fit
//! while it still holds, else [`fit`] with `Auto`'s choice for this epoch).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tracing::{info, warn};

use super::{Run, ScalerState, Stage, timed};
use crate::{
    Error, Result,
    api::{ForecastStatus, GroupConfig, MetricConfig, ScalerConfig, conditions::reasons},
    controller::{Context, status::FitSummary},
    metrics::ModelLabels,
    planner::{
        DEFAULT_BAND_QUANTILE, FittedModel, Forecast, ForecastError, ForecastSettings, MetricInput,
        NoForecast, Selection, Sizing, Unavailable, choice,
        concurrency::rate_per_replica,
        group::{self, Combine, Contributions},
    },
    sources::{self, HistoryKey, HistoryView, MetricsSource, SourceError},
};

/// A fitted forecast and what it was fitted for.
#[derive(Debug, Clone)]
pub(super) struct Fit {
    key: FitKey,
    /// When it was fitted (unix seconds).
    fitted_at: i64,
    result: std::result::Result<Arc<Forecast>, Unavailable>,
    /// `Auto`'s model choice for the epoch the fit was made in.
    selection: Option<Selection>,
    /// With `groupBy`: each series at the times the peak can fall on while the fit serves,
    /// and `Auto`'s choice per series.
    group: Option<Arc<Contributions>>,
    part_selections: BTreeMap<String, Selection>,
}

impl Fit {
    /// A fit of `key` made at `fitted_at`: the forecast, or why there is none; no groups.
    fn made(
        key: FitKey,
        fitted_at: i64,
        result: std::result::Result<Forecast, Unavailable>,
        selection: Option<Selection>,
    ) -> Self {
        Fit {
            key,
            fitted_at,
            result: result.map(Arc::new),
            selection,
            group: None,
            part_selections: BTreeMap::new(),
        }
    }
}

/// Everything a fit depends on; a change means a refit.
#[derive(Debug, Clone, PartialEq)]
struct FitKey {
    history: HistoryKey,
    lookback: i64,
    settings: ForecastSettings,
    /// With `groupBy`: the series query as the source receives it, and `maxSeries`.
    group: Option<(String, usize)>,
}

/// One metric after this stage: what the planner needs of it, and the fit for the status.
pub(super) struct MetricOutcome {
    name: String,
    target_per_replica: f64,
    /// The newest sample, when recent (see [`History::observed`]).
    pub(super) observed: Option<f64>,
    pub(super) forecast: std::result::Result<Arc<Forecast>, Unavailable>,
    /// The fit behind `forecast`, when there is one.
    pub(super) fit: Option<FitSummary>,
    /// A concurrency metric's request duration, in seconds ([`super::concurrency`]).
    pub(super) duration: Option<f64>,
}

impl MetricOutcome {
    /// A metric without usable history: no observation, no forecast.
    fn unavailable(m: &MetricConfig, why: Unavailable) -> Self {
        Self {
            name: m.name.clone(),
            target_per_replica: m.target_per_replica,
            observed: None,
            forecast: Err(why),
            fit: None,
            duration: None,
        }
    }

    fn fitted(m: &MetricConfig, observed: Option<f64>, fit: Fit, duration: Option<f64>) -> Self {
        let summary = fit.result.as_ref().ok().map(|fc| FitSummary {
            metric: m.name.clone(),
            model: fc.model.to_string(),
            fitted_at: fit.fitted_at,
            backtest_error: fc.backtest_error,
            group: fit.group.clone(),
        });
        // more series than maxSeries: the metric holds (no observation either), never a
        // partial sum
        let observed = observed.filter(|_| !holds(&fit.result));
        Self {
            name: m.name.clone(),
            target_per_replica: m.target_per_replica,
            observed,
            forecast: fit.result,
            fit: summary,
            duration,
        }
    }

    /// The metric as the planner takes it.
    pub(super) fn input(&self) -> MetricInput<'_> {
        MetricInput {
            name: &self.name,
            target_per_replica: self.target_per_replica,
            observed: self.observed,
            forecast: self
                .forecast
                .as_ref()
                .map(|f| f.as_ref())
                .map_err(Clone::clone),
            duration: self.duration,
        }
    }
}

/// The sampling every metric of a scaler shares, in seconds and points.
struct Grid {
    step: i64,
    lookback: i64,
    horizon_steps: usize,
    periods: Vec<i64>,
}

impl Grid {
    fn of(config: &ScalerConfig) -> Self {
        let step = config.step.as_secs() as i64;
        Self {
            step,
            lookback: config.lookback.as_secs() as i64,
            horizon_steps: (config.horizon.as_secs() as i64 / step).max(1) as usize,
            periods: config
                .seasonal_periods
                .iter()
                .map(|p| p.as_secs() as i64)
                .collect(),
        }
    }
}

/// Each metric's outcome, in the order of `config.metrics`. Only a fit task that did not finish
/// is an error; a metric without data or forecast is an outcome that says why.
pub(super) async fn evaluate_metrics(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
) -> Result<Vec<MetricOutcome>> {
    let _stage = Stage::enter("evaluate metrics");
    let grid = Grid::of(config);
    let queries = resolve_queries(run, config, grid.step).await;
    // a query or step that changed (or a metric that went) releases its cached history
    let in_use: Vec<HistoryKey> = queries.iter().flatten().map(|q| q.key.clone()).collect();
    run.ctx.history.use_only(run.key, &in_use);
    state
        .fits
        .retain(|name, _| config.metrics.iter().any(|m| &m.name == name));
    let mut out = Vec::with_capacity(config.metrics.len());
    for (m, query) in config.metrics.iter().zip(queries) {
        let history = match update_history(run, config, m, query, &grid).await {
            Ok(h) => h,
            Err(why) => {
                out.push(MetricOutcome::unavailable(m, why));
                continue;
            }
        };
        let duration = match &m.duration_query {
            Some(q) => {
                let labels = run.namespace_labels(config).await;
                match super::concurrency::duration(run, labels, m, q).await {
                    Ok(d) => Some(d),
                    Err(why) => {
                        out.push(MetricOutcome::unavailable(m, why));
                        continue;
                    }
                }
            }
            None => None,
        };
        let read = GroupRead::of(m, &history);
        let key = FitKey {
            history: history.key,
            lookback: grid.lookback,
            settings: fit_settings(run.ctx, config, m, &grid),
            group: history
                .group
                .clone()
                .map(|g| (g, m.group.as_ref().map_or(0, |g| g.max_series))),
        };
        let fit = fit_or_reuse(
            run,
            config,
            state,
            &m.name,
            key,
            history.series,
            (duration, read),
        )
        .await?;
        out.push(MetricOutcome::fitted(m, history.observed, fit, duration));
    }
    Ok(out)
}

/// A metric's source and its history key (with the query as that source receives it).
struct SourcedQuery {
    source: Arc<dyn MetricsSource>,
    key: HistoryKey,
    /// With `groupBy`: the series query as the source receives it.
    group: Option<String>,
}

/// Each metric's query as its source must receive it, if this namespace may use that source.
async fn resolve_queries(
    run: &Run<'_>,
    config: &ScalerConfig,
    step: i64,
) -> Vec<std::result::Result<SourcedQuery, SourceError>> {
    let labels = run.namespace_labels(config).await;
    config
        .metrics
        .iter()
        .map(|m| {
            let resolve = |q: &str| run.ctx.sources.resolve(run.namespace, labels, &m.source, q);
            // with groupBy the history is the total, sum(query); the series are read at refits
            let (r, group) = match &m.group {
                Some(g) => (
                    resolve(&GroupConfig::total_query(&m.query))?,
                    Some(resolve(&g.series_query(&m.query))?.query),
                ),
                None => (resolve(&m.query)?, None),
            };
            let key = HistoryKey {
                source: m.source.clone(),
                query: r.query,
                step,
            };
            Ok(SourcedQuery {
                source: r.source,
                key,
                group,
            })
        })
        .collect()
}

/// A metric's history, up to date and usable.
struct History {
    /// Compact, shared with the cache; decoded by the fit that needs it.
    series: HistoryView,
    key: HistoryKey,
    /// With `groupBy`: the series query, and the source to read it from at a refit.
    group: Option<String>,
    source: Arc<dyn MetricsSource>,
    /// The newest sample, when it is within three steps of the series' end.
    observed: Option<f64>,
}

/// The metric's history brought up to date, or why there is none to use: the query failed (or
/// its source may not be used), it returned nothing, or its newest sample is stale.
async fn update_history(
    run: &Run<'_>,
    config: &ScalerConfig,
    m: &MetricConfig,
    query: std::result::Result<SourcedQuery, SourceError>,
    grid: &Grid,
) -> std::result::Result<History, Unavailable> {
    let _stage = Stage::enter("update history");
    let query = query.map_err(|e| query_failed(m, &e))?;
    let series = fetch(run, m, &query, grid.lookback)
        .await
        .map_err(|e| query_failed(m, &e))?;
    if series.finite_count() == 0 {
        return Err(Unavailable::new(
            NoForecast::Empty,
            format!(
                "the query returned no data in the last {}; check the metric name and labels",
                crate::api::duration::format_duration(config.lookback)
            ),
        ));
    }
    if let Some(why) = stale(series.last_finite(), run.now_s(), grid.step) {
        return Err(why);
    }
    let observed = series
        .last_finite()
        .filter(|(t, _)| *t >= series.end() - 3 * grid.step)
        .map(|(_, v)| v);
    Ok(History {
        series,
        key: query.key,
        group: query.group,
        source: query.source,
        observed,
    })
}

/// The cached history of `query`, updated with what is new, its time on the query-duration
/// histogram.
async fn fetch(
    run: &Run<'_>,
    m: &MetricConfig,
    query: &SourcedQuery,
    lookback: i64,
) -> std::result::Result<HistoryView, SourceError> {
    super::timed_query(
        run,
        &m.source,
        run.ctx.history.update(
            run.key,
            query.source.as_ref(),
            &query.key,
            lookback,
            run.now_s(),
        ),
    )
    .await
}

/// Where a `groupBy` metric's series are read at a refit.
struct GroupRead {
    source: Arc<dyn MetricsSource>,
    query: String,
    labels: Vec<String>,
    max_series: usize,
}

impl GroupRead {
    fn of(m: &MetricConfig, history: &History) -> Option<Self> {
        let (g, query) = (m.group.as_ref()?, history.group.clone()?);
        Some(Self {
            source: history.source.clone(),
            query,
            labels: g.labels.clone(),
            max_series: g.max_series,
        })
    }
}

/// Whether a fit's outcome makes the metric hold the count: more series than `maxSeries`.
fn holds(result: &std::result::Result<Arc<Forecast>, Unavailable>) -> bool {
    matches!(result, Err(u) if u.cause == NoForecast::Metric(reasons::TOO_MANY_SERIES))
}

/// A failed query (or a source this namespace may not use), logged.
fn query_failed(m: &MetricConfig, e: &SourceError) -> Unavailable {
    warn!(metric = %m.name, source = %m.source, reason = e.reason(), error = %e, "metric query failed");
    Unavailable::new(NoForecast::Metric(e.reason()), e.to_string())
}

/// How old the newest sample may be before a metric is stale: ten minutes (Prometheus keeps a
/// stopped series for five in range queries, plus a scrape or rule delay), or three steps.
fn stale_after(step: i64) -> i64 {
    (10 * 60).max(3 * step)
}

/// `StaleMetric` when the newest sample of a series (`last_finite`) is older than
/// [`stale_after`]: a series that stopped (an exporter gone, a renamed label) must not keep
/// driving the target with a forecast of its past.
fn stale(last_finite: Option<(i64, f64)>, now: i64, step: i64) -> Option<Unavailable> {
    let (last, _) = last_finite?;
    let age = now - last;
    (age > stale_after(step)).then(|| {
        // whole minutes past two: "62m", not "3753s"
        let fmt = |s: i64| {
            let s = if s >= 120 { s / 60 * 60 } else { s.max(0) };
            crate::api::duration::format_duration(Duration::from_secs(s as u64))
        };
        Unavailable::new(
            NoForecast::Metric(reasons::STALE_METRIC),
            format!(
                "the newest sample is {} old (stale past {}): did the series stop? check the exporter and the query's labels",
                fmt(age),
                fmt(stale_after(step))
            ),
        )
    })
}

/// What a fit of metric `m` is made with: the spec's model, periods, horizon and band, and the
/// sizing the replicas are computed with (the calibrated margin, see `planner::margin`).
fn fit_settings(
    ctx: &Context,
    config: &ScalerConfig,
    m: &MetricConfig,
    grid: &Grid,
) -> ForecastSettings {
    let sizing = Sizing::new(
        config.lead_time,
        ctx.config.sync_interval,
        config.stabilization_window,
        config.max_percent_per_minute,
        grid.step,
        m.target_per_replica,
        config.quantile,
    )
    .with_periods(&grid.periods);
    ForecastSettings {
        sizing: Some(sizing),
        ..ForecastSettings::new(
            config.model,
            grid.periods.clone(),
            grid.horizon_steps,
            config.quantile.unwrap_or(DEFAULT_BAND_QUANTILE),
            grid.step,
        )
    }
}

/// The forecast of `metric` for `key`: its last fit while that still holds ([`reusable`]),
/// else a new [`fit`] ([`fit_group`] for a `groupBy` metric), remembered for the next
/// reconciles. A concurrency metric's fit is
/// calibrated with the request `duration` of the moment it is made
/// ([`concurrency_sizing`]); a new duration alone does not refit.
async fn fit_or_reuse(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    metric: &str,
    key: FitKey,
    series: HistoryView,
    (duration, group): (Option<f64>, Option<GroupRead>),
) -> Result<Fit> {
    let last = state.fits.get(metric);
    if let Some(fit) = last.filter(|f| reusable(run, config, f, &key)) {
        return Ok(fit.clone());
    }
    let epoch = choice::selection_epoch(run.key, run.now_s());
    let remembered = run.previous().and_then(|s| s.forecast.as_ref());
    let previous = last
        .filter(|f| f.key == key)
        .and_then(|f| f.selection.clone())
        .filter(|s| s.epoch == epoch)
        .or_else(|| remembered_choice(remembered, metric, epoch));
    let settings = concurrency_sizing(&key.settings, duration);
    let previous_parts = last
        .filter(|f| f.key == key)
        .map(|f| f.part_selections.clone())
        .unwrap_or_default();
    let fit = match group {
        Some(g) => {
            let previous = (previous, previous_parts);
            fit_group(run, metric, (key, settings), series, epoch, previous, g).await?
        }
        None => fit(run, metric, key, settings, series, epoch, previous).await?,
    };
    state.fits.insert(metric.to_string(), fit.clone());
    Ok(fit)
}

/// The settings a concurrency metric is fitted with: the calibrated margin counts replicas of
/// the arrival rate, so its target is the rate one replica carries at `duration`
/// (`targetPerReplica` streams / duration). Without a duration, `settings` as they are.
fn concurrency_sizing(settings: &ForecastSettings, duration: Option<f64>) -> ForecastSettings {
    let mut settings = settings.clone();
    if let (Some(d), Some(sizing)) = (duration, settings.sizing.as_mut()) {
        sizing.target_per_replica = rate_per_replica(sizing.target_per_replica, d);
    }
    settings
}

/// Whether `fit` may serve this reconcile: made for the same key, less than a refresh interval
/// ago, and either still covering the lead window or a fit that failed (not retried before the
/// refresh).
fn reusable(run: &Run<'_>, config: &ScalerConfig, fit: &Fit, key: &FitKey) -> bool {
    let now = run.now_s();
    let refresh = config.refresh_interval.as_secs() as i64;
    let window_end = now + (config.lead_time + run.ctx.config.sync_interval).as_secs() as i64;
    fit.key == *key
        && now < fit.fitted_at + refresh
        && match &fit.result {
            Ok(fc) => fc.end() > window_end,
            // a failed fit and too many series are not retried before the refresh
            Err(u) => {
                u.cause == NoForecast::ModelFitFailed
                    || u.cause == NoForecast::Metric(reasons::TOO_MANY_SERIES)
            }
        }
}

/// Fits `series` for `key` with `Auto`'s choice for `epoch` (`previous`, when it is that
/// epoch's) on a blocking thread, once one of the `max_concurrent_fits` slots is free: a start
/// or a failover must not crowd out the lease renewal and the probes.
async fn fit(
    run: &Run<'_>,
    metric: &str,
    key: FitKey,
    settings: ForecastSettings,
    series: HistoryView,
    epoch: i64,
    previous: Option<Selection>,
) -> Result<Fit> {
    let _stage = Stage::enter("fit");
    // the fit shares the cached history (the next update copies it only if the fit still
    // holds it) and decodes it in its slot: one f64 series per fit running
    let ((result, selection), elapsed) = on_fit_slot(run, move || {
        choice::fit_with_choice(&series.series(), &settings, epoch, previous)
    })
    .await?;
    record_fit(run, metric, &result, selection.as_ref(), elapsed);
    let result = result.map_err(|e| Unavailable::from_forecast_error(&e));
    Ok(Fit::made(key, run.now_s(), result, selection))
}

/// `work` (a fit) on a blocking thread, once one of the `max_concurrent_fits` slots is free,
/// and how long it took.
async fn on_fit_slot<T: Send + 'static>(
    run: &Run<'_>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<(T, Duration)> {
    let slot = run
        .ctx
        .fit_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| Error::ForecastTask(e.to_string()))?;
    let (joined, elapsed) = timed(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    }))
    .await;
    let out = joined.map_err(|e| Error::ForecastTask(e.to_string()))?;
    Ok((out, elapsed))
}

/// [`fit`] for a `groupBy` metric: its series read from the source (more than `maxSeries` is
/// `TooManySeries`: the metric holds; another failure leaves the total's forecast alone, with
/// no contributors), then [`group::fit_group`] on a blocking thread. Of the per-series
/// forecasts only their [`Contributions`] at the combined forecast's peak are kept.
async fn fit_group(
    run: &Run<'_>,
    metric: &str,
    (key, settings): (FitKey, ForecastSettings),
    series: HistoryView,
    epoch: i64,
    previous: (Option<Selection>, BTreeMap<String, Selection>),
    read: GroupRead,
) -> Result<Fit> {
    let _stage = Stage::enter("fit group");
    let parts = super::timed_query(
        run,
        &key.history.source,
        sources::read_group(
            read.source.as_ref(),
            &read.query,
            &read.labels,
            key.lookback,
            run.now_s(),
            key.history.step,
            read.max_series,
        ),
    )
    .await;
    let parts = match parts {
        Ok(parts) => parts,
        Err(e @ SourceError::TooManySeries { .. }) => {
            warn!(metric = %metric, error = %e, "groupBy: too many series; the metric holds the count");
            let why = Unavailable::new(NoForecast::Metric(e.reason()), e.to_string());
            return Ok(Fit::made(key, run.now_s(), Err(why), None));
        }
        Err(e) => {
            warn!(metric = %metric, reason = e.reason(), error = %e, "groupBy: cannot read the series; forecasting the total alone");
            return fit(run, metric, key, settings, series, epoch, previous.0).await;
        }
    };
    let now = run.now_s();
    let (fitted, elapsed) = on_fit_slot(run, move || {
        let g = group::fit_group(
            &series.series(),
            &parts,
            &settings,
            epoch,
            (previous.0, &previous.1),
        );
        drop(parts);
        let forecast = g.forecast(Combine::default());
        // the per-series forecasts end here: status needs them at the peak only
        let contributions = forecast
            .as_ref()
            .ok()
            .map(|fc| Contributions::of(&g.group, fc))
            .unwrap_or_default();
        let vanished = g.group.vanished.len();
        (
            forecast,
            g.selection,
            g.part_selections,
            contributions,
            vanished,
        )
    })
    .await?;
    let (forecast, selection, part_selections, contributions, vanished) = fitted;
    record_fit(run, metric, &forecast, selection.as_ref(), elapsed);
    info!(metric = %metric, series = contributions.series(), vanished, "groupBy: forecast bottom-up");
    let result = forecast.map_err(|e| Unavailable::from_forecast_error(&e));
    Ok(Fit {
        group: Some(Arc::new(contributions)),
        part_selections,
        ..Fit::made(key, now, result, selection)
    })
}

/// A fit on the fit-duration histogram (by model kind, or `failed`) and in the log.
fn record_fit(
    run: &Run<'_>,
    metric: &str,
    result: &std::result::Result<Forecast, ForecastError>,
    selection: Option<&Selection>,
    elapsed: Duration,
) {
    let model = match result {
        Ok(fc) => fc.model.family(),
        Err(_) => "failed",
    };
    run.ctx
        .metrics
        .fit_duration
        .get_or_create(&ModelLabels {
            model: model.into(),
        })
        .observe(elapsed.as_secs_f64());
    match result {
        Ok(fc) => {
            let backtests = selection.map(Selection::describe).unwrap_or_default();
            info!(metric = %metric, model = %fc.model, fit_ms = elapsed.as_millis() as u64, backtests, "fitted forecast")
        }
        Err(e) => warn!(metric = %metric, error = %e, "no forecast"),
    }
}

/// The model chosen in this epoch before a restart, as the status remembers it (the status
/// edge of [`choice::remembered_choice`]): only a forecast of this metric counts.
fn remembered_choice(
    remembered: Option<&ForecastStatus>,
    metric: &str,
    epoch: i64,
) -> Option<Selection> {
    let f = remembered.filter(|f| f.metric == metric)?;
    choice::remembered_choice(
        FittedModel::kind_of_name(&f.model),
        f.generated_at.0.as_second(),
        epoch,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::ModelKind;
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    #[test]
    fn a_restart_reuses_the_choice_the_status_remembers_for_this_epoch() {
        let epoch = 1_767_225_600;
        let status = |metric: &str, model: &str, at: i64| ForecastStatus {
            metric: metric.into(),
            model: model.into(),
            generated_at: Time(Timestamp::from_second(at).unwrap()),
            peak: None,
            backtest_error: None,
            series: None,
            top_contributors: vec![],
        };
        let s = status("requests", "SeasonalNaive(7d)", epoch + 60);
        let got = remembered_choice(Some(&s), "requests", epoch).expect("remembered");
        assert_eq!((got.model, got.epoch), (ModelKind::SeasonalNaive, epoch));
        let s = status("requests", "MSTL(1d,7d)+AutoETS", epoch + 60);
        assert_eq!(
            remembered_choice(Some(&s), "requests", epoch).map(|s| s.model),
            Some(ModelKind::Mstl)
        );
        // made in an earlier epoch, for another metric, or not a model that was chosen
        let s = status("requests", "ETS", epoch - 1);
        assert_eq!(remembered_choice(Some(&s), "requests", epoch), None);
        let s = status("tokens", "ETS", epoch + 1);
        assert_eq!(remembered_choice(Some(&s), "requests", epoch), None);
        let s = status("requests", "Constant", epoch + 1);
        assert_eq!(remembered_choice(Some(&s), "requests", epoch), None);
        assert_eq!(remembered_choice(None, "requests", epoch), None);
    }
}
