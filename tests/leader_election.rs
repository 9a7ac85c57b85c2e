//! Two operator processes with `--leader-elect` against one API server: exactly one writes,
//! and when it dies the other takes over within the lease duration.
//!
//! Real processes: the `prescale` binary twice, a real Prometheus, the kmock API emulator over
//! HTTP (with a `coordination.k8s.io/v1` Lease).

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    Controller, KubeEmulator, Prometheus, openmetrics_gauge, report, unix_now, wait_until,
};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SCALERS: &str = "/apis/prescale.dev/v1alpha1/namespaces/default/predictivescalers";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/prescale-leader";
/// Flat load 100 with targetPerReplica 10: the scaler wants exactly 10 replicas.
const WANT: i64 = 10;

fn replicas(kube: &KubeEmulator) -> i64 {
    kube.get(&format!("{DEPLOYMENTS}/proxy"))["spec"]["replicas"]
        .as_i64()
        .expect("spec.replicas")
}

fn set_replicas(kube: &KubeEmulator, n: i64) {
    kube.patch_merge(
        &format!("{DEPLOYMENTS}/proxy"),
        json!({"spec": {"replicas": n}}),
    );
}

fn scaled(c: &Controller) -> usize {
    c.log().matches("scaled target").count()
}

fn leading(c: &Controller) -> bool {
    c.log().contains("leader election: leading")
}

fn start(name: &str, prom: &str, kube: &KubeEmulator) -> Controller {
    Controller::start(
        &[
            "run",
            "--prometheus-url",
            prom,
            "--http-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "1s",
            "--leader-elect",
            "--leader-elect-lease-duration",
            "4s",
        ],
        &[
            ("KUBECONFIG", kube.kubeconfig_path().as_os_str()),
            ("POD_NAME", std::ffi::OsStr::new(name)),
            ("POD_NAMESPACE", std::ffi::OsStr::new("default")),
        ],
    )
}

#[test]
fn one_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let now = unix_now();
    let om = openmetrics_gauge(
        "proxy_rps",
        &[("app", "proxy")],
        now - 86_400,
        now - 60,
        60,
        |_| 100.0,
    );
    let prom = Prometheus::start_with_history(&om);
    let kube = KubeEmulator::start();
    kube.create(
        DEPLOYMENTS,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "proxy", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "proxy"}},
                     "template": {"metadata": {"labels": {"app": "proxy"}},
                                  "spec": {"containers": [{"name": "p", "image": "example/proxy:1"}]}}}
        }),
    );
    kube.create(
        SCALERS,
        json!({
            "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
            "metadata": {"name": "proxy", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "proxy"},
                "minReplicas": 1, "maxReplicas": 50,
                "metrics": [{"name": "requests", "query": "proxy_rps{app=\"proxy\"}", "targetPerReplica": "10"}],
                "history": {"lookback": "1d", "step": "1m"},
                "forecast": {"horizon": "1h", "refreshInterval": "10m"},
                "scaleDown": {"stabilizationWindow": "0s"}
            }
        }),
    );

    let mut a = start("prescale-a", &prom.url(), &kube);
    let mut b = start("prescale-b", &prom.url(), &kube);

    // one of them leads and scales 3 -> 10
    let first = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        a.assert_running();
        b.assert_running();
        (replicas(&kube) == WANT).then_some(())
    });
    assert!(
        first.is_some(),
        "nobody scaled to {WANT}\nA:\n{}\nB:\n{}",
        a.log_tail(30),
        b.log_tail(30)
    );
    // give a second leader every chance to appear: several lease renewals
    std::thread::sleep(Duration::from_secs(5));
    let (a_leads, b_leads) = (leading(&a), leading(&b));
    assert!(
        a_leads ^ b_leads,
        "exactly one leader: A {a_leads}, B {b_leads}"
    );
    let (mut leader, mut standby, leader_name) = if a_leads {
        (a, b, "prescale-a")
    } else {
        (b, a, "prescale-b")
    };
    let lease = kube.get(LEASE);
    assert_eq!(lease["spec"]["holderIdentity"], leader_name, "{lease}");

    // someone scales the target down by hand: only the leader writes it back
    for _ in 0..2 {
        set_replicas(&kube, 3);
        let back = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            (replicas(&kube) == WANT).then_some(())
        });
        assert!(
            back.is_some(),
            "the leader did not restore {WANT} replicas\n{}",
            leader.log_tail(30)
        );
    }
    let leader_writes = scaled(&leader);
    assert!(leader_writes >= 3, "leader wrote {leader_writes} times");
    assert_eq!(
        scaled(&standby),
        0,
        "the standby wrote:\n{}",
        standby.log_tail(30)
    );
    assert!(
        !standby.log().contains("fitted forecast"),
        "the standby reconciled"
    );

    // the leader dies (SIGKILL: no lease release); the standby must take over
    leader.stop();
    let killed = Instant::now();
    set_replicas(&kube, 3);
    let took_over = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        standby.assert_running();
        leading(&standby).then(|| killed.elapsed())
    })
    .unwrap_or_else(|| panic!("the standby never took over:\n{}", standby.log_tail(30)));
    let restored = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (replicas(&kube) == WANT).then(|| killed.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the new leader did not restore replicas:\n{}",
            standby.log_tail(30)
        )
    });
    assert!(
        took_over <= Duration::from_secs(4 + 4),
        "failover took {took_over:?}, lease duration 4s"
    );
    let lease = kube.get(LEASE);
    assert_ne!(lease["spec"]["holderIdentity"], leader_name, "{lease}");
    assert!(scaled(&standby) >= 1);
    report(&format!(
        "[leader] one leader of two ({leader_name}), {leader_writes} scale writes by it and 0 by the standby; \
         after SIGKILL of the leader the standby led after {took_over:.2?} and restored the target after \
         {restored:.2?} (lease duration 4s)"
    ));

    // the new leader loses its lease (another holder renews it): it stops writing at once and
    // exits to restart as a standby
    let new_leader = standby;
    let writes_before = scaled(&new_leader);
    let now_rfc3339 = {
        let out = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    kube.patch_merge(
        LEASE,
        json!({"spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 600,
                        "renewTime": now_rfc3339, "acquireTime": now_rfc3339}}),
    );
    let lost_at = Instant::now();
    let mut new_leader = new_leader;
    let exited = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        (!new_leader.is_running()).then(|| lost_at.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the leader kept running without its lease:\n{}",
            new_leader.log_tail(30)
        )
    });
    assert!(
        new_leader.log().contains("lost the lease"),
        "{}",
        new_leader.log_tail(20)
    );
    set_replicas(&kube, 3);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(&kube), 3, "someone wrote without the lease");
    assert_eq!(scaled(&new_leader), writes_before);
    report(&format!(
        "[leader] a leader whose lease was taken stopped and exited {exited:.2?} later; no write after"
    ));
}
