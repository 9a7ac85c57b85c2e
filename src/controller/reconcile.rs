//! One reconcile, as a pipeline of named stages (the shape of kube-rs' controller-rs and of
//! Stackable's operators: validate, read, decide, apply, update the status):
//!
//! 1. [`validate`] the spec into a [`ScalerConfig`];
//! 2. [`read_target`]: whose it is (another scaler or an HPA on it?) and its `/scale` (IO); in
//!    floor mode the HPA or ScaledObject, and its workload's `/scale`; with
//!    `scaleUp.leadTime: Auto`, [`lead_time::learn`] reads its ready replicas (IO) and sets the
//!    lead time to plan with;
//! 3. [`forecasts::evaluate_metrics`]: per metric, bring the history up to date (IO), then fit
//!    or reuse the forecast (CPU, on a blocking thread);
//! 4. [`guards::read`] each guard's latest value and [`upstream::read`] each upstream limit's
//!    query (IO), [`plan`] the replica count (pure, with the scaler's memory), and announce the
//!    guards that turned breached or healthy, an upstream ceiling that started to cap the count,
//!    and the scheduled windows that started or ended since the stored status (IO: events);
//! 5. [`write_target`]: its `/scale` (in floor mode, the HPA's or ScaledObject's floor:
//!    [`floor_mode`]) in `Active` mode, a notice in `DryRun` (which puts back a floor prescale
//!    raised) (IO); with
//!    `scaleDown.drainAware`, a scale-down first sets the pods' deletion costs
//!    ([`drain::prepare`]: pods, the pod query, annotations) or waits for them;
//! 6. [`write_status`]: the status when it changed, the per-scaler gauges, Warning events (IO).
//!
//! Stages 1 to 5 return `Result<_, End>`: an [`End`] stops the pipeline early with the status
//! to report and what follows it. [`reconcile_inner`] turns every end, early or not, into the
//! status write and the requeue in one `match`. A deleted scaler in floor mode only
//! [`floor_mode::finalize`]s (and gives up a restore the API server keeps refusing);
//! before stage 1, a scaler retargeted away from a floor object puts that object's floor back
//! ([`retarget`]).

mod concurrency;
mod drain;
mod events;
mod floor_mode;
mod forecasts;
mod guards;
mod lead_time;
mod retarget;
mod upstream;

use std::{collections::HashMap, sync::Arc, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, Patch},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;
use tracing::{debug, info, instrument, trace, warn};

use super::{
    Context,
    floor::{self, FloorKind, FloorObject},
    status, target,
};
use crate::{
    Error, Result,
    api::{
        Mode, PredictiveScaler, PredictiveScalerStatus, ScaleTargetRef, ScalerConfig,
        conditions::{Status, reasons, types, unavailable_reason},
        validate_with,
    },
    metrics::{Metrics, ReasonLabels, ScaleLabels, ScalerLabels, ScalerMetricLabels},
    planner::{self, Decision, MetricInput, PlannerState, choice},
    sources::access::NamespaceLabels,
};
use forecasts::{Fit, MetricOutcome};

/// What a PredictiveScaler's reconciles remember between runs (in memory only).
#[derive(Debug, Default)]
pub(crate) struct ScalerState {
    /// Each metric's last fit, reused until it is stale.
    fits: HashMap<String, Fit>,
    planner: PlannerState,
    /// What `mode: DryRun` plans with (its would-be count and its own rate budgets).
    dry_run: planner::DryRunState,
    /// The reason of the last reconcile's Ready=False (or Unknown), for the errors counter.
    ready_failure: Option<&'static str>,
    /// The scale target the memory above is about (`apiVersion/kind/name`): another target
    /// starts it afresh.
    target: Option<String>,
    /// Whether this scaler was reconciled before (its first requeue is jittered).
    reconciled: bool,
    /// The guards breached, or holding a scale-down, at the last evaluation (for events).
    guards_breached: Vec<String>,
    /// Whether the upstream ceiling capped the count at the last evaluation (for events).
    upstream_limited: bool,
    /// `scaleUp.leadTime: Auto`: the scale-ups measured and waiting (`None`: not restored from
    /// the stored status yet, or not `Auto`).
    lead_time: Option<planner::LeadTimeLearner>,
    /// `status.leadTime` as the last learning step left it.
    lead_time_status: Option<crate::api::LeadTimeStatus>,
    /// `status.concurrency` of the last decision (`None`: none made since the start).
    concurrency: Option<Vec<crate::api::ConcurrencyStatus>>,
    /// `scaleDown.drainAware`: the failed reads of the per-pod values, for how long a
    /// scale-down waits for them.
    drain: planner::drain::DrainMemory,
    /// An earlier floor target (`status.floorTarget`) whose floor is not back yet.
    unrestored_floor: Option<ScaleTargetRef>,
    /// A scaler being deleted: how many times the API server refused to put back each floor
    /// object's floor (by `Kind/name`), up to [`floor_mode::RESTORE_ATTEMPTS`].
    restore_refusals: HashMap<String, u32>,
}

