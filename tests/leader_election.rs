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

use prescale::api::PredictiveScaler;
use serde_json::json;
use support::cluster::{ApiProxy, Fault, KubeCluster};
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
    /// The same identity through a fault-injecting proxy.
    proxy: ApiProxy,
    proxied_kubeconfig: std::path::PathBuf,
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
        let proxy = ApiProxy::start(kube);
        let proxied_kubeconfig = kube.operator_kubeconfig(ns, Some(&proxy.url()));
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
            PredictiveScaler::test(ns, "proxy")
                .metric("requests", r#"proxy_rps{app="proxy"}"#, "10")
                .json(),
        );
        Env {
            ns,
            kube,
            kubeconfig,
            prom,
            proxy,
            proxied_kubeconfig,
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

    /// A process whose API requests go through [`Env::proxy`].
    fn start_proxied(&self, name: &str) -> Controller {
        start(name, &self.prom.url(), &self.proxied_kubeconfig, self.ns)
    }
}

fn scaled(c: &Controller) -> usize {
    c.log().matches("scaled target").count()
}

fn leading(c: &Controller) -> bool {
    c.log().contains("leader election: leading")
}

fn start(name: &str, prom: &str, kubeconfig: &Path, ns: &str) -> Controller {
    start_with(name, prom, kubeconfig, ns, &[])
}

/// [`start`] with more arguments.
fn start_with(name: &str, prom: &str, kubeconfig: &Path, ns: &str, more: &[&str]) -> Controller {
    let lease = format!("{LEASE_S}s");
    let mut args = vec![
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
        &lease,
    ];
    args.extend_from_slice(more);
    Controller::start(
        &args,
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

/// The time a log line of the operator was written (its RFC 3339 prefix).
fn logged_at(line: &str) -> std::time::SystemTime {
    let ts: jiff::Timestamp = line
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp: {line}"));
    std::time::UNIX_EPOCH + Duration::from_nanos(ts.as_nanosecond() as u64)
}

/// Review item 1: the write gate closed only when the lease library said "not leader", which it
/// never did while renewals failed: a leader whose Lease calls answered 500 kept scaling after a
/// standby had taken the Lease.
#[test]
fn a_leader_that_cannot_renew_stops_writing_before_a_standby_takes_over() {
    let env = Env::new("leader-split");
    let mut a = env.start_proxied("prescale-a");
    wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        a.assert_running();
        (leading(&a) && env.replicas() == WANT).then_some(())
    })
    .unwrap_or_else(|| panic!("A never led:\n{}", a.log_tail(20)));
    let mut b = env.start("prescale-b");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!leading(&b), "B took a renewed lease");
    // A's Lease calls fail from now on, everything else of A still works
    let cut = std::time::SystemTime::now();
    env.proxy.set_faults(vec![
        Fault::new("GET", "/leases/prescale-leader", 500, "InternalError").times(1000),
        Fault::new("PUT", "/leases/prescale-leader", 500, "InternalError").times(1000),
    ]);
    // keep asking for writes: whoever may write restores the replicas
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3 * LEASE_S) {
        env.set_replicas(3);
        std::thread::sleep(Duration::from_millis(700));
        b.assert_running();
    }
    let b_leads = b
        .log()
        .lines()
        .find(|l| l.contains("leader election: leading"))
        .map(logged_at)
        .unwrap_or_else(|| panic!("B never took over:\n{}", b.log_tail(20)));
    let a_writes: Vec<std::time::SystemTime> = env
        .proxy
        .timed_log()
        .into_iter()
        .filter(|(_, l)| {
            l.contains("/deployments/proxy/scale") && l.starts_with("PATCH") && l.ends_with("fwd")
        })
        .map(|(at, _)| at)
        .collect();
    let last_a = a_writes.iter().max().copied().unwrap_or(cut);
    assert!(
        last_a < b_leads,
        "A wrote at {last_a:?}, after B led at {b_leads:?}: two writers"
    );
    let renew_deadline = Duration::from_secs(LEASE_S) * 2 / 3;
    assert!(
        last_a <= cut + renew_deadline + Duration::from_millis(500),
        "A wrote {:?} after its renewals started failing (renew deadline {renew_deadline:?})",
        last_a.duration_since(cut).unwrap_or_default()
    );
    let exited = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (!a.is_running()).then_some(())
    });
    assert!(
        exited.is_some(),
        "A kept running without its lease:\n{}",
        a.log_tail(20)
    );
    assert!(a.log().contains("lost the lease"), "{}", a.log_tail(20));
    assert!(scaled(&b) >= 1, "B restored the replicas");
    report(&format!(
        "[leader] renewals failing (500s on the Lease): A's last write {:.2?} after the cut, B led {:.2?} after \
         it; A exited; no write of A after B led (lease {LEASE_S}s, renew deadline {renew_deadline:.2?})",
        last_a.duration_since(cut).unwrap_or_default(),
        b_leads.duration_since(cut).unwrap_or_default()
    ));
}

