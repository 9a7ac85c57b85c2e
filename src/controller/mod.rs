//! The operator: a kube-runtime `Controller` over PredictiveScalers.
//!
//! [`Context`] carries what reconciles share (client, sources, history cache, event
//! recorder, per-scaler memory); [`run`] starts the controllers (after the API server answers and, with leader
//! election, once this replica leads). [`reconcile`](fn@reconcile) is in `reconcile.rs`, a pipeline of named
//! stages (validate, read target, evaluate metrics, plan, write target, write status); the
//! pure status building is in `status.rs`, the `/scale` IO in `target.rs`, an HPA's or KEDA
//! ScaledObject's floor (floor mode) in `floor.rs`, the Lease in `leader.rs`.

mod floor;
pub mod leader;
mod reconcile;
pub mod status;
pub mod target;
mod triggers;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use tracing::{info, warn};

use leader::Election;
pub use leader::{LeaderConfig, LeaseGate};
use reconcile::ScalerState;
pub use reconcile::reconcile;
use triggers::Triggers;

use crate::{
    Error,
    api::PredictiveScaler,
    http::Health,
    metrics::Metrics,
    sources::{HistoryStore, RetryPolicy, Sources},
};

/// Settings of the controller process.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How often each PredictiveScaler is evaluated.
    pub sync_interval: Duration,
    /// The bound of the history cache, in points (all series together; ~2 bytes each).
    pub history_max_points: usize,
    /// The namespaces whose PredictiveScalers are watched; empty: all namespaces. With a list
    /// the operator never reads anything cluster-wide, so namespaced Roles are enough.
    pub namespaces: Vec<String>,
    /// Reconciles running at once, per watched scope (the rest queue).
    pub max_concurrent_reconciles: u16,
    /// Model fits (blocking CPU work) running at once; the others wait for a slot.
    pub max_concurrent_fits: usize,
    /// A label selector: only the PredictiveScalers it matches are watched (one shard of a
    /// fleet, when several operator releases share it); `None`: all of them.
    pub selector: Option<String>,
}

impl ControllerConfig {
    /// The bounds on one scaler's work: the CRD's, and its history within the cache.
    pub fn limits(&self) -> crate::api::Limits {
        crate::api::Limits::with_cache_points(self.history_max_points)
    }
}

/// Reconciles at once by default: enough to keep a fleet's steady evaluations (milliseconds
/// each) flowing, few enough that a start or a failover does not fetch every history at once.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Fits at once by default: the cores the process may use.
pub fn default_max_concurrent_fits() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(30),
            history_max_points: crate::sources::DEFAULT_MAX_POINTS,
            namespaces: Vec::new(),
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
            max_concurrent_fits: default_max_concurrent_fits(),
            selector: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub sources: Sources,
    /// Metric history shared by all scalers, fetched incrementally.
    pub history: HistoryStore,
    pub recorder: Recorder,
    /// Who reports the events: `prescale`, and this pod (`POD_NAME`) when it is known.
    pub(crate) reporter: Reporter,
    pub config: ControllerConfig,
    /// The operator's own metrics (served on `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Open while this replica may write (always, or while it holds the leader lease).
    gate: Arc<LeaseGate>,
    /// Slots for model fits (`max_concurrent_fits`).
    pub(crate) fit_slots: Arc<tokio::sync::Semaphore>,
    states: Mutex<HashMap<String, ScalerState>>,
    failures: Mutex<HashMap<String, u32>>,
    /// The PredictiveScalers of the watched scopes (the controllers' caches), to find two on
    /// one target.
    scalers: Vec<Store<PredictiveScaler>>,
    /// The HorizontalPodAutoscalers of the watched scopes, to find one on a scaler's target.
    hpas: Vec<Store<HorizontalPodAutoscaler>>,
}