/// What every stage of one reconcile reads.
struct Run<'a> {
    ps: &'a PredictiveScaler,
    ctx: &'a Context,
    /// `namespace/name`: the scaler's key in the shared history and the per-scaler memory.
    key: &'a str,
    namespace: &'a str,
    /// The reconcile's one clock reading: every stage decides at this instant.
    now: Timestamp,
    /// The namespace's labels, read at most once a reconcile ([`Run::namespace_labels`]).
    labels: tokio::sync::OnceCell<NamespaceLabels>,
}

impl Run<'_> {
    /// The namespace's labels, when a source the scaler names admits namespaces by label
    /// (`allowedNamespaceSelector`): read once in a reconcile, however many reads need them.
    async fn namespace_labels(&self, config: &ScalerConfig) -> &NamespaceLabels {
        self.labels
            .get_or_init(|| read_namespace_labels(self.ctx, self.namespace, config))
            .await
    }

    fn now_s(&self) -> i64 {
        self.now.as_second()
    }

    /// The status as stored before this reconcile.
    fn previous(&self) -> Option<&PredictiveScalerStatus> {
        self.ps.status.as_ref()
    }

    /// An early end for a target that cannot be read or may not be scaled.
    fn target_problem(&self, reason: &'static str, message: &str, then: Then) -> End {
        End::report(
            status::Report::target_problem(self.previous(), reason, message),
            then,
        )
    }
}

/// How a reconcile ends (the `Err` of the stages: an early end).
enum End {
    /// Write the report as the status, then do what [`Then`] says. (Boxed: a status is large,
    /// and every stage returns an `End` as its error.)
    Report(Box<status::Report>, Then),
    /// Write nothing and wait for a change: the leader lease ran out before the target write.
    LeaseLost,
    /// Write nothing and retry with backoff: a fit task did not finish.
    Failed(Error),
}

impl End {
    fn report(report: status::Report, then: Then) -> Self {
        Self::Report(Box::new(report), then)
    }
}

/// What follows a reported end.
enum Then {
    /// The next evaluation: one sync interval later (spread the first time), or sooner at a
    /// scheduled window's start or end ([`requeue_after`]).
    Requeue,
    /// Nothing until the object changes (an invalid spec).
    AwaitChange,
    /// A retry with backoff (`error_policy`) after this error.
    Retry(Error),
}

/// Reconciles one PredictiveScaler: takes its memory out, runs the pipeline (see the module),
/// puts the memory back, counts a reconcile that did not end ready (an error, or Ready not
/// True, by reason) and spreads its first requeue ([`first_interval`]).
#[instrument(skip_all, fields(namespace = ps.namespace().as_deref().unwrap_or(""), name = %ps.name_any()))]
pub async fn reconcile(ps: Arc<PredictiveScaler>, ctx: Arc<Context>) -> Result<Action> {
    let now = Timestamp::now();
    let namespace = ps.namespace().ok_or(Error::NoNamespace)?;
    let key = super::object_key(&ps);
    let running = Running::enter(&ctx.metrics);
    debug!(in_flight = running.in_flight, "reconcile started");
    let mut state = ctx.take_state(&key);
    state.ready_failure = None;
    let run = Run {
        ps: &ps,
        ctx: &ctx,
        key: &key,
        namespace: &namespace,
        now,
        labels: tokio::sync::OnceCell::new(),
    };
    let result = reconcile_inner(&run, &mut state).await;
    // every reconcile that did not end ready counts: an error, or Ready=False with its reason
    let failure = match &result {
        Err(e) => Some(e.reason()),
        Ok(_) => state.ready_failure,
    };
    let result = result.map(|next| {
        let first = !std::mem::replace(&mut state.reconciled, true);
        next.action(Timestamp::now(), &key, ctx.config.sync_interval, first)
    });
    ctx.put_state(key.clone(), state);
    running.end(result.is_ok());
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

/// The pipeline, and the one place where its end becomes the status write and the requeue.
async fn reconcile_inner(run: &Run<'_>, state: &mut ScalerState) -> Result<Next> {
    if run.ps.metadata.deletion_timestamp.is_some() && floor::has_finalizer(run.ps) {
        return floor_mode::finalize(run, state).await;
    }
    state.unrestored_floor = retarget::restore_previous(run).await;
    let (end, by) = match stages(run, state).await {
        Ok((decided, by)) => (End::report(decided, Then::Requeue), by),
        Err(early) => (early, None),
    };
    match end {
        End::Report(report, then) => {
            write_status(run, state, &report).await?;
            match then {
                Then::Requeue => Ok(Next::Requeue { by }),
                Then::AwaitChange => Ok(Next::AwaitChange),
                Then::Retry(e) => Err(e),
            }
        }
        End::LeaseLost => Ok(Next::AwaitChange),
        End::Failed(e) => Err(e),
    }
}

/// When a reconcile that did not fail evaluates next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// One sync interval later (spread on the first, [`first_interval`]), or at `by` (unix
    /// second: a scheduled window's start or end) when that comes first.
    Requeue { by: Option<i64> },
    /// When the object changes.
    AwaitChange,
}

