//! One reconcile: read the target (IO), bring the history up to date (IO), fit or reuse the
//! forecast (CPU, on a blocking thread), decide (pure), write the target and the status (IO).

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::Patch,
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use super::{Context, status, target};
use crate::{
    Error, Result,
    api::{
        ForecastStatus, Mode, PredictiveScaler, ScalerConfig,
        conditions::{Cond, Status, reasons, types, unavailable_reason},
        validate_with,
    },
    metrics::{
        Metrics, ModelLabels, QueryLabels, ReasonLabels, ScaleLabels, ScalerLabels,
        ScalerMetricLabels,
    },
    planner::{
        self, DEFAULT_BAND_QUANTILE, FittedModel, Forecast, ForecastSettings, MetricInput,
        NoForecast, Peak, PlannerState, Selection, Sizing, Unavailable, choice, series::Series,
    },
    sources::{HistoryKey, MetricsSource, SourceError},
};

/// What a PredictiveScaler's reconciles remember between runs (in memory only).
#[derive(Debug, Default)]
pub struct ScalerState {
    pub fits: HashMap<String, Fit>,
    pub planner: PlannerState,
    /// What `mode: DryRun` plans with (its would-be count and its own rate budgets).
    pub dry_run: planner::DryRunState,
    /// The reason of the last reconcile's Ready=False (or Unknown), for the errors counter.
    pub ready_failure: Option<&'static str>,
    /// The scale target the memory above is about (`apiVersion/kind/name`): another target
    /// starts it afresh.
    pub target: Option<String>,
    /// Whether this scaler was reconciled before (its first requeue is jittered).
    pub reconciled: bool,
}

/// A fitted forecast and what it was fitted for.
#[derive(Debug, Clone)]
pub struct Fit {
    pub key: FitKey,
    pub fitted_at: i64,
    pub result: std::result::Result<Arc<Forecast>, Unavailable>,
    /// `Auto`'s model choice for the epoch the fit was made in.
    pub selection: Option<Selection>,
}

/// Everything a fit depends on; a change means a refit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitKey {
    pub history: HistoryKey,
    pub lookback: i64,
    pub settings: ForecastSettings,
}

/// A metric's source and its history key (with the query as that source receives it).
struct SourcedQuery {
    source: Arc<dyn MetricsSource>,
    key: HistoryKey,
}

/// One metric after the IO stage.
struct MetricOutcome {
    name: String,
    target_per_replica: f64,
    observed: Option<f64>,
    forecast: std::result::Result<Arc<Forecast>, Unavailable>,
    fit: Option<(String, i64, Option<f64>)>,
}

#[instrument(skip_all, fields(namespace = ps.namespace().as_deref().unwrap_or(""), name = %ps.name_any()))]
pub async fn reconcile(ps: Arc<PredictiveScaler>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let now = Timestamp::now();
    let namespace = ps.namespace().ok_or(Error::NoNamespace)?;
    let key = super::object_key(&ps);
    let in_flight = InFlight::enter(&ctx.metrics.reconciles_in_flight);
    debug!(in_flight = in_flight.count, "reconcile started");
    let mut state = ctx.take_state(&key);
    state.ready_failure = None;
    let result = reconcile_inner(&ps, &ctx, &key, &namespace, &mut state, now).await;
    // every reconcile that did not end ready counts: an error, or Ready=False with its reason
    let failure = match &result {
        Err(e) => Some(e.reason()),
        Ok(_) => state.ready_failure,
    };
    let result = result.map(|action| {
        if state.reconciled {
            action
        } else {
            state.reconciled = true;
            jitter_first(action, &key, ctx.config.sync_interval)
        }
    });
    ctx.put_state(key, state);
    drop(in_flight);
    let elapsed = started.elapsed();
    ctx.metrics
        .reconcile_duration
        .observe(elapsed.as_secs_f64());
    debug!(
        elapsed_us = elapsed.as_micros() as u64,
        ok = result.is_ok(),
        "reconciled"
    );
    if let Some(reason) = failure {
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
    result
}

/// The first requeue of a scaler, spread over up to half a sync interval (by a stable hash of
/// its key): a start or a failover reconciles every scaler at once, and without this they would
/// stay in lockstep ever after.
fn jitter_first(action: Action, key: &str, sync_interval: Duration) -> Action {
    if action == Action::requeue(sync_interval) {
        let hash = choice::stable_hash(key);
        let extra = sync_interval.mul_f64((hash % 1000) as f64 / 2000.0);
        Action::requeue(sync_interval + extra)
    } else {
        action
    }
}

/// Counts a running reconcile on the in-flight gauge while it lives.
struct InFlight<'a> {
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
    /// Reconciles running, this one included, when it started.
    count: i64,
}

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        let count = gauge.inc() + 1;
        Self { gauge, count }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
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

