//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's leaderelection does
//! it: with several operator replicas only the holder of the Lease reconciles and writes.
//!
//! - **Acquire**: a standby takes the Lease when it is missing, released (no holder), or when
//!   nobody renewed it for `leaseDurationSeconds` *of the standby's own clock*: it remembers when
//!   it last saw the Lease change (holder, renew time or resourceVersion) and never compares the
//!   holder's `renewTime` with its own clock, so clock skew between replicas cannot make it take
//!   a Lease that is being renewed. Every write is a replace with the resourceVersion read, so of
//!   two standbys only one wins.
//! - **Renew**: the leader renews every retry period. Its write gate ([`LeaseGate`]) is open only
//!   within the renew deadline (2/3 of the lease duration) of its last successful renewal, checked
//!   before every write; a write must also finish before the lease could expire (its timeout is
//!   the time left), since a standby may take over then. Failing renewals (500s, 429s, a hung
//!   request) close the gate at the deadline, before any standby can take over.
//! - **Lose**: a leader whose renewals fail past the deadline, or whose Lease names another
//!   holder, closes the gate and the process exits, to restart as a standby with a clean memory.
//! - **Release**: on SIGTERM the leader empties the holder, so a standby takes over at its next
//!   retry instead of waiting out the lease duration.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, Resource},
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::target::{REQUEST_TIMEOUT, bounded};

/// How to take part in the election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    /// This replica's name in the Lease (`holderIdentity`), e.g. the pod name.
    pub identity: String,
    /// How long the Lease stays valid without a renewal: the longest a standby waits after
    /// the leader died.
    pub lease_duration: Duration,
}

impl LeaderConfig {
    /// The leader stops writing this long after its last successful renewal (client-go's
    /// RenewDeadline: 10 s of a 15 s lease).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.mul_f64(2.0 / 3.0)
    }

    /// How often the leader renews and a standby looks (client-go's RetryPeriod: 2 s of 15 s).
    pub fn retry_period(&self) -> Duration {
        self.lease_duration
            .div_f64(7.5)
            .max(Duration::from_millis(200))
    }

    fn lease_seconds(&self) -> i32 {
        self.lease_duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }
}

/// Whether this replica may write now, and for how long.
#[derive(Debug)]
pub struct LeaseGate {
    leading: AtomicBool,
    /// When the last successful renewal (or the acquisition) was sent.
    renewed: Mutex<Option<Instant>>,
    renew_deadline: Duration,
    lease_duration: Duration,
}

impl LeaseGate {
    fn new(cfg: &LeaderConfig) -> Self {
        Self {
            leading: AtomicBool::new(false),
            renewed: Mutex::new(None),
            renew_deadline: cfg.renew_deadline(),
            lease_duration: cfg.lease_duration,
        }
    }

    /// A gate that is always open (no leader election).
    pub fn always_open() -> Self {
        Self {
            leading: AtomicBool::new(true),
            renewed: Mutex::new(None),
            renew_deadline: Duration::MAX,
            lease_duration: Duration::MAX,
        }
    }

    fn renewed_at(&self, at: Instant) {
        *self.renewed.lock().expect("gate lock") = Some(at);
        self.leading.store(true, Ordering::SeqCst);
    }

    /// Closes the gate for good (lost, released, or the election ended).
    pub fn close(&self) {
        self.leading.store(false, Ordering::SeqCst);
    }

    /// How long a write started now may take: `None` when this replica may not write (not
    /// leading, or past the renew deadline); else the time until the lease could expire, at
    /// most the request timeout.
    pub fn write_budget(&self) -> Option<Duration> {
        if !self.leading.load(Ordering::SeqCst) {
            return None;
        }
        let Some(renewed) = *self.renewed.lock().expect("gate lock") else {
            // always open
            return Some(REQUEST_TIMEOUT);
        };
        let since = renewed.elapsed();
        (since < self.renew_deadline).then(|| {
            self.lease_duration
                .saturating_sub(since)
                .min(REQUEST_TIMEOUT)
        })
    }
}

/// What a standby saw of the Lease last, and when (its own clock).
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<String>,
    resource_version: Option<String>,
    lease_seconds: i32,
}

/// Pure: may a standby take a Lease it observed as `seen` at `seen_at` (unchanged since), at
/// `now`? Free when it has no holder; expired when it has not changed for its duration.
fn may_take(seen: &Observed, seen_at: Instant, now: Instant) -> bool {
    seen.holder.as_deref().is_none_or(str::is_empty)
        || now.saturating_duration_since(seen_at)
            > Duration::from_secs(seen.lease_seconds.max(1) as u64)
}