impl Next {
    /// The controller's action at `now`, for the scaler `key` (`first`: its first reconcile).
    fn action(self, now: Timestamp, key: &str, sync_interval: Duration, first: bool) -> Action {
        match self {
            Next::AwaitChange => Action::await_change(),
            Next::Requeue { by } => {
                let interval = if first {
                    first_interval(key, sync_interval)
                } else {
                    sync_interval
                };
                Action::requeue(requeue_after(now, interval, by))
            }
        }
    }
}

/// How long until the next evaluation: `interval`, or less when a scheduled window starts or
/// ends at unix second `by` before that (so a window shorter than the sync interval is not
/// missed, and its floor is in place from its first second). A change in the past (the
/// reconcile took longer than the wait) is due at once.
fn requeue_after(now: Timestamp, interval: Duration, by: Option<i64>) -> Duration {
    let Some(by) = by else {
        return interval;
    };
    let until_ms = by.saturating_mul(1000).saturating_sub(now.as_millisecond());
    interval.min(Duration::from_millis(until_ms.max(0) as u64))
}

/// Stages 1 to 5: the status a full evaluation reports and when the active scheduled windows
/// next change (the next start or end, unix second), or an early end.
async fn stages(
    run: &Run<'_>,
    state: &mut ScalerState,
) -> Result<(status::Report, Option<i64>), End> {
    let config = validate(run)?;
    let names: Vec<String> = config.metrics.iter().map(|m| m.name.clone()).collect();
    run.ctx
        .metrics
        .set_scaler_metrics(run.namespace, &run.ps.name_any(), &names);
    let target = read_target(run, &config, state).await?;
    let mut config = target.bound(config);
    lead_time::learn(run, &mut config, state, &target).await;
    let outcomes = forecasts::evaluate_metrics(run, &config, state)
        .await
        .map_err(End::Failed)?;
    let readings = guards::read(run, &config).await;
    let quotas = upstream::read(run, &config).await;
    let decision = plan(
        run,
        &config,
        state,
        target.planned_from(),
        &outcomes,
        &readings,
        &quotas,
    );
    state.concurrency = Some(status::concurrency_status(&config, &decision));
    guards::report(run, &decision, &mut state.guards_breached).await;
    upstream::report(run, &config, &decision, &mut state.upstream_limited).await;
    events::schedule_transitions(run.ctx, run.ps, &decision.schedules).await;
    let written = write_target(run, &config, state, &target, &decision).await?;
    let fits: Vec<status::FitSummary> = outcomes.iter().filter_map(|o| o.fit.clone()).collect();
    let report = status::Report::decided(
        &decision,
        target.current,
        &written.write,
        written.scaled_at,
        &fits,
    );
    Ok((report, decision.schedules.next_change()))
}

/// Stage 1: the spec as a usable config. An invalid one is reported and waits for a change of
/// the object: the target is never read, nothing is fetched.
fn validate(run: &Run<'_>) -> Result<ScalerConfig, End> {
    let _stage = Stage::enter("validate");
    validate_with(&run.ps.spec, &run.ctx.config.limits()).map_err(|e| {
        warn!(error = %e, "invalid spec; the target is not written");
        End::report(
            status::Report::invalid_spec(run.previous(), &e.0),
            Then::AwaitChange,
        )
    })
}

/// The scale target as this reconcile read it.
struct Target<'a> {
    reference: &'a ScaleTargetRef,
    /// `Kind namespace/name`, for messages.
    desc: String,
    api: Api<DynamicObject>,
    /// Its replica count before this reconcile.
    current: u32,
    /// In floor mode: the HPA or ScaledObject `reference` names, and its API.
    floor: Option<(FloorObject, Api<DynamicObject>)>,
}