impl Context {
    pub fn new(client: Client, sources: Sources, config: ControllerConfig) -> Self {
        let reporter = Reporter {
            controller: "prescale".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            reporter,
            client,
            sources,
            // a failing query is asked again after one sync interval, then 2, 4, ... up to 5 min
            history: HistoryStore::new(config.history_max_points).with_retry(RetryPolicy {
                base: config.sync_interval.as_secs().max(1) as i64,
                max: 300,
            }),
            fit_slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_fits.max(1),
            )),
            config,
            metrics: Arc::default(),
            gate: Arc::new(LeaseGate::always_open()),
            states: Mutex::default(),
            failures: Mutex::default(),
            scalers: Vec::new(),
            hpas: Vec::new(),
        }
    }

    /// Takes a scaler's memory out for a reconcile. The controller never runs two reconciles
    /// of one object at once, so no lock is held across the awaits.
    pub(crate) fn take_state(&self, key: &str) -> ScalerState {
        self.states
            .lock()
            .expect("state lock")
            .remove(key)
            .unwrap_or_default()
    }

    pub(crate) fn put_state(&self, key: String, state: ScalerState) {
        self.states.lock().expect("state lock").insert(key, state);
    }

    /// Uses `metrics` (shared with the HTTP endpoint) instead of a private registry.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.history = std::mem::take(&mut self.history)
            .with_eviction_counter(metrics.history_evictions.clone());
        self.metrics = metrics;
        self
    }

    /// HorizontalPodAutoscalers are looked up in these stores.
    pub fn with_hpa_stores(mut self, stores: Vec<Store<HorizontalPodAutoscaler>>) -> Self {
        self.hpas = stores;
        self
    }

    /// The PredictiveScalers are looked up in these stores.
    pub fn with_scaler_stores(mut self, stores: Vec<Store<PredictiveScaler>>) -> Self {
        self.scalers = stores;
        self
    }

    /// The other PredictiveScalers (names) in `namespace` whose target is `target`.
    pub(crate) fn other_scalers_of(
        &self,
        key: &str,
        namespace: &str,
        target: &crate::api::ScaleTargetRef,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .scalers
            .iter()
            .flat_map(|s| s.state())
            .filter(|ps| {
                ps.namespace().as_deref() == Some(namespace)
                    && object_key(ps) != key
                    && ps.spec.scale_target_ref == *target
            })
            .map(|ps| ps.name_any())
            .collect();
        names.sort();
        names
    }

    /// An HPA in `namespace` that scales the target `kind/name` of API group `group`.
    pub(crate) fn hpa_on(
        &self,
        namespace: &str,
        group: &str,
        kind: &str,
        name: &str,
    ) -> Option<String> {
        self.hpas.iter().flat_map(|s| s.state()).find_map(|hpa| {
            let r = &hpa.spec.as_ref()?.scale_target_ref;
            let hpa_group = r
                .api_version
                .as_deref()
                .and_then(|v| v.split_once('/'))
                .map_or("", |(g, _)| g);
            (hpa.metadata.namespace.as_deref() == Some(namespace)
                && r.kind == kind
                && r.name == name
                && hpa_group == group)
                .then(|| hpa.metadata.name.clone().unwrap_or_default())
        })
    }

    /// Writes (scale, status, events) happen only while `gate` is open.
    pub fn with_write_gate(mut self, gate: Arc<LeaseGate>) -> Self {
        self.gate = gate;
        self
    }

    /// How long a write started now may take (`None`: no write now): the request timeout, or
    /// less when the leader lease could expire sooner.
    pub fn write_budget(&self) -> Option<Duration> {
        self.gate.write_budget()
    }

    /// Forgets a deleted scaler: its memory, failure backoff, cached history and metric series.
    fn forget(&self, key: &str) {
        self.states.lock().expect("state lock").remove(key);
        self.failures.lock().expect("failure lock").remove(key);
        self.history.release(key);
        if let Some((namespace, name)) = key.split_once('/') {
            self.metrics.remove_scaler(namespace, name);
        }
    }

    /// Every scaler this process holds something of (memory, backoff, metric series).
    fn known_keys(&self) -> std::collections::HashSet<String> {
        let mut keys: std::collections::HashSet<String> = self
            .states
            .lock()
            .expect("state lock")
            .keys()
            .cloned()
            .collect();
        keys.extend(self.failures.lock().expect("failure lock").keys().cloned());
        keys.extend(
            self.metrics
                .scalers()
                .into_iter()
                .map(|(ns, name)| format!("{ns}/{name}")),
        );
        keys
    }

    /// Forgets every scaler not in `existing` (the controllers' caches of PredictiveScalers): a
    /// deletion whose reconcile never ran (an invalid spec waits for a change, a missed watch
    /// event) leaves nothing behind.
    pub fn forget_all_but(&self, existing: &std::collections::HashSet<String>) -> usize {
        let gone: Vec<String> = self
            .known_keys()
            .into_iter()
            .filter(|k| !existing.contains(k))
            .collect();
        for key in &gone {
            self.forget(key);
        }
        gone.len()
    }
}