/// A running election.
pub struct Election {
    gate: Arc<LeaseGate>,
    /// `true` while leading; the task ends with the reason when the lease is lost.
    leading: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<anyhow::Error>,
    api: Api<Lease>,
    cfg: LeaderConfig,
}

impl Election {
    /// Starts competing for the Lease (creating it when missing). Fails only when the Lease
    /// cannot be read at all (no API server, no RBAC), so the caller retries.
    pub async fn start(client: Client, cfg: &LeaderConfig) -> anyhow::Result<Self> {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        bounded(api.get_opt(&cfg.lease_name)).await.map_err(|e| {
            anyhow::anyhow!(
                "leader election: reading Lease {}/{}: {}",
                cfg.namespace,
                cfg.lease_name,
                crate::error::plain(&e)
            )
        })?;
        let gate = Arc::new(LeaseGate::new(cfg));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(campaign(api.clone(), cfg.clone(), gate.clone(), tx));
        info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "leader election: standby, waiting for the lease");
        Ok(Self {
            gate,
            leading: rx,
            task,
            api,
            cfg: cfg.clone(),
        })
    }

    /// The write gate of this replica.
    pub fn gate(&self) -> Arc<LeaseGate> {
        self.gate.clone()
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.leading
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| anyhow::anyhow!("leader election stopped"))?;
        info!("leader election: leading");
        Ok(())
    }

    /// Waits until the Lease is lost (the gate is closed by then); the reason.
    pub async fn lost(&mut self) -> anyhow::Error {
        let _ = self.leading.wait_for(|leading| !*leading).await;
        self.gate.close();
        match (&mut self.task).await {
            Ok(why) => why,
            Err(e) => anyhow::anyhow!("leader election task failed: {e}"),
        }
    }

    /// Stops competing and, when leading, releases the Lease (no holder), so a standby takes
    /// over at once instead of after the lease duration.
    pub async fn release(self) {
        self.task.abort();
        let was_leading = self.gate.write_budget().is_some();
        self.gate.close();
        if !was_leading {
            return;
        }
        let released = async {
            let mut lease = self.api.get(&self.cfg.lease_name).await?;
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(Duration::from_secs(2), released).await {
            Ok(Ok(())) => info!("leader election: released the lease"),
            Ok(Err(e)) => warn!(
                error = %crate::error::plain(&e),
                "leader election: releasing the lease failed"
            ),
            Err(_) => warn!("leader election: releasing the lease timed out"),
        }
    }
}

fn observe(lease: &Lease) -> Observed {
    let spec = lease.spec.clone().unwrap_or_default();
    Observed {
        holder: spec.holder_identity,
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        resource_version: lease.meta().resource_version.clone(),
        lease_seconds: spec.lease_duration_seconds.unwrap_or(15),
    }
}

/// The Lease as `cfg.identity` holds it from now on (keeping its resourceVersion, so the
/// replace fails when someone else wrote it since it was read).
fn held(mut lease: Lease, cfg: &LeaderConfig, acquiring: bool) -> Lease {
    let now = MicroTime(Timestamp::now());
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if acquiring {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(cfg.lease_seconds());
    spec.renew_time = Some(now);
    lease
}

/// Competes for the Lease, then renews it; ends (with the reason) when it is lost.
async fn campaign(
    api: Api<Lease>,
    cfg: LeaderConfig,
    gate: Arc<LeaseGate>,
    leading: watch::Sender<bool>,
) -> anyhow::Error {
    let mut seen: Option<(Observed, Instant)> = None;
    let mut ticker = tokio::time::interval(cfg.retry_period());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if *leading.borrow() {
            if let Err(why) = renew(&api, &cfg, &gate).await {
                gate.close();
                let _ = leading.send(false);
                warn!(error = %why, "leader election: lost the lease; stopping all writes");
                return anyhow::anyhow!(
                    "lost the leader lease ({why}); exiting to restart as a standby"
                );
            }
        } else if try_acquire(&api, &cfg, &gate, &mut seen).await {
            let _ = leading.send(true);
        }
    }
}