impl Target<'_> {
    /// In floor mode, the config bounded by the floor object too: its maximum, and its
    /// owner's floor as the least (unless `floor.allowBelowOwner`).
    fn bound(&self, mut config: ScalerConfig) -> ScalerConfig {
        if let Some((obj, _)) = &self.floor {
            let owner = (!config.floor_below_owner).then(|| floor::owner_floor(obj));
            (config.min_replicas, config.max_replicas) =
                floor::bounds(config.min_replicas, config.max_replicas, obj.max, owner);
        }
        config
    }

    /// Where the plan starts: the target's replicas; in floor mode the floor now, which is
    /// what prescale sets, and the workload's replicas for the guards. Not the workload's
    /// replicas for the rest: the autoscaler scaled them, and a plan starting from them would
    /// hold the floor at that size (a new scaler's stabilisation window counts where it starts
    /// as recommended; a scale-down rate counts from it).
    fn planned_from(&self) -> planner::Current {
        match &self.floor {
            Some((obj, _)) => planner::Current {
                set: obj.min,
                running: self.current,
            },
            None => planner::Current::of(self.current),
        }
    }
}

/// Stage 2: the scale target, once it is this scaler's alone, it exists, and it is not
/// switched off.
async fn read_target<'a>(
    run: &Run<'a>,
    config: &ScalerConfig,
    state: &mut ScalerState,
) -> Result<Target<'a>, End> {
    let _stage = Stage::enter("read target");
    let reference = &run.ps.spec.scale_target_ref;
    let desc = format!("{} {}/{}", reference.kind, run.namespace, reference.name);
    remember_target(state, reference, &desc);
    if let Some(why) = conflict(run.ctx, run.key, run.namespace, reference, &desc) {
        return Err(run.target_problem(reasons::AMBIGUOUS_TARGET, &why, Then::Requeue));
    }
    let floor = match FloorKind::of(reference) {
        Some(kind) => Some(read_floor(run, kind, &desc).await?),
        None => None,
    };
    // in floor mode the replicas to plan from are those of the workload the floor object scales
    let workload = floor.as_ref().map_or(reference, |(o, _)| &o.workload);
    let resource = target::bounded(target::resolve(&run.ctx.client, workload))
        .await
        .map_err(|e| {
            let message = format!(
                "cannot resolve kind {} {}: {}",
                workload.api_version,
                workload.kind,
                crate::error::plain(&e)
            );
            run.target_problem(
                reasons::FAILED_GET_SCALE,
                &message,
                Then::Retry(Error::ResolveTarget(e)),
            )
        })?;
    let api = target::api(&run.ctx.client, run.namespace, &resource);
    let current = match target::get_replicas(&api, &workload.name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let message = match &floor {
                Some(_) => format!("{} {} of {desc} not found", workload.kind, workload.name),
                None => format!("{desc} not found"),
            };
            return Err(run.target_problem(reasons::TARGET_NOT_FOUND, &message, Then::Requeue));
        }
        Err(e) => {
            let message = format!("reading the scale of {desc}: {}", crate::error::plain(&e));
            let then = Then::Retry(Error::GetScale(e));
            return Err(run.target_problem(reasons::FAILED_GET_SCALE, &message, then));
        }
    };
    // KEDA's 0 is its idle state, not switched off: the forecast may raise the floor from it
    if floor
        .as_ref()
        .is_none_or(|(o, _)| o.kind != FloorKind::Keda)
    {
        switched_off(run, config, current, &desc)?;
    }
    Ok(Target {
        reference,
        desc,
        api,
        current,
        floor,
    })
}

/// The HPA or ScaledObject whose floor this scaler sets (floor mode).
async fn read_floor(
    run: &Run<'_>,
    kind: FloorKind,
    desc: &str,
) -> Result<(FloorObject, Api<DynamicObject>), End> {
    let name = &run.ps.spec.scale_target_ref.name;
    let api = floor::api(&run.ctx.client, run.namespace, kind);
    match floor::get(&api, kind, name).await {
        Ok(Some(obj)) => Ok((obj, api)),
        Ok(None) => {
            let message = format!("{desc} not found");
            Err(run.target_problem(reasons::TARGET_NOT_FOUND, &message, Then::Requeue))
        }
        // a kind nobody serves (KEDA's CRD not installed): no object to read until it is
        Err(e) if floor::not_installed(&e) => {
            let remedy = match kind {
                FloorKind::Keda => " (install KEDA, or point scaleTargetRef at the workload)",
                FloorKind::Hpa => "",
            };
            let message = format!(
                "{desc} cannot be read: {}{remedy}",
                floor::describe(kind, &e)
            );
            Err(run.target_problem(reasons::TARGET_NOT_FOUND, &message, Then::Requeue))
        }
        Err(e) => {
            let message = format!("reading {desc}: {}", floor::describe(kind, &e));
            let then = Then::Retry(Error::GetScale(e));
            Err(run.target_problem(reasons::FAILED_GET_SCALE, &message, then))
        }
    }
}