async fn reconcile_inner(
    ps: &PredictiveScaler,
    ctx: &Context,
    key: &str,
    namespace: &str,
    state: &mut ScalerState,
    now: Timestamp,
) -> Result<Action> {
    let now_s = now.as_second();
    let config = match validate_with(&ps.spec, &ctx.config.limits()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "invalid spec; the target is not written");
            let report = status::Report {
                current: ps
                    .status
                    .as_ref()
                    .and_then(|s| s.current_replicas)
                    .map(|c| c.max(0) as u32),
                desired: None,
                scaled_at: None,
                forecast: None,
                conditions: status::invalid_spec(&e.0),
            };
            finish(ps, ctx, namespace, state, &report, now).await?;
            return Ok(Action::await_change());
        }
    };

    ctx.metrics.set_scaler_metrics(
        namespace,
        &ps.name_any(),
        &config
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect::<Vec<_>>(),
    );

    // the target
    let target_ref = &ps.spec.scale_target_ref;
    let target_desc = format!("{} {}/{}", target_ref.kind, namespace, target_ref.name);
    let target_id = format!(
        "{}/{}/{}",
        target_ref.api_version, target_ref.kind, target_ref.name
    );
    if state.target.as_deref() != Some(target_id.as_str()) {
        // a new target: the old one's stabilisation window and rate budgets are not its own
        if state.target.is_some() {
            info!(target = %target_desc, "new scale target: planner memory reset");
        }
        state.planner = PlannerState::default();
        state.dry_run = planner::DryRunState::default();
        state.target = Some(target_id.clone());
    }
    if let Some(why) = conflict(ctx, key, namespace, target_ref, &target_desc) {
        let report = target_report(ps, reasons::AMBIGUOUS_TARGET, why);
        finish(ps, ctx, namespace, state, &report, now).await?;
        return Ok(Action::requeue(ctx.config.sync_interval));
    }
    let resource = match target::bounded(target::resolve(&ctx.client, target_ref)).await {
        Ok(r) => r,
        Err(e) => {
            let report = target_report(
                ps,
                reasons::FAILED_GET_SCALE,
                format!(
                    "cannot resolve kind {} {}: {e}",
                    target_ref.api_version, target_ref.kind
                ),
            );
            finish(ps, ctx, namespace, state, &report, now).await?;
            return Err(Error::ResolveTarget(e));
        }
    };
    let api = target::api(&ctx.client, namespace, &resource);
    let current = match target::get_replicas(&api, &target_ref.name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let report = target_report(
                ps,
                reasons::TARGET_NOT_FOUND,
                format!("{target_desc} not found"),
            );
            finish(ps, ctx, namespace, state, &report, now).await?;
            return Ok(Action::requeue(ctx.config.sync_interval));
        }
        Err(e) => {
            let report = target_report(
                ps,
                reasons::FAILED_GET_SCALE,
                format!("reading the scale of {target_desc}: {e}"),
            );
            finish(ps, ctx, namespace, state, &report, now).await?;
            return Err(Error::GetScale(e));
        }
    };

    // a target at 0 replicas is switched off, as for the HPA, unless the scaler owns zero
    if current == 0 && !config.allow_scale_to_zero {
        let message = format!(
            "{target_desc} is scaled to 0: prescale leaves it there until it is scaled up (set \
             allowScaleToZero to let prescale scale from and to zero)"
        );
        let mut report = target_report(ps, reasons::SCALING_DISABLED, message);
        report.current = Some(0);
        finish(ps, ctx, namespace, state, &report, now).await?;
        return Ok(Action::requeue(ctx.config.sync_interval));
    }

    // history and forecasts
    let remembered = ps.status.as_ref().and_then(|s| s.forecast.as_ref());
    let outcomes = evaluate_metrics(ctx, key, namespace, &config, state, now_s, remembered).await?;
    let inputs: Vec<MetricInput<'_>> = outcomes
        .iter()
        .map(|o| MetricInput {
            name: &o.name,
            target_per_replica: o.target_per_replica,
            observed: o.observed,
            forecast: o
                .forecast
                .as_ref()
                .map(|f| f.as_ref())
                .map_err(Clone::clone),
        })
        .collect();
    let policy = config.policy(ctx.config.sync_interval);
    let decision = match config.mode {
        Mode::Active => {
            state.dry_run = planner::DryRunState::default();
            planner::plan(now_s, current, &policy, &inputs, &mut state.planner)
        }
        Mode::DryRun => planner::plan_dry_run(now_s, current, &policy, &inputs, &mut state.dry_run),
    };
    for m in &decision.metrics {
        if let Some(u) = &m.unavailable {
            ctx.metrics
                .metric_unavailable
                .get_or_create(&ReasonLabels {
                    reason: unavailable_reason(u.cause).to_string(),
                })
                .inc();
        }
    }
    for (m, o) in decision.metrics.iter().zip(&outcomes) {
        let labels = ScalerMetricLabels {
            namespace: namespace.to_string(),
            name: ps.name_any(),
            metric: m.name.clone(),
        };
        let forecast_now = o.forecast.as_ref().ok().and_then(|fc| fc.point_at(now_s));
        let mx = &ctx.metrics;
        Metrics::set_or_remove(&mx.forecast_peak, &labels, m.peak.map(|p| p.value));
        Metrics::set_or_remove(&mx.forecast_now, &labels, forecast_now);
        Metrics::set_or_remove(&mx.observed_load, &labels, o.observed);
        let backtest = o.fit.as_ref().and_then(|(_, _, err)| *err);
        Metrics::set_or_remove(&mx.backtest_error, &labels, backtest);
    }

    // the target write
    let mut scaled_at = None;
    let write = match config.mode {
        Mode::DryRun => {
            let previous = ps.status.as_ref().and_then(|s| s.desired_replicas);
            if decision.desired != current && previous != Some(decision.desired as i32) {
                publish(
                    ctx,
                    ps,
                    EventType::Normal,
                    "Scale",
                    "DryRunScale",
                    format!(
                        "DryRun: would scale {target_desc} from {current} to {}; {}",
                        decision.desired,
                        why(&decision)
                    ),
                )
                .await;
            }
            status::Write::DryRun
        }
        Mode::Active if decision.desired == current => status::Write::Active(Ok(())),
        Mode::Active => {
            // the leader lease was lost (or is about to be) during this reconcile: write nothing
            let Some(budget) = ctx.write_budget() else {
                return Ok(Action::await_change());
            };
            match target::set_replicas(&api, &target_ref.name, decision.desired, budget).await {
                Ok(()) => {
                    // only a write that landed spends the rate limits' budget
                    planner::record_scale(&mut state.planner, now_s, current, decision.desired);
                    let up = decision.desired > current;
                    let direction = if up { "ScaledUp" } else { "ScaledDown" };
                    ctx.metrics
                        .scale_operations
                        .get_or_create(&ScaleLabels {
                            namespace: namespace.to_string(),
                            name: ps.name_any(),
                            direction: if up { "up" } else { "down" }.into(),
                        })
                        .inc();
                    info!(
                        current,
                        desired = decision.desired,
                        driving = decision.driving_metric.as_deref().unwrap_or("-"),
                        "scaled target"
                    );
                    scale_event(
                        ctx,
                        ps,
                        namespace,
                        direction,
                        format!(
                            "scaled {target_desc} from {current} to {}; {}",
                            decision.desired,
                            why(&decision)
                        ),
                    )
                    .await;
                    scaled_at = Some(Time(now));
                    status::Write::Active(Ok(()))
                }
                Err(e) => {
                    warn!(error = %e, "scaling the target failed");
                    let report = status::Report {
                        current: Some(current),
                        desired: Some(decision.desired),
                        scaled_at: None,
                        forecast: None,
                        conditions: status::decided(
                            &decision,
                            current,
                            &status::Write::Active(Err(format!(
                                "updating the scale of {target_desc}: {e}"
                            ))),
                        ),
                    };
                    finish(ps, ctx, namespace, state, &report, now).await?;
                    return Err(Error::UpdateScale(e));
                }
            }
        }
    };
    let fits: Vec<(String, String, i64, Option<f64>)> = outcomes
        .iter()
        .filter_map(|o| {
            o.fit
                .clone()
                .map(|(model, at, err)| (o.name.clone(), model, at, err))
        })
        .collect();
    let report = status::Report {
        current: Some(if scaled_at.is_some() {
            decision.desired
        } else {
            current
        }),
        desired: Some(decision.desired),
        scaled_at,
        forecast: status::forecast_status(&decision, &fits),
        conditions: status::decided(&decision, current, &write),
    };
    finish(ps, ctx, namespace, state, &report, now).await?;
    Ok(Action::requeue(ctx.config.sync_interval))
}

