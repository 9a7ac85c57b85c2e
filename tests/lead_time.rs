//! `scaleUp.leadTime: Auto` on the real control plane (etcd and kube-apiserver, tests/support/
//! cluster.rs), with a real Prometheus and the `prescale run` binary as the chart's
//! ServiceAccount with `learnedLeadTime.enabled`. There is no kube-controller-manager (its
//! Deployment controller would write the status back) and no kubelet: the test plays both and
//! writes the Deployment's `status.readyReplicas` 4 s after the operator scales it up. The
//! operator measures that scale-up, shows the raw measurement and the bounded lead time in
//! `status.leadTime`, and keeps them across a restart; a scale-up still in flight when the
//! operator stops (`status.leadTime.pending`) is measured by the restarted one from its write.
//! The learning rules (quantile, bounds, superseded and timed-out scale-ups) are unit tests
//! (`planner::lead_time`).

mod support;

use std::time::{Duration, Instant};

use prescale::api::{PredictiveScaler, duration::parse_duration};
use serde_json::json;
use support::cluster::KubeCluster;
use support::scenario::{
    FLAT_LOAD_REPLICAS, create_scaler, flat_load, scaler_path, start_operator, wait_for,
};
use support::{Controller, Prometheus, wait_until};

/// Flat load 100 at the fixture's targetPerReplica 10: 10 replicas.
const WANT: i64 = FLAT_LOAD_REPLICAS;
/// How long a test waits for what the operator does.
const WAIT: Duration = Duration::from_secs(60);
/// How long the "kubelet" takes to make the new replicas ready.
const STARTUP: Duration = Duration::from_secs(4);
/// The count a raised `minReplicas` scales to while the operator is restarted.
const RAISED: i64 = 14;
/// How long the operator is down while that scale-up is in flight.
const DOWN: Duration = Duration::from_secs(3);

/// A control plane of its own without kube-controller-manager, with the CRD.
fn control_plane() -> KubeCluster {
    let kube = KubeCluster::init_only();
    for c in ["etcd", "kube-apiserver"] {
        kube.start_component(c);
    }
    kube.wait_ready(Duration::from_secs(60));
    kube.install_crd();
    kube
}

/// Namespace `ns` and its `default` ServiceAccount (which kube-controller-manager would create;
/// `KubeCluster::create_namespace` waits for it).
fn namespace(kube: &KubeCluster, ns: &str) {
    kube.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    );
    kube.create(
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    );
}

/// The operator watching `ns`, with the chart's RBAC for `leadTime: Auto`.
fn operator(kube: &KubeCluster, ns: &str, prom: &Prometheus) -> Controller {
    let values = "learnedLeadTime:\n  enabled: true\n";
    start_operator(kube, ns, &prom.url(), Some(values), "1s").0
}