/// Starts the planner memory afresh for a new target: the old one's stabilisation window and
/// rate budgets are not its own.
fn remember_target(state: &mut ScalerState, reference: &ScaleTargetRef, desc: &str) {
    let id = format!(
        "{}/{}/{}",
        reference.api_version, reference.kind, reference.name
    );
    if state.target.as_deref() == Some(id.as_str()) {
        return;
    }
    if state.target.is_some() {
        info!(target = %desc, "new scale target: planner memory reset");
    }
    state.planner = PlannerState::default();
    state.dry_run = planner::DryRunState::default();
    if state.target.is_some() {
        // another workload's scale-ups say nothing about this one's
        state.lead_time = Some(planner::LeadTimeLearner::default());
        state.lead_time_status = None;
    }
    state.target = Some(id);
}

/// Why `key` may not scale its target: another PredictiveScaler or an HPA scales it too.
/// Scalers that fight over a target make it flap; none of them writes until one is left.
fn conflict(
    ctx: &Context,
    key: &str,
    namespace: &str,
    target_ref: &ScaleTargetRef,
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

/// A target at 0 replicas is switched off, as for the HPA, unless the scaler owns zero.
fn switched_off(run: &Run<'_>, config: &ScalerConfig, current: u32, desc: &str) -> Result<(), End> {
    if current > 0 || config.allow_scale_to_zero {
        return Ok(());
    }
    let message = format!(
        "{desc} is scaled to 0: prescale leaves it there until it is scaled up (set \
         allowScaleToZero to let prescale scale from and to zero)"
    );
    let report = status::Report {
        current: Some(0),
        ..status::Report::target_problem(run.previous(), reasons::SCALING_DISABLED, &message)
    };
    Err(End::report(report, Then::Requeue))
}

/// Stage 4: the replica count to set. `Active` plans with the scaler's memory (and forgets
/// what `DryRun` planned), `DryRun` with its own. The decision is also exported as metrics.
fn plan(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    current: planner::Current,
    outcomes: &[MetricOutcome],
    readings: &[Result<f64, planner::GuardFailure>],
    quotas: &[planner::QuotaReading],
) -> Decision {
    let _stage = Stage::enter("plan");
    let inputs: Vec<MetricInput<'_>> = outcomes.iter().map(MetricOutcome::input).collect();
    let guards = guards::inputs(config, readings);
    let policy = config.policy(run.ctx.config.sync_interval);
    let now = run.now_s();
    let decision = match config.mode {
        Mode::Active => {
            state.dry_run = planner::DryRunState::default();
            let planner = &mut state.planner;
            planner::plan_from(now, current, &policy, &inputs, &guards, quotas, planner)
        }
        Mode::DryRun => {
            let dry_run = &mut state.dry_run;
            let current = current.set;
            planner::plan_dry_run(now, current, &policy, &inputs, &guards, quotas, dry_run)
        }
    };
    export_decision(run, &decision, outcomes);
    decision
}

/// The decision on the operator's metrics: the metrics without data by reason, and each
/// metric's forecast peak, forecast now, observed load, request duration, grouped series and
/// backtest error.
fn export_decision(run: &Run<'_>, decision: &Decision, outcomes: &[MetricOutcome]) {
    let mx = &run.ctx.metrics;
    for m in &decision.metrics {
        if let Some(u) = &m.unavailable {
            mx.metric_unavailable
                .get_or_create(&ReasonLabels {
                    reason: unavailable_reason(u.cause).to_string(),
                })
                .inc();
        }
    }
    for (m, o) in decision.metrics.iter().zip(outcomes) {
        let labels = ScalerMetricLabels {
            namespace: run.namespace.to_string(),
            name: run.ps.name_any(),
            metric: m.name.clone(),
        };
        let forecast_now = o
            .forecast
            .as_ref()
            .ok()
            .and_then(|fc| fc.point_at(run.now_s()));
        Metrics::set_or_remove(&mx.forecast_peak, &labels, m.peak.map(|p| p.value));
        Metrics::set_or_remove(&mx.forecast_now, &labels, forecast_now);
        Metrics::set_or_remove(&mx.observed_load, &labels, o.observed);
        Metrics::set_or_remove(&mx.request_duration, &labels, o.duration);
        let series = o.fit.as_ref().and_then(|f| f.group.as_ref());
        match series {
            Some(g) => {
                mx.group_series
                    .get_or_create(&labels)
                    .set(g.series() as i64);
            }
            None => {
                mx.group_series.remove(&labels);
            }
        }
        let backtest = o.fit.as_ref().and_then(|f| f.backtest_error);
        Metrics::set_or_remove(&mx.backtest_error, &labels, backtest);
    }
}

/// What the target write did.
struct Written {
    write: status::Write,
    /// Set when this reconcile changed the target.
    scaled_at: Option<Time>,
}

impl Written {
    /// A write that left the target as it was.
    fn unchanged(write: status::Write) -> Self {
        Self {
            write,
            scaled_at: None,
        }
    }
}

/// Stage 5: the decision applied. `DryRun` announces what it would do (once per new count)
/// and writes nothing; `Active` writes `/scale` when the count changes.
async fn write_target(
    run: &Run<'_>,
    config: &ScalerConfig,
    state: &mut ScalerState,
    target: &Target<'_>,
    decision: &Decision,
) -> Result<Written, End> {
    let _stage = Stage::enter("write target");
    let unchanged = Written::unchanged;
    match config.mode {
        Mode::DryRun => {
            if target.floor.is_some() {
                floor_mode::restore_floor(run).await?;
            }
            let previous = run.previous().and_then(|s| s.desired_replicas);
            if decision.desired != target.current && previous != Some(decision.desired as i32) {
                let note = format!(
                    "DryRun: would scale {} from {} to {}; {}",
                    target.desc,
                    target.current,
                    decision.desired,
                    events::why(decision)
                );
                let normal = EventType::Normal;
                events::publish(run.ctx, run.ps, normal, "Scale", "DryRunScale", note).await;
            }
            Ok(unchanged(status::Write::DryRun))
        }
        Mode::Active if target.floor.is_some() => {
            floor_mode::set_floor(run, config, state, target, decision).await
        }
        Mode::Active if decision.desired == target.current => {
            Ok(unchanged(status::Write::Active(Ok(()))))
        }
        Mode::Active => {
            let to = match drain::prepare(run, config, state, target, decision.desired).await {
                drain::Prepared::Go { to } => to,
                drain::Prepared::Hold(why) => {
                    return Ok(unchanged(status::Write::DrainAwareHeld(why)));
                }
            };
            scale(run, state, target, decision, to).await
        }
    }
}

/// Sets the target's replicas to `to`, the decision's count or a step towards it (`Active`, a
/// change): on success it spends the rate budget, counts, logs and announces the scale; a
/// failure is reported and retried.
async fn scale(
    run: &Run<'_>,
    state: &mut ScalerState,
    target: &Target<'_>,
    decision: &Decision,
    to: u32,
) -> Result<Written, End> {
    let (current, desired) = (target.current, to);
    // the leader lease was lost (or is about to be) during this reconcile: write nothing
    let Some(budget) = run.ctx.write_budget() else {
        return Err(End::LeaseLost);
    };
    if let Err(e) = target::set_replicas(&target.api, &target.reference.name, desired, budget).await
    {
        let words = crate::error::plain(&e);
        warn!(error = %words, "scaling the target failed");
        let message = format!("updating the scale of {}: {words}", target.desc);
        let write = status::Write::Active(Err(message));
        // no fits: a failed write leaves the stored forecast summary as it is
        let report = status::Report::decided(decision, current, &write, None, &[]);
        return Err(End::report(report, Then::Retry(Error::UpdateScale(e))));
    }
    // only a write that landed spends the rate limits' budget
    planner::record_scale(&mut state.planner, run.now_s(), current, desired);
    lead_time::record(run, state, current, desired);
    let up = desired > current;
    run.ctx
        .metrics
        .scale_operations
        .get_or_create(&ScaleLabels {
            namespace: run.namespace.to_string(),
            name: run.ps.name_any(),
            direction: if up { "up" } else { "down" }.into(),
        })
        .inc();
    info!(
        current,
        desired,
        driving = decision.driving_metric.as_deref().unwrap_or("-"),
        "scaled target"
    );
    let note = format!(
        "scaled {} from {current} to {desired}; {}",
        target.desc,
        events::why(decision)
    );
    let reason = if up { "ScaledUp" } else { "ScaledDown" };
    events::scale_event(run.ctx, run.ps, run.namespace, reason, note).await;
    Ok(Written {
        write: status::Write::Active(Ok(())),
        scaled_at: Some(Time(run.now)),
    })
}

/// Stage 6, the last of every reconcile whatever its end: the status (patched only when it
/// changed), the per-scaler gauges, a Warning event for each condition that newly failed, and
/// the Ready reason the reconcile-errors counter counts.
async fn write_status(
    run: &Run<'_>,
    state: &mut ScalerState,
    report: &status::Report,
) -> Result<()> {
    let _stage = Stage::enter("write status");
    let mut new = status::build(
        run.previous(),
        run.ps.meta().generation,
        report,
        Time(run.now),
    );
    new.target_mode = Some(floor::mode_of(&run.ps.spec.scale_target_ref).to_string());
    new.floor_target = floor::recorded_target(
        &run.ps.spec.scale_target_ref,
        run.ps.spec.mode == Mode::Active,
        state.unrestored_floor.as_ref(),
    );
    new.lead_time = lead_time::status_of(run, state);
    if let Some(c) = &state.concurrency {
        new.concurrency = c.clone();
    }
    export_status(run, &new);
    state.ready_failure = report
        .conditions
        .iter()
        .find(|c| c.type_ == types::READY && c.status != Status::True)
        .map(|c| c.reason);
    events::warn_on_new_failure(run.ctx, run.ps, &report.conditions).await;
    let Some(budget) = run.ctx.write_budget() else {
        return Ok(());
    };
    if run.previous() == Some(&new) {
        return Ok(());
    }
    patch_status(run, &new, budget).await
}

/// The status on the operator's metrics: current and desired replicas, and the conditions.
fn export_status(run: &Run<'_>, new: &PredictiveScalerStatus) {
    let mx = &run.ctx.metrics;
    let scaler = ScalerLabels {
        namespace: run.namespace.to_string(),
        name: run.ps.name_any(),
    };
    for (family, value) in [
        (&mx.current_replicas, new.current_replicas),
        (&mx.desired_replicas, new.desired_replicas),
    ] {
        match value {
            Some(v) => {
                family.get_or_create(&scaler).set(i64::from(v));
            }
            None => {
                family.remove(&scaler);
            }
        }
    }
    let conditions: Vec<(&str, &str, &str)> = new
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    mx.set_conditions(run.namespace, &scaler.name, &conditions);
}

/// Writes the status by server-side apply with prescale's field manager, within `budget`: the
/// applied status is the whole status, so a field it no longer has (`currentReplicas` of a
/// deleted target, `concurrency` of a metric that lost it, `forecast.series` of one that lost
/// `groupBy`) goes away. A field the apply could not remove because another manager also owns
/// it (an earlier prescale wrote the status by merge patch; or a hand edit) is then removed with `null`
/// ([`status::leftover_fields`]), so the stored status matches and the next reconcile writes
/// nothing.
async fn patch_status(run: &Run<'_>, new: &PredictiveScalerStatus, budget: Duration) -> Result<()> {
    debug!("applying status");
    let api: Api<PredictiveScaler> = Api::namespaced(run.ctx.client.clone(), run.namespace);
    let name = run.ps.name_any();
    let body = json!({
        "apiVersion": PredictiveScaler::api_version(&()),
        "kind": PredictiveScaler::kind(&()),
        "metadata": {"name": name},
        "status": new,
    });
    let params = target::apply_params();
    let stored = target::within(
        budget,
        api.patch_status(&name, &params, &Patch::Apply(&body)),
    )
    .await
    .map_err(Error::PatchStatus)?;
    let stored = serde_json::to_value(&stored.status).unwrap_or_default();
    let applied = serde_json::to_value(new).unwrap_or_default();
    if let Some(leftovers) = status::leftover_fields(&stored, &applied) {
        debug!(%leftovers, "removing status fields another manager kept");
        let patch = json!({ "status": leftovers });
        target::within(
            budget,
            api.patch_status(&name, &target::patch_params(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(Error::PatchStatus)?;
    }
    Ok(())
}

/// The first sync interval of a scaler, spread over up to half a sync interval more (by a
/// stable hash of its key): a start or a failover reconciles every scaler at once, and without
/// this they would stay in lockstep ever after.
fn first_interval(key: &str, sync_interval: Duration) -> Duration {
    let hash = choice::stable_hash(key);
    sync_interval + sync_interval.mul_f64((hash % 1000) as f64 / 2000.0)
}

/// The requeue after an error: exponential from the sync interval, capped at 5 minutes.
pub(crate) fn backoff(sync_interval: Duration, failures: u32) -> Duration {
    let base = sync_interval.max(Duration::from_secs(1));
    base.saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(300))
}

/// One reconcile on the operator's metrics: counted on the in-flight gauge while it runs (a
/// drop guard, so a cancelled reconcile leaves the count too), its duration observed and
/// logged when it [ends](Running::end).
struct Running<'a> {
    metrics: &'a Metrics,
    started: std::time::Instant,
    /// Reconciles running, this one included, when it started.
    in_flight: i64,
}

impl<'a> Running<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        let in_flight = metrics.reconciles_in_flight.inc() + 1;
        Self {
            metrics,
            started: std::time::Instant::now(),
            in_flight,
        }
    }

    /// The reconcile ended (`ok`: without an error).
    fn end(self, ok: bool) {
        let (metrics, elapsed) = (self.metrics, self.started.elapsed());
        drop(self);
        metrics.reconcile_duration.observe(elapsed.as_secs_f64());
        debug!(elapsed_us = elapsed.as_micros() as u64, ok, "reconciled");
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.metrics.reconciles_in_flight.dec();
    }
}