/// Why `key` may not scale its target: another PredictiveScaler or an HPA scales it too.
/// Scalers that fight over a target make it flap; none of them writes until one is left.
fn conflict(
    ctx: &Context,
    key: &str,
    namespace: &str,
    target_ref: &crate::api::ScaleTargetRef,
    target_desc: &str,
) -> Option<String> {
    let names = ctx.other_scalers_of(key, namespace, target_ref);
    if !names.is_empty() {
        return Some(format!(
            "PredictiveScaler {} also scales {target_desc}: one scaler per target (delete or retarget all but one)",
            names.join(", ")
        ));
    }
    let group = target_ref
        .api_version
        .split_once('/')
        .map_or("", |(g, _)| g);
    ctx.hpa_on(namespace, group, &target_ref.kind, &target_ref.name)
        .map(|hpa| {
            format!(
                "HorizontalPodAutoscaler {hpa} also scales {target_desc}: remove it, or let one of them own the replicas"
            )
        })
}

fn target_report(ps: &PredictiveScaler, reason: &'static str, message: String) -> status::Report {
    status::Report {
        current: None,
        desired: ps
            .status
            .as_ref()
            .and_then(|s| s.desired_replicas)
            .map(|d| d.max(0) as u32),
        scaled_at: None,
        forecast: None,
        conditions: status::target_problem(reason, &message),
    }
}