pub(crate) fn object_key(ps: &PredictiveScaler) -> String {
    format!("{}/{}", ps.namespace().unwrap_or_default(), ps.name_any())
}

fn error_policy(ps: Arc<PredictiveScaler>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = object_key(&ps);
    let failures = {
        let mut f = ctx.failures.lock().expect("failure lock");
        let n = f.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let delay = reconcile::backoff(ctx.config.sync_interval, failures - 1);
    warn!(namespace = ps.namespace().unwrap_or_default(), name = %ps.name_any(), reason = error.reason(), %error, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// One API per watched scope: one cluster-wide, or one per watched namespace.
fn scoped_apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Runs the controller until a shutdown signal.
///
/// With `config.namespaces` set, one kube-runtime `Controller` runs per namespace (a
/// `Controller` watches through one `Api`), all sharing one [`Context`]: the history cache,
/// the per-scaler memory and the event recorder. Keys are `namespace/name`, so they never mix.
///
/// In order: wait until the API server answers, win the leader election (with `leader`),
/// start the controllers and run them until stopped, then hand the lease over.
pub async fn run(
    client: Client,
    sources: Sources,
    config: ControllerConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    leader: Option<LeaderConfig>,
) -> anyhow::Result<()> {
    let apis: Vec<Api<PredictiveScaler>> = scoped_apis(&client, &config.namespaces);
    // Until the API server answers (and the CRD and RBAC are in place), wait with backoff:
    // alive on /healthz, not ready on /readyz, as a pod started before its API server is.
    match until_signal(wait_for_api(&apis, &config)).await {
        None => {
            info!("shutting down before the API server answered");
            return Ok(());
        }
        Some(answered) => answered?,
    }
    let mut election = match &leader {
        None => None,
        Some(cfg) => match lead(&client, cfg, &health).await? {
            Some(election) => Some(election),
            None => return Ok(()),
        },
    };
    let gate = election
        .as_ref()
        .map_or_else(|| Arc::new(LeaseGate::always_open()), Election::gate);
    let scope = Scope {
        client,
        apis,
        sources,
        config,
        metrics,
        gate,
    };
    let started = start(scope, &health);
    let result = run_until_stopped(started.controllers, &started.ctx, election.as_mut()).await;
    // stopped by a signal while leading: hand the lease over now, not after its duration
    if let (Ok(()), Some(e)) = (&result, election) {
        e.release().await;
    }
    started.sweeper.abort();
    for w in started.hpa_watches {
        w.abort();
    }
    info!("controller stopped");
    result
}

/// `work`'s output, or `None` when a shutdown signal comes first.
async fn until_signal<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        () = shutdown_signal() => None,
    }
}

/// Joins the leader election and waits to lead. `None`: a shutdown signal came first (a
/// standby releases its part in the election).
async fn lead(
    client: &Client,
    cfg: &LeaderConfig,
    health: &Health,
) -> anyhow::Result<Option<Election>> {
    let Some(mut election) = until_signal(start_election(client, cfg)).await else {
        info!("shutting down before the leader election started");
        return Ok(None);
    };
    // a standby knows its role: it is ready (to take over)
    health.set_started();
    let acquired = until_signal(election.acquired()).await;
    match acquired {
        Some(r) => {
            r?;
            Ok(Some(election))
        }
        None => {
            info!("shutting down as a standby");
            election.release().await;
            Ok(None)
        }
    }
}

/// What the controllers are built from.
struct Scope {
    client: Client,
    /// The PredictiveScalers of each watched scope.
    apis: Vec<Api<PredictiveScaler>>,
    sources: Sources,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    /// Open while this replica may write.
    gate: Arc<LeaseGate>,
}

/// The controllers, ready to run, and the tasks beside them.
struct Started {
    ctx: Arc<Context>,
    /// One per watched scope.
    controllers: Vec<Controller<PredictiveScaler>>,
    /// Forgets deleted scalers ([`sweep`]).
    sweeper: tokio::task::JoinHandle<()>,
    /// Keep the caches of HorizontalPodAutoscalers ([`hpa_reflectors`]).
    hpa_watches: Vec<tokio::task::JoinHandle<()>>,
}

/// One `Controller` per watched scope over one shared [`Context`], the HPA caches and the
/// sweeper; the replica reports itself started.
fn start(scope: Scope, health: &Arc<Health>) -> Started {
    let (hpa_stores, hpa_watches) = hpa_reflectors(&scope.client, &scope.config.namespaces);
    let caches: Vec<_> = scope
        .apis
        .into_iter()
        .map(|api| (api, reflector::store()))
        .collect();
    let stores: Vec<Store<PredictiveScaler>> = caches
        .iter()
        .map(|(_, (reader, _))| reader.clone())
        .collect();
    let ctx = Arc::new(
        Context::new(scope.client, scope.sources, scope.config)
            .with_metrics(scope.metrics)
            .with_write_gate(scope.gate)
            .with_scaler_stores(stores.clone())
            .with_hpa_stores(hpa_stores),
    );
    health.set_started();
    info!(namespaces = ?ctx.config.namespaces, "controller started");
    let controllers = caches
        .into_iter()
        .map(|(api, (reader, writer))| controller(api, reader, writer, &ctx, health.clone()))
        .collect();
    let sweeper = tokio::spawn(sweep(stores, ctx.clone()));
    Started {
        ctx,
        controllers,
        sweeper,
        hpa_watches,
    }
}

/// Runs `controllers` until a shutdown signal stops them or, when leading, until the lease is
/// lost (an error: the process exits and restarts as a standby).
async fn run_until_stopped(
    controllers: Vec<Controller<PredictiveScaler>>,
    ctx: &Arc<Context>,
    election: Option<&mut Election>,
) -> anyhow::Result<()> {
    let controllers = futures::future::join_all(
        controllers
            .into_iter()
            .map(|c| run_controller(c, ctx.clone())),
    );
    match election {
        None => {
            controllers.await;
            Ok(())
        }
        Some(e) => {
            tokio::select! {
                _ = controllers => Ok(()),
                lost = e.lost() => Err(lost),
            }
        }
    }
}

/// A `Controller` over `scalers`: its watch reports to `health` (a failing watch makes the
/// replica unready), its cache is `reader`/`writer`, and at most `max_concurrent_reconciles`
/// reconciles run at once.
///
/// A watch event starts a reconcile only when the scaler is new, its spec changed, it was
/// marked for deletion or it is gone ([`Triggers`]): the operator's own status writes, and any
/// other change, only update the cache, which the next evaluation (every sync interval) reads.
fn controller(
    scalers: Api<PredictiveScaler>,
    reader: Store<PredictiveScaler>,
    writer: reflector::store::Writer<PredictiveScaler>,
    ctx: &Context,
    health: Arc<Health>,
) -> Controller<PredictiveScaler> {
    let watch_health = health.clone();
    let events = watcher(scalers, watch_config(&ctx.config))
        .default_backoff()
        .inspect(move |event| match event {
            Ok(_) => watch_health.watch_ok(),
            Err(e) => watch_health.watch_failed(&e.to_string()),
        })
        .reflect(writer)
        .filter_map({
            let mut triggers = Triggers::default();
            move |event| {
                futures::future::ready(match event {
                    Ok(event) => triggers.admit(event).map(Ok),
                    Err(e) => Some(Err(e)),
                })
            }
        });
    Controller::for_stream(events, reader).with_config(
        kube::runtime::controller::Config::default()
            .concurrency(ctx.config.max_concurrent_reconciles.max(1)),
    )
}

/// The watch of PredictiveScalers: every semantic change, of the scalers `--selector` matches.
fn watch_config(config: &ControllerConfig) -> watcher::Config {
    let watch = watcher::Config::default().any_semantic();
    match &config.selector {
        Some(selector) => watch.labels(selector),
        None => watch,
    }
}

/// Caches of the HorizontalPodAutoscalers in the watched scopes (so a scaler on a target an HPA
/// also scales is `AmbiguousTarget`), kept by background watches. Without the RBAC to list
/// them, the caches stay empty and only PredictiveScalers are compared.
fn hpa_reflectors(
    client: &Client,
    namespaces: &[String],
) -> (
    Vec<Store<HorizontalPodAutoscaler>>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let apis: Vec<Api<HorizontalPodAutoscaler>> = scoped_apis(client, namespaces);
    apis.into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            let task = tokio::spawn(async move {
                let mut warned = false;
                watcher(api, watcher::Config::default().any_semantic())
                    .default_backoff()
                    .reflect(writer)
                    .for_each(|e| {
                        if let Err(e) = e
                            && !warned
                        {
                            warned = true;
                            warn!(error = %e, "cannot watch HorizontalPodAutoscalers; an HPA on a scaler's target will not be noticed");
                        }
                        futures::future::ready(())
                    })
                    .await;
            });
            (reader, task)
        })
        .unzip()
}

