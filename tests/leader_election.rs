//! Two and three operator processes with `--leader-elect` against a real API server and a real
//! `coordination.k8s.io/v1` Lease (optimistic concurrency on its resourceVersion): exactly one writes;
//! when it is SIGKILLed another takes over within the lease duration; a leader whose Lease is taken
//! stops writing and exits.
//!
//! Real processes: the `prescale` binary (as the chart's ServiceAccount, with its leader-election Role),
//! a real Prometheus, a real control plane (tests/support/cluster.rs).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::cluster::KubeCluster;
use support::{Controller, Prometheus, openmetrics_gauge, report, unix_now, wait_until};

/// Flat load 100 with targetPerReplica 10: the scaler wants exactly 10 replicas.
const WANT: i64 = 10;
/// --leader-elect-lease-duration of every process here.
const LEASE_S: u64 = 4;

struct Env {
    ns: &'static str,
    kube: &'static KubeCluster,
    kubeconfig: std::path::PathBuf,
    prom: Prometheus,
}

impl Env {
    fn new(ns: &'static str) -> Env {
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
        let kube = KubeCluster::shared();
        let kubeconfig = kube.operator_kubeconfig(ns, None);
        kube.assert_namespaced_operator_identity(&kubeconfig, ns);
        kube.create(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "proxy", "namespace": ns},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "proxy"}},
                         "template": {"metadata": {"labels": {"app": "proxy"}},
                                      "spec": {"containers": [{"name": "p", "image": "example/proxy:1"}]}}}
            }),
        );
        kube.create(
            &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
            json!({
                "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
                "metadata": {"name": "proxy", "namespace": ns},
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
        Env {
            ns,
            kube,
            kubeconfig,
            prom,
        }
    }

    fn deployment(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/deployments/proxy", self.ns)
    }

    fn lease(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/prescale-leader",
            self.ns
        )
    }

    fn replicas(&self) -> i64 {
        self.kube.get(&self.deployment())["spec"]["replicas"]
            .as_i64()
            .expect("spec.replicas")
    }

    fn set_replicas(&self, n: i64) {
        self.kube
            .patch_merge(&self.deployment(), json!({"spec": {"replicas": n}}));
    }

    fn holder(&self) -> String {
        self.kube.get(&self.lease())["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn start(&self, name: &str) -> Controller {
        start(name, &self.prom.url(), &self.kubeconfig, self.ns)
    }
}

fn scaled(c: &Controller) -> usize {
    c.log().matches("scaled target").count()
}

fn leading(c: &Controller) -> bool {
    c.log().contains("leader election: leading")
}

fn start(name: &str, prom: &str, kubeconfig: &Path, ns: &str) -> Controller {
    Controller::start(
        &[
            "run",
            "--prometheus-url",
            prom,
            "--http-addr",
            "127.0.0.1:0",
            "--sync-interval",
            "1s",
            "--namespaces",
            ns,
            "--leader-elect",
            "--leader-elect-lease-duration",
            &format!("{LEASE_S}s"),
        ],
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("POD_NAME", std::ffi::OsStr::new(name)),
            ("POD_NAMESPACE", std::ffi::OsStr::new(ns)),
        ],
    )
}

/// Waits until exactly one of `procs` leads and has scaled to WANT; its index.
fn one_leader(env: &Env, procs: &mut [(String, Controller)]) -> usize {
    wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        for (_, p) in procs.iter_mut() {
            p.assert_running();
        }
        (env.replicas() == WANT).then_some(())
    })
    .unwrap_or_else(|| {
        let logs: Vec<String> = procs
            .iter()
            .map(|(n, p)| format!("{n}:\n{}", p.log_tail(20)))
            .collect();
        panic!("nobody scaled to {WANT}\n{}", logs.join("\n"))
    });
    // give a second leader every chance to appear: several lease renewals
    std::thread::sleep(Duration::from_secs(LEASE_S + 1));
    let leaders: Vec<usize> = (0..procs.len()).filter(|i| leading(&procs[*i].1)).collect();
    assert_eq!(
        leaders.len(),
        1,
        "exactly one leader of {}: {:?}",
        procs.len(),
        leaders
    );
    let i = leaders[0];
    assert_eq!(env.holder(), procs[i].0, "the Lease names the leader");
    for (_, p) in procs.iter() {
        p.assert_never_forbidden();
    }
    for (j, (name, p)) in procs.iter().enumerate() {
        if j != i {
            assert_eq!(scaled(p), 0, "standby {name} wrote:\n{}", p.log_tail(20));
            assert!(
                !p.log().contains("fitted forecast"),
                "standby {name} reconciled"
            );
        }
    }
    i
}