/// A one-line reason for an event.
fn why(d: &planner::Decision) -> String {
    let Some(name) = &d.driving_metric else {
        return "no metric data; holding".into();
    };
    let Some(m) = d.metrics.iter().find(|m| &m.name == name) else {
        return String::new();
    };
    match (m.forecast_replicas, m.reactive_replicas, &m.peak) {
        (
            Some(f),
            r,
            Some(Peak {
                at,
                value,
                replicas,
            }),
        ) if f >= r.unwrap_or(0) => format!(
            "driven by metric {name}: its forecast needs {f} replicas within the lead time (peak {} at {} needs {replicas})",
            status::format_value(*value),
            Timestamp::from_second(*at)
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
        (_, Some(r), _) => format!("driven by metric {name}: its observed load needs {r} replicas"),
        _ => format!("driven by metric {name}: holding"),
    }
}

/// How old the newest sample may be before a metric is stale: ten minutes (Prometheus keeps a
/// stopped series for five in range queries, plus a scrape or rule delay), or three steps.
pub fn stale_after(step: i64) -> i64 {
    (10 * 60).max(3 * step)
}

/// `StaleMetric` when the newest sample of `series` is older than [`stale_after`]: a series that
/// stopped (an exporter gone, a renamed label) must not keep driving the target with a forecast
/// of its past.
fn stale(series: &Series, now: i64, step: i64) -> Option<Unavailable> {
    let (last, _) = series.last_finite()?;
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

/// The labels of `namespace`, when a source a metric names admits namespaces by label; `None`
/// otherwise, or when they cannot be read (then only the names and `*` admit it).
async fn namespace_labels(
    ctx: &Context,
    namespace: &str,
    config: &ScalerConfig,
) -> Option<std::collections::BTreeMap<String, String>> {
    let needed = config.metrics.iter().any(|m| {
        ctx.sources
            .access(&m.source)
            .is_some_and(|a| a.needs_labels())
    });
    if !needed {
        return None;
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(ctx.client.clone());
    match api.get_metadata(namespace).await {
        Ok(ns) => Some(ns.metadata.labels.unwrap_or_default()),
        Err(e) => {
            warn!(error = %e, "cannot read the namespace's labels for a source's allowedNamespaceSelector");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)] // plain wiring of the reconcile's pieces
async fn evaluate_metrics(
    ctx: &Context,
    user: &str,
    namespace: &str,
    config: &ScalerConfig,
    state: &mut ScalerState,
    now: i64,
    remembered: Option<&ForecastStatus>,
) -> Result<Vec<MetricOutcome>> {
    let step = config.step.as_secs() as i64;
    let lookback = config.lookback.as_secs() as i64;
    let horizon_steps = (config.horizon.as_secs() as i64 / step).max(1) as usize;
    let periods: Vec<i64> = config
        .seasonal_periods
        .iter()
        .map(|p| p.as_secs() as i64)
        .collect();
    // who may use which source, and each query as its source must receive it
    let labels = namespace_labels(ctx, namespace, config).await;
    let resolved: Vec<std::result::Result<SourcedQuery, SourceError>> = config
        .metrics
        .iter()
        .map(|m| {
            let r = ctx
                .sources
                .resolve(namespace, labels.as_ref(), &m.source, &m.query)?;
            let key = HistoryKey {
                source: m.source.clone(),
                query: r.query,
                step,
            };
            Ok(SourcedQuery {
                source: r.source,
                key,
            })
        })
        .collect();
    // a query or step that changed (or a metric that went) releases its cached history
    let in_use: Vec<HistoryKey> = resolved.iter().flatten().map(|q| q.key.clone()).collect();
    ctx.history.use_only(user, &in_use);
    state
        .fits
        .retain(|name, _| config.metrics.iter().any(|m| &m.name == name));

    let mut out = Vec::with_capacity(config.metrics.len());
    for (m, resolved) in config.metrics.iter().zip(resolved) {
        let (series, key) = match resolved {
            Ok(SourcedQuery { source, key }) => {
                let started = std::time::Instant::now();
                let r = ctx
                    .history
                    .update(user, source.as_ref(), &key, lookback, now)
                    .await;
                ctx.metrics
                    .query_duration
                    .get_or_create(&QueryLabels {
                        source: m.source.clone(),
                        result: r.as_ref().map_or_else(|e| e.reason(), |_| "ok").to_string(),
                    })
                    .observe(started.elapsed().as_secs_f64());
                (r, Some(key))
            }
            Err(e) => (Err(e), None),
        };
        let unavailable = match &series {
            Err(e) => {
                warn!(metric = %m.name, source = %m.source, reason = e.reason(), error = %e, "metric query failed");
                Some(Unavailable::new(
                    NoForecast::Metric(e.reason()),
                    e.to_string(),
                ))
            }
            Ok(s) if s.finite_count() == 0 => Some(Unavailable::new(
                NoForecast::Empty,
                format!(
                    "the query returned no data in the last {}; check the metric name and labels",
                    crate::api::duration::format_duration(config.lookback)
                ),
            )),
            Ok(s) => stale(s, now, step),
        };
        let (series, key) = match (series, unavailable, key) {
            (Ok(s), None, Some(key)) => (s, key),
            (_, u, _) => {
                out.push(MetricOutcome {
                    name: m.name.clone(),
                    target_per_replica: m.target_per_replica,
                    observed: None,
                    forecast: Err(u.expect("set when there is no series")),
                    fit: None,
                });
                continue;
            }
        };
        let observed = series
            .last_finite()
            .filter(|(t, _)| *t >= series.end() - 3 * step)
            .map(|(_, v)| v);
        let fit_key = FitKey {
            history: key,
            lookback,
            settings: ForecastSettings {
                // replicas are sized with the calibrated margin (planner::margin)
                sizing: Some(
                    Sizing::new(
                        config.lead_time,
                        ctx.config.sync_interval,
                        config.stabilization_window,
                        config.max_percent_per_minute,
                        step,
                        m.target_per_replica,
                        config.quantile,
                    )
                    .with_periods(&periods),
                ),
                ..ForecastSettings::new(
                    config.model,
                    periods.clone(),
                    horizon_steps,
                    config.quantile.unwrap_or(DEFAULT_BAND_QUANTILE),
                    step,
                )
            },
        };
        let refresh = config.refresh_interval.as_secs() as i64;
        let window_end = now + (config.lead_time + ctx.config.sync_interval).as_secs() as i64;
        let reusable = state.fits.get(&m.name).filter(|f| {
            f.key == fit_key
                && now < f.fitted_at + refresh
                && match &f.result {
                    Ok(fc) => fc.end() > window_end,
                    Err(u) => u.cause == NoForecast::ModelFitFailed,
                }
        });
        let fit = match reusable {
            Some(f) => f.clone(),
            None => {
                let settings = fit_key.settings.clone();
                let epoch = choice::selection_epoch(user, now);
                let previous = state
                    .fits
                    .get(&m.name)
                    .filter(|f| f.key == fit_key)
                    .and_then(|f| f.selection.clone())
                    .filter(|s| s.epoch == epoch)
                    .or_else(|| remembered_choice(remembered, &m.name, epoch));
                // the fit shares the cached history; the next update copies it only if the
                // fit still holds it
                let series = series.clone();
                // at most max_concurrent_fits fits at once: a start or a failover must not
                // crowd out the lease renewal and the probes
                let slot = ctx
                    .fit_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::ForecastTask(e.to_string()))?;
                let started = std::time::Instant::now();
                let (result, selection) = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    choice::fit_with_choice(&series, &settings, epoch, previous)
                })
                .await
                .map_err(|e| Error::ForecastTask(e.to_string()))?;
                let elapsed = started.elapsed();
                let model = match &result {
                    Ok(fc) => fc.model.family(),
                    Err(_) => "failed",
                };
                ctx.metrics
                    .fit_duration
                    .get_or_create(&ModelLabels {
                        model: model.into(),
                    })
                    .observe(elapsed.as_secs_f64());
                match &result {
                    Ok(fc) => {
                        let backtests = selection
                            .as_ref()
                            .map(Selection::describe)
                            .unwrap_or_default();
                        info!(metric = %m.name, model = %fc.model, fit_ms = elapsed.as_millis() as u64, backtests, "fitted forecast")
                    }
                    Err(e) => warn!(metric = %m.name, error = %e, "no forecast"),
                }
                let fit = Fit {
                    key: fit_key,
                    fitted_at: now,
                    result: result
                        .map(Arc::new)
                        .map_err(|e| Unavailable::from_forecast_error(&e)),
                    selection,
                };
                state.fits.insert(m.name.clone(), fit.clone());
                fit
            }
        };
        let fit_summary = fit
            .result
            .as_ref()
            .ok()
            .map(|fc| (fc.model.to_string(), fit.fitted_at, fc.backtest_error));
        out.push(MetricOutcome {
            name: m.name.clone(),
            target_per_replica: m.target_per_replica,
            observed,
            forecast: fit.result,
            fit: fit_summary,
        });
    }
    Ok(out)
}

/// Writes the status when it differs from the stored one.
/// The last step of every reconcile, whatever path it took: the status (patched only when it
/// changed, with `null` for the fields it no longer has, since a merge patch keeps what it
/// leaves out), the per-scaler gauges, a Warning event for each condition that newly failed,
/// and the Ready reason the reconcile-errors counter counts.
async fn finish(
    ps: &PredictiveScaler,
    ctx: &Context,
    namespace: &str,
    state: &mut ScalerState,
    report: &status::Report,
    now: Timestamp,
) -> Result<()> {
    let new = status::build(ps.status.as_ref(), ps.meta().generation, report, Time(now));
    let name = ps.name_any();
    let scaler = ScalerLabels {
        namespace: namespace.to_string(),
        name: name.clone(),
    };
    let gauge = |family: &prometheus_client::metrics::family::Family<
        ScalerLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
                 v: Option<i32>| match v {
        Some(v) => {
            family.get_or_create(&scaler).set(i64::from(v));
        }
        None => {
            family.remove(&scaler);
        }
    };
    gauge(&ctx.metrics.current_replicas, new.current_replicas);
    gauge(&ctx.metrics.desired_replicas, new.desired_replicas);
    let conditions: Vec<(&str, &str, &str)> = new
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    ctx.metrics.set_conditions(namespace, &name, &conditions);
    state.ready_failure = report
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY && c.status != Status::True)
        .map(|c| c.reason);
    warn_on_new_failure(ctx, ps, &report.conditions).await;
    let Some(budget) = ctx.write_budget() else {
        return Ok(());
    };
    if ps.status.as_ref() == Some(&new) {
        return Ok(());
    }
    debug!("patching status");
    let api: Api<PredictiveScaler> = Api::namespaced(ctx.client.clone(), namespace);
    let mut body =
        serde_json::to_value(&new).map_err(|e| Error::PatchStatus(kube::Error::SerdeError(e)))?;
    if let Some(fields) = body.as_object_mut() {
        for key in [
            "currentReplicas",
            "desiredReplicas",
            "lastScaleTime",
            "forecast",
        ] {
            fields.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    let patch = json!({ "status": body });
    target::within(
        budget,
        api.patch_status(&name, &target::patch_params(), &Patch::Merge(&patch)),
    )
    .await
    .map_err(Error::PatchStatus)?;
    Ok(())
}

/// A Warning event for each condition that newly turned bad (not on every reconcile), one
/// per reason.
async fn warn_on_new_failure(ctx: &Context, ps: &PredictiveScaler, conditions: &[Cond]) {
    let previous = ps
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let mut warned: Vec<&str> = Vec::new();
    for c in conditions.iter().filter(|c| {
        c.status == Status::False || (c.type_ == types::READY && c.status == Status::Unknown)
    }) {
        if c.type_ == types::SCALING_LIMITED || warned.contains(&c.reason) {
            continue;
        }
        let was = previous.iter().find(|p| p.type_ == c.type_);
        if was.is_none_or(|p| p.reason != c.reason) {
            let action = if c.type_ == types::FORECAST_AVAILABLE {
                "Forecast"
            } else {
                "Scale"
            };
            warned.push(c.reason);
            publish(
                ctx,
                ps,
                EventType::Warning,
                action,
                c.reason,
                c.message.clone(),
            )
            .await;
        }
    }
}

/// A Warning (or a DryRun notice) through kube-runtime's Recorder, which folds repeats of one
/// reason into one event with a count. Bounded by the request timeout.
async fn publish(
    ctx: &Context,
    ps: &PredictiveScaler,
    type_: EventType,
    action: &str,
    reason: &str,
    note: String,
) {
    let Some(budget) = ctx.write_budget() else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: action.into(),
        secondary: None,
    };
    match tokio::time::timeout(budget, ctx.recorder.publish(&event, &ps.object_ref(&()))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "publishing an event failed"),
        Err(_) => warn!("publishing an event timed out"),
    }
}