/// Review item 1: a standby must not trust a holder's `renewTime` across clock skew: a Lease that
/// keeps being renewed is not taken, however old its renewTime looks.
#[test]
fn a_lease_renewed_by_a_skewed_clock_is_not_taken_while_it_is_renewed() {
    let env = Env::new("leader-skew");
    // a holder whose clock is an hour behind, renewing every second
    let old = |i: i64| {
        jiff::Timestamp::from_second(unix_now() - 3600 + i)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
            .to_string()
    };
    env.kube.create(
        &format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", env.ns),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "prescale-leader", "namespace": env.ns},
               "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": LEASE_S,
                        "acquireTime": old(0), "renewTime": old(0)}}),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (stop, lease) = (stop.clone(), env.lease());
        let kube = env.kube;
        std::thread::spawn(move || {
            let mut i = 1;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                kube.patch_merge(&lease, json!({"spec": {"renewTime": old(i)}}));
                i += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let mut a = env.start("prescale-a");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3 * LEASE_S) {
        a.assert_running();
        assert!(
            !leading(&a),
            "took a lease that is being renewed:\n{}",
            a.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.holder(), "skewed");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    renewer.join().unwrap();
    let stopped = Instant::now();
    let took = wait_until(
        Duration::from_secs(5 * LEASE_S),
        Duration::from_millis(100),
        || leading(&a).then(|| stopped.elapsed()),
    )
    .unwrap_or_else(|| {
        panic!(
            "never took over after the holder stopped:\n{}",
            a.log_tail(20)
        )
    });
    assert_eq!(env.holder(), "prescale-a");
    report(&format!(
        "[leader] a holder an hour behind renewing every second: not taken for {}s; taken {took:.2?} after it \
         stopped (lease {LEASE_S}s)",
        3 * LEASE_S
    ));
}

/// Review item 10: on SIGTERM the lease was not released, so every rollout had a lease duration
/// without a leader.
#[test]
fn a_leader_stopped_by_sigterm_hands_the_lease_over_at_once() {
    let env = Env::new("leader-release");
    let mut procs: Vec<(String, Controller)> = ["prescale-a", "prescale-b"]
        .iter()
        .map(|n| (n.to_string(), env.start(n)))
        .collect();
    let leader = one_leader(&env, &mut procs);
    let (name, mut old) = procs.remove(leader);
    let (_, mut standby) = procs.remove(0);
    let t = Instant::now();
    let status = old
        .terminate(Duration::from_secs(10))
        .expect("exited on SIGTERM");
    let exited = t.elapsed();
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        old.log().contains("released the lease"),
        "{}",
        old.log_tail(20)
    );
    let took = wait_until(
        Duration::from_secs(2 * LEASE_S),
        Duration::from_millis(50),
        || {
            standby.assert_running();
            leading(&standby).then(|| t.elapsed())
        },
    )
    .unwrap_or_else(|| panic!("the standby never led:\n{}", standby.log_tail(20)));
    assert_ne!(env.holder(), name);
    report(&format!(
        "[leader] SIGTERM to the leader: exited {exited:.2?} later, the lease released; the standby led {took:.2?} \
         after the signal (lease {LEASE_S}s, retry period {:.2?})",
        Duration::from_secs(LEASE_S).div_f64(7.5)
    ));
}

