//! Leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager): with several
//! operator replicas only the holder of the Lease reconciles and writes.
//!
//! A standby waits for the Lease; it takes over when the leader stops renewing it (within the
//! lease duration). A leader that loses the Lease closes its write gate at once and the
//! process exits, so that it restarts as a standby with a clean memory.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tracing::{info, warn};

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

/// A running election: `changed()` reports the lock state.
pub struct Election {
    rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

impl Election {
    /// Starts competing for the Lease (creating it when missing).
    pub async fn start(client: Client, cfg: &LeaderConfig) -> anyhow::Result<Self> {
        let duration = cfg.lease_duration.as_secs().max(2);
        // renew a third of the duration before it runs out (and tolerate that much clock skew)
        let grace = (duration / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
            .with_namespace(&cfg.namespace)
            .with_parameters(
                LeaseParams::new(cfg.identity.clone(), duration, grace)
                    .with_field_manager(format!("prescale-{}", cfg.identity)),
            )
            .build()
            .await
            .with_context(|| {
                format!(
                    "leader election: using Lease {}/{}",
                    cfg.namespace, cfg.lease_name
                )
            })?;
        let (rx, task) = manager.watch().await;
        info!(lease = %cfg.lease_name, namespace = %cfg.namespace, identity = %cfg.identity, "leader election: standby, waiting for the lease");
        Ok(Self { rx, task })
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.rx
            .wait_for(|leading| *leading)
            .await
            .map_err(|_| anyhow::anyhow!("leader election stopped"))?;
        info!("leader election: leading");
        Ok(())
    }

    /// Waits until the Lease is lost, then closes `gate` at once.
    pub async fn lost(mut self, gate: Arc<AtomicBool>) -> anyhow::Error {
        let result = self.rx.wait_for(|leading| !*leading).await.map(|_| ());
        gate.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => {
                warn!("leader election: lost the lease; stopping all writes");
                anyhow::anyhow!("lost the leader lease; exiting to restart as a standby")
            }
            Err(_) => {
                let why = match self.task.await {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => "the election ended".into(),
                    Err(e) => e.to_string(),
                };
                warn!(error = %why, "leader election failed; stopping all writes");
                anyhow::anyhow!("leader election failed: {why}")
            }
        }
    }
}