/// Every sync interval (at least 10 s), forgets the scalers that none of `stores` holds any
/// more, once they have all listed.
async fn sweep(stores: Vec<Store<PredictiveScaler>>, ctx: Arc<Context>) {
    for s in &stores {
        if s.wait_until_ready().await.is_err() {
            return;
        }
    }
    let every = ctx.config.sync_interval.max(Duration::from_secs(10));
    loop {
        tokio::time::sleep(every).await;
        let existing: std::collections::HashSet<String> = stores
            .iter()
            .flat_map(|s| s.state())
            .map(|ps| object_key(&ps))
            .collect();
        let gone = ctx.forget_all_but(&existing);
        if gone > 0 {
            info!(gone, "forgot deleted PredictiveScalers");
        }
    }
}

/// The first retry after a failed start-up call; doubled each time up to [`STARTUP_RETRY_MAX`].
const STARTUP_RETRY_MIN: Duration = Duration::from_millis(500);
const STARTUP_RETRY_MAX: Duration = Duration::from_secs(30);

/// The delay before start-up retry `attempt` (0-based): 0.5 s, 1 s, 2 s, ... at most 30 s.
fn startup_retry_delay(attempt: u32) -> Duration {
    STARTUP_RETRY_MIN
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(STARTUP_RETRY_MAX)
}