/// A stage of the reconcile, timed: when it ends, whichever way it leaves, its duration is
/// logged at trace level (`stage done stage=... elapsed_us=...`).
struct Stage {
    name: &'static str,
    started: std::time::Instant,
}

impl Stage {
    fn enter(name: &'static str) -> Self {
        Self {
            name,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let elapsed_us = self.started.elapsed().as_micros() as u64;
        trace!(stage = self.name, elapsed_us, "stage done");
    }
}

/// `work`'s output and how long it took to get it.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = std::time::Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

/// The points of `query` on `source` from `window` seconds ago to now at `step`, resolved
/// through the sources layer for this scaler (its access rules and namespace isolation) and
/// timed ([`timed_query`]): the short reads of a guard, an upstream limit and a request
/// duration.
async fn recent_points(
    run: &Run<'_>,
    labels: &NamespaceLabels,
    (source, query): (&str, &str),
    window: i64,
    step: i64,
) -> Result<Vec<(i64, f64)>, crate::sources::SourceError> {
    let resolved = run
        .ctx
        .sources
        .resolve(run.namespace, labels, source, query)?;
    let now = run.now_s();
    let read = resolved
        .source
        .range(&resolved.query, now - window, now, step);
    timed_query(run, source, read).await
}

/// The labels of `namespace`, when a source the scaler names (a metric's, a guard's, an
/// upstream limit's or the pod query's) admits namespaces by label; bounded by the API request
/// timeout, so a hung API server does not hold the reconcile (and its slot) for the client's
/// own 295 s read timeout.
async fn read_namespace_labels(
    ctx: &Context,
    namespace: &str,
    config: &ScalerConfig,
) -> NamespaceLabels {
    let needed = config
        .metrics
        .iter()
        .map(|m| &m.source)
        .chain(config.guards.iter().map(|g| &g.source))
        .chain(config.upstream.iter().map(|u| &u.source))
        .chain(config.drain_aware.iter().map(|d| &d.source))
        .any(|s| ctx.sources.access(s).is_some_and(|a| a.needs_labels()));
    if !needed {
        return NamespaceLabels::NotNeeded;
    }
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    match target::bounded(api.get_metadata(namespace)).await {
        Ok(ns) => NamespaceLabels::Read(ns.metadata.labels.unwrap_or_default()),
        Err(e) => {
            let why = crate::error::plain(&e);
            warn!(error = %why, "cannot read the namespace's labels for a source's allowedNamespaceSelector");
            NamespaceLabels::Unreadable(why)
        }
    }
}

/// `query`'s answer from `source`, its duration observed in `prescale_query_duration_seconds`
/// by source and result (the error's reason, or `ok`): every read of a source (a metric's
/// history, a guard, a duration, an upstream limit, the per-pod values) goes through here.
async fn timed_query<T>(
    run: &Run<'_>,
    source: &str,
    query: impl std::future::Future<Output = Result<T, crate::sources::SourceError>>,
) -> Result<T, crate::sources::SourceError> {
    let (result, elapsed) = timed(query).await;
    let labels = crate::metrics::QueryLabels {
        source: source.to_string(),
        result: result
            .as_ref()
            .map_or_else(|e| e.reason(), |_| "ok")
            .to_string(),
    };
    run.ctx
        .metrics
        .query_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_evaluation_comes_at_a_window_change_before_the_sync_interval() {
        let sync = Duration::from_secs(30);
        let now = Timestamp::from_millisecond(1_000_000_250).unwrap();
        // no window: the sync interval
        assert_eq!(requeue_after(now, sync, None), sync);
        // a window starting 10 s from now (to the second: 9.75 s)
        assert_eq!(
            requeue_after(now, sync, Some(1_000_010)),
            Duration::from_millis(9_750)
        );
        // one after the sync interval does not delay it
        assert_eq!(requeue_after(now, sync, Some(1_000_040)), sync);
        // one already due (the reconcile outlasted it): at once
        assert_eq!(requeue_after(now, sync, Some(999_990)), Duration::ZERO);
        // the first, spread interval is capped the same way
        let first = first_interval("ns/name", sync);
        assert!(first >= sync && first <= sync + sync / 2);
        let next = Next::Requeue {
            by: Some(1_000_010),
        };
        assert_eq!(
            next.action(now, "ns/name", sync, true),
            Action::requeue(Duration::from_millis(9_750))
        );
        assert_eq!(
            Next::Requeue { by: None }.action(now, "ns/name", sync, false),
            Action::requeue(sync)
        );
        assert_eq!(
            Next::AwaitChange.action(now, "ns/name", sync, true),
            Action::await_change()
        );
    }
}