/// One renewal. `Err` when the lease is lost: another holder, or no successful renewal within
/// the renew deadline.
async fn renew(api: &Api<Lease>, cfg: &LeaderConfig, gate: &LeaseGate) -> Result<(), String> {
    let sent = Instant::now();
    let attempt = async {
        let lease = api.get(&cfg.lease_name).await?;
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        if holder.as_deref() != Some(cfg.identity.as_str()) {
            return Ok::<_, kube::Error>(Err(format!("the Lease is held by {holder:?}")));
        }
        api.replace(
            &cfg.lease_name,
            &PostParams::default(),
            &held(lease, cfg, false),
        )
        .await?;
        Ok(Ok(()))
    };
    // a renewal may not outlast the renew deadline either
    match tokio::time::timeout(cfg.renew_deadline(), attempt).await {
        Ok(Ok(Ok(()))) => {
            gate.renewed_at(sent);
            debug!("leader election: renewed");
            Ok(())
        }
        Ok(Ok(Err(taken))) => Err(taken),
        Ok(Err(e)) => renew_failed(gate, &e.to_string()),
        Err(_) => renew_failed(gate, "the renewal timed out"),
    }
}

fn renew_failed(gate: &LeaseGate, why: &str) -> Result<(), String> {
    if gate.write_budget().is_some() {
        warn!(error = why, "leader election: renewal failed; retrying");
        Ok(())
    } else {
        Err(format!("no renewal within the renew deadline: {why}"))
    }
}

/// One attempt of a standby: creates the Lease when missing, takes it when free or expired.
async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaderConfig,
    gate: &LeaseGate,
    seen: &mut Option<(Observed, Instant)>,
) -> bool {
    let sent = Instant::now();
    let lease = match bounded(api.get_opt(&cfg.lease_name)).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            let lease = held(
                Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.lease_name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec::default()),
                },
                cfg,
                true,
            );
            return match bounded(api.create(&PostParams::default(), &lease)).await {
                Ok(_) => {
                    gate.renewed_at(sent);
                    true
                }
                Err(e) => {
                    debug!(error = %crate::error::plain(&e), "leader election: creating the lease failed");
                    false
                }
            };
        }
        Err(e) => {
            debug!(error = %crate::error::plain(&e), "leader election: reading the lease failed");
            return false;
        }
    };
    let now = Instant::now();
    let observed = observe(&lease);
    if observed.holder.as_deref() == Some(cfg.identity.as_str()) {
        // ours from before a restart: take it back at once
    } else {
        let changed = seen.as_ref().is_none_or(|(o, _)| *o != observed);
        if changed {
            *seen = Some((observed.clone(), now));
        }
        let (o, at) = seen.as_ref().expect("set above");
        if !may_take(o, *at, now) {
            return false;
        }
    }
    match bounded(api.replace(
        &cfg.lease_name,
        &PostParams::default(),
        &held(lease, cfg, true),
    ))
    .await
    {
        Ok(_) => {
            gate.renewed_at(sent);
            true
        }
        Err(e) => {
            // a 409: someone else took it first
            debug!(error = %crate::error::plain(&e), "leader election: taking the lease failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: Option<&str>, secs: i32) -> Observed {
        Observed {
            holder: holder.map(str::to_string),
            renew_time: Some("2026-01-01T00:00:00Z".into()),
            resource_version: Some("1".into()),
            lease_seconds: secs,
        }
    }

    #[test]
    fn a_lease_is_taken_only_when_free_or_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let held = observed(Some("a"), 4);
        assert!(!may_take(&held, t0, t0 + Duration::from_secs(3)));
        assert!(!may_take(&held, t0, t0 + Duration::from_secs(4)));
        assert!(may_take(&held, t0, t0 + Duration::from_millis(4_001)));
        assert!(may_take(&observed(None, 15), t0, t0));
        assert!(may_take(&observed(Some(""), 15), t0, t0));
    }

    #[test]
    fn the_gate_closes_at_the_renew_deadline_and_bounds_writes_by_the_lease() {
        let cfg = LeaderConfig {
            lease_name: "l".into(),
            namespace: "n".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(cfg.renew_deadline(), Duration::from_secs(10));
        assert_eq!(cfg.retry_period(), Duration::from_secs(2));
        let gate = LeaseGate::new(&cfg);
        assert_eq!(gate.write_budget(), None, "not leading yet");
        gate.renewed_at(Instant::now() - Duration::from_secs(8));
        let budget = gate.write_budget().expect("within the renew deadline");
        assert!(
            budget <= Duration::from_secs(7) && budget > Duration::from_secs(6),
            "a write must end before the lease could expire: {budget:?}"
        );
        gate.renewed_at(Instant::now() - Duration::from_secs(11));
        assert_eq!(gate.write_budget(), None, "past the renew deadline");
        gate.renewed_at(Instant::now());
        assert_eq!(gate.write_budget(), Some(REQUEST_TIMEOUT));
        gate.close();
        assert_eq!(gate.write_budget(), None);
        assert_eq!(
            LeaseGate::always_open().write_budget(),
            Some(REQUEST_TIMEOUT)
        );
    }
}