/// Sharding a fleet (docs/sharding.md): two operator releases in one namespace, each
/// with `--selector shard=X` and a Lease of its own. Each leads its own Lease and scales its own
/// shard's scaler; a scaler that no selector matches is never reconciled (no status, its target
/// left alone); a scaler relabelled into the other shard is then kept by that release.
#[test]
fn two_releases_each_reconcile_their_label_selected_shard_under_their_own_lease() {
    let env = Env::new("leader-shards"); // its scaler `proxy` has no shard label
    let (kube, ns) = (env.kube, env.ns);
    for shard in ["a", "b"] {
        let name = format!("shard-{shard}");
        kube.create_deployment(ns, &name, 3);
        kube.create(
            &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers"),
            PredictiveScaler::test(ns, &name)
                .metric("requests", r#"proxy_rps{app="proxy"}"#, "10")
                .with("/metadata/labels", json!({"shard": shard}))
                .json(),
        );
    }
    let release = |shard: &str| {
        let lease = format!("prescale-shard-{shard}");
        let selector = format!("shard={shard}");
        start_with(
            &format!("release-{shard}"),
            &env.prom.url(),
            &env.kubeconfig,
            ns,
            &["--selector", &selector, "--leader-elect-lease-name", &lease],
        )
    };
    let mut procs = [release("a"), release("b")];
    let t = Instant::now();
    wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        (kube.deployment_replicas(ns, "shard-a") == WANT
            && kube.deployment_replicas(ns, "shard-b") == WANT)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the shards were not scaled\na:\n{}\nb:\n{}",
            procs[0].log_tail(20),
            procs[1].log_tail(20)
        )
    });
    let scaled_in = t.elapsed();
    // several sync intervals more for the unlabelled scaler to be (wrongly) picked up
    std::thread::sleep(Duration::from_secs(LEASE_S + 1));
    let lease = |shard: &str| {
        kube.get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/prescale-shard-{shard}"
        ))["spec"]["holderIdentity"]
            .clone()
    };
    assert_eq!(lease("a"), "release-a");
    assert_eq!(lease("b"), "release-b");
    assert!(procs.iter().all(leading), "both lead, each its own Lease");
    let outside = kube.get(&format!(
        "/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers/proxy"
    ));
    assert!(
        outside
            .get("status")
            .is_none_or(|s| s.is_null() || s == &json!({})),
        "a scaler outside both shards got a status: {}",
        outside["status"]
    );
    assert_eq!(env.replicas(), 3, "its target was left alone");
    for (p, other) in [(&procs[0], "shard-b"), (&procs[1], "shard-a")] {
        let log = p.log();
        assert!(
            !log.contains("name=proxy") && !log.contains(&format!("name={other}")),
            "a release reconciled outside its shard:\n{}",
            p.log_tail(30)
        );
        p.assert_never_forbidden();
    }

    // shard-a's scaler moves to shard b: release b keeps it from now on
    kube.patch_merge(
        &format!("/apis/prescale.dev/v1alpha1/namespaces/{ns}/predictivescalers/shard-a"),
        json!({"metadata": {"labels": {"shard": "b"}}}),
    );
    std::thread::sleep(Duration::from_secs(2));
    let a_before = procs[0].log().len();
    kube.patch_merge(
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/shard-a"),
        json!({"spec": {"replicas": 3}}),
    );
    wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        (kube.deployment_replicas(ns, "shard-a") == WANT).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "release b did not take shard-a over:\n{}",
            procs[1].log_tail(30)
        )
    });
    assert!(
        procs[1].log().contains("name=shard-a"),
        "release b scaled it"
    );
    assert!(
        !procs[0].log()[a_before..].contains("name=shard-a"),
        "release a still reconciles a scaler it no longer selects:\n{}",
        procs[0].log_tail(20)
    );
    report(&format!(
        "[leader] two releases, one label-selected shard and one Lease each: both shards scaled {scaled_in:.1?} \
         after start, the unlabelled scaler never reconciled, a relabelled scaler kept by its new shard's release"
    ));
}
