//! prescale where users run it: on a real node (`scripts/cluster.sh up` starts containerd, runc,
//! kube-scheduler and a kubelet beside the control plane), from its own image (`scripts/image.sh`,
//! loaded into the node, never pulled), installed by `helm install`, scaling pods that really
//! start. See docs/node.md. The node needs root, as containerd does; scripts/setup.sh installs
//! what it needs.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::node::{NodeCluster, pids_running, process_uids, root_mount_options};
use support::{http_request, report, wait_until};

const OPERATOR_NS: &str = "prescale-system";

/// `helm install` of the chart with two replicas and leader election, the image from
/// `scripts/image.sh`; waits for the rollout.
fn helm_install(node: &NodeCluster, image: &str, extra: &[&str]) {
    let (repository, tag) = image.rsplit_once(':').expect("an image reference with a tag");
    let chart = support::repo_root().join("charts/prescale");
    let mut args = vec![
        "install",
        "prescale",
        chart.to_str().unwrap(),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    ];
    let repository = format!("image.repository={repository}");
    let tag = format!("image.tag={tag}");
    args.extend(["--set", &repository, "--set", &tag, "--set", "image.pullPolicy=Never"]);
    for e in extra {
        args.extend(["--set", e]);
    }
    let out = node.kube.helm(&args);
    assert!(
        out.status.success(),
        "helm install failed: {}{}\nkubelet: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.kube.log_tail("kubelet", 30)
    );
}

fn lease_holder(node: &NodeCluster) -> Option<String> {
    node.kube
        .try_get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/prescale-leader"
        ))
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

#[test]
fn helm_install_runs_the_operator_image_on_a_real_node_and_the_standby_takes_over() {
    let node = NodeCluster::up();
    let images = node.build_images();
    report(&format!(
        "node: cluster.sh up with the node in {:.1?}; image.sh (debug binaries) built and loaded both images in {:.1?}",
        node.up_time, images.build_time
    ));

    let t = Instant::now();
    helm_install(
        &node,
        &images.operator,
        &["replicaCount=2", "leaderElection.enabled=true"],
    );
    let pods = node.wait_ready_pods(
        OPERATOR_NS,
        "app.kubernetes.io/name=prescale",
        2,
        Duration::from_secs(60),
    );
    report(&format!(
        "node: helm install to two Ready operator pods in {:.1?}",
        t.elapsed()
    ));
    for pod in &pods {
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["image"], images.operator.as_str(), "{pod:#}");
        assert!(
            pod["status"]["podIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.244.0.")),
            "a pod IP on the node's bridge: {:#}",
            pod["status"]
        );
    }

    // the running containers: the non-root user 65532 and a read-only root filesystem, as the
    // image and the chart's securityContext say, seen from the processes themselves
    let pids = pids_running(&["/prescale", "run"]);
    assert_eq!(pids.len(), 2, "one `/prescale run` process per pod: {pids:?}");
    for pid in pids {
        assert_eq!(process_uids(pid), vec![65532; 4], "process {pid}'s user IDs");
        let options = root_mount_options(pid);
        assert!(
            options.split(',').any(|o| o == "ro"),
            "process {pid}'s root filesystem is mounted {options}, not read-only"
        );
    }

    // /metrics answers on the pod's address, as a Prometheus on the cluster would scrape it
    let ip = pods[0]["status"]["podIP"].as_str().unwrap();
    let metrics = http_request("GET", &format!("http://{ip}:8080/metrics"), None, None)
        .expect("GET /metrics on the pod's IP");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("prescale_build_info"),
        "the operator's own metrics: {}",
        &metrics.body[..metrics.body.len().min(2000)]
    );

    // one pod leads; killed without a goodbye (as a node failure would), the standby takes over
    let leader = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        lease_holder(&node).filter(|h| pods.iter().any(|p| name(p) == *h))
    })
    .expect("one of the two pods holds the Lease");
    let standby = pods.iter().map(name).find(|n| *n != leader).unwrap();
    let t = Instant::now();
    node.kube.kubectl_ok(&[
        "-n",
        OPERATOR_NS,
        "delete",
        "pod",
        &leader,
        "--grace-period=0",
        "--force",
    ]);
    let holder = wait_until(Duration::from_secs(90), Duration::from_millis(250), || {
        lease_holder(&node).filter(|h| *h == standby)
    });
    assert_eq!(
        holder.as_deref(),
        Some(standby.as_str()),
        "the standby did not take the Lease: {:?}",
        node.kube.kubectl(&["-n", OPERATOR_NS, "logs", &standby, "--tail", "20"])
    );
    report(&format!(
        "node: the standby took the Lease {:.1?} after the leader's pod was killed",
        t.elapsed()
    ));
    let log = node
        .kube
        .kubectl_ok(&["-n", OPERATOR_NS, "logs", &standby, "--tail", "50"]);
    assert!(log.contains("leader election: leading"), "{log}");
    // the Deployment replaces the killed pod, which becomes the standby
    node.wait_ready_pods(
        OPERATOR_NS,
        "app.kubernetes.io/name=prescale",
        2,
        Duration::from_secs(60),
    );
}