/// SIGKILLs the leader (no lease release) and waits for another to lead and restore the replicas;
/// (seconds to lead, seconds to restore, the new leader's index).
fn kill_leader(
    env: &Env,
    procs: &mut Vec<(String, Controller)>,
    leader: usize,
) -> (Duration, Duration, usize) {
    let (dead, mut old) = procs.remove(leader);
    old.stop();
    let killed = Instant::now();
    env.set_replicas(3);
    let new = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        for (_, p) in procs.iter_mut() {
            p.assert_running();
        }
        procs.iter().position(|(_, p)| leading(p))
    })
    .unwrap_or_else(|| panic!("nobody took over from {dead}"));
    let took_over = killed.elapsed();
    let restored = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        (env.replicas() == WANT).then(|| killed.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "the new leader did not restore replicas:\n{}",
            procs[new].1.log_tail(30)
        )
    });
    assert!(
        took_over <= Duration::from_secs(2 * LEASE_S),
        "failover took {took_over:?}, lease duration {LEASE_S}s"
    );
    assert_ne!(env.holder(), dead, "the Lease still names the dead leader");
    for (j, (name, p)) in procs.iter().enumerate() {
        if j != new {
            assert_eq!(scaled(p), 0, "standby {name} wrote");
        }
    }
    (took_over, restored, new)
}

#[test]
fn one_leader_of_two_writes_and_a_standby_takes_over_when_it_dies() {
    let env = Env::new("leader-two");
    let mut procs: Vec<(String, Controller)> = ["prescale-a", "prescale-b"]
        .iter()
        .map(|n| (n.to_string(), env.start(n)))
        .collect();
    let leader = one_leader(&env, &mut procs);
    let leader_name = procs[leader].0.clone();

    // someone scales the target down by hand: only the leader writes it back
    for _ in 0..2 {
        env.set_replicas(3);
        let back = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
            (env.replicas() == WANT).then_some(())
        });
        assert!(
            back.is_some(),
            "the leader did not restore {WANT} replicas\n{}",
            procs[leader].1.log_tail(30)
        );
    }
    let leader_writes = scaled(&procs[leader].1);
    assert!(leader_writes >= 3, "leader wrote {leader_writes} times");
    assert_eq!(scaled(&procs[1 - leader].1), 0, "the standby wrote");

    let (took_over, restored, new) = kill_leader(&env, &mut procs, leader);
    assert!(scaled(&procs[new].1) >= 1);
    report(&format!(
        "[leader] one leader of two ({leader_name}) on a real Lease, {leader_writes} scale writes by it and 0 by \
         the standby; after SIGKILL of the leader the standby led after {took_over:.2?} and restored the target \
         after {restored:.2?} (lease duration {LEASE_S}s)"
    ));

    // the new leader loses its lease (another holder takes it): it stops writing at once and
    // exits to restart as a standby
    let (_, mut new_leader) = procs.remove(new);
    let writes_before = scaled(&new_leader);
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string();
    env.kube.patch_merge(
        &env.lease(),
        json!({"spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 600,
                        "renewTime": now, "acquireTime": now}}),
    );
    let lost_at = Instant::now();
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
    env.set_replicas(3);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.replicas(), 3, "someone wrote without the lease");
    assert_eq!(scaled(&new_leader), writes_before);
    assert_eq!(env.holder(), "someone-else");
    report(&format!(
        "[leader] a leader whose lease was taken stopped and exited {exited:.2?} later; no write after"
    ));
}

#[test]
fn one_leader_of_three_and_two_failovers_in_a_row() {
    let env = Env::new("leader-three");
    let mut procs: Vec<(String, Controller)> = ["prescale-x", "prescale-y", "prescale-z"]
        .iter()
        .map(|n| (n.to_string(), env.start(n)))
        .collect();
    let leader = one_leader(&env, &mut procs);
    let first = procs[leader].0.clone();
    let (t1, r1, second) = kill_leader(&env, &mut procs, leader);
    let second_name = procs[second].0.clone();
    // wait several renewals: the survivor that does not lead stays a standby
    std::thread::sleep(Duration::from_secs(LEASE_S + 1));
    let leading_now: Vec<&String> = procs
        .iter()
        .filter(|(_, p)| leading(p))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        leading_now,
        vec![&second_name],
        "one leader of the two left"
    );
    let (t2, r2, third) = kill_leader(&env, &mut procs, second);
    let third_name = procs[third].0.clone();
    assert_eq!(env.holder(), third_name);
    report(&format!(
        "[leader] three processes: {first} led; after its SIGKILL {second_name} led in {t1:.2?} (replicas restored \
         {r1:.2?}); after that one's SIGKILL {third_name} led in {t2:.2?} (restored {r2:.2?}); never two \
         writers (lease duration {LEASE_S}s)"
    ));
}