#[test]
fn a_learned_lead_time_is_measured_from_the_targets_ready_replicas() {
    let prom = flat_load();
    let kube = control_plane();
    let (ns, name) = ("lead-auto", "proxy");
    namespace(&kube, ns);
    kube.create_deployment(ns, name, 3);
    let scaler = PredictiveScaler::test(ns, name)
        .history("12h", "1m")
        .lead_time("Auto")
        .json();
    create_scaler(&kube, scaler);
    let path = scaler_path(ns, name);
    // the scale-up is written after this instant (the operator is not running before)
    let started = Instant::now();
    let mut op = operator(&kube, ns, &prom);

    // before any measurement: the default, and why nothing is measured (no status at all)
    let s = wait_for(&mut op, &kube, &path, "status.leadTime", WAIT, |s| {
        s["status"]["leadTime"].is_object()
    });
    let lead = &s["status"]["leadTime"];
    assert_eq!(lead["current"], "5m", "{lead}");
    assert_eq!(lead["source"], "Default", "{lead}");
    assert_eq!(lead["samples"], json!([]), "{lead}");
    assert_eq!(
        lead["message"],
        format!(
            "Deployment {ns}/{name} reports no status.readyReplicas: the lead time cannot be measured"
        ),
    );

    // the scale-up, then the "kubelet" makes its replicas ready STARTUP later
    wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        op.assert_running();
        (kube.deployment_replicas(ns, name) == WANT).then_some(())
    })
    .unwrap_or_else(|| panic!("never scaled to {WANT}\n{}", op.log_tail(40)));
    let pending = kube.get(&path);
    assert_eq!(
        pending["status"]["leadTime"]["source"], "Default",
        "{}",
        pending["status"]
    );
    std::thread::sleep(STARTUP);
    kube.patch_merge(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}/status"),
        json!({"status": {"replicas": WANT, "readyReplicas": WANT}}),
    );
    let s = wait_for(&mut op, &kube, &path, "a learned lead time", WAIT, |s| {
        s["status"]["leadTime"]["source"] == "Learned"
    });
    let measured_within = started.elapsed();
    let lead = &s["status"]["leadTime"];
    let samples = lead["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 1, "{lead}");
    let sample = parse_duration(samples[0].as_str().unwrap()).unwrap();
    // at least the kubelet's STARTUP (the write is stamped at its reconcile's start, and the
    // sample is in whole seconds: one second of slack), at most from the operator's start to
    // when the test saw it (the test itself may notice the scale-up late under load, so that
    // instant is no bound), plus the rounding
    assert!(
        sample + Duration::from_secs(1) >= STARTUP
            && sample <= measured_within + Duration::from_secs(1),
        "measured {sample:?}: the replicas were ready after {STARTUP:?}, seen within {measured_within:?}; {lead}"
    );
    // bounded to at least 1m; the message of a missing status is gone
    assert_eq!(lead["current"], "1m", "{lead}");
    assert!(lead.get("message").is_none(), "{lead}");

    // a restarted operator starts from the stored measurements
    op.stop();
    let mut op = operator(&kube, ns, &prom);
    kube.patch_merge(&path, json!({"spec": {"maxReplicas": 51}}));
    let s = wait_for(&mut op, &kube, &path, "the new generation", WAIT, |s| {
        s["status"]["observedGeneration"] == s["metadata"]["generation"]
    });
    assert_eq!(s["status"]["leadTime"], *lead, "{}", s["status"]);

    // a scale-up in flight when the operator stops is kept in status.leadTime.pending, and the
    // restarted operator measures it from its write (it used to be lost with the process)
    kube.patch_merge(&path, json!({"spec": {"minReplicas": RAISED}}));
    let s = wait_for(&mut op, &kube, &path, "the scale-up in flight", WAIT, |s| {
        s["status"]["leadTime"]["pending"][0]["replicas"] == RAISED
    });
    assert_eq!(kube.deployment_replicas(ns, name), RAISED);
    let since = s["status"]["leadTime"]["pending"][0]["since"]
        .as_str()
        .expect("pending since")
        .parse::<jiff::Timestamp>()
        .expect("an RFC 3339 time");
    op.stop();
    std::thread::sleep(DOWN);
    kube.patch_merge(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}/status"),
        json!({"status": {"replicas": RAISED, "readyReplicas": RAISED}}),
    );
    let mut op = operator(&kube, ns, &prom);
    let s = wait_for(&mut op, &kube, &path, "the measured restart", WAIT, |s| {
        s["status"]["leadTime"]["samples"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    let seen = jiff::Timestamp::now();
    let lead = &s["status"]["leadTime"];
    let sample = parse_duration(lead["samples"][1].as_str().unwrap()).unwrap();
    let most = Duration::from_secs((seen.as_second() - since.as_second()).max(0) as u64);
    assert!(
        sample >= DOWN && sample <= most + Duration::from_secs(1),
        "measured {sample:?} from the write at {since}: the operator was down {DOWN:?}, seen \
         {most:?} after the write; {lead}"
    );
    assert!(lead.get("pending").is_none(), "{lead}");
    op.assert_never_forbidden();
}