/// One event per scale operation (events.k8s.io/v1, created directly): unlike the Recorder,
/// which would fold a second scale-up into the first's event ("from 2 to 10", count 2), every
/// change keeps its own numbers. Bounded by the request timeout.
async fn scale_event(
    ctx: &Context,
    ps: &PredictiveScaler,
    namespace: &str,
    reason: &str,
    note: String,
) {
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let event = K8sEvent {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ps.name_any())),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        action: Some("Scale".into()),
        reason: Some(reason.into()),
        note: Some(truncate(note, 1000)),
        type_: Some("Normal".into()),
        regarding: Some(ps.object_ref(&())),
        reporting_controller: Some("prescale".into()),
        reporting_instance: Some(std::env::var("POD_NAME").unwrap_or_else(|_| "prescale".into())),
        ..Default::default()
    };
    let Some(budget) = ctx.write_budget() else {
        return;
    };
    let api: Api<K8sEvent> = Api::namespaced(ctx.client.clone(), namespace);
    if let Err(e) = target::within(
        budget,
        api.create(&kube::api::PostParams::default(), &event),
    )
    .await
    {
        warn!(error = %e, "publishing the scale event failed");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The requeue after an error: exponential from the sync interval, capped at 5 minutes.
pub fn backoff(sync_interval: Duration, failures: u32) -> Duration {
    let base = sync_interval.max(Duration::from_secs(1));
    base.saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(300))
}

#[cfg(test)]
mod epoch_tests {
    use super::*;
    use crate::planner::ModelKind;

    #[test]
    fn a_restart_reuses_the_choice_the_status_remembers_for_this_epoch() {
        let epoch = 1_767_225_600;
        let status = |metric: &str, model: &str, at: i64| ForecastStatus {
            metric: metric.into(),
            model: model.into(),
            generated_at: Time(Timestamp::from_second(at).unwrap()),
            peak: None,
            backtest_error: None,
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