/// Lists (one of) the PredictiveScalers of every watched scope once, retrying each with backoff
/// until it succeeds: the API server may not be reachable yet, or the CRD or the RBAC not
/// applied yet. A `--selector` the API server refuses is an error.
async fn wait_for_api(
    apis: &[Api<PredictiveScaler>],
    config: &ControllerConfig,
) -> anyhow::Result<()> {
    let mut params = kube::api::ListParams::default().limit(1);
    if let Some(selector) = &config.selector {
        params = params.labels(selector);
    }
    for (api, scope) in apis.iter().zip(scope_names(&config.namespaces)) {
        let mut attempt = 0;
        loop {
            let e = match api.list(&params).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 400 && config.selector.is_some() => {
                    anyhow::bail!(
                        "--selector {:?} is not a label selector the API server accepts ({}); write it as \
                         kubectl's -l takes it, e.g. shard=a or 'shard in (a,b)'",
                        config.selector.as_deref().unwrap_or_default(),
                        s.message
                    )
                }
                Err(e) => e,
            };
            let delay = startup_retry_delay(attempt);
            warn!(
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "cannot list PredictiveScalers in {scope} yet (is the API server reachable? is the CRD \
                 installed: kubectl apply -f crds/? does the operator's RBAC cover it?)"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
    Ok(())
}

/// Starts competing for the Lease, retrying with backoff while the API server refuses.
async fn start_election(client: &Client, cfg: &LeaderConfig) -> Election {
    let mut attempt = 0;
    loop {
        match Election::start(client.clone(), cfg).await {
            Ok(election) => return election,
            Err(e) => {
                let delay = startup_retry_delay(attempt);
                warn!(
                    error = crate::error::chain(&e),
                    retry_in_ms = delay.as_millis() as u64,
                    "leader election cannot start yet"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// How a watched scope is named in messages.
fn scope_names(namespaces: &[String]) -> Vec<String> {
    if namespaces.is_empty() {
        vec!["all namespaces".into()]
    } else {
        namespaces
            .iter()
            .map(|ns| format!("namespace {ns:?}"))
            .collect()
    }
}

/// Runs one `Controller` until a shutdown signal.
async fn run_controller(controller: Controller<PredictiveScaler>, ctx: Arc<Context>) {
    let ctx_for_loop = ctx.clone();
    controller
        .shutdown_on_signal()
        .run(
            |ps, ctx: Arc<Context>| async move {
                let key = object_key(&ps);
                let result = reconcile(ps, ctx.clone()).await;
                if result.is_ok() {
                    ctx.failures.lock().expect("failure lock").remove(&key);
                }
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|res| {
            let ctx = ctx_for_loop.clone();
            async move {
                match res {
                    Ok(_) => {}
                    Err(kube::runtime::controller::Error::ObjectNotFound(obj)) => {
                        ctx.forget(&format!(
                            "{}/{}",
                            obj.namespace.unwrap_or_default(),
                            obj.name
                        ));
                    }
                    Err(e) => warn!(error = %e, "controller"),
                }
            }
        })
        .await;
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests;
